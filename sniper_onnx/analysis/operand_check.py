"""Nodes whose operands do not fit each other: a Conv weight made for another channel count, a
matrix product whose inner dimensions differ.

ONNX shape inference does not check a Conv's weight against its input, so a Conv whose weight reads
5 channels of a 3-channel input gets an output shape and is costed as if it read 5; onnxruntime
refuses the model. For a MatMul or Gemm, inference gives up and the only word was "shape inference
could not follow them". Here such nodes are named in one warning with the sizes that disagree, and
their outputs and everything computed from them become unknown (as for the Reshapes in
``reshape_check``): the costs are then reported as incomplete, not wrong.
"""

from __future__ import annotations

from typing import Callable, Mapping

import onnx

from sniper_onnx.analysis.loading import TensorInfo, node_label, subgraph_outer_names
from sniper_onnx.analysis.reshape_check import forget_after, shown_shape
from sniper_onnx.analysis.shape_rules import fused_matmul_operands, node_attr as _attr
from sniper_onnx.errors import SniperError

MAX_NAMED_NODES = 4
DEFAULT_DOMAINS = ("", "ai.onnx")
MICROSOFT = "com.microsoft"

Shape = tuple
# (node, the known shapes of its inputs, None where unknown) -> what does not fit, or None
Check = Callable[[onnx.NodeProto, list], "str | None"]


def _channels(count: int) -> str:
    return f"{count} channel{'' if count == 1 else 's'}"


def _conv_check(data_slot: int, weight_slot: int) -> Check:
    """Conv's weight is [C_out, C_in / group, *kernel]: its dim 1 times group must be the input's channels."""
    def check(node: onnx.NodeProto, inputs: list) -> str | None:
        data, weight = _at(inputs, data_slot), _at(inputs, weight_slot)
        if data is None or weight is None or len(data) < 2 or len(weight) < 2:
            return None
        group = int(_attr(node, "group", 1))
        if weight[1] * group == data[1]:
            return None
        reads = _channels(weight[1]) if group == 1 else f"{_channels(weight[1])} x group {group} = {weight[1] * group}"
        return f"weight {shown_shape(weight)} reads {reads}, input {shown_shape(data)} has {data[1]}"

    return check


def _conv_transpose_check(node: onnx.NodeProto, inputs: list) -> str | None:
    """ConvTranspose's weight is [C_in, C_out / group, *kernel]: its dim 0 is the input's channels."""
    data, weight = _at(inputs, 0), _at(inputs, 1)
    if data is None or weight is None or len(data) < 2 or len(weight) < 2 or weight[0] == data[1]:
        return None
    return f"weight {shown_shape(weight)} reads {_channels(weight[0])}, input {shown_shape(data)} has {data[1]}"


def _set_flags(node: onnx.NodeProto, names: tuple[str, ...]) -> str:
    """' (transA=1)': the transposes that decide which dim an operand contracts, where set."""
    flags = [f"{name}=1" for name in names if _attr(node, name, 0)]
    return f" ({', '.join(flags)})" if flags else ""


def _inner_mismatch(node: onnx.NodeProto, a: Shape, b: Shape, inner_a: int, inner_b: int) -> str | None:
    if inner_a == inner_b:
        return None
    a_flags, b_flags = _set_flags(node, ("transBatchA", "transA")), _set_flags(node, ("transBatchB", "transB"))
    return f"A {shown_shape(a)}{a_flags} has inner dim {inner_a}, B {shown_shape(b)}{b_flags} has {inner_b}"


def _matmul_check(a_slot: int, b_slot: int) -> Check:
    """numpy's matmul: A's last dim against B's second last (a 1-D operand's only dim)."""
    def check(node: onnx.NodeProto, inputs: list) -> str | None:
        a, b = _at(inputs, a_slot), _at(inputs, b_slot)
        if not a or not b:
            return None
        return _inner_mismatch(node, a, b, a[-1], b[0] if len(b) == 1 else b[-2])

    return check


def _gemm_check(node: onnx.NodeProto, inputs: list) -> str | None:
    a, b = _at(inputs, 0), _at(inputs, 1)
    if a is None or b is None or len(a) != 2 or len(b) != 2:
        return None
    inner_a = a[0] if _attr(node, "transA", 0) else a[1]
    inner_b = b[1] if _attr(node, "transB", 0) else b[0]
    return _inner_mismatch(node, a, b, inner_a, inner_b)


def _fused_matmul_check(node: onnx.NodeProto, inputs: list) -> str | None:
    a, b = _at(inputs, 0), _at(inputs, 1)
    operands = None if a is None or b is None else fused_matmul_operands(node, a, b)
    if operands is None:
        return None
    return _inner_mismatch(node, a, b, operands[0][-1], operands[1][-2])


def _at(inputs: list, slot: int) -> Shape | None:
    return inputs[slot] if slot < len(inputs) else None


CHECKS: dict[tuple[str, str], Check] = {
    **{(domain, op): check for domain in DEFAULT_DOMAINS for op, check in {
        "Conv": _conv_check(0, 1),
        "ConvInteger": _conv_check(0, 1),
        "QLinearConv": _conv_check(0, 3),
        "ConvTranspose": _conv_transpose_check,
        "MatMul": _matmul_check(0, 1),
        "MatMulInteger": _matmul_check(0, 1),
        "QLinearMatMul": _matmul_check(0, 3),
        "Gemm": _gemm_check,
    }.items()},
    (MICROSOFT, "FusedConv"): _conv_check(0, 1),
    (MICROSOFT, "FusedGemm"): _gemm_check,
    (MICROSOFT, "FusedMatMul"): _fused_matmul_check,
}


def _misfit(node: onnx.NodeProto, shapes: dict[str, TensorInfo]) -> tuple[str, str] | None:
    """(op type, what does not fit) of a node whose operands do not fit each other, else None."""
    check = CHECKS.get((node.domain, node.op_type))
    if check is None:
        return None
    inputs = [shapes[name].known_shape if name and name in shapes else None for name in node.input]
    why = check(node, inputs)
    return None if why is None else (node.op_type, why)


def _warning(found: list[tuple[str, str, str]], cause: str | None = None) -> str:
    details = [f"'{label}' ({op}: {why})" for label, op, why in found[:MAX_NAMED_NODES]]
    more = f" and {len(found) - MAX_NAMED_NODES} more" if len(found) > MAX_NAMED_NODES else ""
    one = len(found) == 1
    subject = ("a node's" if one else f"{len(found)} nodes'") + " operands do not fit each other"
    whose = "its" if one else "their"
    cause = cause or "the model's own shapes are inconsistent"
    return (f"{subject}, which onnxruntime would refuse: {'; '.join(details)}{more}; {cause}, so {whose} outputs "
            "and the shapes after them count as unknown")


def check_operands(graph: onnx.GraphProto, order: list[int], shapes: dict[str, TensorInfo],
                   warnings: list[str], requested: Mapping[str, str] | None = None, source: str = "") -> list[str]:
    """Warn once about nodes whose operands do not fit, and make their outputs and all tensors
    computed from them unknown (in ``shapes``). Returns the nodes' labels.

    ``requested``: the inputs --input-shape set to other dims than the declared ones -> (their
    declaration as messages show it, whether it changed a fixed dim or the input declares no
    shape). A misfit such an input reaches is that value's doing, not the model's: an error naming
    the input (as an input too small for a kernel is). Where --input-shape only set symbolic dims,
    the model claims to run at any size, and the warning says that the value reaches the node and
    that the export may have fixed a dim."""
    requested = dict(requested or {})
    reached = _reached_from(graph, order, set(requested))
    found = [(label, op, why) for label, (op, why) in forget_after(graph, order, shapes, _misfit)]
    for label, op, why in found:
        origin = reached.get(label)
        if origin is not None and requested[origin][1]:
            given = shown_shape(shapes[origin].known_shape or ())
            raise SniperError(f"{source}: --input-shape {origin}={given} does not fit the model: '{label}' ({op}: {why}), "
                              f"which onnxruntime would refuse; input '{origin}' is declared {requested[origin][0]}, "
                              "give a size that fits it")
    if found:
        origins = sorted({reached[label] for label, _, _ in found if label in reached})
        cause = None
        if origins:
            given = ", ".join(f"{name}={shown_shape(shapes[name].known_shape or ())} (the model's {requested[name][0]})"
                              for name in origins)
            cause = (f"--input-shape {given} reaches {'it' if len(found) == 1 else 'them'}: the model declares that "
                     "size open but does not run at it (the export fixed a dimension; re-export with dynamic axes, "
                     "or analyse at the exported size)")
        warnings.append(_warning(found, cause))
    return [label for label, _, _ in found]


def _reached_from(graph: onnx.GraphProto, order: list[int], inputs: set[str]) -> dict[str, str]:
    """Node label -> the first of ``inputs`` whose values reach it (through subgraphs too)."""
    if not inputs:
        return {}
    origin_of: dict[str, str] = {name: name for name in inputs}
    reached: dict[str, str] = {}
    for index in order:
        node = graph.node[index]
        origin = next((origin_of[n] for n in [*node.input, *subgraph_outer_names(node)] if n in origin_of), None)
        if origin is None:
            continue
        reached[node_label(node, index)] = origin
        origin_of.update((n, origin) for n in node.output if n)
    return reached
