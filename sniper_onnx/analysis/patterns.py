"""Layers that exporters write as chains of primitive ops, costed as the one native op they compute.

torch's TorchScript exporter writes GELU below opset 20 as ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (or
its tanh approximation) and LayerNorm below opset 17 as ReduceMean, Sub, Pow, ReduceMean, Add,
Sqrt, Div, Mul, Add. Counted node by node, Table 1 would describe the exporter: nine layers for one
norm, a GELU with no activation but a residual ``add``, branches where the input feeds both ends of
the chain. onnxruntime fuses these chains back into one kernel when it runs the model.

One small matcher per pattern, registered in ``PATTERNS``. Each starts at an anchor op that every
match contains, walks the chain checking every constant (0.5, 1, sqrt(2), 0.044715, the exponent,
epsilon, the reduced axes), and returns the group; a group is accepted only when nothing outside it
reads an interior tensor. The group is replaced by the native op's ``NodeCost``, costed by that
op's rule on the same shapes and weights (docs/analyzer.md, "Exporters' decompositions").

Matchers look through pass-through plumbing (``_pass_through``: a Cast to the type its input
already has, a QDQ model's activation QuantizeLinear -> DequantizeLinear pairs); those between two
members of a group join it (``_absorb_plumbing``) and obey the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import numpy as np
import onnx
from onnx import helper

from sniper_onnx.analysis.costs import NodeCost, Scope, cost_node
from sniper_onnx.analysis.folding import fold_static_values, initial_values
from sniper_onnx.errors import SniperError

# relative tolerance of a constant against its textbook value: float32 storage of sqrt(2/pi) is
# off by 3e-8, and a 0.6 where 0.5 belongs is off by 0.2
REL_TOL = 1e-5
MAX_EPSILON = 1e-3  # LayerNorm and RMSNorm epsilons are 1e-12 .. 1e-3 (Keras); anything larger is not one
SQRT2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715


@dataclass
class Fusion:
    """A matched group and the native op it computes."""

    members: list[NodeCost]  # the group's nodes; the last one writes ``output``
    op_type: str  # a default-domain op
    inputs: list[str]  # the native op's inputs: the activation, then scale and bias where present
    output: str
    attrs: dict = field(default_factory=dict)


@dataclass
class GraphIndex:
    """Producers, consumers, constant values and attributes of the costed top-level graph.

    Matchers see the graph without its pass-through nodes (``_pass_through``: a Cast to the type it
    already has, an activation QuantizeLinear -> DequantizeLinear pair): ``costs``, ``producers`` and
    ``consumers`` hold copies of the other nodes whose inputs name the tensor before any pass-through
    (its ``canonical`` name), so ``x`` and ``Cast(x)`` are one tensor to them. ``raw_producers`` and
    ``raw_consumers`` index the graph as written: ``_accepted`` checks groups there, and ``_absorb_plumbing``
    puts the pass-through nodes between a group's members into the group."""

    costs: list[NodeCost]
    protos: dict[str, onnx.NodeProto]  # node label -> its NodeProto
    scope: Scope
    graph_outputs: frozenset[str]
    load_values: Callable[[], dict[str, np.ndarray]]  # small static values, folded on first use
    producers: dict[str, NodeCost] = field(default_factory=dict)
    consumers: dict[str, list[NodeCost]] = field(default_factory=dict)
    raw_producers: dict[str, NodeCost] = field(default_factory=dict)
    raw_consumers: dict[str, list[NodeCost]] = field(default_factory=dict)
    canonical: dict[str, str] = field(default_factory=dict)  # a pass-through's output -> the tensor before
    canonical_outputs: frozenset[str] = frozenset()  # graph outputs by their canonical names
    originals: dict[str, NodeCost] = field(default_factory=dict)  # node label -> its cost as written
    position: dict[str, int] = field(default_factory=dict)  # node label -> its place in topological order
    _value_cache: dict[str, np.ndarray] | None = None

    def __post_init__(self) -> None:
        written = self.costs
        for index, cost in enumerate(written):
            self.originals[cost.name] = cost
            self.position[cost.name] = index
            for tensor in cost.outputs:
                self.raw_producers[tensor] = cost
            for tensor in dict.fromkeys(cost.inputs):  # a node reading a tensor twice consumes it once
                self.raw_consumers.setdefault(tensor, []).append(cost)
        through = _pass_through(self, written)
        for cost in written:  # topological order: a pass-through's input is already resolved
            if cost.name in through:
                self.canonical[cost.outputs[0]] = self.canonical.get(cost.inputs[0], cost.inputs[0])
        self.canonical_outputs = frozenset(self.canonical.get(t, t) for t in self.graph_outputs)
        self.costs = [
            replace(c, inputs=tuple(self.canonical.get(t, t) for t in c.inputs)) if self.canonical else c
            for c in written if c.name not in through
        ]
        for cost in self.costs:
            for tensor in cost.outputs:
                self.producers[tensor] = cost
            for tensor in dict.fromkeys(cost.inputs):
                self.consumers.setdefault(tensor, []).append(cost)

    def producer(self, tensor: str, *op_types: str) -> NodeCost | None:
        """The layer writing ``tensor`` when it is one of ``op_types``."""
        cost = self.producers.get(tensor)
        return cost if cost is not None and _is_candidate(cost, op_types) else None

    def consumer(self, tensor: str, *op_types: str) -> NodeCost | None:
        """The only node reading ``tensor`` (a graph output has an outside reader), if one of ``op_types``."""
        readers = self.consumers.get(tensor, [])
        if tensor in self.canonical_outputs or len(readers) != 1:
            return None
        return readers[0] if _is_candidate(readers[0], op_types) else None

    def attr(self, cost: NodeCost, name: str, default=None):
        for attribute in self.protos[cost.name].attribute:
            if attribute.name == name:
                return helper.get_attribute_value(attribute)
        return default

    def value(self, tensor: str) -> np.ndarray | None:
        """A static tensor's value when it is small (folded on first use: most graphs never ask)."""
        if tensor not in self.scope.static:
            return None
        if self._value_cache is None:
            self._value_cache = self.load_values()
        return self._value_cache.get(tensor)

    def scalar(self, tensor: str) -> float | None:
        value = self.value(tensor)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def is_scalar(self, tensor: str, target: float) -> bool:
        value = self.scalar(tensor)
        return value is not None and math.isclose(value, target, rel_tol=REL_TOL)

    def shape(self, tensor: str) -> tuple | None:
        """Dims as far as known (None for an unknown one: a symbolic sequence length); None without a rank."""
        info = self.scope.shapes.get(tensor)
        return None if info is None else info.shape


QUANTIZE_OPS = frozenset({"QuantizeLinear", "com.microsoft::QuantizeLinear"})
DEQUANTIZE_OPS = frozenset({"DequantizeLinear", "com.microsoft::DequantizeLinear"})


def _pass_through(ix: GraphIndex, costs: list[NodeCost]) -> set[str]:
    """Names of the plumbing nodes a chain may run through, as if they were not there:

    - a Cast to the element type its input already has (Hugging Face's LlamaRMSNorm writes
      ``weight * hidden.to(input_dtype)``, a float -> float Cast in an fp32 export). A Cast to another
      type changes the precision the rest of the chain computes in, and ends the chain;
    - an activation QuantizeLinear whose every reader is a DequantizeLinear, and those
      DequantizeLinears: a QDQ model's fake quantization between the float ops of a chain, which
      onnxruntime folds into the fused kernel's quantized form.

    Only non-static nodes (plumbing, not constant folding); a QuantizeLinear whose output is a graph
    output, or also read by anything else, is not passed through."""
    through: set[str] = set()
    for cost in costs:
        if cost.category != "plumbing" or cost.subgraph or len(cost.outputs) != 1 or not cost.inputs:
            continue
        if cost.op_type == "Cast":
            source = ix.scope.shapes.get(cost.inputs[0])
            if source is not None and source.elem_type and ix.attr(cost, "to") == source.elem_type:
                through.add(cost.name)
        elif cost.op_type in QUANTIZE_OPS:
            readers = ix.raw_consumers.get(cost.outputs[0], [])
            if (readers and cost.outputs[0] not in ix.graph_outputs
                    and all(r.op_type in DEQUANTIZE_OPS and r.category == "plumbing" and r.inputs[0] == cost.outputs[0]
                            and len(r.outputs) == 1 for r in readers)):
                through.add(cost.name)
                through.update(r.name for r in readers)
    return through


def _is_candidate(cost: NodeCost, op_types: tuple[str, ...]) -> bool:
    # op_type is domain-qualified, so a custom op named Mul never matches
    return cost.op_type in op_types and cost.is_layer and not cost.subgraph


def _other(cost: NodeCost, tensor: str) -> str | None:
    """The second operand of a binary node that reads ``tensor`` (``tensor`` itself for x * x)."""
    if len(cost.inputs) != 2 or tensor not in cost.inputs:
        return None
    first, second = cost.inputs
    return second if first == tensor else first


def _scalar_operand(ix: GraphIndex, cost: NodeCost | None, target: float) -> str | None:
    """The operand of a commutative binary node whose other operand is the constant ``target``."""
    if cost is None or len(cost.inputs) != 2:
        return None
    first, second = cost.inputs
    if ix.is_scalar(second, target):
        return first
    if ix.is_scalar(first, target):
        return second
    return None


# ------------------------------------------------------------------------------------- GELU


def _plus_one(ix: GraphIndex, tensor: str) -> NodeCost | None:
    """``tensor + 1``, the only reader of ``tensor``."""
    add = ix.consumer(tensor, "Add")
    return add if add is not None and ix.is_scalar(_other(add, tensor) or "", 1.0) else None


def _times_half_x(ix: GraphIndex, factor: NodeCost, x: str) -> list[NodeCost] | None:
    """The two Muls computing ``x * 0.5 * factor`` in any grouping: (x * f) * 0.5 as torch writes
    it, (0.5 * f) * x, or (x * 0.5) * f as Hugging Face's GELU does."""
    tensor = factor.outputs[0]
    first = ix.consumer(tensor, "Mul")
    operand = _other(first, tensor) if first is not None else None
    if operand is None:
        return None
    if operand == x or ix.is_scalar(operand, 0.5):
        last = ix.consumer(first.outputs[0], "Mul")
        rest = _other(last, first.outputs[0]) if last is not None else None
        if rest is not None and (ix.is_scalar(rest, 0.5) if operand == x else rest == x):
            return [first, last]
        return None
    half = ix.producer(operand, "Mul")
    if half is not None and _scalar_operand(ix, half, 0.5) == x:
        return [half, first]
    return None


def match_gelu_erf(ix: GraphIndex, erf: NodeCost) -> Fusion | None:
    """``x * 0.5 * (1 + erf(x / sqrt(2)))``, the division also written as ``x * (1 / sqrt(2))``."""
    scale = ix.producer(erf.inputs[0], "Div", "Mul") if erf.inputs else None
    if scale is None:
        return None
    if scale.op_type == "Div":
        x = scale.inputs[0] if len(scale.inputs) == 2 and ix.is_scalar(scale.inputs[1], SQRT2) else None
    else:
        x = _scalar_operand(ix, scale, 1.0 / SQRT2)
    one_plus = _plus_one(ix, erf.outputs[0])
    if x is None or one_plus is None:
        return None
    tail = _times_half_x(ix, one_plus, x)
    if tail is None:
        return None
    return Fusion([scale, erf, one_plus, *tail], "Gelu", [x], tail[-1].outputs[0])


def _cube(ix: GraphIndex, tensor: str, x: str) -> list[NodeCost] | None:
    """``x ** 3`` as Pow(x, 3), x * (x * x) or (x * x) * x."""
    node = ix.producer(tensor, "Pow", "Mul")
    if node is None or len(node.inputs) != 2:
        return None
    if node.op_type == "Pow":
        return [node] if node.inputs[0] == x and ix.is_scalar(node.inputs[1], 3.0) else None
    other = _other(node, x)
    square = ix.producer(other, "Mul") if other is not None else None
    if square is not None and square.inputs == (x, x):
        return [square, node]
    return None


def match_gelu_tanh(ix: GraphIndex, tanh: NodeCost) -> Fusion | None:
    """``x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))``: GELU(approximate="tanh")."""
    scaled = ix.producer(tanh.inputs[0], "Mul") if tanh.inputs else None
    inner = _scalar_operand(ix, scaled, SQRT_2_OVER_PI)
    add = ix.producer(inner, "Add") if inner is not None else None
    if add is None or len(add.inputs) != 2:
        return None
    for x, cubic_term in (add.inputs, add.inputs[::-1]):
        cubic = ix.producer(cubic_term, "Mul")
        cube_tensor = _scalar_operand(ix, cubic, GELU_CUBIC)
        cube = _cube(ix, cube_tensor, x) if cube_tensor is not None else None
        if cube is not None:
            break
    else:
        return None
    one_plus = _plus_one(ix, tanh.outputs[0])
    tail = _times_half_x(ix, one_plus, x) if one_plus is not None else None
    if tail is None:
        return None
    members = [*cube, cubic, add, scaled, tanh, one_plus, *tail]
    return Fusion(members, "Gelu", [x], tail[-1].outputs[0], {"approximate": "tanh"})


# ------------------------------------------------------------------------- LayerNorm, RMSNorm


@dataclass
class _RootMeanSquare:
    """``base / sqrt(mean(base ** 2, suffix axes) + eps)``: what LayerNorm and RMSNorm share."""

    members: list[NodeCost]
    base: str
    output: str
    epsilon: float
    axes: tuple[int, ...]  # negative, a contiguous suffix: (-1,) or (-2, -1)


def _reduce_axes(ix: GraphIndex, reduce: NodeCost) -> tuple[int, ...] | None:
    """A keepdims ReduceMean's axes as negative indices when they are the trailing ones."""
    if ix.attr(reduce, "keepdims", 1) != 1:
        return None
    axes = ix.attr(reduce, "axes")
    if axes is None and len(reduce.inputs) > 1:  # opset 18 takes the axes as an input
        value = ix.value(reduce.inputs[1])
        axes = None if value is None else value.reshape(-1).tolist()
    if not axes:
        return None  # no axes: every axis is reduced, not a norm over features
    shape = ix.shape(reduce.inputs[0])
    if any(a >= 0 for a in axes) and shape is None:
        return None
    negative = sorted(int(a) - len(shape) if a >= 0 else int(a) for a in axes)
    return tuple(negative) if negative == list(range(-len(negative), 0)) else None


def _divided_by(ix: GraphIndex, sqrt: NodeCost, base: str) -> list[NodeCost] | None:
    """``base / s`` as Div(base, s), or base * Reciprocal(s), or base * (1 / s) (torch.rsqrt)."""
    root = sqrt.outputs[0]
    reader = ix.consumer(root, "Div", "Reciprocal")
    if reader is None:
        return None
    if reader.op_type == "Div" and reader.inputs == (base, root):
        return [reader]
    is_inverse = reader.op_type == "Reciprocal" or (len(reader.inputs) == 2 and reader.inputs[1] == root
                                                    and ix.is_scalar(reader.inputs[0], 1.0))
    times = ix.consumer(reader.outputs[0], "Mul") if is_inverse else None
    if times is not None and _other(times, reader.outputs[0]) == base:
        return [reader, times]
    return None


def _root_mean_square(ix: GraphIndex, sqrt: NodeCost) -> _RootMeanSquare | None:
    add = ix.producer(sqrt.inputs[0], "Add") if sqrt.inputs else None
    if add is None or len(add.inputs) != 2:
        return None
    variance, epsilon = next(((a, ix.scalar(b)) for a, b in (add.inputs, add.inputs[::-1])
                              if ix.scalar(b) is not None), (None, None))
    # to the same relative tolerance as the other constants: Keras's 1e-3 stored as float32 is
    # 0.0010000000475, above the float64 bound
    if variance is None or not 0.0 < epsilon <= MAX_EPSILON * (1.0 + REL_TOL):
        return None
    mean = ix.producer(variance, "ReduceMean")
    axes = _reduce_axes(ix, mean) if mean is not None else None
    square = ix.producer(mean.inputs[0], "Pow", "Mul") if axes is not None else None
    if square is None or len(square.inputs) != 2:
        return None
    base = square.inputs[0]
    if square.op_type == "Pow" and not ix.is_scalar(square.inputs[1], 2.0):
        return None
    if square.op_type == "Mul" and square.inputs[1] != base:
        return None
    divide = _divided_by(ix, sqrt, base)
    if divide is None:
        return None
    return _RootMeanSquare([square, mean, add, sqrt, *divide], base, divide[-1].outputs[0], epsilon, axes)


def _centred(ix: GraphIndex, tensor: str) -> tuple[list[NodeCost], str, tuple[int, ...]] | None:
    """``x - mean(x, suffix axes)``: the Sub and the ReduceMean, x, and the axes."""
    sub = ix.producer(tensor, "Sub")
    if sub is None or len(sub.inputs) != 2:
        return None
    x, centre = sub.inputs
    mean = ix.producer(centre, "ReduceMean")
    if mean is None or mean.inputs[0] != x:
        return None
    axes = _reduce_axes(ix, mean)
    return ([mean, sub], x, axes) if axes is not None else None


def _affine_weight(ix: GraphIndex, tensor: str, x: str, axes: tuple[int, ...]) -> bool:
    """A static tensor shaped as the normalised dims (leading 1s allowed): a per-feature scale or bias."""
    shape, data = ix.scope.known(tensor), ix.shape(x)
    if tensor not in ix.scope.static or shape is None or data is None or len(data) < len(axes):
        return False
    features = tuple(data[len(data) - len(axes):])  # the batch and sequence dims need not be known
    trimmed = list(shape)
    while trimmed and trimmed[0] == 1 and len(trimmed) > len(axes):
        trimmed.pop(0)
    # a single-element factor is a setting (as for any Mul), not a per-feature weight
    return None not in features and tuple(trimmed) == features and math.prod(trimmed) > 1


def _with_affine(ix: GraphIndex, fusion: Fusion, x: str, axes: tuple[int, ...]) -> Fusion:
    """Absorb ``* weight`` and then ``+ bias`` after the normalisation (LayerNorm's elementwise affine)."""
    scale = ix.consumer(fusion.output, "Mul")
    weight = _other(scale, fusion.output) if scale is not None else None
    if weight is None or not _affine_weight(ix, weight, x, axes):
        return fusion
    fusion.members.append(scale)
    fusion.inputs.append(weight)
    fusion.output = scale.outputs[0]
    shift = ix.consumer(fusion.output, "Add")
    bias = _other(shift, fusion.output) if shift is not None else None
    if bias is not None and fusion.op_type == "LayerNormalization" and _affine_weight(ix, bias, x, axes):
        fusion.members.append(shift)
        fusion.inputs.append(bias)
        fusion.output = shift.outputs[0]
    return fusion


def match_layer_norm(ix: GraphIndex, sqrt: NodeCost) -> Fusion | None:
    """``(x - mean) / sqrt(mean((x - mean)^2) + eps)``, then ``* weight + bias`` when affine."""
    rms = _root_mean_square(ix, sqrt)
    centred = _centred(ix, rms.base) if rms is not None else None
    if centred is None or centred[2] != rms.axes:
        return None
    members, x, axes = centred
    fusion = Fusion(members + rms.members, "LayerNormalization", [x], rms.output,
                    {"axis": axes[0], "epsilon": rms.epsilon})
    return _with_affine(ix, fusion, x, axes)


def match_rms_norm(ix: GraphIndex, sqrt: NodeCost) -> Fusion | None:
    """``x / sqrt(mean(x^2) + eps)`` (or ``x * rsqrt(...)``), then ``* weight``: RMSNorm (opset 23)."""
    rms = _root_mean_square(ix, sqrt)
    if rms is None or _centred(ix, rms.base) is not None:
        return None  # a centred input is LayerNorm's chain; when that did not match, neither does this
    fusion = Fusion(rms.members, "RMSNormalization", [rms.base], rms.output,
                    {"axis": rms.axes[0], "epsilon": rms.epsilon})
    return _with_affine(ix, fusion, rms.base, rms.axes)


# ----------------------------------------------------------------------- gated activations


def _gate(ix: GraphIndex, gate: NodeCost, op_type: str) -> Fusion | None:
    """``x * gate(x)``: the Mul is the gate's only reader and multiplies by the gate's own input."""
    x = gate.inputs[0] if len(gate.inputs) == 1 else None
    times = ix.consumer(gate.outputs[0], "Mul") if x is not None else None
    if times is None or _other(times, gate.outputs[0]) != x:
        return None
    return Fusion([gate, times], op_type, [x], times.outputs[0])


def match_silu(ix: GraphIndex, sigmoid: NodeCost) -> Fusion | None:
    """``x * sigmoid(x)``: SiLU, ONNX's Swish (opset 24), onnxruntime's QuickGelu(alpha=1)."""
    return _gate(ix, sigmoid, "Swish")


def match_hard_swish(ix: GraphIndex, hard_sigmoid: NodeCost) -> Fusion | None:
    """``x * HardSigmoid(x; 1/6, 0.5)``: torch's Hardswish below opset 14."""
    alpha, beta = ix.attr(hard_sigmoid, "alpha", 0.2), ix.attr(hard_sigmoid, "beta", 0.5)
    if not (math.isclose(alpha, 1.0 / 6.0, rel_tol=REL_TOL) and math.isclose(beta, 0.5, rel_tol=REL_TOL)):
        return None
    return _gate(ix, hard_sigmoid, "HardSwish")


# ------------------------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Pattern:
    name: str
    anchor: str  # op_type every match contains; matching starts at each such node
    match: Callable[[GraphIndex, NodeCost], Fusion | None]
    default: bool = True  # applied by analyze() unless asked otherwise


# Tried in this order at each anchor; the first match wins (LayerNorm before RMSNorm: same anchor).
PATTERNS: dict[str, Pattern] = {p.name: p for p in (
    Pattern("gelu_erf", "Erf", match_gelu_erf),
    Pattern("gelu_tanh", "Tanh", match_gelu_tanh),
    Pattern("layer_norm", "Sqrt", match_layer_norm),
    Pattern("rms_norm", "Sqrt", match_rms_norm),
    Pattern("hard_swish", "HardSigmoid", match_hard_swish),
    # Off by default: sniper_generator writes SiLU as Sigmoid then Mul, and the reference dataset's
    # stored features and the shipped predictors were made with it counted as two layers; fusing it
    # by default would change those networks' features. onnxruntime fuses it (QuickGelu) at run time.
    Pattern("silu", "Sigmoid", match_silu, default=False),
)}
DEFAULT_PATTERNS: tuple[str, ...] = tuple(name for name, p in PATTERNS.items() if p.default)


def _absorb_plumbing(ix: GraphIndex, fusion: Fusion) -> Fusion:
    """The group as written: its members as the graph holds them, with the pass-through nodes
    between two members (see ``_pass_through``) added before the last member, and the native op's
    inputs named as the members read them (``x``'s DequantizeLinear output, not ``x``)."""
    matched = [ix.originals[m.name] for m in fusion.members]
    names = {m.name for m in matched}
    between: dict[str, NodeCost] = {}
    for member in matched:
        for tensor in member.inputs:
            chain = []
            while tensor in ix.canonical:  # walk back through pass-through nodes
                node = ix.raw_producers[tensor]
                chain.append(node)
                tensor = node.inputs[0]
            source = ix.raw_producers.get(tensor)
            if chain and source is not None and source.name in names:
                between.update((node.name, node) for node in chain)
                # a QuantizeLinear's other DequantizeLinears are passed through too: group them, so
                # that _accepted sees whether anything outside reads them
                for node in chain:
                    if node.op_type in QUANTIZE_OPS:
                        between.update((r.name, r) for r in ix.raw_consumers.get(node.outputs[0], []))
    read = [t for m in matched for t in m.inputs]
    inputs = [next((t for t in read if ix.canonical.get(t, t) == wanted), wanted) for wanted in fusion.inputs]
    if not between and inputs == fusion.inputs:
        return Fusion(matched, fusion.op_type, inputs, fusion.output, fusion.attrs)
    middle = sorted([*matched[:-1], *between.values()], key=lambda c: ix.position[c.name])
    return Fusion([*middle, matched[-1]], fusion.op_type, inputs, fusion.output, fusion.attrs)


def _accepted(ix: GraphIndex, fusion: Fusion, claimed: set[str]) -> bool:
    """Nothing outside the group reads an interior tensor, and no node is in two groups (checked on
    the graph as written, pass-through nodes included)."""
    names = [m.name for m in fusion.members]
    if len(set(names)) != len(names) or claimed.intersection(names):
        return False
    if ix.raw_producers.get(fusion.output) is not fusion.members[-1]:
        return False
    inside = set(names)
    for member in fusion.members:
        for tensor in member.outputs:
            if tensor == fusion.output:
                continue
            if tensor in ix.graph_outputs or any(c.name not in inside for c in ix.raw_consumers.get(tensor, [])):
                return False
    return True


def _fused_cost(ix: GraphIndex, fusion: Fusion) -> NodeCost:
    """The native op's cost on the same tensors, under the name of the node writing the output."""
    label = fusion.members[-1].name
    node = helper.make_node(fusion.op_type, fusion.inputs, [fusion.output], name=label, **fusion.attrs)
    cost = cost_node(node, label, ix.scope)
    cost.fused_from = tuple(m.name for m in fusion.members)
    return cost


def _chosen(patterns: Iterable[str]) -> list[Pattern]:
    names = [patterns] if isinstance(patterns, str) else list(patterns)  # "silu" is one name, not four
    unknown = [name for name in names if name not in PATTERNS]
    if unknown:
        raise SniperError(f"unknown pattern(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(PATTERNS)}")
    return [PATTERNS[name] for name in PATTERNS if name in names]  # the table's order: LayerNorm before RMSNorm


def fuse_patterns(costs: list[NodeCost], graph: onnx.GraphProto, order: list[int], scope: Scope,
                  patterns: Iterable[str] = DEFAULT_PATTERNS) -> list[NodeCost]:
    """``costs`` (the top-level graph's, in topological order) with every matched chain replaced by
    the native op's cost, placed where the chain's last node was. Chains inside subgraphs (If, Loop
    bodies) stay as written: they only add MACs and bytes to the control-flow node, whose layers are
    not counted."""
    chosen = _chosen(patterns)
    anchors = {p.anchor for p in chosen}
    if not any(cost.op_type in anchors for cost in costs):
        return costs  # nearly every CNN: no index, no constant folding
    nodes = [graph.node[i] for i in order]

    def values() -> dict[str, np.ndarray]:
        known = initial_values(graph)
        fold_static_values(nodes, scope.shapes, known)
        return known

    # cost_model costs the nodes in ``order``, each under its unique label
    ix = GraphIndex(costs, {cost.name: node for cost, node in zip(costs, nodes)}, scope,
                    frozenset(vi.name for vi in graph.output), values)
    claimed: set[str] = set()
    fused: dict[str, NodeCost] = {}  # the name of a group's last node -> the native op's cost
    for cost in ix.costs:  # matchers see the graph without its pass-through nodes
        for pattern in chosen:
            if cost.op_type != pattern.anchor or cost.name in claimed:
                continue
            fusion = pattern.match(ix, cost)
            if fusion is not None:
                fusion = _absorb_plumbing(ix, fusion)
            if fusion is not None and _accepted(ix, fusion, claimed):
                claimed.update(m.name for m in fusion.members)
                fused[fusion.members[-1].name] = _fused_cost(ix, fusion)
    if not fused:
        return costs
    return [fused.get(c.name, c) for c in costs if c.name in fused or c.name not in claimed]
