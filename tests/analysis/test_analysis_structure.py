"""Graph-level rules: layers vs plumbing, branches, the critical path, shared weights, subgraphs."""

from __future__ import annotations

import networkx as nx
import onnx
import numpy as np
import pytest
from analysis_graphs import conv_macs, ints, model, node, tensor, weight
from onnx import TensorProto, helper

from sniper_onnx import analyze
from sniper_onnx.analysis import FEATURE_NAMES


def inception_block():
    """x -> {conv1x1, conv3x3, conv5x5, maxpool} -> Concat: four branches, the 5x5 is the heaviest."""
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["b1"], name="c1"),
        helper.make_node("Conv", ["x", "W3"], ["b3"], name="c3", pads=[1] * 4),
        helper.make_node("Conv", ["x", "W5"], ["b5"], name="c5", pads=[2] * 4),
        helper.make_node("MaxPool", ["x"], ["bp"], name="pool", kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Concat", ["b1", "b3", "b5", "bp"], ["y"], name="cat", axis=1),
    ]
    weights = [weight("W1", 4, 4, 1, 1), weight("W3", 4, 4, 3, 3), weight("W5", 4, 4, 5, 5)]
    return model(nodes, {"x": [1, 4, 8, 8]}, ["y"], weights)


def test_inception_block_branches_and_critical_path():
    result = analyze(inception_block())
    f = result.features
    out = (1, 4, 8, 8)
    c5 = conv_macs(out, (4, 4, 5, 5))
    assert f["max_branches"] == 4
    assert result.critical_path == ["c5", "cat"]
    assert f["critical_path_layers"] == 2 and f["critical_path_macs"] == c5
    assert f["critical_path_params"] == 4 * 4 * 25
    total = conv_macs(out, (4, 4, 1, 1)) + conv_macs(out, (4, 4, 3, 3)) + c5 + 256 * 9
    assert f["total_macs"] == total
    assert np.isclose(f["prop_critical_path_macs"], c5 / total)
    assert f["num_layers"] == 5 and np.isclose(f["prop_critical_path_layers"], 2 / 5)
    assert f["num_conv1x1"] == f["num_conv3x3"] == f["num_conv5x5"] == f["num_maxpool"] == f["num_concat"] == 1
    assert np.isclose(f["avg_macs_per_layer"], total / 5)
    assert [n.name for n in result.nodes if n.on_critical_path] == ["c5", "cat"]


def test_graph_is_a_networkx_dag_of_operator_nodes_joined_by_tensors():
    graph = analyze(inception_block()).graph
    assert isinstance(graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph)
    assert set(graph.nodes) == {"c1", "c3", "c5", "pool", "cat"}
    assert graph.edges["c5", "cat"]["tensor"] == "b5"
    assert graph.nodes["c5"]["macs"] > 0


def residual_block():
    nodes = [
        helper.make_node("Conv", ["x", "Wa"], ["a"], name="conv_a", pads=[1] * 4),
        helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["ra", "Wb"], ["b"], name="conv_b", pads=[1] * 4),
        helper.make_node("Add", ["b", "x"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu_out"),
    ]
    return model(nodes, {"x": [1, 8, 6, 6]}, ["y"], [weight("Wa", 8, 8, 3, 3), weight("Wb", 8, 8, 3, 3)])


def test_residual_block_two_branches_and_an_add_layer():
    result = analyze(residual_block())
    assert result.features["max_branches"] == 2
    assert result.features["num_add"] == 1
    assert result.critical_path == ["conv_a", "relu_a", "conv_b", "add", "relu_out"]
    assert result.features["prop_critical_path_params"] == 1.0


def test_a_chain_has_one_branch():
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["a"], ["y"])]
    assert analyze(model(nodes, {"x": [2, 2]}, ["y"])).features["max_branches"] == 1


def test_shape_arithmetic_is_constant_folding_not_layers():
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape: only the Relu is a layer."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="gather", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"], name="unsqueeze"),
        helper.make_node("Concat", ["batch1", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["y"], name="reshape"),
    ]
    inits = [helper.make_tensor("zero", TensorProto.INT64, [], [0]), ints("axes", [0]), ints("minus_one", [-1])]
    result = analyze(model(nodes, {"x": [2, 3, 4]}, ["y"], inits))
    assert result.features["num_layers"] == 1 and result.features["num_concat"] == 0
    assert result.features["total_params"] == 0
    assert node(result, "gather").category == "constant" and node(result, "reshape").category == "plumbing"
    assert node(result, "reshape").output_shapes == [[2, 12]]  # data propagation through the shape math
    assert result.features["max_branches"] == 1  # Shape carries no data dependency


def test_shared_weight_counted_once_in_totals():
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["a"], name="first"),
        helper.make_node("MatMul", ["a", "W"], ["y"], name="second"),
    ]
    result = analyze(model(nodes, {"x": [1, 6]}, ["y"], [weight("W", 6, 6)]))
    assert node(result, "first").params == node(result, "second").params == 36
    assert result.features["total_params"] == 36 and result.features["fc_params"] == 36
    assert result.features["param_bytes"] == 36 * 4


def test_weights_through_constant_ops_count_where_they_enter_the_layer():
    """W -> Transpose -> MatMul and Constant -> Conv: the weight counts once, at its layer."""
    constant = helper.make_node("Constant", [], ["Wc"], name="const",
                                value=helper.make_tensor("v", TensorProto.FLOAT, [2, 2, 1, 1], [1.0] * 4))
    nodes = [
        helper.make_node("Transpose", ["W"], ["Wt"], name="transpose_w", perm=[1, 0]),
        helper.make_node("MatMul", ["x", "Wt"], ["m"], name="mm"),
        helper.make_node("Reshape", ["m", "to4d"], ["m4"], name="reshape"),
        constant,
        helper.make_node("Conv", ["m4", "Wc"], ["y"], name="conv"),
    ]
    result = analyze(model(nodes, {"x": [1, 8]}, ["y"], [weight("W", 2, 8), ints("to4d", [1, 2, 1, 1])]))
    assert node(result, "transpose_w").is_layer is False and node(result, "mm").params == 16
    assert node(result, "conv").params == 4 and result.features["total_params"] == 20
    assert result.features["num_layers"] == 2


def test_constant_of_shape_weight_is_a_parameter():
    nodes = [
        helper.make_node("ConstantOfShape", ["wshape"], ["W"], name="fill",
                         value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.1])),
        helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
    ]
    result = analyze(model(nodes, {"x": [1, 3]}, ["y"], [ints("wshape", [3, 5])]))
    assert node(result, "mm").params == 15 and node(result, "mm").macs == 15


def test_unknown_ops_are_listed_never_silently_zero():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("FancyOp", ["a"], ["b"], name="fancy", domain="com.example"),
        helper.make_node("FancyOp", ["b"], ["y"], name="fancy2", domain="com.example"),
    ]
    built = model(nodes, {"x": [1, 4]}, ["y"])
    built.opset_import.append(helper.make_opsetid("com.example", 1))
    result = analyze(built)
    assert result.unknown_ops == {"com.example::FancyOp": 2}
    assert any("unknown ops" in w and "FancyOp" in w for w in result.warnings)
    assert node(result, "fancy").category == "unknown" and node(result, "fancy").is_layer


def test_unknown_dims_are_reported_not_guessed():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    built = model(nodes, {"x": ["batch", "seq", 8]}, ["y"], [weight("W", 8, 4)])
    result = analyze(built)
    assert any("'x'" in w and "--input-shape" in w for w in result.warnings)
    assert result.unknown_shape_nodes == ["mm"]
    assert node(result, "mm").shapes_known is False
    given = analyze(built, input_shapes={"x": (1, 16, 8)})
    assert given.warnings == [] and node(given, "mm").macs == 16 * 8 * 4


def test_batch_dim_defaults_to_one_and_the_warning_says_so():
    built = model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 3, 5]}, ["y"])
    result = analyze(built)
    assert result.model_info["inputs"] == {"x": [1, 3, 5]} and result.features["total_macs"] == 15
    assert result.warnings == ["input 'x' is declared [N, 3, 5], analysed as [1, 3, 5]; taken as the batch and set "
                               "to 1: dim 0 ('N'); pass --input-shape x=DIMS to set them"]
    assert analyze(built, input_shapes={"x": (2, 3, 5)}).warnings == []


def test_first_dim_is_not_taken_as_the_batch_when_another_dim_is_named_so():
    """ONNX's recurrent layout is [seq_len, batch, features]: the sequence length is not guessed."""
    lstm = helper.make_node("LSTM", ["x", "W", "R"], ["y"], name="lstm", hidden_size=4)
    built = model([lstm], {"x": ["seq_len", "batch", 3]}, ["y"], [weight("W", 1, 16, 3), weight("R", 1, 16, 4)])
    result = analyze(built)
    assert result.model_info["inputs"] == {"x": [None, 1, 3]} and result.unknown_shape_nodes == ["lstm"]
    assert any("analysed as [?, 1, 3]; taken as the batch and set to 1: dim 1 ('batch'); unknown dims [0]" in w
               and "--input-shape x=DIMS" in w for w in result.warnings), result.warnings
    assert node(analyze(built, input_shapes={"x": (5, 2, 3)}), "lstm").macs == 5 * 2 * (16 * 3 + 16 * 4)


def test_features_cover_the_contract_names_in_order():
    contract = [
        "total_macs", "conv_macs", "fc_macs", "critical_path_macs", "total_params", "conv_params", "fc_params",
        "critical_path_params", "num_layers", "critical_path_layers", "max_branches", "num_norm", "num_conv1x1",
        "num_conv3x3", "num_conv5x5", "num_conv7x7", "num_atrous_conv3x3", "num_fc", "num_concat", "num_add",
        "num_avgpool", "num_maxpool",
    ]
    assert set(contract) <= set(FEATURE_NAMES) and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    result = analyze(residual_block())
    assert list(result.features) == list(FEATURE_NAMES)
    assert all(isinstance(v, (int, float)) for v in result.features.values())


def _matmul_body(name: str, size: int) -> "helper.GraphProto":
    return helper.make_graph(
        [helper.make_node("MatMul", ["x", f"{name}_W"], [f"{name}_out"], name=f"{name}_mm")], name, [],
        [tensor(f"{name}_out", None)], [weight(f"{name}_W", 8, size)],
    )


def test_if_counts_the_costlier_branch_and_is_flagged():
    node_if = helper.make_node("If", ["cond"], ["y"], name="branch",
                               then_branch=_matmul_body("then", 16), else_branch=_matmul_body("else", 2))
    graph = helper.make_graph([node_if], "g", [tensor("x", [1, 8]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [tensor("y", None)])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    cost = node(result, "branch")
    assert cost.subgraph and cost.macs == 8 * 16
    assert cost.params == 8 * 16 + 8 * 2  # both branches' weights are in the model
    assert any("'branch' (If) holds subgraphs" in w for w in result.warnings)
    assert result.features["max_branches"] == 1  # the branches read x from the enclosing graph


def test_an_if_whose_branches_differ_in_shape_has_a_known_cost_and_unknown_readers():
    """Its output dims are unknown ([1, ?]: 16 or 2 columns), the nodes after it too, its own cost
    is not (it was named as a node whose costs are incomplete)."""
    node_if = helper.make_node("If", ["cond"], ["y"], name="branch",
                               then_branch=_matmul_body("then", 16), else_branch=_matmul_body("else", 2))
    relu = helper.make_node("Relu", ["y"], ["z"], name="after")
    graph = helper.make_graph([node_if, relu], "g",
                              [tensor("x", [1, 8]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [tensor("z", None)])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert node(result, "branch").shapes_known and node(result, "branch").macs == 8 * 16
    assert result.unknown_shape_nodes == ["after"]


def test_unknown_ops_inside_subgraphs_are_listed():
    body = helper.make_graph([helper.make_node("Mystery", ["x"], ["out"], domain="com.example")], "then", [],
                             [tensor("out", None)])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["out2"])], "else", [], [tensor("out2", None)])
    node_if = helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=body, else_branch=other)
    graph = helper.make_graph([node_if], "g", [tensor("x", [1, 8]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [tensor("y", None)])
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    assert analyze(built).unknown_ops == {"com.example::Mystery": 1}


def test_outer_scope_reads_are_edges_of_the_control_flow_node():
    node_if = helper.make_node("If", ["cond"], ["y"], name="branch",
                               then_branch=_matmul_body("then", 16), else_branch=_matmul_body("else", 2))
    relu = helper.make_node("Relu", ["raw"], ["x"], name="relu")
    graph = helper.make_graph([relu, node_if], "g",
                              [tensor("raw", [1, 8]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [tensor("y", None)])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert result.graph.has_edge("relu", "branch") and result.critical_path == ["relu", "branch"]


def _matmul_step_body() -> onnx.GraphProto:
    """A Loop body: h_next = h @ W (16 MACs a step), the condition passed through."""
    return helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["h", "W"], ["h_next"], name="step")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), tensor("h", [1, 4])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), tensor("h_next", [1, 4])],
    )


def test_loop_multiplies_its_body_by_a_constant_trip_count():
    body = _matmul_step_body()
    loop = helper.make_node("Loop", ["trips", "", "x"], ["y"], name="loop", body=body)
    inits = [helper.make_tensor("trips", TensorProto.INT64, [], [3]), weight("W", 4, 4)]
    result = analyze(model([loop], {"x": [1, 4]}, ["y"], inits))
    assert node(result, "loop").macs == 3 * 16 and node(result, "loop").subgraph
    dynamic = _loop_with_input_trips(body)
    assert node(dynamic, "loop").macs == 16
    assert any("trip count unknown" in w for w in dynamic.warnings)


def _counting_loop(trips: int) -> onnx.ModelProto:
    body = _matmul_step_body()
    loop = helper.make_node("Loop", ["trips", "cond", "x"], ["y"], name="loop", body=body)
    inits = [helper.make_tensor("trips", TensorProto.INT64, [], [trips]),
             helper.make_tensor("cond", TensorProto.BOOL, [], [True]), weight("W", 4, 4)]
    return model([loop], {"x": [1, 4]}, ["y"], inits)


def test_loop_with_the_no_limit_trip_count_counts_its_body_once_and_warns():
    """torch scripting and tf2onnx write INT64_MAX for a while loop: not 9.2e18 iterations."""
    result = analyze(_counting_loop(2**63 - 1))
    assert node(result, "loop").macs == 16 and result.features["total_macs"] == 16
    assert any("'loop' (Loop): trip count 9223372036854775807 is the 'no limit' marker" in w
               and "counted once" in w for w in result.warnings)


def test_loop_trip_count_and_condition_are_not_parameters():
    result = analyze(_counting_loop(3))
    assert node(result, "loop").macs == 3 * 16
    assert node(result, "loop").params == 16 and result.features["total_params"] == 16


def _scan_model(opset: int) -> onnx.ModelProto:
    """State [4] plus each scanned row, times W (4x4): 4 + 16 MACs a step."""
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "row"], ["s_mid"]), helper.make_node("MatMul", ["s_mid", "W"], ["s_out"])],
        "body", [tensor("s_in", [4]), tensor("row", [4])], [tensor("s_out", [4])])
    if opset == 8:  # sequence_lens first; states and scanned inputs carry a batch axis (3), steps on axis 1
        scan = helper.make_node("Scan", ["", "s0", "xs"], ["final"], name="scan", body=body, num_scan_inputs=1)
        return model([scan], {"s0": [3, 4], "xs": [3, 6, 4]}, ["final"], [weight("W", 4, 4)], opset=8)
    scan = helper.make_node("Scan", ["s0", "xs"], ["final"], name="scan", body=body, num_scan_inputs=1)
    return model([scan], {"s0": [4], "xs": [6, 4]}, ["final"], [weight("W", 4, 4)], opset=opset)


@pytest.mark.parametrize(("opset", "trips"), [(8, 3 * 6), (9, 6), (17, 6)])
def test_scan_runs_its_body_per_step_and_in_opset_8_per_batch_element(opset, trips):
    assert node(analyze(_scan_model(opset)), "scan").macs == trips * (4 + 16)


def _loop_with_input_trips(body):
    loop = helper.make_node("Loop", ["n", "", "x"], ["y"], name="loop", body=body)
    graph = helper.make_graph([loop], "g", [tensor("x", [1, 4]), helper.make_tensor_value_info("n", TensorProto.INT64, [])],
                              [tensor("y", None)], [weight("W", 4, 4)])
    return analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_dequantized_weights_count_their_stored_bytes():
    """A QDQ model stores int8 weights and hands the Conv floats through DequantizeLinear (also after a
    Transpose): param_bytes counts what is stored, one byte a weight, not four."""
    quantized = onnx.numpy_helper.from_array(np.ones((8, 3, 3, 3), np.int8), "Wq")
    scale = onnx.numpy_helper.from_array(np.array(0.1, np.float32), "s")
    nodes = [
        helper.make_node("DequantizeLinear", ["Wq", "s"], ["W"], name="dq"),
        helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1] * 4),
        helper.make_node("DequantizeLinear", ["Mq", "s"], ["Mt"], name="dq2"),
        helper.make_node("Transpose", ["Mt"], ["M"], name="t", perm=[1, 0]),
        helper.make_node("MatMul", ["z", "M"], ["w"], name="mm"),
    ]
    matrix = onnx.numpy_helper.from_array(np.ones((4, 6), np.int8), "Mq")
    result = analyze(model(nodes, {"x": [1, 3, 8, 8], "z": [1, 6]}, ["y", "w"], [quantized, scale, matrix]))
    assert node(result, "conv").params == 216 and node(result, "conv").param_bytes == 216
    assert node(result, "mm").param_bytes == 24
    assert result.features["total_params"] == 240 and result.features["param_bytes"] == 240


@pytest.mark.parametrize("dtype", ["INT4", "UINT4", "FLOAT4E2M1"])
def test_four_bit_tensors_are_stored_two_to_a_byte(dtype):
    """A weight of 64 x 32 4-bit elements is 1,024 bytes; a 4-bit activation of 15 elements 8 bytes."""
    elem_type = getattr(TensorProto, dtype)
    packed = TensorProto(name="Wq", data_type=elem_type)
    packed.dims.extend([64, 32])
    scale = onnx.numpy_helper.from_array(np.array(0.5, np.float32), "s")
    nodes = [helper.make_node("DequantizeLinear", ["Wq", "s"], ["W"], name="dq"),
             helper.make_node("MatMul", ["a", "W"], ["y"], name="mm"),
             helper.make_node("DequantizeLinear", ["q", "s"], ["z"], name="dq_act")]
    graph = helper.make_graph(nodes, "g", [tensor("a", [3, 64]), helper.make_tensor_value_info("q", elem_type, [3, 5])],
                              [tensor("y", None), tensor("z", None)], [packed, scale])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    assert node(result, "mm").params == 2048 and node(result, "mm").param_bytes == 1024
    assert node(result, "dq_act").bytes_read == 8 and node(result, "dq_act").bytes_written == 15 * 4

