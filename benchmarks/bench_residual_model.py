"""Is the kernel sum's error on random nets bias or variance, and what would a network-level
correction buy? (issue 5, point 8: held-out random nets)

    python benchmarks/bench_predictor.py --table data/reference/work/train.csv --seed 0 --save-predictor e0.onnx
    python benchmarks/bench_residual_model.py --table data/reference/work/train.csv --predictor e0.onnx

For every device with at least 100 training nets, the predictor's MAPE and Acc(+-10 %) on its own
training random nets, on the held-out random nets and on the zoo (the split of bench_predictor.py).
Then two corrections of log(measured / predicted), fitted on the training nets only from the
network's Table-1 features (log1p), per-column mean and max of its kernel table, its node count and
the log prediction: a ridge regression (what a Time-Trimmer-like linear slot could hold) and
gradient-boosted trees (scikit-learn HistGradientBoostingRegressor; not exportable to the predictor's
graph as it stands, an upper bound for network-level features). Nothing here is shipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_predictor  # noqa: E402

MIN_TRAINING_NETS = 100


def _score(predicted: np.ndarray, measured: np.ndarray) -> str:
    error = np.abs(predicted / measured - 1)
    return f"{100 * error.mean():5.1f} % / {np.mean(error <= 0.1):.2f}"


def _network_inputs(data, tables) -> np.ndarray:
    """[networks, columns]: log1p features, kernel-table column means and maxima, log node count."""
    width = next(t.shape[1] for t in tables if t is not None)
    summaries = []
    for table in tables:
        logged = np.log1p(np.abs(table)) if table is not None and len(table) else np.zeros((1, width))
        summaries.append(np.concatenate([logged.mean(0), logged.max(0), [np.log(len(logged))]]))
    return np.concatenate([np.log1p(np.maximum(data.network_matrix, 0)), np.array(summaries)], axis=1)


def _input_names(data, width: int) -> list[str]:
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES

    columns = list(KERNEL_FEATURE_NAMES)[:width]
    return [*data.network_feature_names, *(f"mean {c}" for c in columns), *(f"max {c}" for c in columns),
            "log nodes", "log prediction"]


def _importances(trees, z, residual, picked, names, top: int = 6) -> str:
    """The trees' largest permutation importances on the held-out nets."""
    from sklearn.inspection import permutation_importance

    found = permutation_importance(trees, z[picked], residual[picked], n_repeats=5, random_state=0)
    order = np.argsort(-found.importances_mean)[:top]
    return ", ".join(f"{names[i]} {found.importances_mean[i]:.3f}" for i in order)


def residual_report(table: str, predictor_path: str, importance: bool = False) -> list[str]:
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import RidgeCV

    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.kernel_sources import kernel_tables_for
    from sniper_onnx.predictors.runtime import load_predictor

    data = load_training_csv(table)
    names = bench_predictor._network_names(table)
    network_names = [names.get(key, key) for key in data.network_names]
    generated = np.array([name.startswith(bench_predictor.GENERATED_PREFIXES) for name in network_names])
    held_out = ~generated | np.array([bench_predictor._held_out_by_name(name) for name in network_names])
    tables, _ = kernel_tables_for(data.network_sources)
    predictor = load_predictor(predictor_path)
    inputs = _network_inputs(data, tables)
    lines = ["| device | set | n | predictor: MAPE / Acc(±10 %) | + ridge on residuals | + boosted trees on residuals |",
             "|---|---|---|---|---|---|"]
    notes: list[str] = []
    for d, device in enumerate(data.device_names):
        on_device = data.pair_device == d
        train = np.flatnonzero(on_device & generated[data.pair_network] & ~held_out[data.pair_network])
        if len(train) < MIN_TRAINING_NETS:
            continue
        rows = np.flatnonzero(on_device)
        features = [dict(zip(data.network_feature_names, r)) for r in data.network_matrix[data.pair_network[rows]]]
        predicted = np.zeros(len(data.seconds))
        predicted[rows] = predictor.predict(features, [device],
                                            kernel_tables=[tables[n] for n in data.pair_network[rows]]).seconds()
        x = np.column_stack([inputs[data.pair_network], np.log(np.maximum(predicted, 1e-12))])
        mean, std = x[train].mean(0), x[train].std(0) + 1e-9
        z = (x - mean) / std
        residual = np.log(data.seconds / np.maximum(predicted, 1e-12))
        ridge = RidgeCV(alphas=np.logspace(-2, 3, 12)).fit(z[train], residual[train])
        trees = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, max_leaf_nodes=15,
                                              min_samples_leaf=20, random_state=0).fit(z[train], residual[train])
        if importance:
            held = np.flatnonzero(on_device & generated[data.pair_network] & held_out[data.pair_network])
            width = next(t.shape[1] for t in tables if t is not None)
            notes.append(f"{device}: {_importances(trees, z, residual, held, _input_names(data, width))}")
        sets = {"random, trained on": train,
                "random, held out": np.flatnonzero(on_device & generated[data.pair_network] & held_out[data.pair_network]),
                "zoo": np.flatnonzero(on_device & ~generated[data.pair_network])}
        for label, picked in sets.items():
            measured, base = data.seconds[picked], predicted[picked]
            lines.append(f"| {device.replace('|', '/')} | {label} | {len(picked)} | {_score(base, measured)} | "
                         f"{_score(base * np.exp(ridge.predict(z[picked])), measured)} | "
                         f"{_score(base * np.exp(trees.predict(z[picked])), measured)} |")
    return lines + ([""] + ["Permutation importances of the trees on the held-out nets:"] + notes if notes else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="a `db export` CSV (the reference dataset's train.csv)")
    parser.add_argument("--predictor", required=True, help="saved by bench_predictor.py --table T --save-predictor P")
    parser.add_argument("--importance", action="store_true", help="also the trees' permutation importances")
    args = parser.parse_args()
    print("\n".join(residual_report(args.table, args.predictor, args.importance)))


if __name__ == "__main__":
    main()
