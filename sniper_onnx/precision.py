"""The precision a model computes in, read from its stored weights (light: no onnx import).

A quantized or fp16 model often keeps fp32 inputs, so the profiler, which sees only the session's
inputs, files its time under an fp32 label; `predict` and `db import` judge it by its weights.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# numpy's names of float element types, as the analyzer writes them in model.input_types
FLOAT_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "float64": 64}
# ... and of the types weights are stored in (model.weight_types); int32/int64 hold quantized biases,
# shapes and indices, which say nothing of the precision the model computes in
WEIGHT_BITS = {**FLOAT_BITS, "int8": 8, "uint8": 8, "int4": 4, "uint4": 4, "int16": 16, "uint16": 16,
               "float8_e4m3fn": 8, "float8_e4m3fnuz": 8, "float8_e5m2": 8, "float8_e5m2fnuz": 8}
# the profiler's --precision label a model with these weights is measured under
HALF_LABELS = {"float16": "fp16", "bfloat16": "bf16"}
QUANTIZED_LABEL = "int8"


def model_precision(model_info: Mapping[str, Any]) -> Optional[Tuple[str, str]]:
    """(type, what it is of) that the model computes in: its weights' dominant type (a quantized
    or fp16 model often keeps fp32 inputs), else its first float input's; None when neither says."""
    weights = model_weight_type(model_info)
    if weights:
        return weights, "weights"
    floats = [t for t in (model_info.get("input_types") or {}).values() if t in FLOAT_BITS]
    return (floats[0], "inputs") if floats else None


def model_weight_type(model_info: Mapping[str, Any]) -> Optional[str]:
    """The type most weights that layers multiply-accumulate over are stored in (an embedding table
    can outweigh a small quantized model's int8 matmuls); else most stored weights' type."""
    return (dominant_weight_type(model_info.get("compute_weight_types") or {})
            or dominant_weight_type(model_info.get("weight_types") or {}))


def dominant_weight_type(weight_types: Mapping[str, int]) -> Optional[str]:
    """The precision-bearing element type most weights are stored in; None for weightless models."""
    weights: Dict[str, int] = {t: n for t, n in weight_types.items() if t in WEIGHT_BITS and n}
    return max(weights, key=weights.get) if weights else None


def expected_label(weight_type: Optional[str]) -> Optional[str]:
    """The --precision label a model with ``weight_type`` weights must be measured under; None
    where any label may be right (weightless models; fp32 models run as tf32, or as fp16/int8 under TensorRT, and
    the profiler checks their inputs)."""
    if not weight_type or weight_type in ("float32", "float64"):
        return None
    return HALF_LABELS.get(weight_type, QUANTIZED_LABEL)


def weights_mismatch(weight_type: Optional[str], config: Mapping[str, Any]) -> bool:
    """Whether a measurement made under ``config`` (a profiler record's) timed a model whose
    weights are of another precision than its label: an int8 or fp16 model under fp32."""
    wanted = expected_label(weight_type)
    return wanted is not None and str(config.get("precision") or "fp32") != wanted


PRECISION_MISMATCH = "precision_mismatch"


def judged_flags(flags: Sequence[str], weight_type: Optional[str], config: Mapping[str, Any]) -> List[str]:
    """A profiler record's flags once its model's weights are known: the profiler judges precision
    by the session's first float input, so an int8 or fp16 model with fp32 inputs passes under
    fp32 and fails under its own label. Where the weights say (``expected_label``), they decide
    ``precision_mismatch``; elsewhere the profiler's judgement stands. ``weight_type`` None: unknown."""
    if expected_label(weight_type) is None:
        return list(flags)
    kept = [flag for flag in flags if flag != PRECISION_MISMATCH]
    return kept + [PRECISION_MISMATCH] if weights_mismatch(weight_type, config) else kept
