"""One hand-built graph per handler, with MACs and params worked out by hand in the comments."""

from __future__ import annotations

import pytest
from analysis_graphs import conv_macs, ints, model, node, scalar, single, weight
from onnx import helper

from sniper_onnx import analyze
from sniper_onnx.analysis import REGISTRY


def test_conv2d_strided_with_bias():
    # out 1x8x16x16 = 2048 elements, each 3 channels x 3x3 = 27 MACs
    result = analyze(single("Conv", {"x": [1, 3, 32, 32]}, [weight("W", 8, 3, 3, 3), weight("B", 8)],
                            extra_inputs=["W", "B"], strides=[2, 2], pads=[1, 1, 1, 1]))
    conv = node(result)
    assert conv.output_shapes == [[1, 8, 16, 16]]
    assert conv.macs == 2048 * 27 == conv_macs((1, 8, 16, 16), (8, 3, 3, 3))
    assert conv.params == 8 * 27 + 8
    assert conv.bytes_read == 3 * 32 * 32 * 4 and conv.bytes_written == 2048 * 4
    assert result.features["num_conv3x3"] == 1 and result.features["conv_params"] == 224


def test_depthwise_conv_counts_kernel_times_one_channel():
    # group 8 over 8 channels: each output reads 1 channel x 9
    result = analyze(single("Conv", {"x": [1, 8, 10, 10]}, [weight("W", 8, 1, 3, 3)], extra_inputs=["W"],
                            group=8, pads=[1, 1, 1, 1]))
    assert node(result).macs == 800 * 9
    assert set(node(result).tags) == {"conv", "depthwise_conv", "conv3x3"}
    assert result.features["num_depthwise_conv"] == 1


def test_dilated_conv3x3_is_atrous_not_plain_3x3():
    result = analyze(single("Conv", {"x": [1, 4, 16, 16]}, [weight("W", 4, 4, 3, 3)], extra_inputs=["W"],
                            dilations=[2, 2], pads=[2, 2, 2, 2]))
    assert node(result).macs == 4 * 16 * 16 * 36
    assert result.features["num_atrous_conv3x3"] == 1 and result.features["num_conv3x3"] == 0


def test_conv1d_and_conv3d():
    one_d = analyze(single("Conv", {"x": [1, 4, 20]}, [weight("W", 6, 4, 5)], extra_inputs=["W"], pads=[2, 2]))
    assert node(one_d).macs == 6 * 20 * 4 * 5
    three_d = analyze(single("Conv", {"x": [1, 2, 4, 8, 8]}, [weight("W", 3, 2, 3, 3, 3)], extra_inputs=["W"],
                             pads=[1] * 6))
    assert node(three_d).macs == 3 * 4 * 8 * 8 * 2 * 27
    assert three_d.features["num_conv"] == 1 and three_d.features["num_conv3x3"] == 0  # 3x3x3 is no 3x3


def test_conv_transpose_scatters_each_input():
    # weight [C_in=4, C_out/group=2, 2, 2]: each of 256 input elements feeds 2x2x2 outputs
    result = analyze(single("ConvTranspose", {"x": [1, 4, 8, 8]}, [weight("W", 4, 2, 2, 2)], extra_inputs=["W"],
                            strides=[2, 2]))
    assert node(result).output_shapes == [[1, 2, 16, 16]]
    assert node(result).macs == 256 * 8 and node(result).params == 32


def test_gemm_transposed_weight():
    result = analyze(single("Gemm", {"x": [2, 64]}, [weight("W", 10, 64), weight("B", 10)], extra_inputs=["W", "B"],
                            transB=1))
    assert node(result).macs == 2 * 10 * 64 and node(result).params == 650
    assert result.features["num_fc"] == 1 and result.features["fc_macs"] == 1280


def test_matmul_batched_broadcast_with_weight_is_fc():
    result = analyze(single("MatMul", {"x": [2, 3, 4, 5]}, [weight("W", 5, 6)], extra_inputs=["W"]))
    assert node(result).macs == 2 * 3 * 4 * 6 * 5 and node(result).category == "fc"


def test_matmul_between_activations_broadcasts_batch():
    # [2,1,4,5] @ [3,5,6] -> [2,3,4,6]: 144 outputs x 5
    result = analyze(single("MatMul", {"a": [2, 1, 4, 5], "b": [3, 5, 6]}))
    assert node(result).macs == 144 * 5 and node(result).category == "matmul"
    assert result.features["matmul_macs"] == 720 and result.features["fc_macs"] == 0


def test_einsum_batched_matrix_product():
    result = analyze(single("Einsum", {"a": [2, 3, 4], "b": [2, 4, 5]}, equation="bij,bjk->bik"))
    assert node(result).macs == 2 * 3 * 4 * 5


def test_einsum_with_ellipsis():
    result = analyze(single("Einsum", {"a": [7, 3, 4], "b": [7, 4, 5]}, equation="...ij,...jk->...ik"))
    assert node(result).macs == 7 * 3 * 4 * 5


@pytest.mark.parametrize(
    ("op", "per_element", "weights", "opset", "attrs"),
    [
        ("BatchNormalization", 1, [weight(n, 8) for n in "sbmv"], 17, {}),
        ("InstanceNormalization", 5, [weight("s", 8), weight("b", 8)], 17, {}),
        ("GroupNormalization", 5, [weight("s", 8), weight("b", 8)], 21, {"num_groups": 2}),
    ],
)
def test_channel_normalizations(op, per_element, weights, opset, attrs):
    result = analyze(single(op, {"x": [1, 8, 4, 4]}, weights, opset, extra_inputs=[w.name for w in weights], **attrs))
    assert node(result).macs == per_element * 128
    assert node(result).params == 8 * len(weights)  # BN: scale, bias, running mean and variance
    assert result.features["num_norm"] == 1


def test_shapes_flow_past_group_normalization_21():
    # ONNX's schema infers GroupNormalization-21's output type but no shape (it is a function op):
    # the layers after it had unknown shapes and counted no MACs until the shape rule took over
    graph = helper.make_graph(
        [helper.make_node("GroupNormalization", ["x", "s", "b"], ["n"], num_groups=2, name="norm"),
         helper.make_node("Conv", ["n", "W"], ["y"], name="conv")],
        "gn", [helper.make_tensor_value_info("x", 1, [1, 8, 4, 4])], [helper.make_tensor_value_info("y", 1, None)],
        [weight("s", 8), weight("b", 8), weight("W", 4, 8, 1, 1)])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10))
    conv = next(cost for cost in result.nodes if cost.op_type == "Conv")
    assert conv.output_shapes == [[1, 4, 4, 4]] and conv.macs == 64 * 8
    assert result.warnings == []


def test_layer_normalization():
    result = analyze(single("LayerNormalization", {"x": [2, 10, 16]}, [weight("s", 16), weight("b", 16)],
                            extra_inputs=["s", "b"], axis=-1))
    assert node(result).macs == 5 * 320 and node(result).params == 32


@pytest.mark.parametrize(
    ("op", "attrs", "macs", "kind"),
    [
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, 64 * 9, "num_maxpool"),
        ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}, 64 * 4, "num_avgpool"),
        ("LpPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, 64 * 4, None),
        ("GlobalAveragePool", {}, 256, "num_avgpool"),
        ("GlobalMaxPool", {}, 256, "num_maxpool"),
        ("GlobalLpPool", {}, 256, None),
    ],
)
def test_pools(op, attrs, macs, kind):
    result = analyze(single(op, {"x": [1, 4, 8, 8]}, **attrs))
    assert node(result).macs == macs and node(result).params == 0
    if kind:
        assert result.features[kind] == 1


@pytest.mark.parametrize("op", ["Sum", "Max", "Mean", "Min"])
def test_nary_elementwise_does_n_minus_one_ops(op):
    result = analyze(single(op, {"a": [1, 4, 4, 4], "b": [1, 4, 4, 4], "c": [1, 4, 4, 4]}))
    assert node(result).macs == 2 * 64


def test_add_of_two_activations_is_an_add_layer_but_bias_add_is_not():
    joined = analyze(single("Add", {"a": [1, 4, 4, 4], "b": [1, 4, 4, 4]}))
    assert node(joined).macs == 64 and joined.features["num_add"] == 1
    biased = analyze(single("Add", {"a": [1, 4, 4, 4]}, [weight("bias", 4, 1, 1)], extra_inputs=["bias"]))
    assert biased.features["num_add"] == 0 and node(biased).params == 4 and node(biased).category == "elementwise"


def test_scalar_constants_of_elementwise_ops_are_settings_not_params():
    result = analyze(single("Mul", {"a": [2, 8]}, [scalar("half", 0.5)], extra_inputs=["half"]))
    assert node(result).params == 0 and node(result).macs == 16


def test_prelu_slope_is_a_parameter():
    result = analyze(single("PRelu", {"x": [1, 4, 2, 2]}, [weight("slope", 4, 1, 1)], extra_inputs=["slope"]))
    assert node(result).params == 4 and node(result).macs == 16


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Erf", "Gelu", "HardSwish"])
def test_activations_one_op_per_element(op):
    result = analyze(single(op, {"x": [3, 7]}, opset=20))
    assert node(result).macs == 21 and node(result).category in ("activation", "elementwise")


def test_softmax_three_ops_per_element():
    assert node(analyze(single("Softmax", {"x": [2, 10]}))).macs == 60


def test_resize_linear_and_nearest():
    scales = helper.make_tensor("scales", 1, [4], [1, 1, 2, 2])
    linear = analyze(single("Resize", {"x": [1, 2, 4, 4]}, [scales], extra_inputs=["", "scales"], mode="linear"))
    assert node(linear).output_shapes == [[1, 2, 8, 8]]
    assert node(linear).macs == 128 * 4 and node(linear).params == 0  # 2 taps on each of 2 resized axes
    nearest = analyze(single("Resize", {"x": [1, 2, 4, 4]}, [scales], extra_inputs=["", "scales"], mode="nearest"))
    assert node(nearest).macs == 0


def test_memory_ops_cost_bytes_not_macs():
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], name="transpose", perm=[0, 3, 1, 2]),
        helper.make_node("Split", ["t", "halves"], ["s1", "s2"], name="split", axis=1),
        helper.make_node("Concat", ["s2", "s1"], ["c"], name="concat", axis=1),
        helper.make_node("Reshape", ["c", "flat"], ["y"], name="reshape"),
    ]
    result = analyze(model(nodes, {"x": [1, 2, 3, 4]}, ["y"], [ints("halves", [2, 2]), ints("flat", [1, -1])]))
    for name in ("transpose", "split", "concat", "reshape"):
        assert node(result, name).macs == 0 and node(result, name).params == 0
    assert node(result, "transpose").bytes_read == 24 * 4 == node(result, "transpose").bytes_written
    assert node(result, "reshape").is_layer is False  # a view, not a layer
    assert result.features["num_concat"] == 1 and result.features["num_layers"] == 3
    assert result.nodes[-1].output_shapes == [[1, 24]]


def test_lstm_multiplies_input_and_recurrent_weights_every_step():
    # seq 5, batch 2, input 3, hidden 4: W [1, 16, 3], R [1, 16, 4]
    result = analyze(single("LSTM", {"x": [5, 2, 3]}, [weight("W", 1, 16, 3), weight("R", 1, 16, 4)],
                            extra_inputs=["W", "R"], hidden_size=4))
    assert node(result).macs == 5 * 2 * (48 + 64) and node(result).params == 112


def test_registry_covers_the_ops_the_issue_lists():
    required = {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "BatchNormalization", "LayerNormalization",
        "GroupNormalization", "InstanceNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
        "GlobalMaxPool", "LpPool", "Sum", "Max", "Mean", "Add", "Relu", "Softmax", "Resize", "Concat", "Split",
        "Reshape", "Transpose",
    }
    assert required <= set(REGISTRY)


def _quantized(op: str, data_shape, weight, **attrs):
    """uint8 data, a uint8 weight in slot 3, scalar scales and zero points."""
    scale, zero = helper.make_tensor("s", 1, [], [0.1]), helper.make_tensor("z", 2, [], [0])
    graph = helper.make_graph(
        [helper.make_node(op, ["x", "s", "z", weight.name, "s", "z", "s", "z"], ["y"], name="op", **attrs)], "q",
        [helper.make_tensor_value_info("x", 2, data_shape)], [helper.make_tensor_value_info("y", 2, None)],
        [scale, zero, weight],
    )
    return analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_quantized_conv_and_matmul_count_like_their_float_forms():
    conv = _quantized("QLinearConv", [1, 2, 6, 6], helper.make_tensor("Wq", 2, [4, 2, 3, 3], [0] * 72),
                      pads=[1, 1, 1, 1])
    assert node(conv).macs == 4 * 36 * 18 and node(conv).params == 72
    assert conv.features["num_conv3x3"] == 1
    matmul = _quantized("QLinearMatMul", [3, 6], helper.make_tensor("Bq", 2, [6, 5], [0] * 30))
    assert node(matmul).macs == 3 * 5 * 6 and node(matmul).params == 30 and node(matmul).category == "fc"


def test_old_opset_upsample_counts_like_resize():
    scales = helper.make_tensor("scales", 1, [4], [1, 1, 2, 2])
    result = analyze(single("Upsample", {"x": [1, 2, 4, 4]}, [scales], opset=9, extra_inputs=["scales"],
                            mode="linear"))
    assert node(result).output_shapes == [[1, 2, 8, 8]] and node(result).macs == 128 * 4


def test_attention_op_counts_both_products_and_the_softmax():
    # batch 2, 4 heads, 5 queries over 7 keys, head size 8, value size 6
    result = analyze(single("Attention", {"q": [2, 4, 5, 8], "k": [2, 4, 7, 8], "v": [2, 4, 7, 6]}, opset=23))
    scores = 2 * 4 * 5 * 7
    assert node(result).output_shapes == [[2, 4, 5, 6]]
    assert node(result).macs == scores * 8 + scores * 6 + 3 * scores
    assert result.features["matmul_macs"] == node(result).macs


def test_onnxruntime_fusions_are_costed_and_their_shapes_flow_on():
    """FusedConv and FastGelu are unknown to ONNX inference: shapes come from the rules and reach the Relu."""
    nodes = [
        helper.make_node("FusedConv", ["x", "W", "B"], ["c"], name="fused", domain="com.microsoft",
                         pads=[1, 1, 1, 1], strides=[2, 2], activation="Relu"),
        helper.make_node("FastGelu", ["c"], ["g"], name="gelu", domain="com.microsoft"),
        helper.make_node("Relu", ["g"], ["y"], name="relu"),
    ]
    built = model(nodes, {"x": [1, 3, 16, 16]}, ["y"], [weight("W", 8, 3, 3, 3), weight("B", 8)])
    built.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    result = analyze(built)
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []
    assert node(result, "fused").output_shapes == [[1, 8, 8, 8]]
    assert node(result, "fused").macs == 512 * 27 + 512  # the conv, then its fused Relu
    assert node(result, "relu").macs == 512 and result.features["num_conv3x3"] == 1
    assert node(result, "fused").op_type == "com.microsoft::FusedConv"
