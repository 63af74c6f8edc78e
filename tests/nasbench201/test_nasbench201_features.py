"""The analyzer on NAS-Bench-201 networks, and the committed feature table."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest

from sniper_generator.nasbench201 import NUM_ARCHS, build_nasbench201, load_feature_table, parse_arch
from sniper_onnx import analyze
from sniper_onnx.analysis import FEATURE_NAMES
from sniper_onnx.errors import SniperError

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
WIDE_FIXTURE = Path(__file__).parent / "fixtures" / "hw_latency_wide.csv"


@pytest.mark.parametrize(
    "arch, expected",
    [
        # hand counts in test_nasbench201_builder.py: conv MACs 7,782,400 + 90 * 2,359,296; conv weights
        # 432 + (4,608 + 9,216 + 512) + (18,432 + 36,864 + 2,048) + 30 * (2,304 + 9,216 + 36,864) = 1,523,632;
        # 3x3 convs: 90 in cells + stem + 2 per reduction = 95; 1x1: the 2 shortcuts;
        # adds: 3 per cell (node 2: 1, node 3: 2) + 2 reductions = 47; avgpools: 2 shortcuts + the global pool
        (ALL_CONV3, {"conv_macs": 220_119_040, "fc_macs": 640, "conv_params": 1_523_632, "fc_params": 650,
                     "num_conv3x3": 95, "num_conv1x1": 2, "num_add": 47, "num_avgpool": 3, "num_fc": 1}),
        # the shared skeleton alone: 442,368 + 2 * 3,670,016 MACs; 432 + 14,336 + 57,344 conv weights
        (ALL_NONE, {"conv_macs": 7_782_400, "fc_macs": 640, "conv_params": 72_112, "fc_params": 650,
                    "num_conv3x3": 5, "num_conv1x1": 2, "num_add": 2, "num_avgpool": 3, "max_branches": 2}),
    ],
)
def test_analyzer_agrees_with_hand_counts(arch: str, expected: dict) -> None:
    features = analyze(build_nasbench201(arch, weights=False)).features
    assert {name: features[name] for name in expected} == expected


def test_feature_table_is_complete_and_matches_the_analyzer() -> None:
    archs, matrix, names = load_feature_table()
    assert names == tuple(FEATURE_NAMES)
    assert matrix.shape == (NUM_ARCHS, len(FEATURE_NAMES)) and len(set(archs)) == NUM_ARCHS
    assert np.all(np.isfinite(matrix))
    for arch in archs[:: NUM_ARCHS // 3]:
        parse_arch(arch)
    # rows follow NAS-Bench-201's arch_index, as in the HW-NAS-Bench table (its first rows are the fixture's)
    with WIDE_FIXTURE.open() as handle:
        fixture = [row for row in csv.DictReader(handle)][:2]
    assert [archs[int(row["arch_index"])] for row in fixture] == [row["arch"] for row in fixture]
    for index in random.Random(7).sample(range(NUM_ARCHS), 2):
        fresh = analyze(build_nasbench201(archs[index], weights=False)).features
        assert matrix[index] == pytest.approx([fresh[name] for name in names], rel=1e-12)


def test_missing_feature_table_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(SniperError, match="bench_nasbench201_features.py"):
        load_feature_table(tmp_path / "absent.csv.gz")


def test_regeneration_script_writes_the_same_rows(tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_nasbench201_features.py"
    spec = importlib.util.spec_from_file_location("bench_nasbench201_features", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = tmp_path / "features.csv.gz"
    assert module.main(["--limit", "3", "--output", str(output)]) == 0
    archs, matrix, names = load_feature_table(output)
    committed_archs, committed, committed_names = load_feature_table()
    assert names == committed_names and archs == committed_archs[:3]
    assert matrix == pytest.approx(committed[:3], rel=1e-12)
