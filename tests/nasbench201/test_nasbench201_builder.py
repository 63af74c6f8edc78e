"""The NAS-Bench-201 builder against hand-counted parameter and MAC totals.

Hand counts, for batch 1 at 32x32 with the CIFAR-10 head (10 classes). A cell conv keeps its
channel count C and its H x W, so per conv:
  nor_conv_3x3: params C*C*9, MACs C*C*9*H*W;  nor_conv_1x1: params C*C, MACs C*C*H*W;
  stage 1 (C=16, 32x32): 3x3 -> 2,304 params, 2,359,296 MACs; 1x1 -> 256 params, 262,144 MACs
  stage 2 (C=32, 16x16): 3x3 -> 9,216 params, 2,359,296 MACs; 1x1 -> 1,024 params, 262,144 MACs
  stage 3 (C=64,  8x8 ): 3x3 -> 36,864 params, 2,359,296 MACs; 1x1 -> 4,096 params, 262,144 MACs
  each cell conv is followed by a BN with 2*C trainable params (gamma, beta).
Skeleton shared by every arch:
  stem conv 3->16 3x3 at 32x32: 432 params, 16*3*9*1024 = 442,368 MACs; BN 32 params
  reduce1 16->32: conv_a 32*16*9 = 4,608 params, *16*16 -> 1,179,648 MACs; BN 64;
                  conv_b 32*32*9 = 9,216 params, 2,359,296 MACs; BN 64;
                  shortcut conv1x1 32*16 = 512 params, *16*16 -> 131,072 MACs   => 14,464 params, 3,670,016 MACs
  reduce2 32->64: 18,432 + 128 + 36,864 + 128 + 2,048 = 57,600 params; 1,179,648 + 2,359,296 + 131,072 = 3,670,016 MACs
  head BN 128 params; FC 64*10 + 10 = 650 params, 640 MACs
  => 464 + 14,464 + 57,600 + 128 + 650 = 73,306 params; 442,368 + 2 * 3,670,016 = 7,782,400 conv MACs
All nor_conv_3x3 (6 per cell, 5 cells per stage):
  params 73,306 + 30 * (2,304 + 32) + 30 * (9,216 + 64) + 30 * (36,864 + 128) = 1,531,546
  conv MACs 7,782,400 + 90 * 2,359,296 = 220,119,040
These agree with the extremes NAS-Bench-201 reports (about 0.073 M / 1.53 M params, 7.78 / 220.11 MFLOPs).
"""

from __future__ import annotations

import random

import numpy as np
import onnx
import pytest

from sniper_generator.nasbench201 import (
    ALL_OPS,
    NUM_ARCHS,
    all_archs,
    arch_to_ordinal,
    build_nasbench201,
    format_arch,
    ordinal_to_arch,
    parse_arch,
    random_arch,
    zero_nodes,
)
from sniper_onnx.errors import SniperError

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
MIXED = "|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
# node 1 is zero but read by a conv; node 2 is dead (nothing reads it); node 3 = avgpool(node 0)
ZERO_READ = "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|none~2|"

TRAINABLE_BN_INPUTS = (1, 2)  # scale, bias; mean and var are running statistics


def trainable_params(model: onnx.ModelProto) -> int:
    sizes = {init.name: int(np.prod(init.dims)) for init in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            total += sum(sizes[name] for name in node.input[1:])
        elif node.op_type == "BatchNormalization":
            total += sum(sizes[node.input[i]] for i in TRAINABLE_BN_INPUTS)
    return total


def conv_and_fc_macs(model: onnx.ModelProto) -> tuple[int, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in inferred.graph.value_info}
    shapes.update({vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in inferred.graph.output})
    dims = {init.name: list(init.dims) for init in model.graph.initializer}
    conv = fc = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            c_out, c_in, kh, kw = dims[node.input[1]]
            conv += int(np.prod(shapes[node.output[0]])) * c_in * kh * kw
        elif node.op_type == "Gemm":
            n_out, n_in = dims[node.input[1]]
            fc += int(np.prod(shapes[node.output[0]][:1])) * n_out * n_in
    return conv, fc


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.parametrize(
    "arch, params, conv_macs",
    [
        (ALL_NONE, 73_306, 7_782_400),
        (ALL_CONV3, 1_531_546, 220_119_040),
        # per cell one 1x1 and one 3x3 conv: +5*(256+32 + 2304+32) + 5*(1024+64 + 9216+64) + 5*(4096+128 + 36864+128)
        # params, and 15 * (262,144 + 2,359,296) MACs
        (MIXED, 73_306 + 13_120 + 51_840 + 206_080, 7_782_400 + 15 * (262_144 + 2_359_296)),
        # dead node 2 still costs (the reference PyTorch net runs it): one 3x3 + one 1x1 per cell, like MIXED
        (ZERO_READ, 73_306 + 13_120 + 51_840 + 206_080, 7_782_400 + 15 * (262_144 + 2_359_296)),
    ],
)
def test_hand_counted_params_and_macs(arch: str, params: int, conv_macs: int) -> None:
    model = build_nasbench201(arch, weights=False)
    assert trainable_params(model) == params
    assert conv_and_fc_macs(model) == (conv_macs, 640)


def test_none_edges_add_nothing_and_zero_cells_collapse() -> None:
    collapsed = op_counts(build_nasbench201(ALL_NONE, weights=False))
    # stem 1 conv + 3 per reduction block; every cell is one Mul(x, 0)
    assert collapsed == {
        "Conv": 7, "BatchNormalization": 6, "Relu": 5, "AveragePool": 2, "Add": 2, "Mul": 15,
        "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1,
    }
    zero_read = op_counts(build_nasbench201(ZERO_READ, weights=False))
    assert zero_read["Mul"] == 15  # the zero node 1, once per cell, read by the 1x1 conv
    assert zero_read["AveragePool"] == 2 + 15
    assert zero_read["Add"] == 2 + 15  # node 2 = conv3x3(node0) + conv1x1(node1)
    assert zero_nodes(parse_arch(ZERO_READ)) == [1]
    assert zero_nodes(parse_arch(ALL_NONE)) == [1, 2, 3]


def test_avg_pool_excludes_padding_and_shortcut_has_no_bn() -> None:
    model = build_nasbench201(MIXED, weights=False)
    pools = [node for node in model.graph.node if node.op_type == "AveragePool"]
    cell_pools = [node for node in pools if node.name.startswith("stage")]
    assert len(cell_pools) == 15
    for node in cell_pools:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["count_include_pad"] == 0 and attrs["pads"] == [1, 1, 1, 1] and attrs["strides"] == [1, 1]
    shortcut = [node.op_type for node in model.graph.node if "/shortcut/" in node.name and node.name.startswith("reduce1")]
    assert shortcut == ["AveragePool", "Conv"]


def test_weighted_model_checks_and_runs() -> None:
    ort = pytest.importorskip("onnxruntime")
    model = build_nasbench201(MIXED, batch=2, num_classes=7)
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    logits = session.run(None, {"input": x})[0]
    assert logits.shape == (2, 7)
    assert np.all(np.isfinite(logits)) and np.abs(logits).max() > 0
    # a collapsed cell outputs zeros, so the logits are exactly the (zero) FC bias
    collapsed = ort.InferenceSession(build_nasbench201(ALL_NONE).SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.all(collapsed.run(None, {"input": x[:1]})[0] == 0.0)


def test_skeleton_matches_weighted_structure() -> None:
    weighted, skeleton = build_nasbench201(MIXED), build_nasbench201(MIXED, weights=False)
    assert [(n.op_type, list(n.input)) for n in weighted.graph.node] == [(n.op_type, list(n.input)) for n in skeleton.graph.node]
    assert [list(i.dims) for i in weighted.graph.initializer] == [list(i.dims) for i in skeleton.graph.initializer]
    assert sum(len(i.raw_data) for i in skeleton.graph.initializer) <= 4  # only the zero scalar carries data


def test_weights_look_trained() -> None:
    model = build_nasbench201(MIXED, seed=3)
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    conv = weights["stage3/cell1/edge23/conv.weight"]  # 64 x 64 x 3 x 3, He: std sqrt(2 / 576)
    assert abs(conv.std() / np.sqrt(2 / 576) - 1) < 0.05
    assert np.all(weights["stage3/cell1/edge23/bn.var"] == 1) and np.all(weights["stage3/cell1/edge23/bn.mean"] == 0)
    assert build_nasbench201(MIXED, seed=3).SerializeToString() == model.SerializeToString()


def test_shapes_follow_arguments() -> None:
    model = build_nasbench201(ALL_CONV3, weights=False, resolution=64, batch=4, num_classes=100)
    dims = lambda vi: [d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert dims(model.graph.input[0]) == [4, 3, 64, 64] and dims(model.graph.output[0]) == [4, 100]
    assert model.opset_import[0].version == 17


def test_arch_helpers_round_trip() -> None:
    archs = list(all_archs())
    assert len(archs) == len(set(archs)) == NUM_ARCHS == 15_625
    assert [arch_to_ordinal(a) for a in archs[::311]] == list(range(0, NUM_ARCHS, 311))
    assert all(ordinal_to_arch(arch_to_ordinal(a)) == a for a in archs[::97])
    assert format_arch(parse_arch(MIXED)) == MIXED
    picks = {random_arch(random.Random(5)) for _ in range(3)}
    assert len(picks) == 1 and parse_arch(picks.pop())
    numpy_pick = random_arch(np.random.default_rng(5))
    assert set(parse_arch(numpy_pick)) <= set(ALL_OPS)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("", "3 node groups"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "must read node 0"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 inputs"),
    ],
)
def test_bad_arch_strings_say_what_to_do(bad: str, message: str) -> None:
    with pytest.raises(SniperError, match=message):
        build_nasbench201(bad)


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(SniperError, match="resolution 2"):
        build_nasbench201(ALL_NONE, resolution=2)
    with pytest.raises(SniperError, match="arch ordinal"):
        ordinal_to_arch(NUM_ARCHS)


def test_output_depends_on_input() -> None:
    from sniper_generator.nasbench201 import output_depends_on_input

    assert output_depends_on_input(MIXED) and output_depends_on_input(ZERO_READ)
    assert not output_depends_on_input(ALL_NONE)
    # node 3 reads only node 1, and node 1 reads nothing: a constant cell although node 3 is not zero
    assert not output_depends_on_input("|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    assert sum(not output_depends_on_input(a) for a in all_archs()) == 341


def test_resolution_must_survive_two_reductions() -> None:
    with pytest.raises(SniperError, match="multiple of 4"):
        build_nasbench201(ALL_NONE, resolution=30)
    assert build_nasbench201(ALL_NONE, weights=False, resolution=36).graph.input[0].type.tensor_type.shape.dim[2].dim_value == 36
