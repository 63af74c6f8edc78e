"""Nodes whose operands do not fit each other (operand_check.py): one warning, no made-up costs."""

from __future__ import annotations

import pytest
from analysis_graphs import model, node, real_weight, single, weight
from onnx import helper

from sniper_onnx import analyze


def _operand_warnings(result) -> list[str]:
    return [w for w in result.warnings if "operands do not fit each other, which onnxruntime would refuse" in w]


def _conv_then_relu(channels: int, conv_weight, **attrs):
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", **attrs),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return model(nodes, {"x": [1, channels, 8, 8]}, ["y"], [conv_weight])


def test_a_conv_weight_for_other_channels_is_named_and_not_counted():
    """A weight reading 5 channels of a 3-channel input: ONNX inference gives it an output, so it was
    costed as if it read 5 (6,480 MACs), silently; onnxruntime refuses the model."""
    result = analyze(_conv_then_relu(3, weight("W", 4, 5, 3, 3)))
    assert _operand_warnings(result) == [
        "a node's operands do not fit each other, which onnxruntime would refuse: 'conv' (Conv: weight 4x5x3x3 "
        "reads 5 channels, input 1x3x8x8 has 3); the model's own shapes are inconsistent, so its outputs and the "
        "shapes after them count as unknown"]
    assert node(result, "conv").macs == 0 and not node(result, "conv").shapes_known
    assert node(result, "relu").output_shapes == [None] and result.features["total_macs"] == 0
    assert result.unknown_shape_nodes == ["conv", "relu"]
    assert any(w.endswith("they are or follow a node whose operands do not fit each other (see that warning)")
               for w in result.warnings)


def test_onnxruntime_refuses_the_model_the_warning_names():
    ort = pytest.importorskip("onnxruntime")
    built = _conv_then_relu(3, real_weight("W", 4, 5, 3, 3))
    with pytest.raises(Exception, match="(?i)channel|dimension|shape"):
        ort.InferenceSession(built.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": __import__("numpy").zeros((1, 3, 8, 8), "float32")})


def test_a_grouped_conv_says_its_group():
    result = analyze(_conv_then_relu(4, weight("W", 4, 1, 3, 3), group=2))
    assert "'conv' (Conv: weight 4x1x3x3 reads 1 channel x group 2 = 2, input 1x4x8x8 has 4)" in (
        _operand_warnings(result)[0])


@pytest.mark.parametrize("channels, conv_weight, attrs", [
    (3, weight("W", 8, 3, 3, 3), {}),
    (8, weight("W", 8, 1, 3, 3), {"group": 8}),  # depthwise
    (8, weight("W", 16, 2, 3, 3), {"group": 4}),
])
def test_fitting_convs_are_not_flagged(channels, conv_weight, attrs):
    result = analyze(_conv_then_relu(channels, conv_weight, **attrs))
    assert result.warnings == [] and node(result, "conv").macs > 0


def test_a_conv_transpose_weight_for_other_channels_is_not_counted():
    result = analyze(single("ConvTranspose", {"x": [1, 3, 8, 8]}, [weight("W", 4, 5, 3, 3)], extra_inputs=["W"]))
    assert "'op' (ConvTranspose: weight 4x5x3x3 reads 4 channels, input 1x3x8x8 has 3)" in _operand_warnings(result)[0]
    assert node(result).macs == 0 and result.features["total_macs"] == 0


@pytest.mark.parametrize("op, a, b, attrs, said", [
    ("MatMul", [2, 3, 5], [4, 6], {}, "(MatMul: A 2x3x5 has inner dim 5, B 4x6 has 4)"),
    ("Gemm", [2, 5], [6, 4], {"transB": 1}, "(Gemm: A 2x5 has inner dim 5, B 6x4 (transB=1) has 4)"),
])
def test_matrix_products_with_unequal_inner_dims_are_named(op, a, b, attrs, said):
    """ONNX inference stops at them, and the only word was 'shape inference could not follow them'."""
    result = analyze(single(op, {"a": a}, [weight("B", *b)], extra_inputs=["B"], **attrs))
    assert len(_operand_warnings(result)) == 1 and said in _operand_warnings(result)[0]
    assert any(w.endswith("'op'; it is or follows a node whose operands do not fit each other (see that warning)")
               for w in result.warnings), result.warnings


def test_a_fused_conv_that_does_not_fit_gets_no_shape_by_rule():
    """The com.microsoft shape rules would otherwise give FusedConv its output again."""
    built = single("FusedConv", {"x": [1, 3, 8, 8]}, [weight("W", 4, 5, 3, 3)], extra_inputs=["W"])
    built.graph.node[0].domain = "com.microsoft"
    built.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    result = analyze(built)
    assert len(_operand_warnings(result)) == 1 and node(result).output_shapes == [None] and node(result).macs == 0


def test_several_misfits_share_one_warning():
    nodes = [helper.make_node("Conv", ["x", "W1"], ["a"], name="left"),
             helper.make_node("Conv", ["x", "W2"], ["b"], name="right"),
             helper.make_node("Add", ["a", "b"], ["y"], name="join")]
    result = analyze(model(nodes, {"x": [1, 3, 8, 8]}, ["y"], [weight("W1", 4, 5, 3, 3), weight("W2", 4, 2, 3, 3)]))
    assert len(_operand_warnings(result)) == 1
    assert _operand_warnings(result)[0].startswith("2 nodes' operands do not fit each other")
    assert "'left' (Conv:" in _operand_warnings(result)[0] and "'right' (Conv:" in _operand_warnings(result)[0]
    assert "so their outputs" in _operand_warnings(result)[0]


def test_a_fused_matmul_whose_transposed_operands_do_not_fit_is_named():
    built = single("FusedMatMul", {"a": [5, 2, 3, 7], "b": [2, 3, 6, 11]}, transBatchA=1)
    built.graph.node[0].domain = "com.microsoft"
    built.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    result = analyze(built)
    assert "(FusedMatMul: A 5x2x3x7 (transBatchA=1) has inner dim 7, B 2x3x6x11 has 6)" in _operand_warnings(result)[0]
    assert node(result).output_shapes == [None] and node(result).macs == 0
