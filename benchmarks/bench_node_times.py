"""Where the kernel sum errs, node by node: each layer's predicted time against onnxruntime's own
per-node profile on this CPU, summed by kernel group (issue 5, points 8 and 9).

The kernel-sum path is trained on whole-network latencies only, so how it splits a network's time
among its nodes is never checked against anything. This asks the predictor for every node alone (a
one-row kernel table is a network of one node) and sets that against onnxruntime's
``*_kernel_time`` profile events (the minimum over ``--runs`` runs, after warm-up).

    python benchmarks/bench_node_times.py mobilenet_v2 --resolution 224 --threads 1 --opt-level disabled \
        --device "AMD EPYC | cpu fp32 t1 opt-disabled" --predictor /tmp/bench_split.onnx
    python benchmarks/bench_node_times.py net.onnx --device "..." --group depthwise_conv   # list one group's nodes

MODEL is a zoo name or an ONNX file (``sniper-onnx generate`` writes random nets with their
weights). ``--predictor`` defaults to the shipped one, which was trained on the zoo too: for a
held-out view use one saved by ``bench_predictor.py --table ... --save-predictor P``. Profiling
adds a little time per node, so the profile's sum runs a few percent above a plain run.
Prints a table, or one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

OPT_LEVELS = {"disabled": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


def _model(source: str, resolution: int):
    import onnx

    if Path(source).is_file():
        return onnx.load(source)
    from sniper_generator.zoo import export_zoo_model

    return export_zoo_model(source, resolution)


def profiled_node_seconds(model, threads: int, opt_level: str, runs: int) -> dict[str, float]:
    """Node name -> the minimum of its kernel time over ``runs`` profiled runs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt_level])
    with tempfile.TemporaryDirectory() as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "profile")
        path = Path(folder) / "model.onnx"
        path.write_bytes(model.SerializeToString())
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: np.random.default_rng(0).standard_normal(
            [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]).astype(np.float32) for i in session.get_inputs()}
        for _ in range(5 + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    times: dict[str, list[float]] = defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["name"][: -len("_kernel_time")]].append(event["dur"] * 1e-6)
    return {name: min(values[5:] or values) for name, values in times.items()}


def node_breakdown(model, predictor, device: str, measured: dict[str, float]) -> list[dict]:
    """One row per layer node: name, kernel group, stride, MACs, measured and predicted seconds."""
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, kernel_group, kernel_row

    nodes = [n for n in analyze(model).nodes if n.is_layer and not n.subgraph]
    rows = [np.array([kernel_row(n)], dtype=np.float32) for n in nodes]
    nets = np.zeros((len(nodes), len(predictor.network_feature_names)))
    devs = np.tile(predictor.device_vector(device), (len(nodes), 1))
    predicted = predictor.run(nets, devs, rows)["kernel_seconds"]
    stride_column = KERNEL_FEATURE_NAMES.index("log2_stride")
    return [{"node": n.name, "group": kernel_group(n), "stride": round(2 ** float(r[0, stride_column]) - 1),
             "macs": int(n.macs or 0), "measured_s": measured.get(n.name), "predicted_s": float(p)}
            for n, r, p in zip(nodes, rows, predicted)]


def by_group(rows: list[dict]) -> dict[str, dict]:
    groups: dict[str, dict] = defaultdict(lambda: {"nodes": 0, "measured_s": 0.0, "predicted_s": 0.0})
    for row in rows:
        if row["measured_s"] is None:  # fused or removed by onnxruntime's optimizer: no event of its own
            continue
        group = groups[row["group"] + ("/s2" if row["stride"] > 1 else "")]
        group["nodes"] += 1
        group["measured_s"] += row["measured_s"]
        group["predicted_s"] += row["predicted_s"]
    for group in groups.values():
        group["ratio"] = group["predicted_s"] / max(group["measured_s"], 1e-12)
    return dict(sorted(groups.items(), key=lambda item: -item[1]["measured_s"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="zoo name or ONNX file")
    parser.add_argument("--resolution", type=int, default=224, help="zoo input resolution")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--opt-level", choices=sorted(OPT_LEVELS), default="all")
    parser.add_argument("--device", required=True, help="the predictor's name for this configuration")
    parser.add_argument("--predictor", default=None, help="predictor ONNX (default: the shipped one)")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--group", default=None, help="also list this kernel group's nodes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from sniper_onnx.errors import SniperError
    from sniper_onnx.predictors import load_predictor

    try:
        predictor = load_predictor(args.predictor, devices=[args.device])
        predictor.device_vector(args.device)
    except SniperError as error:
        raise SystemExit(f"bench_node_times: {error}") from None
    model = _model(args.model, args.resolution)
    measured = profiled_node_seconds(model, args.threads, args.opt_level, args.runs)
    rows = node_breakdown(model, predictor, args.device, measured)
    groups = by_group(rows)
    matched = [r for r in rows if r["measured_s"] is not None]
    summary = {"model": args.model, "device": args.device, "predictor": predictor.source, "layer_nodes": len(rows),
               "profiled_nodes": len(matched), "measured_s": sum(r["measured_s"] for r in matched),
               "predicted_s": sum(r["predicted_s"] for r in matched), "groups": groups}
    if args.group:
        summary["nodes"] = [r for r in rows if r["group"] == args.group]
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"{args.model} on {args.device}: {len(matched)}/{len(rows)} layer nodes profiled; "
          f"sum {summary['measured_s'] * 1e3:.2f} ms measured, {summary['predicted_s'] * 1e3:.2f} ms predicted")
    print(f"{'group':28s} {'nodes':>5s} {'measured ms':>12s} {'predicted ms':>13s} {'ratio':>6s}")
    for name, g in groups.items():
        print(f"{name:28s} {g['nodes']:5d} {g['measured_s'] * 1e3:12.3f} {g['predicted_s'] * 1e3:13.3f} {g['ratio']:6.2f}")
    for row in summary.get("nodes", []):
        if row["measured_s"] is not None:
            print(f"  {row['node']:24s} stride {row['stride']}  {row['macs'] / 1e6:8.2f} M MACs  "
                  f"measured {row['measured_s'] * 1e3:7.3f} ms  predicted {row['predicted_s'] * 1e3:7.3f} ms")


if __name__ == "__main__":
    main()
