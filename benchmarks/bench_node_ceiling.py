"""How far can an additive per-node model go on 1-thread CPU, optimizations off (issue 5, point 8)?

    OMP_NUM_THREADS=1 python benchmarks/bench_node_ceiling.py --table data/reference/work/train.csv \
        --profiles data/reference/node-profiles-cpu-t1-noopt.jsonl.gz --baseline /tmp/nodeceil/e0.csv \
        [--cache /tmp/nodeceil/tables.pkl] [--variants hgb-log,hgb-rate,hgb-rate-ctx,rf-rate] [--stack] \
        [--reprofile 40] [--learning-curve] [--tree-onnx] [--json OUT.json]

``--baseline`` is the per-network CSV of ``bench_predictor.py --table T --seed 0 --per-network
e0.csv`` (the default kernel sum, trained on whole-network latencies); its predictions are scored on
exactly the nets scored here. Everything is on ``AMD EPYC | cpu fp32 t1 opt-disabled``, where every
layer node is one onnxruntime kernel with an event of its own.

1. **Ceiling of any additive per-node model.** For each of the 388 profiled training random nets
   (``data/reference/node-profiles-cpu-t1-noopt.jsonl.gz``: onnxruntime's per-node kernel times,
   minimum of 5 profiled runs, measured at another time than the stored labels), the sum of its
   nodes' profiled times, less a per-node overhead ``o`` times the node count (what the profiler adds
   per node), is set against the stored label. ``o`` (and in further rows a common scale ``s`` and a
   constant ``c``: ``s * sum - o * nodes + c``) is fitted to the least mean |pred/label - 1|. A model
   that predicted every node's profiled time exactly would score this: it bounds additive models
   that learn node times from these profiles (up to this calibration), not models fitted to the
   labels themselves (the kernel sum), which the labels' own noise bounds instead. For the nets
   below 2 ms it also prints the median share of the label that is the fitted ``o * nodes``.
2. **nn-Meter-style per-node regressors** trained directly on the profiled node times: tree
   ensembles on the kernel row (``KERNEL_FEATURE_NAMES``; plus log2 bytes moved; ``-ctx`` adds the
   network's size, ``NETWORK_CONTEXT_FEATURES``), the target either log node seconds (``-log``) or
   log seconds per unit of work, work = 1 + MACs + 4 * bytes moved (``-rate``; a tree cannot
   extrapolate, so a rate keeps a node larger than any seen in training proportional to its work).
   A network's prediction is ``s * sum - o * nodes``, ``s`` and ``o`` fitted on out-of-fold
   (5-fold by network) sums of the profiled nets. Scored on those nets (out of fold), on seed 0's
   held-out random nets (``bench_predictor``'s ``random_held_out`` group: generated nets whose name
   hashes into the held-out 20 %, not strided or wide) and on the zoo, against the stored labels,
   beside the baseline on the same nets. ``--stack`` also calibrates each variant per kind of kernel
   on the labels of every training net of the device (about 1,830, not only the profiled ones):
   label ~ sum over kinds of s_kind * (predicted time of the net's nodes of that kind) - o_kind *
   (their count) + c, least squares on the relative error (``+stack`` columns). The last table is
   the geometric mean of the baseline's and each per-node model's prediction.
3. ``--reprofile N`` profiles N of the profiled nets again now (same settings as the stored
   profiles: 1 thread, optimizations off, minimum of 5 runs) and reports how well node times and
   profile sums repeat: the noise of the node targets themselves (and of the host right now).
4. ``--learning-curve`` scores rf-rate out of fold on the profiled nets with 2, 5 and 10 folds (by
   network), i.e. trained on about 1/2, 4/5 and 9/10 of them: would more profiled nets help?
5. ``--tree-onnx`` writes the hgb-rate model fitted on all profiled nets as an ONNX-ML
   ``TreeEnsembleRegressor`` by hand (no skl2onnx), runs it with onnxruntime on one thread on the
   held-out random nets' node rows and reports its largest |log time| difference from scikit-learn,
   its size, and its cost: one network's rows (the held-out net of median node count, median of 50
   runs) and all held-out nets in one batch (median of 5 runs, per net).

Kernel tables are re-made from the table's ``network_source`` (generator spec or zoo export) and
cached in ``--cache``. Prints tables (MAPE % / Acc(+-10 %) / Acc(+-5 %)); ``--json`` also writes them.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np

DEVICE = "AMD EPYC | cpu fp32 t1 opt-disabled"
GENERATED_PREFIXES = ("cnn-", "transformer-", "nasbench201-", "tiny-")  # as bench_predictor.py
HELD_OUT_SHARE = 0.2
SIZE_BUCKETS = {"below 2 ms": (0.0, 0.002), "2-20 ms": (0.002, 0.02), "above 20 ms": (0.02, np.inf)}
VARIANTS = ("hgb-log", "hgb-rate", "hgb-rate-ctx", "rf-rate")


def held_out_by_name(name: str) -> bool:
    """bench_predictor._held_out_by_name, copied so this script imports nothing that trains."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < HELD_OUT_SHARE


def metrics(predicted, measured) -> dict:
    relative = np.asarray(predicted, float) / np.asarray(measured, float) - 1.0
    return {"n": int(len(relative)), "mape_pct": float(100 * np.mean(np.abs(relative))),
            "acc10": float(np.mean(np.abs(relative) <= 0.10)), "acc5": float(np.mean(np.abs(relative) <= 0.05)),
            "median_ratio": float(np.median(relative + 1.0))}


def cell(m: dict) -> str:
    return f"{m['mape_pct']:5.1f} / {m['acc10']:.2f} / {m['acc5']:.2f}" if m and m.get("n") else "-"


def load_rows(table: str) -> dict:
    """network_id -> name, source, label, context (the DEVICE's rows of the training table)."""
    from sniper_onnx.predictors.kernelnet import NETWORK_CONTEXT_FEATURES

    csv.field_size_limit(10 ** 9)
    nets = {}
    with open(table, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["device_name"] != DEVICE:
                continue
            name = row["network_name"]
            generated = name.startswith(GENERATED_PREFIXES)
            # the later families are held out apart, as bench_predictor.py reports them
            strided_or_wide = name.startswith(("cnn-strided-", "cnn-wide-", "transformer-torch-", "tiny-"))
            group = ("zoo" if not generated else "random_held_out" if held_out_by_name(name) and not strided_or_wide
                     else "held_out_other" if held_out_by_name(name) else "train")
            nets[row["network_id"]] = {
                "name": name, "source": row["network_source"], "label": float(row["latency_s"]), "group": group,
                "context": np.log2(1.0 + np.array([float(row[f] or 0.0) for f in NETWORK_CONTEXT_FEATURES]))}
    return nets


def load_profiles(path: str) -> list[dict]:
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as handle:
        return [json.loads(line) for line in handle]


def kernel_tables(nets: dict, keys: list[str], cache: str) -> dict:
    """network_id -> kernel table, re-made from the source (cached in ``cache``)."""
    from sniper_onnx.predictors.kernel_sources import kernel_tables_for

    tables = {}
    if cache and Path(cache).exists():
        tables = pickle.loads(Path(cache).read_bytes())
    todo = [k for k in keys if k not in tables]
    if todo:
        start = time.time()
        made, missing = kernel_tables_for([nets[k]["source"] for k in todo])
        tables.update(zip(todo, made))
        print(f"kernel tables: {len(todo)} re-made in {time.time() - start:.0f} s"
              + (f", missing {dict(missing)}" if missing else ""), file=sys.stderr)
        if cache:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            Path(cache).write_bytes(pickle.dumps(tables))
    return tables


def fit_calibration(sums: np.ndarray, counts: np.ndarray, labels: np.ndarray, params: str) -> dict:
    """s * sum - o * nodes + c with the least mean |pred/label - 1|; ``params`` names the free ones."""
    from scipy.optimize import minimize

    def unpack(x):  # o and c are fitted in microseconds, so the simplex moves all three alike
        values = {"s": 1.0, "o": 0.0, "c": 0.0}
        values.update({p: v * (1.0 if p == "s" else 1e-6) for p, v in zip(params, x)})
        return values

    def loss(x):
        v = unpack(x)
        predicted = np.maximum(v["s"] * sums - v["o"] * counts + v["c"], 1e-7)
        return np.mean(np.abs(predicted / labels - 1.0))

    if not params:
        return unpack([])
    best = None
    for o0 in (0.0, 2.0, 5.0):  # the loss is piecewise linear: a few starts
        x0 = np.array([{"s": 1.0, "o": o0, "c": 0.0}[p] for p in params])
        steps = np.array([{"s": 0.05, "o": 0.5, "c": 20.0}[p] for p in params])
        simplex = np.vstack([x0] + [x0 + np.eye(len(params))[i] * steps for i in range(len(params))])
        result = minimize(loss, x0, method="Nelder-Mead",
                          options={"xatol": 1e-4, "fatol": 1e-9, "maxiter": 4000, "initial_simplex": simplex})
        if best is None or result.fun < best.fun:
            best = result
    return unpack(best.x)


def apply(cal: dict, sums, counts) -> np.ndarray:
    return np.maximum(cal["s"] * np.asarray(sums) - cal["o"] * np.asarray(counts) + cal["c"], 1e-7)


def node_features(table: np.ndarray, context: np.ndarray, with_context: bool) -> np.ndarray:
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES

    macs = table[:, KERNEL_FEATURE_NAMES.index("log2_macs")]
    log2_bytes = macs - table[:, KERNEL_FEATURE_NAMES.index("log2_macs_per_byte")]
    columns = [table.astype(np.float64), log2_bytes[:, None]]
    if with_context:
        columns.append(np.repeat(context[None, :], len(table), axis=0))
    return np.concatenate(columns, axis=1)


def log_work(table: np.ndarray) -> np.ndarray:
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES

    macs = table[:, KERNEL_FEATURE_NAMES.index("log2_macs")].astype(np.float64)
    log2_bytes = macs - table[:, KERNEL_FEATURE_NAMES.index("log2_macs_per_byte")]
    return np.log(1.0 + (2.0 ** macs - 1.0) + 4.0 * (2.0 ** log2_bytes - 1.0))


def make_model(variant: str, seed: int):
    if variant.startswith("hgb"):
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(max_iter=600, learning_rate=0.05, max_leaf_nodes=31,
                                             min_samples_leaf=10, l2_regularization=1e-3, random_state=seed)
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=40, min_samples_leaf=3, max_features=0.5, max_samples=0.5, n_jobs=1,
                                 random_state=seed)


class NodeModel:
    """One variant: features, target and the regressor."""

    def __init__(self, variant: str, seed: int):
        self.variant, self.rate = variant, "-rate" in variant
        self.context = variant.endswith("-ctx")
        self.model = make_model(variant, seed)

    def _x(self, tables, contexts):
        return np.concatenate([node_features(t, c, self.context) for t, c in zip(tables, contexts)])

    def fit(self, tables, contexts, times):
        x, y = self._x(tables, contexts), np.log(np.concatenate(times))
        keep = np.isfinite(y)
        if self.rate:
            y = y - np.concatenate([log_work(t) for t in tables])
        self.model.fit(x[keep], y[keep])
        return self

    def predict_nodes(self, tables, contexts) -> list[np.ndarray]:
        x = self._x(tables, contexts)
        y = self.model.predict(x)
        if self.rate:
            y = y + np.concatenate([log_work(t) for t in tables])
        bounds = np.cumsum([0] + [len(t) for t in tables])
        return [np.exp(y[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def stack(model, oof, usable, stack_keys, tables, nets, eval_sets) -> tuple[dict, dict]:
    """Per-kind calibration of a node model on every training net's label: label ~ sum_g s_g * T_g -
    o_g * n_g + c (T_g: the predicted time of the net's nodes of kind g, out of fold for profiled
    nets), least squares on the relative error. Returns its scores and per-net predictions."""
    from sniper_onnx.analysis.kernels import KERNEL_GROUPS

    kinds = len(KERNEL_GROUPS)
    known = dict(zip(usable, oof))
    keys = [k for k in stack_keys if tables.get(k) is not None and len(tables[k])]
    todo = [k for k in keys if k not in known]
    known.update(zip(todo, model.predict_nodes([tables[k] for k in todo], [nets[k]["context"] for k in todo])))

    def design(keys_, preds):
        rows = []
        for k, pred in zip(keys_, preds):
            onehot = tables[k][:, :kinds].astype(np.float64)
            rows.append(np.concatenate([pred @ onehot, -1e-6 * onehot.sum(0), [1e-6]]))
        return np.array(rows)

    labels = np.array([nets[k]["label"] for k in keys])
    a = design(keys, [known[k] for k in keys])
    used = np.abs(a).sum(0) > 0
    coef = np.zeros(a.shape[1])
    coef[used] = np.linalg.lstsq(a[:, used] / labels[:, None], np.ones(len(keys)), rcond=None)[0]
    fitted = np.maximum(a @ coef, 1e-7)
    out = {"training_nets": len(keys), "training_fit": metrics(fitted, labels)}
    per_net = {}
    for group, group_keys in eval_sets.items():
        group_keys = [k for k in group_keys if len(tables[k])]
        if not group_keys:
            continue
        preds = model.predict_nodes([tables[k] for k in group_keys], [nets[k]["context"] for k in group_keys])
        predicted = np.maximum(design(group_keys, preds) @ coef, 1e-7)
        group_labels = np.array([nets[k]["label"] for k in group_keys])
        out[group] = metrics(predicted, group_labels)
        out[group + "_by_size"] = by_size(predicted, group_labels)
        per_net[group] = {nets[k]["name"]: float(x) for k, x in zip(group_keys, predicted)}
    return out, per_net


def reprofile(keys: list[str], stored: dict, nets: dict) -> dict:
    """Profile ``keys`` again as bench_node_supervision.collect did and compare with the stored profiles."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_node_times import profiled_node_seconds

    from sniper_generator import NetSpec, materialize
    from sniper_onnx.analysis import analyze

    ratios, weights, sum_ratios, label_ratios = [], [], [], []
    start = time.time()
    for key in keys:
        model = materialize(NetSpec.from_json_dict(json.loads(nets[key]["source"])["spec"]), weights=True)
        layers = [n for n in analyze(model).nodes if n.is_layer and not n.subgraph]
        measured = profiled_node_seconds(model, 1, "disabled", 5)
        again = np.array([measured.get(n.name, np.nan) for n in layers], dtype=np.float64)
        old = stored[key]
        if len(again) != len(old):
            continue
        ok = np.isfinite(again) & np.isfinite(old)
        ratios.append(again[ok] / old[ok])
        weights.append(old[ok])
        sum_ratios.append(np.nansum(again) / np.nansum(old))
        label_ratios.append(np.nansum(again) / nets[key]["label"])
    r, w = np.concatenate(ratios), np.concatenate(weights)
    sums = np.array(sum_ratios)
    out = {"nets": len(sums), "seconds": time.time() - start, "nodes": int(len(r)),
           "node_median_abs_pct": float(100 * np.median(np.abs(r - 1))),
           "node_time_weighted_abs_pct": float(100 * np.sum(np.abs(r - 1) * w) / w.sum()),
           "node_within_10": float(np.mean(np.abs(r - 1) <= 0.1)),
           "sum_median_ratio": float(np.median(sums)), "sum_mape_pct": float(100 * np.mean(np.abs(sums - 1))),
           "sum_within_5": float(np.mean(np.abs(sums - 1) <= 0.05)), "sum_within_10": float(np.mean(np.abs(sums - 1) <= 0.1)),
           "new_sum_over_label_median": float(np.median(label_ratios))}
    print(f"\n   Re-profiled now ({time.strftime('%H:%M UTC', time.gmtime())}): {out['nets']} nets, {out['nodes']} nodes. Node time "
          f"again / stored: median |r-1| {out['node_median_abs_pct']:.1f} %, time-weighted {out['node_time_weighted_abs_pct']:.1f} %, "
          f"within 10 % {out['node_within_10']:.2f}; profile sum again / stored: median {out['sum_median_ratio']:.3f}, "
          f"mean |r-1| {out['sum_mape_pct']:.1f} %, within 5 % {out['sum_within_5']:.2f}, within 10 % {out['sum_within_10']:.2f}")
    return out


def by_size(predicted, labels) -> dict:
    out = {}
    for bucket, (low, high) in SIZE_BUCKETS.items():
        mask = (labels >= low) & (labels < high)
        if mask.any():
            out[bucket] = metrics(predicted[mask], labels[mask])
    return out


def out_of_fold(variant: str, tables: list, contexts: list, times: list, fold: np.ndarray, seed: int) -> list:
    """Each profiled net's predicted node times from a ``variant`` model trained on the other folds."""
    oof = [None] * len(tables)
    for f in range(int(fold.max()) + 1):
        inside, outside = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        model = NodeModel(variant, seed).fit([tables[i] for i in inside], [contexts[i] for i in inside],
                                             [times[i] for i in inside])
        for i, pred in zip(outside, model.predict_nodes([tables[i] for i in outside], [contexts[i] for i in outside])):
            oof[i] = pred
    return oof


def fold_split(n: int, folds: int, seed: int) -> np.ndarray:
    """The fold of each of ``n`` nets: a seeded permutation, dealt round-robin."""
    return np.random.default_rng(seed).permutation(n) % folds


def overhead_share(cal: dict, counts: np.ndarray, labels: np.ndarray, below_s: float = 0.002) -> dict:
    """Median share of the label that is the fitted per-node overhead o * nodes, for nets below ``below_s``."""
    small = labels < below_s
    return {"nets": int(small.sum()), "o_us": cal["o"] * 1e6, "median_nodes": float(np.median(counts[small])),
            "median_share": float(np.median(cal["o"] * counts[small] / labels[small]))}


def learning_curve(variant: str, tables: list, contexts: list, times: list, counts: np.ndarray, labels: np.ndarray,
                   seed: int, folds_list=(2, 5, 10)) -> dict:
    """``variant`` scored out of fold on the profiled nets (s, o fitted on the out-of-fold sums) with fewer or
    more training nets per fold."""
    out = {}
    for folds in folds_list:
        fold = fold_split(len(tables), folds, seed)
        oof_sums = np.array([p.sum() for p in out_of_fold(variant, tables, contexts, times, fold, seed)])
        cal = fit_calibration(oof_sums, counts, labels, "so")
        out[folds] = {"training_nets": float(np.mean([np.sum(fold != f) for f in range(folds)])),
                      "calibration_so": cal, "profiled_oof": metrics(apply(cal, oof_sums, counts), labels)}
    return out


def hgb_to_onnx(est, n_features: int):
    """A fitted HistGradientBoostingRegressor as an ONNX-ML TreeEnsembleRegressor (float32), written by hand."""
    import onnx
    from onnx import TensorProto, helper

    tree_ids, node_ids, features, values, modes, true_ids, false_ids, missing = [], [], [], [], [], [], [], []
    leaf_tree, leaf_node, leaf_weight = [], [], []
    for t, (predictor,) in enumerate(est._predictors):
        for i, node in enumerate(predictor.nodes):
            tree_ids.append(t)
            node_ids.append(i)
            if node["is_leaf"]:
                modes.append("LEAF")
                features.append(0)
                values.append(0.0)
                true_ids.append(0)
                false_ids.append(0)
                missing.append(0)
                leaf_tree.append(t)
                leaf_node.append(i)
                leaf_weight.append(float(node["value"]))
            else:
                modes.append("BRANCH_LEQ")
                features.append(int(node["feature_idx"]))
                values.append(float(node["num_threshold"]))
                true_ids.append(int(node["left"]))
                false_ids.append(int(node["right"]))
                missing.append(int(node["missing_go_to_left"]))
    node = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", n_targets=1, nodes_treeids=tree_ids,
        nodes_nodeids=node_ids, nodes_featureids=features, nodes_modes=modes, nodes_values=values,
        nodes_truenodeids=true_ids, nodes_falsenodeids=false_ids, nodes_missing_value_tracks_true=missing,
        target_treeids=leaf_tree, target_nodeids=leaf_node, target_ids=[0] * len(leaf_tree),
        target_weights=leaf_weight, base_values=[float(np.ravel(est._baseline_prediction)[0])],
        aggregate_function="SUM", post_transform="NONE")
    graph = helper.make_graph([node], "trees", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n_features])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 9  # the onnxruntime here reads ir_version <= 13
    onnx.checker.check_model(model)
    return model


def tree_onnx_check(node_model: "NodeModel", keys: list, tables: dict, nets: dict) -> dict:
    """Export ``node_model`` (an hgb variant) with hgb_to_onnx, run it with onnxruntime on one thread on the
    node rows of ``keys`` and compare with scikit-learn; time one network's rows and all of them in one batch."""
    import onnxruntime as ort

    est = node_model.model
    rows = [node_features(tables[k], nets[k]["context"], node_model.context).astype(np.float32) for k in keys]
    x = np.concatenate(rows)
    blob = hgb_to_onnx(est, x.shape[1]).SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(blob, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0][:, 0]
    want = est.predict(x.astype(np.float64))
    one = rows[int(np.argsort([len(r) for r in rows])[len(rows) // 2])]  # the net of median node count

    def median_seconds(inputs, repeats):
        spent = []
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, {"x": inputs})
            spent.append(time.perf_counter() - start)
        return float(np.median(spent))

    batch = median_seconds(x, 5)
    return {"trees": int(est.n_iter_), "bytes": len(blob), "nets": len(keys), "rows": int(len(x)),
            "max_abs_log_diff": float(np.max(np.abs(got - want))), "one_net_rows": int(len(one)),
            "one_net_ms": 1e3 * median_seconds(one, 50), "batch_ms": 1e3 * batch, "batch_ms_per_net": 1e3 * batch / len(keys)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="the reference dataset's train.csv")
    parser.add_argument("--profiles", default="data/reference/node-profiles-cpu-t1-noopt.jsonl.gz",
                        help="per-node profiles (bench_node_supervision.py's JSONL, .gz or not)")
    parser.add_argument("--baseline", default="", help="bench_predictor.py --per-network CSV to compare with")
    parser.add_argument("--cache", default="/tmp/nodeceil/tables.pkl", help="pickle of re-made kernel tables ('' : none)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--folds", type=int, default=5, help="folds (by network) for the out-of-fold sums")
    parser.add_argument("--no-zoo", action="store_true", help="skip the zoo (its tables need the zoo exports)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the regressors and the fold split")
    parser.add_argument("--stack", action="store_true",
                        help="also calibrate each variant per kind of kernel on every training net's label "
                             "(s_kind * predicted time of that kind - o_kind * nodes of that kind + c, least squares)")
    parser.add_argument("--reprofile", type=int, default=0,
                        help="profile this many of the profiled nets again now (about 1 s a net) and report how well "
                             "node times and profile sums repeat: the noise floor of the node targets")
    parser.add_argument("--learning-curve", action="store_true",
                        help="also score rf-rate out of fold on the profiled nets with 2, 5 and 10 folds (trained on "
                             "about 1/2, 4/5 and 9/10 of them)")
    parser.add_argument("--tree-onnx", action="store_true",
                        help="also write the hgb-rate model fitted on all profiled nets as an ONNX-ML "
                             "TreeEnsembleRegressor by hand, run it with onnxruntime (1 thread) on the held-out random "
                             "nets' node rows: max |log diff| against scikit-learn, size, time for one net and a batch")
    parser.add_argument("--json", default="", help="also write every number to this JSON file")
    args = parser.parse_args()

    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    nets = load_rows(args.table)
    profiles = [p for p in load_profiles(args.profiles) if p["network_id"] in nets]
    profiled = [p["network_id"] for p in profiles]
    assert all(nets[k]["group"] == "train" for k in profiled), "a profiled net is not a training net"
    held_out = [k for k, v in nets.items() if v["group"] == "random_held_out"]
    zoo = [] if args.no_zoo else [k for k, v in nets.items() if v["group"] == "zoo"]
    stack_keys = [k for k, v in nets.items() if v["group"] == "train"] if args.stack else []
    tables = kernel_tables(nets, list(dict.fromkeys(profiled + held_out + zoo + stack_keys)), args.cache)
    report = {"measured": started, "device": DEVICE, "profiled_nets": len(profiled)}

    # --- 1. the ceiling: profile sums against the labels
    times, usable = [], []
    for p in profiles:
        t = np.array([np.nan if x is None else x for x in p["node_s"]], dtype=np.float64)
        table = tables.get(p["network_id"])
        if table is None or len(table) != len(t):
            continue
        times.append(np.where(t > 0, t, np.nan))
        usable.append(p["network_id"])
    missing_nodes = sum(int(np.isnan(t).sum()) for t in times)
    labels = np.array([nets[k]["label"] for k in usable])
    sums = np.array([np.nansum(t) for t in times])
    counts = np.array([len(t) for t in times], dtype=np.float64)
    print(f"\n{DEVICE}: {len(usable)} profiled nets usable ({len(profiled) - len(usable)} without a matching table), "
          f"{int(counts.sum())} nodes, {missing_nodes} without an event; labels {labels.min() * 1e3:.2f}-"
          f"{labels.max() * 1e3:.0f} ms, median profile sum / label {np.median(sums / labels):.3f}")
    print(f"\n1. Ceiling: profile sum against the stored label ({len(usable)} training nets), MAPE % / Acc(10) / Acc(5)")
    print(f"{'fit':34s} {'params':34s} {'all':20s} " + " ".join(f"{b:20s}" for b in SIZE_BUCKETS))
    report["ceiling"] = {}
    for params in ("", "o", "so", "soc"):
        cal = fit_calibration(sums, counts, labels, params)
        predicted = apply(cal, sums, counts)
        entry = {"params": cal, "all": metrics(predicted, labels), "by_size": by_size(predicted, labels)}
        report["ceiling"][params or "raw"] = entry
        name = {"": "raw sum", "o": "sum - o*nodes", "so": "s*sum - o*nodes", "soc": "s*sum - o*nodes + c"}[params]
        shown = f"s={cal['s']:.3f} o={cal['o'] * 1e6:.2f}us c={cal['c'] * 1e6:.0f}us"
        print(f"{name:34s} {shown:34s} {cell(entry['all']):20s} "
              + " ".join(f"{cell(entry['by_size'].get(b, {})):20s}" for b in SIZE_BUCKETS))
    share = overhead_share(report["ceiling"]["soc"]["params"], counts, labels)
    report["ceiling"]["overhead_share_below_2ms"] = share
    print(f"   below 2 ms ({share['nets']} nets, median {share['median_nodes']:.0f} nodes): o * nodes of the "
          f"s*sum - o*nodes + c fit (o={share['o_us']:.2f}us) is a median {100 * share['median_share']:.0f} % of the label")

    # per kind of kernel: label ~ s * sum - sum_g o_g * nodes_g (or sum_g s_g * sum_g - o_g * nodes_g), a
    # least-squares fit of the relative error, scored out of fold (5 folds by network)
    from sniper_onnx.analysis.kernels import KERNEL_GROUPS

    kinds = len(KERNEL_GROUPS)
    by_kind_n = np.array([tables[k][:, :kinds].sum(0) for k in usable], dtype=np.float64)
    by_kind_t = np.array([np.nan_to_num(t) @ tables[k][:, :kinds] for t, k in zip(times, usable)], dtype=np.float64)
    fold = fold_split(len(usable), args.folds, args.seed)
    for name, design in (("s*sum - o_kind*nodes_kind", np.column_stack([sums, -by_kind_n * 1e-6])),
                         ("s_kind*sum_kind - o_kind*nodes_kind", np.column_stack([by_kind_t, -by_kind_n * 1e-6]))):
        predicted = np.empty(len(usable))
        for f in range(args.folds):
            inside, outside = fold != f, fold == f
            a = design[inside] / labels[inside, None]
            used = np.abs(a).sum(0) > 0
            coef = np.zeros(design.shape[1])
            coef[used] = np.linalg.lstsq(a[:, used], np.ones(inside.sum()), rcond=None)[0]
            predicted[outside] = np.maximum(design[outside] @ coef, 1e-7)
        entry = {"params": f"{design.shape[1]} (out of fold)", "all": metrics(predicted, labels),
                 "by_size": by_size(predicted, labels)}
        report["ceiling"][name] = entry
        print(f"{name:34s} {entry['params']:34s} {cell(entry['all']):20s} "
              + " ".join(f"{cell(entry['by_size'].get(b, {})):20s}" for b in SIZE_BUCKETS))

    if args.reprofile:
        report["reprofile"] = reprofile(usable[:: max(1, len(usable) // args.reprofile)][: args.reprofile],
                                        dict(zip(usable, times)), nets)

    # --- 2. per-node regressors
    contexts = [nets[k]["context"] for k in usable]
    train_tables = [tables[k] for k in usable]
    eval_sets = {"random_held_out": [k for k in held_out if tables.get(k) is not None],
                 "zoo": [k for k in zoo if tables.get(k) is not None]}
    baseline = {}
    if args.baseline:
        with open(args.baseline, newline="") as handle:
            for row in csv.DictReader(handle):
                if row["device"] == DEVICE:
                    baseline[(row["group"], row["network"])] = float(row["predicted_s"])
    report["variants"] = {}
    results, fitted = {}, {}
    for variant in [v for v in args.variants.split(",") if v]:
        start = time.time()
        oof = out_of_fold(variant, train_tables, contexts, times, fold, args.seed)
        # node level, out of fold: time-weighted error of the profiled nodes
        node_true = np.concatenate(times)
        node_pred = np.concatenate(oof)
        ok = np.isfinite(node_true)
        node_rel = node_pred[ok] / node_true[ok] - 1.0
        node_stats = {"nodes": int(ok.sum()), "median_abs_pct": float(100 * np.median(np.abs(node_rel))),
                      "time_weighted_abs_pct": float(100 * np.sum(np.abs(node_rel) * node_true[ok]) / node_true[ok].sum())}
        oof_sums = np.array([p.sum() for p in oof])
        cal_o = fit_calibration(oof_sums, counts, labels, "o")
        cal_so = fit_calibration(oof_sums, counts, labels, "so")
        model = fitted[variant] = NodeModel(variant, args.seed).fit(train_tables, contexts, times)
        entry = {"node_oof": node_stats, "calibration_o": cal_o, "calibration_so": cal_so,
                 "profiled_oof": {"raw": metrics(oof_sums, labels), "o": metrics(apply(cal_o, oof_sums, counts), labels),
                                  "so": metrics(apply(cal_so, oof_sums, counts), labels)},
                 "profiled_oof_by_size": by_size(apply(cal_so, oof_sums, counts), labels)}
        per_net = {}
        for group, keys in eval_sets.items():
            if not keys:
                continue
            preds = model.predict_nodes([tables[k] for k in keys], [nets[k]["context"] for k in keys])
            group_sums = np.array([p.sum() for p in preds])
            group_counts = np.array([len(p) for p in preds], dtype=np.float64)
            group_labels = np.array([nets[k]["label"] for k in keys])
            entry[group] = {}
            for cal_name, cal in (("raw", {"s": 1.0, "o": 0.0, "c": 0.0}), ("o", cal_o), ("so", cal_so)):
                predicted = apply(cal, group_sums, group_counts)
                entry[group][cal_name] = metrics(predicted, group_labels)
                if cal_name == "so":
                    entry[group + "_by_size"] = by_size(predicted, group_labels)
                    per_net[group] = {nets[k]["name"]: float(x) for k, x in zip(keys, predicted)}
        if args.stack:
            stacked, per_net_stacked = stack(model, oof, usable, stack_keys, tables, nets, eval_sets)
            entry["stack"] = stacked
            results[variant + "+stack"] = per_net_stacked
        entry["seconds"] = time.time() - start
        report["variants"][variant] = entry
        results[variant] = per_net
        print(f"  [{variant}: {entry['seconds']:.0f} s]", file=sys.stderr)

    print("\n2. Per-node regressors (node level: out-of-fold |pred/profile - 1|, median and time-weighted)")
    print(f"{'variant':14s} {'node median %':>14s} {'node time-wtd %':>16s}  calibration (s, o) on out-of-fold sums")
    for variant, entry in report["variants"].items():
        cal = entry["calibration_so"]
        print(f"{variant:14s} {entry['node_oof']['median_abs_pct']:14.1f} {entry['node_oof']['time_weighted_abs_pct']:16.1f}"
              f"  s={cal['s']:.3f} o={cal['o'] * 1e6:.2f}us  (o alone: {entry['calibration_o']['o'] * 1e6:.2f}us)")

    print("\n   Networks, MAPE % / Acc(10) / Acc(5) against the stored labels (calibration: raw | o | s,o)")
    header = f"{'variant':14s} {'set':16s} {'n':>4s}  {'raw':20s} {'- o*nodes':20s} {'s*sum - o*nodes':20s}"
    print(header)
    for variant, entry in report["variants"].items():
        print(f"{variant:14s} {'profiled (oof)':16s} {entry['profiled_oof']['raw']['n']:4d}  "
              + " ".join(f"{cell(entry['profiled_oof'][c]):20s}" for c in ("raw", "o", "so")))
        for group in eval_sets:
            if group in entry:
                print(f"{variant:14s} {group:16s} {entry[group]['raw']['n']:4d}  "
                      + " ".join(f"{cell(entry[group][c]):20s}" for c in ("raw", "o", "so")))

    if args.stack:
        print("\n   Calibrated per kind on every training net's label (--stack), MAPE % / Acc(10) / Acc(5)")
        print(f"{'variant':14s} {'training nets (fit)':24s} {'random_held_out':20s} {'zoo':20s}")
        for variant, entry in report["variants"].items():
            st = entry.get("stack", {})
            print(f"{variant:14s} {st.get('training_nets', 0):4d} {cell(st.get('training_fit', {})):19s} "
                  f"{cell(st.get('random_held_out', {})):20s} {cell(st.get('zoo', {})):20s}")

    if baseline:
        print("\n3. Side by side on the same nets (per-node models with s, o; baseline: --baseline's predictions)")
        names = ["baseline"] + list(results)
        print(f"{'set':22s} {'n':>4s}  " + " ".join(f"{n:20s}" for n in names))
        report["side_by_side"], report["per_network"], blends = {}, {}, {}
        for group, keys in eval_sets.items():
            have = [k for k in keys if (group, nets[k]["name"]) in baseline and all(nets[k]["name"] in results[v].get(group, {}) for v in results)]
            if not have:
                continue
            group_labels = np.array([nets[k]["label"] for k in have])
            columns = {"baseline": np.array([baseline[(group, nets[k]["name"])] for k in have])}
            for v in results:
                columns[v] = np.array([results[v][group][nets[k]["name"]] for k in have])
            rows = {"all": {n: metrics(columns[n], group_labels) for n in names}}
            if group == "random_held_out":
                for bucket, (low, high) in SIZE_BUCKETS.items():
                    mask = (group_labels >= low) & (group_labels < high)
                    if mask.any():
                        rows[bucket] = {n: metrics(columns[n][mask], group_labels[mask]) for n in names}
            # the two kinds of error come from different data (whole-net labels, node profiles): blend them
            rows["all"].update({f"blend {v}": metrics(np.sqrt(columns["baseline"] * columns[v]), group_labels)
                                for v in results})
            blends[group] = {v: rows["all"][f"blend {v}"] for v in results}
            report["side_by_side"][group] = rows
            report["per_network"][group] = {nets[k]["name"]: {"label": nets[k]["label"],
                                                              **{n: float(columns[n][i]) for n in names}}
                                            for i, k in enumerate(have)}
            for bucket, row in rows.items():
                label = group if bucket == "all" else f"  {bucket}"
                print(f"{label:22s} {row['baseline']['n']:4d}  " + " ".join(f"{cell(row[n]):20s}" for n in names))
            if group == "zoo":
                print("   zoo, prediction / label:")
                for i, k in enumerate(have):
                    print(f"     {nets[k]['name']:20s} " + " ".join(f"{n}={columns[n][i] / group_labels[i]:.3f}" for n in names))
        if blends:
            print("\n   Geometric mean of the baseline and each per-node model, MAPE % / Acc(10) / Acc(5)")
            print(f"{'variant':22s} " + " ".join(f"{g:20s}" for g in blends))
            for v in results:
                print(f"{v:22s} " + " ".join(f"{cell(blends[g][v]):20s}" for g in blends))
    if args.learning_curve:
        start = time.time()
        curve = report["learning_curve_rf_rate"] = learning_curve("rf-rate", train_tables, contexts, times, counts,
                                                                  labels, args.seed)
        print(f"\n4. Learning curve: rf-rate out of fold on the {len(usable)} profiled nets (s, o fitted on the "
              f"out-of-fold sums), MAPE % / Acc(10) / Acc(5)  [{time.time() - start:.0f} s]")
        print(f"{'folds':>6s} {'training nets':>14s}  {'profiled (oof)':20s} calibration")
        for folds, entry in curve.items():
            cal = entry["calibration_so"]
            print(f"{folds:6d} {entry['training_nets']:14.0f}  {cell(entry['profiled_oof']):20s} "
                  f"s={cal['s']:.3f} o={cal['o'] * 1e6:.2f}us")

    if args.tree_onnx:
        model = fitted.get("hgb-rate") or NodeModel("hgb-rate", args.seed).fit(train_tables, contexts, times)
        keys = [k for k in eval_sets["random_held_out"] if len(tables[k])]
        check = report["tree_onnx_hgb_rate"] = tree_onnx_check(model, keys, tables, nets)
        print(f"\n5. hgb-rate ({check['trees']} trees, fitted on the {len(usable)} profiled nets) as a hand-written ONNX-ML "
              f"TreeEnsembleRegressor, onnxruntime on 1 thread: {check['bytes'] / 1e6:.2f} MB; on the {check['rows']} node "
              f"rows of the {check['nets']} held-out random nets max |log time - scikit-learn's| {check['max_abs_log_diff']:.1e}; "
              f"one net ({check['one_net_rows']} rows, median of 50) {check['one_net_ms']:.3f} ms; all {check['nets']} nets "
              f"in one batch (mean {check['rows'] / check['nets']:.0f} rows, median of 5) {check['batch_ms']:.0f} ms = "
              f"{check['batch_ms_per_net']:.3f} ms a net")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    print(f"\nstarted {started}, finished {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
