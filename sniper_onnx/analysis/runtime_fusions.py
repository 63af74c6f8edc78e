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
