"""Would the kernel sum predict an ORT_ENABLE_ALL configuration better from the graph onnxruntime
really runs (Conv+BN+activation fused, NCHWc layout, reorder nodes) than from the exported graph?
(issue 5, point 8; docs/predictor.md, "The graph onnxruntime runs").

    python benchmarks/bench_optimized_graphs.py --table data/reference/work/train.csv --device "t1 opt-all" \
        --train-nets 800 --jobs 2

Every network used (``--train-nets`` of the training random nets, every held-out generated net and
the zoo, each with at most ``--max-param-mb`` of weights) is re-made with weights (onnxruntime folds BatchNorm into the weights it can read), saved by
an onnxruntime session at ``--level`` (default all: ORT_ENABLE_ALL) on one thread (``optimized_model_filepath``), and both
graphs are analyzed into kernel tables. One kernel net is then trained on the device's pairs alone
from each kind of table (same nets, same seed) and scored: MAPE % / Acc(+-10 %) on its training
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


def _score(params, tables, rows, data, device: int) -> str:
    from sniper_onnx.predictors.kernelnet import kernel_log_seconds_numpy

    predicted = np.array([np.exp(kernel_log_seconds_numpy(params, tables[data.pair_network[i]], data.device_matrix[device]))
                          for i in rows])
    error = np.abs(predicted / data.seconds[rows] - 1)
    return f"{100 * error.mean():.1f} / {np.mean(error <= 0.1):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--device", required=True, help="a configuration with graph optimizations on, e.g. 't1 opt-all'")
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
    parser.add_argument("--cache", default=None, help="default: optimized-graph-tables-LEVEL.npz")
    args = parser.parse_args()

    import torch

    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.kernelnet import KernelNetConfig, train_kernel_net
    from sniper_onnx.predictors.runtime import match_device

    torch.set_num_threads(1)
    data = load_training_csv(args.table)
    device_name = match_device(args.device, data.device_names)
    if device_name not in data.device_names:
        parser.error(f"--device {args.device}: not in the table ({', '.join(data.device_names)})")
    device = data.device_names.index(device_name)
    names = bench_predictor._network_names(args.table)
    network_names = [names.get(key, key) for key in data.network_names]
    generated = np.array([name.startswith(bench_predictor.GENERATED_PREFIXES) for name in network_names])
    held_out = ~generated | np.array([bench_predictor._held_out_by_name(name) for name in network_names])
    measured = np.zeros(len(network_names), bool)
    measured[data.pair_network[data.pair_device == device]] = True
    measured &= data.network_matrix[:, data.network_feature_names.index("param_bytes")] <= args.max_param_mb * 1e6
    training = np.flatnonzero(generated & ~held_out & measured)
    training = np.sort(np.random.default_rng(args.seed).permutation(training)[: args.train_nets])
    tested = np.flatnonzero(held_out & measured)
    cache = Path(args.cache or f"optimized-graph-tables-{args.level}.npz")
    built = _build_tables(data.network_sources, np.concatenate([training, tested]), args.jobs, cache, args.level)
    usable = {i for i, tables in built.items() if tables is not None}

    config = KernelNetConfig(seed=args.seed, members=1)
    if args.steps:
        config.steps = args.steps
    on_device = data.pair_device == device
    sets = {"training": generated & ~held_out, "held out": generated & held_out, "zoo": ~generated}
    print(f"device {device_name}; {len(usable & set(training.tolist()))} training nets, seed {args.seed}, level {args.level}, "
          f"{config.steps} steps\n| graph | " + " | ".join(sets) + " | trained in |\n|---|---|---|---|---|")
    for arm, position in (("exported", 0), (f"optimized by onnxruntime ({args.level})", 1)):
        tables = [built[i][position] if i in usable else None for i in range(len(network_names))]
        pairs = np.flatnonzero(on_device & np.isin(data.pair_network, training) & np.isin(data.pair_network, list(usable)))
        began = time.perf_counter()
        params = train_kernel_net(tables, data.device_matrix, data.pair_network[pairs], data.pair_device[pairs],
                                  np.log(data.seconds[pairs]), config)
        seconds = time.perf_counter() - began
        cells = []
        for mask in sets.values():
            chosen = mask & np.isin(np.arange(len(network_names)), list(usable))
            if mask is sets["training"]:
                chosen &= np.isin(np.arange(len(network_names)), training)
            rows = np.flatnonzero(on_device & chosen[data.pair_network])
            cells.append(_score(params, tables, rows, data, device) + f" (n {len(rows)})")
        print(f"| {arm} | " + " | ".join(cells) + f" | {seconds:.0f} s |")


if __name__ == "__main__":
    main()
