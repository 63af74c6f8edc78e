"""HW-NAS-Bench few-shot benchmark with HELP's split, and the build of the shipped predictor.

    python benchmarks/bench_hw_nasbench201.py            # HELP split: meta_train -> meta_valid, 10 reference archs
    python benchmarks/bench_hw_nasbench201.py --ship     # retrain sniper_onnx/data/pcn_hw_nasbench201.onnx
    python benchmarks/bench_hw_nasbench201.py --held-out-archs [--seed 1]
        # issue 5 point 8 on real hardware: all 19 devices trained on 80 % of the archs, the other 20 % predicted

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ship", action="store_true", help="train on all 19 columns and write the shipped predictor")
    parser.add_argument("--held-out-archs", action="store_true",
                        help="train on 80 %% of the archs on every device, report the other 20 %% (issue 5, point 8)")
    args = parser.parse_args()
    table, devices = args.data / "latency_ms.csv.gz", args.data / "devices.csv"
    start = time.time()
    if args.held_out_archs:
        from sniper_onnx.predictors.hwnas import held_out_archs_accuracy

        report = held_out_archs_accuracy(table, devices, epochs=args.epochs, seed=args.seed)
        print(json.dumps({"seconds": round(time.time() - start), **report.to_json_dict()}, indent=1, default=float))
        return 0
    if args.ship:
        from sniper_onnx.predictors.hwnas import train_shipped_predictor

        out = ROOT / "sniper_onnx" / "data" / "pcn_hw_nasbench201.onnx"
        report = train_shipped_predictor(table, devices, out, epochs=args.epochs, seed=args.seed,
                                         progress=lambda e, loss: print(f"epoch {e + 1}: log-MSE {loss:.4f}", flush=True))
        print(json.dumps({"output": str(out), "seconds": round(time.time() - start), **report.to_json_dict()}, indent=1, default=float))
        return 0
    from sniper_onnx.predictors.hwnas import run_benchmark

    report = run_benchmark(table, devices, split(devices, "meta_train"), split(devices, "meta_valid"), 10,
                           args.data / "reference_archs.txt", args.epochs, args.seed, progress=lambda m: print(m, flush=True))
    print(json.dumps({"seconds": round(time.time() - start), **report.to_json_dict()}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
