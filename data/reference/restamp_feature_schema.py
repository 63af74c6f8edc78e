"""Re-stamp a training table and its predictors with today's feature schema, after checking that
today's analyzer computes every one of the table's network features as the table holds them.

A feature-schema bump (sniper_onnx/feature_schema.py) marks an analyzer change that alters some
models' features. Predictors trained on a table whose networks the change leaves alone keep
their weights; only the schema they record is stale, and `predict` would warn about it on every
call. This script re-makes each network from its `network_source` (generator spec or zoo name),
analyzes it, compares every feature with the table (relative 1e-9, the CSV's digits) and, only when
all agree, rewrites the table's `feature_schema` column and the predictors' `feature_schema`
metadata. The training-data hash covers features and latencies, not the schema column, so it stays.

    python data/reference/restamp_feature_schema.py data/reference/train.csv.gz \
        --predictor sniper_onnx/data/pcn_reference.onnx [--check-only]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sniper_onnx.predictors.dataset import TrainingData

from rich.progress import track


def _open_text(path: Path, mode: str):
    return gzip.open(path, mode + "t", newline="") if path.suffix == ".gz" else open(path, mode, newline="")


# Layer ops (``AnalysisResult.layer_ops`` keys) whose kernel-table rows changed without a feature
# change: a predictor's kernel sum trained on a network holding one read other rows than today's
# analyzer writes, so its table cannot be re-stamped, only retrained. 2026-11-30: the ops run as
# their function body (GroupNormalization, Mish, HardSwish, Swish), Sqrt's kernel group, and the
# whole-GEMM geometry of 1-D and 3-D convolutions.
# 2026-11-30.3: ops that got a cost (Scatter with a reduction, onnxruntime's transformer fusions,
# ai.onnx.ml's linear ops) and Loops, whose trip counts and scan outputs may now be known.
KERNEL_ROWS_CHANGED = frozenset({"GroupNormalization", "Mish", "HardSwish", "Swish", "Sqrt", "Conv (1-D)", "Conv (3-D)",
                                 "ScatterElements", "ScatterND", "Loop", "com.microsoft::Attention",
                                 "com.microsoft::MultiHeadAttention", "com.microsoft::GroupQueryAttention",
                                 "com.microsoft::EmbedLayerNormalization", "com.microsoft::RotaryEmbedding",
                                 "ai.onnx.ml::LinearClassifier", "ai.onnx.ml::LinearRegressor", "ai.onnx.ml::Scaler",
                                 "ai.onnx.ml::Normalizer"})


def mismatches(data: "TrainingData", limit: int = 10) -> tuple[int, list[str]]:
    """(networks checked, the first ``limit`` disagreements, networks that could not be re-made or
    networks holding a layer op whose kernel rows changed)."""
    from sniper_onnx.analysis import analyze
    from sniper_onnx.predictors.kernel_sources import _model_of

    problems: list[str] = []
    for name, row, source in track(list(zip(data.network_names, data.network_matrix, data.network_sources)),
                                   description="re-analyzing", transient=True):
        model = _model_of(json.loads(source)) if source else None
        if model is None:
            problems.append(f"{name}: cannot be re-made from {source!r}")
            continue
        result = analyze(model)
        features = result.features
        changed = sorted(KERNEL_ROWS_CHANGED & set(result.layer_ops))
        if changed:
            problems.append(f"{name}: holds {', '.join(changed)}, whose kernel-table rows changed: retrain instead")
        for feature, stored in zip(data.network_feature_names, row):
            now = float(features[feature])
            if not math.isclose(now, float(stored), rel_tol=1e-9, abs_tol=1e-12):
                problems.append(f"{name}: {feature} {float(stored)!r} in the table, {now!r} today")
                break
        if len(problems) >= limit:
            break
    return len(data.network_names), problems


def restamp_table(table: Path, schema: str) -> int:
    with _open_text(table, "r") as handle:
        rows = list(csv.reader(handle))
    column = rows[0].index("feature_schema")
    for row in rows[1:]:
        row[column] = schema
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # csv's own \r\n, as `db export` writes the table
    if table.suffix == ".gz":  # mtime 0: the same content gives the same bytes
        table.write_bytes(gzip.compress(buffer.getvalue().encode(), mtime=0))
    else:
        table.write_text(buffer.getvalue())
    return len(rows) - 1


def restamp_predictor(path: Path, schema: str) -> None:
    from sniper_onnx.predictors.runtime import Predictor, load_predictor, save_predictor, set_metadata

    predictor = load_predictor(str(path))
    model = predictor.model.__class__()
    model.CopyFrom(predictor.model)
    set_metadata(model, dict(predictor.meta, feature_schema=schema))
    save_predictor(Predictor(model), path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", type=Path, help="training table (.csv or .csv.gz) with network_source")
    parser.add_argument("--predictor", type=Path, action="append", default=[], help="predictor .onnx (repeatable)")
    parser.add_argument("--check-only", action="store_true", help="compare features, change nothing")
    args = parser.parse_args()
    from sniper_onnx.feature_schema import FEATURE_SCHEMA
    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.runtime import load_predictor

    data = load_training_csv(args.table)
    digest = data.sha256()  # features, devices and latencies, not the schema column
    strangers = [str(p) for p in args.predictor if load_predictor(str(p)).meta.get("training_data_sha256") != digest]
    if strangers:
        print(f"not trained on {args.table} (training_data_sha256 differs), nothing re-stamped: "
              f"{', '.join(strangers)}", file=sys.stderr)
        return 1
    checked, problems = mismatches(data)
    if problems:
        print("features differ, nothing re-stamped:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"{checked} networks: every feature as the table holds it under feature schema {FEATURE_SCHEMA}")
    if args.check_only:
        return 0
    print(f"{args.table}: {restamp_table(args.table, FEATURE_SCHEMA)} rows re-stamped")
    for path in args.predictor:
        restamp_predictor(path, FEATURE_SCHEMA)
        print(f"{path}: re-stamped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
