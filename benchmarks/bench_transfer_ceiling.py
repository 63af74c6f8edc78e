"""How well can any rescaling of one device's times answer another? A ceiling for issue 5, point 9.

    python benchmarks/bench_transfer_ceiling.py --table data/reference/work/train.csv --device "t1 opt-disabled"
    python benchmarks/bench_transfer_ceiling.py --table T --device "t2 opt-all" --kernels [--predictor P.onnx]

Point 9 adapts a predictor to a left-out device from 10 of its measurements; on the reference
dataset every candidate `adapt` weighs rescales a trained device's times (its kernel sum, node by
node or as a whole). This asks what the best such rescaling could reach, with its parameters
fitted to *all* of the device's random nets (a ceiling no user could reach with 10 samples), and
what the same family reaches from 10 samples (median of 10 seeded draws, scored on the rest).

1. Measured to measured, no model: the other device's *measured* time of the same net, times the
   best constant, or raised to the best power (a log-log line). If the measured times of a sibling
   configuration cannot predict the device to 15 %, no rescaling of a model of them can.
2. ``--kernels``: the kernel sum of a predictor trained without the device (``--predictor``, or
   trained here as ``bench_predictor.py --new-device`` trains it), split into families with
   non-negative rates: the whole sum; plus a cost per node; heavy (Conv, Gemm, MatMul) and light
   nodes apart; plus the light nodes' bytes moved.

Scores are MAPE on the device's random nets (and the zoo for the kernel families). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
HEAVY_GROUPS = ("conv", "depthwise_conv", "grouped_conv", "gemm", "matmul")
# columns of _kernel_columns: which of them each family rescales
FAMILIES = {"whole sum": [0], "sum + per node": [0, 5], "heavy + light": [1, 2], "heavy + light + per node": [1, 2, 5],
            "heavy + light bytes + per node": [1, 4, 5], "heavy + light + light bytes + per node": [1, 2, 4, 5]}
DRAWS, SAMPLES = 10, 10


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(100 * np.mean(np.abs(predicted / measured - 1)))


def _load(table: str):
    from bench_predictor import GENERATED_PREFIXES, _network_names

    from sniper_onnx.predictors.dataset import load_training_csv

    data = load_training_csv(table)
    names = _network_names(table)
    generated = np.array([names.get(key, key).startswith(GENERATED_PREFIXES) for key in data.network_names])
    return data, generated


def _latencies(data, device: int) -> Dict[int, float]:
    rows = data.device_rows(device)
    return dict(zip(data.pair_network[rows].tolist(), data.seconds[rows].tolist()))


def measured_transfer(data, generated: np.ndarray, source: int, target: int) -> dict:
    """The target's random nets from the source's measured times: best constant and best power law."""
    have, want = _latencies(data, source), _latencies(data, target)
    common = [n for n in want if n in have and generated[n]]
    x, y = np.log([have[n] for n in common]), np.log([want[n] for n in common])
    constant = np.exp(x + np.median(y - x))
    slope, intercept = np.polyfit(x, y, 1)
    return {"source": data.device_names[source], "nets": len(common), "best_constant_mape_pct": _mape(constant, np.exp(y)),
            "best_power_law_mape_pct": _mape(np.exp(slope * x + intercept), np.exp(y)), "power": float(slope)}


def _kernel_columns(predictor, reference: str, tables: List[np.ndarray], nets: np.ndarray) -> np.ndarray:
    """[nets, 6]: the reference's kernel sum (a call's cost included, as the graph adds it); its heavy
    and light nodes' times; heavy MACs; light bytes; nodes."""
    from sniper_onnx.analysis.kernels import KERNEL_GROUPS
    from sniper_onnx.predictors import graph as G
    from sniper_onnx.predictors.kernelnet import call_log_seconds_numpy, node_log_seconds_numpy, roofline_work
    from sniper_onnx.predictors.runtime import params_of

    params, heavy = params_of(predictor), [KERNEL_GROUPS.index(g) for g in HEAVY_GROUPS]
    vector = np.asarray(predictor.device_table[reference][:-1], dtype=np.float64)
    columns = np.zeros((len(nets), 6))
    call = float(np.exp(call_log_seconds_numpy(params, vector)))
    for i, net in enumerate(nets):
        distinct = G.distinct_rows(tables[net])
        rows, counts = distinct.rows.astype(np.float64), distinct.counts.astype(np.float64)
        seconds = np.exp(node_log_seconds_numpy(params, rows, vector)) * counts
        work = roofline_work(rows) * counts[:, None]
        is_heavy = rows[:, heavy].sum(1) > 0.5
        columns[i] = [seconds.sum() + call, seconds[is_heavy].sum(), seconds[~is_heavy].sum(), work[is_heavy, 0].sum(),
                      work[~is_heavy, 1].sum(), work[:, 2].sum()]
    return columns


def kernel_transfer(predictor, data, generated: np.ndarray, tables, target: int) -> List[dict]:
    """Each rescaling family of each trained reference answered by its kernel sum: fitted to all random nets, and to 10."""
    from sniper_onnx.predictors.adapt import nonnegative_rates

    rows = data.device_rows(target)
    random_rows, zoo_rows = rows[generated[data.pair_network[rows]]], rows[~generated[data.pair_network[rows]]]
    results = []
    for reference, vector in predictor.device_table.items():
        if vector[-1] != 0 or predictor.kernel_path.get("devices", {}).get(reference, {}).get("path") != "kernels":
            continue
        random_x = _kernel_columns(predictor, reference, tables, data.pair_network[random_rows])
        zoo_x = _kernel_columns(predictor, reference, tables, data.pair_network[zoo_rows])
        y, zoo_y = data.seconds[random_rows], data.seconds[zoo_rows]
        for family, columns in FAMILIES.items():
            rates = nonnegative_rates(random_x[:, columns], y)
            few = []
            for draw in range(DRAWS):
                picked = np.random.default_rng(1000 + draw).choice(len(y), SAMPLES, replace=False)
                rest = np.setdiff1d(np.arange(len(y)), picked)
                few_rates = nonnegative_rates(random_x[picked][:, columns], y[picked])
                few.append(_mape(random_x[rest][:, columns] @ few_rates, y[rest]))
            results.append({"reference": reference, "family": family,
                            "all_nets_random_mape_pct": _mape(random_x[:, columns] @ rates, y),
                            "all_nets_zoo_mape_pct": _mape(zoo_x[:, columns] @ rates, zoo_y),
                            "ten_samples_random_mape_pct": float(np.median(few))})
    return results


def _predictor_without(data, generated, target: int, seed: int, path: Optional[str]):
    from bench_predictor import _without_device

    from sniper_onnx.predictors.kernel_sources import kernel_tables_for
    from sniper_onnx.predictors.kernelnet import KernelNetConfig
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.runtime import load_predictor
    from sniper_onnx.predictors.training import train_predictor

    tables, _ = kernel_tables_for(data.network_sources)
    if path and Path(path).exists():
        return load_predictor(path), tables
    train = _without_device(data, target, generated[data.pair_network])
    predictor, _ = train_predictor(train, PCNConfig(epochs=60, seed=seed), seed=seed,
                                   kernel_config=KernelNetConfig(seed=seed), kernel_tables=tables)
    return predictor, tables


def main() -> None:
    from bench_predictor import _device_index

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--device", required=True, help="the left-out device: its name or a unique part of it")
    parser.add_argument("--kernels", action="store_true", help="also the kernel-sum families (trains a predictor)")
    parser.add_argument("--predictor", default=None,
                        help="with --kernels: a predictor trained without the device (trained here when missing)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data, generated = _load(args.table)
    target = _device_index(data, args.device)
    report = {"device": data.device_names[target],
              "measured": [measured_transfer(data, generated, source, target)
                           for source in range(len(data.device_names)) if source != target]}
    if args.kernels:
        predictor, tables = _predictor_without(data, generated, target, args.seed, args.predictor)
        if args.predictor and not Path(args.predictor).exists():
            from sniper_onnx.predictors.runtime import save_predictor

            save_predictor(predictor, args.predictor)
        if data.device_names[target] in predictor.device_table:
            raise SystemExit(f"--predictor {args.predictor}: it knows {data.device_names[target]!r}; "
                             "give one trained without it")
        report["kernels"] = kernel_transfer(predictor, data, generated, tables, target)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
