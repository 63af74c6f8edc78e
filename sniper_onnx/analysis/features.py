"""Table 1 of the Sniper paper (minus Dependency) as a flat, stable name -> number map.

Definitions and units: docs/features.md. Names never change meaning; new features are appended.
"""

from __future__ import annotations

import math

from sniper_onnx.analysis.costs import NodeCost
from sniper_onnx.analysis.structure import Structure, max_branches

# Table 1 layer kinds counted by ``num_<kind>`` with a ``prop_<kind>`` = num_<kind> / num_layers
LAYER_KINDS = (
    "norm", "conv", "conv1x1", "conv3x3", "conv5x5", "conv7x7", "atrous_conv3x3", "fc", "concat", "add",
    "avgpool", "maxpool",
)
EXTRA_LAYER_KINDS = ("depthwise_conv", "atrous_conv", "matmul", "activation")

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "Network structure": (
        "max_branches", "num_layers", "critical_path_layers", "prop_critical_path_params",
        "prop_critical_path_layers", "prop_critical_path_macs", "avg_macs_per_layer",
    ),
    "Calculation times": ("total_macs", "critical_path_macs", "conv_macs", "fc_macs", "matmul_macs"),
    "Number of parameters": ("total_params", "critical_path_params", "conv_params", "fc_params"),
    "Proportion of network layers": tuple(
        name for kind in LAYER_KINDS for name in (f"num_{kind}", f"prop_{kind}")
    ) + tuple(f"num_{kind}" for kind in EXTRA_LAYER_KINDS),
    "Memory": ("param_bytes", "activation_bytes_read", "activation_bytes_written"),
}
FEATURE_NAMES: tuple[str, ...] = tuple(name for names in FEATURE_GROUPS.values() for name in names)


def _unique_weights(costs: list[NodeCost], column: int) -> int:
    """Parameters (column 1) or their bytes (column 2), once per weight tensor even when shared."""
    weights = {w[0]: w for cost in costs for w in cost.param_tensors}
    return sum(w[column] for w in weights.values())


# Layers whose output is an integer accumulator (onnxruntime's dynamic quantization writes
# ConvInteger/MatMulInteger -> Cast -> Mul by the input scale x the weight scale -> Add bias): their
# bias Add is found past that Cast and rescale. Float and QDQ/QOperator models have none of them,
# so their features cannot change by this.
_INTEGER_LAYERS = frozenset({"ConvInteger", "MatMulInteger"})
# A QDQ model quantizes a Linear's MatMul output before its bias Add (MatMul -> QuantizeLinear ->
# DequantizeLinear -> Add): the bias Add is found past those (activation Q/DQ are plumbing). Float
# models have none, so their features cannot change by this.
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear",
                      "com.microsoft::QuantizeLinear", "com.microsoft::DequantizeLinear"})
# Adds that may put a bias on a layer's output: QLinearAdd is a QOperator model's
_BIAS_ADD_OPS = frozenset({"Add", "Sum", "com.microsoft::QLinearAdd"})


def _rescales(cost: NodeCost, tensor: str, integer: bool) -> bool:
    """Whether ``cost`` hands ``tensor`` on as it is (activation Q/DQ; after an integer layer also a
    Cast) or, after an integer layer, multiplied by a parameter-free scale broadcast onto it (the
    dynamic-quantization scale: one value, or one per output channel when the weight was quantized
    per channel), so that a bias Add may still follow."""
    if cost.category == "plumbing":
        return cost.op_type in _QDQ_OPS or (integer and cost.op_type == "Cast")
    if not integer:
        return False
    if cost.op_type != "Mul" or cost.param_tensors or len(cost.inputs) != 2 or len(cost.input_shapes) != 2:
        return False
    shapes = dict(zip(cost.inputs, cost.input_shapes))
    mine, others = shapes.get(tensor), [shape for name, shape in shapes.items() if name != tensor]
    if mine is None or len(others) != 1 or others[0] is None or cost.output_shapes[:1] != [mine]:
        return False
    return len(others[0]) <= 1 or math.prod(others[0]) == 1  # a scale vector or value, not a gate


def _rescaled_outputs(chosen: list[NodeCost], costs: list[NodeCost]) -> set[str]:
    """The outputs of ``chosen``, those of the activation Q/DQ after them, and for integer layers
    also those of the Casts and rescales after them (see _INTEGER_LAYERS)."""
    outputs = {tensor for c in chosen for tensor in c.outputs}
    frontier = {(tensor, c.op_type in _INTEGER_LAYERS) for c in chosen for tensor in c.outputs}
    if not any(c.op_type in _QDQ_OPS for c in costs) and not any(integer for _, integer in frontier):
        return outputs  # a float model: nothing to follow
    consumers: dict[str, list[NodeCost]] = {}
    for cost in costs:
        for tensor in set(cost.inputs):
            consumers.setdefault(tensor, []).append(cost)
    while frontier:
        tensor, integer = frontier.pop()
        for cost in consumers.get(tensor, ()):
            if _rescales(cost, tensor, integer):
                frontier.update((out, integer) for out in cost.outputs if out not in outputs)
                outputs.update(cost.outputs)
    return outputs


def _layers_with_bias_adds(layers: list[NodeCost], category: str, costs: list[NodeCost]) -> list[NodeCost]:
    """Layers of ``category`` plus the Adds that put a bias on their output (MatMul then Add, as
    exporters write a Linear layer; QLinearAdd in a QOperator model), so that fc_params counts a
    Linear's bias as Gemm's does. ``costs``: all nodes, to follow a layer's output through the
    activation Q/DQ and an integer layer's through its Cast (plumbing nodes, not in ``layers``) and
    rescale to its bias Add."""
    chosen = [c for c in layers if c.category == category]
    outputs = _rescaled_outputs(chosen, costs)
    bias_adds = [
        c for c in layers
        if c.op_type in _BIAS_ADD_OPS and c.category == "elementwise" and c.param_tensors
        and any(tensor in outputs for tensor in c.inputs)
    ]
    return chosen + bias_adds


def _ratio(part: float, whole: float) -> float:
    return float(part) / float(whole) if whole else 0.0


def compute_features(costs: list[NodeCost], structure: Structure) -> dict[str, float]:
    layers = [c for c in costs if c.is_layer]
    path = [c for c in layers if c.on_critical_path]
    counts = {kind: 0 for kind in LAYER_KINDS + EXTRA_LAYER_KINDS}
    for cost in layers:
        for tag in cost.tags:
            if tag in counts:
                counts[tag] += 1

    def macs_of(category: str) -> int:
        return sum(c.macs for c in layers if c.category == category)

    total_macs = sum(c.macs for c in costs)
    total_params = _unique_weights(costs, 1)
    path_macs = sum(c.macs for c in path)
    path_params = _unique_weights(path, 1)
    num_layers = len(layers)
    features: dict[str, float] = {
        "max_branches": max_branches(structure),
        "num_layers": num_layers,
        "critical_path_layers": len(path),
        "prop_critical_path_params": _ratio(path_params, total_params),
        "prop_critical_path_layers": _ratio(len(path), num_layers),
        "prop_critical_path_macs": _ratio(path_macs, total_macs),
        "avg_macs_per_layer": _ratio(total_macs, num_layers),
        "total_macs": total_macs,
        "critical_path_macs": path_macs,
        "conv_macs": macs_of("conv"),
        "fc_macs": macs_of("fc"),
        "matmul_macs": macs_of("matmul"),
        "total_params": total_params,
        "critical_path_params": path_params,
        "conv_params": _unique_weights(_layers_with_bias_adds(layers, "conv", costs), 1),
        "fc_params": _unique_weights(_layers_with_bias_adds(layers, "fc", costs), 1),
        "param_bytes": _unique_weights(costs, 2),
        "activation_bytes_read": sum(c.bytes_read for c in layers),
        "activation_bytes_written": sum(c.bytes_written for c in layers),
    }
    for kind in LAYER_KINDS:
        features[f"num_{kind}"] = counts[kind]
        features[f"prop_{kind}"] = _ratio(counts[kind], num_layers)
    for kind in EXTRA_LAYER_KINDS:
        features[f"num_{kind}"] = counts[kind]
    return {name: features[name] for name in FEATURE_NAMES}
