"""Published counts of reference networks (built by sniper_generator.zoo as weightless skeletons)."""

from __future__ import annotations

import pytest

from sniper_onnx import analyze

zoo = pytest.importorskip("sniper_generator.zoo")

# torchvision's published figures at 224x224: parameters, and multiply-accumulates of conv + fc layers
PUBLISHED = {"resnet50": (25_557_032, 4.09e9), "vgg16": (138_357_544, 15.47e9)}


def batchnorm_running_stats(result) -> int:
    """Running mean and variance: 2 of the 4 per-channel weights of each BatchNormalization node."""
    return sum(node.params // 2 for node in result.nodes if node.op_type == "BatchNormalization")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_params_and_macs_within_one_percent(name):
    params, macs = PUBLISHED[name]
    result = analyze(zoo.export_zoo_model(name, resolution=224, weights=False))
    f = result.features
    assert abs(f["total_params"] - params) / params < 0.01
    assert abs(f["total_macs"] - macs) / macs < 0.01
    assert abs(f["conv_macs"] + f["fc_macs"] - macs) / macs < 0.01
    # exactly: torch's parameters plus BatchNorm running statistics, which torch keeps as buffers
    assert f["total_params"] == params + batchnorm_running_stats(result)
    assert result.unknown_ops == {} and result.warnings == []


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_every_zoo_network_matches_torchvision_params_up_to_running_stats(name):
    result = analyze(zoo.export_zoo_model(name, weights=False))
    # torchvision's Inception-v3 count includes the auxiliary head, which its eval graph does not run
    reference = zoo.ZOO[name].reference_params - (zoo.INCEPTION_AUX_HEAD_PARAMS if name == "inception_v3" else 0)
    assert result.features["total_params"] == reference + batchnorm_running_stats(result)
    assert result.unknown_ops == {} and result.unknown_shape_nodes == []
