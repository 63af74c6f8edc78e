"""Would the kernel sum predict an ORT_ENABLE_ALL configuration better from the graph onnxruntime
really runs (Conv+BN+activation fused, NCHWc layout, reorder nodes) than from the exported graph?
(issue 5, point 8; docs/predictor-measurements.md, "The graph onnxruntime runs").

    python benchmarks/bench_optimized_graphs.py --table data/reference/work/train.csv --device "t1 opt-all" \
        --train-nets 3000 --max-param-mb 1e6 [--network-columns] [--seed 1] [--level extended]
    python benchmarks/bench_optimized_graphs.py --table data/reference/work/train.csv --device all \
        --train-nets 3000 --max-param-mb 1e6 --network-columns

Every network used (``--train-nets`` of the training random nets, every held-out generated net and
the zoo, each with at most ``--max-param-mb`` of weights) is re-made with weights (onnxruntime folds BatchNorm into the weights it can read), saved by
an onnxruntime session at ``--level`` (default all: ORT_ENABLE_ALL) on one thread (``optimized_model_filepath``), and both
graphs are analyzed into kernel tables. One kernel net is then trained on the device's pairs alone
from each kind of table (same nets, same seed), or with ``--device all`` on every device's pairs,
each CPU configuration with graph optimizations on reading the optimized graph and the others the
exported one, and scored: MAPE % / Acc(+-10 %) on its training
nets, the held-out generated nets and the zoo. The optimized graph is what onnxruntime runs on this
CPU (NCHWc needs x86 SIMD), so the tables are cached per machine in ``--cache``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_predictor  # noqa: E402


def _weighted_model(source: dict):
    if source.get("kind") == "generator":
        from sniper_generator import NetSpec, materialize

        return materialize(NetSpec.from_json_dict(source["spec"]), weights=True)
    if source.get("kind") == "zoo":
        from sniper_generator.zoo import export_zoo_model

        return export_zoo_model(source["name"], resolution=int(source.get("resolution", 224)),
                                batch=int(source.get("batch", 1)), weights=True)
    return None


LEVELS = {"basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


def _tables_of(task: tuple):
    """(exported graph's kernel table, optimized graph's kernel table) of one network; None if it
    cannot be re-made or optimized."""
    import onnx
    import onnxruntime as ort

    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import kernel_table

    text, level = task
    model = _weighted_model(json.loads(text)) if text else None
    if model is None:
        return None
    with tempfile.TemporaryDirectory(prefix="sniper-opt-") as scratch:
        exported, optimized = Path(scratch) / "exported.onnx", Path(scratch) / "optimized.onnx"
        onnx.save(model, str(exported))
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, LEVELS[level])
        options.intra_op_num_threads = 1
        options.log_severity_level = 3  # the NCHWc "hardware specific" notice, once a network
        options.optimized_model_filepath = str(optimized)
        try:
            ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
            return kernel_table(analyze(str(exported)).nodes), kernel_table(analyze(str(optimized)).nodes)
        except Exception as error:  # noqa: BLE001 - report and leave the network out of both arms
            print(f"  skipped: {type(error).__name__}: {str(error)[:120]}", file=sys.stderr)
            return None


def _build_tables(sources: list, indices: np.ndarray, jobs: int, cache: Path, level: str) -> dict:
    done = dict(np.load(cache, allow_pickle=True)["tables"].item()) if cache.is_file() else {}
    todo = [int(i) for i in indices if int(i) not in done]
    began = time.perf_counter()
    with Pool(jobs) as pool:
        for count, (index, tables) in enumerate(zip(todo, pool.imap(_tables_of, [(sources[i], level) for i in todo], chunksize=4)), 1):
            done[index] = tables
            if count % 100 == 0 or count == len(todo):
                print(f"  {count}/{len(todo)} networks optimized and analyzed ({time.perf_counter() - began:.0f} s)",
                      file=sys.stderr)
                np.savez(cache, tables=np.array(done, dtype=object))
    return done


def _predict(params, tables, rows, table_of_pair, data, device: int) -> np.ndarray:
    from sniper_onnx.predictors.kernelnet import kernel_log_seconds_numpy

    return np.array([np.exp(kernel_log_seconds_numpy(params, tables[table_of_pair[i]], data.device_matrix[device]))
                     for i in rows])


def _score(predicted: np.ndarray, measured: np.ndarray) -> str:
    error = np.abs(predicted / measured - 1)
    return f"{100 * error.mean():.1f} / {np.mean(error <= 0.1):.2f}"


def runs_optimized_graph(data, device: int) -> bool:
    """A CPU configuration with every graph optimization on runs onnxruntime's optimized graph;
    the others (optimizations off, GPUs, whose optimized graph needs their provider) the exported one."""
    features = dict(zip(data.device_feature_names, data.device_matrix[device]))
    cpu = features.get("kind_desktop_cpu", 0) or features.get("kind_embedded_cpu", 0)
    return bool(cpu and features.get("graph_optimization_level_known", 0) and features.get("graph_optimization_level", 0) >= 1)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--device", required=True,
                        help="a configuration with graph optimizations on, e.g. 't1 opt-all'; or 'all': one kernel net "
                             "for every device of the table, each on the graph it runs (as the predictor trains)")
    parser.add_argument("--train-nets", type=int, default=800, help="training random nets to use (a seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default: KernelNetConfig's")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--max-param-mb", type=float, default=64.0,
                        help="leave out nets with more weight bytes (re-making and optimizing them with weights "
                             "runs at about 40 MB/s here)")
    parser.add_argument("--level", choices=sorted(LEVELS), default="all",
                        help="onnxruntime's optimization level for the optimized graph (extended: fusions only, "
                             "no NCHWc layout)")
    parser.add_argument("--network-columns", action="store_true",
                        help="append the network's size to every row, as bench_kernel_training.py --columns network")
    parser.add_argument("--cache", default=None, help="default: optimized-graph-tables-LEVEL.npz")
    parser.add_argument("--per-network", default="", metavar="PREFIX",
                        help="write PREFIX-exported.csv and PREFIX-optimized.csv, every scored pair in "
                             "bench_predictor.py --per-network's columns (for bench_label_noise.py --rescore)")
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    import torch

    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.kernelnet import NETWORK_CONTEXT_FEATURES, KernelNetConfig, train_kernel_net
    from sniper_onnx.predictors.runtime import match_device

    torch.set_num_threads(1)
    data = load_training_csv(args.table)
    if args.device == "all":
        devices = list(range(len(data.device_names)))
    else:
        name = match_device(args.device, data.device_names)
        if name not in data.device_names:
            raise SystemExit(f"--device {args.device}: not in the table ({', '.join(data.device_names)})")
        devices = [data.device_names.index(name)]
    names = bench_predictor._network_names(args.table)
    network_names = [names.get(key, key) for key in data.network_names]
    count = len(network_names)
    generated = np.array([name.startswith(bench_predictor.GENERATED_PREFIXES) for name in network_names])
    held_out = ~generated | np.array([bench_predictor._held_out_by_name(name) for name in network_names])
    on_devices = np.isin(data.pair_device, devices)
    measured = np.zeros(count, bool)
    measured[data.pair_network[on_devices]] = True
    measured &= data.network_matrix[:, data.network_feature_names.index("param_bytes")] <= args.max_param_mb * 1e6
    training = np.flatnonzero(generated & ~held_out & measured)
    training = np.sort(np.random.default_rng(args.seed).permutation(training)[: args.train_nets])
    tested = np.flatnonzero(held_out & measured)
    cache = Path(args.cache or f"optimized-graph-tables-{args.level}.npz")
    built = _build_tables(data.network_sources, np.concatenate([training, tested]), args.jobs, cache, args.level)
    usable = np.zeros(count, bool)
    usable[[i for i, tables in built.items() if tables is not None]] = True

    config = KernelNetConfig(seed=args.seed, members=1)
    if args.steps:
        config.steps = args.steps
    columns = [data.network_feature_names.index(name) for name in NETWORK_CONTEXT_FEATURES]
    context = np.log2(1.0 + np.maximum(data.network_matrix[:, columns], 0.0)).astype(np.float32)
    # tables[i] is network i's exported graph, tables[count + i] its optimized graph
    tables = [built[i][0] if usable[i] else None for i in range(count)] + \
             [built[i][1] if usable[i] else None for i in range(count)]
    if args.network_columns:
        tables = [None if t is None else np.hstack([t, np.tile(context[i % count], (len(t), 1))]) for i, t in enumerate(tables)]
    optimized_device = np.array([runs_optimized_graph(data, d) for d in range(len(data.device_names))])
    sets = {"training": generated & ~held_out & np.isin(np.arange(count), training), "held out": generated & held_out,
            "zoo": ~generated}
    groups = {"training": "random_train", "held out": "random_held_out", "zoo": "zoo"}  # bench_predictor's names
    print(f"{len(training)} training nets ({int(usable[training].sum())} re-made), seed {args.seed}, level {args.level}, "
          f"{config.steps} steps, network columns {args.network_columns}; devices on the optimized graph in the second "
          f"arm: {', '.join(data.device_names[d] for d in devices if optimized_device[d]) or 'none'}")
    print("| graph | device | " + " | ".join(sets) + " |\n|---|---|---|---|---|")
    pairs = np.flatnonzero(on_devices & usable[data.pair_network] & np.isin(data.pair_network, training))
    for arm, view in (("exported", np.zeros_like(optimized_device)), (f"onnxruntime's ({args.level})", optimized_device)):
        table_of_pair = data.pair_network + count * view[data.pair_device]
        params = train_kernel_net(tables, data.device_matrix, table_of_pair[pairs], data.pair_device[pairs],
                                  np.log(data.seconds[pairs]), config)
        written = []
        for d in devices:
            cells = []
            for set_name, mask in sets.items():
                rows = np.flatnonzero((data.pair_device == d) & (mask & usable)[data.pair_network])
                predicted = _predict(params, tables, rows, table_of_pair, data, d)
                cells.append(_score(predicted, data.seconds[rows]) + f" (n {len(rows)})")
                written += [(network_names[data.pair_network[i]], data.device_names[d], groups[set_name],
                             data.seconds[i], p, "kernels") for i, p in zip(rows, predicted)]
            print(f"| {arm} | {data.device_names[d].replace('|', '/')} | " + " | ".join(cells) + " |")
        if args.per_network:
            _write_pairs(f"{args.per_network}-{'exported' if not view.any() else 'optimized'}.csv", written)


def _write_pairs(path: str, pairs: list) -> None:
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["network", "device", "group", "measured_s", "predicted_s", "path"])
        writer.writerows(pairs)


if __name__ == "__main__":
    main()
