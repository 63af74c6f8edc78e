"""HW-NAS-Bench few-shot benchmark with HELP's split, and the build of the shipped predictor.

    python benchmarks/bench_hw_nasbench201.py            # HELP split: meta_train -> meta_valid, 10 reference archs
    python benchmarks/bench_hw_nasbench201.py --ship --pcn-linear 0   # retrain sniper_onnx/data/pcn_hw_nasbench201.onnx
    python benchmarks/bench_hw_nasbench201.py --pcn-linear 0          # the HELP split with the shipped file's PCN
    python benchmarks/bench_hw_nasbench201.py --held-out-archs [--seed 1]
        # issue 5 point 8 on real hardware: all 19 devices trained on 80 % of the archs, the other 20 % predicted
    python benchmarks/bench_hw_nasbench201.py --kind-left-out desktop_gpu [--tables 1000 --draws 3]
        # issue 5 point 9 with a whole kind unseen: train on the other kinds (PCN + kernel sum), adapt
        # every column of that kind from 10 archs, and score each candidate adapt weighs

The benchmark is exactly `sniper-onnx bench hw-nasbench201` with the split read from devices.csv;
results go to docs/hw-nasbench201.md by hand, with the command and date.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

DATA = Path("/work/shared/data/hw-nasbench201")
ROOT = Path(__file__).resolve().parents[1]


def split(devices_csv: Path, name: str) -> list[str]:
    with open(devices_csv, newline="") as handle:
        return [row["device"] for row in csv.DictReader(handle) if row["help_split"] == name]


def kind_left_out(table_path: Path, devices_csv: Path, kind: str, table_count: int, draws: int, epochs: int,
                  seed: int) -> dict:
    """Point 9 where no trained device shares the new device's kind (as the reference dataset's
    H200, adapted from three CPU configurations): the PCN and a kernel sum are trained on every
    other kind, then each column of ``kind`` is adapted from 10 archs. For every draw, what
    ``adapt`` chose, the roofline candidate and the PCN's best candidate by leave-one-out, each
    scored on archs never sampled."""
    import numpy as np

    from sniper_generator.nasbench201 import build_nasbench201
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import kernel_table
    from sniper_onnx.predictors import hwnas
    from sniper_onnx.predictors.adapt import adaptation_candidates
    from sniper_onnx.predictors.kernelnet import KernelNetConfig
    from sniper_onnx.predictors.metrics import accuracy_metrics
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.training import train_predictor

    with open(devices_csv, newline="") as handle:
        kinds = {row["device"]: row["kind"] for row in csv.DictReader(handle)}
    new, trained = [d for d, k in kinds.items() if k == kind], [d for d, k in kinds.items() if k != kind]
    if not new:
        raise SystemExit(f"--kind-left-out {kind!r}: no device of that kind; kinds: {sorted(set(kinds.values()))}")
    table = hwnas.load_latency_table(table_path)
    features, names, _ = hwnas.network_features(table.archs)
    vectors = hwnas.device_features(list(kinds), devices_csv)
    with_tables = np.random.default_rng(7).choice(len(table.archs), table_count, replace=False)
    tables = [None] * len(table.archs)  # the kernel sum trains on the archs that have one
    for i in with_tables:
        tables[i] = kernel_table(analyze(build_nasbench201(table.archs[i], weights=False)).nodes)
    data = hwnas.training_data(table, trained, features, names, vectors)
    predictor, _ = train_predictor(data, PCNConfig(epochs=epochs, seed=seed), seed=seed,
                                   kernel_config=KernelNetConfig(seed=seed), kernel_tables=tables)
    per_arch = [dict(zip(names, row)) for row in features]
    sample_pool, scored = with_tables[: table_count // 2], with_tables[table_count // 2:]
    results = []
    for device in new:
        seconds = table.column(device) / 1000.0
        for draw in range(draws):
            picked = np.random.default_rng(1000 + draw).choice(sample_pool, 10, replace=False)
            candidates = []
            for prior, score, adapted in adaptation_candidates(
                    predictor, device, [per_arch[i] for i in picked], seconds[picked], spec_features=vectors[device],
                    kernel_tables=[tables[i] for i in picked]):
                answer = adapted.predict([per_arch[i] for i in scored], [device], kernel_tables=[tables[i] for i in scored])
                metrics = accuracy_metrics(answer.seconds(), seconds[scored])
                candidates.append({"prior": prior, "loo_rmse_log": score, "mape_pct": metrics["mape_pct"],
                                   "spearman": metrics["spearman"]})
            pcn = [c for c in candidates if not c["prior"].startswith("roofline")]
            results.append({"device": device, "draw": draw, "chosen": min(candidates, key=lambda c: c["loo_rmse_log"]),
                            "roofline": next(c for c in candidates if c["prior"].startswith("roofline")),
                            "pcn_best": min(pcn, key=lambda c: c["loo_rmse_log"])})

    def summary(key: str) -> dict:
        return {metric: float(np.median([r[key][metric] for r in results])) for metric in ("mape_pct", "spearman")}

    return {"kind_left_out": kind, "trained_on": trained, "adapted": new, "samples": 10, "draws": draws,
            "scored_archs": int(len(scored)), "median": {key: summary(key) for key in ("chosen", "roofline", "pcn_best")},
            "chosen_roofline": sum(r["chosen"]["prior"].startswith("roofline") for r in results), "runs": results}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pcn-linear", type=int, default=None, metavar="L",
                        help="PCNConfig.linear for the HELP split and --ship (0: the paper's PCN, as shipped; default: the current default)")
    parser.add_argument("--ship", action="store_true", help="train on all 19 columns and write the shipped predictor")
    parser.add_argument("--held-out-archs", action="store_true",
                        help="train on 80 %% of the archs on every device, report the other 20 %% (issue 5, point 8)")
    parser.add_argument("--kind-left-out", default=None, metavar="KIND",
                        help="train on the devices of every other kind, adapt each KIND column from 10 archs")
    parser.add_argument("--tables", type=int, default=1000,
                        help="with --kind-left-out: archs given kernel tables (half to draw samples from, half to score)")
    parser.add_argument("--draws", type=int, default=3, help="with --kind-left-out: draws of the 10 samples per device")
    args = parser.parse_args()
    table, devices = args.data / "latency_ms.csv.gz", args.data / "devices.csv"
    start = time.time()
    if args.kind_left_out:
        report = kind_left_out(table, devices, args.kind_left_out, args.tables, args.draws, args.epochs, args.seed)
        print(json.dumps({"seconds": round(time.time() - start), **report}, indent=1, default=float))
        return 0
    if args.held_out_archs:
        from sniper_onnx.predictors.hwnas import held_out_archs_accuracy

        report = held_out_archs_accuracy(table, devices, epochs=args.epochs, seed=args.seed)
        print(json.dumps({"seconds": round(time.time() - start), **report.to_json_dict()}, indent=1, default=float))
        return 0
    if args.ship:
        from sniper_onnx.predictors.hwnas import train_shipped_predictor

        out = ROOT / "sniper_onnx" / "data" / "pcn_hw_nasbench201.onnx"
        report = train_shipped_predictor(table, devices, out, epochs=args.epochs, seed=args.seed, pcn_linear=args.pcn_linear,
                                         progress=lambda e, loss: print(f"epoch {e + 1}: log-MSE {loss:.4f}", flush=True))
        print(json.dumps({"output": str(out), "seconds": round(time.time() - start), **report.to_json_dict()}, indent=1, default=float))
        return 0
    from sniper_onnx.predictors.hwnas import run_benchmark

    report = run_benchmark(table, devices, split(devices, "meta_train"), split(devices, "meta_valid"), 10,
                           args.data / "reference_archs.txt", args.epochs, args.seed, progress=lambda m: print(m, flush=True),
                           pcn_linear=args.pcn_linear)
    print(json.dumps({"seconds": round(time.time() - start), **report.to_json_dict()}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
