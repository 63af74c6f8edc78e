"""Kernel tables: one row per layer node, the same from NodeCost objects and from `analyze --json --nodes`."""

import json

import numpy as np
from typer.testing import CliRunner

from sniper_generator.builder import GraphBuilder
from sniper_onnx.analysis import analyze
from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, KERNEL_GROUPS, kernel_group, kernel_table
from sniper_onnx.cli import app


def _small_net():
    b = GraphBuilder("k", np.random.default_rng(0), weights=False)
    x = b.input("x", (1, 4, 16, 16))
    y = b.conv(x, 8, 7, stride=2, padding=3)            # 4 -> 8 channels, 7x7, output 8x8
    y = b.activation(y, "relu")
    y = b.conv(y, 8, 3, padding=1, groups=8)            # depthwise
    y = b.flatten(b.global_pool(y))
    y = b.gemm(y, 10)
    b.output(y, "y")
    return b.build()


def test_rows_describe_each_layer_kernel():
    result = analyze(_small_net())
    table = kernel_table(result.nodes)
    layers = [n for n in result.nodes if n.is_layer]
    assert table.shape == (len(layers), len(KERNEL_FEATURE_NAMES))
    column = {name: i for i, name in enumerate(KERNEL_FEATURE_NAMES)}
    groups = [KERNEL_GROUPS[int(np.argmax(row[: len(KERNEL_GROUPS)]))] for row in table]
    assert groups == [kernel_group(n) for n in layers]
    assert groups[0] == "conv" and "depthwise_conv" in groups and groups[-1] == "gemm"
    conv = table[0]
    assert conv[column["log2_kernel_h"]] == np.float32(np.log2(8))          # log2(1 + 7)
    assert conv[column["log2_in_channels"]] == np.float32(np.log2(5))       # 4 channels
    assert conv[column["in_channels_multiple_of_8"]] == 0 and conv[column["out_channels_multiple_of_8"]] == 1
    assert conv[column["log2_gemm_k"]] == np.float32(np.log2(1 + 4 * 49))  # im2col K = C_in * kh * kw
    assert conv[column["log2_output_pixels"]] == np.float32(np.log2(1 + 64))
    gemm = table[-1]
    assert gemm[column["log2_gemm_m"]] == np.float32(1.0) and gemm[column["log2_gemm_n"]] == np.float32(np.log2(11))


def test_json_nodes_give_the_same_table(tmp_path):
    import onnx

    path = tmp_path / "k.onnx"
    onnx.save(_small_net(), str(path))
    result = CliRunner().invoke(app, ["analyze", str(path), "--json", "--nodes"])
    assert result.exit_code == 0, result.output
    from_json = kernel_table(json.loads(result.stdout)["nodes"])
    np.testing.assert_array_equal(from_json, kernel_table(analyze(str(path)).nodes))


def test_unknown_shapes_count_nothing_instead_of_failing():
    row = {"op_type": "Conv", "is_layer": True, "subgraph": False, "macs": 0, "param_bytes": 0,
           "input_shapes": [[1, None, 8, 8], None], "output_shapes": [None]}
    table = kernel_table([row])
    assert table.shape == (1, len(KERNEL_FEATURE_NAMES)) and np.isfinite(table).all()


def test_a_matmul_by_a_weight_is_the_gemm_a_linear_layer_runs():
    """torch writes Linear on [B, T, D] as MatMul by a weight; the training nets write every linear
    layer as Gemm, so a weight MatMul filed as `matmul` was read as attention's product of two
    activations (a BERT-like encoder predicted 5.6 ms, measured 11.1 ms)."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("W", TensorProto.FLOAT, [64, 256], np.ones(64 * 256, np.float32))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="linear"),
         helper.make_node("Transpose", ["h"], ["ht"], perm=[0, 2, 1], name="t"),
         helper.make_node("MatMul", ["h", "ht"], ["scores"], name="scores")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 128, 64])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    nodes = {n.name: n for n in analyze(model).nodes}
    assert kernel_group(nodes["linear"]) == "gemm" and kernel_group(nodes["scores"]) == "matmul"
    row = dict(zip(KERNEL_FEATURE_NAMES, kernel_table([nodes["linear"]])[0]))
    assert row["log2_gemm_m"] == np.float32(np.log2(1 + 2 * 128))   # the batch and sequence are GEMM rows
    assert row["log2_gemm_n"] == np.float32(np.log2(1 + 256)) and row["log2_gemm_k"] == np.float32(np.log2(1 + 64))
    as_json = json.loads(json.dumps([n.to_row() for n in analyze(model).nodes]))
    assert kernel_group(next(n for n in as_json if n["name"] == "linear")) == "gemm"


def test_an_embedding_lookup_reads_the_rows_it_returns_not_the_table():
    from onnx import TensorProto, helper

    table = TensorProto(name="table", data_type=TensorProto.FLOAT, dims=[30522, 64])  # weightless: dims only
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup", axis=0)], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    result = analyze(model)
    lookup = next(n for n in result.nodes if n.name == "lookup")
    assert lookup.params == 30522 * 64  # the analyzer still counts the whole table as parameters
    row = dict(zip(KERNEL_FEATURE_NAMES, kernel_table([lookup])[0]))
    assert row["log2_param_bytes"] == np.float32(np.log2(1 + 4 * 16 * 64))  # the 16 rows returned
    assert row["log2_input_elements"] == np.float32(np.log2(1 + 16 + 16 * 64))  # indices and rows read


def _one_op_net(op: str, opset: int, weights=()):
    import onnx
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.ones(64, np.float32), name) for name in weights]
    node = helper.make_node(op, ["x", *weights], ["y"], **({"num_groups": 32} if op == "GroupNormalization" else {}))
    graph = helper.make_graph([node], op, [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _groups_of(table):
    return [KERNEL_GROUPS[int(np.argmax(row[: len(KERNEL_GROUPS)]))] for row in table]


def test_ops_onnxruntime_runs_as_their_function_body_get_a_row_per_body_kernel():
    """onnxruntime has no kernel for these: a saved optimized model holds their ONNX function body."""
    column = KERNEL_FEATURE_NAMES.index("log2_output_elements")
    hard_swish = kernel_table(analyze(_one_op_net("HardSwish", 21)).nodes)  # HardSigmoid, then Mul
    assert _groups_of(hard_swish) == ["transcendental_activation", "binary_elementwise"]
    assert (hard_swish[:, column] == np.float32(np.log2(1 + 4096))).all()
    mish = kernel_table(analyze(_one_op_net("Mish", 21)).nodes)  # Softplus, Tanh, Mul
    assert _groups_of(mish) == ["other", "transcendental_activation", "binary_elementwise"]
    norm = kernel_table(analyze(_one_op_net("GroupNormalization", 21, ("scale", "bias"))).nodes)
    assert _groups_of(norm) == ["global_pool", "binary_elementwise", "binary_elementwise", "binary_elementwise",
                                "global_pool", "binary_elementwise", "binary_elementwise", "cheap_activation",
                                "binary_elementwise", "binary_elementwise", "binary_elementwise"]
    whole, per_group = np.float32(np.log2(1 + 4096)), np.float32(np.log2(1 + 32))  # 32 groups of 2 channels
    assert list(norm[:, column]) == [per_group, whole, per_group, whole, per_group, per_group, per_group, per_group,
                                     whole, whole, whole]
    relu = kernel_table(analyze(_one_op_net("Relu", 21)).nodes)
    assert _groups_of(relu) == ["cheap_activation"]  # an op with a kernel keeps its one row


def test_a_body_op_of_unknown_shape_keeps_its_one_row():
    row = {"op_type": "Mish", "is_layer": True, "subgraph": False, "macs": 0, "param_bytes": 0,
           "input_shapes": [[1, None, 8, 8]], "output_shapes": [None]}
    assert kernel_table([row]).shape == (1, len(KERNEL_FEATURE_NAMES))


def test_each_body_lists_the_op_types_it_runs():
    from sniper_onnx.analysis.runtime_bodies import BODIES, BODY_OPS

    assert set(BODIES) == set(BODY_OPS)
    for op, body in BODIES.items():
        assert {step["op_type"] for step in body([2, 64, 4, 4])} == set(BODY_OPS[op]), op


def _softmax_net(axis: int, opset: int):
    import onnx
    from onnx import helper

    node = helper.make_node("Softmax", ["x"], ["y"], axis=axis)
    graph = helper.make_graph([node], "s", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 4, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_a_softmax_over_an_inner_axis_is_its_own_layer_op():
    """onnxruntime transposes for it (17x a last-axis Softmax on [1, 64, 64, 64]); training had none."""
    assert analyze(_softmax_net(1, 13)).layer_ops == {"Softmax (inner axis)": 1}
    assert analyze(_softmax_net(-3, 17)).layer_ops == {"Softmax (inner axis)": 1}
    assert analyze(_softmax_net(-1, 13)).layer_ops == {"Softmax": 1}
    assert analyze(_softmax_net(3, 13)).layer_ops == {"Softmax": 1}
    # before opset 13, axis flattens the dims from it on: one contiguous softmax, no transpose
    assert analyze(_softmax_net(1, 12)).layer_ops == {"Softmax": 1}


def _conv_net(spatial: list):
    import onnx
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones([16, 8] + [3] * len(spatial), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * (2 * len(spatial)))
    graph = helper.make_graph([node], "c", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, *spatial])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=[weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_convs_of_one_or_three_spatial_dims_are_their_own_layer_ops_with_their_whole_gemm():
    column = {name: i for i, name in enumerate(KERNEL_FEATURE_NAMES)}
    three = analyze(_conv_net([4, 8, 8]))
    assert three.layer_ops == {"Conv (3-D)": 1}
    row = kernel_table(three.nodes)[0]
    # every output voxel is a GEMM column, the depth is in K (until 2026-11-30: D x H columns, K 72)
    assert row[column["log2_output_pixels"]] == row[column["log2_gemm_n"]] == np.float32(np.log2(1 + 4 * 8 * 8))
    assert row[column["log2_gemm_k"]] == np.float32(np.log2(1 + 8 * 27))
    assert row[column["log2_kernel_h"]] == np.float32(np.log2(1 + 9)) and row[column["log2_kernel_w"]] == 2.0
    one = analyze(_conv_net([32]))
    assert one.layer_ops == {"Conv (1-D)": 1}
    row = kernel_table(one.nodes)[0]
    assert row[column["log2_gemm_k"]] == np.float32(np.log2(1 + 24)) and row[column["log2_kernel_h"]] == 1.0
    assert analyze(_conv_net([8, 8])).layer_ops == {"Conv": 1}


def test_pools_over_one_or_three_spatial_dims_are_their_own_layer_ops():
    import onnx
    from onnx import helper

    def pooled(shape):
        node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2] * (len(shape) - 2))
        graph = helper.make_graph([node, helper.make_node("GlobalAveragePool", ["y"], ["z"])], "p",
                                  [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)])
        return analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)).layer_ops

    assert pooled([1, 4, 8, 8, 8]) == {"GlobalAveragePool (3-D)": 1, "MaxPool (3-D)": 1}
    assert pooled([1, 4, 8]) == {"GlobalAveragePool (1-D)": 1, "MaxPool (1-D)": 1}
    assert pooled([1, 4, 8, 8]) == {"GlobalAveragePool": 1, "MaxPool": 1}


def test_a_swish_the_silu_pattern_fused_keeps_the_two_kernels_it_was_written_as():
    import onnx
    from onnx import helper

    nodes = [helper.make_node("Sigmoid", ["x"], ["s"]), helper.make_node("Mul", ["x", "s"], ["y"])]
    graph = helper.make_graph(nodes, "silu", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8, 4, 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fused = analyze(model, patterns=("silu",))
    assert [n.op_type for n in fused.nodes if n.is_layer] == ["Swish"]
    assert _groups_of(kernel_table(fused.nodes)) == ["transcendental_activation", "binary_elementwise"]
