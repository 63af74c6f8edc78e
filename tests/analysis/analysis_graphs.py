"""Hand-built ONNX graphs for the analyzer tests (weightless: initializers carry dims only)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

FLOAT = TensorProto.FLOAT


def weight(name: str, *dims: int) -> TensorProto:
    """A weightless initializer: name, dtype and dims, no data (what the generator's skeletons hold)."""
    tensor = TensorProto(name=name, data_type=FLOAT)
    tensor.dims.extend(dims)
    return tensor


def real_weight(name: str, *dims: int) -> TensorProto:
    return onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal(dims).astype(np.float32), name)


def ints(name: str, values) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], list(values))


def scalar(name: str, value: float) -> TensorProto:
    return helper.make_tensor(name, FLOAT, [], [value])


def tensor(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, FLOAT, shape)


def model(nodes, inputs: dict, outputs, initializers=(), opset: int = 17, name: str = "g") -> onnx.ModelProto:
    """``inputs``: name -> shape; ``outputs``: names (shapes left to inference)."""
    graph = helper.make_graph(
        nodes, name, [tensor(n, s) for n, s in inputs.items()], [tensor(n, None) for n in outputs], list(initializers)
    )
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    built.ir_version = 8
    return built


def single(op: str, inputs: dict, initializers=(), opset: int = 17, extra_inputs=(), **attrs) -> onnx.ModelProto:
    """One node reading the given graph inputs then the initializers (in that order)."""
    names = list(inputs) + list(extra_inputs)
    node = helper.make_node(op, names, ["y"], name="op", **attrs)
    return model([node], inputs, ["y"], initializers, opset)


def node(result, name: str = "op"):
    return next(n for n in result.nodes if n.name == name)


def conv_macs(out_shape, weight_shape) -> int:
    """The textbook formula, written independently of the analyzer: outputs x (C_in/group) x kernel."""
    return int(np.prod(out_shape)) * int(np.prod(weight_shape[1:]))
