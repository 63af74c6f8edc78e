"""Output shapes ONNX shape inference leaves unknown but that follow from an op's definition.

ONNX infers no shapes through ops it has no schema for (onnxruntime's ``com.microsoft`` fusions such
as FusedConv or SkipLayerNormalization) and not always through function ops (GroupNormalization-21),
which would leave every tensor after them without a shape. These rules give the outputs of such ops
from their input shapes; the loader feeds them back to ONNX inference. Nothing is guessed: an op
without a rule keeps unknown outputs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

MICROSOFT = "com.microsoft"
NCHWC = "com.microsoft.nchwc"
DEFAULT_DOMAINS = ("", "ai.onnx")

SAME_SHAPE_OPS = frozenset(
    "Relu LeakyRelu PRelu Elu Selu Celu Gelu Sigmoid HardSigmoid HardSwish Swish Mish Softplus Softsign Tanh "
    "ThresholdedRelu Clip Abs Neg Exp Log Sqrt Reciprocal Floor Ceil Round Sign Erf Sin Cos Not Shrink "
    "BatchNormalization LayerNormalization GroupNormalization InstanceNormalization RMSNormalization "
    "LpNormalization MeanVarianceNormalization LRN Softmax LogSoftmax Hardmax Dropout Identity "
    "SimplifiedLayerNormalization".split()
)
MICROSOFT_SAME_SHAPE_OPS = frozenset(
    "Gelu FastGelu BiasGelu QuickGelu BiasAdd SkipLayerNormalization SkipSimplifiedLayerNormalization "
    "SimplifiedLayerNormalization".split()
)
BROADCAST_OPS = frozenset("Add Sum Sub Mul Div Pow Mod Min Max Mean Where".split())

Shape = tuple
Rule = Callable[[onnx.NodeProto, list], "Shape | None"]


def _attr(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def same_as_first(node: onnx.NodeProto, inputs: list) -> Shape | None:
    return inputs[0] if inputs else None


def broadcast(node: onnx.NodeProto, inputs: list) -> Shape | None:
    if not inputs or any(shape is None for shape in inputs):
        return None
    try:
        return tuple(np.broadcast_shapes(*inputs))
    except ValueError:
        return None


def _window_output(node: onnx.NodeProto, data: Shape, channels: int, kernel: list) -> Shape:
    """A sliding window's output (Conv, pools): explicit pads or SAME_UPPER/SAME_LOWER/VALID auto_pad,
    dilations, and ceil_mode where the op has it."""
    spatial = len(data) - 2
    strides = _attr(node, "strides") or [1] * spatial
    dilations = _attr(node, "dilations") or [1] * spatial
    pads = _attr(node, "pads") or [0] * (2 * spatial)
    auto_pad = _attr(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    round_up = bool(_attr(node, "ceil_mode", 0))
    out = [data[0], channels]
    for axis in range(spatial):
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            out.append(-(-data[axis + 2] // strides[axis]))
            continue
        padding = 0 if auto_pad == "VALID" else pads[axis] + pads[axis + spatial]
        reach = data[axis + 2] + padding - (dilations[axis] * (kernel[axis] - 1) + 1)
        out.append((-(-reach // strides[axis]) if round_up else reach // strides[axis]) + 1)
    return tuple(out)


def conv_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """ONNX Conv's output shape."""
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None:
        return None
    data, weight = inputs[0], inputs[1]
    return _window_output(node, data, weight[0], _attr(node, "kernel_shape") or weight[2:])


def gemm_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None:
        return None
    a, b = inputs[0], inputs[1]
    rows = a[1] if _attr(node, "transA", 0) else a[0]
    cols = b[0] if _attr(node, "transB", 0) else b[1]
    return (rows, cols)


def fused_matmul_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """com.microsoft FusedMatMul: MatMul with optional transposes of the last two axes."""
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None or len(inputs[0]) < 2 or len(inputs[1]) < 2:
        return None
    a, b = inputs[0], inputs[1]
    rows = a[-1] if _attr(node, "transA", 0) else a[-2]
    cols = b[-2] if _attr(node, "transB", 0) else b[-1]
    batch = broadcast(node, [a[:-2], b[:-2]])
    return None if batch is None else (*batch, rows, cols)


def pool_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """MaxPool/AveragePool: the window over the input's channels."""
    if not inputs or inputs[0] is None or not _attr(node, "kernel_shape"):
        return None
    return _window_output(node, inputs[0], inputs[0][1], _attr(node, "kernel_shape"))


def global_pool_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    if not inputs or inputs[0] is None or len(inputs[0]) < 2:
        return None
    return (*inputs[0][:2], *([1] * (len(inputs[0]) - 2)))


def reorder_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """NCHWc ReorderOutput: back to the model's own channel count (attribute ``channels``)."""
    if not inputs or inputs[0] is None or len(inputs[0]) < 2 or not _attr(node, "channels"):
        return None
    data, channels = inputs[0], int(_attr(node, "channels"))
    if _attr(node, "channels_last", 0):
        return (data[0], *data[2:], channels)
    return (data[0], channels, *data[2:])


def reorder_input(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """NCHWc ReorderInput: to channels-first. The padding of the channels to the block size (8 or 16,
    decided by the machine that runs it) is left out, as in the costs."""
    if not inputs or inputs[0] is None or len(inputs[0]) < 2:
        return None
    data = inputs[0]
    return (data[0], data[-1], *data[1:-1]) if _attr(node, "channels_last", 0) else data


def nchwc_upsample_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    scales = _attr(node, "scales")
    if not inputs or inputs[0] is None or not scales or len(scales) != len(inputs[0]):
        return None
    return tuple(d * int(s) for d, s in zip(inputs[0], scales))


NCHWC_RULES: dict[str, Rule] = {
    "Conv": conv_output,
    "MaxPool": pool_output,
    "AveragePool": pool_output,
    "GlobalMaxPool": global_pool_output,
    "GlobalAveragePool": global_pool_output,
    "ReorderInput": reorder_input,
    "ReorderOutput": reorder_output,
    "Upsample": nchwc_upsample_output,
}
MICROSOFT_RULES: dict[str, Rule] = {
    **{op: same_as_first for op in MICROSOFT_SAME_SHAPE_OPS},
    "FusedConv": conv_output,
    "FusedGemm": gemm_output,
    "FusedMatMul": fused_matmul_output,
}
DEFAULT_RULES: dict[str, Rule] = {
    **{op: same_as_first for op in SAME_SHAPE_OPS},
    **{op: broadcast for op in BROADCAST_OPS},
}


def rule_for(node: onnx.NodeProto) -> Rule | None:
    if node.domain in DEFAULT_DOMAINS:
        return DEFAULT_RULES.get(node.op_type)
    if node.domain == MICROSOFT:
        return MICROSOFT_RULES.get(node.op_type)
    if node.domain == NCHWC:
        return NCHWC_RULES.get(node.op_type)
    return None


def complete_output_shape(node: onnx.NodeProto, known: Callable[[str], "Shape | None"]) -> Shape | None:
    """The first output's shape by rule, or None when there is no rule or an input shape is unknown."""
    rule = rule_for(node)
    if rule is None:
        return None
    inputs = [known(name) if name else None for name in node.input]
    if rule is same_as_first and (not inputs or inputs[0] is None):
        return None
    return rule(node, inputs)
