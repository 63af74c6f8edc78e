"""Per-node supervision of the kernel sum (issue 5, point 8): does teaching it onnxruntime's own
per-node times fix how it splits a network among its layers, and does that help whole networks?

    python benchmarks/bench_node_supervision.py --table data/reference/work/train.csv \
        --profiles /tmp/node_profiles.jsonl --count 400 --weight 0.3 --seed 0 [--kernel-members 1] [--overhead-us 2]

``--profiles data/reference/node-profiles-cpu-t1-noopt.jsonl.gz`` uses the committed profiles of
388 nets (measured 2026-11-29) and skips step 1.

1. Profiles ``--count`` training random nets of the reference dataset (never its held-out 20 %) on
   this CPU, 1 thread, graph optimizations disabled, so every layer has an event of its own
   (``bench_node_times.profiled_node_seconds``, minimum of 5 runs). Appends to ``--profiles`` and
   skips nets already there, so a run resumes. About a second a net.
2. Keeps the nets whose label is at least ``--min-label`` seconds and whose profile sums to within
   [0.9, 1.15] of the label: on the smallest nets the profile's per-node overhead is most of it.
   Each node's target is its profiled time scaled so the nodes sum to the net's label.
   ``--every-net`` supervises every profiled net instead.
3. Trains as ``bench_predictor.py --table`` does, with the node loss (``KernelNetConfig.node_weight``)
   on the supervised device, and reports the same groups plus that device's held-out random nets by
   size (below 2 ms, 2-20 ms, above 20 ms). ``--weight 0`` is the baseline with the same code.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
DEVICE = "AMD EPYC | cpu fp32 t1 opt-disabled"  # the configuration this script can profile unfused


def _training_nets(table: str) -> list[tuple[str, str, str, float]]:
    from bench_predictor import _held_out_by_name

    csv.field_size_limit(10 ** 9)
    nets, seen = [], set()
    with open(table, newline="") as handle:
        for row in csv.DictReader(handle):
            name, key = row["network_name"], row["network_id"]
            if (row["device_name"] == DEVICE and key not in seen and name.startswith(("cnn-", "transformer-"))
                    and not _held_out_by_name(name)):
                seen.add(key)
                nets.append((key, name, row["network_source"], float(row["latency_s"])))
    return nets


def collect(table: str, profiles: str, count: int, max_label: float = 0.5) -> None:
    if profiles.endswith(".gz"):  # the committed profiles: read as they are, never appended to
        return
    from bench_node_times import profiled_node_seconds
    from rich.console import Console
    from rich.progress import track

    from sniper_generator import NetSpec, materialize
    from sniper_onnx.analysis import analyze

    nets = _training_nets(table)
    order = np.random.default_rng(0).permutation(len(nets))[:count]
    done = set()
    if Path(profiles).exists():
        done = {json.loads(line)["network_id"] for line in open(profiles)}
    with open(profiles, "a") as handle:
        for i in track(order, description="profiling nodes", console=Console(stderr=True)):  # stdout is JSON
            key, name, source, label = nets[i]
            if key in done or label > max_label:
                continue
            model = materialize(NetSpec.from_json_dict(json.loads(source)["spec"]), weights=True)
            layers = [n for n in analyze(model).nodes if n.is_layer and not n.subgraph]  # kernel_table's rows
            measured = profiled_node_seconds(model, 1, "disabled", 5)
            handle.write(json.dumps({"network_id": key, "name": name, "label_s": label,
                                     "node_s": [measured.get(n.name) for n in layers]}) + "\n")
            handle.flush()


def node_targets(profiles: str, data, min_label: float, every_net: bool = False, overhead_s: float = 0.0,
                 min_node_s: float = 0.0) -> dict:
    """Each profiled net's node log-times, scaled to sum to its label; ``overhead_s`` is first taken
    off every node (never below a tenth of its time): what the profiler adds per node, not the layer.
    Nodes that then take under ``min_node_s`` are left unsupervised (NaN) but still count in the sum."""
    index = {key: i for i, key in enumerate(data.network_names)}
    device = data.device_names.index(DEVICE)
    targets = {}
    with gzip.open(profiles, "rt") if profiles.endswith(".gz") else open(profiles) as handle:
        records = [json.loads(line) for line in handle]
    for record in records:
        times = np.array([np.nan if t is None else t for t in record["node_s"]], dtype=np.float64)
        times = np.where(times > 0, np.maximum(times - overhead_s, 0.1 * times), np.nan)
        ratio = np.nansum(times) / record["label_s"]
        kept = every_net or (record["label_s"] >= min_label and 0.9 <= ratio <= 1.15)
        if kept and record["network_id"] in index:
            scaled = times / ratio
            targets[(index[record["network_id"]], device)] = np.log(np.where(times >= min_node_s, scaled, np.nan))
    return targets


def by_size(pairs_csv: str) -> dict:
    buckets = {"below 2 ms": (0, 0.002), "2-20 ms": (0.002, 0.02), "above 20 ms": (0.02, np.inf)}
    ratios = {name: [] for name in buckets}
    with open(pairs_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["group"] == "random_held_out" and row["device"] == DEVICE:
                measured = float(row["measured_s"])
                for name, (low, high) in buckets.items():
                    if low <= measured < high:
                        ratios[name].append(float(row["predicted_s"]) / measured)
    return {name: {"n": len(r), "mape_pct": round(100 * statistics.mean(abs(x - 1) for x in r), 1),
                   "median_ratio": round(statistics.median(r), 3)} for name, r in ratios.items() if r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="the reference dataset's train.csv")
    parser.add_argument("--profiles", required=True, help="JSONL of per-node profiles (appended, resumable; a .gz is read only)")
    parser.add_argument("--count", type=int, default=400, help="training nets to profile")
    parser.add_argument("--weight", type=float, default=0.3, help="KernelNetConfig.node_weight (0: baseline)")
    parser.add_argument("--min-label", type=float, default=0.002, help="supervise nets at least this slow (s)")
    parser.add_argument("--every-net", action="store_true", help="supervise every profiled net (no filter)")
    parser.add_argument("--overhead-us", type=float, default=0.0,
                        help="the profiler's time per node, taken off each node before scaling (about 2 here)")
    parser.add_argument("--min-node-us", type=float, default=0.0,
                        help="leave nodes shorter than this (after --overhead-us) out of the node loss")
    parser.add_argument("--shares-only", action="store_true",
                        help="teach only each net's split among its nodes (KernelNetConfig.node_shares_only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kernel-members", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default="/tmp/node_supervision", help="prefix of the .csv pairs and .onnx predictor")
    args = parser.parse_args()

    from bench_predictor import cpu_accuracy

    from sniper_onnx.predictors.dataset import load_training_csv

    collect(args.table, args.profiles, args.count)
    targets = node_targets(args.profiles, load_training_csv(args.table), args.min_label, args.every_net,
                           args.overhead_us * 1e-6, args.min_node_us * 1e-6)
    result = cpu_accuracy(args.table, args.epochs, seed=args.seed, per_network=args.out + ".csv",
                          members=args.kernel_members, save_predictor=args.out + ".onnx",
                          node_targets=targets, node_weight=args.weight, node_shares_only=args.shares_only)
    result["supervised"] = {"device": DEVICE, "networks": len(targets), "weight": args.weight,
                            "overhead_us": args.overhead_us, "min_node_us": args.min_node_us,
                            "shares_only": args.shares_only,
                            "random_held_out_by_size": by_size(args.out + ".csv")}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
