"""Helpers for the generator tests: running a model in onnxruntime on the CPU."""

from __future__ import annotations

import numpy as np
import onnx
import pytest


def run_in_ort(model: onnx.ModelProto) -> list[np.ndarray]:
    """Runs ``model`` once on random input with onnxruntime's CPU provider and returns the outputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the machine is shared; one thread keeps the suite predictable
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {}
    for value in session.get_inputs():
        feeds[value.name] = np.random.default_rng(0).standard_normal(value.shape).astype(np.float32)
    return session.run(None, feeds)


def fill_skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """Zero data for a weightless skeleton's initializers: onnxruntime can then run it (cheaply)."""
    for tensor in model.graph.initializer:
        if not tensor.HasField("raw_data") and not tensor.float_data and not tensor.int64_data:
            tensor.raw_data = bytes(4 * int(np.prod(tensor.dims)))
    return model


@pytest.fixture
def ort_run():
    return run_in_ort


@pytest.fixture
def zero_filled():
    return fill_skeleton
