"""Tiny ONNX models for the profiler tests (built with onnx here; the profiler itself never imports it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PYTHON = sys.executable
PROFILER_BIN = str(Path(sys.executable).with_name("sniper-profiler"))


def tiny_mlp(path: Path, width: int = 32, activation: str = "Relu", batch: "int | str" = 1, weight: "float | None" = None) -> Path:
    rng = np.random.default_rng(width)
    values = rng.standard_normal((width, width)) * np.sqrt(2.0 / width) if weight is None else np.full((width, width), weight)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node(activation, ["h"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(values.astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def half_precision_model(path: Path, width: int = 8) -> Path:
    """A float16 input, widened to float32 at once: a model whose float type is fp16."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["wide"], to=TensorProto.FLOAT), helper.make_node("Relu", ["wide"], ["y"])],
        "half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def mixed_inputs_model(path: Path) -> Path:
    """float, int64 and bool inputs with a symbolic dim."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x", "ids_f"], ["s"]),
            helper.make_node("Where", ["mask", "s", "x"], ["y"]),
        ],
        "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 8]),
            helper.make_tensor_value_info("mask", TensorProto.BOOL, ["batch", 8]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    for index, activation in enumerate(("Relu", "Sigmoid", "Tanh")):
        tiny_mlp(folder / f"m{index}.onnx", width=16 + 8 * index, activation=activation)
    return folder


FAST = ["--warmup", "1", "--min-repeats", "3", "--max-time", "0.05", "--threads", "1"]


def child_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env
