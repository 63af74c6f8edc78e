"""Unusual but legitimate models (a tester's report of 2026-11-30): sparse initializers, Loop trip
counts from shape arithmetic and scan outputs, inputs without a shape, --input-shape values that do
not fit, and the Python API's input checks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from analysis_graphs import ints, model, node, tensor, weight
from sniper_onnx.analysis import analyze
from sniper_onnx.errors import SniperError


def _sparse_weight(name: str, rows: int, cols: int) -> onnx.SparseTensorProto:
    values = numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32), name)
    indices = numpy_helper.from_array(np.array([0, 5, 17], np.int64), name + "_idx")
    return helper.make_sparse_tensor(values, indices, [rows, cols])


def test_a_sparse_initializer_is_a_weight_of_its_dense_dims():
    built = model([helper.make_node("MatMul", ["x", "Ws"], ["y"], name="op")], {"x": [1, 8]}, ["y"])
    built.graph.sparse_initializer.append(_sparse_weight("Ws", 8, 16))
    result = analyze(built)
    assert result.unknown_shape_nodes == []
    assert node(result).category == "fc" and node(result).params == 128  # dense 8x16, as onnxruntime runs it
    assert result.features["fc_macs"] == 128 and result.features["total_params"] == 128
    # the same weight as a Constant(sparse_value=...) counts the same
    as_constant = model([helper.make_node("Constant", [], ["Ws"], sparse_value=_sparse_weight("Ws", 8, 16)),
                         helper.make_node("MatMul", ["x", "Ws"], ["y"], name="op")], {"x": [1, 8]}, ["y"])
    assert analyze(as_constant).features == result.features


def test_a_small_sparse_initializer_keeps_its_values_for_shape_arithmetic():
    # a Reshape target stored sparse: [2, 0 -> 8] with index 0 = 2, index 1 = 8
    target = helper.make_sparse_tensor(numpy_helper.from_array(np.array([2, 8], np.int64), "shape"),
                                       numpy_helper.from_array(np.array([0, 1], np.int64), "i"), [2])
    built = model([helper.make_node("Reshape", ["x", "shape"], ["r"]),
                   helper.make_node("MatMul", ["r", "W"], ["y"], name="op")], {"x": [1, 16]}, ["y"], [weight("W", 8, 4)])
    built.graph.sparse_initializer.append(target)
    assert node(analyze(built)).macs == 2 * 8 * 4


def _loop_body(extra_nodes=(), outputs=("s2",)):
    nodes = [helper.make_node("Identity", ["c"], ["co"]), helper.make_node("MatMul", ["s", "W"], ["s2"]), *extra_nodes]
    return helper.make_graph(nodes, "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                             helper.make_tensor_value_info("c", TensorProto.BOOL, []), tensor("s", [1, 16])],
                             [helper.make_tensor_value_info("co", TensorProto.BOOL, [])]
                             + [tensor(name, [1, 16]) for name in outputs])


def test_a_loop_trip_count_from_the_input_shape_is_folded():
    # torch scripting's `for i in range(x.size(1))`: Gather(Shape(x), 1) = 16
    nodes = [helper.make_node("Shape", ["x"], ["sh"]), helper.make_node("Gather", ["sh", "one"], ["M"], axis=0),
             helper.make_node("Loop", ["M", "cond", "x"], ["y"], name="loop", body=_loop_body())]
    built = model(nodes, {"x": [1, 16]}, ["y"], [weight("W", 16, 16), helper.make_tensor("one", TensorProto.INT64, [], [1]),
                                                 helper.make_tensor("cond", TensorProto.BOOL, [], [True])])
    result = analyze(built)
    assert node(result, "loop").macs == 16 * 256
    assert not any("trip count unknown" in w for w in result.warnings)


def test_a_loop_scan_output_has_the_trip_count_as_its_first_dim():
    body = _loop_body(outputs=("s2", "scan"))
    body.node.append(helper.make_node("Relu", ["s2"], ["scan"]))
    nodes = [helper.make_node("Loop", ["M", "", "x"], ["last", "ys"], name="loop", body=body),
             helper.make_node("MatMul", ["ys", "W"], ["y"], name="op")]
    built = model(nodes, {"x": [1, 16]}, ["y", "last"], [weight("W", 16, 16),
                                                         helper.make_tensor("M", TensorProto.INT64, [], [5])])
    result = analyze(built)
    assert result.unknown_shape_nodes == []
    assert node(result).input_shapes[0] == [5, 1, 16] and node(result).macs == 5 * 16 * 16


def test_a_loop_whose_condition_can_stop_it_early_leaves_its_scan_output_unknown():
    body = _loop_body(outputs=("s2", "scan"))
    body.node.append(helper.make_node("Relu", ["s2"], ["scan"]))
    body.node[0].CopyFrom(helper.make_node("Not", ["c"], ["co"]))  # data-dependent stop
    nodes = [helper.make_node("Loop", ["M", "", "x"], ["last", "ys"], name="loop", body=body),
             helper.make_node("MatMul", ["ys", "W"], ["y"], name="op")]
    built = model(nodes, {"x": [1, 16]}, ["y", "last"],
                  [weight("W", 16, 16), helper.make_tensor("M", TensorProto.INT64, [], [5])])
    assert "op" in analyze(built).unknown_shape_nodes


def test_a_loop_body_slicing_by_the_iteration_number_says_so():
    body = _loop_body()
    body.node[1].CopyFrom(helper.make_node("MatMul", ["row", "W"], ["m"]))
    body.node.extend([helper.make_node("Unsqueeze", ["i", "zero"], ["start"]),
                      helper.make_node("Add", ["start", "onev"], ["end"]),
                      helper.make_node("Slice", ["x", "start", "end", "zero"], ["row"]),
                      helper.make_node("Add", ["m", "s"], ["s2"])])
    nodes = [helper.make_node("Loop", ["M", "", "h0"], ["y"], name="loop", body=body)]
    built = model(nodes, {"x": [6, 16], "h0": [1, 16]}, ["y"],
                  [weight("W", 16, 16), helper.make_tensor("M", TensorProto.INT64, [], [6]), ints("zero", [0]),
                   ints("onev", [1])])
    result = analyze(built)
    assert "loop" in result.unknown_shape_nodes
    assert any("reads the iteration number" in w and "--input-shape cannot help" in w for w in result.warnings)


def test_an_input_without_a_shape_points_at_input_shape():
    built = model([helper.make_node("Relu", ["x"], ["y"], name="op")], {"x": None}, ["y"])
    result = analyze(built)
    unknown = next(w for w in result.warnings if "unknown shapes" in w)
    assert "--input-shape NAME=DIMS" in unknown and "cannot help" not in unknown
    assert node(analyze(built, input_shapes={"x": (4, 4)})).macs == 16


def _symbolic_matmul():
    return model([helper.make_node("MatMul", ["tok", "W"], ["y"], name="op")], {"tok": ["batch", "seq", 32]}, ["y"],
                 [weight("W", 32, 16)])


def test_an_input_shape_that_does_not_fit_the_weights_is_an_error_naming_it():
    with pytest.raises(SniperError, match=r"--input-shape tok=1x4x33 does not fit the model: 'op' \(MatMul: A 1x4x33 "
                                          r"has inner dim 33.*declared \[batch, seq, 32\]"):
        analyze(_symbolic_matmul(), input_shapes={"tok": (1, 4, 33)})
    assert node(analyze(_symbolic_matmul(), input_shapes={"tok": (1, 4, 32)})).macs == 4 * 32 * 16


def test_a_misfit_of_the_model_itself_stays_a_warning_with_input_shape_set():
    built = model([helper.make_node("MatMul", ["a", "W"], ["y"], name="op"), helper.make_node("Relu", ["b"], ["z"])],
                  {"a": [1, 33], "b": ["n", 4]}, ["y", "z"], [weight("W", 32, 16)])
    result = analyze(built, input_shapes={"b": (2, 4)})  # b does not reach the misfit
    assert any("operands do not fit" in w and "model's own shapes" in w for w in result.warnings)
    result = analyze(built, input_shapes={"a": (1, 33)})  # as declared: nothing changed by -s
    assert any("model's own shapes" in w for w in result.warnings)


def test_a_misfit_reached_from_symbolic_dims_set_by_input_shape_names_the_value():
    # the model declares the batch open, but its Reshape fixed it at 1: -s x=4x... reaches the misfit
    built = model([helper.make_node("Reshape", ["x", "flat"], ["f"]),
                   helper.make_node("MatMul", ["f", "W"], ["y"], name="op")], {"x": ["N", 8]}, ["y"],
                  [ints("flat", [1, -1]), weight("W", 8, 4)])
    result = analyze(built, input_shapes={"x": (4, 8)})
    misfit = next(w for w in result.warnings if "operands do not fit" in w)
    assert "--input-shape x=4x8 (the model's [N, 8]) reaches it" in misfit and "model's own" not in misfit
    assert "op" in result.unknown_shape_nodes


def test_the_python_api_refuses_bytes_and_odd_shapes_in_one_line():
    built = _symbolic_matmul()
    with pytest.raises(SniperError, match=r"^bytes given \([\d,]+ bytes\).*onnx.load_from_string") as raised:
        analyze(built.SerializeToString())
    assert len(str(raised.value)) < 200
    with pytest.raises(SniperError, match="onnx.helper.make_model"):
        analyze(built.graph)
    with pytest.raises(SniperError, match=r"dim None is not an integer"):
        analyze(built, input_shapes={"tok": (1, None, 32)})
    with pytest.raises(SniperError, match=r"dim True is not an integer"):
        analyze(built, input_shapes={"tok": (True, 4, 32)})
    with pytest.raises(SniperError, match=r"'1xfoo' is not a shape"):
        analyze(built, input_shapes={"tok": "1xfoo"})
    as_text = analyze(built, input_shapes={"tok": "1x4x32"})  # the CLI's syntax
    assert node(as_text).macs == node(analyze(built, input_shapes={"tok": (1, 4, 32)})).macs == 4 * 32 * 16


@pytest.mark.parametrize(("op", "reduction", "macs"), [("ScatterElements", "none", 0), ("ScatterElements", "add", 8),
                                                      ("ScatterND", "mul", 8)])
def test_a_scatter_with_a_reduction_does_one_operation_per_update(op, reduction, macs):
    index_shape = [2, 4] if op == "ScatterElements" else [2, 4, 1]
    indices = helper.make_tensor_value_info("i", TensorProto.INT64, index_shape)
    graph = helper.make_graph([helper.make_node(op, ["x", "i", "u"], ["y"], name="op", reduction=reduction)], "g",
                              [tensor("x", [4, 4]), indices, tensor("u", [2, 4])], [tensor("y", None)])
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    built.ir_version = 8
    assert node(analyze(built)).macs == macs


def test_an_input_declared_against_its_initializer_is_analysed_at_the_initializer_and_named():
    built = model([helper.make_node("MatMul", ["x", "W"], ["y"], name="op")], {"x": [1, 8], "W": [8, 64]}, ["y"],
                  [weight("W", 8, 16)])
    result = analyze(built)
    assert node(result).macs == 128 and node(result).params == 128
    assert any("input 'W' is declared [8, 64], but its initializer holds [8, 16]: onnxruntime refuses" in w
               for w in result.warnings)
    assert not any("shape inference failed" in w for w in result.warnings)


def test_input_shape_on_a_weight_or_a_sequence_input_is_refused():
    built = model([helper.make_node("MatMul", ["x", "W"], ["y"], name="op")], {"x": [1, 8], "W": [8, 16]}, ["y"],
                  [weight("W", 8, 16)])
    with pytest.raises(SniperError, match="--input-shape W: that is a weight"):
        analyze(built, input_shapes={"W": (8, 16)})
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    graph = helper.make_graph([helper.make_node("ConcatFromSequence", ["s"], ["y"], axis=0)], "g", [seq], [tensor("y", None)])
    with pytest.raises(SniperError, match="--input-shape s: that input is not a tensor"):
        analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), input_shapes={"s": (3, 8)})


def test_urls_and_gzip_files_get_their_own_advice(tmp_path):
    import gzip

    with pytest.raises(SniperError, match="URLs are not supported; download the file"):
        analyze("https://example.com/m.onnx")
    packed = tmp_path / "m.onnx.gz"
    packed.write_bytes(gzip.compress(_symbolic_matmul().SerializeToString()))
    with pytest.raises(SniperError, match="gzip-compressed file.*gunzip"):
        analyze(packed)
