"""Models saved by onnxruntime's graph optimizer (com.microsoft fusions) analyse as completely as the originals."""

from __future__ import annotations

import math

import onnx
import pytest

from sniper_onnx import analyze

ort = pytest.importorskip("onnxruntime")
zoo = pytest.importorskip("sniper_generator.zoo")


def _saved_by_onnxruntime(tmp_path, network: str, level: str):
    """(the zoo network's file, the file onnxruntime's optimizer saves from it at ``level``)."""
    original = tmp_path / f"{network}.onnx"
    onnx.save(zoo.export_zoo_model(network, weights=True), original)
    optimized = tmp_path / f"{network}_{level.lower()}.onnx"
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.optimized_model_filepath = str(optimized)
    ort.InferenceSession(str(original), options, providers=["CPUExecutionProvider"])
    return original, optimized


def test_fused_model_keeps_conv_costs_and_every_shape(tmp_path):
    original, optimized = _saved_by_onnxruntime(tmp_path, "squeezenet1_1", "ORT_ENABLE_EXTENDED")

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


def test_blocked_layout_model_costs_like_the_original(tmp_path):
    """ORT_ENABLE_ALL on x86 saves com.microsoft.nchwc kernels (Conv with fused Relu, MaxPool with
    ceil_mode, ReorderOutput): each gets a cost, every shape is known, and the kernel table sees convs."""
    from sniper_onnx.analysis.kernels import kernel_group

    original, optimized = _saved_by_onnxruntime(tmp_path, "squeezenet1_1", "ORT_ENABLE_ALL")
    before, after = analyze(original), analyze(optimized)
    if not any(n.op_type.startswith("com.microsoft.nchwc::") for n in after.nodes):
        pytest.skip("this CPU has no NCHWc kernels")
    assert after.unknown_ops == {} and after.unknown_shape_nodes == [] and after.warnings == []
    assert after.model_info["outputs"] == before.model_info["outputs"]
    for name in ("num_conv", "num_conv1x1", "num_conv3x3", "num_maxpool", "num_concat"):
        assert after.features[name] == before.features[name], name
    # onnxruntime pads a few weights to its channel block: within 1 %, not a factor
    assert after.features["total_macs"] == pytest.approx(before.features["total_macs"], rel=0.01)
    conv_rows = [n for n in after.nodes if kernel_group(n) == "conv"]
    assert len(conv_rows) == before.features["num_conv"]


@pytest.mark.parametrize("level", ["ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"])
def test_a_fused_model_is_predicted_like_the_original(tmp_path, level):
    """The kernel sum prices fused and blocked kernels as the convs they are (FusedConv was an
    'other' kernel once, and NCHWc convs were unknown: 0.01 ms for MobileNetV2)."""
    from sniper_onnx.predictors.commands import predict_files

    original, optimized = _saved_by_onnxruntime(tmp_path, "mobilenet_v2", level)
    device = ["AMD EPYC | cpu fp32 t1 opt-all"]
    before, after = predict_files([str(original)], device).rows[0], predict_files([str(optimized)], device).rows[0]
    assert after.path.startswith("kernels")
    # onnxruntime runs the same kernels for both files, but the predictor was trained on unfused
    # graphs only: the fused file's answer sits 3-11 % below the original's with the predictors
    # shipped on 2026-11-29 (EXTENDED: -9.5, -7.7 and -11.0 %). The bound catches what this test is
    # for: a fused or blocked conv priced as a cheap op (MobileNetV2 once at 0.01 ms).
    assert after.seconds == pytest.approx(before.seconds, rel=0.15)


def test_nodes_after_an_unknown_op_are_not_blamed_on_the_input_dims():
    weight = onnx.helper.make_tensor("W", onnx.TensorProto.FLOAT, [8, 3, 3, 3], [1.0] * 216)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MyOp", ["x"], ["y"], domain="acme"),
         onnx.helper.make_node("Conv", ["y", "W"], ["z"], pads=[1, 1, 1, 1])],
        "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 32, 32])],
        [onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)], [weight])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                         onnx.helper.make_opsetid("acme", 1)])
    result = analyze(model)
    assert result.unknown_ops == {"acme::MyOp": 1}
    shape_warning = next(w for w in result.warnings if "unknown shapes" in w)
    assert "'Conv_1'; it follows the unknown ops" in shape_warning and "--input-shape" not in shape_warning


def _fused_matmul_model(a: list[int], b: list[int], **attrs) -> onnx.ModelProto:
    """FusedMatMul(a, b) followed by a Relu, which must see the product's shape."""
    nodes = [onnx.helper.make_node("FusedMatMul", ["a", "b"], ["p"], name="op", domain="com.microsoft", **attrs),
             onnx.helper.make_node("Relu", ["p"], ["y"], name="relu")]
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in (("a", a), ("b", b))],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17),
                                                         onnx.helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


def _onnxruntime_output_shape(model: onnx.ModelProto) -> list[int]:
    import numpy as np

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.ones([d.dim_value for d in i.type.tensor_type.shape.dim], np.float32)
             for i in model.graph.input}
    return list(session.run(None, feeds)[0].shape)


@pytest.mark.parametrize("a, b, attrs, inner", [
    # the attention scores of an onnxruntime-saved torch encoder: [seq, batch, heads, head_size] operands
    ([8, 1, 4, 8], [8, 1, 4, 8], dict(transBatchA=1, transBatchB=1, transB=1, alpha=0.35), 8),
    ([5, 2, 3, 7], [2, 3, 7, 11], dict(transBatchA=1), 7),
    ([7, 2, 3, 5], [11, 2, 3, 7], dict(transBatchA=1, transA=1, transBatchB=1, transB=1), 7),
    ([1, 4, 5, 8], [8, 1, 4, 6], dict(transBatchB=1), 8),
    ([2, 7, 5], [2, 11, 7], dict(transA=1, transB=1), 7),
    ([6, 5, 7], [7, 11], dict(alpha=0.5), 7),
])
def test_fused_matmul_transposes_give_onnxruntimes_shape(a, b, attrs, inner):
    """transBatchA/B move an operand's first axis to its row axis before the product (ORT's
    MatMulComputeHelper); once they were ignored and the attention of ORT-saved encoders went wrong."""
    from analysis_graphs import node

    model = _fused_matmul_model(a, b, **attrs)
    expected = _onnxruntime_output_shape(model)
    result = analyze(model)
    assert result.unknown_shape_nodes == [] and result.warnings == []
    assert node(result).output_shapes == [expected] and node(result, "relu").output_shapes == [expected]
    assert node(result).macs == math.prod(expected) * inner


def test_fused_matmul_batch_transpose_of_unequal_ranks_is_left_unknown():
    """onnxruntime refuses transBatchA on operands of different ranks: no shape is made up."""
    from analysis_graphs import node

    result = analyze(_fused_matmul_model([5, 2, 3, 7], [3, 7, 11], transBatchA=1))
    assert node(result).output_shapes == [None] and "op" in result.unknown_shape_nodes
