"""Evaluate small static tensors (shape arithmetic) with numpy where ONNX data propagation stops.

Exporters compute Reshape targets from ``Shape`` through Slice, Gather, Concat, Div, ... ONNX's data
propagation misses some of these chains (Slice of a shape in onnx 1.23), which would leave every
tensor after the Reshape without a shape. Only tensors of at most ``MAX_ELEMENTS`` elements are
evaluated; weights are never read.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import onnx

MAX_ELEMENTS = 1024
Values = dict[str, np.ndarray]


def _attr(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _axes(node: onnx.NodeProto, args: list) -> list[int]:
    axes = args[1] if len(args) > 1 and args[1] is not None else _attr(node, "axes", [])
    return [int(a) for a in np.asarray(axes).reshape(-1)]


def _slice(node, args):
    data, starts, ends = args[0], args[1], args[2]
    axes = args[3] if len(args) > 3 and args[3] is not None else range(len(starts))
    steps = args[4] if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis)] = slice(int(start), int(end), int(step))
    return data[tuple(index)]


def _unsqueeze(node, args):
    out = args[0]
    for axis in sorted(a % (out.ndim + len(_axes(node, args))) for a in _axes(node, args)):
        out = np.expand_dims(out, axis)
    return out


def _squeeze(node, args):
    axes = _axes(node, args)
    return np.squeeze(args[0], axis=tuple(axes) if axes else None)


def _reshape(node, args):
    data, shape = args
    target = [data.shape[i] if d == 0 and not _attr(node, "allowzero", 0) else int(d) for i, d in enumerate(shape)]
    return data.reshape(target)


def _div(node, args):
    a, b = args
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b)).astype(a.dtype)
    return a / b


def _cast(node, args):
    return args[0].astype(onnx.helper.tensor_dtype_to_np_dtype(_attr(node, "to")))


def _quantize(node, args):
    """Per-tensor QuantizeLinear to an 8- or 16-bit integer type (a QDQ model quantizes Constant
    outputs, such as a LayerNorm's epsilon, with QuantizeLinear nodes)."""
    data, scale = args[0], args[1]
    zero = args[2] if len(args) > 2 and args[2] is not None else None
    if scale.size != 1 or (zero is not None and zero.size != 1):
        raise ValueError("per-axis or blocked scales are not folded")
    output_dtype = _attr(node, "output_dtype", 0)
    dtype = zero.dtype if zero is not None else (
        onnx.helper.tensor_dtype_to_np_dtype(output_dtype) if output_dtype else np.dtype(np.uint8))
    if not np.issubdtype(dtype, np.integer):
        raise ValueError("float8 and 4-bit outputs are not folded")
    info = np.iinfo(dtype)
    offset = 0.0 if zero is None else float(zero.reshape(()))
    return np.clip(np.rint(data.astype(np.float64) / float(scale.reshape(()))) + offset, info.min, info.max).astype(dtype)


def _dequantize(node, args):
    """Per-tensor DequantizeLinear (a QDQ model's quantized constants: a LayerNorm's epsilon)."""
    data, scale = args[0], args[1]
    zero = args[2] if len(args) > 2 and args[2] is not None else np.zeros((), data.dtype)
    if scale.size != 1 or zero.size != 1:
        raise ValueError("per-axis or blocked scales are not folded")
    return ((data.astype(np.float64) - zero.astype(np.float64).reshape(())) * scale.reshape(())).astype(scale.dtype)


def _constant_of_shape(node, args):
    value = _attr(node, "value")
    fill = onnx.numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    return np.full([int(d) for d in args[0]], fill.reshape(-1)[0], dtype=fill.dtype)


def _shape(node, args):
    raise AssertionError("Shape is evaluated from the shape table")  # pragma: no cover


EVALUATORS: dict[str, Callable] = {
    "Identity": lambda n, a: a[0],
    "Cast": _cast,
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize,
    "Gather": lambda n, a: np.take(a[0], a[1].astype(np.int64), axis=_attr(n, "axis", 0)),
    "Slice": _slice,
    "Concat": lambda n, a: np.concatenate([np.atleast_1d(x) for x in a], axis=_attr(n, "axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Add": lambda n, a: a[0] + a[1],
    "Sub": lambda n, a: a[0] - a[1],
    "Mul": lambda n, a: a[0] * a[1],
    "Div": _div,
    "Mod": lambda n, a: np.mod(a[0], a[1]),
    "Neg": lambda n, a: -a[0],
    "Sqrt": lambda n, a: np.sqrt(a[0]),
    "Max": lambda n, a: np.maximum.reduce(a),
    "Min": lambda n, a: np.minimum.reduce(a),
    "Equal": lambda n, a: np.equal(a[0], a[1]),
    "Less": lambda n, a: np.less(a[0], a[1]),
    "Greater": lambda n, a: np.greater(a[0], a[1]),
    "Not": lambda n, a: np.logical_not(a[0]),
    "Where": lambda n, a: np.where(a[0], a[1], a[2]),
    "Range": lambda n, a: np.arange(a[0].item(), a[1].item(), a[2].item()).astype(a[0].dtype),
    "ConstantOfShape": _constant_of_shape,
    "Expand": lambda n, a: a[0] * np.ones([int(d) for d in a[1]], dtype=a[0].dtype),
    "ReduceProd": lambda n, a: np.prod(a[0], keepdims=bool(_attr(n, "keepdims", 1))),
    "Transpose": lambda n, a: np.transpose(a[0], _attr(n, "perm")),
    "Tile": lambda n, a: np.tile(a[0], [int(r) for r in a[1]]),
    "Abs": lambda n, a: np.abs(a[0]),
    "Pow": lambda n, a: np.power(a[0], a[1]).astype(a[0].dtype),
    "And": lambda n, a: np.logical_and(a[0], a[1]),
    "Or": lambda n, a: np.logical_or(a[0], a[1]),
    "Floor": lambda n, a: np.floor(a[0]),
    "Ceil": lambda n, a: np.ceil(a[0]),
}


def _shape_of(node: onnx.NodeProto, shapes: dict) -> np.ndarray | None:
    info = shapes.get(node.input[0])
    if info is None or info.known_shape is None:
        return None
    dims = np.array(info.known_shape, dtype=np.int64)
    if node.op_type == "Size":
        return np.array(np.prod(dims), dtype=np.int64)
    start, end = _attr(node, "start", 0), _attr(node, "end", None)
    return dims[start:end]


def fold_static_values(nodes: list[onnx.NodeProto], shapes: dict, values: Values) -> Values:
    """Values of small tensors computed only from constants and known shapes (added to ``values``)."""
    computed: Values = {}
    for node in nodes:
        if not node.output or node.output[0] in values or node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in ("Shape", "Size"):
            result = _shape_of(node, shapes)
        else:
            evaluator = EVALUATORS.get(node.op_type)
            args = [values.get(name) if name else None for name in node.input]
            if evaluator is None or any(a is None for a, name in zip(args, node.input) if name):
                continue
            try:
                with np.errstate(all="ignore"):
                    result = np.asarray(evaluator(node, args))
            except Exception:  # noqa: BLE001 - an op we cannot fold leaves its output to inference
                continue
        if result is None or result.size > MAX_ELEMENTS:
            continue
        values[node.output[0]] = computed[node.output[0]] = result
    return computed


def initial_values(graph: onnx.GraphProto) -> Values:
    """Values of small inline initializers and Constant nodes (weightless ones have none)."""
    values: Values = {}
    tensors = [(t.name, t) for t in graph.initializer]
    tensors += [(n.output[0], a.t) for n in graph.node if n.op_type == "Constant" and n.output
                for a in n.attribute if a.name == "value"]
    for name, tensor in tensors:
        count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
        if count <= MAX_ELEMENTS and tensor.data_location != onnx.TensorProto.EXTERNAL:
            try:
                values[name] = onnx.numpy_helper.to_array(tensor)
            except Exception:  # noqa: BLE001 - dims without data
                continue
    return values


def as_constant(name: str, value: np.ndarray) -> onnx.NodeProto:
    return onnx.helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(value, name))
