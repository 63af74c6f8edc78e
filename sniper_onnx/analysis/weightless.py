"""Read an ONNX file's structure without reading its weights.

The analyzer needs every initializer's name, dtype and dims but never the values of large ones.
Parsing a 100 MB ModelProto copies all of its weight bytes twice (read, then parse), which costs more
than the whole analysis. This reader walks the protobuf wire format over a memory map instead and
rebuilds a ModelProto whose large initializers keep their metadata but not their data; pages holding
weights are never touched. Small tensors (shape-like constants) keep their data.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import onnx

MODEL_GRAPH = 7
GRAPH_INITIALIZER = 5
TENSOR_DATA_FIELDS = frozenset({4, 5, 6, 7, 9, 10, 11})  # float, int32, string, int64, raw, double, uint64
KEEP_DATA_BYTES = 8192  # 1024 int64 values: plenty for Reshape shapes, Slice starts, Resize scales


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message (not ONNX, or truncated)."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError("the file ends inside a field")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError("malformed varint")


def _fields(buf, start: int, end: int):
    """Yields (field number, wire type, field start, value start, field end) of one message."""
    pos = start
    while pos < end:
        field_start = pos
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        value_start = pos
        if wire == 0:
            _, pos = _varint(buf, pos, end)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, value_start = _varint(buf, pos, end)
            pos = value_start + length
        elif wire == 5:
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire}")
        if number == 0 or pos > end:
            raise WireError("the file ends inside a field" if pos > end else "field number 0")
        yield number, wire, field_start, value_start, pos


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _light_tensor(buf, start: int, end: int) -> bytes | None:
    """The tensor without its data when the data is large; None to keep the original bytes."""
    fields = list(_fields(buf, start, end))
    data_bytes = sum(stop - begin for number, _, begin, _, stop in fields if number in TENSOR_DATA_FIELDS)
    if data_bytes <= KEEP_DATA_BYTES:
        return None
    return b"".join(bytes(buf[begin:stop]) for number, _, begin, _, stop in fields if number not in TENSOR_DATA_FIELDS)


def _light_graph(buf, start: int, end: int) -> bytes:
    parts = []
    for number, wire, begin, value_start, stop in _fields(buf, start, end):
        light = _light_tensor(buf, value_start, stop) if number == GRAPH_INITIALIZER and wire == 2 else None
        parts.append(bytes(buf[begin:stop]) if light is None else _length_delimited(GRAPH_INITIALIZER, light))
    return b"".join(parts)


def light_model_bytes(buf) -> bytes:
    parts = []
    for number, wire, begin, value_start, stop in _fields(buf, 0, len(buf)):
        if number == MODEL_GRAPH and wire == 2:
            parts.append(_length_delimited(MODEL_GRAPH, _light_graph(buf, value_start, stop)))
        else:
            parts.append(bytes(buf[begin:stop]))
    return b"".join(parts)


def load_weightless(path: Path) -> onnx.ModelProto:
    """The model with large initializers' data left out (dims, dtype and name kept)."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        data = light_model_bytes(buf)
    model = onnx.ModelProto()
    model.ParseFromString(data)
    return model
