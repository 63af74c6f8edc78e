"""Models saved by onnxruntime's graph optimizer (com.microsoft fusions) analyse as completely as the originals."""

from __future__ import annotations

import onnx
import pytest

from sniper_onnx import analyze

ort = pytest.importorskip("onnxruntime")
zoo = pytest.importorskip("sniper_generator.zoo")


def test_fused_model_keeps_conv_costs_and_every_shape(tmp_path):
    original = tmp_path / "squeezenet.onnx"
    onnx.save(zoo.export_zoo_model("squeezenet1_1", weights=True), original)
    optimized = tmp_path / "squeezenet_fused.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(original), options, providers=["CPUExecutionProvider"])

    before, after = analyze(original), analyze(optimized)
    assert any(n.op_type == "com.microsoft::FusedConv" for n in after.nodes)  # the test exercises fusions
    assert after.unknown_ops == {} and after.unknown_shape_nodes == []
    for name in ("total_params", "num_conv", "num_conv1x1", "num_conv3x3", "num_concat", "num_maxpool"):
        assert after.features[name] == before.features[name], name
    # the fused Relus still cost one operation per element, now inside FusedConv (counted as conv)
    assert after.features["total_macs"] == before.features["total_macs"]
    conv_outputs = {t for n in before.nodes if n.op_type == "Conv" for t in n.outputs}
    fused_relus = sum(n.macs for n in before.nodes if n.op_type == "Relu" and set(n.inputs) <= conv_outputs)
    assert after.features["conv_macs"] == before.features["conv_macs"] + fused_relus
