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


def loop_model(path: Path) -> Path:
    """A Loop whose trip count is the int64 input ``n`` (a 16x16 MatMul+Relu per trip): the warm-up's
    generated input runs it briefly, a task giving ``n = 10**9`` runs for minutes (a poison input)."""
    eye = numpy_helper.from_array(np.eye(16, dtype=np.float32), "W")
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("MatMul", ["v_in", "W"], ["m"]),
         helper.make_node("Relu", ["m"], ["v_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [16, 16])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [16, 16])])
    graph = helper.make_graph(
        [helper.make_node("Loop", ["n", "cond", "x"], ["y"], body=body)], "loop",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 16]), helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 16])],
        [eye, numpy_helper.from_array(np.array(True), "cond")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


class ScriptedDispatchEngine(FakeEngineBase):
    """A dispatch engine whose devices answer at once, as the test says: ``calibration[device][model]``
    is a median in seconds (a str: that warm-up fails with it; absent: it never answers), and
    ``run_seconds(device, model, n)`` the time of the device's n-th task (from 1). It counts the
    warm-ups in flight at once (``max_calibrating``)."""

    def __init__(self, calibration: dict, run_seconds=None) -> None:
        self.calibration = calibration
        self.run_seconds = run_seconds or (lambda device, model, n: 0.001)
        self.events: list = []
        self.calibrating = self.max_calibrating = 0
        self.runs: dict[str, int] = {}

    def start(self, device) -> None:
        from sniper_onnx.dispatch.engines import Event

        self.events.append(Event("ready", device.name, payload=1))

    def calibrate(self, device: str, model: str, repeats: int) -> None:
        from sniper_onnx.dispatch.engines import Event

        self.calibrating += 1
        self.max_calibrating = max(self.max_calibrating, self.calibrating)
        value = self.calibration[device].get(model)
        if value is None:
            return
        payload = ({"status": "ok", "median_s": value, "count": repeats} if isinstance(value, float)
                   else {"status": "failed", "error": value})
        self.events.append(Event("calibrated", device, model=model, payload=payload))

    def send(self, device: str, task_id: int, attempt: int, model: str, input_path) -> None:
        from sniper_onnx.dispatch.engines import Event

        self.runs[device] = self.runs.get(device, 0) + 1
        seconds = self.run_seconds(device, model, self.runs[device])
        self.events.append(Event("result", device, payload={"task_id": task_id, "attempt": attempt, "status": "ok",
                                                            "seconds": seconds}))

    def poll(self, timeout: float) -> list:
        import time

        events, self.events = self.events, []
        self.calibrating -= sum(1 for event in events if event.kind == "calibrated")
        if not events:
            time.sleep(min(max(timeout, 0.0), 0.005))
        return events
