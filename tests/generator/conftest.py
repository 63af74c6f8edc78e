"""Helpers for the generator tests: running a model in onnxruntime on the CPU."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper


def _weights_as_zero_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A skeleton's data-less initializers become graph inputs fed with zeros.

    onnxruntime reads numpy inputs in place, so a VGG-sized net runs without copying 550 MB of
    weights through protobuf; the graph, shapes and ops are exactly the export's.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    empty = [t for t in model.graph.initializer
             if t.data_type == TensorProto.FLOAT and len(t.dims) and not t.raw_data and not t.float_data]
    feeds = {t.name: np.zeros(tuple(t.dims), np.float32) for t in empty}
    names = set(feeds)
    kept = [t for t in model.graph.initializer if t.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    model.graph.input.extend(helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in empty)
    return model, feeds


def run_in_ort(model: onnx.ModelProto) -> list[np.ndarray]:
    """Runs ``model`` (with weights, or a skeleton) once on random input with the CPU provider."""
    import onnxruntime as ort

    model, feeds = _weights_as_zero_inputs(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the machine is shared; one thread keeps the suite predictable
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for value in session.get_inputs():
        if value.name not in feeds:
            feeds[value.name] = np.random.default_rng(0).standard_normal(value.shape).astype(np.float32)
    return session.run(None, feeds)


@pytest.fixture
def ort_run():
    return run_in_ort
