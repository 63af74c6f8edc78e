"""Cost of a prediction, set against measuring the model (issue 5, point 10).

    python benchmarks/bench_predictor.py [--predictor P.onnx]
    python benchmarks/bench_predictor.py --cpu-dataset 120 --out /tmp/cpu.csv   # issue-5 pipeline, end to end
    python benchmarks/bench_predictor.py --table data/reference/work/train.csv   # issue-5 accuracy
    python benchmarks/bench_predictor.py --ship data/reference/work/train.csv    # the shipped reference-dataset predictor
    python benchmarks/bench_predictor.py --kernel-cost                           # cost of the kernel-sum path
    python benchmarks/bench_predictor.py --table T --new-device "NVIDIA H200" [--hindsight]  # issue 5, point 9

The second form profiles N generated CNNs (seed 0) on this CPU with onnxruntime at 1 and 2 threads
(median of 3 runs after a warm-up), writes the training CSV in `db export`'s layout, trains a
predictor on 80% of the networks and reports held-out accuracy per "device" beside a FLOPs-only
linear fit and the per-device Bayesian ridge. It is a smoke test of the pipeline on a shared, noisy
2-core machine, not the issue-5 accuracy evidence (that needs the reference dataset).

Reports medians: one network-device pair in-process (raw graph call, and the full `Predictor.predict`
API with the Structure Checker), per-pair cost of a 10,000-pair batch, and one onnxruntime CPU run
of the same NAS-Bench-201 network for comparison. Targets: <= 1 ms per pair, <= 0.05 ms batched.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from typing import Optional, Sequence

import numpy as np


def median_seconds(call, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def profile_cpu_dataset(count: int, out: str, runs: int = 3, max_macs: float = 1.5e9) -> None:
    """Measure generated nets on this CPU at 1 and 2 threads; write a `db export`-style CSV.

    Nets above ``max_macs`` are skipped (the generator reaches tens of GMACs: seconds per run here).
    """
    import csv
    import platform

    import onnxruntime
    from rich.progress import track

    from sniper_generator import materialize, sample_specs
    from sniper_onnx.analysis import FEATURE_NAMES, analyze
    from sniper_onnx.feature_schema import FEATURE_SCHEMA
    from sniper_profiler.device import DEVICE_FEATURE_NAMES, DeviceSpec

    devices = {threads: DeviceSpec(name=f"local_cpu_{threads}t", kind="desktop_cpu", threads=threads,
                                   provider="CPUExecutionProvider", description=platform.processor() or "this CPU")
               for threads in (1, 2)}
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["network_id", "device_name", *FEATURE_NAMES, *(f"device_{n}" for n in DEVICE_FEATURE_NAMES), "latency_s",
                         "feature_schema"])
        kept = 0
        for spec in track(sample_specs(count * 4, 0, family="cnn"), description="profiling"):
            if kept >= count:
                break
            features = analyze(materialize(spec, weights=False)).features
            if features["total_macs"] > max_macs:
                continue
            kept += 1
            model = materialize(spec)
            blob = model.SerializeToString()
            for threads, device in devices.items():
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                session = onnxruntime.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
                feeds = {i.name: np.random.default_rng(0).standard_normal(
                    [d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32) for i in session.get_inputs()}
                session.run(None, feeds)
                seconds = median_seconds(lambda: session.run(None, feeds), runs)
                writer.writerow([spec.net_id, device.name, *(features[n] for n in FEATURE_NAMES), *device.features(), repr(seconds),
                                 FEATURE_SCHEMA])  # analysed here, by this analyzer


GENERATED_PREFIXES = ("cnn-", "transformer-", "nasbench201-", "tiny-")
HELD_OUT_SHARE = 0.2
STRIDED_PREFIX = "cnn-strided-"  # the families added on 2026-11-28, reported apart from the mixed nets
WIDE_PREFIX = "cnn-wide-"
TORCH_PREFIX = "transformer-torch-"  # added on 2026-11-29: encoders as torch exports them
TINY_PREFIX = "tiny-"  # added on 2026-11-29: 1-8 layers, microseconds a call


def _held_out_by_name(name: str) -> bool:
    """A fixed 20 % of networks, decided by each one's name alone: growing the dataset (a new
    family, more nets) adds test nets but never moves an old one between training and test."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < HELD_OUT_SHARE


def cpu_accuracy(table: str, epochs: int, max_train: int = 0, seed: int = 0, per_network: str = "",
                 expectile: Optional[float] = None, train_without: Sequence[str] = (), members: Optional[int] = None,
                 save_predictor: str = "", node_targets: Optional[dict] = None, node_weight: float = 0.0,
                 node_shares_only: bool = False, network_context: bool = True, call_cost: bool = True) -> dict:
    """Train on random nets only: 80% of them (the trainer holds out 10% of those for the
    Structure Checker). Report the other 20% and, separately, every zoo network (never trained on),
    each beside a FLOPs-only linear fit and the per-device Bayesian ridge. ``per_network``: a CSV of
    every evaluated pair (network, device, group, measured, predicted, path). ``expectile``: the
    kernel sum's loss (default: ``KernelNetConfig``'s; 0.5 is the mean squared error).
    ``train_without``: name prefixes of networks left out of training (an ablation on the same
    test nets). ``members``: kernel nets averaged (``KernelNetConfig.members``). ``save_predictor``: write the
    predictor trained here (for bench_node_times.py). ``node_targets``, ``node_weight``: per-node
    supervision of the kernel sum (bench_node_supervision.py)."""
    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.training import train_predictor

    data = load_training_csv(table)
    names = _network_names(table)  # the trainer keys networks by id; the name tells zoo from random
    network_names = [names.get(key, key) for key in data.network_names]
    generated = np.array([name.startswith(GENERATED_PREFIXES) for name in network_names])
    held_out = ~generated | np.array([_held_out_by_name(name) for name in network_names])
    unused = np.array([bool(train_without) and name.startswith(tuple(train_without)) for name in network_names])
    if max_train:  # a learning curve: the same test nets, fewer training nets
        pool = np.flatnonzero(~held_out & ~unused)
        unused[np.random.default_rng(2).permutation(pool)[max_train:]] = True
    keep = ~held_out[data.pair_network] & ~unused[data.pair_network]
    train = type(data)(**{**data.__dict__, "pair_network": data.pair_network[keep], "pair_device": data.pair_device[keep],
                          "seconds": data.seconds[keep]})
    from sniper_onnx.predictors.kernel_sources import kernel_tables_for

    tables, missing = kernel_tables_for(data.network_sources)
    if missing:
        print(f"networks without a kernel table: {dict(missing)}")
    from sniper_onnx.predictors.kernelnet import KernelNetConfig

    kernel_config = KernelNetConfig(seed=seed)
    if members is not None:
        kernel_config.members = members
    if expectile is not None:
        kernel_config.expectile = expectile
    kernel_config.node_weight = node_weight
    kernel_config.node_shares_only = node_shares_only
    kernel_config.network_context = network_context
    kernel_config.call_cost = call_cost
    predictor, report = train_predictor(train, PCNConfig(epochs=epochs, seed=seed), seed=seed,
                                        kernel_config=kernel_config, kernel_tables=tables,
                                        kernel_node_targets=node_targets)
    if save_predictor:
        from sniper_onnx.predictors.runtime import save_predictor as save

        save(predictor, save_predictor)
    strided = np.array([name.startswith(STRIDED_PREFIX) for name in network_names])
    wide = np.array([name.startswith(WIDE_PREFIX) for name in network_names])
    torch_style = np.array([name.startswith(TORCH_PREFIX) for name in network_names])
    tiny = np.array([name.startswith(TINY_PREFIX) for name in network_names])
    groups = {"random_held_out": (generated & held_out & ~strided & ~wide & ~torch_style & ~tiny)[data.pair_network],
              "strided_held_out": (held_out & strided)[data.pair_network],
              "wide_held_out": (held_out & wide)[data.pair_network],
              "torch_held_out": (held_out & torch_style)[data.pair_network],
              "tiny_held_out": (held_out & tiny)[data.pair_network], "zoo": ~generated[data.pair_network]}
    results, pairs = {}, []
    for d, device in enumerate(data.device_names):
        rows_train = np.flatnonzero(keep & (data.pair_device == d))
        results[device] = {"key_features": [f["name"] for f in report.key_features[device]["features"]],
                           "structure_threshold_macs": report.structure_threshold,
                           "kernel_path": report.kernel_path.get("devices", {}).get(device)}
        for group, mask in groups.items():
            rows = np.flatnonzero(mask & (data.pair_device == d))
            if len(rows):
                results[device][group] = _compare(predictor, data, device, rows, rows_train, tables,
                                                  [(names.get(data.network_names[n], data.network_names[n]), device, group)
                                                   for n in data.pair_network[rows]], pairs)
    if per_network:
        import csv

        with open(per_network, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["network", "device", "group", "measured_s", "predicted_s", "path"])
            writer.writerows(pairs)
    return results


def ship_reference_predictor(table: str, epochs: int) -> dict:
    """The predictor that ships for the reference dataset's devices: every network, zoo included
    (so the issue-5 benchmark above never uses it)."""
    from pathlib import Path

    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.runtime import save_predictor
    from sniper_onnx.predictors.training import train_predictor

    out = Path(__file__).resolve().parents[1] / "sniper_onnx" / "data" / "pcn_reference.onnx"
    data = load_training_csv(table)
    predictor, report = train_predictor(data, PCNConfig(epochs=epochs), extra_meta={
        "latency_statistic": "min", "training_table": "data/reference/train.csv.gz"})
    save_predictor(predictor, out)
    return {"output": str(out), "bytes": out.stat().st_size, "networks": report.networks, "pairs": report.pairs,
            "devices": report.devices, "structure_threshold_macs": report.structure_threshold}


def kernel_cost(count: int, batch: int) -> dict:
    """Cost of the kernel-sum path of the shipped reference predictor (issue 5, point 10): one pair for
    ResNet-50 (graph call and the full API), and a batch of pairs over ``count`` random nets of the
    reference dataset's sequence (seed 2026) on its three devices. Analysis is not counted: a
    scheduler analyzes each model once."""
    from sniper_generator.spec import materialize, sample_spec
    from sniper_generator.zoo import export_zoo_model
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import kernel_table
    from sniper_onnx.predictors.runtime import distinct_rows, load_predictor, shipped_predictor_path

    predictor = load_predictor(shipped_predictor_path("pcn_reference.onnx"))
    resnet = analyze(export_zoo_model("resnet50", 224, 1, weights=False))
    table, features = kernel_table(resnet.nodes), [resnet.features]
    device = predictor.devices[0]
    one_net, one_dev = predictor.network_matrix(features), predictor.device_vector(device)[None, :]
    predictor.run(one_net, one_dev, [table])
    single_graph = median_seconds(lambda: predictor.run(one_net, one_dev, [table]), 300)
    single_api = median_seconds(lambda: predictor.predict(features, [device], kernel_tables=[table]), 100)
    resnet_merged = distinct_rows(table)
    single_premerged = median_seconds(lambda: predictor.run(one_net, one_dev, [resnet_merged]), 300)
    analyses = [analyze(materialize(sample_spec(2026, i, "mixed"), weights=False)) for i in range(count)]
    tables = [kernel_table(a.nodes) for a in analyses]
    nets = predictor.network_matrix([a.features for a in analyses])
    devices = np.array([predictor.device_vector(d) for d in predictor.devices])
    pick = np.arange(batch) % len(tables)
    merged = [distinct_rows(t) for t in tables]  # what a scheduler can keep per network, made once
    batch_nets, batch_devs = nets[pick], devices[np.arange(batch) % len(devices)]
    shared = [tables[i] for i in pick]  # one table object per network, given for each of its pairs: merged once per call
    copies = [tables[i].copy() for i in pick]  # a fresh object per pair: every pair's table merged in the call
    batched = {name: median_seconds(lambda: predictor.run(batch_nets, batch_devs, given), 5) / batch * 1e3
               for name, given in (("shared", shared), ("premerged", [merged[i] for i in pick]), ("copies", copies))}
    pcn_batched = median_seconds(lambda: predictor.run(batch_nets, batch_devs), 5) / batch
    return {"predictor": predictor.source, "resnet50_kernel_rows": len(table),
            "resnet50_distinct_rows": len(distinct_rows(table)),
            "single_pair_graph_ms": single_graph * 1e3, "single_pair_api_ms": single_api * 1e3,
            "single_pair_graph_premerged_ms": single_premerged * 1e3,
            "batched_pairs": batch, "batched_networks": len(tables),
            "kernel_rows_median": float(np.median([len(t) for t in tables])),
            "distinct_rows_median": float(np.median([len(m) for m in merged])),
            "batched_per_pair_ms": batched["shared"], "batched_per_pair_premerged_ms": batched["premerged"],
            "batched_per_pair_merging_every_pair_ms": batched["copies"],
            "batched_per_pair_without_tables_ms": pcn_batched * 1e3}


def _device_index(data, name: str) -> int:
    hits = [i for i, device in enumerate(data.device_names) if device == name] or \
           [i for i, device in enumerate(data.device_names) if name.lower() in device.lower()]
    if len(hits) != 1:
        raise SystemExit(f"--new-device {name!r}: matches {len(hits)} of the table's devices "
                         f"({'; '.join(data.device_names)}); give one device's name or a unique part of it")
    return hits[0]


def _without_device(data, target: int, keep_pairs: np.ndarray):
    """The table as if ``target`` had never been profiled: its row, its pairs and pairs outside ``keep_pairs`` gone."""
    keep = keep_pairs & (data.pair_device != target)
    others = [d for d in range(len(data.device_names)) if d != target]
    remap = np.full(len(data.device_names), -1)
    remap[others] = np.arange(len(others))
    return type(data)(**{**data.__dict__, "device_names": [data.device_names[d] for d in others],
                         "device_matrix": data.device_matrix[others], "pair_network": data.pair_network[keep],
                         "pair_device": remap[data.pair_device[keep]], "seconds": data.seconds[keep]})


def new_device_accuracy(table: str, device: str, samples: int, epochs: int, seed: int, draws: int,
                        hindsight: bool = False, members: Optional[int] = None) -> dict:
    """Issue 5, point 9 on the reference dataset: the PCN is trained on the random nets of every
    other device, then adapted to ``device`` with ``samples`` of its random nets (``draws`` seeded
    draws of them). Reported: the device's other random nets and the zoo (never used), beside a
    log-log FLOPs fit on the same samples. ``hindsight`` adds, for each draw, the candidate that
    would have done best on the device's other random nets: a ceiling for the choice among the
    candidates, which no user could pick without those measurements."""
    from sniper_onnx.predictors.adapt import adapt_predictor, adaptation_candidates
    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.hwnas import flops_baseline
    from sniper_onnx.predictors.metrics import accuracy_metrics
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.training import train_predictor

    data = load_training_csv(table)
    target = _device_index(data, device)
    names = _network_names(table)
    generated = np.array([names.get(key, key).startswith(GENERATED_PREFIXES) for key in data.network_names])
    train = _without_device(data, target, generated[data.pair_network])
    from sniper_onnx.predictors.kernel_sources import kernel_tables_for
    from sniper_onnx.predictors.kernelnet import KernelNetConfig

    tables, _ = kernel_tables_for(data.network_sources)
    kernel_config = KernelNetConfig(seed=seed)
    if members is not None:
        kernel_config.members = members
    predictor, _ = train_predictor(train, PCNConfig(epochs=epochs, seed=seed), seed=seed,
                                   kernel_config=kernel_config, kernel_tables=tables)
    rows = data.device_rows(target)
    random_rows, zoo_rows = rows[generated[data.pair_network[rows]]], rows[~generated[data.pair_network[rows]]]
    features = [dict(zip(data.network_feature_names, r)) for r in data.network_matrix]
    macs = data.network_matrix[:, data.network_feature_names.index("total_macs")]
    name = data.device_names[target]
    results = []
    for draw in range(draws):
        picked = np.random.default_rng(1000 + draw).choice(random_rows, samples, replace=False)
        nets = data.pair_network[picked]
        adapted, report = adapt_predictor(predictor, name, [features[n] for n in nets], data.seconds[picked],
                                          spec_features=data.device_matrix[target],
                                          kernel_tables=[tables[n] for n in nets])
        baseline = flops_baseline(macs[data.pair_network], data.seconds, picked)
        entry = {"draw": draw, "prior": report.prior, "trimmer_features": report.trimmer_features}
        for group, group_rows in (("random_rest", np.setdiff1d(random_rows, picked)), ("zoo", zoo_rows)):
            group_nets = data.pair_network[group_rows]
            answer = adapted.predict([features[n] for n in group_nets], [name],
                                     kernel_tables=[tables[n] for n in group_nets])
            predicted = answer.seconds()
            measured = data.seconds[group_rows]
            entry[group] = {"sniper": accuracy_metrics(predicted, measured),
                            "flops_loglog": accuracy_metrics(baseline[group_rows], measured)}
        if hindsight:
            candidates = adaptation_candidates(predictor, name, [features[n] for n in nets], data.seconds[picked],
                                               spec_features=data.device_matrix[target],
                                               kernel_tables=[tables[n] for n in nets])
            entry["hindsight"] = _best_in_hindsight(candidates, name, features, tables, data,
                                                    {"random_rest": np.setdiff1d(random_rows, picked), "zoo": zoo_rows})
        results.append(entry)

    def median_of(group: str, method: str, metric: str) -> float:
        return float(np.median([r[group][method][metric] for r in results]))

    summary = {group: {method: {metric: median_of(group, method, metric) for metric in ("mape_pct", "acc10", "spearman")}
                       for method in ("sniper", "flops_loglog")} for group in ("random_rest", "zoo")}
    if hindsight:
        summary["hindsight_mape_pct"] = {group: float(np.median([r["hindsight"][group] for r in results]))
                                         for group in ("random_rest", "zoo")}
    return {"device": name, "trained_on": train.device_names, "samples": samples, "draws": draws, "seed": seed,
            "random_nets": int(len(random_rows)), "zoo_nets": int(len(zoo_rows)),
            "median_over_draws": summary, "per_draw": results}


def _best_in_hindsight(candidates, device: str, features, tables, data, groups: dict) -> dict:
    """The candidate with the lowest MAPE on the device's other random nets, and its MAPE on each group;
    ``candidates`` lists every candidate with its leave-one-out score and MAPEs."""
    from sniper_onnx.predictors.metrics import accuracy_metrics

    def mape(adapted, rows) -> float:
        nets = data.pair_network[rows]
        predicted = adapted.predict([features[n] for n in nets], [device], kernel_tables=[tables[n] for n in nets]).seconds()
        return accuracy_metrics(predicted, data.seconds[rows])["mape_pct"]

    scored = [{"prior": prior, "loo_rmse_log": score, **{group: mape(adapted, rows) for group, rows in groups.items()}}
              for prior, score, adapted in candidates]
    best = min(scored, key=lambda c: c["random_rest"])
    return {"prior": best["prior"], **{group: best[group] for group in groups}, "candidates": scored}


def _network_names(table: str) -> dict:
    import csv

    with open(table, newline="") as handle:
        return {row.get("network_id", ""): row.get("network_name", "") for row in csv.DictReader(handle)}


def _compare(predictor, data, device: str, rows: np.ndarray, rows_train: np.ndarray, tables=None,
             labels=None, sink=None) -> dict:
    """The predictor as `predict` answers (Structure Checker, kernel sum where it won), the PCN
    alone, a FLOPs-only linear fit and the per-device Bayesian ridge, on the same pairs."""
    from sniper_onnx.predictors.metrics import accuracy_metrics
    from sniper_onnx.predictors.runtime import regression_predict

    macs_col = data.network_feature_names.index("total_macs")
    nets = data.network_matrix[data.pair_network[rows]]
    measured = data.seconds[rows]
    features = [dict(zip(data.network_feature_names, r)) for r in nets]
    table_ = predictor.predict(features, [device],
                               kernel_tables=None if tables is None else [tables[i] for i in data.pair_network[rows]])
    pcn = predictor.run(nets, np.tile(predictor.device_vector(device), (len(nets), 1)))["seconds"]
    a, b = np.polyfit(data.network_matrix[data.pair_network[rows_train], macs_col], data.seconds[rows_train], 1)
    brr = regression_predict(predictor.meta["regression"][device], nets, data.network_feature_names)[0]
    if sink is not None:
        sink.extend((*label, m, row.seconds, row.path) for label, m, row in zip(labels, measured, table_.rows))
    return {"count": int(len(rows)),
            "sniper": accuracy_metrics(table_.seconds(), measured),
            "paths": {path: sum(row.path == path for row in table_.rows) for path in {row.path for row in table_.rows}},
            "pcn_only": accuracy_metrics(pcn.astype(np.float64), measured),
            "flops_linear": accuracy_metrics(np.maximum(a * nets[:, macs_col] + b, 1e-6), measured),
            "bayesian_ridge": accuracy_metrics(np.maximum(brr, 1e-6), measured)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictor", default=None)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--cpu-dataset", type=int, default=0, help="profile this many generated nets first")
    parser.add_argument("--out", default="/tmp/sniper_cpu_dataset.csv")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--table", default=None, help="a `db export` CSV (e.g. the reference dataset's train.csv): "
                        "train on random nets, report held-out random nets and the zoo")
    parser.add_argument("--max-train", type=int, default=0, help="with --table: train on at most this many random nets")
    parser.add_argument("--seed", type=int, default=0, help="with --table: training seed (PCN, kernel sum, validation split)")
    parser.add_argument("--per-network", default="", metavar="CSV", help="with --table: write every evaluated pair here")
    parser.add_argument("--train-without", action="append", default=[], metavar="PREFIX",
                        help="with --table: leave networks whose name starts with PREFIX out of training "
                        "(e.g. cnn-wide-), same test nets")
    parser.add_argument("--expectile", type=float, default=None,
                        help="with --table: the kernel sum's expectile loss (default 0.3; 0.5 is the mean squared error)")
    parser.add_argument("--ship", default=None, metavar="TABLE",
                        help="train on every network of TABLE (the reference dataset's train.csv) and write "
                        "sniper_onnx/data/pcn_reference.onnx")
    parser.add_argument("--kernel-members", type=int, default=None,
                        help="with --table (and --new-device): kernel nets of consecutive seeds, averaged (default: KernelNetConfig.members, 3)")
    parser.add_argument("--no-kernel-network-context", action="store_true",
                        help="with --table: kernel nets that do not see each network's size (the default before "
                             "2026-11-29 13:40 UTC; KernelNetConfig.network_context)")
    parser.add_argument("--no-call-cost", action="store_true",
                        help="with --table: kernel nets without a cost per call (the default before 2026-11-29 "
                             "23:00 UTC; KernelNetConfig.call_cost)")
    parser.add_argument("--save-predictor", default="", metavar="PATH", help="with --table: save the predictor trained on the split")
    parser.add_argument("--kernel-cost", action="store_true", help="cost of the shipped reference predictor's kernel-sum path")
    parser.add_argument("--new-device", default=None, metavar="NAME",
                        help="with --table: leave this device out, adapt with --samples of its random nets (point 9)")
    parser.add_argument("--samples", type=int, default=10, help="with --new-device: measurements to adapt with")
    parser.add_argument("--draws", type=int, default=5, help="with --new-device: seeded draws of the samples")
    parser.add_argument("--hindsight", action="store_true",
                        help="with --new-device: also the best candidate in hindsight for each draw (a ceiling)")
    args = parser.parse_args()
    if args.kernel_cost:
        print(json.dumps(kernel_cost(200, args.batch), indent=1))
        return
    if args.ship:
        print(json.dumps(ship_reference_predictor(args.ship, args.epochs), indent=1))
        return
    if args.table and args.new_device:
        print(json.dumps(new_device_accuracy(args.table, args.new_device, args.samples, args.epochs, args.seed,
                                             args.draws, args.hindsight, args.kernel_members), indent=1))
        return
    if args.table:
        print(json.dumps(cpu_accuracy(args.table, args.epochs, args.max_train, args.seed, args.per_network,
                                      args.expectile, args.train_without, args.kernel_members,
                                      args.save_predictor, network_context=not args.no_kernel_network_context,
                                      call_cost=not args.no_call_cost), indent=1))
        return
    if args.cpu_dataset:
        import os

        if not os.path.exists(args.out):
            profile_cpu_dataset(args.cpu_dataset, args.out)
        print(json.dumps(cpu_accuracy(args.out, args.epochs), indent=1))
        return

    import onnxruntime

    from sniper_generator.nasbench201 import build_nasbench201, load_feature_table
    from sniper_onnx.predictors import load_predictor

    predictor = load_predictor(args.predictor)
    archs, matrix, names = load_feature_table()
    order = [names.index(n) for n in predictor.network_feature_names]
    rows = matrix[:, order]
    device = predictor.devices[0]
    vector = predictor.device_vector(device)
    one_net, one_dev = rows[:1], vector[None, :]
    predictor.run(one_net, one_dev)  # session creation is a one-off, not per prediction
    single_graph = median_seconds(lambda: predictor.run(one_net, one_dev), 500)
    features = [dict(zip(predictor.network_feature_names, rows[0]))]
    single_api = median_seconds(lambda: predictor.predict(features, [device]), 300)
    batch_idx = np.arange(args.batch) % len(rows)
    devices = np.array([predictor.device_vector(d) for d in predictor.devices])
    batch_nets, batch_devs = rows[batch_idx], devices[np.arange(args.batch) % len(devices)]
    batched = median_seconds(lambda: predictor.run(batch_nets, batch_devs), 7) / args.batch

    model = build_nasbench201(archs[0]).SerializeToString()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    name = session.get_inputs()[0].name
    session.run(None, {name: x})
    measure = median_seconds(lambda: session.run(None, {name: x}), 50)
    print(json.dumps({
        "predictor": predictor.source,
        "single_pair_graph_ms": single_graph * 1e3,
        "single_pair_predict_api_ms": single_api * 1e3,
        "batched_per_pair_ms": batched * 1e3,
        "batch": args.batch,
        "measure_nb201_onnxruntime_cpu_1thread_ms": measure * 1e3,
        "measure_over_single_prediction": measure / single_graph,
    }, indent=1))


if __name__ == "__main__":
    main()
