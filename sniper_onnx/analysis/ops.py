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


@dataclass(frozen=True)
class OpRule:
    """How one op_type is costed and classified."""

    category: str | CategoryFn
    macs: MacsFn
    config_slots: frozenset[int] = frozenset()  # constant inputs that are settings, not weights

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
    if data is None or weight is None:
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


def fused_conv_macs(view: NodeView) -> int | None:
    """com.microsoft FusedConv: a Conv, plus one operation per output for its fused activation."""
    macs, out = conv_macs(view), view.output_shape()
    if macs is None or out is None:
        return None
    return macs + (numel(out) if view.attr("activation") else 0)


def fused_matmul_macs(view: NodeView) -> int | None:
    """com.microsoft FusedMatMul: MatMul with optional transposes; the contracted axis moves with transA."""
    a, out = view.input_shape(0), view.output_shape()
    if a is None or out is None or len(a) < 2:
        return None
    return numel(out) * (a[-2] if view.attr("transA", 0) else a[-1])


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
    "ReduceSumSquare ArgMax ArgMin CumSum TopK"
)
_MEMORY = (
    "Concat Split Transpose Slice Pad Gather GatherElements GatherND Tile Expand DepthToSpace SpaceToDepth "
    "ScatterND ScatterElements Compress Trilu ReverseSequence OneHot NonZero"
)
# ops that are not layers: views, type changes, shape arithmetic and inference no-ops
PLUMBING_OPS = frozenset(
    "Identity Reshape Flatten Squeeze Unsqueeze Cast CastLike Shape Size Constant ConstantOfShape Dropout "
    "Range EyeLike Optional OptionalGetElement OptionalHasElement SequenceConstruct SequenceAt "
    "SequenceEmpty SequenceInsert SequenceLength SplitToSequence ConcatFromSequence".split()
)
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})

_SHAPE_SLOTS = {
    "Reshape": {1}, "Expand": {1}, "Tile": {1}, "Slice": {1, 2, 3, 4}, "Pad": {1, 2, 3}, "Split": {1},
    "Squeeze": {1}, "Unsqueeze": {1}, "Resize": {1, 2, 3}, "Upsample": {1}, "TopK": {1},
    "Clip": {1, 2}, "ReduceMean": {1}, "ReduceSum": {1}, "ReduceMax": {1}, "ReduceMin": {1},
    "ReduceProd": {1}, "ReduceL1": {1}, "ReduceL2": {1}, "ReduceLogSum": {1}, "ReduceLogSumExp": {1},
    "ReduceSumSquare": {1}, "CumSum": {1}, "OneHot": {0, 1, 2}, "Gather": {1}, "GatherElements": {1},
    "GatherND": {1}, "ScatterND": {1}, "ScatterElements": {1}, "Compress": {1}, "Trilu": {1},
    "ReverseSequence": {1}, "Range": {0, 1, 2}, "ConstantOfShape": {0}, "Dropout": {1, 2},
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
        "QuantizeLinear": OpRule("elementwise", per_output_element(1), frozenset({1, 2})),
        "DequantizeLinear": OpRule("elementwise", per_output_element(1), frozenset({1, 2})),
        "LSTM": OpRule("rnn", recurrent_macs, frozenset({4, 5, 6})),
        "GRU": OpRule("rnn", recurrent_macs, frozenset({4, 5})),
        "RNN": OpRule("rnn", recurrent_macs, frozenset({4, 5})),
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
    }
    return {f"{MICROSOFT}::{op}": rule for op, rule in rules.items()}


REGISTRY: dict[str, OpRule] = {**_build_registry(), **_microsoft_rules()}
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
