"""onnxruntime's transformer fusions (com.microsoft Attention, MultiHeadAttention,
GroupQueryAttention, EmbedLayerNormalization, RotaryEmbedding): MACs counted by hand, output shapes
checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from analysis_graphs import node, tensor, weight
from sniper_onnx.analysis import analyze

MS = "com.microsoft"


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                                                   for n in outputs], list(initializers))
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS, 1)])
    built.ir_version = 8
    return built


def _real(name, *dims):
    return onnx.numpy_helper.from_array(np.random.default_rng(0).standard_normal(dims).astype(np.float32) * 0.1, name)


def _attention():
    node_ = helper.make_node("Attention", ["x", "W", "b"], ["y"], name="op", domain=MS, num_heads=4)
    return _model([node_], [tensor("x", [2, 8, 32])], ["y"], [_real("W", 32, 96), _real("b", 96)])


def _mha():
    node_ = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], name="op", domain=MS, num_heads=4)
    return _model([node_], [tensor("q", [2, 8, 32]), tensor("k", [2, 10, 32]), tensor("v", [2, 10, 32])], ["y"])


def _gqa():
    node_ = helper.make_node("GroupQueryAttention", ["q", "k", "v", "", "", "seqlens", "total"], ["y", "pk", "pv"],
                             name="op", domain=MS, num_heads=4, kv_num_heads=2)
    inits = [helper.make_tensor("seqlens", TensorProto.INT32, [1], [7]), helper.make_tensor("total", TensorProto.INT32, [], [8])]
    return _model([node_], [tensor("q", [1, 8, 32]), tensor("k", [1, 8, 16]), tensor("v", [1, 8, 16])], ["y", "pk", "pv"], inits)


def _embed():
    ints = [helper.make_tensor_value_info(n, TensorProto.INT32, [2, 8]) for n in ("ids", "seg")]
    node_ = helper.make_node("EmbedLayerNormalization", ["ids", "seg", "word", "pos", "segtab", "gamma", "beta"],
                             ["y", "mask_index"], name="op", domain=MS)
    built = _model([node_], ints, ["y"], [_real("word", 100, 32), _real("pos", 16, 32), _real("segtab", 2, 32),
                                          _real("gamma", 32), _real("beta", 32)])
    built.graph.output.append(helper.make_tensor_value_info("mask_index", TensorProto.INT32, None))
    return built


def _rotary():
    node_ = helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], name="op", domain=MS)
    pos = helper.make_tensor_value_info("pos", TensorProto.INT64, [1, 8])
    return _model([node_], [tensor("x", [1, 8, 32]), pos], ["y"], [_real("cos", 16, 8), _real("sin", 16, 8)])


CASES = {
    # projection 2*8*32*96 + bias 2*8*96; scores 2*4*8*8 = 512: QK^T and AV 512*(8+8), softmax 3*512
    "attention": (_attention, 49_152 + 1_536 + 8_192 + 1_536, 32 * 96 + 96, "fc", [2, 8, 32]),
    # scores 2*4*8*10 = 640: 640*(8+8) + 3*640; no weights
    "mha": (_mha, 10_240 + 1_920, 0, "matmul", [2, 8, 32]),
    # 4 query heads, 2 kv heads of 8; scores 1*4*8*8 = 256: 256*16 + 3*256
    "gqa": (_gqa, 4_096 + 768, 0, "matmul", [1, 8, 32]),
    # word + position + segment: 2 adds, then 5 for the norm, per output element; every table a weight
    "embed": (_embed, 2 * 8 * 32 * 7, 100 * 32 + 16 * 32 + 2 * 32 + 32 + 32, "norm", [2, 8, 32]),
    # 2 per element; cos and sin caches are settings, as RotaryEmbedding-23's
    "rotary": (_rotary, 2 * 8 * 32, 0, "elementwise", [1, 8, 32]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_transformer_fusion_costs_its_hand_count(case):
    build, macs, params, category, shape = CASES[case]
    result = analyze(build())
    op = node(result)
    assert (op.macs, op.params, op.category, op.output_shapes[0]) == (macs, params, category, shape)
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_output_shapes_are_the_ones_onnxruntime_computes(case):
    ort = pytest.importorskip("onnxruntime")
    built = CASES[case][0]()
    session = ort.InferenceSession(built.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {}
    for vi in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in vi.shape]
        feeds[vi.name] = (np.zeros(shape, np.int32) if "int32" in vi.type else np.zeros(shape, np.int64)
                          if "int64" in vi.type else np.random.default_rng(1).standard_normal(shape).astype(np.float32))
    if case == "rotary":
        feeds["pos"] = np.arange(8, dtype=np.int64).reshape(1, 8)
    outputs = session.run(None, feeds)
    analysed = node(analyze(built)).output_shapes
    assert [list(o.shape) for o in outputs] == analysed[:len(outputs)]


def test_a_fusion_after_it_gets_its_shape():
    built = _attention()
    built.graph.node.append(helper.make_node("BiasGelu", ["y", "gb"], ["z"], name="gelu", domain=MS))
    built.graph.initializer.append(weight("gb", 32))
    built.graph.output[0].name = "z"
    result = analyze(built)
    assert node(result, "gelu").macs == 2 * 2 * 8 * 32 and result.unknown_shape_nodes == []


ML = "ai.onnx.ml"


def _sklearn(binary: bool = False):
    classes = 2 if binary else 3
    rows = 1 if binary else 3
    nodes = [helper.make_node("Scaler", ["X"], ["xs"], name="scaler", domain=ML, offset=[0.5] * 4, scale=[2.0] * 4),
             helper.make_node("Normalizer", ["xs"], ["xn"], name="norm", domain=ML, norm="L2"),
             helper.make_node("LinearClassifier", ["xn"], ["label", "prob"], name="op", domain=ML,
                              coefficients=[0.1] * (4 * rows), intercepts=[0.0] * rows,
                              classlabels_ints=list(range(classes)), post_transform="SOFTMAX")]
    graph = helper.make_graph(nodes, "skl", [tensor("X", [5, 4])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, None),
                               helper.make_tensor_value_info("prob", TensorProto.FLOAT, None)])
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, 3)])
    built.ir_version = 8
    return built


def test_scikit_learn_linear_ops_cost_as_a_gemm_with_attribute_coefficients():
    result = analyze(_sklearn())
    assert (node(result, "scaler").macs, node(result, "norm").macs) == (2 * 20, 2 * 20)
    op = node(result)
    # 5 rows x 3 classes x 4 features, then a softmax of 3 per score; 12 coefficients + 3 intercepts
    assert (op.macs, op.params, op.category) == (5 * 3 * 4 + 3 * 15, 15, "fc")
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []


@pytest.mark.parametrize("binary", [False, True])
def test_scikit_learn_linear_classifier_shapes_are_onnxruntimes(binary):
    ort = pytest.importorskip("onnxruntime")
    built = _sklearn(binary)
    session = ort.InferenceSession(built.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"X": np.ones((5, 4), np.float32)})
    assert [list(o.shape) for o in outputs] == node(analyze(built)).output_shapes
