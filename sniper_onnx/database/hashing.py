"""A content hash of a model's graph structure, blind to weights and tensor names.

Two files with the same operators, attributes, connections and tensor shapes are one network for
the predictors even when their weights, names or producers differ, so the hash canonicalises
tensor names to their order of first appearance and reads initializers' dims and dtypes only.
Small integer constants (a Reshape's target shape) change the structure, so their values count.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import onnx
import onnx.numpy_helper
from onnx import helper

_SHAPE_LIKE_LIMIT = 16  # int tensors this small are shapes/axes, part of the structure


def _shape(value_info: onnx.ValueInfoProto) -> list[Any]:
    tensor = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return [tensor.elem_type, dims]


def _tensor(tensor: onnx.TensorProto) -> list[Any]:
    entry: list[Any] = [tensor.data_type, list(tensor.dims)]
    count = 1
    for dim in tensor.dims:
        count *= dim
    integer = tensor.data_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
    if integer and count <= _SHAPE_LIKE_LIMIT and (tensor.raw_data or tensor.int64_data or tensor.int32_data):
        entry.append(onnx.numpy_helper.to_array(tensor).tolist())
    return entry


def _attribute(attribute: onnx.AttributeProto) -> Any:
    if attribute.type == onnx.AttributeProto.GRAPH:
        return graph_signature(attribute.g)
    if attribute.type == onnx.AttributeProto.TENSOR:
        return _tensor(attribute.t)
    value = helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, list):
        return [v.decode(errors="replace") if isinstance(v, bytes) else v for v in value]
    return value


def graph_signature(graph: onnx.GraphProto) -> dict[str, Any]:
    names: dict[str, int] = {}

    def ref(name: str) -> int:
        if name == "":
            return -1
        return names.setdefault(name, len(names))

    initializers = {init.name: init for init in graph.initializer}
    inputs = [_shape(vi) for vi in graph.input if vi.name not in initializers and ref(vi.name) >= 0]
    nodes = [
        [
            node.domain,
            node.op_type,
            [ref(name) for name in node.input],
            [ref(name) for name in node.output],
            sorted([attr.name, _attribute(attr)] for attr in node.attribute),
        ]
        for node in graph.node
    ]
    outputs = [ref(vi.name) for vi in graph.output]
    # After the nodes, so an initializer's reference number follows where it is used, not its name.
    weights = sorted([ref(name), _tensor(init)] for name, init in sorted(initializers.items()))
    return {"inputs": inputs, "weights": weights, "nodes": nodes, "outputs": outputs}


def structure_hash(model: onnx.ModelProto) -> str:
    signature = {
        "opsets": sorted([o.domain, o.version] for o in model.opset_import),
        "graph": graph_signature(model.graph),
    }
    text = json.dumps(signature, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
