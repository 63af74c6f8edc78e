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

With graph optimizations on (``--opt-level all``, the default) onnxruntime fuses layers (Conv +
Relu into one NCHWc kernel named after the Relu's output, Gemm + Relu into "fused NAME") and their
events no longer carry the graph's names. Such events are mapped back to the node they name, and
the layers fused into them are added to that node's row: the group then reads
"conv+cheap_activation", the fused kernel against the sum of its layers' predictions.
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


def _event_node(event_name: str, names: dict, producers: dict[str, str]) -> tuple[str | None, str]:
    """The graph node an optimized session's event stands for, and where the layers fused into it
    lie. With graph optimizations on, onnxruntime names a fused node "fused NAME" or
    "NAME/...Fusion/" (NAME and the activation or scaling after it), and an NCHWc node after its
    output tensor plus "_nchwc" (the tensor's producer and the layers before it, e.g. Conv + Relu
    named after the Relu's output)."""
    stripped = event_name.removeprefix("fused ").removesuffix("_nchwc")
    # the longest "/"-prefix that names a node: torch names nodes "/layers.0/attn/MatMul", so the
    # first segment alone is "" (every event of a torch export went unmapped)
    parts = stripped.split("/")
    base = next((name for name in ("/".join(parts[:i]) for i in range(len(parts), 0, -1)) if name in names),
                parts[0])
    if base in names:  # "NAME/MatMulScaleFusion/": MatMul and the scaling Mul after it
        return base, "after" if event_name.startswith("fused ") or stripped != base else ""
    return producers.get(base), "before"


def attribute_fused(measured: dict[str, float], nodes: list) -> tuple[dict[str, float], dict[str, str]]:
    """Measured seconds keyed by graph node, and for each layer node fused into another's kernel
    (no event of its own, its output read only by the next one), the node whose event timed it."""
    by_name = {n.name: n for n in nodes}
    producers = {out: n.name for n in nodes for out in n.outputs}
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in nodes:
        for name in n.inputs:
            consumers[name].append(n.name)
    by_node: dict[str, float] = {}
    direction: dict[str, str] = {}
    for event_name, seconds in measured.items():
        node, side = _event_node(event_name, by_name, producers)
        if node is not None:
            by_node[node] = by_node.get(node, 0.0) + seconds
            direction[node] = side

    def unclaimed(name: str) -> bool:
        return by_name[name].is_layer and name not in by_node and name not in folded

    folded: dict[str, str] = {}
    for head, side in direction.items():
        current = by_name[head]
        if side == "before":  # the chain of single-use, single-input layers that feeds it
            stack = [current]
            while stack:
                for tensor in stack.pop().inputs:
                    upstream = producers.get(tensor)
                    if (upstream is not None and len(consumers[tensor]) == 1 and unclaimed(upstream)
                            and sum(t in producers for t in by_name[upstream].inputs) <= 1):
                        folded[upstream] = head
                        stack.append(by_name[upstream])
        elif side == "after" and current.outputs and len(consumers[current.outputs[0]]) == 1:
            downstream = consumers[current.outputs[0]][0]
            if unclaimed(downstream):
                folded[downstream] = head
    for node in nodes:  # still without a kernel: fused after the one it reads alone (NCHWc Conv + Sum)
        if not unclaimed(node.name):
            continue
        for tensor in node.inputs:
            producer = producers.get(tensor)
            head = producer if producer in by_node else folded.get(producer)
            if head is not None and len(consumers[tensor]) == 1:
                folded[node.name] = head
                break
    return by_node, folded


def node_breakdown(model, predictor, device: str, measured: dict[str, float]) -> list[dict]:
    """One row per layer node: name, kernel group, stride, MACs, measured and predicted seconds.
    A node folded into another's kernel by the optimizer has no measured time of its own; its
    prediction is added to that node's row (``folded`` lists them)."""
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, kernel_group, kernel_row

    all_nodes = [n for n in analyze(model).nodes if not n.subgraph]
    measured, folded = attribute_fused(measured, all_nodes)
    nodes = [n for n in all_nodes if n.is_layer]
    rows = [np.array([kernel_row(n)], dtype=np.float32) for n in nodes]
    nets = np.zeros((len(nodes), len(predictor.network_feature_names)))
    devs = np.tile(predictor.device_vector(device), (len(nodes), 1))
    # a one-row table is a whole network to the graph, which adds a call's cost to it: take it off
    from sniper_onnx.predictors.kernelnet import call_log_seconds_numpy
    from sniper_onnx.predictors.runtime import params_of

    call = float(np.exp(call_log_seconds_numpy(params_of(predictor), predictor.device_vector(device))))
    predicted = predictor.run(nets, devs, rows)["kernel_seconds"] - call
    stride_column = KERNEL_FEATURE_NAMES.index("log2_stride")
    groups_by_node = {n.name: kernel_group(n) for n in nodes}
    rows_out = {n.name: {"node": n.name, "group": groups_by_node[n.name], "stride": round(2 ** float(r[0, stride_column]) - 1),
                         "macs": int(n.macs or 0), "measured_s": measured.get(n.name), "predicted_s": float(p),
                         "folded": []}
                for n, r, p in zip(nodes, rows, predicted)}
    for name, head in folded.items():
        if name in rows_out and head in rows_out:
            row = rows_out.pop(name)
            rows_out[head]["predicted_s"] += row["predicted_s"]
            rows_out[head]["folded"].append(name)
    order = {n.name: i for i, n in enumerate(nodes)}
    for head, row in rows_out.items():  # "conv+cheap_activation": the fused kernel's layers in graph order
        members = sorted([head, *row["folded"]], key=order.__getitem__)
        row["group"] = "+".join(dict.fromkeys(groups_by_node[m] for m in members))
    return list(rows_out.values())


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
    fused = sum(len(r["folded"]) for r in rows)
    summary = {"model": args.model, "device": args.device, "predictor": predictor.source,
               "layer_nodes": len(rows) + fused, "kernels": len(rows), "fused_nodes": fused,
               "profiled_kernels": len(matched), "measured_s": sum(r["measured_s"] for r in matched),
               "predicted_s": sum(r["predicted_s"] for r in matched), "groups": groups}
    if args.group:
        summary["nodes"] = [r for r in rows if r["group"] == args.group]
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    fused_note = f" ({fused} layer nodes fused into them by onnxruntime)" if fused else ""
    print(f"{args.model} on {args.device}: {len(matched)}/{len(rows)} kernels profiled{fused_note}; "
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
