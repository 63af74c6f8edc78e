"""Reading files: weights never needed, bad input gets one clear error, input shapes resolved."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from analysis_graphs import ints, model, node, real_weight, weight
from onnx import helper

from sniper_onnx import SniperError, analyze
from sniper_onnx.analysis import parse_input_shape


def small_cnn(weights=real_weight):
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "flat"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "Wfc"], ["y"], name="fc", transB=1),
    ]
    inits = [weights("W", 16, 3, 3, 3), weights("B", 16), weights("Wfc", 10, 16 * 8 * 8), ints("flat", [1, -1])]
    return model(nodes, {"x": ["N", 3, 8, 8]}, ["y"], inits)


def test_weighted_file_and_weightless_skeleton_give_the_same_features(tmp_path):
    onnx.save(small_cnn(), tmp_path / "weighted.onnx")
    onnx.save(small_cnn(weight), tmp_path / "skeleton.onnx")
    weighted = analyze(tmp_path / "weighted.onnx")
    assert weighted.features == analyze(tmp_path / "skeleton.onnx").features == analyze(small_cnn()).features
    assert weighted.features["total_params"] == 16 * 27 + 16 + 10 * 1024
    assert node(weighted, "fc").input_shapes[0] == [1, 1024]  # the small Reshape shape was kept and used


def test_missing_external_data_file_still_analyses(tmp_path):
    path = tmp_path / "external.onnx"
    onnx.save(small_cnn(), path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=1024)
    (tmp_path / "weights.bin").unlink()
    result = analyze(path)
    assert result.features["total_params"] == 16 * 27 + 16 + 10 * 1024
    assert node(result, "fc").macs == 10 * 1024
    # ... and says that onnxruntime will not run it as it is (it said nothing until 2026-11-30)
    assert [w for w in result.warnings if w.startswith("external data 'weights.bin' not found beside the model")]
    onnx.save(small_cnn(), path, save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=1024)
    assert not [w for w in analyze(path).warnings if "external data" in w]


def test_nodes_out_of_topological_order_are_sorted():
    built = small_cnn(weight)
    reordered = list(reversed(built.graph.node))
    del built.graph.node[:]
    built.graph.node.extend(reordered)
    result = analyze(built)
    assert [n.name for n in result.nodes] == ["conv", "relu", "flatten", "fc"]
    assert result.features == analyze(small_cnn(weight)).features


def _error_of(path) -> str:
    with pytest.raises(SniperError) as caught:
        analyze(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in _error_of(tmp_path / "absent.onnx")


def test_empty_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert "empty" in _error_of(tmp_path / "empty.onnx")


def test_not_onnx(tmp_path):
    (tmp_path / "notes.onnx").write_text("this is a text file, not a model\n")
    assert "not a readable ONNX model" in _error_of(tmp_path / "notes.onnx")


def test_a_short_text_file_is_not_taken_for_an_empty_model(tmp_path):
    (tmp_path / "notes.txt").write_text("x\n")  # protobuf parses these bytes as an empty ModelProto
    message = _error_of(tmp_path / "notes.txt")
    assert "not an ONNX model" in message and "has no nodes" not in message


def test_truncated_file(tmp_path):
    data = small_cnn().SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    assert "truncated" in _error_of(tmp_path / "cut.onnx")


def test_directory(tmp_path):
    assert "directory" in _error_of(tmp_path)


def test_a_graph_of_no_nodes_is_analysed_with_one_warning(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    onnx.save(helper.make_model(helper.make_graph([], "identity", [x], [x]), ir_version=10), tmp_path / "passthrough.onnx")
    result = analyze(tmp_path / "passthrough.onnx")  # onnxruntime runs it: its input is its output
    assert result.features["num_layers"] == 0 and result.features["total_macs"] == 0
    assert result.model_info["num_nodes"] == 0 and result.model_info["outputs"] == {"x": [1, 3]}
    assert result.warnings == ["the graph has no nodes: its outputs are its inputs or stored constants, so every MAC, "
                               "parameter and layer count is 0 and running it costs one call; check that the export "
                               "kept the model's layers"]


def test_a_graph_of_no_nodes_and_no_outputs_says_so(tmp_path):
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])
    onnx.save(helper.make_model(helper.make_graph([], "nothing", [x], [])), tmp_path / "nothing.onnx")
    assert "has no nodes and no outputs" in _error_of(tmp_path / "nothing.onnx")


def test_local_functions_are_inlined_so_their_layers_count(tmp_path):
    conv_relu = helper.make_function(
        "custom", "ConvRelu", ["a", "w"], ["b"],
        [helper.make_node("Conv", ["a", "w"], ["t"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["t"], ["b"])],
        [helper.make_opsetid("", 17)])
    graph = helper.make_graph(
        [helper.make_node("ConvRelu", ["x", "W"], ["y"], domain="custom", name="block")], "calls",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16, 8, 8])], [real_weight("W", 16, 3, 3, 3)])
    calling = helper.make_model(graph, functions=[conv_relu],
                                opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)])
    onnx.save(calling, tmp_path / "calls.onnx")
    result = analyze(tmp_path / "calls.onnx")
    assert result.features["conv_macs"] == 16 * 27 * 8 * 8
    assert result.features["num_conv"] == 1 and result.features["num_layers"] == 2
    assert not any("unknown op" in warning for warning in result.warnings)


def test_dangling_input(tmp_path):
    built = model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], {"x": [2]}, ["y"])
    onnx.save(built, tmp_path / "dangling.onnx")
    message = _error_of(tmp_path / "dangling.onnx")
    assert "'ghost'" in message and "dangling" in message


def test_cycle(tmp_path):
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="first"),
        helper.make_node("Relu", ["a"], ["b"], name="second"),
        helper.make_node("Relu", ["a"], ["y"], name="out"),
    ]
    onnx.save(model(nodes, {"x": [2]}, ["y"]), tmp_path / "cycle.onnx")
    message = _error_of(tmp_path / "cycle.onnx")
    assert "cycle" in message and "'first'" in message and "'second'" in message


def test_output_produced_by_no_node(tmp_path):
    onnx.save(model([helper.make_node("Relu", ["x"], ["a"])], {"x": [2]}, ["a", "missing"]), tmp_path / "cut.onnx")
    assert "'missing'" in _error_of(tmp_path / "cut.onnx")


def test_two_producers_of_one_tensor(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="one"), helper.make_node("Sigmoid", ["x"], ["y"], name="two")]
    onnx.save(model(nodes, {"x": [2]}, ["y"]), tmp_path / "twice.onnx")
    assert "two nodes" in _error_of(tmp_path / "twice.onnx")


def test_input_shape_override_and_its_errors():
    built = small_cnn(weight)
    assert analyze(built, input_shapes={"x": (4, 3, 8, 8)}).features["conv_macs"] == 4 * 16 * 64 * 27
    with pytest.raises(SniperError, match="names no graph input: nope; the inputs are: x"):
        analyze(built, input_shapes={"nope": (1, 3, 8, 8)})
    with pytest.raises(SniperError, match="rank 4"):
        analyze(built, input_shapes={"x": (1, 3, 8)})
    assert not any("declared" in w for w in analyze(built, input_shapes={"x": (4, 3, 8, 8)}).warnings)  # N is symbolic
    # a fixed dim changed: analysed as asked, with a warning, as long as the model still fits together
    conv_only = model([helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])], {"x": ["N", 3, 8, 8]}, ["y"],
                      [weight("W", 16, 3, 3, 3)])
    changed = analyze(conv_only, input_shapes={"x": (1, 3, 16, 16)})
    assert changed.features["conv_macs"] == 16 * 256 * 27
    assert any("declared [N, 3, 8, 8]; analysed at 1x3x16x16" in w and "fixed dim(s) 2, 3" in w for w in changed.warnings)
    # ... but where it makes operands misfit (the fc's weight reads the 8x8 features), the value is refused
    with pytest.raises(SniperError, match=r"--input-shape x=1x3x16x16 does not fit the model: 'fc' \(Gemm"):
        analyze(built, input_shapes={"x": (1, 3, 16, 16)})


@pytest.mark.parametrize(("node_domain", "import_domain"), [("ai.onnx", "ai.onnx"), ("ai.onnx", ""), ("", "ai.onnx")])
def test_default_domain_spelled_ai_onnx_is_the_default_domain(node_domain, import_domain):
    """onnxruntime runs nodes and opset imports that spell the default domain "ai.onnx"."""
    conv = helper.make_node("Conv", ["x", "W"], ["y"], name="conv", domain=node_domain)
    graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [weight("W", 2, 4, 1, 1)])
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid(import_domain, 17)], ir_version=10)
    result = analyze(built)
    assert result.features["total_macs"] == 2 * 64 * 4 and result.warnings == [] and result.unknown_ops == {}
    assert built.graph.node[0].domain == node_domain  # the caller's model is not changed


def test_a_failing_shape_inference_is_reported_once():
    from sniper_onnx.analysis.loading import infer_shapes

    broken = model([helper.make_node("Relu", ["x"], ["y"], domain="no.such.domain")], {"x": [1, 4]}, ["y"])
    warnings: list[str] = []
    infer_shapes(broken, warnings)
    infer_shapes(broken, warnings)
    assert len(warnings) == 1 and "ONNX shape inference failed" in warnings[0]


def test_unknown_shapes_no_input_shape_can_fix_say_why(tmp_path):
    no_opset = small_cnn(weight)
    del no_opset.opset_import[:]
    warning = analyze(no_opset, input_shapes={"x": (1, 3, 8, 8)}).warnings[-1]
    assert "--input-shape cannot help: the model imports no opset for the default domain" in warning, warning
    path = tmp_path / "external.onnx"
    external = small_cnn()
    flat = next(t for t in external.graph.initializer if t.name == "flat")
    # as raw data, which onnx.save moves to the external file (int64_data it keeps inline)
    flat.CopyFrom(onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "flat"))
    onnx.save(external, path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)
    warning = analyze(path, input_shapes={"x": (1, 3, 8, 8)}).warnings[-1]
    assert "'flatten'" in warning
    assert "cannot help: small constants (shapes, axes) are stored as external data" in warning


def _conv_then_relu(x_shape) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return model(nodes, {"x": x_shape}, ["y"], [weight("W", 8, 3, 3, 3)])


@pytest.mark.parametrize("dims", [(1, 3, 1, 5), (1, 3, 1, 1), (1, 3, 2, 5)])
def test_input_shape_smaller_than_a_kernel_is_an_error(dims):
    with pytest.raises(SniperError, match=r"--input-shape x=.* is too small: node 'conv' \(Conv\) gets an input "
                                          "smaller than its kernel"):
        analyze(_conv_then_relu(["N", 3, "H", "W"]), input_shapes={"x": dims})


@pytest.mark.parametrize(("height", "output"), [(2, "1x8x0x3"), (1, "1x8x-1x3")])
def test_fixed_input_smaller_than_a_kernel_warns_and_never_counts_negative(height, output):
    result = analyze(_conv_then_relu([1, 3, height, 5]))
    assert result.features["total_macs"] == 0 and all(n.macs >= 0 for n in result.nodes)
    assert [w for w in result.warnings if "'conv' (Conv) gets an input smaller than its kernel" in w
            and output in w], result.warnings
    assert not any("'relu'" in w and "kernel" in w for w in result.warnings)  # only the node at fault


def _attention_heads(target) -> onnx.ModelProto:
    """x [S, 64] -> MatMul -> Reshape to a constant ``target`` (what torch.onnx writes when it fixes
    the traced sequence length) -> MatMul."""
    nodes = [helper.make_node("MatMul", ["x", "Wq"], ["q"], name="proj"),
             helper.make_node("Reshape", ["q", "heads"], ["h"], name="split_heads"),
             helper.make_node("MatMul", ["h", "Wo"], ["y"], name="after")]
    return model(nodes, {"x": ["S", 64]}, ["y"], [weight("Wq", 64, 64), ints("heads", target), weight("Wo", 16, 8)])


def test_a_reshape_whose_fixed_target_breaks_at_the_given_shape_warns_and_leaves_later_shapes_unknown():
    result = analyze(_attention_heads([16, 4, 16]), input_shapes={"x": (128, 64)})
    reshape_warnings = [w for w in result.warnings if "'split_heads'" in w and "element count" in w]
    assert len(reshape_warnings) == 1, result.warnings
    assert "128x64 = 8192 elements in, target 16x4x16 = 1024" in reshape_warnings[0]
    assert "re-export with this shape or with dynamic axes on every Reshape" in reshape_warnings[0]
    assert node(result, "proj").macs == 128 * 64 * 64 and node(result, "proj").shapes_known
    # never the 16x4x16 x 16x8 MatMul the stale target would give: unknown, and said so
    after = node(result, "after")
    assert not after.shapes_known and after.macs == 0
    assert "after" in result.unknown_shape_nodes
    assert any("they follow a Reshape whose target the export fixed" in w for w in result.warnings)


@pytest.mark.parametrize(("target", "dims"), [([16, 4, 16], (16, 64)), ([-1, 4, 16], (128, 64)), ([0, 4, 16], (128, 64))])
def test_a_reshape_that_fits_its_input_gives_no_warning(target, dims):
    result = analyze(_attention_heads(target), input_shapes={"x": dims})
    assert not [w for w in result.warnings if "Reshape" in w], result.warnings
    assert node(result, "after").shapes_known and node(result, "after").macs == dims[0] * 64 * 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input=1x3x224x224", ("input", (1, 3, 224, 224))), ("x:2,5", ("x", (2, 5))), ("a=b=7", ("a=b", (7,))),
        ("input_1:0=1x3", ("input_1:0", (1, 3))),  # TensorFlow names carry a colon
        ("input:[1,3,64,64]", ("input", (1, 3, 64, 64))),  # Polygraphy's form
        ("input:1,3,64,64", ("input", (1, 3, 64, 64))),  # onnxsim's
        ("input_1:0:[1, 3]", ("input_1:0", (1, 3))), ("x=[2x5]", ("x", (2, 5))),
        ("1x3x64x64", ("", (1, 3, 64, 64))), ("[1,3,64,64]", ("", (1, 3, 64, 64))),  # for the only input
    ],
)
def test_parse_input_shape(text, expected):
    assert parse_input_shape(text) == expected


@pytest.mark.parametrize("text", ["input", "input=", "input=1x0", "input=ax3", "=1x3", "input:[1,3", "[1,3", "1,3]",
                                  "0x3", "x=[1]x3", ":1x3", "x=99999999999999999999x3x9x9",
                                  f"x=1x{2**63}", f"x={2**62}x3"])
def test_parse_input_shape_rejects(text):
    with pytest.raises(SniperError, match="--input-shape"):
        parse_input_shape(text)


def test_weightless_reader_keeps_structure_and_small_constants_only(tmp_path):
    from sniper_onnx.analysis.weightless import KEEP_DATA_BYTES, load_weightless

    path = tmp_path / "weighted.onnx"
    onnx.save(small_cnn(), path)
    full, light = onnx.load(str(path)), load_weightless(path)
    assert light.graph.node == full.graph.node and light.graph.input == full.graph.input
    for kept, original in zip(light.graph.initializer, full.graph.initializer):
        assert (kept.name, list(kept.dims), kept.data_type) == (original.name, list(original.dims), original.data_type)
        large = len(original.raw_data) > KEEP_DATA_BYTES
        assert kept.raw_data == (b"" if large else original.raw_data)
    assert any(len(t.raw_data) > KEEP_DATA_BYTES for t in full.graph.initializer)  # the test strips something


def test_an_input_shape_given_twice_with_other_dims_is_refused():
    from sniper_onnx.analysis import parse_input_shapes

    assert parse_input_shapes(["x=1x3x8x8", "y=2,4", "x=1x3x8x8"]) == {"x": (1, 3, 8, 8), "y": (2, 4)}
    assert parse_input_shapes(None) == {}
    with pytest.raises(SniperError, match=r"input 'x' given twice \(1x3x8x8 and 2x3x8x8\); give each input once"):
        parse_input_shapes(["x=1x3x8x8", "x=2x3x8x8"])


def test_a_shape_without_a_name_sizes_the_only_input():
    from sniper_onnx.analysis import parse_input_shapes

    built = small_cnn(weight)  # its initializers are not inputs to size
    built.graph.input.append(helper.make_tensor_value_info("W", onnx.TensorProto.FLOAT, [16, 3, 3, 3]))
    result = analyze(built, input_shapes=parse_input_shapes(["4x3x8x8"]))
    assert result.model_info["inputs"]["x"] == [4, 3, 8, 8] and result.features["conv_macs"] == 4 * 16 * 64 * 27
    assert analyze(built, input_shapes=parse_input_shapes(["4x3x8x8", "x=4x3x8x8"])).features == result.features
    with pytest.raises(SniperError, match=r"input 'x' given twice \(2x3x8x8 and 4x3x8x8, the latter without its name\)"):
        analyze(built, input_shapes=parse_input_shapes(["x=2x3x8x8", "4x3x8x8"]))
    with pytest.raises(SniperError, match="a shape without an input name given twice"):
        parse_input_shapes(["1x3", "2x3"])
    two = model([helper.make_node("Add", ["a", "b"], ["y"])], {"a": ["N", 3], "b": ["N", 3]}, ["y"])
    with pytest.raises(SniperError, match=r"--input-shape 2x3 names no input and the model has 2 inputs \(a, b\); "
                                          r"write NAME=DIMS, e.g. a=2x3"):
        analyze(two, input_shapes=parse_input_shapes(["2x3"]))


def test_an_opset_newer_than_onnx_knows_is_one_warning():
    newest = onnx.defs.onnx_opset_version()
    for domain in ("", "ai.onnx"):
        built = small_cnn(weight)
        del built.opset_import[:]
        built.opset_import.append(helper.make_opsetid(domain, 99))
        result = analyze(built, input_shapes={"x": (1, 3, 8, 8)})
        assert result.features["conv_macs"] == 16 * 64 * 27
        assert result.warnings == [f"the model imports opset 99 of the default domain (ai.onnx), newer than {newest}, "
                                   f"the newest onnx {onnx.__version__} knows; ops may have changed meaning since, and "
                                   f"costs use the rules of opset {newest}"]
    assert analyze(small_cnn(weight), input_shapes={"x": (1, 3, 8, 8)}).warnings == []


def test_an_ir_version_newer_than_onnxruntime_loads_is_one_warning_that_says_what_to_do():
    import onnxruntime

    from sniper_onnx.analysis.loading import _onnxruntime_newest_ir

    newest = _onnxruntime_newest_ir()[1]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8])
    built = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    built.ir_version = newest + 1
    with pytest.raises(Exception, match="IR version"):  # the probe's finding, checked against onnxruntime itself
        onnxruntime.InferenceSession(built.SerializeToString(), providers=["CPUExecutionProvider"])
    result = analyze(built)
    assert result.features["num_layers"] == 1
    assert result.warnings == [f"the model has IR version {newest + 1}, newer than onnxruntime {onnxruntime.__version__} "
                               f"loads (at most {newest}): re-save it with ir_version {newest} (onnx: set "
                               "model.ir_version, then onnx.save), or upgrade onnxruntime"]
    built.ir_version = newest
    onnxruntime.InferenceSession(built.SerializeToString(), providers=["CPUExecutionProvider"])
    assert analyze(built).warnings == []


def test_a_graph_without_layers_says_so():
    nodes = [helper.make_node("Identity", ["x"], ["a"], name="id"),
             helper.make_node("Constant", [], ["c"], name="const", value=helper.make_tensor("v", onnx.TensorProto.FLOAT,
                                                                                             [1], [1.0]))]
    result = analyze(model(nodes, {"x": [1, 4]}, ["a", "c"]))
    assert result.features["num_layers"] == 0
    assert result.warnings == ["no layer does work: the graph's 2 nodes (Constant x1, Identity x1) only pass data along "
                               "or make constants, so every MAC, parameter and layer count is 0; check that the export "
                               "kept the model's layers"]
    assert not any("no layer" in w for w in analyze(small_cnn(weight), input_shapes={"x": (1, 3, 8, 8)}).warnings)


def test_a_declared_zero_dim_is_an_empty_tensor_as_onnxruntime_runs_it():
    """onnxruntime feeds a declared 0 only as 0 (it refuses 1), and the profiler does the same: the
    analysis describes that run (until 2026-11-30 it read the 0 as unset and analysed a size of 1)."""
    result = analyze(model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 0, 64]}, ["y"]))
    assert result.warnings[0] == ("input 'x' is declared [N, 0, 64], analysed as [1, 0, 64]; taken as the batch and "
                                  "set to 1: dim 0 ('N'); pass --input-shape x=DIMS to set them")
    assert result.warnings[1].startswith("input 'x' is declared [N, 0, 64]: a dim of 0 is an empty tensor")
    assert list(result.nodes[0].output_shapes[0]) == [1, 0, 64] and result.features["activation_bytes_read"] == 0
    with pytest.raises(SniperError, match=r"has 2 dims but the input has rank 3 \(\[N, 0, 64\]\)"):
        analyze(model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 0, 64]}, ["y"]), input_shapes={"x": (1, 2)})


def test_a_one_dim_input_shape_of_the_wrong_rank_says_dim_not_dims():
    with pytest.raises(SniperError, match=r"has 1 dim but the input has rank 3 \("):
        analyze(model([helper.make_node("Relu", ["x"], ["y"])], {"x": ["N", 4, 64]}, ["y"]), input_shapes={"x": (8,)})


@pytest.mark.parametrize("head, words", [
    (b"PK\x03\x04" + b"\x00" * 40, "a zip archive, as torch.save writes a checkpoint"),
    (b"\x80\x02}q\x00" + b"\x00" * 40, "a Python pickle"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 40, "an HDF5 file, as Keras saves models, not an ONNX model; convert it with tf2onnx"),
    (b"\x1c\x00\x00\x00TFL3" + b"\x00" * 40, "a TensorFlow Lite model, not an ONNX model; convert it with tf2onnx"),
])
def test_a_file_of_another_format_is_named_as_what_it_is(tmp_path, head, words):
    path = tmp_path / "model.onnx"
    path.write_bytes(head)
    with pytest.raises(SniperError) as raised:
        analyze(str(path))
    assert str(raised.value).startswith(f"{path}: ") and words in str(raised.value)


def _ids_and_mask() -> onnx.ModelProto:
    """Two inputs sharing symbolic dims b and t, as a tokenizer's ids and attention mask do."""
    nodes = [helper.make_node("Add", ["ids", "mask"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", onnx.TensorProto.FLOAT, ["b", "t"]),
                                           helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, ["b", "t"])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_dim_set_through_one_input_sets_it_in_every_input_that_shares_it():
    result = analyze(_ids_and_mask(), {"ids": (1, 8)})
    assert result.model_info["inputs"] == {"ids": [1, 8], "mask": [1, 8]}
    assert result.unknown_shape_nodes == [] and not any("mask" in w for w in result.warnings)


def test_two_inputs_setting_a_shared_dim_to_different_sizes_get_a_warning():
    result = analyze(_ids_and_mask(), {"ids": (1, 8), "mask": (1, 9)})
    assert any("share dim 't'" in w and "ids 8, mask 9" in w for w in result.warnings)


def _guarded_model(condition_from_input: bool = False):
    """torch's guarded squeeze: If(Equal(Shape(x)[0], 1)) with a Relu in one branch, then a Conv."""
    from onnx import TensorProto, numpy_helper

    then_branch = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu")], "then", [],
                                    [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["i"])], "else", [],
                                    [helper.make_tensor_value_info("i", TensorProto.FLOAT, None)])
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["d"], axis=0),
             helper.make_node("Equal", ["d", "one"], ["c"]),
             helper.make_node("If", ["flag" if condition_from_input else "c"], ["y"], name="guard",
                              then_branch=then_branch, else_branch=else_branch),
             helper.make_node("Conv", ["y", "w"], ["z"], name="conv")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])]
    if condition_from_input:
        inputs.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    inits = [numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array(1, np.int64), "one"),
             numpy_helper.from_array(np.ones((2, 4, 1, 1), np.float32), "w")]
    graph = helper.make_graph(nodes, "guarded", inputs, [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_an_if_whose_condition_the_shapes_decide_is_analysed_as_its_taken_branch():
    from sniper_onnx.analysis.kernels import kernel_table_for_prediction

    model = _guarded_model()
    result = analyze(model)
    assert [n.op_type for n in result.nodes if n.is_layer] == ["Relu", "Conv"]
    assert not any(n.subgraph for n in result.nodes) and result.warnings == []
    conv = next(n for n in result.nodes if n.op_type == "Conv")
    assert conv.output_shapes == [[1, 2, 8, 8]] and conv.macs == 2 * 64 * 4
    assert kernel_table_for_prediction(result.nodes) is not None  # the kernel sum answers, not the PCN
    assert any(n.op_type == "If" for n in model.graph.node)  # the caller's model is left as it was


def test_an_if_whose_condition_is_an_input_stays_control_flow():
    result = analyze(_guarded_model(condition_from_input=True))
    assert any(n.subgraph and n.op_type == "If" for n in result.nodes)


def test_a_graph_output_declared_with_another_shape_is_analysed_at_the_computed_one():
    """onnxruntime runs the shape the inputs give; ONNX inference let the declaration win, so a
    stride-2 conv declared at full size counted 4x its MACs with no word."""
    from onnx import TensorProto

    conv = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    graph = helper.make_graph([conv], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 32, 32])],
                              initializer=[weight("w", 16, 3, 3, 3)])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert result.features["conv_macs"] == 16 * 16 * 16 * 27
    assert any("graph output 'y' is declared [1, 16, 32, 32], but its inputs give [1, 16, 16, 16]" in w
               for w in result.warnings)


def test_a_declared_graph_output_is_used_where_nothing_computes_its_shape():
    from onnx import TensorProto

    nodes = [helper.make_node("MyOp", ["x"], ["h"], domain="com.example"),
             helper.make_node("Conv", ["h", "w"], ["y"], kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                              initializer=[weight("w", 4, 3, 1, 1)])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]))
    assert result.features["conv_macs"] == 4 * 64 * 3
    assert not any("is declared" in w for w in result.warnings)


def test_a_misfit_after_an_input_declared_without_a_shape_stays_a_warning_naming_the_value():
    """Such an input claims no size, so the model's own misfit (here a weight of 8 rows for a
    16-wide input no size can fit) is not blamed on --input-shape as an error."""
    from onnx import TensorProto

    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[weight("w", 8, 4)])
    result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), input_shapes={"x": (1, 16)})
    assert any("--input-shape x=1x16" in w for w in result.warnings), result.warnings
