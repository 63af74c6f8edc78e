"""Ops onnxruntime runs as the nodes of their ONNX function, one kernel each.

onnxruntime (1.31, CPU) registers no kernel for GroupNormalization, Mish, HardSwish or Swish. When a
session is created it replaces each such node by its ONNX function body, at every graph
optimization level: a saved optimized model holds GroupNormalization-21 as 29 nodes, Mish as
Softplus, Tanh and Mul, HardSwish as HardSigmoid and Mul, Swish-24 as Cast, Mul, Sigmoid and Mul.
One kernel-table row per such node timed one kernel where the runtime runs up to eleven over the
whole tensor (docs/features.md, "Kernel table"; docs/predictor-measurements.md, "Ops onnxruntime
runs as their function body").

Each body lists the kernels that read or write the tensor, on the shapes they run on; the body's
shape arithmetic (Shape, Concat, Reshape and Casts of scalars) gets no row, as plumbing never does.
Rows of the kernel table only: Table-1 features still count one layer per node, as the model is
written.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

# GroupNormalization's group count is an attribute the node rows do not carry: taken as the largest
# power of two up to 32 that divides the channels (32 for the usual 32-group norms). It sizes only
# the per-group statistics (the mean and variance rows' outputs and four rows of a few values each).
ASSUMED_GROUPS = 32


def _get(node: Any, name: str) -> Any:
    return node[name] if isinstance(node, Mapping) else getattr(node, name)


def _step(op_type: str, inputs: Sequence[Sequence[int]], output: Sequence[int], macs: int) -> Dict[str, Any]:
    """A body node in the shape of an ``analyze --json --nodes`` row."""
    return {"op_type": op_type, "category": "elementwise", "is_layer": True, "subgraph": False, "macs": macs,
            "params": 0, "param_bytes": 0, "input_shapes": [list(s) for s in inputs], "output_shapes": [list(output)],
            "tags": ()}


def _data_shape(node: Any) -> Optional[List[int]]:
    shapes = _get(node, "input_shapes") or []
    shape = shapes[0] if shapes else None
    if not isinstance(shape, (list, tuple)) or any(not isinstance(d, int) or d < 0 for d in shape):
        return None
    return list(shape)


def _elementwise(*ops: str) -> Callable[[List[int]], List[Dict[str, Any]]]:
    """Unary steps on x, then a Mul of x by the last one's result (x * f(x))."""
    def body(x: List[int]) -> List[Dict[str, Any]]:
        size = math.prod(x)
        return [_step(op, [x], x, size) for op in ops] + [_step("Mul", [x, x], x, size)]
    return body


def _swish(x: List[int]) -> List[Dict[str, Any]]:
    """Swish-24: x * Sigmoid(alpha * x)."""
    size = math.prod(x)
    return [_step("Mul", [[], x], x, size), _step("Sigmoid", [x], x, size), _step("Mul", [x, x], x, size)]


def _group_normalization(x: List[int]) -> List[Dict[str, Any]]:
    """Mean and mean square per group, (x - mean) / sqrt(var + eps), then scale and bias per channel."""
    if len(x) < 2:
        return []
    n, c = x[0], x[1]
    groups = math.gcd(c, ASSUMED_GROUPS) or 1
    size = math.prod(x)
    per_group = size // max(n * groups, 1)
    grouped, stats = [n, groups, per_group], [n, groups, 1]
    pooled, reduced = [n, groups, per_group, 1], [n, groups, 1, 1]
    channels, per_channel = [n, c, size // max(n * c, 1)], [1, c, 1]
    small = n * groups
    return [
        _step("GlobalAveragePool", [pooled], reduced, size),  # ReduceMean over the group
        _step("Sub", [grouped, stats], grouped, size),
        _step("Mul", [stats, stats], stats, small),
        _step("Mul", [grouped, grouped], grouped, size),
        _step("GlobalAveragePool", [pooled], reduced, size),
        _step("Sub", [stats, stats], stats, small),
        _step("Add", [stats, []], stats, small),
        _step("Sqrt", [stats], stats, small),
        _step("Div", [grouped, stats], grouped, size),
        _step("Mul", [per_channel, channels], channels, size),
        _step("Add", [channels, per_channel], channels, size),
    ]


BODIES: Dict[str, Callable[[List[int]], List[Dict[str, Any]]]] = {
    "GroupNormalization": _group_normalization,
    "Mish": _elementwise("Softplus", "Tanh"),
    "HardSwish": _elementwise("HardSigmoid"),
    "Swish": _swish,
}
# the op types each body runs, for the predictors' unseen-op check
BODY_OPS: Dict[str, tuple] = {
    "GroupNormalization": ("GlobalAveragePool", "Sub", "Mul", "Add", "Sqrt", "Div"),
    "Mish": ("Softplus", "Tanh", "Mul"),
    "HardSwish": ("HardSigmoid", "Mul"),
    "Swish": ("Mul", "Sigmoid"),
}


def runtime_op_types(op_type: str) -> tuple:
    """The op types onnxruntime runs for a node of ``op_type``: its body's, or itself."""
    return BODY_OPS.get(op_type, (op_type,))


def runtime_nodes(node: Any) -> List[Any]:
    """The nodes onnxruntime runs for ``node``: its function body's kernels, or the node itself (also
    when its data shape is unknown, so that the row still says what the node is). A Swish the
    analyzer's (opt-in) ``silu`` pattern made of a Sigmoid and a Mul runs those two, as written."""
    op_type = _get(node, "op_type")
    fused = node.get("fused_from") if isinstance(node, Mapping) else getattr(node, "fused_from", ())
    body = _elementwise("Sigmoid") if op_type == "Swish" and fused else BODIES.get(op_type)
    x = _data_shape(node) if body is not None else None
    steps = body(x) if x is not None else []
    return steps or [node]
