"""Does the Time Trimmer (`sniper-onnx feedback`) help on networks it was not fitted to?

    python benchmarks/bench_predictor.py --table data/reference/work/train.csv --seed 0 --save-predictor split0.onnx
    python benchmarks/bench_time_trimmer.py --table data/reference/work/train.csv --predictor split0.onnx

`feedback` fits a correction of the residual log(measured / predicted) on a few new measurements:
a constant, or a ridge fit on the top-k network features by Pearson r, k picked on the samples.
Here the predictor was trained on 80 % of the random nets (`bench_predictor.py`'s split), and for
each device it knows, each draw takes 10 of the held-out random nets as the feedback samples and
scores the corrected predictor on the other held-out random nets. Labels are multiplied by a drift
(1.0: the device as it was; 1.3: it got 30 % slower, what feedback is for). Two ways to pick k:
the lowest leave-one-out error (until 2026-11-30), and the simplest k within one standard error of
the lowest (`adapt.simplest_within_one_se`). Medians over the draws of held-out MAPE %, beside the
uncorrected predictor. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(100 * np.mean(np.abs(predicted / measured - 1)))


def _held_out_random(table: str):
    from bench_predictor import GENERATED_PREFIXES, _held_out_by_name, _network_names

    from sniper_onnx.predictors.dataset import load_training_csv

    data = load_training_csv(table)
    names = _network_names(table)
    chosen = np.array([names.get(key, key).startswith(GENERATED_PREFIXES) and _held_out_by_name(names.get(key, key))
                       for key in data.network_names])
    return data, chosen


def _rules():
    from sniper_onnx.predictors import adapt

    one_se = adapt.simplest_within_one_se
    return {"lowest leave-one-out": lambda choices: min(choices, key=lambda c: c.score), "one standard error": one_se}


def trimmer_accuracy(table: str, predictor_path: str, draws: int, samples: int, drifts, seed: int) -> dict:
    from sniper_onnx.predictors import adapt
    from sniper_onnx.predictors.kernel_sources import kernel_tables_for
    from sniper_onnx.predictors.runtime import load_predictor

    data, chosen = _held_out_random(table)
    predictor = load_predictor(predictor_path)
    tables, _ = kernel_tables_for(data.network_sources)
    names = list(predictor.network_feature_names)
    index = [data.network_feature_names.index(n) for n in names]
    report: dict = {"predictor": predictor_path, "draws": draws, "samples": samples, "devices": {}}
    rules = _rules()
    for d, device in enumerate(data.device_names):
        rows = [r for r in data.device_rows(d) if chosen[data.pair_network[r]] and tables[data.pair_network[r]] is not None]
        nets = data.pair_network[rows]
        features = [dict(zip(names, data.network_matrix[n, index])) for n in nets]
        kernels = [tables[n] for n in nets]
        base = predictor.predict(features, [device], kernel_tables=kernels).seconds()
        per_drift = {}
        for drift in drifts:
            measured = data.seconds[rows] * drift
            scores = {"uncorrected": [], **{rule: [] for rule in rules}}
            rng = np.random.default_rng(seed)
            for _ in range(draws):
                picked = rng.choice(len(rows), samples, replace=False)
                rest = np.setdiff1d(np.arange(len(rows)), picked)
                scores["uncorrected"].append(_mape(base[rest], measured[rest]))
                for rule, choose in rules.items():
                    adapt.simplest_within_one_se = choose  # the only difference between the two runs
                    try:
                        corrected, _ = adapt.adapt_predictor(
                            predictor, device, [features[i] for i in picked], list(measured[picked]),
                            solve_embedding=False, sample_names=[str(nets[i]) for i in picked],
                            kernel_tables=[kernels[i] for i in picked])
                    finally:
                        adapt.simplest_within_one_se = rules["one standard error"]
                    answer = corrected.predict([features[i] for i in rest], [device],
                                               kernel_tables=[kernels[i] for i in rest]).seconds()
                    scores[rule].append(_mape(answer, measured[rest]))
            per_drift[str(drift)] = {key: {"median_mape_pct": float(np.median(v)), "worst_mape_pct": float(np.max(v))}
                                     for key, v in scores.items()}
        report["devices"][device] = {"held_out_nets": len(rows), "drift": per_drift}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--predictor", required=True, help="trained on bench_predictor.py's split (--save-predictor)")
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--drifts", default="1.0,1.3")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    drifts = [float(x) for x in args.drifts.split(",")]
    print(json.dumps(trimmer_accuracy(args.table, args.predictor, args.draws, args.samples, drifts, args.seed), indent=1))


if __name__ == "__main__":
    main()
