"""The analyzer's feature schema, alone in a module that imports nothing.

Predictor files and `analyze --json` outputs record it; a predictor compares it at every `predict`,
which must not pay for importing the analysis package (onnx, numpy rules, networkx: ~70 ms) just to
read a string. ``sniper_onnx.analysis.result.FEATURE_SCHEMA`` re-exports it.
"""

from __future__ import annotations

# The date features were last computed differently (a fix, a new rule): bump it with such a change.
# `analyze --json` writes it and the sniper-onnx version, so `predict` can tell an analysis made by
# another analyzer (whose features may share names but not values) and ask for a re-run.
# A second change on one date takes a suffix: "2026-11-29.2" (a dynamically quantized model's
# per-channel weight scales no longer counted as parameters), "2026-11-29.3" (onnxruntime's
# FusedMatMul read with its transBatchA/B, which attention in a saved optimized model uses; a node
# whose operands do not fit each other, and all after it, counted as of unknown shape), "2026-11-30"
# (GroupNormalization-21's output shape known: the layers after it had counted no MACs),
# "2026-11-30.2" (an If whose condition the shapes decide analysed as its taken branch),
# "2026-11-30.3" (a graph output's declared shape no longer wins over the computed one; sparse
# initializers are weights; Loop trip counts from shape arithmetic and Loop scan outputs; costs for
# onnxruntime's transformer fusions, ai.onnx.ml linear ops and Scatter reductions).
FEATURE_SCHEMA = "2026-11-30.3"
