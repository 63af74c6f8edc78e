"""Latency predictors: Algorithm 1 key features, per-device Bayesian ridge, the PCN as one ONNX file.

Prediction (:func:`load_predictor`, :class:`Predictor`) needs onnxruntime and numpy only; training
(:mod:`.training`, :mod:`.pcn`) imports torch and scikit-learn and is never imported from here.
"""

from __future__ import annotations

from sniper_onnx.predictors.runtime import (
    PredictionRow,
    PredictionTable,
    Predictor,
    load_predictor,
    save_predictor,
    shipped_predictor_path,
)

__all__ = ["PredictionRow", "PredictionTable", "Predictor", "load_predictor", "save_predictor", "shipped_predictor_path"]
