"""Small synthetic latency data: latency is a known function of a few features, per device."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

FEATURES = ["total_macs", "total_params", "num_layers", "num_conv3x3", "num_conv1x1", "critical_path_layers"]
# seconds = (macs / (gflops * 1e9) + layers * launch_s) * jitter: compute- and launch-bound devices
DEVICES = {
    "fast_gpu": dict(kind="desktop_gpu", gflops=400.0, launch=4e-5, compute_units=2048, clock_ghz=1.5),
    "slow_cpu": dict(kind="desktop_cpu", gflops=20.0, launch=5e-6, compute_units=4, clock_ghz=2.5),
    "phone": dict(kind="mobile", gflops=8.0, launch=2e-5, compute_units=8, clock_ghz=2.0),
    "board": dict(kind="embedded_gpu", gflops=60.0, launch=1e-4, compute_units=256, clock_ghz=1.1),
}
HELD_OUT = dict(kind="embedded_cpu", gflops=4.0, launch=1.5e-4, compute_units=4, clock_ghz=1.5)


def synthetic_networks(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    conv3 = rng.integers(2, 60, count)
    conv1 = rng.integers(0, 40, count)
    layers = conv3 + conv1 + rng.integers(2, 30, count)
    macs = conv3 * rng.uniform(2e6, 4e7, count) + conv1 * rng.uniform(1e5, 5e6, count)
    params = macs / rng.uniform(50, 500, count)
    critical = (layers * rng.uniform(0.5, 1.0, count)).round()
    return np.column_stack([macs, params, layers, conv3, conv1, critical])


def device_spec(name: str, facts: dict):
    from sniper_profiler.device import DeviceSpec

    return DeviceSpec(name=name, kind=facts["kind"], compute_units=facts["compute_units"], clock_ghz=facts["clock_ghz"],
                      peak_gflops=facts["gflops"])


def latency(nets: np.ndarray, facts: dict, seed: int) -> np.ndarray:
    jitter = np.random.default_rng(seed).lognormal(0.0, 0.02, len(nets))
    return (nets[:, 0] / (facts["gflops"] * 1e9) + nets[:, 2] * facts["launch"]) * jitter


def write_table(path: Path, nets: np.ndarray, devices: dict, seed: int = 0) -> Path:
    from sniper_profiler.device import DEVICE_FEATURE_NAMES

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["network_id", "device_name", *FEATURES, *(f"device_{n}" for n in DEVICE_FEATURE_NAMES), "latency_s"])
        for d, (name, facts) in enumerate(devices.items()):
            seconds = latency(nets, facts, seed + d)
            vector = device_spec(name, facts).features()
            for i, row in enumerate(nets):
                writer.writerow([f"net{i}", name, *row.tolist(), *vector, repr(float(seconds[i]))])
    return path


def fed_back_twice(predictor, names):
    """``predictor`` fed back on two devices (phone, board): correction slots 1 and 2."""
    from sniper_onnx.predictors.adapt import adapt_predictor

    nets = synthetic_networks(6, 71)
    features = [dict(zip(names, row)) for row in nets]
    for device in ("phone", "board"):
        predictor, _ = adapt_predictor(predictor, device, features, latency(nets, DEVICES[device], 3) * 1.5,
                                       solve_embedding=False, trimmer_top_k=0)
    assert predictor.correction_slots == 2 and sorted(v[-1] for v in predictor.device_table.values())[-2:] == [1.0, 2.0]
    return predictor


def ridge_answering(predictor, device, **changes):
    """``predictor`` with its Structure Checker sending everything to a ``device`` ridge changed by ``changes``."""
    import copy

    from sniper_onnx.predictors.runtime import build_predictor, params_of

    meta = copy.deepcopy(predictor.meta)
    meta["structure_checker"]["threshold"] = 1e30
    meta["regression"][device].update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta["regression"][device][key]
    return build_predictor(params_of(predictor), meta)


def write_json_samples(folder: Path, names, nets: np.ndarray, seconds) -> Path:
    """A samples CSV (network, latency_ms) whose networks are `analyze --json`-like files s{i}.json
    holding each row of ``nets`` as features named ``names``."""
    import json

    samples = folder / "samples.csv"
    with open(samples, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["network", "latency_ms"])
        for i, row in enumerate(nets):
            (folder / f"s{i}.json").write_text(json.dumps({"features": dict(zip(names, row.tolist()))}))
            writer.writerow([f"s{i}.json", seconds[i] * 1e3])
    return samples
