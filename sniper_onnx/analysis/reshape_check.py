"""Reshapes whose fixed target no longer fits their input.

A tracing exporter (torch.onnx) often writes a Reshape's target as constants taken from the example
input, even on a graph whose inputs are declared dynamic. Analysed at another size, ONNX shape
inference still gives such a Reshape its stale target (128x1x64 in, 16x4x16 out), and every shape
after it is wrong, so MACs would be silently wrong. onnxruntime refuses the model at that size.
Here the first such Reshapes are named in one warning, and their outputs and everything computed
from them become unknown: the costs after them are then reported as incomplete, not wrong.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import onnx

from sniper_onnx.analysis.loading import TensorInfo, node_label, subgraph_outer_names

MAX_NAMED_RESHAPES = 4
RESHAPE_FIX = ("the export fixed a dimension: re-export with this shape or with dynamic axes on every Reshape")


def shown_shape(shape: tuple) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _mismatch(node: onnx.NodeProto, shapes: dict[str, TensorInfo]) -> tuple[tuple, tuple] | None:
    """(input shape, output shape) of a Reshape whose element counts are both known and differ."""
    if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or not node.input or not node.output:
        return None
    data, out = shapes.get(node.input[0]), shapes.get(node.output[0])
    if data is None or out is None or data.known_shape is None or out.known_shape is None:
        return None
    if math.prod(data.known_shape) == math.prod(out.known_shape):
        return None
    return data.known_shape, out.known_shape


def forget_shapes(names: list[str], shapes: dict[str, TensorInfo], tainted: set[str]) -> None:
    """Unknown shapes for ``names`` (the rank too: it came from the stale target), kept in ``tainted``."""
    for name in names:
        if name:
            tainted.add(name)
            shapes[name] = TensorInfo(None, shapes[name].elem_type if name in shapes else 0)


def reads_tainted(node: onnx.NodeProto, tainted: set[str]) -> bool:
    # an If or Loop body reading a tainted tensor from outside taints the node's outputs too
    return bool(tainted) and any(name in tainted for name in [*node.input, *subgraph_outer_names(node)])


def _warning(found: list[tuple[str, tuple, tuple]]) -> str:
    details = [f"'{label}' ({shown_shape(data)} = {math.prod(data)} elements in, target {shown_shape(target)} = "
               f"{math.prod(target)})" for label, data, target in found[:MAX_NAMED_RESHAPES]]
    more = f" and {len(found) - MAX_NAMED_RESHAPES} more" if len(found) > MAX_NAMED_RESHAPES else ""
    one = len(found) == 1
    subject = "a Reshape's target holds" if one else f"{len(found)} Reshapes' targets hold"
    whose, after = ("its", "it") if one else ("their", "them")
    return (f"{subject} another element count than {whose} input, which onnxruntime would refuse: "
            f"{'; '.join(details)}{more}; {RESHAPE_FIX}; the shapes after {after} count as unknown")


def forget_after(graph: onnx.GraphProto, order: list[int], shapes: dict[str, TensorInfo],
                 fault: Callable[[onnx.NodeProto, dict[str, TensorInfo]], Any]) -> list[tuple[str, Any]]:
    """(label, fault) of each node in ``order`` where ``fault`` finds one (not None); their outputs and
    every tensor computed from them become unknown in ``shapes``. A node after a faulty one is not
    checked: its inputs' shapes are already unknown."""
    found: list[tuple[str, Any]] = []
    tainted: set[str] = set()
    for index in order:
        node = graph.node[index]
        if reads_tainted(node, tainted):
            forget_shapes(list(node.output), shapes, tainted)
            continue
        problem = fault(node, shapes)
        if problem is not None:
            found.append((node_label(node, index), problem))
            forget_shapes(list(node.output), shapes, tainted)
    return found


def check_reshapes(graph: onnx.GraphProto, order: list[int], shapes: dict[str, TensorInfo],
                   warnings: list[str]) -> list[str]:
    """Warn once about Reshapes whose input and target hold different element counts, and make their
    outputs and all tensors computed from them unknown (in ``shapes``). Returns the Reshapes' labels.
    A Reshape after another one found is not checked: its input's shape is already unknown."""
    found = [(label, *mismatch) for label, mismatch in forget_after(graph, order, shapes, _mismatch)]
    if found:
        warnings.append(_warning(found))
    return [label for label, _, _ in found]
