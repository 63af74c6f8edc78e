"""Cost registry: one small handler per ONNX op_type.

A handler sees one node with its tensor shapes (``NodeView``) and returns its MACs, or ``None`` when
a shape it needs is unknown. Parameters and activation bytes are computed generically from the
inputs (see ``costs.py``); each rule only says which constant inputs are configuration (a Reshape's
shape, a Resize's scales) rather than weights. Definitions: docs/features.md and docs/analyzer.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import onnx

from sniper_onnx.analysis.shape_rules import attention_geometry, fused_matmul_operands

Shape = tuple  # of int, every dim known; handlers get None instead of a partly known shape


@dataclass
class NodeView:
    """What a handler may read about one node: shapes, which inputs are constants, attributes."""

    node: onnx.NodeProto
    input_shapes: list[Shape | None]
    output_shapes: list[Shape | None]
    constant_inputs: list[bool]
    _attrs: dict | None = field(default=None, repr=False)

    @property
    def attrs(self) -> dict:
        if self._attrs is None:
            self._attrs = {a.name: onnx.helper.get_attribute_value(a) for a in self.node.attribute}
        return self._attrs

    def attr(self, name: str, default=None):
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def input_shape(self, index: int) -> Shape | None:
        return self.input_shapes[index] if index < len(self.input_shapes) else None

    def output_shape(self, index: int = 0) -> Shape | None:
        return self.output_shapes[index] if index < len(self.output_shapes) else None

    @property
    def activation_input_count(self) -> int:
        return sum(1 for name, const in zip(self.node.input, self.constant_inputs) if name and not const)


MacsFn = Callable[[NodeView], "int | None"]
CategoryFn = Callable[[NodeView], str]
# (view, input slot, stored elements, stored bytes) -> (parameters, bytes) of one weight input
WeightSizeFn = Callable[[NodeView, int, int, int], "tuple[int, int]"]


@dataclass(frozen=True)
class OpRule:
    """How one op_type is costed and classified."""

    category: str | CategoryFn
    macs: MacsFn
    config_slots: frozenset[int] = frozenset()  # constant inputs that are settings, not weights
    # for weights stored packed (MatMulNBits): the parameters they hold differ from their stored
    # elements; None means one parameter per stored element
    weight_size: WeightSizeFn | None = None
    # weights held in attributes (ai.onnx.ml LinearClassifier's coefficients): their element count
    attribute_params: Callable[[NodeView], int] | None = None

    def category_of(self, view: NodeView) -> str:
        return self.category(view) if callable(self.category) else self.category


def numel(shape: Shape | None) -> int | None:
    if shape is None:
        return None
    return math.prod(shape)


# ----------------------------------------------------------------------------------- MAC handlers


def zero_macs(view: NodeView) -> int:
    return 0


def per_output_element(factor: int) -> MacsFn:
    def macs(view: NodeView) -> int | None:
        count = numel(view.output_shape())
        return None if count is None else factor * count

    return macs


def per_input_element(factor: int) -> MacsFn:
    def macs(view: NodeView) -> int | None:
        count = numel(view.input_shape(0))
        return None if count is None else factor * count

    return macs


def nary_elementwise(view: NodeView) -> int | None:
    """An N-input elementwise op does N-1 operations per output element (Sum, Max, Mean too)."""
    count = numel(view.output_shape())
    operands = sum(1 for name in view.node.input if name)
    return None if count is None else max(operands - 1, 1) * count


def conv_macs_with_weight_at(slot: int) -> MacsFn:
    def macs(view: NodeView) -> int | None:
        weight, out = view.input_shape(slot), view.output_shape()
        if weight is None or out is None:
            return None
        # each output element reads (C_in / group) x kernel inputs; the weight's dim 1 is C_in / group
        return numel(out) * math.prod(weight[1:])

    return macs


conv_macs = conv_macs_with_weight_at(1)


def conv_transpose_macs(view: NodeView) -> int | None:
    data, weight = view.input_shape(0), view.input_shape(1)
    if data is None or weight is None or view.output_shape() is None:  # no output: no sound count
        return None
    # every input element is scattered into (C_out / group) x kernel outputs; weight dim 1 is C_out / group
    return numel(data) * math.prod(weight[1:])


def gemm_macs(view: NodeView) -> int | None:
    a, out = view.input_shape(0), view.output_shape()
    if a is None or out is None or len(a) != 2:
        return None
    inner = a[0] if view.attr("transA", 0) else a[1]
    return numel(out) * inner


def matmul_macs(view: NodeView) -> int | None:
    a, out = view.input_shape(0), view.output_shape()
    if a is None or out is None or len(a) == 0:
        return None
    # numpy semantics: the contracted dim is A's last; output already carries broadcast batch dims
    return max(numel(out), 1) * a[-1]


def einsum_macs(view: NodeView) -> int | None:
    """Two-operand einsum: one multiply-add per combination of all index values; else one read each."""
    equation = str(view.attr("equation", "")).replace(" ", "")
    if "->" in equation:
        lhs, rhs = equation.split("->")
    else:
        lhs, rhs = equation, None
    terms = lhs.split(",")
    sizes: dict[str, int] = {}
    ellipsis_elems = 1
    for term, shape in zip(terms, view.input_shapes):
        if shape is None:
            return None
        head, _, tail = term.partition("...")
        letters = list(head) + [None] * (len(shape) - len(head) - len(tail)) + list(tail) if "..." in term else list(term)
        if len(letters) != len(shape):
            return None
        ell = 1
        for letter, dim in zip(letters, shape):
            if letter is None:
                ell *= dim
            else:
                sizes[letter] = max(sizes.get(letter, 1), dim)
        ellipsis_elems = max(ellipsis_elems, ell)
    total = math.prod(sizes.values()) * ellipsis_elems
    if len(terms) == 1:
        kept = set(rhs) - {"."} if rhs is not None else set(terms[0])
        return 0 if kept >= set(terms[0]) - {"."} else total
    return total * (len(terms) - 1)


def attention_macs(view: NodeView) -> int | None:
    """Attention (opset 23): Q K^T and the weighted sum of V, plus a softmax over the scores."""
    query, key, value = view.input_shape(0), view.input_shape(1), view.input_shape(2)
    if query is None or key is None or value is None:
        return None
    if len(query) == 4:  # [batch, heads, seq, head_size]
        batch, heads, q_len, q_size = query
        kv_len, v_size = key[2], value[3]
    else:  # [batch, seq, hidden]: the heads come from the attributes
        heads = int(view.attr("q_num_heads", 1))
        kv_heads = int(view.attr("kv_num_heads", heads))
        batch, q_len, q_size = query[0], query[1], query[2] // heads
        kv_len, v_size = key[1], value[2] // kv_heads
    scores = batch * heads * q_len * kv_len
    return scores * (q_size + v_size) + 3 * scores


def microsoft_attention_macs(view: NodeView) -> int | None:
    """com.microsoft Attention, MultiHeadAttention, GroupQueryAttention (onnxruntime's fused
    transformer attention): per query head, Q K^T over the attended keys (past included) and the
    weighted sum of V, 3 per score for the softmax, as ONNX's Attention; plus what the op fuses in
    front: Attention's QKV projection (B x S x D_in x (q + k + v hidden)) and its bias add (1 per
    projected element), MultiHeadAttention's bias add (1 per biased Q, K and V element, when it has
    a bias), GroupQueryAttention's rotary embedding (2 per Q and K element, with do_rotary)."""
    g = attention_geometry(view.node, list(view.input_shapes))
    if g is None:
        return None
    scores = g["batch"] * g["heads"] * g["q_len"] * g["kv_len"]
    macs = scores * (g["q_size"] + g["v_size"]) + 3 * scores
    op, inputs = view.node.op_type, view.node.input
    new_tokens = g["batch"] * g["new_kv"]
    if op == "Attention":
        projected = g["batch"] * g["q_len"] * g["out"]
        macs += projected * g["in"] + (projected if len(inputs) > 2 and inputs[2] else 0)
    elif op == "MultiHeadAttention" and len(inputs) > 3 and inputs[3]:
        macs += g["heads"] * (g["batch"] * g["q_len"] * g["q_size"] + new_tokens * (g["q_size"] + g["v_size"]))
    elif op == "GroupQueryAttention" and view.attr("do_rotary", 0):
        macs += 2 * (g["batch"] * g["q_len"] * g["heads"] * g["q_size"] + new_tokens * g["kv_heads"] * g["q_size"])
    return macs


def embed_layer_norm_macs(view: NodeView) -> int | None:
    """com.microsoft EmbedLayerNormalization: three (two without segments) table lookups added, 1
    per output element each add, then LayerNormalization's 5 per element."""
    out = view.output_shape()
    if out is None:
        return None
    segments = len(view.node.input) > 4 and bool(view.node.input[1]) and bool(view.node.input[4])
    return numel(out) * ((2 if segments else 1) + 5)


def scatter_macs(view: NodeView) -> int | None:
    """ScatterElements / ScatterND: a memory move (0), but with ``reduction`` add, mul, max or min
    (opset 16 on) each update element is combined with the data: 1 per update element."""
    if view.attr("reduction", "none") in ("none", None, ""):
        return 0
    return numel(view.input_shape(2))


def fused_conv_macs(view: NodeView) -> int | None:
    """com.microsoft FusedConv: a Conv, plus one operation per output for its fused activation."""
    macs, out = conv_macs(view), view.output_shape()
    if macs is None or out is None:
        return None
    return macs + (numel(out) if view.attr("activation") else 0)


def nchwc_conv_macs(view: NodeView) -> int | None:
    """com.microsoft.nchwc Conv: FusedConv, plus one addition per output when it folds in a residual Add
    (its fourth input, Sum)."""
    macs, out = fused_conv_macs(view), view.output_shape()
    if macs is None:
        return None
    return macs + (numel(out) if len(view.node.input) > 3 and view.node.input[3] else 0)


def fused_matmul_macs(view: NodeView) -> int | None:
    """com.microsoft FusedMatMul: MatMul with optional transposes, which move the contracted axis."""
    a, b, out = view.input_shape(0), view.input_shape(1), view.output_shape()
    if a is None or b is None or out is None:
        return None
    operands = fused_matmul_operands(view.node, a, b)
    return None if operands is None else numel(out) * operands[0][-1]


def pool_macs(view: NodeView) -> int | None:
    out = view.output_shape()
    kernel = view.attr("kernel_shape")
    if out is None or kernel is None:
        return None
    return numel(out) * math.prod(kernel)


def global_pool_macs(view: NodeView) -> int | None:
    return numel(view.input_shape(0))


def resize_macs(view: NodeView) -> int | None:
    data, out = view.input_shape(0), view.output_shape()
    if data is None or out is None:
        return None
    mode = view.attr("mode", "nearest")
    resized_axes = sum(1 for a, b in zip(data, out) if a != b)
    taps = {"nearest": 0, "linear": 2, "bilinear": 2, "cubic": 4, "bicubic": 4}.get(mode, 1)
    return numel(out) * (taps ** resized_axes if taps else 0)


def lrn_macs(view: NodeView) -> int | None:
    count = numel(view.output_shape())
    return None if count is None else count * (int(view.attr("size", 1)) + 2)


def recurrent_macs(view: NodeView) -> int | None:
    data, weight, recurrence = view.input_shape(0), view.input_shape(1), view.input_shape(2)
    if data is None or weight is None or recurrence is None:
        return None
    seq_len, batch = (data[1], data[0]) if view.attr("layout", 0) else (data[0], data[1])
    # W is [dirs, gates*hidden, input] and R is [dirs, gates*hidden, hidden]: every step multiplies both
    return seq_len * batch * (numel(weight) + numel(recurrence))


# ------------------------------------------------------ rarer default-domain ops (onnx 1.23 coverage)

# multiply-adds per spatial axis of one interpolated read, as for Resize: nearest 0 (a copy), linear 2, cubic 4
_SAMPLING_TAPS = {"nearest": 0, "linear": 2, "bilinear": 2, "cubic": 4, "bicubic": 4}


def _has_input(view: NodeView, slot: int) -> bool:
    return slot < len(view.node.input) and bool(view.node.input[slot])


def _ceil_log2(count: int) -> int:
    return max(count - 1, 0).bit_length()


def _fft_macs(points: int) -> int:
    """One length-n transform: n ceil(log2 n) complex multiply-adds (radix-2: n/2 log2 n butterflies
    of one complex multiply and two complex adds); lengths that are not powers of two round up."""
    return points * _ceil_log2(points)


def deform_conv_macs(view: NodeView) -> int | None:
    """The convolution's MACs, plus an interpolated read of every input tap: each input channel is
    sampled at every kernel position for every output position (2^spatial taps, 1 more for the mask);
    the samples are shared by the output channels."""
    data, weight, out = view.input_shape(0), view.input_shape(1), view.output_shape()
    if data is None or weight is None or out is None or len(out) < 3:
        return None
    spatial = len(out) - 2
    samples = data[0] * data[1] * math.prod(weight[2:]) * math.prod(out[2:])
    return numel(out) * math.prod(weight[1:]) + samples * (2 ** spatial + (1 if _has_input(view, 4) else 0))


def grid_sample_macs(view: NodeView) -> int | None:
    """Output elements (channels included) x taps of the mode: nearest 0, linear 2^r, cubic 4^r."""
    out = view.output_shape()
    if out is None or len(out) < 3:
        return None
    taps = _SAMPLING_TAPS.get(view.attr("mode", "linear"), 2)
    return numel(out) * taps ** (len(out) - 2) if taps else 0


def roi_align_macs(view: NodeView) -> int | None:
    """Output elements x sampling_ratio^2 points x 4 bilinear taps. sampling_ratio 0 (the default)
    samples ceil(roi size / output size) points per bin, which depends on the RoI values: unknown."""
    out = view.output_shape()
    ratio = int(view.attr("sampling_ratio", 0))
    if out is None or ratio <= 0:
        return None
    return numel(out) * ratio * ratio * 4


def roi_align_category(view: NodeView) -> str:
    """Pools each RoI bin like MaxRoiPool (max) or an average pool (avg, the default)."""
    return "maxpool" if view.attr("mode", "avg") == "max" else "avgpool"


def affine_grid_macs(view: NodeView) -> int | None:
    """Every output coordinate is a theta row dotted with (x, y[, z], 1): spatial + 1 multiply-adds."""
    out = view.output_shape()
    return None if out is None or not out else numel(out) * (out[-1] + 1)


def _dft_length(view: NodeView, data: Shape, out: Shape, axis: int) -> int | None:
    onesided, inverse = int(view.attr("onesided", 0)), int(view.attr("inverse", 0))
    if not onesided or inverse:
        return out[axis]  # full spectrum, or the real signal of an inverse one-sided transform
    # forward one-sided: floor(n/2) + 1 bins, so n is the signal's length unless dft_length differs
    if not _has_input(view, 1) or data[axis] // 2 + 1 == out[axis]:
        return data[axis]
    return None


def dft_macs(view: NodeView) -> int | None:
    """FFT of length n along the axis, once per position of the other signal dims. DFT-17 takes the
    axis as an attribute (default 1), DFT-20 as an input (default -2): without its value the axis is
    the one whose length changed, or any candidate giving the same cost; otherwise unknown."""
    data, out = view.input_shape(0), view.output_shape()
    if data is None or out is None or len(data) != len(out) or len(data) < 2:
        return None
    rank = len(data)
    if "axis" in view.attrs:
        candidates = {int(view.attr("axis")) % rank}
    elif _has_input(view, 2):
        candidates = set(range(rank - 1))
    else:
        candidates = {1 % (rank - 1), rank - 2}
    changed = {axis for axis in range(rank - 1) if data[axis] != out[axis]}
    if changed:
        candidates &= changed
    costs = set()
    for axis in candidates:
        length = _dft_length(view, data, out, axis)
        if length is None:
            return None
        costs.add(math.prod(out[:axis] + out[axis + 1:-1]) * _fft_macs(length))
    return costs.pop() if len(costs) == 1 else None


def stft_macs(view: NodeView) -> int | None:
    """Per frame: the window multiply (n, when a window is given) and a length-n FFT. n is the window's
    length, else the output's bins when two-sided, else the signal length when frame_length is absent."""
    signal, out = view.input_shape(0), view.output_shape()
    if signal is None or out is None or len(signal) != 3 or len(out) != 4:
        return None
    windowed = _has_input(view, 2)
    window = view.input_shape(2) if windowed else None
    if window is not None and len(window) == 1:
        length = window[0]
    elif windowed:
        return None
    elif not int(view.attr("onesided", 1)):
        length = out[2]
    elif not _has_input(view, 3):
        length = signal[1]
    else:
        return None  # floor(n/2) + 1 one-sided bins leave n odd or even: not guessed
    return out[0] * out[1] * (_fft_macs(length) + (length if windowed else 0))


def det_macs(view: NodeView) -> int | None:
    """LU elimination of each n x n matrix: (n^3 - n) / 3 multiply-adds (multipliers and updates),
    then n - 1 multiplies of the diagonal."""
    data = view.input_shape(0)
    if data is None or len(data) < 2:
        return None
    n = data[-1]
    return math.prod(data[:-2]) * ((n ** 3 - n) // 3 + max(n - 1, 0))


def nll_loss_macs(view: NodeView) -> int | None:
    """NegativeLogLikelihoodLoss: per target element, pick -input[target] and accumulate (1), times
    its class weight when weights are given (1 more)."""
    target = view.input_shape(1)
    if target is None:
        return None
    return numel(target) * (2 if _has_input(view, 2) else 1)


def softmax_cross_entropy_macs(view: NodeView) -> int | None:
    """SoftmaxCrossEntropyLoss: softmax (3, as Softmax) and log (1) per score, then the NLL loss."""
    scores, nll = view.input_shape(0), nll_loss_macs(view)
    return None if scores is None or nll is None else 4 * numel(scores) + nll


def nms_macs(view: NodeView) -> int | None:
    """Greedy NMS compares each box with the boxes kept before it, per batch and class: at most
    boxes (boxes - 1) / 2 IoUs. How many are kept depends on the data, so this is the worst case."""
    scores = view.input_shape(1)
    if scores is None or len(scores) != 3:
        return None
    batches, classes, boxes = scores
    return batches * classes * (boxes * (boxes - 1) // 2)


def multinomial_macs(view: NodeView) -> int | None:
    """A cumulative distribution over each row's classes (1 per input element), then a binary
    search of it per sample (ceil(log2 classes))."""
    data, out = view.input_shape(0), view.output_shape()
    if data is None or out is None or len(data) != 2:
        return None
    return numel(data) + numel(out) * _ceil_log2(data[1])


def tfidf_macs(view: NodeView) -> int | None:
    """One pool lookup per input item per n-gram it starts: each length from min_gram_length to
    max_gram_length, n-grams of 2+ items once per skip distance (max_skip_count + 1)."""
    data = view.input_shape(0)
    if data is None:
        return None
    low, high = int(view.attr("min_gram_length", 1)), int(view.attr("max_gram_length", 1))
    skips = int(view.attr("max_skip_count", 0)) + 1
    return numel(data) * sum(1 if n == 1 else skips for n in range(max(low, 1), high + 1))


def swiglu_macs(view: NodeView) -> int | None:
    """Swish of the gate (1, as the Swish op) times the value (1) per output element."""
    shape = view.output_shape() if view.output_shape() is not None else view.input_shape(0)
    return None if shape is None else 2 * numel(shape)


def causal_conv_macs(view: NodeView) -> int | None:
    """CausalConvWithState: a depthwise 1-D convolution, weight (C, 1, k): k per output element
    (Conv's formula), plus 1 per output element for a fused SiLU/Swish."""
    out = view.output_shape() if view.output_shape() is not None else view.input_shape(0)  # same shapes
    weight = view.input_shape(1)
    if out is None or weight is None:
        return None
    activation = str(view.attr("activation", "none")).lower()
    return numel(out) * (math.prod(weight[1:]) + (1 if activation in ("silu", "swish") else 0))


# LinearAttention: k x v-sized state operations per KV head and token for each update rule
_STATE_UPDATES = {
    "linear": 1,  # S += k (x) v
    "gated": 2,  # S *= exp(g); S += k (x) v
    "delta": 2,  # S^T k; S += k (x) beta (v - S^T k)
    "gated_delta": 3,  # S *= exp(g); S^T k; S += k (x) beta (v - S^T k)
}


def linear_attention_macs(view: NodeView) -> int | None:
    """Per batch and token: the state recurrence (d_k x d_v per KV head per state operation of the
    update rule), the read-out q^T S (d_k x d_v per query head) and the scale (1 per output element)."""
    query, value = view.input_shape(0), view.input_shape(2)
    q_heads, kv_heads = int(view.attr("q_num_heads", 0)), int(view.attr("kv_num_heads", 0))
    if query is None or value is None or len(query) != 3 or len(value) != 3 or q_heads <= 0 or kv_heads <= 0:
        return None
    batch, steps = query[0], query[1]
    key_size, value_size = query[2] // q_heads, value[2] // kv_heads
    updates = _STATE_UPDATES.get(view.attr("update_rule", "gated_delta"), 3)
    state = key_size * value_size
    return batch * steps * (state * (updates * kv_heads + q_heads) + q_heads * value_size)


# ------------------------------------------------------------------ onnxruntime's quantized ops


def matmul_nbits_weight_size(view: NodeView, slot: int, elements: int, nbytes: int) -> tuple[int, int]:
    """MatMulNBits packs its K x N weight into [N, blocks, blob] bytes: it holds K x N parameters.
    Its block scales and zero points are stored too (a quarter of the weight's bytes at 4 bits and
    block 32), so they count in bytes, but they are settings, not parameters."""
    if slot == 1:
        k, n = int(view.attr("K", 0)), int(view.attr("N", 0))
        return (k * n if k > 0 and n > 0 else elements), nbytes
    if slot in (2, 3):
        return 0, nbytes
    return elements, nbytes


class _QLinearConcatSettings(frozenset):
    """QLinearConcat(Y_scale, Y_zero_point, X0, X0_scale, X0_zero_point, X1, ...): every scale and
    zero point is a setting, for any number of inputs (rules only ask `slot in config_slots`)."""

    def __contains__(self, slot: object) -> bool:
        return isinstance(slot, int) and slot >= 0 and (slot < 2 or (slot - 2) % 3 != 0)


QLINEAR_CONCAT_SETTINGS = _QLinearConcatSettings()


# ------------------------------------------------------------------------------ classification


def matmul_category(view: NodeView) -> str:
    """A matrix product with a weight operand is a fully connected layer; between activations it is not."""
    return "fc" if any(view.constant_inputs[:2]) else "matmul"


def qlinear_matmul_category(view: NodeView) -> str:
    """QLinearMatMul(a, a_scale, a_zero, b, ...): a fully connected layer when ``b`` is a weight."""
    return "fc" if len(view.constant_inputs) > 3 and (view.constant_inputs[0] or view.constant_inputs[3]) else "matmul"


def add_category(view: NodeView) -> str:
    """Add/Sum merging two or more activations (a residual join) is an add layer; a bias add is not."""
    return "add" if view.activation_input_count >= 2 else "elementwise"


# ----------------------------------------------------------------------------------- the table

_UNARY = (
    "Relu LeakyRelu PRelu Elu Selu Celu Gelu Sigmoid HardSigmoid HardSwish Swish Mish Softplus Softsign "
    "Tanh ThresholdedRelu Clip Abs Neg Exp Log Sqrt Reciprocal Floor Ceil Round Sign Erf Sin Cos Tan "
    "Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Not IsNaN IsInf Shrink BitwiseNot"
)
_ACTIVATIONS = set(
    "Relu LeakyRelu PRelu Elu Selu Celu Gelu Sigmoid HardSigmoid HardSwish Swish Mish Softplus Softsign "
    "Tanh ThresholdedRelu Clip Shrink".split()
)
_BINARY = (
    "Sub Mul Div Pow Mod Min Max Mean Equal Less LessOrEqual Greater GreaterOrEqual And Or Xor "
    "BitShift BitwiseAnd BitwiseOr BitwiseXor Where"
)
_REDUCE = (
    "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp "
    "ReduceSumSquare ArgMax ArgMin CumSum CumProd TopK"
)
_MEMORY = (
    "Concat Split Transpose Slice Pad Gather GatherElements GatherND Tile Expand DepthToSpace SpaceToDepth "
    "ScatterND ScatterElements Compress Trilu ReverseSequence OneHot NonZero Scatter TensorScatter MaxUnpool "
    "CenterCropPad StringSplit"
)
# QDQ bookkeeping on activations: a change of type like Cast. onnxruntime fuses each
# DequantizeLinear -> op -> QuantizeLinear into the op's QLinear kernel, so a QDQ model runs the float
# network's layers; on weights they are constant folding anyway (docs/analyzer.md, Quantized models)
QUANTIZATION_PLUMBING_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# ops that are not layers: views, type changes, shape arithmetic and inference no-ops
PLUMBING_OPS = frozenset(
    "Identity Reshape Flatten Squeeze Unsqueeze Cast CastLike Shape Size Constant ConstantOfShape Dropout "
    "Range EyeLike Optional OptionalGetElement OptionalHasElement SequenceConstruct SequenceAt "
    "SequenceEmpty SequenceInsert SequenceLength SplitToSequence ConcatFromSequence SequenceErase BitCast".split()
) | QUANTIZATION_PLUMBING_OPS
# ops whose output differs from run to run: never constant-folded, even from constant inputs
RANDOM_OPS = frozenset("RandomNormal RandomUniform RandomNormalLike RandomUniformLike Bernoulli Multinomial".split())
# ops whose output size (or cost) follows from the input values, not only their shapes: no
# --input-shape makes them known before running
DATA_DEPENDENT_OPS = frozenset(
    "NonZero NonMaxSuppression Unique Compress StringSplit StringNormalizer ImageDecoder RoiAlign".split()
)
# SequenceMap runs its body once per sequence element; the sequence length is not known before running
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})

_SHAPE_SLOTS = {
    "Reshape": {1}, "Expand": {1}, "Tile": {1}, "Slice": {1, 2, 3, 4}, "Pad": {1, 2, 3}, "Split": {1},
    "Squeeze": {1}, "Unsqueeze": {1}, "Resize": {1, 2, 3}, "Upsample": {1}, "TopK": {1},
    "Clip": {1, 2}, "ReduceMean": {1}, "ReduceSum": {1}, "ReduceMax": {1}, "ReduceMin": {1},
    "ReduceProd": {1}, "ReduceL1": {1}, "ReduceL2": {1}, "ReduceLogSum": {1}, "ReduceLogSumExp": {1},
    "ReduceSumSquare": {1}, "CumSum": {1}, "OneHot": {0, 1, 2}, "Gather": {1}, "GatherElements": {1},
    "GatherND": {1}, "ScatterND": {1}, "ScatterElements": {1}, "Compress": {1}, "Trilu": {1},
    "ReverseSequence": {1}, "Range": {0, 1, 2}, "ConstantOfShape": {0}, "Dropout": {1, 2},
    "CumProd": {1}, "Scatter": {1}, "MaxUnpool": {1, 2}, "CenterCropPad": {1}, "SequenceErase": {1},
    "SequenceAt": {1}, "SequenceInsert": {2},  # positions in the sequence
    # a KV cache buffer and its write positions are state, not weights (like LSTM's initial states)
    "TensorScatter": {0, 2},
    "QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2},  # scale and zero point
}


def _build_registry() -> dict[str, OpRule]:
    table: dict[str, OpRule] = {
        "Conv": OpRule("conv", conv_macs),
        "ConvTranspose": OpRule("conv", conv_transpose_macs),
        # quantized forms: scales and zero points are settings, not parameters
        "ConvInteger": OpRule("conv", conv_macs, frozenset({2, 3})),
        "QLinearConv": OpRule("conv", conv_macs_with_weight_at(3), frozenset({1, 2, 4, 5, 6, 7})),
        "MatMulInteger": OpRule(matmul_category, matmul_macs, frozenset({2, 3})),
        "QLinearMatMul": OpRule(qlinear_matmul_category, matmul_macs, frozenset({1, 2, 4, 5, 6, 7})),
        "Gemm": OpRule("fc", gemm_macs),
        "MatMul": OpRule(matmul_category, matmul_macs),
        "Einsum": OpRule(matmul_category, einsum_macs),
        # inference BN is a precomputed per-channel scale and shift: one multiply-add per element
        "BatchNormalization": OpRule("norm", per_output_element(1)),
        # statistics at run time: mean (1), variance (2), normalise and affine (2) per element
        "LayerNormalization": OpRule("norm", per_output_element(5)),
        "GroupNormalization": OpRule("norm", per_output_element(5)),
        "InstanceNormalization": OpRule("norm", per_output_element(5)),
        "RMSNormalization": OpRule("norm", per_output_element(3)),
        "SimplifiedLayerNormalization": OpRule("norm", per_output_element(3)),  # onnxruntime's RMSNorm
        "LpNormalization": OpRule("norm", per_output_element(2)),
        "MeanVarianceNormalization": OpRule("norm", per_output_element(5)),
        "LRN": OpRule("norm", lrn_macs),
        "MaxPool": OpRule("maxpool", pool_macs),
        "AveragePool": OpRule("avgpool", pool_macs),
        "LpPool": OpRule("lppool", pool_macs),
        "GlobalMaxPool": OpRule("maxpool", global_pool_macs),
        "GlobalAveragePool": OpRule("avgpool", global_pool_macs),
        "GlobalLpPool": OpRule("lppool", global_pool_macs),
        "MaxRoiPool": OpRule("maxpool", per_input_element(1)),
        "Add": OpRule(add_category, nary_elementwise),
        "Sum": OpRule(add_category, nary_elementwise),
        "Attention": OpRule("matmul", attention_macs, frozenset({3, 4, 5})),  # mask and past key/value
        "RotaryEmbedding": OpRule("elementwise", per_output_element(2), frozenset({1, 2, 3})),
        "Softmax": OpRule("activation", per_output_element(3)),
        "LogSoftmax": OpRule("activation", per_output_element(3)),
        "Hardmax": OpRule("activation", per_output_element(1)),
        "Resize": OpRule("resize", resize_macs, frozenset({1, 2, 3})),
        "Upsample": OpRule("resize", resize_macs, frozenset({1})),  # opsets 7-9, Resize's ancestor
        "LSTM": OpRule("rnn", recurrent_macs, frozenset({4, 5, 6})),
        "GRU": OpRule("rnn", recurrent_macs, frozenset({4, 5})),
        "RNN": OpRule("rnn", recurrent_macs, frozenset({4, 5})),
        # convolutions and samplers; offsets, masks, grids and RoIs are where to read, not weights
        "DeformConv": OpRule("conv", deform_conv_macs, frozenset({2, 4})),
        "CausalConvWithState": OpRule("conv", causal_conv_macs, frozenset({3})),  # past_state is state
        "GridSample": OpRule("resize", grid_sample_macs, frozenset({1})),
        "AffineGrid": OpRule("elementwise", affine_grid_macs, frozenset({1})),
        "RoiAlign": OpRule(roi_align_category, roi_align_macs, frozenset({1, 2})),
        "Col2Im": OpRule("memory", per_input_element(1), frozenset({1, 2})),  # overlapping blocks add up
        "LinearAttention": OpRule("matmul", linear_attention_macs, frozenset({3, 4, 5})),
        "SwiGLU": OpRule("activation", swiglu_macs),
        # signal processing: each output is a weighted sum along the transform axis
        "DFT": OpRule("reduce", dft_macs, frozenset({1, 2})),
        "STFT": OpRule("reduce", stft_macs, frozenset({1, 2, 3})),  # the window is a setting
        "Det": OpRule("reduce", det_macs),
        "DynamicQuantizeLinear": OpRule("elementwise", per_input_element(3)),  # min and max, then quantize
        # losses: class weights and labels are settings
        "NegativeLogLikelihoodLoss": OpRule("reduce", nll_loss_macs, frozenset({1, 2})),
        "SoftmaxCrossEntropyLoss": OpRule("reduce", softmax_cross_entropy_macs, frozenset({1, 2})),
        # output sizes depend on the data: costed from the input shapes
        "NonMaxSuppression": OpRule("reduce", nms_macs, frozenset({2, 3, 4})),
        "Unique": OpRule("reduce", per_input_element(1)),  # one hash or compare per input element
        "Multinomial": OpRule("elementwise", multinomial_macs),
        "ImageDecoder": OpRule("elementwise", per_output_element(1)),  # unknown until the image is read
        # generators: one operation per generated element; sizes and settings are not weights
        "RandomNormal": OpRule("elementwise", per_output_element(1)),
        "RandomUniform": OpRule("elementwise", per_output_element(1)),
        "RandomNormalLike": OpRule("elementwise", per_output_element(1), frozenset({0})),
        "RandomUniformLike": OpRule("elementwise", per_output_element(1), frozenset({0})),
        "Bernoulli": OpRule("elementwise", per_output_element(1)),
        "HannWindow": OpRule("elementwise", per_output_element(1), frozenset({0})),
        "HammingWindow": OpRule("elementwise", per_output_element(1), frozenset({0})),
        "BlackmanWindow": OpRule("elementwise", per_output_element(1), frozenset({0})),
        "MelWeightMatrix": OpRule("elementwise", per_output_element(1), frozenset({0, 1, 2, 3, 4})),
        # strings: one operation per string (their lengths are not in the shapes)
        "RegexFullMatch": OpRule("elementwise", per_output_element(1)),
        "StringConcat": OpRule("elementwise", per_output_element(1)),
        "StringNormalizer": OpRule("elementwise", per_input_element(1)),  # stopwords change the output size
        "TfIdfVectorizer": OpRule("elementwise", tfidf_macs),
    }
    for op in _UNARY.split():
        table[op] = OpRule("activation" if op in _ACTIVATIONS else "elementwise", per_output_element(1))
    table["PRelu"] = OpRule("activation", per_output_element(1))
    for op in _BINARY.split():
        table[op] = OpRule("elementwise", nary_elementwise)
    for op in _REDUCE.split():
        table[op] = OpRule("reduce", per_input_element(1))
    for op in _MEMORY.split():
        table[op] = OpRule("concat" if op == "Concat" else "memory", zero_macs)
    for op in PLUMBING_OPS:
        table[op] = OpRule("plumbing", zero_macs)
    for op in CONTROL_FLOW_OPS:
        table[op] = OpRule("control_flow", zero_macs)  # costed from their subgraphs in costs.py
    for op in ("ScatterElements", "ScatterND"):  # with a reduction, one operation per update element
        table[op] = OpRule("memory", scatter_macs)
    for op, slots in _SHAPE_SLOTS.items():
        rule = table[op]
        table[op] = OpRule(rule.category, rule.macs, rule.config_slots | frozenset(slots))
    return table


MICROSOFT = "com.microsoft"


def _microsoft_rules() -> dict[str, OpRule]:
    """onnxruntime's fusions (models saved by its graph optimizer or transformers optimizer)."""
    rules = {
        "FusedConv": OpRule("conv", fused_conv_macs),
        "FusedGemm": OpRule("fc", gemm_macs),
        "FusedMatMul": OpRule(matmul_category, fused_matmul_macs),
        "Gelu": OpRule("activation", per_output_element(1)),
        "QuickGelu": OpRule("activation", per_output_element(1)),
        "FastGelu": OpRule("activation", per_output_element(2)),  # bias add + GELU
        "BiasGelu": OpRule("activation", per_output_element(2)),
        "BiasAdd": OpRule("elementwise", per_output_element(2)),  # x + bias + skip
        "SkipLayerNormalization": OpRule("norm", per_output_element(6)),  # skip add + layer norm
        "SkipSimplifiedLayerNormalization": OpRule("norm", per_output_element(4)),
        "SimplifiedLayerNormalization": OpRule("norm", per_output_element(3)),
        # transformer fusions (onnxruntime.transformers.optimizer); masks, past state, sequence
        # lengths and rotary caches are settings. Attention projects with its weight (slot 1) and
        # bias (slot 2): fc; the others multiply activations: matmul
        "Attention": OpRule("fc", microsoft_attention_macs, frozenset(range(3, 12))),
        "MultiHeadAttention": OpRule("matmul", microsoft_attention_macs, frozenset(range(4, 12))),
        "GroupQueryAttention": OpRule("matmul", microsoft_attention_macs, frozenset(range(3, 14))),
        # ids, mask and position ids are settings; the three tables, gamma and beta are weights
        "EmbedLayerNormalization": OpRule("norm", embed_layer_norm_macs, frozenset({0, 1, 7, 8})),
        "RotaryEmbedding": OpRule("elementwise", per_output_element(2), frozenset({1, 2, 3})),
        **_microsoft_quantized_rules(),
    }
    return {f"{MICROSOFT}::{op}": rule for op, rule in rules.items()}


# scale and zero-point slots of the QLinear ops with one (X) or two (A, B) quantized inputs
_UNARY_QLINEAR_SETTINGS = frozenset({1, 2, 3, 4})  # X_scale, X_zero_point, Y_scale, Y_zero_point
_BINARY_QLINEAR_SETTINGS = frozenset({1, 2, 4, 5, 6, 7})  # A's, B's and C's scales and zero points


def _microsoft_quantized_rules() -> dict[str, OpRule]:
    """onnxruntime's quantized ops (``quantize_static`` in QOperator format, ``quantize_dynamic``,
    the 4-bit weight quantizer): each costs and counts as the float op it computes; scales and
    zero points are settings, not parameters (input positions from onnxruntime's ContribOperators)."""
    return {
        "QLinearAdd": OpRule(add_category, per_output_element(1), _BINARY_QLINEAR_SETTINGS),
        "QLinearMul": OpRule("elementwise", per_output_element(1), _BINARY_QLINEAR_SETTINGS),
        # QGemm(A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp): C is the bias, a weight
        "QGemm": OpRule("fc", gemm_macs, frozenset({1, 2, 4, 5, 7, 8})),
        "QLinearGlobalAveragePool": OpRule("avgpool", global_pool_macs, _UNARY_QLINEAR_SETTINGS),
        "QLinearAveragePool": OpRule("avgpool", pool_macs, _UNARY_QLINEAR_SETTINGS),
        "QLinearConcat": OpRule("concat", zero_macs, QLINEAR_CONCAT_SETTINGS),
        "QLinearLeakyRelu": OpRule("activation", per_output_element(1), _UNARY_QLINEAR_SETTINGS),
        "QLinearSigmoid": OpRule("activation", per_output_element(1), _UNARY_QLINEAR_SETTINGS),
        "QLinearSoftmax": OpRule("activation", per_output_element(3), _UNARY_QLINEAR_SETTINGS),
        # dynamic quantization fused by onnxruntime's optimizer: A is quantized inside the kernel
        # DynamicQuantizeMatMul(A, B, b_scale, b_zero_point, bias)
        "DynamicQuantizeMatMul": OpRule(matmul_category, matmul_macs, frozenset({2, 3})),
        # MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias)
        "MatMulIntegerToFloat": OpRule(matmul_category, matmul_macs, frozenset({2, 3, 4, 5})),
        # MatMulNBits(A, B, scales, zero_points, g_idx, bias): B is a packed K x N weight, and
        # K is A's last dim, so MatMul's count holds
        "MatMulNBits": OpRule("fc", matmul_macs, frozenset({4}), matmul_nbits_weight_size),
        # the contrib forms (older exporters, per-axis before opset 13): as the standard ones
        "QuantizeLinear": OpRule("plumbing", zero_macs, frozenset({1, 2})),
        "DequantizeLinear": OpRule("plumbing", zero_macs, frozenset({1, 2})),
    }


ML = "ai.onnx.ml"


def _ml_linear_macs(view: NodeView) -> int | None:
    """LinearClassifier / LinearRegressor: a Gemm of the rows by the coefficients (rows x outputs x
    features), plus the post transform: 3 per score for SOFTMAX(_ZERO), 1 for LOGISTIC or PROBIT."""
    data = view.input_shape(0)
    if data is None or not data:
        return None
    rows = data[0] if len(data) == 2 else 1
    coefficients = len(view.attr("coefficients", []) or [])
    scores = rows * (coefficients // data[-1]) if data[-1] else 0
    transform = {"SOFTMAX": 3, "SOFTMAX_ZERO": 3, "LOGISTIC": 1, "PROBIT": 1}.get(view.attr("post_transform", "NONE"), 0)
    return rows * coefficients + transform * scores


def _ml_linear_params(view: NodeView) -> int:
    return len(view.attr("coefficients", []) or []) + len(view.attr("intercepts", []) or [])


def _ml_rules() -> dict[str, OpRule]:
    """The ai.onnx.ml ops scikit-learn converters write whose cost is clear (docs/analyzer.md);
    tree ensembles, SVMs, ZipMap, encoders and imputers stay unknown."""
    rules = {
        "Scaler": OpRule("elementwise", per_output_element(2)),  # (x - offset) * scale
        "Normalizer": OpRule("norm", per_output_element(2)),  # accumulate the norm, divide
        "LinearClassifier": OpRule("fc", _ml_linear_macs, attribute_params=_ml_linear_params),
        "LinearRegressor": OpRule("fc", _ml_linear_macs, attribute_params=_ml_linear_params),
    }
    return {f"{ML}::{op}": rule for op, rule in rules.items()}


NCHWC = "com.microsoft.nchwc"


def _nchwc_rules() -> dict[str, OpRule]:
    """onnxruntime's blocked-channel CPU kernels (models saved by its optimizer at ORT_ENABLE_ALL on
    x86). Their tensors are NCHW with the channels padded to the block size (8 or 16, per machine);
    costs follow the stored weights, which onnxruntime pads in places (squeezenet1_1: 0.2 % more
    MACs than the original)."""
    rules = {
        "Conv": OpRule("conv", nchwc_conv_macs),
        "MaxPool": OpRule("maxpool", pool_macs),
        "AveragePool": OpRule("avgpool", pool_macs),
        "GlobalMaxPool": OpRule("maxpool", global_pool_macs),
        "GlobalAveragePool": OpRule("avgpool", global_pool_macs),
        "Upsample": OpRule("resize", resize_macs),
        "ReorderInput": OpRule("memory", zero_macs),
        "ReorderOutput": OpRule("memory", zero_macs),
    }
    return {f"{NCHWC}::{op}": rule for op, rule in rules.items()}


REGISTRY: dict[str, OpRule] = {**_build_registry(), **_microsoft_rules(), **_nchwc_rules(), **_ml_rules()}
DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})


def rule_for(node: onnx.NodeProto) -> OpRule | None:
    """A custom op sharing a standard name need not share its semantics: domains are kept apart."""
    if node.domain in DEFAULT_DOMAINS:
        return REGISTRY.get(node.op_type)
    return REGISTRY.get(f"{node.domain}::{node.op_type}")


def qualified_op_name(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def known_op_types() -> Sequence[str]:
    return sorted(REGISTRY)
