"""``analyze``: the Network Structure Analyzer of Sniper (section 3.2, Table 1) over an ONNX model."""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable

import onnx

from sniper_onnx.analysis.costs import NodeCost, cost_model, unique_labels
from sniper_onnx.analysis.features import compute_features
from sniper_onnx.analysis.loading import SMALL_CONSTANT_ELEMENTS, InputShapes, ModelSource, PreparedModel, prepare
from sniper_onnx.analysis.operand_check import check_operands
from sniper_onnx.analysis.ops import DATA_DEPENDENT_OPS
from sniper_onnx.analysis.patterns import DEFAULT_PATTERNS, fuse_patterns
from sniper_onnx.analysis.reshape_check import check_reshapes
from sniper_onnx.analysis.result import AnalysisResult
from sniper_onnx.analysis.runtime_fusions import tag_inner_axis_softmaxes, tag_skip_layer_norms
from sniper_onnx.analysis.structure import analyse_structure
from sniper_onnx.analysis.wording import counted

MAX_NAMED_NODES = 8


def analyze(source: ModelSource, input_shapes: InputShapes | None = None, *,
            patterns: Iterable[str] = DEFAULT_PATTERNS) -> AnalysisResult:
    """Structural features of an ONNX model (a path or a ModelProto) without running or loading weights.

    ``input_shapes`` maps graph input names to concrete shapes; unset symbolic dims default as
    documented in docs/analyzer.md (batch 1). ``patterns`` names the exporters' decompositions
    (``sniper_onnx.analysis.patterns.PATTERNS``) costed as the native op they compute; ``()`` costs
    every node as written. Raises ``SniperError`` on malformed models.
    """
    prepared = prepare(source, input_shapes)
    graph = prepared.model.graph
    warnings = prepared.warnings
    fixed_reshapes = check_reshapes(graph, prepared.order, prepared.shapes, warnings)
    misfits = check_operands(graph, prepared.order, prepared.shapes, warnings, prepared.changed_inputs, prepared.source)
    costs, scope = cost_model(graph, prepared.order, prepared.shapes, prepared.inferred_nodes, warnings)
    costs = fuse_patterns(costs, graph, prepared.order, scope, patterns)
    tag_skip_layer_norms(costs, (vi.name for vi in graph.output))
    tag_inner_axis_softmaxes(costs, _softmax_axes(graph, prepared.order), _default_opset(prepared.model))
    initializers = {t.name for t in graph.initializer}
    inputs = [vi.name for vi in graph.input if vi.name not in initializers]
    structure = analyse_structure(costs, inputs)
    unknown = [c.op_type for c in costs if c.category == "unknown"] + [op for c in costs for op in c.unknown_inner_ops]
    unknown_ops = dict(sorted(Counter(unknown).items()))
    if unknown_ops:
        warnings.append(
            "unknown ops counted with 0 MACs: " + ", ".join(f"{op} x{n}" for op, n in unknown_ops.items())
        )
    if not any(c.is_layer for c in costs):
        # every count and proportion is then 0: a predictor has nothing to go on, and a user who
        # exported the wrong graph (weights folded into one Constant) should hear it
        warnings.append(_no_layer_warning(costs))
    incomplete = [c for c in costs if not c.shapes_known and c.category != "unknown"]
    unknown_shapes = [c.name for c in incomplete]
    data_dependent = [c.name for c in incomplete if c.op_type in DATA_DEPENDENT_OPS]
    by_shape = [c.name for c in incomplete if c.op_type not in DATA_DEPENDENT_OPS]
    if data_dependent:
        warnings.append(f"{_count_nodes(data_dependent)} whose cost depends on the input values, not only their shapes "
                        f"(costed from their inputs' sizes where their rule can, else 0 MACs; their outputs' sizes are known only "
                        f"when run): {_named(data_dependent)}")
    if by_shape:
        remedy = _unknown_shape_remedy(prepared, bool(unknown_ops), bool(fixed_reshapes), bool(misfits),
                                       one=len(by_shape) == 1, index_loops=set(scope.index_dependent) & set(by_shape))
        warnings.append(f"{_count_nodes(by_shape)} with unknown shapes, so costs are incomplete: {_named(by_shape)}; {remedy}")
    return AnalysisResult(
        source=prepared.source,
        features=compute_features(costs, structure),
        unknown_ops=unknown_ops,
        warnings=warnings,
        nodes=costs,
        critical_path=structure.critical_path,
        model_info=_model_info(prepared.model, prepared.resolved_inputs, prepared.shapes),
        unknown_shape_nodes=unknown_shapes,
    )


def _softmax_axes(graph: onnx.GraphProto, order: list[int]) -> dict[str, int]:
    """Each Softmax-like node's ``axis`` as written (default -1), by its node label."""
    if not any(node.op_type in ("Softmax", "LogSoftmax", "Hardmax") for node in graph.node):
        return {}
    labels = unique_labels(list(graph.node), order)
    axes = {}
    for index in order:
        node = graph.node[index]
        if node.op_type in ("Softmax", "LogSoftmax", "Hardmax") and node.domain in ("", "ai.onnx"):
            written = [onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"]
            axes[labels[index]] = int(written[0]) if written else -1
    return axes


def _default_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


def _no_layer_warning(costs: list[NodeCost]) -> str:
    if not costs:
        return ("the graph has no nodes: its outputs are its inputs or stored constants, so every MAC, parameter "
                "and layer count is 0 and running it costs one call; check that the export kept the model's layers")
    ops = ", ".join(f"{op} x{n}" for op, n in sorted(Counter(c.op_type for c in costs).items()))
    return (f"no layer does work: the graph's {_count_nodes(list(costs))} ({ops}) only pass data along or make "
            "constants, so every MAC, parameter and layer count is 0; check that the export kept the model's layers")


def _unknown_shape_remedy(prepared: PreparedModel, unknown_ops: bool, fixed_reshapes: bool = False,
                          misfits: bool = False, one: bool = False, index_loops: set[str] = frozenset()) -> str:
    """What would make the shapes known; --input-shape only where an input dim is open. ``one``: the
    warning names one node, so the pronouns are singular. ``index_loops``: named Loops whose body's
    shapes follow the iteration number."""
    they, follow, them = ("it", "follows", "it") if one else ("they", "follow", "them")
    if fixed_reshapes:  # the shapes were known but wrong: another --input-shape would not help
        return f"{they} {follow} a Reshape whose target the export fixed (see the Reshape warning)"
    if misfits:  # the model contradicts itself: no input size makes it consistent
        return (f"{they} {'is' if one else 'are'} or {follow} a node whose operands do not fit each other "
                "(see that warning)")
    graph = prepared.model.graph
    initializers = {t.name for t in graph.initializer}
    # an input declared without a shape is not in resolved_inputs at all: every dim of it is open
    shapeless = [vi.name for vi in graph.input if vi.name not in initializers and vi.name not in
                 prepared.resolved_inputs and vi.type.HasField("tensor_type")]
    open_inputs = shapeless or any(d is None or isinstance(d, str)
                                   for dims in prepared.resolved_inputs.values() for d in dims)
    if open_inputs:
        return "set the input dims with --input-shape NAME=DIMS"
    if unknown_ops:
        return f"{they} {follow} the unknown ops, whose output shapes nothing gives"
    if index_loops:
        loops = ", ".join(f"'{name}'" for name in sorted(index_loops))
        return (f"every input dim is known, so --input-shape cannot help: the body of {loops} reads the iteration "
                "number, so its shapes are known only when run (see the Loop warning)")
    model = prepared.model
    causes = []
    if not any(entry.domain == "" for entry in model.opset_import):
        causes.append("the model imports no opset for the default domain, so ONNX shape inference cannot run on "
                      "it; re-export it with an opset import")
    if any(t.data_location == onnx.TensorProto.EXTERNAL and math.prod(t.dims) <= SMALL_CONSTANT_ELEMENTS
           for t in model.graph.initializer):
        causes.append("small constants (shapes, axes) are stored as external data, which the analyzer never "
                      "reads; save the model with them inline (onnx.save(..., size_threshold=1024))")
    return "every input dim is known, so --input-shape cannot help: " + (
        "; ".join(causes) or f"ONNX shape inference could not follow {them}")


def _model_info(model: onnx.ModelProto, resolved: dict, shapes: dict) -> dict:
    opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
    outputs = {}
    for vi in model.graph.output:
        info = shapes.get(vi.name)
        outputs[vi.name] = None if info is None or info.shape is None else list(info.shape)
    return {
        "graph_name": model.graph.name,
        "producer": " ".join(p for p in (model.producer_name, model.producer_version) if p),
        "ir_version": model.ir_version,
        "opsets": opsets,
        "num_nodes": len(model.graph.node),
        "inputs": {name: list(dims) for name, dims in resolved.items()},
        "input_types": {vi.name: _element_type(vi) for vi in model.graph.input if vi.name in resolved},
        "weight_types": _weight_types(model.graph),
        "compute_weight_types": _compute_weight_types(model.graph),
        "outputs": outputs,
    }


def _weight_types(graph: onnx.GraphProto) -> dict[str, int]:
    """Elements of the top graph's stored tensors (initializers, Constant values) by numpy type name:
    a quantized or fp16 model can keep fp32 inputs, and its weights tell its precision."""
    tensors = list(graph.initializer) + [
        attr.t for node in graph.node if node.op_type == "Constant" for attr in node.attribute if attr.name == "value"]
    counts: Counter = Counter()
    for tensor in tensors:
        counts[_tensor_type_name(tensor.data_type)] += math.prod(tensor.dims)
    return dict(sorted(counts.items()))


# Layers that multiply-accumulate over weights: the precision they read them in is the model's. An
# embedding table (Gather) can outweigh a small quantized model's int8 matmuls without being computed.
MAC_WEIGHT_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "LSTM", "GRU", "RNN", "ConvInteger", "MatMulInteger",
    "QLinearConv", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul", "MatMulNBits", "MatMulIntegerToFloat",
    "FusedConv", "FusedMatMul", "FusedGemm", "Attention"})
# ... reached through these from the stored tensor (QDQ models dequantize int8 weights first)
WEIGHT_PASS_THROUGH = frozenset({"DequantizeLinear", "Cast", "Transpose", "Reshape", "Identity", "Squeeze",
                                 "Unsqueeze", "Flatten", "DynamicQuantizeLinear"})


def _compute_weight_types(graph: onnx.GraphProto) -> dict[str, int]:
    """As _weight_types, but only the stored tensors that multiply-accumulating layers read."""
    stored = {t.name: t for t in graph.initializer}
    stored.update({out: attr.t for node in graph.node if node.op_type == "Constant"
                   for attr in node.attribute if attr.name == "value" for out in node.output})
    producers = {out: node for node in graph.node for out in node.output}

    def source(name: str) -> tuple:
        """(stored tensor name or "", the type the layer reads it in): a Cast nearest the layer
        decides the type (fp16-stored weights cast to float compute in fp32); a DequantizeLinear
        does not (onnxruntime fuses it into its int8 kernels)."""
        read_as = None
        for _ in range(8):  # a short chain of casts and reshapes
            if name in stored:
                return name, read_as
            node = producers.get(name)
            if node is None or node.op_type not in WEIGHT_PASS_THROUGH or not node.input:
                return "", None
            if node.op_type == "Cast" and read_as is None:
                read_as = next((attr.i for attr in node.attribute if attr.name == "to"), None)
            name = node.input[0]
        return "", None

    read = {found for node in graph.node if node.op_type in MAC_WEIGHT_OPS for found in map(source, node.input)
            if found[0]}
    counts: Counter = Counter()
    for name, read_as in sorted(read, key=lambda item: (item[0], item[1] or 0)):
        tensor = stored[name]
        counts[_tensor_type_name(read_as or tensor.data_type)] += math.prod(tensor.dims)
    return dict(sorted(counts.items()))


def _tensor_type_name(data_type: int) -> str:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(data_type).name
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(data_type).lower()


def _element_type(value: onnx.ValueInfoProto) -> str | None:
    """numpy's name of an input's element type (float32, float16, int64, ...); None if unset."""
    elem_type = value.type.tensor_type.elem_type
    if not elem_type:
        return None
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _count_nodes(names: list[str]) -> str:
    return counted(len(names), "node")


def _named(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:MAX_NAMED_NODES])
    return shown + (f" and {len(names) - MAX_NAMED_NODES} more" if len(names) > MAX_NAMED_NODES else "")
