"""The zoo: torchvision's parameter counts, the counting rule, onnxruntime runs, analyzer coverage."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sniper_generator.builder import count_parameters
from sniper_generator.zoo import INCEPTION_AUX_HEAD_PARAMS, ZOO, export_zoo_model
from sniper_onnx.errors import SniperError

# torchvision 0.x: sum(p.numel() for p in model.parameters()), written out here on purpose
TORCHVISION_PARAMS = {
    "resnet50": 25_557_032, "resnet101": 44_549_160, "resnet152": 60_192_808,
    "densenet121": 7_978_856, "densenet169": 14_149_480, "densenet201": 20_013_928,
    "vgg16": 138_357_544, "vgg19": 143_667_240, "inception_v3": 27_161_264,
    "mobilenet_v2": 3_504_872, "squeezenet1_1": 1_235_496, "vit_b_16": 86_567_656,
}
BIG = 5_000_000  # above this, runs use skeletons with zero weights fed as inputs (see conftest.py)


def test_zoo_lists_the_papers_networks_and_more():
    assert set(TORCHVISION_PARAMS) == set(ZOO)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_parameter_count_equals_torchvision(name):
    model = export_zoo_model(name, weights=False, aux_head=name == "inception_v3")
    assert count_parameters(model) == TORCHVISION_PARAMS[name]
    assert ZOO[name].reference_params == TORCHVISION_PARAMS[name]


def test_inception_inference_graph_drops_the_aux_head():
    model = export_zoo_model("inception_v3", weights=False)
    assert [o.name for o in model.graph.output] == ["logits"]
    assert count_parameters(model) == TORCHVISION_PARAMS["inception_v3"] - INCEPTION_AUX_HEAD_PARAMS
    with_aux = export_zoo_model("inception_v3", weights=False, aux_head=True)
    assert [o.name for o in with_aux.graph.output] == ["logits", "aux_logits"]


def test_count_rule_excludes_running_stats_shapes_and_scalars():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])
    inits = [numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in
             (("w", (2, 2, 1, 1)), ("gamma", (2,)), ("beta", (2,)), ("mean", (2,)), ("var", (2,)))]
    inits += [numpy_helper.from_array(np.array([1, 32], np.int64), "shape"),
              numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["b"]),
             helper.make_node("Mul", ["b", "two"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits))
    assert count_parameters(model) == 4 + 2 + 2  # conv weight, gamma, beta; not mean/var/shape/scalar


def _small(name: str) -> int:
    return max(ZOO[name].min_resolution, 32) if name != "inception_v3" else 75


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_export_runs_in_onnxruntime_and_is_fully_analysed(name, ort_run):
    from sniper_onnx import analyze

    resolution, batch = _small(name), 2 if name in ("vit_b_16", "mobilenet_v2") else 1
    big = TORCHVISION_PARAMS[name] > BIG
    model = export_zoo_model(name, resolution=resolution, batch=batch, weights=not big)
    result = analyze(model if big else export_zoo_model(name, resolution=resolution, batch=batch, weights=False))
    assert result.unknown_ops == {}
    assert result.features["total_macs"] > 0
    outputs = ort_run(model)
    assert outputs[0].shape == (batch, 1000)
    assert np.isfinite(outputs[0]).all()


def test_random_weights_look_trained():
    model = export_zoo_model("resnet50", resolution=32, seed=3)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    stem = weights["conv_0.weight"]
    assert abs(stem.std() - np.sqrt(2.0 / (3 * 7 * 7))) < 0.1 * np.sqrt(2.0 / (3 * 7 * 7))
    assert (weights["bn_0.weight"] == 1).all() and (weights["bn_0.bias"] == 0).all()
    assert (weights["bn_0.running_mean"] == 0).all() and (weights["bn_0.running_var"] == 1).all()


def test_same_seed_same_bytes_other_seed_other_weights():
    first = export_zoo_model("squeezenet1_1", resolution=64, seed=1).SerializeToString()
    assert first == export_zoo_model("squeezenet1_1", resolution=64, seed=1).SerializeToString()
    assert first != export_zoo_model("squeezenet1_1", resolution=64, seed=2).SerializeToString()


@pytest.mark.parametrize("name, kwargs, words", [
    ("resnet5", {}, "unknown network"),
    ("vgg16", {"resolution": 100}, "224"),
    ("vgg16", {"resolution": 300}, "AdaptiveAvgPool2d"),
    ("vit_b_16", {"resolution": 230}, "multiple of the 16-pixel patch"),
    ("resnet50", {"batch": 0}, "batch"),
    ("resnet50", {"aux_head": True}, "auxiliary head"),
    ("inception_v3", {"resolution": 150, "aux_head": True}, "17x17"),
])
def test_bad_requests_raise_one_line_errors(name, kwargs, words):
    with pytest.raises(SniperError, match=words) as error:
        export_zoo_model(name, weights=False, **kwargs)
    assert "\n" not in str(error.value)


def test_skeleton_keeps_dims_and_real_shape_constants():
    model = export_zoo_model("vit_b_16", batch=2, weights=False)
    tensors = {t.name: t for t in model.graph.initializer}
    assert not tensors["conv_proj_0.weight"].raw_data and list(tensors["conv_proj_0.weight"].dims) == [768, 3, 16, 16]
    shapes = [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT64]
    assert any(list(s) == [2, 768, 196] for s in shapes)  # the patch Reshape's target, real
    assert shapes and all(s.size > 0 for s in shapes)
    assert len(model.SerializeToString()) < 1_000_000
    onnx.checker.check_model(export_zoo_model("squeezenet1_1", resolution=64, batch=2), full_check=True)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_default_export_has_the_listed_export_params(name):
    assert count_parameters(export_zoo_model(name, weights=False)) == ZOO[name].export_params


def test_inception_aux_head_export_runs(ort_run):
    from sniper_onnx import analyze

    model = export_zoo_model("inception_v3", weights=False, aux_head=True)  # 299x299, as torchvision trains it
    assert analyze(model).unknown_ops == {}
    logits, aux_logits = ort_run(model)
    assert logits.shape == aux_logits.shape == (1, 1000)


@pytest.mark.parametrize("name", ["vgg16", "vit_b_16"])
def test_the_first_refusal_states_every_constraint_on_the_resolution(name):
    """Every resolution is either built or refused up front by a message that states the rule, so no
    resolution passes the stated range only to be refused by the builder (VGG said 224..2048, then
    refused 300)."""
    entry = ZOO[name]
    assert entry.rule is not None
    for resolution in range(1, 2049):
        try:
            export_zoo_model(name, resolution=resolution, weights=False)
        except SniperError as error:
            message = str(error)
            assert message.startswith(f"{name}: resolution {resolution} is refused; {name} takes "), message
            assert entry.rule.text in message and "nearest: --resolution" in message
            assert not entry.accepts(resolution)
        else:
            assert entry.accepts(resolution), resolution


def test_a_refusal_names_the_nearest_accepted_resolutions():
    with pytest.raises(SniperError, match=r"takes 224\.\.2047 where resolution // 32 is a multiple of 7 .*"
                                          r"nearest: --resolution 255 or --resolution 448$"):
        export_zoo_model("vgg16", resolution=300, weights=False)
    assert "vit_b_16 32..2048 where resolution is a multiple" in f"vit_b_16 {ZOO['vit_b_16'].resolutions()}"
    with pytest.raises(SniperError, match="nearest: --resolution 2048$"):
        export_zoo_model("resnet50", resolution=4096, weights=False)
