"""Per-node costs: MACs from the op registry, parameters and activation bytes from the inputs.

Rules (docs/analyzer.md):
- A tensor is *static* when it is an initializer, a Constant output, a Shape/Size output, or computed
  only from static tensors. Nodes that compute static tensors are constant folding, not layers.
- Parameters are counted where a static tensor enters a layer in a weight slot (not a configuration
  slot such as a Reshape's shape), as the initializers and Constant outputs it is derived from
  through weight slots (its roots), each at its own size and once per model. Single-element
  constants of elementwise ops (0.5 in GELU, sqrt(d) in attention) are settings emitted by
  exporters, not parameters.
- Activation bytes read are the non-static inputs; bytes written are all outputs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from sniper_onnx.analysis.folding import fold_static_values, initial_values
from sniper_onnx.analysis.loading import TensorInfo, collect_shapes, subgraph_outer_names
from sniper_onnx.analysis.ops import (
    CONTROL_FLOW_OPS, DEFAULT_DOMAINS, RANDOM_OPS, NodeView, numel, qualified_op_name, rule_for,
)
from sniper_onnx.analysis.shape_rules import (MICROSOFT, MULTI_OUTPUT_RULES, complete_output_shapes,
                                              output_elem_type_at)

NOT_LAYER_CATEGORIES = frozenset({"plumbing", "constant"})
SHAPE_SOURCE_OPS = frozenset({"Shape", "Size"})
SCALAR_SETTING_OPS = frozenset(
    "Add Sum Sub Mul Div Pow Mod Min Max Mean Equal Less LessOrEqual Greater GreaterOrEqual And Or Xor "
    "Where Clip QLinearAdd QLinearMul".split()  # QLinear*: onnxruntime's quantized Add and Mul
)
SETTING_CATEGORIES = frozenset({"elementwise", "add", "activation"})
# onnxruntime's quantize_dynamic leaves ConvInteger/MatMulInteger unfused: their int32 accumulator is
# Cast to float and multiplied by a scale, the input's (DynamicQuantizeLinear's, at run time) times
# the weight's: one value, or one per output channel for a weight quantized per channel. The
# constants of those Muls are scales, settings as in DynamicQuantizeMatMul's slots, not parameters,
# whatever their length (a per-channel scale of N values counted N parameters until 2026-11-29).
INTEGER_ACCUMULATOR_OPS = frozenset({"ConvInteger", "MatMulInteger"})
RESCALE_OPS = frozenset({"Mul", "Div"})
# ops that hand an accumulator or a scale on as it is (a scale reshaped to [1, C, 1, 1] for a conv)
SCALE_LAYOUT_OPS = frozenset({"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand", "Transpose"})


@dataclass
class NodeCost:
    """The cost of one operator node; counts are plain integers (MACs, elements, bytes)."""

    name: str
    op_type: str
    category: str
    is_layer: bool
    macs: int
    params: int
    param_bytes: int
    bytes_read: int
    bytes_written: int
    input_shapes: list
    output_shapes: list
    shapes_known: bool
    tags: tuple = ()
    subgraph: bool = False
    on_critical_path: bool = False
    param_tensors: tuple = field(default=(), repr=False)  # (tensor name, elements, bytes) per weight
    inputs: tuple = field(default=(), repr=False)
    outputs: tuple = field(default=(), repr=False)
    unknown_inner_ops: tuple = field(default=(), repr=False)  # unknown ops inside its subgraphs
    # the nodes an exporter's chain of primitive ops was written as, when the pattern pass
    # (patterns.py) costs that chain as the one native op it computes
    fused_from: tuple = ()

    def to_row(self) -> dict:
        row = asdict(self)
        for hidden in ("param_tensors", "inputs", "outputs", "unknown_inner_ops"):
            row.pop(hidden)
        row["tags"] = list(self.tags)
        row["fused_from"] = list(self.fused_from)
        return row


_BITS_CACHE: dict[int, int] = {}
# numpy holds these in a byte each; ONNX stores them packed, two (or four) to a byte
_SUB_BYTE_BITS = {
    getattr(onnx.TensorProto, name): bits
    for name, bits in (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))
    if hasattr(onnx.TensorProto, name)
}


def element_bits(elem_type: int) -> int:
    """Bits one element takes as stored; 0 for undefined or string dtypes, which have no fixed size."""
    if elem_type not in _BITS_CACHE:
        try:
            numpy_bytes = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
            bits = _SUB_BYTE_BITS.get(elem_type) or 8 * numpy_bytes
        except Exception:  # noqa: BLE001 - undefined or string dtypes carry no fixed size
            bits = 0
        _BITS_CACHE[elem_type] = bits
    return _BITS_CACHE[elem_type]


def stored_bytes(count: int, bits: int) -> int:
    """Bytes of ``count`` packed elements, a partly filled last byte counted whole."""
    return -(-count * bits // 8)


@dataclass
class Scope:
    """Shapes and static tensors visible to the nodes being costed."""

    shapes: dict[str, TensorInfo]
    static: set[str]
    constant_values: dict[str, np.ndarray]
    warnings: list[str]
    # bits per element as stored, for static tensors dequantized from narrower weights: a QDQ
    # model's int8 weights are 8 bits each, though DequantizeLinear hands the Conv floats
    stored_bits: dict[str, int] = field(default_factory=dict)
    # the tensors a static tensor is derived from through weight slots: initializers, Constant
    # outputs, and tensors made only from settings (ConstantOfShape, Range, ...). A layer's weights
    # are these roots, so a class token expanded to the batch counts its own elements once
    roots: dict[str, frozenset] = field(default_factory=dict)
    # Loops whose body's shapes follow the iteration number (x[i:i+1]): unknown before running
    index_dependent: list[str] = field(default_factory=list)

    def known(self, name: str) -> tuple | None:
        info = self.shapes.get(name)
        return None if info is None else info.known_shape

    def display(self, name: str) -> list | None:
        info = self.shapes.get(name)
        return None if info is None or info.shape is None else list(info.shape)


def static_seed(graph: onnx.GraphProto) -> tuple[set[str], dict[str, np.ndarray]]:
    """Initializers are static; small inline ones also give their values (e.g. a Loop's trip count)."""
    static = {t.name for t in graph.initializer}
    values: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL and math.prod(tensor.dims) <= 16:
            try:
                values[tensor.name] = onnx.numpy_helper.to_array(tensor)
            except Exception:  # noqa: BLE001 - a weightless skeleton has dims but no data
                pass
    return static, values


def unique_labels(nodes: list[onnx.NodeProto], indices: list[int]) -> dict[int, str]:
    labels: dict[int, str] = {}
    seen: set[str] = set()
    for index in indices:
        node = nodes[index]
        label = node.name or f"{node.op_type}_{index}"
        if label in seen:
            label = f"{label}#{index}"
        seen.add(label)
        labels[index] = label
    return labels


def _fill_obvious_shapes(node: onnx.NodeProto, scope: Scope) -> None:
    """Output shapes inference left unknown that follow from the op (see shape_rules); inside
    subgraphs too, which the loader's completion pass does not reach."""
    if node.op_type == "Loop" and node.domain in DEFAULT_DOMAINS:  # carried values keep their shape
        for initial, final in zip(node.input[2:], node.output):
            if final and scope.known(final) is None and scope.known(initial) is not None:
                scope.shapes[final] = scope.shapes[initial]
        return
    if not node.output or all(not name or scope.known(name) is not None for name in node.output):
        return
    if scope.known(node.output[0]) is not None and not (node.domain == MICROSOFT and node.op_type in MULTI_OUTPUT_RULES):
        return  # as before multi-output rules: only the first output is completed
    elem_type_of = lambda name: scope.shapes[name].elem_type if name in scope.shapes else 0  # noqa: E731
    for index, (name, shape) in enumerate(zip(node.output, complete_output_shapes(node, scope.known))):
        if name and shape is not None and scope.known(name) is None:
            scope.shapes[name] = TensorInfo(tuple(shape), output_elem_type_at(node, index, elem_type_of))


def cost_node(node: onnx.NodeProto, label: str, scope: Scope, inferred: onnx.NodeProto | None = None) -> NodeCost:
    _fill_obvious_shapes(node, scope)
    inputs = list(node.input)
    view = NodeView(
        node,
        [scope.known(name) if name else None for name in inputs],
        [scope.known(name) if name else None for name in node.output],
        [bool(name) and name in scope.static for name in inputs],
    )
    static = _is_static(node, view)
    if static:
        scope.static.update(name for name in node.output if name)
        _remember_constant(node, scope)
        _remember_stored_bits(node, scope)
        _remember_roots(node, scope)
    category, macs = _classify(node, view, static)
    weights, weights_known = ([], True) if static else _weights(node, view, category, scope)
    activations = [name for name, constant in zip(inputs, view.constant_inputs) if name and not constant]
    bytes_read = _bytes(scope, activations)
    bytes_written = _bytes(scope, [name for name in node.output if name])
    bytes_known = category == "unknown" or (bytes_read is not None and bytes_written is not None)
    cost = NodeCost(
        name=label,
        op_type=qualified_op_name(node),
        category=category,
        is_layer=category not in NOT_LAYER_CATEGORIES,
        macs=int(macs or 0),
        params=sum(w[1] for w in weights),
        param_bytes=sum(w[2] for w in weights),
        bytes_read=bytes_read or 0,
        bytes_written=bytes_written or 0,
        input_shapes=[scope.display(n) if n else None for n in inputs],
        output_shapes=[scope.display(n) if n else None for n in node.output],
        shapes_known=static or (macs is not None and weights_known and bytes_known),
        tags=_tags(category, view),
        param_tensors=tuple(weights),
        inputs=tuple(n for n in inputs if n),
        outputs=tuple(n for n in node.output if n),
    )
    if node.op_type in CONTROL_FLOW_OPS and node.domain in DEFAULT_DOMAINS:
        _cost_control_flow(cost, node, inferred or node, scope)
    return cost


def _is_static(node: onnx.NodeProto, view: NodeView) -> bool:
    """Computed only from constants and shapes, so constant folding rather than a layer."""
    if node.op_type in CONTROL_FLOW_OPS or node.op_type in RANDOM_OPS:
        return False  # a random op's output changes from run to run: it cannot be folded into a weight
    return node.op_type in SHAPE_SOURCE_OPS or all(c for name, c in zip(node.input, view.constant_inputs) if name)


def _classify(node: onnx.NodeProto, view: NodeView, static: bool) -> tuple[str, int | None]:
    """Category and MACs (None when a needed shape is unknown)."""
    if static:
        return "constant", 0
    rule = rule_for(node)
    if rule is None:
        return "unknown", 0
    return rule.category_of(view), rule.macs(view)


def _weights(node: onnx.NodeProto, view: NodeView, category: str, scope: Scope) -> tuple[list[tuple], bool]:
    """(tensor name, elements, bytes) of each weight entering the node, and whether all were sized."""
    if node.op_type in CONTROL_FLOW_OPS and node.domain in DEFAULT_DOMAINS:
        # its own inputs are trip counts, conditions and initial states; its weights are those its
        # subgraphs' layers read (added in _cost_control_flow)
        return [], True
    rule = rule_for(node)
    config = rule.config_slots if rule is not None else frozenset()
    scalar_settings = node.op_type in SCALAR_SETTING_OPS and category in SETTING_CATEGORIES
    weights: dict[str, tuple] = {}
    known = True
    for slot, (name, constant) in enumerate(zip(node.input, view.constant_inputs)):
        if not constant or slot in config:
            continue
        shape = scope.known(name)
        if scalar_settings and shape is not None and numel(shape) <= 1:
            continue  # exporters' scalars (0.5 in GELU, sqrt(d) in attention) are settings
        # A static tensor of unknown shape (positions gathered with Range(Shape(x)) over a symbolic
        # sequence) is still counted as its roots, whose sizes are known: a weight's count does not
        # depend on the analysed sequence length.
        for root in sorted(scope.roots.get(name, (name,))):
            root_shape = scope.known(root)
            if root_shape is None:
                known = False
                continue
            count = numel(root_shape)
            if scalar_settings and count <= 1:
                continue  # a scalar broadcast to the activation's shape is still a setting
            nbytes = stored_bytes(count, _stored_bits(root, scope))
            if rule is not None and rule.weight_size is not None:  # packed weights (MatMulNBits)
                count, nbytes = rule.weight_size(view, slot, count, nbytes)
            weights[root] = (root, count, nbytes)
    if rule is not None and rule.attribute_params is not None:  # ai.onnx.ml: float coefficients in attributes
        count = rule.attribute_params(view)
        name = f"{node.output[0] if node.output else node.name}:attributes"
        weights[name] = (name, count, 4 * count)
    return list(weights.values()), known


def _stored_bits(name: str, scope: Scope) -> int:
    return scope.stored_bits.get(name) or element_bits(scope.shapes[name].elem_type)


# Static ops whose output is a weight of its own: torch's exporter writes an Identity for each
# parameter whose values equal another's (the unit scales of LayerNorms, the zero biases of
# BatchNorms folded into Convs), and those are distinct parameters.
_OWN_ROOT_OPS = frozenset({"Identity"})
# Static ops whose values come from an input's shape, not from stored data: a weight computed from
# them (rotary tables from Range(T) x inv_freq) counts only its stored roots, or the count would
# grow with the analysed sequence length.
_SHAPE_DERIVED_OPS = frozenset({"Shape", "Size", "Range"})


def _remember_roots(node: onnx.NodeProto, scope: Scope) -> None:
    """The roots of a static node's outputs: those of its static inputs in weight slots (settings
    such as shapes, indices and single-element operands excluded); a node with none (Constant,
    ConstantOfShape) is a root itself; Shape, Size and Range have no roots (nothing stored)."""
    outputs = [name for name in node.output if name]
    if not outputs:
        return
    roots: set[str] = set()
    derived = False  # read a static input in a weight slot: its roots are the node's, even none
    if node.op_type not in _OWN_ROOT_OPS or node.domain not in DEFAULT_DOMAINS:
        rule = rule_for(node)
        config = rule.config_slots if rule is not None else frozenset()
        for slot, name in enumerate(node.input):
            if not name or slot in config or name not in scope.static:
                continue
            count = numel(scope.known(name))
            if node.op_type in SCALAR_SETTING_OPS and count is not None and count <= 1:
                continue  # the 0.5 of a static weight * 0.5 is a setting, as in a layer
            roots.update(scope.roots.get(name, (name,)))
            derived = True
    if node.op_type in _SHAPE_DERIVED_OPS and node.domain in DEFAULT_DOMAINS:
        roots, derived = set(), True
    for output in outputs:
        scope.roots[output] = frozenset(roots) if roots or derived else frozenset((output,))


# Static ops that hand their input's elements on unchanged (a QDQ weight reshaped or transposed
# after DequantizeLinear is still stored narrow).
_LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"})


def _remember_stored_bits(node: onnx.NodeProto, scope: Scope) -> None:
    if not node.input or not node.output or not node.input[0]:
        return
    source = node.input[0]
    if node.op_type == "DequantizeLinear" and source in scope.shapes:
        scope.stored_bits[node.output[0]] = scope.stored_bits.get(source, element_bits(scope.shapes[source].elem_type))
    elif node.op_type in _LAYOUT_OPS and source in scope.stored_bits:
        scope.stored_bits[node.output[0]] = scope.stored_bits[source]


def _remember_constant(node: onnx.NodeProto, scope: Scope) -> None:
    if node.op_type == "Constant" and node.output:
        for attribute in node.attribute:
            if attribute.name == "value" and math.prod(attribute.t.dims) <= 16:
                try:
                    scope.constant_values[node.output[0]] = onnx.numpy_helper.to_array(attribute.t)
                except Exception:  # noqa: BLE001 - weightless constants carry no data
                    pass


def _bytes(scope: Scope, names: list[str]) -> int | None:
    total = 0
    for name in names:
        shape = scope.known(name)
        if shape is None:
            return None
        total += stored_bytes(numel(shape), element_bits(scope.shapes[name].elem_type))
    return total


def _tags(category: str, view: NodeView) -> tuple:
    """The Table 1 layer kinds this node counts as (conv3x3, atrous_conv3x3, fc, norm, ...)."""
    if category != "conv":
        return (category,) if category not in NOT_LAYER_CATEGORIES else ()
    tags = ["conv"]
    weight = view.input_shape(3 if view.node.op_type == "QLinearConv" else 1)
    kernel = tuple(view.attr("kernel_shape") or (weight[2:] if weight else ()))
    dilations = tuple(view.attr("dilations") or ())
    group = int(view.attr("group", 1))
    data = view.input_shape(0)
    if (group > 1 and data is not None and len(data) > 1 and group == data[1]) or view.node.op_type == "CausalConvWithState":
        tags.append("depthwise_conv")  # CausalConvWithState is depthwise by definition (weight C x 1 x k)
    dilated = any(d > 1 for d in dilations)
    if dilated:
        tags.append("atrous_conv")
    if len(kernel) == 2 and kernel[0] == kernel[1]:
        k = int(kernel[0])
        if dilated and k == 3:
            tags.append("atrous_conv3x3")
        elif not dilated and k in (1, 3, 5, 7):
            tags.append(f"conv{k}x{k}")
    return tuple(tags)


# --------------------------------------------------------------------------- control flow


def _subgraphs(node: onnx.NodeProto) -> dict[str, onnx.GraphProto]:
    return {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}


def cost_graph(graph: onnx.GraphProto, outer: Scope) -> list[NodeCost]:
    """Costs of a subgraph's nodes, seeing the enclosing scope's tensors."""
    shapes = collect_shapes(graph, dict(outer.shapes))
    static, values = static_seed(graph)
    values = {**outer.constant_values, **values}
    values.update(_folded_trip_counts(list(graph.node), graph, shapes, values))
    scope = Scope(shapes, set(outer.static) | static, values, outer.warnings,
                  dict(outer.stored_bits), dict(outer.roots), outer.index_dependent)
    for name in static:  # a subgraph's initializer shadows an outer tensor of the same name
        scope.roots.pop(name, None)
    for vi in graph.input:  # loop-carried and scanned values change every iteration
        scope.static.discard(vi.name)
    labels = unique_labels(list(graph.node), list(range(len(graph.node))))
    costs = [cost_node(node, f"{graph.name or 'subgraph'}/{labels[i]}", scope, node) for i, node in enumerate(graph.node)]
    settle_rescales(costs)
    return costs


def settle_rescales(costs: list[NodeCost]) -> None:
    """No parameters in the rescale of an integer layer's accumulator (see INTEGER_ACCUMULATOR_OPS):
    the Mul or Div applied to it, and the chain of Muls, Divs and layout ops that made its scale
    operand, as far as their outputs go nowhere else. ``costs`` in graph order; changed in place."""
    accumulators = {tensor for cost in costs if cost.op_type in INTEGER_ACCUMULATOR_OPS for tensor in cost.outputs}
    if not accumulators:
        return  # float, QDQ and QOperator models: nothing to settle
    for cost in costs:  # an accumulator Cast to float or reshaped is one still
        if cost.op_type in SCALE_LAYOUT_OPS and cost.inputs[:1] and cost.inputs[0] in accumulators:
            accumulators.update(cost.outputs)
    producer = {tensor: cost for cost in costs for tensor in cost.outputs}
    readers: dict[str, list[NodeCost]] = {}
    for cost in costs:
        for tensor in set(cost.inputs):
            readers.setdefault(tensor, []).append(cost)
    scales: dict[int, NodeCost] = {}  # id -> the nodes whose constants are scales
    for cost in costs:
        if cost.op_type not in RESCALE_OPS or not any(tensor in accumulators for tensor in cost.inputs):
            continue
        scales[id(cost)] = cost
        pending = [tensor for tensor in cost.inputs if tensor not in accumulators]
        while pending:
            source = producer.get(pending.pop())
            if (source is None or id(source) in scales or source.op_type not in RESCALE_OPS | SCALE_LAYOUT_OPS
                    or any(tensor in accumulators for tensor in source.inputs)):
                continue
            # a scale another node reads too may be more than a scale: left as it is
            if all(id(reader) in scales for tensor in source.outputs for reader in readers.get(tensor, ())):
                scales[id(source)] = source
                pending.extend(source.inputs)
    for cost in scales.values():
        cost.params, cost.param_bytes, cost.param_tensors = 0, 0, ()


def _total(costs: list[NodeCost], attribute: str) -> int:
    return sum(getattr(c, attribute) for c in costs)


def _cost_control_flow(cost: NodeCost, node: onnx.NodeProto, inferred: onnx.NodeProto, scope: Scope) -> None:
    """If: the costlier branch (weights of both); Loop/Scan: body x trip count. Flagged as subgraph."""
    bodies = {name: cost_graph(graph, scope) for name, graph in _subgraphs(inferred).items()}
    cost.subgraph = True
    # tensors the subgraphs read from the enclosing graph are dependencies of the node
    cost.inputs += tuple(sorted(subgraph_outer_names(node) - set(cost.inputs)))
    if not bodies:
        return
    trips = 1
    if node.op_type == "If":
        chosen = max(bodies.values(), key=lambda costs: _total(costs, "macs"))
    else:
        chosen = next(iter(bodies.values()))
        trips = _trip_count(node, scope, cost.name)
    every = [c for costs in bodies.values() for c in costs]
    rule = "its costlier branch" if node.op_type == "If" else f"its body x {trips} iteration(s)"
    scope.warnings.append(f"node '{cost.name}' ({node.op_type}) holds subgraphs, counted as {rule} "
                          "(layers inside are not in the num_* counts)")
    cost.macs += trips * _total(chosen, "macs")
    cost.bytes_read += trips * _total(chosen, "bytes_read")
    cost.bytes_written += trips * _total(chosen, "bytes_written")
    weights = {w[0]: w for w in cost.param_tensors}
    for inner in every:
        weights.update((w[0], w) for w in inner.param_tensors)
    cost.param_tensors = tuple(weights.values())
    cost.params = sum(w[1] for w in weights.values())
    cost.param_bytes = sum(w[2] for w in weights.values())
    # its cost is its subgraphs': an output of unknown dims (an If whose branches output different
    # shapes) leaves the nodes after it unknown, and they are named, but not this node's own cost
    cost.shapes_known = all(c.shapes_known for c in every)
    if not cost.shapes_known and node.op_type == "Loop" and _reads_iteration_number(inferred):
        scope.index_dependent.append(cost.name)
        scope.warnings.append(
            f"node '{cost.name}' (Loop): its body reads the iteration number (as x[i:i+1] does), so shapes in it "
            "change from one iteration to the next and are known only when run; its body's costs are incomplete")
    cost.unknown_inner_ops = tuple(c.op_type for c in every if c.category == "unknown") + tuple(
        op for c in every for op in c.unknown_inner_ops)


def _reads_iteration_number(node: onnx.NodeProto) -> bool:
    """A Loop body with a node that reads the iteration number (body input 0)."""
    body = _subgraphs(node).get("body")
    if body is None or not body.input:
        return False
    return any(body.input[0].name in inner.input for inner in body.node)


def _folded_trip_counts(nodes: list[onnx.NodeProto], graph: onnx.GraphProto, shapes: dict[str, TensorInfo],
                        values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Trip counts of the graph's Loops that shape arithmetic on known shapes computes (torch
    scripting writes ``for i in range(x.size(1))`` as ``Gather(Shape(x), 1)``), folded with numpy as
    the loader folds shape arithmetic. Only a graph with such a Loop is folded."""
    wanted = {node.input[0] for node in nodes if node.op_type == "Loop" and node.domain in DEFAULT_DOMAINS
              and node.input and node.input[0] and node.input[0] not in values}
    if not wanted:
        return {}
    folded = {**initial_values(graph), **values}
    fold_static_values(nodes, shapes, folded)
    return {name: folded[name] for name in wanted if name in folded}


# torch scripting and tf2onnx write this trip count for a while loop: the condition alone stops it
NO_TRIP_LIMIT = 2**63 - 1


def _trip_count(node: onnx.NodeProto, scope: Scope, label: str) -> int:
    if node.op_type == "Loop" and node.input and node.input[0]:
        value = scope.constant_values.get(node.input[0])
        if value is not None and value.size == 1:
            trips = int(value.reshape(()))
            if trips != NO_TRIP_LIMIT:
                return max(trips, 0)
            scope.warnings.append(
                f"node '{label}' (Loop): trip count {NO_TRIP_LIMIT} is the 'no limit' marker, so its condition "
                "decides when it stops, unknown before running; its body is counted once")
            return 1
    if node.op_type == "Scan":
        trips = _scan_trip_count(node, scope)
        if trips is not None:
            return trips
    scope.warnings.append(
        f"node '{label}' ({node.op_type}): trip count unknown before running; its body is counted once"
    )
    return 1


def _scan_trip_count(node: onnx.NodeProto, scope: Scope) -> int | None:
    """Scan steps, from the first scanned input's shape. Scan-8 (told apart by its leading
    sequence_lens input, which its body does not see) scans axis 1 of [batch, sequence, ...] and
    runs its body once per batch element and step; later versions have no batch axis."""
    num_scan_inputs = next((a.i for a in node.attribute if a.name == "num_scan_inputs"), 0)
    first_scan = len(node.input) - num_scan_inputs
    shape = scope.known(node.input[first_scan]) if num_scan_inputs and first_scan >= 0 else None
    if shape is None:
        return None
    body = _subgraphs(node).get("body")
    if body is not None and len(node.input) == len(body.input) + 1:
        return int(shape[0]) * int(shape[1]) if len(shape) >= 2 else None
    axes = next((list(a.ints) for a in node.attribute if a.name == "scan_input_axes"), [0])
    axis = axes[0] if axes else 0
    return int(shape[axis]) if -len(shape) <= axis < len(shape) else None


def cost_model(graph: onnx.GraphProto, order: list[int], shapes: dict[str, TensorInfo],
               inferred_nodes: dict[int, onnx.NodeProto], warnings: list[str]) -> tuple[list[NodeCost], Scope]:
    """The nodes' costs in ``order``, and the scope they were costed in (static tensors, weight
    roots), in which the pattern pass costs the native ops it puts in place of exporters' chains."""
    static, values = static_seed(graph)
    values.update(_folded_trip_counts([graph.node[i] for i in order], graph, shapes, values))
    scope = Scope(shapes, static, values, warnings)
    labels = unique_labels(list(graph.node), order)
    costs = [cost_node(graph.node[i], labels[i], scope, inferred_nodes.get(i)) for i in order]
    settle_rescales(costs)
    return costs, scope
