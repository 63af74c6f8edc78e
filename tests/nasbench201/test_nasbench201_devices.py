"""The shipped device specs of the 19 HW-NAS-Bench configurations."""

from __future__ import annotations

from pathlib import Path

import pytest

import sniper_onnx
from sniper_profiler.device import DEVICE_FEATURE_NAMES, load_device_specs

SPEC_FILE = Path(sniper_onnx.__file__).parent / "data" / "hw_nasbench201_devices.json"
# the configurations of /work/shared/data/hw-nasbench201/devices.csv: (name, kind, batch)
EXPECTED = [
    *[(f"{gpu}_{b}", "desktop_gpu", b) for gpu in ("1080ti", "2080ti", "titanx", "titanxp") for b in (1, 32, 256)],
    ("silver_4114", "desktop_cpu", 1), ("silver_4210r", "desktop_cpu", 1), ("gold_6240", "desktop_cpu", 1),
    ("pixel3", "mobile", 1), ("essential_ph_1", "mobile", 1), ("samsung_a50", "mobile", 1), ("samsung_s7", "mobile", 1),
]


@pytest.fixture(scope="module")
def specs():
    return {spec.name: spec for spec in load_device_specs(SPEC_FILE)}


def test_every_configuration_has_a_spec(specs) -> None:
    assert sorted((s.name, s.kind, s.batch_size) for s in specs.values()) == sorted(EXPECTED)
    for spec in specs.values():
        assert len(spec.features()) == len(DEVICE_FEATURE_NAMES)
        assert spec.description


def test_derived_facts_follow_their_formulas(specs) -> None:
    for name in ("1080ti_1", "2080ti_32", "titanxp_256"):
        spec = specs[name]  # fp32 peak = CUDA cores x 2 (FMA) x boost clock
        assert spec.peak_gflops == pytest.approx(spec.compute_units * 2 * spec.clock_ghz, abs=0.1)
    # AVX-512: 16 fp32 lanes x 2 (FMA) x FMA units (1 on Silver, 2 on Gold 6240) x cores x base clock
    assert specs["silver_4114"].peak_gflops == pytest.approx(10 * 1 * 16 * 2 * 2.2)
    assert specs["gold_6240"].peak_gflops == pytest.approx(18 * 2 * 16 * 2 * 2.6)
    # batch variants of one card share every hardware fact
    for gpu in ("1080ti", "2080ti", "titanx", "titanxp"):
        facts = {repr([v for k, v in specs[f"{gpu}_{b}"].to_dict().items() if k not in ("name", "batch_size", "description")])
                 for b in (1, 32, 256)}
        assert len(facts) == 1


def test_unknown_facts_are_null_not_guessed(specs) -> None:
    # the source names no TITAN X generation and no Galaxy S7 SoC variant
    for name in ("titanx_1", "titanx_32", "titanx_256"):
        assert {"compute_units", "clock_ghz", "memory_bandwidth_gbs", "peak_gflops"} <= set(specs[name].unknown)
        assert specs[name].memory_gb == 12  # both generations have 12 GB
    assert {"compute_units", "clock_ghz", "memory_bandwidth_gbs"} <= set(specs["samsung_s7"].unknown)
    for spec in specs.values():
        assert all(getattr(spec, fact) is None for fact in spec.unknown)
