"""Random networks of every generator family analyse completely, and agree with its parameter count."""

from __future__ import annotations

import pytest

from sniper_onnx import analyze

generator = pytest.importorskip("sniper_generator")
builder = pytest.importorskip("sniper_generator.builder")


@pytest.mark.parametrize("family", ["cnn", "transformer", "mixed"])
def test_generated_networks_have_no_unknowns(family):
    for spec in generator.sample_specs(3, seed=7, family=family):
        model = generator.materialize(spec, weights=False)
        result = analyze(model)
        assert result.unknown_ops == {} and result.unknown_shape_nodes == [], spec.net_id
        running_stats = sum(n.params // 2 for n in result.nodes if n.op_type == "BatchNormalization")
        assert result.features["total_params"] == builder.count_parameters(model) + running_stats, spec.net_id
        assert result.features["total_macs"] > 0 and result.features["critical_path_layers"] >= 1
