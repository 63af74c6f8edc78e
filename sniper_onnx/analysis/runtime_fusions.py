"""Node tags for fusions a runtime makes that change a layer's speed, not its arithmetic.

onnxruntime (graph optimizations `extended` or `all`; `basic` leaves the pair) fuses a residual Add and the LayerNormalization
reading it into one ``SkipLayerNormalization`` when both Add operands are static 3-D ``[B, T, D]``
tensors of one shape and the LayerNorm is the Add's only reader. On the reference CPU that op is
3-8x slower per element than the two it replaces (docs/predictor-measurements.md, "Transformers exported from
torch"). The generator's 2-D token nets never meet the pattern, torch exports nearly always do, so
the kernel table has to tell them apart (its ``is_skip_layer_norm`` column).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # kernels.py reads the tag name; it must not pull in the cost model
    from sniper_onnx.analysis.costs import NodeCost

SKIP_LAYER_NORM_TAG = "skip_layer_norm"
_FUSED_OPS = ("com.microsoft::SkipLayerNormalization",)
# A Softmax over another axis than the last (opset 13 on) runs onnxruntime's transposing kernel:
# 17x the time of one over the last axis on [1, 64, 64, 64] here, and 5x what the kernel sum,
# which training taught only last-axis Softmax, predicted (docs/features.md, "Kernel table").
INNER_AXIS_SOFTMAX_TAG = "softmax_inner_axis"
_SOFTMAX_OPS = ("Softmax", "LogSoftmax", "Hardmax")
_SOFTMAX_AXIS_OPSET = 13  # before it, axis flattened the dims from it on into one and never transposed


def _static_rank3(shape: object) -> bool:
    return isinstance(shape, (list, tuple)) and len(shape) == 3 and all(isinstance(d, int) and d > 0 for d in shape)


def _fusable_add(add: NodeCost) -> bool:
    if add.op_type != "Add" or len(add.input_shapes) != 2:
        return False
    first, second = add.input_shapes
    return _static_rank3(first) and _static_rank3(second) and list(first) == list(second)


def tag_skip_layer_norms(costs: list[NodeCost], graph_outputs: Iterable[str]) -> None:
    """Adds ``skip_layer_norm`` to the tags of every LayerNormalization onnxruntime would fuse with
    the residual Add before it, and of every already-fused SkipLayerNormalization."""
    producers = {tensor: cost for cost in costs for tensor in cost.outputs}
    readers: dict[str, int] = defaultdict(int)
    for cost in costs:
        for tensor in set(cost.inputs):
            readers[tensor] += 1
    exposed = set(graph_outputs)
    for cost in costs:
        if cost.op_type in _FUSED_OPS:
            cost.tags = (*cost.tags, SKIP_LAYER_NORM_TAG)
        if cost.op_type != "LayerNormalization" or not cost.inputs:
            continue
        source = cost.inputs[0]
        add = producers.get(source)
        if add is not None and _fusable_add(add) and readers[source] == 1 and source not in exposed:
            cost.tags = (*cost.tags, SKIP_LAYER_NORM_TAG)


def tag_inner_axis_softmaxes(costs: list[NodeCost], axes: dict[str, int], opset: int) -> None:
    """Adds ``softmax_inner_axis`` to the tags of every Softmax, LogSoftmax or Hardmax whose
    ``axis`` (``axes``: by node label, the attribute as written) is not its input's last, at
    opset 13 or later."""
    if opset < _SOFTMAX_AXIS_OPSET:
        return
    for cost in costs:
        shape = cost.input_shapes[0] if cost.op_type in _SOFTMAX_OPS and cost.input_shapes else None
        if not isinstance(shape, (list, tuple)) or not shape or cost.name not in axes:
            continue
        if axes[cost.name] % len(shape) != len(shape) - 1:
            cost.tags = (*cost.tags, INNER_AXIS_SOFTMAX_TAG)
