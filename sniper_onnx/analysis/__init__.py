"""Network Structure Analyzer: Table 1 features of an ONNX model, read without running it.

``analyze(path_or_model, input_shapes=None) -> AnalysisResult``; ``FEATURE_NAMES`` lists every
feature in a stable order. Never imports onnxruntime, torch or scikit-learn.
"""

from __future__ import annotations

from sniper_onnx.analysis.analyzer import analyze
from sniper_onnx.analysis.costs import NodeCost
from sniper_onnx.analysis.features import FEATURE_GROUPS, FEATURE_NAMES
from sniper_onnx.analysis.loading import parse_input_shape, parse_input_shapes
from sniper_onnx.analysis.ops import REGISTRY
from sniper_onnx.analysis.result import AnalysisResult

__all__ = [
    "AnalysisResult", "FEATURE_GROUPS", "FEATURE_NAMES", "NodeCost", "REGISTRY", "analyze", "parse_input_shape", "parse_input_shapes",
]
