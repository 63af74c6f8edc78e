"""Residual Add + LayerNorm pairs onnxruntime fuses into SkipLayerNormalization are tagged, and only those."""

from __future__ import annotations

import collections
import json

import onnx
import pytest
from onnx import helper

from analysis_graphs import model, weight
from sniper_onnx.analysis import analyze
from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, kernel_table
from sniper_onnx.analysis.runtime_fusions import SKIP_LAYER_NORM_TAG

SKIP = KERNEL_FEATURE_NAMES.index("is_skip_layer_norm")


def _add_then_norm(shape_a, shape_b, *, also_read: bool = False, add_is_output: bool = False) -> onnx.ModelProto:
    dim = shape_a[-1]
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("LayerNormalization", ["s", "gamma", "beta"], ["y"], name="norm", axis=-1)]
    outputs = ["y"]
    if also_read:  # pre-norm: the residual stream goes on past the norm
        nodes.append(helper.make_node("Relu", ["s"], ["r"], name="other_reader"))
        outputs.append("r")
    if add_is_output:
        outputs.append("s")
    return model(nodes, {"a": list(shape_a), "b": None if shape_b is None else list(shape_b)}, outputs,
                 [weight("gamma", dim), weight("beta", dim)])


def _norm_row(shape_a, shape_b, **kwargs):
    result = analyze(_add_then_norm(shape_a, shape_b, **kwargs))
    norm = next(n for n in result.nodes if n.name == "norm")
    table = kernel_table(result.nodes)
    return norm, table


def test_a_residual_add_on_3d_tokens_read_only_by_the_norm_is_tagged():
    norm, table = _norm_row((1, 8, 16), (1, 8, 16))
    assert SKIP_LAYER_NORM_TAG in norm.tags
    assert table[:, SKIP].tolist() == [0.0, 1.0]  # the Add's row, then the norm's


@pytest.mark.parametrize("shapes, kwargs, why", [
    (((8, 16), (8, 16)), {}, "2-D tokens (the transformer family's layout)"),
    (((1, 8, 16), (16,)), {}, "a bias Add, not a residual"),
    (((1, 8, 16), (1, 1, 16)), {}, "a broadcast operand"),
    (((1, 8, 16), (1, 8, 16)), {"also_read": True}, "pre-norm: the sum is read again"),
    (((1, 8, 16), (1, 8, 16)), {"add_is_output": True}, "the sum is a graph output"),
])
def test_pairs_onnxruntime_leaves_alone_are_not_tagged(shapes, kwargs, why):
    norm, _ = _norm_row(*shapes, **kwargs)
    assert SKIP_LAYER_NORM_TAG not in norm.tags, why


def test_a_dynamic_batch_is_tagged_as_onnxruntime_fuses_it_too():
    # onnxruntime compares the operands' dims, and one symbol equals itself
    norm, _ = _norm_row(("batch", 8, 16), ("batch", 8, 16))
    assert SKIP_LAYER_NORM_TAG in norm.tags


def test_an_already_fused_skip_layer_norm_is_tagged():
    node = helper.make_node("SkipLayerNormalization", ["a", "b", "gamma", "beta"], ["y"], name="fused",
                            domain="com.microsoft", epsilon=1e-12)
    fused = model([node], {"a": [1, 8, 16], "b": [1, 8, 16]}, ["y"], [weight("gamma", 16), weight("beta", 16)])
    fused.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    result = analyze(fused)
    assert kernel_table(result.nodes)[:, SKIP].tolist() == [1.0]


def test_the_tag_travels_through_the_json_node_rows():
    result = analyze(_add_then_norm((1, 8, 16), (1, 8, 16)))
    rows = json.loads(json.dumps(result.to_json_dict(include_nodes=True)))["nodes"]
    assert kernel_table(rows).tolist() == kernel_table(result.nodes).tolist()


def test_the_tags_match_the_fusions_onnxruntime_makes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from sniper_generator.spec import materialize, sample_specs

    # post- and pre-norm, batch 1 and more, masks or none: the family's first nets under 2e7 MACs
    specs = sample_specs(12, 2026, "transformer-torch", max_macs=2e7)
    assert {s.config["norm"] for s in specs} == {"post", "pre"}
    for spec in specs:
        net = materialize(spec)
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(net.SerializeToString(), options, providers=["CPUExecutionProvider"])
        fused = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)
        tagged = int(kernel_table(analyze(net).nodes)[:, SKIP].sum())
        assert tagged == fused["SkipLayerNormalization"], spec.net_id


def test_an_operand_of_unknown_shape_is_not_tagged_and_does_not_fail():
    norm, _ = _norm_row((1, 8, 16), None)
    assert SKIP_LAYER_NORM_TAG not in norm.tags
