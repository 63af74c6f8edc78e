"""Small real models and fleets for the dispatch tests (milliseconds per task on one thread)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def matmul_chain(path: Path, rows: int = 128, width: int = 256, layers: int = 3) -> Path:
    """rows x width input through ``layers`` MatMul+Relu: a few ms on one thread, He-init weights."""
    rng = np.random.default_rng(0)
    nodes, inits, last = [], [], "x"
    for i in range(layers):
        weight = (rng.standard_normal((width, width)) * np.sqrt(2.0 / width)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [helper.make_node("MatMul", [last, f"w{i}"], [f"m{i}"]), helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        last = f"r{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
                              [helper.make_tensor_value_info(last, TensorProto.FLOAT, [rows, width])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, str(path))
    return path


def broken_reshape(path: Path) -> Path:
    """Loads fine, fails at run time: a Reshape to a shape with the wrong element count."""
    shape = numpy_helper.from_array(np.array([7, 3], dtype=np.int64), "shape")
    graph = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["y"])], "broken",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(model, str(path))
    return path


def fleet_dict(models: dict[str, Path], devices: list[dict] | None = None, **extra) -> dict:
    devices = devices or [
        {"name": "fast-0", "type": "all", "threads": 1, "opt_level": "all"},
        {"name": "slow-0", "type": "off", "threads": 1, "opt_level": "disabled"},
    ]
    return {"name": "test", "models": {name: {"file": str(path)} for name, path in models.items()},
            "devices": devices, **extra}


class DoneFuture:
    """A Dask future whose function returned ``value`` (a device's answer)."""

    status = "finished"

    def __init__(self, value: dict) -> None:
        self.value = value

    def done(self) -> bool:
        return True

    def result(self) -> dict:
        return self.value

    def cancel(self) -> None:
        self.status = "cancelled"


class ErredFuture:
    """A Dask future whose function raised on the worker."""

    status = "error"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def done(self) -> bool:
        return True

    def exception(self) -> BaseException:
        return self.error


class FakeEngineBase:
    """What a fake dispatch engine does not care about: kills, forgotten sessions, closing."""

    name = "embedded"

    def kill(self, device: str) -> None:
        pass

    def forget(self, device: str, model: str) -> None:
        pass

    def close(self) -> None:
        pass
