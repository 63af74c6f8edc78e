"""How the kernel sum's training length, learning rate, width and extra row columns move its error
(issue 5, point 8). One kernel net, trained and scored outside the predictor file.

    python benchmarks/bench_kernel_training.py --table data/reference/work/train.csv --steps 3000 --learning-rate 3e-3
    python benchmarks/bench_kernel_training.py --table data/reference/work/train.csv --steps 6000 --learning-rate 1e-2
    python benchmarks/bench_kernel_training.py --table data/reference/work/train.csv --steps 12000 --columns network,neighbours

Trains ``train_kernel_net`` (one member, torch on one thread) on the training random nets of
bench_predictor.py's split (all of them: the trainer's 10 % path-choice hold-out is not taken here)
and prints, per device, MAPE % / Acc(±10 %) of the kernel sum alone on those training nets, on the
held-out generated nets (every family) and on the zoo. ``--columns`` appends context to every
kernel row: ``network`` (log2 of the network's parameter bytes, activation bytes read, layer count
and MACs: the same four numbers on each of its rows) and ``neighbours`` (the row's input comes from
a conv/GEMM/MatMul; that input feeds only this node; it is a graph input; log2 of its output's
consumer count); ``cache`` (log2 of the bytes written between the producer of the row's farthest
input and the row, its reuse distance, and of the bytes of tensors alive while it runs). The first table build re-makes and analyzes every network (about a minute) and is
cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_predictor  # noqa: E402

HEAVY_GROUPS = {"conv", "depthwise_conv", "grouped_conv", "gemm", "matmul"}


def _log2(value: float) -> float:
    return float(np.log2(1.0 + max(float(value), 0.0)))


def _cache_columns(result) -> dict[str, list[float]]:
    """Per node name: log2 of the bytes other nodes wrote between the producer of its farthest
    activation input and itself (its reuse distance: above the cache size, that input comes from
    memory), and log2 of the bytes of the tensors alive while it runs (produced, still to be read)."""
    position = {node.name: i for i, node in enumerate(result.nodes)}
    produced_at, size, last_read = {}, {}, {}
    for i, node in enumerate(result.nodes):
        for name in node.outputs:
            produced_at[name] = i
        for name in node.inputs:
            last_read[name] = i
        share = node.bytes_written / max(len(node.outputs), 1)
        for name in node.outputs:
            size[name] = share
    written = np.cumsum([0.0] + [float(node.bytes_written) for node in result.nodes])  # written[i]: before node i
    alive = np.zeros(len(result.nodes) + 1)
    for name, start in produced_at.items():
        end = last_read.get(name)
        if end is not None and end > start:
            alive[start + 1] += size[name]
            alive[end + 1] -= size[name]
    alive = np.cumsum(alive)
    columns = {}
    for node in result.nodes:
        i = position[node.name]
        reuse = [written[i] - written[produced_at[n] + 1] for n in node.inputs if n in produced_at]
        columns[node.name] = [_log2(max(reuse, default=0.0)), _log2(alive[i])]
    return columns


def _rows_with_context(result) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(kernel rows, network columns, neighbour columns, cache columns) of one analyzed network, row-aligned."""
    from sniper_onnx.analysis.kernels import kernel_group, kernel_row

    layers = [n for n in result.nodes if n.is_layer and not n.subgraph]
    producer, consumers = {}, {}
    for node in result.nodes:
        for name in node.outputs:
            producer[name] = node
        for name in node.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    from sniper_onnx.predictors.kernelnet import NETWORK_CONTEXT_FEATURES

    network = [_log2(result.features[name]) for name in NETWORK_CONTEXT_FEATURES]  # what network_context sees
    rows, networks, neighbours = [], [], []
    cache = _cache_columns(result)
    for node in layers:
        rows.append(kernel_row(node))
        source = producer.get(node.inputs[0]) if node.inputs else None
        group = kernel_group(source) if source is not None else "input"
        only_reader = float(source is not None and consumers.get(node.inputs[0], 0) == 1)
        readers = consumers.get(node.outputs[0], 0) if node.outputs else 0
        neighbours.append([float(group in HEAVY_GROUPS), only_reader, float(group == "input"), _log2(readers)])
        networks.append(network)
    return (np.array(rows, np.float32), np.array(networks, np.float32).reshape(len(rows), 4),
            np.array(neighbours, np.float32).reshape(len(rows), 4),
            np.array([cache[node.name] for node in layers], np.float32).reshape(len(rows), 2))


def _tables(data, cache: Path) -> list:
    from sniper_onnx.analysis import analyze
    from sniper_onnx.predictors.kernel_sources import _model_of

    if cache.is_file():
        return np.load(cache, allow_pickle=True)["tables"].tolist()
    tables = []
    for text in data.network_sources:
        model = _model_of(json.loads(text)) if text else None
        tables.append(_rows_with_context(analyze(model)) if model is not None else None)
    np.savez(cache, tables=np.array(tables, dtype=object))
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--steps", type=int, default=None, help="default: KernelNetConfig's")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: KernelNetConfig's")
    parser.add_argument("--hidden", type=int, default=None, help="default: KernelNetConfig's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--columns", default="", help="comma-separated: network, neighbours, cache")
    parser.add_argument("--cache", default="kernel-context-tables-v2.npz", help="table cache (v2: with cache columns)")
    args = parser.parse_args()

    import torch

    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.kernelnet import KernelNetConfig, kernel_log_seconds_numpy, train_kernel_net

    torch.set_num_threads(1)
    data = load_training_csv(args.table)
    names = bench_predictor._network_names(args.table)
    network_names = [names.get(key, key) for key in data.network_names]
    generated = np.array([name.startswith(bench_predictor.GENERATED_PREFIXES) for name in network_names])
    held_out = ~generated | np.array([bench_predictor._held_out_by_name(name) for name in network_names])
    wanted = {c for c in args.columns.split(",") if c}
    unknown = wanted - {"network", "neighbours", "cache"}
    if unknown:
        parser.error(f"--columns {sorted(unknown)[0]}: use network, neighbours and/or cache")
    tables = []
    for entry in _tables(data, Path(args.cache)):
        if entry is None:
            tables.append(None)
            continue
        rows, network, neighbours, cache = entry
        tables.append(np.hstack([rows] + ([network] if "network" in wanted else []) + ([neighbours] if "neighbours" in wanted else [])
                                + ([cache] if "cache" in wanted else [])))
    config = KernelNetConfig(seed=args.seed, members=1)
    for field, value in (("steps", args.steps), ("learning_rate", args.learning_rate), ("hidden", args.hidden)):
        if value is not None:
            setattr(config, field, value)
    train = np.flatnonzero(generated[data.pair_network] & ~held_out[data.pair_network])
    began = time.perf_counter()
    params = train_kernel_net(tables, data.device_matrix, data.pair_network[train], data.pair_device[train],
                              np.log(data.seconds[train]), config)
    print(f"steps {config.steps}, learning rate {config.learning_rate}, hidden {config.hidden}, seed {args.seed}, "
          f"columns {sorted(wanted) or 'none'}: trained in {time.perf_counter() - began:.0f} s")
    print("| device | random, trained on | random, held out | zoo |\n|---|---|---|---|")
    for d, device in enumerate(data.device_names):
        cells = []
        for mask in (generated & ~held_out, generated & held_out, ~generated):
            rows = np.flatnonzero(mask[data.pair_network] & (data.pair_device == d))
            predicted = np.array([np.exp(kernel_log_seconds_numpy(params, tables[data.pair_network[i]], data.device_matrix[d]))
                                  for i in rows])
            error = np.abs(predicted / data.seconds[rows] - 1)
            cells.append(f"{100 * error.mean():.1f} / {np.mean(error <= 0.1):.2f}")
        print(f"| {device.replace('|', '/')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
