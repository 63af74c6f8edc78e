"""Quantized models count as the float network they compute: onnxruntime's QOperator ops (com.microsoft),
its fused dynamic-quantization and 4-bit MatMuls, and QDQ bookkeeping (docs/analyzer.md, Quantized models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from analysis_graphs import node
from onnx import TensorProto, helper

from sniper_onnx import analyze
from sniper_onnx.analysis.costs import Scope, cost_graph
from sniper_onnx.analysis.kernels import kernel_group
from sniper_onnx.analysis.loading import TensorInfo
from sniper_onnx.analysis.ops import NodeView, rule_for
from sniper_onnx.analysis.shape_rules import output_elem_type

UINT8, FLOAT = TensorProto.UINT8, TensorProto.FLOAT
MS = "com.microsoft"


# ------------------------------------------------------------------ hand-built com.microsoft graphs


def _settings() -> list[onnx.TensorProto]:
    """A scalar scale ``s`` and zero point ``z``, shared by every quantized input and output."""
    return [helper.make_tensor("s", FLOAT, [], [0.1]), helper.make_tensor("z", UINT8, [], [128])]


def _u8(name: str, *dims: int) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.zeros(dims, np.uint8), name)


def _ms_model(nodes, inputs: dict, initializers=(), elem_type: int = UINT8) -> onnx.ModelProto:
    """``inputs``: name -> shape, all of ``elem_type``; every node's outputs left to the analyzer."""
    outputs = [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.UNDEFINED, None)]
    graph = helper.make_graph(nodes, "q", [helper.make_tensor_value_info(n, elem_type, s) for n, s in inputs.items()],
                              outputs, [*_settings(), *initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])


def _op(op_type: str, inputs: list[str], **attrs) -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, ["y"], name="op", domain=MS, **attrs)


def _only(result, name: str = "op"):
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []
    return node(result, name)


def test_qlinear_add_of_two_activations_is_a_residual_add():
    result = analyze(_ms_model([_op("QLinearAdd", ["a", "s", "z", "b", "s", "z", "s", "z"])],
                               {"a": [1, 8, 4, 4], "b": [1, 8, 1, 4]}))
    add = _only(result)
    assert add.output_shapes == [[1, 8, 4, 4]] and add.macs == 128 and add.category == "add"
    assert add.params == 0 and result.features["num_add"] == 1  # scales and zero points are settings


def test_qlinear_mul_by_a_weight_counts_the_weight_not_the_scales():
    mul = _only(analyze(_ms_model([_op("QLinearMul", ["a", "s", "z", "g", "s", "z", "s", "z"])],
                                  {"a": [1, 8, 4, 4]}, [_u8("g", 8, 1, 1)])))
    assert mul.output_shapes == [[1, 8, 4, 4]] and mul.macs == 128 and mul.category == "elementwise"
    assert mul.params == 8 and mul.param_bytes == 8


@pytest.mark.parametrize("op_type", ["QLinearAdd", "QLinearMul"])
@pytest.mark.parametrize("dims", [[], [1]])
def test_a_single_constant_operand_of_qlinear_add_and_mul_is_a_setting(op_type, dims):
    """As for Add and Mul: the quantizer's sqrt(d) of attention, stored as one uint8, is no parameter."""
    one = onnx.numpy_helper.from_array(np.full(dims, 3, np.uint8), "g")
    result = analyze(_ms_model([_op(op_type, ["a", "s", "z", "g", "s", "z", "s", "z"])], {"a": [1, 8, 4, 4]}, [one]))
    assert _only(result).params == 0 and result.features["total_params"] == 0


def test_qgemm_counts_like_gemm_with_its_bias_and_without_its_scales():
    """The finding: 1,046 parameters (1,024 weights + 16 bias + 6 scalar settings); Gemm's are 1,040."""
    gemm = helper.make_node("QGemm", ["a", "s", "z", "B", "s", "z", "C", "s", "z"], ["y"], name="op", domain=MS,
                            transB=1)
    bias = onnx.numpy_helper.from_array(np.zeros(16, np.int32), "C")
    result = analyze(_ms_model([gemm], {"a": [4, 64]}, [_u8("B", 16, 64), bias]))
    qgemm = _only(result)
    assert qgemm.output_shapes == [[4, 16]] and qgemm.macs == 4 * 16 * 64 and qgemm.category == "fc"
    assert qgemm.params == 1040 and qgemm.param_bytes == 1024 + 16 * 4
    assert result.features["fc_params"] == 1040 and kernel_group(qgemm) == "gemm"


@pytest.mark.parametrize(("channels_last", "data", "pooled", "averaged"), [
    (0, [1, 8, 6, 6], [1, 8, 3, 3], [1, 8, 1, 1]),
    (1, [1, 6, 6, 8], [1, 3, 3, 8], [1, 1, 1, 8]),
])
def test_qlinear_pools_follow_their_layout(channels_last, data, pooled, averaged):
    pool = helper.make_node("QLinearAveragePool", ["x", "s", "z", "s", "z"], ["p"], name="pool", domain=MS,
                            kernel_shape=[2, 2], strides=[2, 2], channels_last=channels_last)
    gap = helper.make_node("QLinearGlobalAveragePool", ["p", "s", "z", "s", "z"], ["y"], name="gap", domain=MS,
                           channels_last=channels_last)
    result = analyze(_ms_model([pool, gap], {"x": data}))
    assert _only(result, "pool").output_shapes == [pooled] and node(result, "pool").macs == 72 * 4
    assert node(result, "gap").output_shapes == [averaged] and node(result, "gap").macs == 72
    assert result.features["num_avgpool"] == 2 and kernel_group(node(result, "gap")) == "global_pool"


def test_qlinear_concat_joins_its_data_inputs_along_the_axis():
    concat = _op("QLinearConcat", ["s", "z", "a", "s", "z", "b", "s", "z"], axis=1)
    result = analyze(_ms_model([concat], {"a": [1, 2, 4, 4], "b": [1, 3, 4, 4]}))
    joined = _only(result)
    assert joined.output_shapes == [[1, 5, 4, 4]] and joined.category == "concat" and joined.params == 0
    assert output_elem_type(concat, {"s": FLOAT, "z": UINT8, "a": UINT8, "b": UINT8}.get) == UINT8


@pytest.mark.parametrize(("op_type", "per_element"), [("QLinearLeakyRelu", 1), ("QLinearSigmoid", 1),
                                                      ("QLinearSoftmax", 3)])
def test_qlinear_activations_keep_the_shape_for_the_layers_after_them(op_type, per_element):
    activation = helper.make_node(op_type, ["x", "s", "z", "s", "z"], ["a"], name="op", domain=MS)
    after = helper.make_node("QLinearGlobalAveragePool", ["a", "s", "z", "s", "z"], ["y"], name="gap", domain=MS)
    result = analyze(_ms_model([activation, after], {"x": [1, 4, 3, 3]}))
    assert _only(result).output_shapes == [[1, 4, 3, 3]] and node(result).macs == 36 * per_element
    assert node(result).category == "activation" and node(result, "gap").macs == 36


@pytest.mark.parametrize(("op_type", "inputs"), [
    ("DynamicQuantizeMatMul", ["a", "B", "s", "z", "bias"]),
    ("MatMulIntegerToFloat", ["aq", "B", "s", "s", "z", "z", "bias"]),
])
def test_fused_dynamic_quantization_matmuls_are_fully_connected_layers(op_type, inputs):
    bias = onnx.numpy_helper.from_array(np.zeros(8, np.float32), "bias")
    data = {"aq" if "aq" in inputs else "a": [2, 3, 16]}
    elem_type = UINT8 if "aq" in inputs else FLOAT
    result = analyze(_ms_model([_op(op_type, inputs)], data, [_u8("B", 16, 8), bias], elem_type))
    matmul = _only(result)
    assert matmul.output_shapes == [[2, 3, 8]] and matmul.macs == 6 * 8 * 16 and matmul.category == "fc"
    assert matmul.params == 16 * 8 + 8 and kernel_group(matmul) == "gemm"  # by a weight: the GEMM a Linear runs


def test_matmul_nbits_multiplies_by_its_packed_k_by_n_weight():
    k, n, block = 32, 64, 16
    packed = _u8("B", n, k // block, block // 2)  # 4 bits: two weights a byte
    scales = onnx.numpy_helper.from_array(np.ones(n * k // block, np.float32), "S")
    nbits = _op("MatMulNBits", ["a", "B", "S"], K=k, N=n, bits=4, block_size=block)
    result = analyze(_ms_model([nbits], {"a": [1, 8, k]}, [packed, scales], FLOAT))
    matmul = _only(result)
    assert matmul.output_shapes == [[1, 8, n]] and matmul.macs == 8 * n * k and matmul.category == "fc"
    assert matmul.param_bytes == k * n // 2 + 4 * n * k // block and kernel_group(matmul) == "gemm"
    # K x N parameters (not the 1,024 packed bytes plus 128 scales as stored elements), as MatMul's weight
    assert matmul.params == k * n and result.features["fc_params"] == result.features["total_params"] == k * n
    # what the rule says each weight holds: K x N parameters in the packed bytes; scales are bytes only
    rule, view = rule_for(nbits), NodeView(nbits, [], [], [False, True, True])
    assert rule.weight_size(view, 1, n * 2 * 8, k * n // 2) == (k * n, k * n // 2)
    assert rule.weight_size(view, 2, n * 2, n * 2 * 4) == (0, n * 2 * 4)


def test_contrib_quantize_and_dequantize_are_plumbing():
    quantize = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q", domain=MS)
    dequantize = helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq", domain=MS)
    result = analyze(_ms_model([quantize, dequantize], {"x": [2, 5]}, elem_type=FLOAT))
    assert _only(result, "dq").output_shapes == [[2, 5]] and result.features["num_layers"] == 0
    types = {"x": FLOAT, "s": FLOAT, "z": UINT8, "q": UINT8}
    assert output_elem_type(quantize, types.get) == UINT8 and output_elem_type(dequantize, types.get) == FLOAT


def test_layers_after_qlinear_concat_keep_their_shapes():
    """ONNX infers QLinearConv only on 8-bit data: the Concat's output must be typed uint8, not float."""
    concat = helper.make_node("QLinearConcat", ["s", "z", "a", "s", "z", "b", "s", "z"], ["c"], name="concat",
                              domain=MS, axis=1)
    conv = helper.make_node("QLinearConv", ["c", "s", "z", "W", "s", "z", "s", "z"], ["y"], name="conv")
    result = analyze(_ms_model([concat, conv], {"a": [1, 2, 4, 4], "b": [1, 2, 4, 4]}, [_u8("W", 3, 4, 1, 1)]))
    assert node(result, "concat").bytes_written == 64
    assert _only(result, "conv").output_shapes == [[1, 3, 4, 4]]


def test_qlinear_concat_inside_a_subgraph_writes_its_data_type():
    """Subgraphs' shapes are completed while costing (the loader does not reach them): the same typing."""
    concat = helper.make_node("QLinearConcat", ["s", "z", "a", "s", "z", "b", "s", "z"], ["c"], name="concat",
                              domain=MS, axis=1)
    branch = helper.make_graph([concat], "branch", [], [helper.make_tensor_value_info("c", UINT8, None)])
    outer = Scope({"a": TensorInfo((1, 2, 4, 4), UINT8), "b": TensorInfo((1, 2, 4, 4), UINT8),
                   "s": TensorInfo((), FLOAT), "z": TensorInfo((), UINT8)}, {"s", "z"}, {}, [])
    (cost,) = cost_graph(branch, outer)
    assert cost.output_shapes == [[1, 4, 4, 4]] and cost.bytes_written == 64  # uint8, not the scale's float


# ------------------------------------------------------------------ QDQ bookkeeping


def test_activation_quantize_dequantize_pairs_are_plumbing_and_weights_constants():
    """x -> Q -> DQ -> Conv(DQ(w)) -> Q -> DQ: one layer, the Conv, with the float Conv's MACs."""
    weights = onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), np.int8), "Wq")
    scale, zero = helper.make_tensor("s", FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.INT8, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q_in"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq_in"),
             helper.make_node("DequantizeLinear", ["Wq", "s", "z"], ["W"], name="dq_w"),
             helper.make_node("Conv", ["xd", "W"], ["c"], name="conv", pads=[1] * 4),
             helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"], name="q_out"),
             helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"], name="dq_out")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", FLOAT, None)], [weights, scale, zero])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    categories = {n.name: n.category for n in result.nodes}
    assert categories == {"q_in": "plumbing", "dq_in": "plumbing", "dq_w": "constant", "conv": "conv",
                          "q_out": "plumbing", "dq_out": "plumbing"}
    assert result.features["num_layers"] == 1 and result.features["total_macs"] == 4 * 64 * 27
    assert result.features["total_params"] == 108 and result.features["param_bytes"] == 108
    assert node(result, "q_in").bytes_read == 3 * 64 * 4 and node(result, "q_in").bytes_written == 3 * 64
    assert result.features["activation_bytes_read"] == node(result, "conv").bytes_read  # layers only


def _rescaled_linear(op_type: str, scale_dims: list[int]) -> onnx.ModelProto:
    """``op_type`` -> Cast -> Mul by a scale computed at run time -> Add bias: the chain onnxruntime's
    dynamic quantization writes for a Linear (MatMulInteger; ConvInteger likewise for a Conv)."""
    integer = op_type == "MatMulInteger"
    weight = onnx.numpy_helper.from_array(np.ones((16, 8), np.uint8 if integer else np.float32), "W")
    bias = onnx.numpy_helper.from_array(np.zeros(8, np.float32), "bias")
    scale = onnx.numpy_helper.from_array(np.ones(scale_dims, np.float32), "w_scale")
    nodes = [helper.make_node(op_type, ["x", "W"], ["acc"], name="fc"),
             helper.make_node("Cast", ["acc"], ["acc_f"], name="cast", to=FLOAT),
             helper.make_node("Mul", ["x_scale", "w_scale"], ["scale"], name="scales"),
             helper.make_node("Mul", ["acc_f", "scale"], ["rescaled"], name="rescale"),
             helper.make_node("Add", ["rescaled", "bias"], ["y"], name="bias_add")]
    graph = helper.make_graph(nodes, "dyn", [helper.make_tensor_value_info("x", UINT8 if integer else FLOAT, [4, 16]),
                                             helper.make_tensor_value_info("x_scale", FLOAT, [])],
                              [helper.make_tensor_value_info("y", FLOAT, None)], [weight, bias, scale])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("scale_dims", [[], [8]])  # per tensor, per output channel
def test_a_dynamically_quantized_linear_counts_its_bias_past_the_cast_and_rescale(scale_dims):
    result = analyze(_rescaled_linear("MatMulInteger", scale_dims))
    assert node(result, "cast").category == "plumbing" and node(result, "bias_add").params == 8
    assert result.features["fc_params"] == 16 * 8 + 8
    assert result.features["total_params"] == 16 * 8 + 8  # the weight's scale is a setting (8 more until 2026-11-29)


def test_the_same_chain_after_a_float_layer_is_left_as_it_was():
    """Only integer layers are followed past a Cast and a rescale: float models keep their features,
    and a vector multiplied onto a float layer's output (a LayerScale) stays its parameters."""
    result = analyze(_rescaled_linear("MatMul", []))
    assert result.features["fc_params"] == 16 * 8 and node(result, "bias_add").params == 8
    per_channel = analyze(_rescaled_linear("MatMul", [8]))
    assert node(per_channel, "scales").params == 8 and per_channel.features["total_params"] == 16 * 8 + 8 + 8


# ------------------------------------------------------------------ per-channel scales are settings

K, N = 16, 8  # a K x N weight, N output channels
M, C = 8, 4  # a conv's output and input channels (3 x 3 kernel)


def _tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(array, name)


def _dynamic(layer: str, channels: int, per_channel: bool, scale_path: str = "dynamic") -> onnx.ModelProto:
    """What onnxruntime's quantize_dynamic writes for a Linear (MatMulInteger) or a Conv
    (ConvInteger): DynamicQuantizeLinear(x) -> integer layer -> Cast -> Mul by x's scale x the
    weight's scale (``channels`` values when quantized per channel; a conv's reshaped to
    [1, C, 1, 1]) -> Add bias. ``scale_path="constant"``: the accumulator multiplied by a stored
    scale vector directly, as a converter that knows the input scale writes it."""
    conv = layer == "ConvInteger"
    count = channels if per_channel else 1
    dims = [count] if per_channel else []
    weight = _tensor("W", np.ones((M, C, 3, 3) if conv else (K, N), np.uint8))
    inits = [weight, _tensor("w_scale", np.full(dims, 0.02, np.float32)), _tensor("w_zero", np.zeros(dims, np.uint8)),
             _tensor("bias", np.zeros([1, M, 1, 1] if conv else [N], np.float32))]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "x_scale", "x_zero"], name="quantize"),
             helper.make_node(layer, ["xq", "W", "x_zero", "w_zero"], ["acc"], name="layer"),
             helper.make_node("Cast", ["acc"], ["acc_f"], name="cast", to=FLOAT)]
    if scale_path == "constant":
        scale = "w_scale"
    else:
        nodes.append(helper.make_node("Mul", ["x_scale", "w_scale"], ["scale"], name="scales"))
        scale = "scale"
    if conv and per_channel:  # [M] broadcast onto [1, M, H, W]
        inits.append(_tensor("shape", np.array([1, M, 1, 1], np.int64)))
        nodes.append(helper.make_node("Reshape", [scale, "shape"], ["scale_4d"], name="scale_shape"))
        scale = "scale_4d"
    nodes.append(helper.make_node("Mul", ["acc_f", scale], ["rescaled"], name="rescale"))
    nodes.append(helper.make_node("Add", ["rescaled", "bias"], ["y"], name="bias_add"))
    x = helper.make_tensor_value_info("x", FLOAT, [1, C, 8, 8] if conv else [4, K])
    graph = helper.make_graph(nodes, "dynamic", [x], [helper.make_tensor_value_info("y", FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("scale_path", ["dynamic", "constant"])
@pytest.mark.parametrize(("layer", "weights", "bias"), [("MatMulInteger", K * N, N), ("ConvInteger", M * C * 9, M)])
def test_a_per_channel_weight_scale_of_a_dynamically_quantized_layer_is_not_parameters(layer, weights, bias, scale_path):
    """The weight's scale vector (one per output channel) was counted as that many parameters of
    the Mul applying it: the per-channel model had N more than the per-tensor one."""
    channels = N if layer == "MatMulInteger" else M
    per_tensor, per_channel = (analyze(_dynamic(layer, channels, p, scale_path)) for p in (False, True))
    for result in (per_tensor, per_channel):
        assert result.unknown_ops == {} and result.unknown_shape_nodes == []
        assert result.features["total_params"] == weights + bias, [(n.name, n.params) for n in result.nodes]
        assert result.features["param_bytes"] == weights + 4 * bias  # uint8 weights, float32 biases
        assert node(result, "rescale").params == 0 and node(result, "bias_add").params == bias
        if scale_path == "dynamic":
            assert node(result, "scales").params == node(result, "scales").param_bytes == 0
    for name in ("total_params", "critical_path_params", "param_bytes"):
        assert per_channel.features[name] == per_tensor.features[name], name  # MACs differ: N scale products
    if layer == "MatMulInteger":  # the bias is still found past the rescale (a conv's [1, M, 1, 1] scale: not yet)
        assert per_channel.features["fc_params"] == weights + bias


def test_a_scale_another_node_reads_too_keeps_its_count():
    """Only a chain made for the rescale alone is settled: a tensor read elsewhere may be more than
    a scale."""
    model = _dynamic("MatMulInteger", N, True)
    model.graph.node.append(helper.make_node("Mul", ["scale", "y"], ["z"], name="elsewhere"))
    model.graph.output[0].name = "z"
    result = analyze(model)
    assert node(result, "scales").params == N and node(result, "rescale").params == 0


def _per_channel_weight_settings(op_type: str):
    """Quantized layers whose weight scale and zero point have one value per output channel."""
    scalar = [_tensor("s", np.array(0.1, np.float32)), _tensor("z", np.array(128, np.uint8))]
    channel = [_tensor("ws", np.full(M, 0.02, np.float32)), _tensor("wz", np.zeros(M, np.uint8))]
    if op_type == "QLinearConv":
        nodes = [helper.make_node("QLinearConv", ["x", "s", "z", "W", "ws", "wz", "s", "z", "b"], ["y"], name="op")]
        inits = [_tensor("W", np.ones((M, C, 3, 3), np.uint8)), _tensor("b", np.zeros(M, np.int32))]
        x, weights, bias = helper.make_tensor_value_info("x", UINT8, [1, C, 8, 8]), M * C * 9, M
    elif op_type == "QLinearMatMul":
        nodes = [helper.make_node("QLinearMatMul", ["x", "s", "z", "W", "ws", "wz", "s", "z"], ["y"], name="op")]
        inits = [_tensor("W", np.ones((K, M), np.uint8))]
        x, weights, bias = helper.make_tensor_value_info("x", UINT8, [4, K]), K * M, 0
    elif op_type == "DequantizeLinear":  # a QDQ weight dequantized per output channel (axis 0), then Conv
        nodes = [helper.make_node("DequantizeLinear", ["W", "ws", "wz"], ["Wf"], name="dq", axis=0),
                 helper.make_node("Conv", ["x", "Wf"], ["y"], name="op")]
        inits = [_tensor("W", np.ones((M, C, 3, 3), np.uint8))]
        x, weights, bias = helper.make_tensor_value_info("x", FLOAT, [1, C, 8, 8]), M * C * 9, 0
    else:  # the integer layers with per-channel zero points only (their scales come after them)
        integer_inputs = ["x", "W", "z", "wz"]
        nodes = [helper.make_node(op_type, integer_inputs, ["y"], name="op")]
        conv = op_type == "ConvInteger"
        inits = [_tensor("W", np.ones((M, C, 3, 3) if conv else (K, M), np.uint8))]
        x = helper.make_tensor_value_info("x", UINT8, [1, C, 8, 8] if conv else [4, K])
        weights, bias = (M * C * 9 if conv else K * M), 0
    graph = helper.make_graph(nodes, "q", [x], [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)],
                              [*scalar, *channel, *inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), weights, bias


@pytest.mark.parametrize("op_type", ["QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "DequantizeLinear"])
def test_per_channel_scales_and_zero_points_of_quantized_layers_are_settings(op_type):
    model, weights, bias = _per_channel_weight_settings(op_type)
    result = analyze(model)
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []
    assert result.features["total_params"] == node(result).params == weights + bias


@pytest.mark.parametrize(("op_type", "inputs"), [
    ("DynamicQuantizeMatMul", ["a", "B", "ws", "wz", "bias"]),
    ("MatMulIntegerToFloat", ["aq", "B", "s", "ws", "z", "wz", "bias"]),
])
def test_per_channel_scales_of_fused_dynamic_quantization_matmuls_are_settings(op_type, inputs):
    channel = [_tensor("ws", np.full(8, 0.02, np.float32)), _tensor("wz", np.zeros(8, np.uint8))]
    bias = _tensor("bias", np.zeros(8, np.float32))
    data = {"aq" if "aq" in inputs else "a": [2, 3, 16]}
    result = analyze(_ms_model([_op(op_type, inputs)], data, [_u8("B", 16, 8), bias, *channel],
                               UINT8 if "aq" in inputs else FLOAT))
    assert _only(result).params == result.features["total_params"] == 16 * 8 + 8


# ------------------------------------------------------------------ onnxruntime's quantizers on torch exports

try:  # the hand-built graphs above need neither
    import torch
    from onnxruntime import quantization
except ImportError:  # pragma: no cover - both are in the dev extras
    torch = quantization = None
needs_quantizer = pytest.mark.skipif(torch is None, reason="needs torch and onnxruntime")

# by hand (see _cnn below): MACs and parameters of each convolution and linear layer
CNN_CONV_MACS = 8 * 256 * 27 + 8 * 256 * 8 + 8 * 64 * 8 + 8 * 64 * 72
CNN_CONV_PARAMS = (216 + 8) + (64 + 8) + (64 + 8) + (576 + 8)
CNN_FC_MACS, CNN_FC_PARAMS = 16 * 4, 16 * 4 + 4
# c1, LeakyRelu, c2, Sigmoid, Mul, AvgPool, c3, Relu, c4, Add, AvgPool, Concat, GlobalAveragePool, Gemm
CNN_FLOAT_LAYERS = 14


def _cnn():
    """Every QOperator op of onnxruntime's static quantizer a CNN meets: conv, LeakyReLU, sigmoid gate
    (Mul), AvgPool, residual Add, Concat, global pool, Linear."""
    nn = torch.nn

    class Cnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)   # 8 x 16 x 16 outputs x 27
            self.c2 = nn.Conv2d(8, 8, 1)              # x 8
            self.c3 = nn.Conv2d(8, 8, 1)              # 8 x 8 x 8 outputs x 8
            self.c4 = nn.Conv2d(8, 8, 3, padding=1)   # x 72
            self.fc = nn.Linear(16, 4)
            self.act = nn.LeakyReLU(0.1)
            self.pool = nn.AvgPool2d(2)

        def forward(self, x):
            y = self.act(self.c1(x))
            z = torch.relu(self.c3(self.pool(y * torch.sigmoid(self.c2(y)))))
            z = torch.cat([z + self.c4(z), self.pool(y)], 1)
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))

    return Cnn()


def _mlp():
    nn = torch.nn
    # a Linear without bias is a MatMul (QLinearMatMul, MatMulInteger); with one a Gemm (QGemm)
    return nn.Sequential(nn.Linear(32, 64, bias=False), nn.ReLU(), nn.Linear(64, 16))


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol: input feeds until None."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        rng = np.random.default_rng(0)
        self.batches = iter([{"x": rng.random(shape, np.float32)} for _ in range(2)])

    def get_next(self):
        return next(self.batches, None)


def _export(net, shape: tuple[int, ...], path: Path) -> Path:
    torch.manual_seed(0)
    torch.onnx.export(net.eval(), (torch.randn(shape),), str(path), dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"])
    return path


def _static(float_model: Path, shape: tuple[int, ...], quant_format: str) -> Path:
    out = float_model.with_name(f"{float_model.stem}_{quant_format}.onnx")
    quantization.quantize_static(str(float_model), str(out), _Calibration(shape),
                                 quant_format=getattr(quantization.QuantFormat, quant_format))
    return out


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cnn")
    shape = (1, 3, 16, 16)
    float_model = _export(_cnn(), shape, folder / "cnn.onnx")
    return {"float": float_model, "QDQ": _static(float_model, shape, "QDQ"),
            "QOperator": _static(float_model, shape, "QOperator")}


def _kernel_groups(result) -> list[str]:
    return [kernel_group(n) for n in result.nodes if n.is_layer]


@needs_quantizer
def test_float_cnn_by_hand(cnn):
    features = analyze(cnn["float"]).features
    assert features["conv_macs"] == CNN_CONV_MACS and features["conv_params"] == CNN_CONV_PARAMS
    assert features["fc_macs"] == CNN_FC_MACS and features["fc_params"] == CNN_FC_PARAMS
    assert features["num_layers"] == CNN_FLOAT_LAYERS


@needs_quantizer
@pytest.mark.parametrize("quant_format", ["QDQ", "QOperator"])
def test_statically_quantized_cnn_counts_the_float_layers(cnn, quant_format):
    result = analyze(cnn[quant_format])
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []
    if quant_format == "QOperator":
        assert any(n.op_type.startswith(f"{MS}::QLinear") for n in result.nodes)
    features = result.features
    assert features["conv_macs"] == CNN_CONV_MACS and features["conv_params"] == CNN_CONV_PARAMS
    assert features["fc_macs"] == CNN_FC_MACS and features["fc_params"] == CNN_FC_PARAMS
    assert features["total_params"] == CNN_CONV_PARAMS + CNN_FC_PARAMS
    # the float layers less the Relu, which the quantizer folds into c3's output range
    assert features["num_layers"] == CNN_FLOAT_LAYERS - 1 and features["num_activation"] == 2
    for kind in ("conv", "fc", "add", "concat", "avgpool"):
        assert features[f"num_{kind}"] == analyze(cnn["float"]).features[f"num_{kind}"], kind
    groups = _kernel_groups(result)
    assert groups.count("conv") == 4 and groups.count("gemm") == 1 and "other" not in groups


@needs_quantizer
def test_dynamically_quantized_cnn_counts_the_float_biases(cnn):
    """ConvInteger/MatMulInteger -> Cast -> Mul by the scales -> Add bias: the bias is the layer's."""
    dynamic = cnn["float"].with_name("cnn_dynamic.onnx")
    quantization.quantize_dynamic(str(cnn["float"]), str(dynamic))
    result = analyze(dynamic)
    assert {"ConvInteger", "MatMulInteger"} <= {n.op_type for n in result.nodes}
    features = result.features
    assert features["conv_params"] == CNN_CONV_PARAMS and features["fc_params"] == CNN_FC_PARAMS
    assert features["conv_macs"] == CNN_CONV_MACS and features["fc_macs"] == CNN_FC_MACS


@needs_quantizer
def test_a_cnn_quantized_per_channel_has_the_parameters_of_the_float_one(cnn):
    """onnxruntime's quantize_dynamic(per_channel=True): each weight's scale vector is a setting."""
    per_channel = cnn["float"].with_name("cnn_dynamic_per_channel.onnx")
    quantization.quantize_dynamic(str(cnn["float"]), str(per_channel), per_channel=True)
    scales = [t for t in onnx.load(str(per_channel)).graph.initializer if t.name.endswith("_scale") and t.dims]
    assert scales, "no per-channel scale: the test would show nothing"
    float_features, features = analyze(cnn["float"]).features, analyze(per_channel).features
    for name in ("total_params", "conv_params", "fc_params"):
        assert features[name] == float_features[name], name


@needs_quantizer
def test_quantized_kernel_rows_have_the_float_conv_geometry(cnn):
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, kernel_table
    geometry = [KERNEL_FEATURE_NAMES.index(c) for c in (
        "log2_kernel_h", "log2_kernel_w", "log2_in_channels", "log2_out_channels", "log2_output_pixels",
        "log2_stride", "log2_gemm_m", "log2_gemm_n", "log2_gemm_k")]

    def conv_rows(path: Path) -> np.ndarray:
        result = analyze(path)
        layers = [n for n in result.nodes if n.is_layer]
        table = kernel_table(result.nodes)
        return table[[i for i, n in enumerate(layers) if kernel_group(n) in ("conv", "gemm")]][:, geometry]

    expected = conv_rows(cnn["float"])
    assert expected.shape == (5, len(geometry)) and expected.any()
    np.testing.assert_array_equal(conv_rows(cnn["QOperator"]), expected)
    np.testing.assert_array_equal(conv_rows(cnn["QDQ"]), expected)


@needs_quantizer
def test_quantized_mlp_matmuls(tmp_path):
    shape = (4, 32)
    float_model = _export(_mlp(), shape, tmp_path / "mlp.onnx")
    macs, params = 4 * 64 * 32 + 4 * 16 * 64, 32 * 64 + 64 * 16 + 16
    assert analyze(float_model).features["fc_macs"] == macs
    dynamic = tmp_path / "mlp_dyn.onnx"
    quantization.quantize_dynamic(str(float_model), str(dynamic))
    fused = _saved_by_onnxruntime(dynamic)  # DynamicQuantizeMatMul in place of each MatMulInteger chain
    for path in (_static(float_model, shape, "QOperator"), dynamic, fused):
        result = analyze(path)
        assert result.unknown_ops == {} and result.unknown_shape_nodes == []
        assert result.features["fc_macs"] == macs and result.features["num_fc"] == 2
        assert result.features["total_params"] == result.features["fc_params"] == params, path.name
        assert "other" not in [kernel_group(n) for n in result.nodes if n.is_layer and n.category == "fc"]
    assert {n.op_type for n in analyze(fused).nodes} == {f"{MS}::DynamicQuantizeMatMul", "Relu"}
    assert analyze(fused).features["num_layers"] == analyze(float_model).features["num_layers"] == 3


def _saved_by_onnxruntime(path: Path) -> Path:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(path.with_name(f"{path.stem}_ort.onnx"))
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Path(options.optimized_model_filepath)


def _block():
    """A transformer MLP block: Linear (MatMul + bias Add on a 3-d input), LayerNorm, GELU, Linear.
    Exported at opset 14, torch writes the LayerNorm and GELU as chains of primitive ops."""
    nn = torch.nn
    return nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 16))


@pytest.fixture(scope="module")
def block(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("block")
    shape = (1, 4, 16)
    torch.manual_seed(0)
    float_model = folder / "block.onnx"
    torch.onnx.export(_block().eval(), (torch.randn(shape),), str(float_model), dynamo=False, opset_version=14,
                      input_names=["x"], output_names=["y"])
    return {"float": float_model, "QDQ": _static(float_model, shape, "QDQ"),
            "QOperator": _static(float_model, shape, "QOperator")}


@needs_quantizer
def test_qdq_pairs_inside_a_decomposed_layernorm_and_gelu_are_looked_through(block):
    """Activation Q/DQ between the chain's ops (plumbing) do not stop the pattern pass: the QDQ model
    has the float model's LayerNorm and Gelu, and its layers."""
    written, qdq = analyze(block["float"]), analyze(block["QDQ"])
    assert sorted(n.op_type for n in written.nodes if n.fused_from) == ["Gelu", "LayerNormalization"]
    norms = [n for n in qdq.nodes if n.fused_from]
    assert sorted(n.op_type for n in norms) == ["Gelu", "LayerNormalization"]
    assert all(any("QuantizeLinear" in name for name in n.fused_from) for n in norms)
    keys = ("num_layers", "num_norm", "num_activation", "num_add", "max_branches", "total_macs", "total_params")
    assert {k: qdq.features[k] for k in keys} == {k: written.features[k] for k in keys}
    assert qdq.features["num_norm"] == 1 and qdq.features["num_activation"] == 1


@needs_quantizer
@pytest.mark.parametrize("quant_format", ["QDQ", "QOperator"])
def test_a_statically_quantized_linear_counts_its_bias_add_in_fc_params(block, quant_format):
    """The bias Add after a MatMul is behind a QuantizeLinear/DequantizeLinear pair (QDQ) or is a
    QLinearAdd (QOperator); either way it is the Linear's bias, as in the float model."""
    expected = analyze(block["float"]).features["fc_params"]
    assert expected == 16 * 32 + 32 + 32 * 16 + 16
    assert analyze(block[quant_format]).features["fc_params"] == expected


@needs_quantizer
def test_a_qdq_chain_whose_interior_dequantized_tensor_is_read_elsewhere_stays_as_written(block):
    """The pass-through Q/DQ join the group, so an outside reader of their output keeps it apart."""
    built = onnx.load(str(block["QDQ"]))
    interior = next(n.output[0] for n in built.graph.node
                    if n.op_type == "DequantizeLinear" and n.input[0].startswith("/1/Add_output_0"))
    built.graph.node.append(helper.make_node("Relu", [interior], ["elsewhere"], name="elsewhere"))
    built.graph.output.append(helper.make_tensor_value_info("elsewhere", FLOAT, None))
    assert [n.op_type for n in analyze(built).nodes if n.fused_from] == ["Gelu"]


def test_the_precision_a_model_computes_in_is_read_from_the_weights_its_layers_multiply():
    """A small int8 model with a large fp32 embedding table computes in int8: the table is looked
    up, not multiplied, so it must not outvote the dequantized matmul weights."""
    from sniper_onnx.precision import model_precision

    table = onnx.numpy_helper.from_array(np.zeros((5000, 32), np.float32), "table")
    weights = [table, onnx.numpy_helper.from_array(np.zeros((32, 32), np.int8), "w_q"), helper.make_tensor("ws", FLOAT, [], [0.1])]
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"]), helper.make_node("DequantizeLinear", ["w_q", "ws"], ["w"]),
             helper.make_node("MatMul", ["emb", "w"], ["y"])]
    graph = helper.make_graph(nodes, "embed", [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 8])],
                              [helper.make_tensor_value_info("y", FLOAT, None)], initializer=weights)
    info = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])).model_info
    assert info["weight_types"] == {"float32": 160001, "int8": 1024}
    assert info["compute_weight_types"] == {"int8": 1024}
    assert model_precision(info) == ("int8", "weights")
    assert model_precision({"weight_types": {"float32": 10}, "compute_weight_types": {}}) == ("float32", "weights")


def test_weights_stored_in_fp16_and_cast_to_float_compute_in_fp32():
    """Half the file, the same fp32 compute: the Cast nearest the layer decides the precision."""
    from sniper_onnx.precision import model_precision

    weights = [onnx.numpy_helper.from_array(np.zeros((32, 32), np.float16), "w16")]
    nodes = [helper.make_node("Cast", ["w16"], ["w"], to=TensorProto.FLOAT), helper.make_node("MatMul", ["x", "w"], ["y"])]
    graph = helper.make_graph(nodes, "stored_half", [helper.make_tensor_value_info("x", FLOAT, [1, 32])],
                              [helper.make_tensor_value_info("y", FLOAT, None)], initializer=weights)
    info = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])).model_info
    assert info["weight_types"] == {"float16": 1024} and info["compute_weight_types"] == {"float32": 1024}
    assert model_precision(info) == ("float32", "weights")
