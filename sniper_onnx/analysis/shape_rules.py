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


def node_attr(node: onnx.NodeProto, name: str, default=None):
    """The value of ``node``'s attribute ``name``, or ``default``."""
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


_attr = node_attr


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


def fused_conv_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """com.microsoft FusedConv: a Conv; no shape where its weight reads another channel count than
    its input has (onnxruntime refuses that; operand_check names it)."""
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None or len(inputs[0]) < 2 or len(inputs[1]) < 2:
        return None
    if inputs[1][1] * int(_attr(node, "group", 1)) != inputs[0][1]:
        return None
    return conv_output(node, inputs)


def gemm_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """Gemm's [M, N]; no shape where A's and B's inner dims differ (onnxruntime refuses that)."""
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None or len(inputs[0]) != 2 or len(inputs[1]) != 2:
        return None
    a, b = inputs[0], inputs[1]
    rows, inner_a = (a[1], a[0]) if _attr(node, "transA", 0) else (a[0], a[1])
    inner_b, cols = (b[1], b[0]) if _attr(node, "transB", 0) else (b[0], b[1])
    return (rows, cols) if inner_a == inner_b else None


def _batch_to_rows(shape: Shape) -> Shape:
    """transBatchA/B: dim 0 moves to the row position, [d0, d1, ..., dk, last] -> [d1, ..., dk, d0, last]
    (onnxruntime's MatMulComputeHelper); the operand was written that way to spare a Transpose."""
    return (*shape[1:-1], shape[0], shape[-1])


def fused_matmul_operands(node: onnx.NodeProto, a: Shape, b: Shape) -> tuple[Shape, Shape] | None:
    """FusedMatMul's operands as a plain MatMul sees them, [..., M, K] and [..., K, N], after its
    transBatchA/B and transA/B; None where onnxruntime refuses the ranks (a batch transpose needs
    both operands of one rank, at least 3). alpha only scales the product: no shape, no MACs."""
    if len(a) < 2 or len(b) < 2:
        return None
    batch_a, batch_b = bool(_attr(node, "transBatchA", 0)), bool(_attr(node, "transBatchB", 0))
    if (batch_a or batch_b) and (len(a) != len(b) or len(a) < 3):
        return None
    a = _batch_to_rows(a) if batch_a else a
    b = _batch_to_rows(b) if batch_b else b
    a = (*a[:-2], a[-1], a[-2]) if _attr(node, "transA", 0) else a
    b = (*b[:-2], b[-1], b[-2]) if _attr(node, "transB", 0) else b
    return a, b


def fused_matmul_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """com.microsoft FusedMatMul: MatMul with optional transposes (see ``fused_matmul_operands``)."""
    if len(inputs) < 2 or inputs[0] is None or inputs[1] is None:
        return None
    operands = fused_matmul_operands(node, inputs[0], inputs[1])
    if operands is None:
        return None
    a, b = operands
    batch = broadcast(node, [a[:-2], b[:-2]])
    if batch is None or a[-1] != b[-2]:  # onnxruntime refuses unequal inner dims
        return None
    return (*batch, a[-2], b[-1])


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


def _to_channels_first(shape: Shape) -> Shape:
    return (shape[0], shape[-1], *shape[1:-1])


def _to_channels_last(shape: Shape) -> Shape:
    return (shape[0], *shape[2:], shape[1])


def _in_layout(rule: Rule) -> Rule:
    """A channels-first rule for an op whose ``channels_last`` attribute may say NHWC (onnxruntime's
    QLinear pools): the data is read and the output written in that layout."""
    def apply(node: onnx.NodeProto, inputs: list) -> Shape | None:
        if not _attr(node, "channels_last", 0):
            return rule(node, inputs)
        if not inputs or inputs[0] is None or len(inputs[0]) < 2:
            return None
        out = rule(node, [_to_channels_first(inputs[0]), *inputs[1:]])
        return None if out is None else _to_channels_last(out)

    return apply


def _reading(slots: tuple[int, ...], rule: Rule) -> Rule:
    """``rule`` over the inputs at ``slots``: a QLinear op interleaves its operands with their
    scales and zero points (QGemm's B is input 3, QLinearAdd's B too)."""
    def apply(node: onnx.NodeProto, inputs: list) -> Shape | None:
        return rule(node, [inputs[slot] if slot < len(inputs) else None for slot in slots])

    return apply


def qlinear_concat_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """QLinearConcat(Y_scale, Y_zero_point, X0, X0_scale, X0_zero_point, X1, ...): Concat of the X."""
    parts = inputs[2::3]
    if not parts or any(shape is None for shape in parts) or len({len(shape) for shape in parts}) != 1:
        return None
    rank = len(parts[0])
    axis = int(_attr(node, "axis", 0))
    if not -rank <= axis < rank:
        return None
    axis %= rank
    out = list(parts[0])
    out[axis] = sum(shape[axis] for shape in parts)
    return tuple(out)


def matmul_nbits_output(node: onnx.NodeProto, inputs: list) -> Shape | None:
    """MatMulNBits: A [..., K] times the packed K x N weight (attribute N)."""
    if not inputs or inputs[0] is None or not inputs[0] or not _attr(node, "N"):
        return None
    return (*inputs[0][:-1], int(_attr(node, "N")))


def quantized_microsoft_rules() -> dict[str, Rule]:
    """onnxruntime's quantized ops (com.microsoft), which ONNX has no schema for."""
    operands = _reading((0, 3), broadcast)
    return {
        "QLinearAdd": operands,
        "QLinearMul": operands,
        "QGemm": _reading((0, 3), gemm_output),
        "QLinearGlobalAveragePool": _in_layout(global_pool_output),
        "QLinearAveragePool": _in_layout(pool_output),
        "QLinearConcat": qlinear_concat_output,
        "QLinearLeakyRelu": same_as_first,
        "QLinearSigmoid": same_as_first,
        "QLinearSoftmax": same_as_first,
        "DynamicQuantizeMatMul": fused_matmul_output,  # a MatMul: no transposes
        "MatMulIntegerToFloat": fused_matmul_output,
        "MatMulNBits": matmul_nbits_output,
        "QuantizeLinear": same_as_first,
        "DequantizeLinear": same_as_first,
    }


# ---------------------------------------------------------------- onnxruntime's transformer fusions
# (com.microsoft Attention, MultiHeadAttention, GroupQueryAttention, EmbedLayerNormalization, as
# onnxruntime.transformers.optimizer writes them; shapes from onnxruntime's ContribOperators.md).
# Each gives every output: a node with an output of unknown shape has unknown bytes.


def _slot(inputs: list, slot: int) -> Shape | None:
    return inputs[slot] if slot < len(inputs) else None


def attention_geometry(node: onnx.NodeProto, inputs: list) -> dict | None:
    """The sizes a com.microsoft attention node computes with, or None when they are not known:
    batch, q_len, kv_len (the attended keys, past included), heads, kv_heads, q_size and v_size
    (head sizes of Q/K and of V), and for Attention the projection's in and out widths."""
    op = node.op_type
    heads = int(_attr(node, "num_heads", 0) or 0)
    if heads <= 0:
        return None
    if op == "Attention":  # Attention(input [B,S,D_in], weights [D_in, q+k+v], bias, mask_index, past [2,B,N,P,h])
        data, weights = _slot(inputs, 0), _slot(inputs, 1)
        if data is None or weights is None or len(data) != 3 or len(weights) != 2:
            return None
        sizes = list(_attr(node, "qkv_hidden_sizes", []) or [])
        q_hidden, k_hidden, v_hidden = sizes if len(sizes) == 3 else [weights[1] // 3] * 3
        if q_hidden + k_hidden + v_hidden != weights[1] or q_hidden % heads or v_hidden % heads or q_hidden != k_hidden:
            return None
        past = _slot(inputs, 4) if len(node.input) > 4 and node.input[4] else ()
        if past is None or (past and len(past) != 5):
            return None
        past_len = past[3] if past else 0
        return {"batch": data[0], "q_len": data[1], "kv_len": past_len + data[1], "new_kv": data[1], "heads": heads,
                "kv_heads": heads, "q_size": q_hidden // heads, "v_size": v_hidden // heads, "in": data[2],
                "out": weights[1], "past": past_len}
    if op == "MultiHeadAttention":
        query = _slot(inputs, 0)
        key = _slot(inputs, 1) if len(node.input) > 1 and node.input[1] else ()
        value = _slot(inputs, 2) if len(node.input) > 2 and node.input[2] else ()
        if query is None or key is None or value is None:
            return None
        past = _slot(inputs, 6) if len(node.input) > 6 and node.input[6] else ()
        if past is None or (past and len(past) != 4):
            return None
        past_len = past[2] if past else 0
        if len(query) == 5 and not key:  # packed QKV [B, S, N, 3, h]
            return {"batch": query[0], "q_len": query[1], "kv_len": query[1], "new_kv": query[1], "heads": heads,
                    "kv_heads": heads, "q_size": query[4], "v_size": query[4], "past": 0}
        if len(query) != 3 or query[2] % heads:
            return None
        q_size = query[2] // heads
        if len(key) == 5 and not value:  # packed KV [B, L, N, 2, h]
            return {"batch": query[0], "q_len": query[1], "kv_len": key[1] + past_len, "new_kv": key[1],
                    "heads": heads, "kv_heads": heads, "q_size": q_size, "v_size": key[4], "past": past_len}
        if len(key) == 3 and len(value) == 3 and not value[2] % heads:
            return {"batch": query[0], "q_len": query[1], "kv_len": key[1] + past_len, "new_kv": key[1],
                    "heads": heads, "kv_heads": heads, "q_size": q_size, "v_size": value[2] // heads, "past": past_len}
        if len(key) == 4 and len(value) == 4:  # keys and values already [B, N, L, h] (a cross-attention cache)
            return {"batch": query[0], "q_len": query[1], "kv_len": key[2], "new_kv": 0, "heads": heads,
                    "kv_heads": heads, "q_size": q_size, "v_size": value[3], "past": 0, "cache": True}
        return None
    if op == "GroupQueryAttention":
        kv_heads = int(_attr(node, "kv_num_heads", 0) or 0)
        query = _slot(inputs, 0)
        key = _slot(inputs, 1) if len(node.input) > 1 and node.input[1] else ()
        if query is None or key is None or kv_heads <= 0 or len(query) != 3:
            return None
        if key:  # query [B, S, N h], key and value [B, S, N_kv h]
            if query[2] % heads:
                return None
            size = query[2] // heads
        else:  # packed QKV [B, S, (N + 2 N_kv) h]
            if query[2] % (heads + 2 * kv_heads):
                return None
            size = query[2] // (heads + 2 * kv_heads)
        past = _slot(inputs, 3) if len(node.input) > 3 and node.input[3] else ()
        if past is None or (past and len(past) != 4):
            return None
        past_len = past[2] if past else 0
        return {"batch": query[0], "q_len": query[1], "kv_len": past_len + query[1], "new_kv": query[1],
                "heads": heads, "kv_heads": kv_heads, "q_size": size, "v_size": size, "past": past_len}
    return None


def attention_outputs(node: onnx.NodeProto, inputs: list) -> list:
    """[output, present(s)...] of a com.microsoft attention node; [None] when not known."""
    g = attention_geometry(node, inputs)
    if g is None:
        return [None]
    out = (g["batch"], g["q_len"], g["heads"] * g["v_size"])
    if node.op_type == "Attention":  # present [2, B, N, P + S, h]
        return [out, (2, g["batch"], g["heads"], g["kv_len"], g["q_size"])]
    if g.get("cache"):  # keys and values given as [B, N, L, h]: no present is written
        return [out, None, None]
    return [out, (g["batch"], g["kv_heads"], g["kv_len"], g["q_size"]),
            (g["batch"], g["kv_heads"], g["kv_len"], g["v_size"])]


def embed_layer_norm_outputs(node: onnx.NodeProto, inputs: list) -> list:
    """EmbedLayerNormalization(input_ids [B, S], segment_ids, word_embedding [V, H], ...):
    output [B, S, H], mask_index [B], embedding_sum [B, S, H]."""
    ids, table = _slot(inputs, 0), _slot(inputs, 2)
    if ids is None or table is None or len(ids) != 2 or len(table) != 2:
        return [None]
    out = (ids[0], ids[1], table[1])
    return [out, (ids[0],), out]


# ------------------------------------------------------------------ ai.onnx.ml (scikit-learn exports)
ML = "ai.onnx.ml"


def _rows(data: Shape) -> int | None:
    """The batch of an ML op's input: [N, F] or a single row [F]."""
    return data[0] if len(data) == 2 else 1 if len(data) == 1 else None


def ml_linear_outputs(node: onnx.NodeProto, inputs: list) -> list:
    """LinearRegressor: [N, targets]. LinearClassifier: label [N], scores [N, classes]; a binary
    classifier stored with one coefficient row writes two scores (onnxruntime's kernel)."""
    data = _slot(inputs, 0)
    rows = None if data is None else _rows(data)
    coefficients = list(_attr(node, "coefficients", []) or [])
    if rows is None or not coefficients:
        return [None]
    if node.op_type == "LinearRegressor":
        return [(rows, int(_attr(node, "targets", 1)))]
    labels = len(_attr(node, "classlabels_ints", []) or []) or len(_attr(node, "classlabels_strings", []) or [])
    features = data[-1]
    if not features or len(coefficients) % features:
        return [None]
    classes = len(coefficients) // features
    return [(rows,), (rows, 2 if classes == 1 and labels == 2 else classes)]


ML_RULES: dict[str, Callable[[onnx.NodeProto, list], list]] = {
    "Scaler": lambda node, inputs: [same_as_first(node, inputs)],
    "Normalizer": lambda node, inputs: [same_as_first(node, inputs)],
    "LinearRegressor": ml_linear_outputs,
    "LinearClassifier": ml_linear_outputs,
}


MULTI_OUTPUT_RULES: dict[str, Callable[[onnx.NodeProto, list], list]] = {
    "Attention": attention_outputs,
    "MultiHeadAttention": attention_outputs,
    "GroupQueryAttention": attention_outputs,
    "EmbedLayerNormalization": embed_layer_norm_outputs,
}


def _first_of(rule: Callable[[onnx.NodeProto, list], list]) -> Rule:
    def apply(node: onnx.NodeProto, inputs: list) -> Shape | None:
        return rule(node, inputs)[0]

    return apply


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
    "FusedConv": fused_conv_output,
    "FusedGemm": gemm_output,
    "FusedMatMul": fused_matmul_output,
    "RotaryEmbedding": same_as_first,
    **{op: _first_of(rule) for op, rule in MULTI_OUTPUT_RULES.items()},
    **quantized_microsoft_rules(),
}
DEFAULT_RULES: dict[str, Rule] = {
    **{op: same_as_first for op in SAME_SHAPE_OPS},
    **{op: broadcast for op in BROADCAST_OPS},
}


def rule_for(node: onnx.NodeProto) -> Rule | None:
    if node.domain in DEFAULT_DOMAINS:
        return DEFAULT_RULES.get(node.op_type)
    if node.domain == ML and node.op_type in ML_RULES:
        return _first_of(ML_RULES[node.op_type])
    if node.domain == MICROSOFT:
        return MICROSOFT_RULES.get(node.op_type)
    if node.domain == NCHWC:
        return NCHWC_RULES.get(node.op_type)
    return None


# com.microsoft ops whose output's element type is not their first input's: the input slot whose
# type it takes (QLinearConcat's first input is a float scale; MatMulIntegerToFloat turns integers
# into the type of its scales; DequantizeLinear likewise)
_OUTPUT_TYPE_SLOT = {"QLinearConcat": 2, "MatMulIntegerToFloat": 2, "DequantizeLinear": 1,
                     "EmbedLayerNormalization": 2}  # its first input is int32 token ids
_QGEMM_Y_SCALE = 7


def output_elem_type(node: onnx.NodeProto, elem_type_of: Callable[[str], int]) -> int:
    """The element type of the first output of a node completed by these rules (0: unknown).
    ``elem_type_of`` gives a tensor's (0 when unknown)."""
    def of(slot: int) -> int:
        return elem_type_of(node.input[slot]) if slot < len(node.input) and node.input[slot] else 0

    if node.domain == MICROSOFT and node.op_type in _OUTPUT_TYPE_SLOT:
        return of(_OUTPUT_TYPE_SLOT[node.op_type])
    if node.domain == MICROSOFT and node.op_type == "QGemm" and not of(_QGEMM_Y_SCALE):
        return onnx.TensorProto.FLOAT  # without y_scale, QGemm writes floats
    if node.domain == MICROSOFT and node.op_type == "QuantizeLinear":
        return of(2) or onnx.TensorProto.UINT8  # the zero point's type, uint8 without one
    return of(0)


def complete_output_shape(node: onnx.NodeProto, known: Callable[[str], "Shape | None"]) -> Shape | None:
    """The first output's shape by rule, or None when there is no rule or an input shape is unknown."""
    rule = rule_for(node)
    if rule is None:
        return None
    inputs = [known(name) if name else None for name in node.input]
    if rule is same_as_first and (not inputs or inputs[0] is None):
        return None
    return rule(node, inputs)


def complete_output_shapes(node: onnx.NodeProto, known: Callable[[str], "Shape | None"]) -> list:
    """Every output's shape by rule (None where unknown); ops with one rule give their first only."""
    multi = (MULTI_OUTPUT_RULES if node.domain == MICROSOFT else ML_RULES if node.domain == ML else {}).get(node.op_type)
    if multi is not None:
        inputs = [known(name) if name else None for name in node.input]
        if not inputs or inputs[0] is None:
            return [None]
        return multi(node, inputs)
    return [complete_output_shape(node, known)]


def output_elem_type_at(node: onnx.NodeProto, index: int, elem_type_of: Callable[[str], int]) -> int:
    """As output_elem_type, for output ``index`` (EmbedLayerNormalization's mask_index is int32)."""
    if index and node.domain == MICROSOFT and node.op_type == "EmbedLayerNormalization" and index == 1:
        return onnx.TensorProto.INT32
    if node.domain == ML and node.op_type in ML_RULES:  # scikit-learn's ops write floats, labels aside
        if node.op_type == "LinearClassifier" and index == 0:
            return onnx.TensorProto.STRING if _attr(node, "classlabels_strings") else onnx.TensorProto.INT64
        return onnx.TensorProto.FLOAT
    return output_elem_type(node, elem_type_of)
