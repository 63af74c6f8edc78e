"""If nodes whose condition is known before the model runs, replaced by the branch they take.

torch's TorchScript exporter writes ``x.squeeze(d)`` (opset 13 on) as ``If(Equal(Shape(x)[d], 1))``
with a Squeeze in one branch and an Identity in the other: the condition follows from the input
shapes, so every run takes the same branch. Left as an If, the network held "control flow": the
nodes after it had unknown shapes, and the kernel sum, which has no row for a subgraph, gave way to
the PCN (a tester's LocalResponseNorm net: 1.90x its measured time). The taken branch's nodes are
put in the If's place, their own tensors renamed under the If's name, its outputs under the If's.
A branch that itself holds subgraphs is left alone.
"""

from __future__ import annotations

import numpy as np
import onnx

from sniper_onnx.analysis.folding import fold_static_values, initial_values


def taken_branches(folded: onnx.ModelProto, shapes: dict) -> dict[str, str]:
    """For each top-level If of ``folded`` (the light model after shape inference and folding)
    whose condition is a static value: its first output -> the branch attribute it takes."""
    ifs = [node for node in folded.graph.node if node.op_type == "If" and node.input and node.output]
    if not ifs:
        return {}
    values = initial_values(folded.graph)
    values.update(fold_static_values(list(folded.graph.node), shapes, values))
    taken = {}
    for node in ifs:
        condition = values.get(node.input[0])
        if condition is not None and np.asarray(condition).size == 1:
            taken[node.output[0]] = "then_branch" if bool(np.asarray(condition).reshape(())) else "else_branch"
    return taken


def _holds_subgraphs(graph: onnx.GraphProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute)


def _branch_nodes(node: onnx.NodeProto, branch: onnx.GraphProto, prefix: str) -> tuple[list, list]:
    """The branch's nodes and initializers, renamed to live in the enclosing graph in ``node``'s place."""
    local = {out for inner in branch.node for out in inner.output if out} | {t.name for t in branch.initializer}
    renamed = {name: f"{prefix}/{name}" for name in local}
    passed_through = []
    for result, target in zip(branch.output, node.output):
        if result.name in local:
            renamed[result.name] = target
        else:  # a branch that returns an outer tensor as it is
            passed_through.append(onnx.helper.make_node("Identity", [result.name], [target], name=f"{prefix}/{target}"))
    nodes = []
    for inner in branch.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(inner)
        copy.name = f"{prefix}/{inner.name}" if inner.name else ""
        copy.input[:] = [renamed.get(name, name) for name in inner.input]
        copy.output[:] = [renamed.get(name, name) for name in inner.output]
        nodes.append(copy)
    initializers = []
    for tensor in branch.initializer:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.name = renamed[tensor.name]
        initializers.append(copy)
    return nodes + passed_through, initializers


def inline_taken_branches(model: onnx.ModelProto, taken: dict[str, str]) -> tuple[onnx.ModelProto, int]:
    """A copy of ``model`` with each If of ``taken`` replaced by its taken branch, and how many were
    (``model`` itself when none was: the caller's model is never changed)."""
    model, original = onnx.ModelProto(), model
    model.CopyFrom(original)
    nodes, inlined = [], 0
    for index, node in enumerate(model.graph.node):
        which = taken.get(node.output[0]) if node.op_type == "If" and node.output else None
        branch = next((a.g for a in node.attribute if a.name == which), None) if which else None
        if branch is None or _holds_subgraphs(branch) or len(branch.output) != len(node.output):
            nodes.append(node)
            continue
        body, weights = _branch_nodes(node, branch, node.name or f"If_{index}")
        nodes.extend(body)
        model.graph.initializer.extend(weights)
        inlined += 1
    if not inlined:
        return original, 0
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model, inlined
