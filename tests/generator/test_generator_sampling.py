"""Specs, sampling and materialization of the random families."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from sniper_generator import GENERATOR_VERSION, NetSpec, materialize, sample_specs
from sniper_generator.builder import count_parameters
from sniper_generator.cnn import ACTIVATIONS, BLOCK_KINDS, sample_cnn_config
from sniper_generator.sampling import sample_target_macs
from sniper_onnx.errors import SniperError

SMALL = 5e6  # MACs cap for nets that are run: keeps each materialization and onnxruntime call quick
NASBENCH201_SMALL = 1e7  # its smallest net has 7.9e6 MACs


def test_specs_are_deterministic_json_and_prefix_stable():
    specs = sample_specs(6, seed=11, family="mixed", max_macs=SMALL)
    again = sample_specs(6, seed=11, family="mixed", max_macs=SMALL)
    assert [s.to_json_dict() for s in specs] == [s.to_json_dict() for s in again]
    assert [s.net_id for s in sample_specs(3, seed=11, family="mixed", max_macs=SMALL)] == [s.net_id for s in specs[:3]]
    assert len({s.net_id for s in specs}) == 6
    assert len({s.net_id for s in sample_specs(6, seed=12, family="mixed", max_macs=SMALL)} & {s.net_id for s in specs}) == 0
    for spec in specs:
        data = json.loads(json.dumps(spec.to_json_dict()))
        assert NetSpec.from_json_dict(data) == spec
        assert spec.family in ("cnn", "transformer") and spec.generator_version == GENERATOR_VERSION


def test_same_spec_same_bytes_and_seed_changes_weights_only():
    spec = sample_specs(1, seed=5, max_macs=SMALL)[0]
    first = materialize(spec).SerializeToString()
    assert first == materialize(spec).SerializeToString()
    reseeded = NetSpec(spec.net_id, spec.seed + 1, spec.family, spec.config)
    other = materialize(reseeded)
    assert other.SerializeToString() != first
    assert [n.op_type for n in other.graph.node] == [n.op_type for n in onnx.load_from_string(first).graph.node]


@pytest.mark.parametrize("family, count", [("cnn", 8), ("cnn-strided", 6), ("cnn-wide", 3), ("transformer", 3),
                                           ("tiny", 12), ("nasbench201", 1)])
def test_generated_nets_pass_full_check_run_and_are_fully_analysed(family, count, ort_run):
    from sniper_onnx import analyze

    cap = NASBENCH201_SMALL if family == "nasbench201" else SMALL
    for spec in sample_specs(count, seed=2024, family=family, max_macs=cap):
        model = materialize(spec)
        onnx.checker.check_model(model, full_check=True)
        outputs = ort_run(model)
        assert np.isfinite(outputs[0]).all(), spec.net_id
        skeleton = materialize(spec, weights=False)
        result = analyze(skeleton)
        assert result.unknown_ops == {}, spec.net_id
        assert count_parameters(skeleton) == count_parameters(model)


def _strided_convs(spec) -> set:
    """(kind, kernel) of every stride-2 conv after the stem in ``spec``'s graph."""
    from sniper_onnx import analyze
    from sniper_onnx.analysis.kernels import kernel_group

    convs = [n for n in analyze(materialize(spec, weights=False)).nodes if n.op_type == "Conv"]
    return {(kernel_group(n), n.input_shapes[1][2]) for n in convs[1:]
            if n.input_shapes[0][2] > n.output_shapes[0][2]}


def test_cnn_strided_blocks_stride_like_mobilenet_and_resnet():
    specs = sample_specs(30, seed=3, family="cnn-strided", max_macs=SMALL)
    assert {s.family for s in specs} == {"cnn-strided"} and specs[0].net_id.startswith("cnn-strided-")
    strided = set().union(*map(_strided_convs, specs))
    # MobileNetV2's stride-2 depthwise and ResNet's stride-2 1x1 projection both occur
    assert ("depthwise_conv", 3) in strided and ("conv", 1) in strided
    plain = set().union(*map(_strided_convs, sample_specs(30, seed=3, family="cnn", max_macs=SMALL)))
    assert not {kind for kind, _ in plain} & {"depthwise_conv", "grouped_conv"}
    assert ("conv", 1) not in plain


def test_strided_residual_block_builds_on_odd_maps(ort_run):
    from sniper_generator.builder import GraphBuilder
    from sniper_generator.cnn import build_cnn

    block = {"kind": "residual", "channels": 16, "kernel": 3, "bottleneck": False, "stride": 2}
    config = {"resolution": 37, "batch": 1, "norm": True, "activation": "relu",
              "stem": {"channels": 8, "kernel": 3, "stride": 1, "pool": "none"},
              "stages": [{"downsample": "none", "blocks": [block, {**block, "kind": "grouped", "groups": 4}]}],
              "head": {"pool": "avg", "side": 1, "fc": [10]}}
    builder = GraphBuilder("odd", np.random.default_rng(0), True)
    builder.output(build_cnn(builder, config), "logits")
    assert ort_run(builder.build())[0].shape == (1, 10)


def test_skeleton_has_dims_but_no_weight_data():
    spec = sample_specs(1, seed=3, max_macs=SMALL)[0]
    skeleton, full = materialize(spec, weights=False), materialize(spec)
    assert len(skeleton.SerializeToString()) < len(full.SerializeToString())
    weights = [t for t in skeleton.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims)]
    assert weights and all(not t.raw_data and not t.float_data for t in weights)
    assert [list(t.dims) for t in skeleton.graph.initializer] == [list(t.dims) for t in full.graph.initializer]


def test_cnn_sampler_covers_every_block_kind_kernel_activation_and_head():
    configs = [sample_cnn_config(np.random.default_rng([9, i]), max_macs=1e7) for i in range(60)]
    kinds = {b["kind"] for c in configs for s in c["stages"] for b in s["blocks"]}
    kernels = {b["kernel"] for c in configs for s in c["stages"] for b in s["blocks"] if "kernel" in b}
    assert kinds == set(BLOCK_KINDS)
    assert kernels == {1, 3, 5, 7}
    assert {c["activation"] for c in configs} == set(ACTIVATIONS)
    assert {c["head"]["pool"] for c in configs} == {"avg", "max", "flatten", "conv"}
    assert {c["norm"] for c in configs} == {True, False}
    assert {len(b["branches"]) for c in configs for s in c["stages"] for b in s["blocks"]
            if b["kind"] == "inception"} == {2, 3, 4, 5}
    assert min(c["resolution"] for c in configs) < 64 and max(c["resolution"] for c in configs) > 200


def test_materialize_refuses_another_generator_version():
    spec = sample_specs(1, seed=0, max_macs=SMALL)[0]
    old = NetSpec(spec.net_id, spec.seed, spec.family, spec.config, generator_version="0")
    with pytest.raises(SniperError, match="generator version 0"):
        materialize(old)


@pytest.mark.parametrize("kwargs, words", [
    ({"family": "rnn"}, "unknown"), ({"count": -1}, "count"), ({"max_macs": 10.0}, "1e6"),
    ({"max_macs": float("nan")}, "positive finite"), ({"max_macs": float("inf"), "family": "tiny"}, "positive finite"),
])
def test_bad_sampling_arguments(kwargs, words):
    arguments = {"count": 1, "seed": 0, **kwargs}
    with pytest.raises(SniperError, match=words):
        sample_specs(**arguments)


GOLDEN = Path(__file__).with_name("golden_specs.json")
BUMP = ("the generator's output changed: if on purpose, bump GENERATOR_VERSION in sniper_generator/spec.py "
        "(old manifests must not silently re-materialize other nets) and regenerate golden_specs.json")


def test_golden_specs_and_bytes_are_stable():
    golden = json.loads(GOLDEN.read_text())
    assert golden["generator_version"] == GENERATOR_VERSION, BUMP
    specs = sample_specs(**golden["sample_specs"])
    assert [s.to_json_dict() for s in specs] == golden["specs"], BUMP
    for spec, digest, skeleton_digest in zip(specs, golden["sha256"], golden["skeleton_sha256"]):
        assert hashlib.sha256(materialize(spec).SerializeToString()).hexdigest() == digest, BUMP
        assert hashlib.sha256(materialize(spec, weights=False).SerializeToString()).hexdigest() == skeleton_digest, BUMP


def test_macs_targets_span_1e6_to_5e10_with_a_small_bulk():
    rng = np.random.default_rng(0)
    targets = np.array([sample_target_macs(rng) for _ in range(4000)])
    assert targets.min() < 2e6 and 2e10 < targets.max() <= 10 ** 10.7
    assert 1e7 < np.median(targets) < 1e9
    assert 0.1 < (targets > 2e9).mean() < 0.2
    capped = np.array([sample_target_macs(rng, max_macs=1e7) for _ in range(500)])
    assert capped.max() <= 1e7 and capped.min() < 2e6


def test_max_macs_caps_the_built_nets():
    from sniper_generator.cnn import estimate_macs

    configs = [sample_cnn_config(np.random.default_rng([4, i]), max_macs=1e7) for i in range(20)]
    assert max(estimate_macs(c) for c in configs) <= 2e7


def _largest_conv(spec) -> tuple[float, int]:
    """(MACs, output elements) of the biggest convolution in ``spec``'s graph."""
    from sniper_onnx import analyze

    convs = [n for n in analyze(materialize(spec, weights=False)).nodes if n.op_type == "Conv"]
    biggest = max(convs, key=lambda n: n.macs)
    return biggest.macs, int(np.prod(biggest.output_shapes[0]))


def test_cnn_wide_nets_hold_the_big_full_resolution_convolutions_vgg_has():
    from sniper_generator.cnn import WIDE_MACS_RANGE, estimate_macs

    wide = sample_specs(12, seed=5, family="cnn-wide")
    assert {s.family for s in wide} == {"cnn-wide"} and wide[0].net_id.startswith("cnn-wide-")
    assert all(WIDE_MACS_RANGE[0] / 2 <= estimate_macs(s.config) <= WIDE_MACS_RANGE[1] for s in wide)
    assert all(s.config["stem"]["stride"] == 1 and s.config["stem"]["pool"] == "none" for s in wide)
    wide_convs = [_largest_conv(s) for s in wide]
    cnn_convs = [_largest_conv(s) for s in sample_specs(12, seed=5, family="cnn")]
    # VGG-16 at 224: 1.85e9 MACs and 3.2e6 output elements in one conv; the cnn family's median
    # net is far from that, the wide family's is not
    assert np.median([m for m, _ in wide_convs]) > 2e8 > np.median([m for m, _ in cnn_convs])
    assert np.median([e for _, e in wide_convs]) > 1e6


def test_cnn_wide_honours_a_small_macs_cap():
    from sniper_generator.cnn import estimate_macs

    assert all(estimate_macs(s.config) <= 2 * SMALL for s in sample_specs(10, seed=2024, family="cnn-wide", max_macs=SMALL))


def test_nasbench201_honours_max_macs_and_refuses_a_cap_no_net_meets():
    from sniper_onnx import analyze

    specs = sample_specs(12, seed=9, family="nasbench201", max_macs=3e7)
    assert len({s.config["arch"] for s in specs}) > 1
    for spec in specs[:4]:
        assert analyze(materialize(spec, weights=False)).features["total_macs"] <= 3e7, spec.config["arch"]
    # a cap every net meets draws what an uncapped run draws
    assert sample_specs(5, seed=9, family="nasbench201", max_macs=1e9) == sample_specs(5, seed=9, family="nasbench201")
    with pytest.raises(SniperError, match="smallest NAS-Bench-201 net .* has 7,910,016 MACs; use --max-macs 7910016"):
        sample_specs(1, seed=9, family="nasbench201", max_macs=5e6)



# The reference dataset measured these families' first nets of seed 2026 (data/reference/README.md);
# their specs may never change under the same generator version.
MEASURED_FIRST_IDS = {
    "cnn-strided": ["cnn-strided-a50a325f4455", "cnn-strided-b0153d5461da", "cnn-strided-8a6380a787f7"],
    "cnn-wide": ["cnn-wide-97798fb00846", "cnn-wide-61a89f0f5282", "cnn-wide-c0b2adfc1f0f"],
    "transformer-torch": ["transformer-torch-1f3b6515766e", "transformer-torch-453af541b34a",
                          "transformer-torch-246e53842582"],
    "tiny": ["tiny-d1a538b2b4f7", "tiny-aca4e93a3d01", "tiny-49c4f995e048"],
}


@pytest.mark.parametrize("family", sorted(MEASURED_FIRST_IDS))
def test_the_measured_families_sample_the_measured_nets(family):
    assert [s.net_id for s in sample_specs(3, 2026, family)] == MEASURED_FIRST_IDS[family], BUMP


def test_transformer_torch_nets_are_built_as_torch_exports_them():
    spec = sample_specs(1, 0, "transformer-torch", max_macs=5e6)[0]
    net = materialize(spec)
    assert hashlib.sha256(net.SerializeToString()).hexdigest() == (
        "5a89e082e74842d1a7d081c332b2b41d31c80989063abd18913cdfcd5901d485"), BUMP
    ops = {n.op_type for n in net.graph.node}
    assert "MatMul" in ops and "LayerNormalization" in ops
    # tokens stay 3-D: every linear layer but the head is a MatMul by a [in, out] weight
    weights = {t.name: list(t.dims) for t in net.graph.initializer}
    by_weight = [n for n in net.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    assert by_weight and all(len(weights[n.input[1]]) == 2 for n in by_weight)
    assert [n.op_type for n in net.graph.node].count("Gemm") == len(spec.config["fc"])


def test_tiny_nets_have_1_to_8_layers_under_1e6_gemm_macs_and_every_kind():
    from sniper_generator.tiny import KINDS, TINY_MAX_MACS, elementwise_macs, estimate_tiny_size
    from sniper_onnx import analyze

    specs = sample_specs(40, 2026, "tiny")
    assert {s.config["kind"] for s in specs} == set(KINDS)
    for spec in specs:
        features = analyze(materialize(spec, weights=False)).features
        gemm_macs = estimate_tiny_size(spec.config)[0]
        assert gemm_macs <= TINY_MAX_MACS, spec.net_id
        # the sampler's count of what the analyzer adds for elementwise layers (what --max-macs caps)
        assert features["total_macs"] == pytest.approx(gemm_macs + elementwise_macs(spec.config), rel=0.05), spec.net_id
        assert 1 <= spec.config["layers"] <= 8
        assert features["num_layers"] <= 3 * 8 + 3  # a SiLU is two nodes; the conv kind adds its head


def test_tiny_nets_honour_a_cap_below_the_other_families_floor():
    from sniper_onnx import analyze

    for spec in sample_specs(8, 3, "tiny", max_macs=1e4):
        assert analyze(materialize(spec, weights=False)).features["total_macs"] <= 1.1e4, spec.net_id
    for cap in (999, -1):
        with pytest.raises(SniperError, match="use 1000 or more"):
            sample_specs(1, 3, "tiny", max_macs=cap)
