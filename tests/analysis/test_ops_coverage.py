"""Every default-domain ONNX op has a cost rule; the rarer ones on hand-built graphs, MACs by hand."""

from __future__ import annotations

import onnx
import pytest
from analysis_graphs import ints, model, node, single, tensor, weight
from onnx import TensorProto, helper

from sniper_onnx import analyze
from sniper_onnx.analysis import REGISTRY
from sniper_onnx.analysis.ops import CONTROL_FLOW_OPS, PLUMBING_OPS

# default-domain ops deliberately left unknown, with the reason; none at present
DELIBERATELY_UNKNOWN: dict[str, str] = {}


def int_scalar(name: str, value: int) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [], [value])


def with_outputs(built: onnx.ModelProto, *names: str) -> onnx.ModelProto:
    """The single node's outputs (ops whose second and third outputs are required)."""
    built.graph.node[0].output[:] = list(names)
    return built


def test_every_default_domain_op_has_a_rule():
    standard = {schema.name for schema in onnx.defs.get_all_schemas() if schema.domain == ""}
    missing = sorted(standard - set(REGISTRY) - set(DELIBERATELY_UNKNOWN))
    assert missing == [], f"ops without a cost rule in sniper_onnx/analysis/ops.py: {missing}"
    assert not set(DELIBERATELY_UNKNOWN) & set(REGISTRY)


def test_deform_conv_is_the_conv_plus_bilinear_sampling_of_every_tap():
    # X [1, 4, 8, 8], W [6, 4, 3, 3], pads 1: Y [1, 6, 8, 8]; offset [1, 2*9, 8, 8], mask [1, 9, 8, 8]
    built = single("DeformConv", {"x": [1, 4, 8, 8], "offset": [1, 18, 8, 8]},
                   [weight("W", 6, 4, 3, 3), weight("B", 6)], opset=22, extra_inputs=["W", "B", "mask"],
                   pads=[1, 1, 1, 1])
    built.graph.node[0].input[:] = ["x", "W", "offset", "B", "mask"]
    built.graph.input.append(tensor("mask", [1, 9, 8, 8]))
    result = analyze(built)
    conv = 384 * 4 * 9  # output elements x C_in x kernel
    samples = 1 * 4 * 9 * 64  # batch x input channels x kernel taps x output positions
    assert node(result).output_shapes == [[1, 6, 8, 8]]
    assert node(result).macs == conv + samples * (4 + 1)  # bilinear 4 taps, then the mask multiply
    assert node(result).params == 6 * 36 + 6 and node(result).category == "conv"
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []
    assert result.features["num_conv3x3"] == 1 and result.features["conv_macs"] == conv + samples * 5


@pytest.mark.parametrize(("mode", "taps"), [("nearest", 0), ("linear", 2 * 2), ("cubic", 4 * 4)])
def test_grid_sample_taps_per_output_element(mode, taps):
    result = analyze(single("GridSample", {"x": [1, 3, 8, 8], "grid": [1, 5, 6, 2]}, opset=20, mode=mode))
    assert node(result).output_shapes == [[1, 3, 5, 6]]
    assert node(result).macs == 3 * 5 * 6 * taps and node(result).category == "resize"
    assert result.unknown_ops == {}


def test_grid_sample_opset16_bilinear_and_a_constant_grid_is_no_weight():
    result = analyze(single("GridSample", {"x": [1, 2, 4, 4]}, [weight("grid", 1, 3, 3, 2)], opset=16,
                            extra_inputs=["grid"], mode="bilinear"))
    assert node(result).macs == 2 * 9 * 4 and node(result).params == 0


def test_roi_align_samples_four_taps_per_point_and_pools_by_mode():
    # 5 RoIs over 3 channels into 2x3 bins, 2x2 sampling points per bin
    inputs = {"x": [1, 3, 16, 16], "rois": [5, 4]}
    index = helper.make_tensor_value_info("idx", TensorProto.INT64, [5])
    for mode, category in (("avg", "avgpool"), ("max", "maxpool")):
        built = single("RoiAlign", inputs, opset=16, extra_inputs=["idx"], output_height=2, output_width=3,
                       sampling_ratio=2, mode=mode)
        built.graph.input.append(index)
        result = analyze(built)
        assert node(result).output_shapes == [[5, 3, 2, 3]]
        assert node(result).macs == 90 * (2 * 2) * 4 and node(result).category == category
        assert result.features[f"num_{category}"] == 1 and result.unknown_ops == {}


def test_roi_align_adaptive_sampling_is_unknown_not_guessed():
    built = single("RoiAlign", {"x": [1, 3, 16, 16], "rois": [5, 4]}, opset=16, extra_inputs=["idx"])
    built.graph.input.append(helper.make_tensor_value_info("idx", TensorProto.INT64, [5]))
    result = analyze(built)  # sampling_ratio 0: ceil(roi size / bins) points, from the RoI values
    assert result.unknown_ops == {} and result.unknown_shape_nodes == ["op"]
    assert node(result).macs == 0 and not node(result).shapes_known


def test_dft_is_n_log2_n_per_transform():
    # [2, 8, 1] real signal, axis -2: 2 transforms of length 8, 8 x 3 each
    full = analyze(single("DFT", {"x": [2, 8, 1]}, opset=20))
    assert node(full).output_shapes == [[2, 8, 2]] and node(full).macs == 2 * 8 * 3
    assert node(full).category == "reduce" and full.unknown_ops == {}
    # one-sided: 5 bins out, still a length-8 transform
    onesided = analyze(single("DFT", {"x": [2, 8, 1]}, opset=20, onesided=1))
    assert node(onesided).output_shapes == [[2, 5, 2]] and node(onesided).macs == 2 * 8 * 3
    # DFT-17's axis attribute on [1, 4, 8, 2]: 4 transforms of length 8
    old = analyze(single("DFT", {"x": [1, 4, 8, 2]}, opset=17, axis=2))
    assert node(old).macs == 4 * 8 * 3
    # a length that is no power of two rounds log2 up: 6 x 3
    assert node(analyze(single("DFT", {"x": [1, 6, 2]}, opset=20))).macs == 6 * 3


def test_dft20_axis_input_is_found_from_the_changed_length_else_unknown():
    axis = int_scalar("axis", 2)
    found = analyze(single("DFT", {"x": [1, 4, 8, 1]}, [axis], opset=20, extra_inputs=["", "axis"], onesided=1))
    assert node(found).output_shapes == [[1, 4, 5, 2]] and node(found).macs == 4 * 8 * 3
    # two-sided and unpadded, no length changes: axis 1 or 2 would cost differently
    unknown = analyze(single("DFT", {"x": [1, 4, 8, 1]}, [axis], opset=20, extra_inputs=["", "axis"]))
    assert unknown.unknown_ops == {} and unknown.unknown_shape_nodes == ["op"]


def test_stft_windows_and_transforms_every_frame():
    # 64 samples, step 8, a Hann window of 16: (64 - 16) / 8 + 1 = 7 frames per batch row
    nodes = [
        helper.make_node("HannWindow", ["n"], ["window"], name="hann"),
        helper.make_node("STFT", ["x", "step", "window"], ["y"], name="op", onesided=1),
    ]
    result = analyze(model(nodes, {"x": [2, 64, 1]}, ["y"], [int_scalar("n", 16), int_scalar("step", 8)]))
    assert node(result).output_shapes == [[2, 7, 9, 2]]
    assert node(result).macs == 2 * 7 * (16 * 4 + 16)  # FFT 16 x log2 16, window multiply 16
    assert node(result, "hann").category == "constant"  # a window of constant size is constant folding
    assert node(result).params == 0 and result.unknown_ops == {}


def test_det_is_lu_elimination_per_matrix():
    result = analyze(single("Det", {"x": [5, 3, 3]}, opset=22))
    # n = 3: (27 - 3) / 3 = 8 multiply-adds of elimination, 2 multiplies of the diagonal
    assert node(result).output_shapes == [[5]] and node(result).macs == 5 * (8 + 2)
    assert node(result).category == "reduce" and result.unknown_ops == {}


def test_affine_grid_dots_each_coordinate_with_a_theta_row():
    # theta [2, 2, 3] into size (2, 3, 4, 5): grid [2, 4, 5, 2], each coordinate a dot of length 3
    result = analyze(single("AffineGrid", {"theta": [2, 2, 3]}, [ints("size", [2, 3, 4, 5])], opset=20,
                            extra_inputs=["size"]))
    assert node(result).output_shapes == [[2, 4, 5, 2]] and node(result).macs == 80 * 3
    assert node(result).params == 0 and result.unknown_ops == {}


def test_losses_count_softmax_log_and_the_pick_per_target():
    labels = helper.make_tensor_value_info("t", TensorProto.INT64, [4])
    sce = single("SoftmaxCrossEntropyLoss", {"x": [4, 5]}, [weight("w", 5)], opset=13, extra_inputs=["t", "w"])
    sce.graph.input.append(labels)
    result = analyze(sce)
    # 20 scores: softmax 3 + log 1 each; 4 targets: pick and accumulate 1, class weight 1
    assert node(result).macs == 20 * 4 + 4 * 2 and node(result).category == "reduce"
    assert node(result).params == 0 and result.unknown_ops == {}
    nll = single("NegativeLogLikelihoodLoss", {"x": [4, 5, 3]}, opset=13, extra_inputs=["t"])
    nll.graph.input.append(helper.make_tensor_value_info("t", TensorProto.INT64, [4, 3]))
    assert node(analyze(nll)).macs == 12


def test_swiglu_is_a_swish_and_a_multiply_per_element():
    result = analyze(single("SwiGLU", {"a": [2, 3, 8], "b": [2, 3, 8]}, opset=28))
    assert node(result).output_shapes == [[2, 3, 8]] and node(result).macs == 48 * 2
    assert node(result).category == "activation" and result.features["num_activation"] == 1
    assert result.unknown_ops == {}


def test_nms_counts_pairwise_ious_per_batch_and_class():
    built = single("NonMaxSuppression", {"boxes": [2, 6, 4], "scores": [2, 3, 6]},
                   [int_scalar("max_out", 4), helper.make_tensor("iou", TensorProto.FLOAT, [], [0.5])],
                   opset=11, extra_inputs=["max_out", "iou"])
    result = analyze(built)
    assert node(result).macs == 2 * 3 * (6 * 5 // 2) and node(result).params == 0
    # how many boxes are kept is data-dependent: the output's size stays unknown
    assert result.unknown_ops == {} and result.unknown_shape_nodes == ["op"]


def test_linear_attention_counts_state_updates_and_readout():
    # B 2, T 3; 4 query heads of d_k 4, 2 KV heads of d_v 6: state d_k x d_v = 24
    def run(rule):
        built = single("LinearAttention", {"q": [2, 3, 16], "k": [2, 3, 8], "v": [2, 3, 12]}, opset=27,
                       q_num_heads=4, kv_num_heads=2, **({"update_rule": rule} if rule else {}))
        return analyze(with_outputs(built, "y", "present_state"))

    linear = run("linear")  # S += k (x) v per KV head, q^T S per query head, scale per output
    assert node(linear).output_shapes == [[2, 3, 24], [2, 2, 4, 6]]
    assert node(linear).macs == 2 * 3 * (24 * (1 * 2 + 4) + 4 * 6)
    assert node(linear).category == "matmul" and linear.unknown_ops == {}
    gated_delta = run(None)  # the default: decay, S^T k and the rank-1 update
    assert node(gated_delta).macs == 2 * 3 * (24 * (3 * 2 + 4) + 4 * 6)


def test_causal_conv_with_state_is_a_depthwise_conv_with_its_activation():
    built = single("CausalConvWithState", {"x": [2, 8, 10]}, [weight("W", 8, 1, 4), weight("B", 8),
                   weight("past", 2, 8, 3)], opset=27, extra_inputs=["W", "B", "past"], activation="silu")
    result = analyze(with_outputs(built, "y", "present_state"))
    assert node(result).output_shapes == [[2, 8, 10], [2, 8, 3]]
    assert node(result).macs == 160 * (4 + 1)  # 4 taps and the SiLU per output element
    assert node(result).params == 32 + 8 and node(result).category == "conv"  # the state is no weight
    assert "depthwise_conv" in node(result).tags and result.unknown_ops == {}


@pytest.mark.parametrize(
    ("op", "inputs", "initializers", "extra", "attrs", "opset", "macs", "category"),
    [
        ("Col2Im", {"x": [1, 12, 12]}, [ints("img", [5, 6]), ints("blk", [2, 2])], ["img", "blk"], {}, 18,
         144, "memory"),  # one add per input element
        ("CumProd", {"x": [3, 4]}, [int_scalar("axis", 1)], ["axis"], {}, 26, 12, "reduce"),
        ("DynamicQuantizeLinear", {"x": [3, 4]}, [], [], {}, 11, 12 * 3, "elementwise"),  # min, max, quantize
        ("Multinomial", {"x": [3, 10]}, [], [], {"sample_size": 5}, 7, 30 + 15 * 4, "elementwise"),
        ("Unique", {"x": [10]}, [], [], {}, 11, 10, "reduce"),
        ("Bernoulli", {"x": [3, 4]}, [], [], {}, 15, 12, "elementwise"),
        ("RandomNormalLike", {"x": [3, 4]}, [], [], {}, 1, 12, "elementwise"),
        ("RandomUniformLike", {"x": [3, 4]}, [], [], {}, 1, 12, "elementwise"),
        ("MaxUnpool", {"x": [1, 2, 4, 4]}, [], ["i"], {"kernel_shape": [2, 2], "strides": [2, 2]}, 11, 0, "memory"),
        ("CenterCropPad", {"x": [3, 10, 12]}, [ints("shape", [3, 8, 14])], ["shape"], {}, 18, 0, "memory"),
        ("Scatter", {"x": [3, 4], "u": [2, 4]}, [], ["i"], {}, 10, 0, "memory"),
        ("TensorScatter", {"u": [2, 4, 1, 8]}, [weight("cache", 2, 4, 10, 8)], ["cache"], {}, 24, 0, "memory"),
        ("BitCast", {"x": [3, 4]}, [], [], {"to": TensorProto.INT32}, 26, 0, "plumbing"),
    ],
)
def test_simple_rules(op, inputs, initializers, extra, attrs, opset, macs, category):
    built = single(op, inputs, initializers, opset=opset, extra_inputs=extra, **attrs)
    if "i" in extra:  # int64 indices given as a graph input
        built.graph.input.append(helper.make_tensor_value_info("i", TensorProto.INT64, inputs.get("u", inputs["x"])))
    if op == "TensorScatter":  # the constant cache is the first input
        built.graph.node[0].input[:] = ["cache", "u"]
    if op == "DynamicQuantizeLinear":
        with_outputs(built, "y", "y_scale", "y_zero_point")
    result = analyze(built)
    assert result.unknown_ops == {} and result.unknown_shape_nodes == ([] if op != "Unique" else ["op"])
    assert node(result).macs == macs and node(result).category == category
    assert node(result).params == 0  # sizes, axes, indices and caches are settings, not weights


def test_tfidf_looks_up_every_ngram_each_item_starts():
    built = single("TfIdfVectorizer", {}, [], opset=9, extra_inputs=["x"], mode="TF", min_gram_length=1,
                   max_gram_length=2, max_skip_count=1, ngram_counts=[0, 2], ngram_indexes=[0, 1, 2],
                   pool_int64s=[1, 2, 1, 2])
    built.graph.input.append(helper.make_tensor_value_info("x", TensorProto.INT64, [2, 7]))
    result = analyze(built)
    # 14 items: one 1-gram each, 2-grams at skips 0 and 1
    assert node(result).output_shapes == [[2, 3]] and node(result).macs == 14 * (1 + 2)
    assert result.unknown_ops == {}


def test_string_ops_are_known_elementwise_layers():
    for op, names, attrs in (("RegexFullMatch", ["s"], {"pattern": "a.*"}), ("StringConcat", ["s", "s"], {}),
                             ("StringNormalizer", ["s"], {}), ("StringSplit", ["s"], {})):
        outputs = ["y", "counts"] if op == "StringSplit" else ["y"]
        graph = helper.make_graph([helper.make_node(op, names, outputs, name="op", **attrs)], "g",
                                  [helper.make_tensor_value_info("s", TensorProto.STRING, [3])],
                                  [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
        result = analyze(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]))
        assert result.unknown_ops == {}, op
        assert node(result).macs == (0 if op == "StringSplit" else 3), op


def test_a_window_of_constant_size_is_folded_but_random_noise_is_not():
    nodes = [helper.make_node("RandomUniform", [], ["r"], name="rand", shape=[3, 4]),
             helper.make_node("BlackmanWindow", ["n"], ["w"], name="window"),
             helper.make_node("Add", ["x", "r"], ["y"], name="op")]
    result = analyze(model(nodes, {"x": [3, 4]}, ["y", "w"], [int_scalar("n", 8)], opset=17))
    assert node(result, "window").category == "constant"
    # new noise every run: a layer of one operation per element, never a weight of what reads it
    assert node(result, "rand").category == "elementwise" and node(result, "rand").macs == 12
    assert node(result, "op").params == 0 and result.features["total_params"] == 0
    assert result.unknown_ops == {} and result.features["num_layers"] == 2


def test_data_dependent_nodes_are_not_blamed_on_the_input_dims():
    built = single("RoiAlign", {"x": [1, 3, 16, 16], "rois": [5, 4]}, opset=16, extra_inputs=["idx"])
    built.graph.input.append(helper.make_tensor_value_info("idx", TensorProto.INT64, [5]))
    warnings = analyze(built).warnings
    assert any("1 node whose cost depends on the input values" in w and "'op'" in w for w in warnings)
    assert not any("--input-shape" in w for w in warnings)


def test_a_constant_sequence_position_is_no_parameter():
    nodes = [helper.make_node("SplitToSequence", ["x"], ["seq"], name="split", axis=0),
             helper.make_node("SequenceInsert", ["seq", "x", "pos"], ["more"], name="insert"),
             helper.make_node("SequenceAt", ["more", "pos"], ["y"], name="at")]
    result = analyze(model(nodes, {"x": [5, 4]}, ["y"], [int_scalar("pos", 0)], opset=17))
    assert result.features["total_params"] == 0 and result.unknown_ops == {}


def test_sequence_erase_is_plumbing_and_sequence_map_costs_its_body():
    assert "SequenceErase" in PLUMBING_OPS and "BitCast" in PLUMBING_OPS and "SequenceMap" in CONTROL_FLOW_OPS
    body = helper.make_graph([helper.make_node("MatMul", ["e", "W"], ["o"], name="mm")], "body",
                             [tensor("e", [1, 4])], [tensor("o", [1, 3])])
    nodes = [helper.make_node("SplitToSequence", ["x"], ["seq"], name="split", axis=0),
             helper.make_node("SequenceErase", ["seq", "pos"], ["rest"], name="erase"),
             helper.make_node("SequenceMap", ["rest"], ["mapped"], name="map", body=body),
             helper.make_node("ConcatFromSequence", ["mapped"], ["y"], name="cat", axis=0)]
    result = analyze(model(nodes, {"x": [5, 4]}, ["y"], [weight("W", 4, 3), int_scalar("pos", 0)]))
    assert result.unknown_ops == {}
    assert not node(result, "erase").is_layer and node(result, "erase").params == 0
    mapped = node(result, "map")
    # the sequence length is known only when running: the body is counted once, with a warning
    assert mapped.category == "control_flow" and mapped.subgraph
    assert mapped.macs == 1 * 3 * 4 and mapped.params == 12
    assert any("'map' (SequenceMap): trip count unknown" in w for w in result.warnings)
