"""A model's graph inputs, read from the ONNX file's protobuf wire format without the onnx package.

The parent process needs them before any child runs: to refuse an ``--input-shape`` name that no
model of the run has, and to key a model on the shapes it actually uses (a fixed-shape model is the
same measurement whatever ``--default-dim`` says). Only the few fields on the way are decoded; the
rest, weights included, is skipped over in a memory map, so a large model costs no reading.
"""

from __future__ import annotations

import mmap
from typing import Iterator, List, Optional, Tuple

# (input name, its dims: an int per fixed dim and None per symbolic one; None for no shape at all)
GraphInput = Tuple[str, Optional[List[Optional[int]]]]

# field numbers of onnx.proto
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_NAME, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_SPARSE_INITIALIZER = 1, 2, 5, 11, 12, 15
_TENSOR_NAME = 8
_SPARSE_VALUES = 1
_VALUE_INFO_NAME, _VALUE_INFO_TYPE = 1, 2
_TYPE_TENSOR, _TYPE_SPARSE_TENSOR = 1, 8
_TENSOR_TYPE_SHAPE = 2
_SHAPE_DIM = 1
_DIM_VALUE = 1


class _NotOnnx(Exception):
    pass


def read_graph_inputs(path: str) -> Optional[List[GraphInput]]:
    """The graph inputs that are not initializers (what ``session.get_inputs()`` lists), or None when
    the file cannot be read as an ONNX model (the child then records why)."""
    try:
        with open(path, "rb") as handle:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return _graph_inputs(data)
    except (OSError, ValueError, _NotOnnx, UnicodeDecodeError):  # mmap of an empty file is a ValueError
        return None


def has_open_dims(dims: Optional[List[Optional[int]]]) -> bool:
    """Whether a shape can be set by --input-shape or --default-dim: a symbolic dim, or no shape at all."""
    return dims is None or any(dim is None for dim in dims)


def _graph_inputs(data: "mmap.mmap | bytes") -> List[GraphInput]:
    graph = next((value for field, value in _fields(data, 0, len(data)) if field == _MODEL_GRAPH), None)
    if not isinstance(graph, tuple):
        raise _NotOnnx
    inputs: List[GraphInput] = []
    initializers = set()
    for field, value in _fields(data, *graph):
        if not isinstance(value, tuple):
            continue
        if field == _GRAPH_INPUT:
            inputs.append(_value_info(data, *value))
        elif field == _GRAPH_INITIALIZER:
            initializers.add(_string(data, value, _TENSOR_NAME))
        elif field == _GRAPH_SPARSE_INITIALIZER:
            values = _first(data, value, _SPARSE_VALUES)
            if isinstance(values, tuple):
                initializers.add(_string(data, values, _TENSOR_NAME))
    return [item for item in inputs if item[0] not in initializers]


def _value_info(data: "mmap.mmap | bytes", start: int, end: int) -> GraphInput:
    name = _string(data, (start, end), _VALUE_INFO_NAME)
    kind = _first(data, (start, end), _VALUE_INFO_TYPE)
    tensor = None
    if isinstance(kind, tuple):
        tensor = next((value for field, value in _fields(data, *kind)
                       if field in (_TYPE_TENSOR, _TYPE_SPARSE_TENSOR) and isinstance(value, tuple)), None)
    shape = _first(data, tensor, _TENSOR_TYPE_SHAPE) if tensor else None
    if not isinstance(shape, tuple):
        return name, None
    dims: List[Optional[int]] = []
    for field, dim in _fields(data, *shape):
        if field == _SHAPE_DIM and isinstance(dim, tuple):
            value = _first(data, dim, _DIM_VALUE)
            # a negative value (a varint of 2**63 or more) is unknown, as the measurement treats it
            dims.append(value if isinstance(value, int) and value < 1 << 63 else None)
    return name, dims


def _first(data: "mmap.mmap | bytes", span: Tuple[int, int], wanted: int) -> "int | Tuple[int, int] | None":
    return next((value for field, value in _fields(data, *span) if field == wanted), None)


def _string(data: "mmap.mmap | bytes", span: Tuple[int, int], wanted: int) -> str:
    value = _first(data, span, wanted)
    return bytes(data[value[0]:value[1]]).decode("utf-8") if isinstance(value, tuple) else ""


def _fields(data: "mmap.mmap | bytes", start: int, end: int) -> Iterator[Tuple[int, "int | Tuple[int, int] | None"]]:
    """(field number, value) of one message: an int for a varint, (start, end) for a length-delimited
    field (read only if asked for), None for fixed-size ones."""
    position = start
    while position < end:
        tag, position = _varint(data, position, end)
        field, wire = tag >> 3, tag & 7
        value: "int | Tuple[int, int] | None" = None
        if field == 0:
            raise _NotOnnx
        if wire == 0:
            value, position = _varint(data, position, end)
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        elif wire == 2:
            length, position = _varint(data, position, end)
            value = (position, position + length)
            position += length
        else:  # groups (3, 4) are not in onnx.proto
            raise _NotOnnx
        if position > end:
            raise _NotOnnx
        yield field, value


def _varint(data: "mmap.mmap | bytes", position: int, end: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if position >= end or shift > 63:
            raise _NotOnnx
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(field: int, payload: bytes) -> bytes:
    return _varint_bytes(field << 3 | 2) + _varint_bytes(len(payload)) + payload


def _number(field: int, value: int) -> bytes:
    return _varint_bytes(field << 3) + _varint_bytes(value)


def probe_model() -> bytes:
    """A one-node model (Identity of a float [1]; IR 7, opset 13), serialized by hand: what
    ``sniper-profiler device`` opens a session of to check that the provider loads."""
    tensor_type = _number(1, 1) + _message(_TENSOR_TYPE_SHAPE, _message(_SHAPE_DIM, _number(_DIM_VALUE, 1)))
    def value_info(name: bytes) -> bytes:
        return _message(_VALUE_INFO_NAME, name) + _message(_VALUE_INFO_TYPE, _message(_TYPE_TENSOR, tensor_type))
    node = _message(1, b"x") + _message(2, b"y") + _message(4, b"Identity")
    graph = (_message(_GRAPH_NODE, node) + _message(_GRAPH_NAME, b"probe") + _message(_GRAPH_INPUT, value_info(b"x"))
             + _message(_GRAPH_OUTPUT, value_info(b"y")))
    return _number(1, 7) + _message(8, _number(2, 13)) + _message(_MODEL_GRAPH, graph)
