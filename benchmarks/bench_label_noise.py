"""How well a stored latency label agrees with a re-measurement of the same net (issue 4 and 5).

    python benchmarks/bench_label_noise.py data/reference/work/cpu-t2.jsonl --count 24 --seed 5
    python benchmarks/bench_label_noise.py data/reference/work/cpu-t1.jsonl --count 40 \
        --predictions pairs0.csv --device "t1 opt-all"   # also: a predictor's error against each label

Draws ``--count`` generated nets (``--kind zoo``: zoo networks) at random from the results file's successful records (those of
a protocol since found biased, ``contended_sessions``, left out; ``--since`` keeps only records
measured at or after that ISO time), re-makes each from its generator spec or zoo entry with the
weights the collector gave it, measures it again with the record's own settings in a fresh profiler run, and
compares the new minimum with the stored one. A predictor cannot agree with its labels much more
often than the labels agree with themselves, so this bounds the accuracy worth asking for.

``--predictions`` (a ``bench_predictor.py --per-network`` CSV) and ``--device`` draw the nets from
that CSV's held-out random nets (``--kind zoo``: its zoo networks) on the device instead, and also score its predictions against the
stored label, the new one, and the smaller of the two (timing noise only adds time).

Run it on a quiet machine (pause any collector first). Prints one JSON object. ``--rescore
EARLIER.json`` measures nothing and scores ``--predictions`` against the labels an earlier run
measured (data/reference/remeasured-*.json keep two such runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np


def _candidates(results: str, since: str, kind: str) -> list[dict]:
    from sniper_profiler.records import contended_sessions, read_records

    return [r for r in read_records(results).records
            if r.get("status") == "ok" and not contended_sessions(r) and (r.get("model", {}).get("source") or {}).get("kind") == kind
            and r.get("measured_at", "") >= since]


def _model_of(source: dict):
    if source["kind"] == "zoo":
        from sniper_generator.zoo import export_zoo_model

        return export_zoo_model(source["name"], resolution=int(source["resolution"]), batch=int(source.get("batch", 1)), weights=True)
    from sniper_generator import NetSpec, materialize

    return materialize(NetSpec.from_json_dict(source["spec"]), weights=True)


def remade_jobs(records: list[dict], folder: Path) -> list:
    """Each record's network re-made into ``folder``, as a profiler job named like the record."""
    import onnx

    from sniper_profiler import ModelJob

    jobs = []
    for record in records:
        path = folder / f"{record['model']['name']}.onnx"
        onnx.save(_model_of(record["model"]["source"]), str(path))
        jobs.append(ModelJob(str(path), name=record["model"]["name"]))
    return jobs


def _config_of(record: dict):
    from sniper_profiler.config import ProfileConfig

    settings = {k: v for k, v in record["config"].items() if k != "config_id"}
    return ProfileConfig.from_dict(settings)


def _held_out_predictions(path: str, device: str, kind: str) -> dict:
    import csv

    group = "zoo" if kind == "zoo" else "random_held_out"
    with open(path, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["group"] == group and device.lower() in r["device"].lower()]
    if len({r["device"] for r in rows}) != 1:
        raise SystemExit(f"--device {device!r}: matches {len({r['device'] for r in rows})} devices of {path}; give a unique part")
    return {r["network"]: float(r["predicted_s"]) for r in rows}


def _scores(predicted: dict, stored: dict, again: dict) -> dict:
    from sniper_onnx.predictors.metrics import accuracy_metrics

    names = [n for n in predicted if n in again]
    p = np.array([predicted[n] for n in names])
    labels = {"stored": np.array([stored[n] for n in names]), "new": np.array([again[n] for n in names])}
    labels["min_of_both"] = np.minimum(labels["stored"], labels["new"])
    return {label: {k: v for k, v in accuracy_metrics(p, y).items() if k in ("n", "mape_pct", "acc5", "acc10")}
            for label, y in labels.items()}


def remeasure(results: str, count: int, seed: int, since: str = "", kind: str = "generator",
              predictions: str = "", device: str = "") -> dict:
    from sniper_profiler import run_profile

    pool = _candidates(results, since, kind)
    predicted = {}
    if predictions:
        predicted = _held_out_predictions(predictions, device, kind)
        pool = [r for r in pool if r["model"]["name"] in predicted]
    if not pool:
        raise SystemExit(f"bench_label_noise: {results} has no usable {kind} records")
    picked = [pool[i] for i in np.random.default_rng(seed).choice(len(pool), min(count, len(pool)), replace=False)]
    with tempfile.TemporaryDirectory(prefix="label-noise-") as scratch:
        jobs = remade_jobs(picked, Path(scratch))
        out = Path(scratch) / "again.jsonl"
        run_profile(jobs, out, _config_of(picked[0]))
        from sniper_profiler.records import read_records

        again = {r["model"]["name"]: r["stats"] for r in read_records(out).records if r.get("status") == "ok"}
    ratios = [again[r["model"]["name"]]["min_s"] / r["stats"]["min_s"] for r in picked if r["model"]["name"] in again]
    scores = _scores(predicted, {r["model"]["name"]: r["stats"]["min_s"] for r in picked},
                     {name: stats["min_s"] for name, stats in again.items()}) if predicted else None
    deviation = np.abs(np.array(ratios) - 1.0)
    spread = [s["median_s"] / s["min_s"] for s in again.values()]
    return {"results": results, "config": picked[0]["config"].get("config_id"), "kind": kind, "nets": len(ratios),
            "per_net_new_over_stored": {r["model"]["name"]: round(again[r["model"]["name"]]["min_s"] / r["stats"]["min_s"], 3)
                                        for r in picked if r["model"]["name"] in again},
            "median_abs_ratio_minus_1_pct": 100 * float(np.median(deviation)),
            "mean_abs_ratio_minus_1_pct": 100 * float(np.mean(deviation)),
            "within_5_pct": float(np.mean(deviation <= 0.05)), "within_10_pct": float(np.mean(deviation <= 0.10)),
            "median_new_over_stored": float(np.median(ratios)),
            "median_over_min_inside_one_run": statistics.median(spread),
            **({"predictions": predictions, "prediction_against": scores} if scores else {})}


def rescore(results: str, earlier: str, predictions: str, device: str) -> dict:
    """Score ``predictions`` against the new labels an earlier run of this script measured (its
    ``per_net_new_over_stored`` times each net's stored label): a new predictor on the same quiet
    labels, without measuring again."""
    ratios = json.loads(Path(earlier).read_text())["per_net_new_over_stored"]
    stored = {r["model"]["name"]: r["stats"]["min_s"] for r in _candidates(results, "", "generator")}
    predicted = _held_out_predictions(predictions, device, "generator")
    names = [n for n in ratios if n in stored and n in predicted]
    if not names:
        raise SystemExit(f"bench_label_noise: no net of {earlier} is among {predictions}'s held-out nets on {device!r}")
    scores = _scores({n: predicted[n] for n in names}, {n: stored[n] for n in names},
                     {n: stored[n] * ratios[n] for n in names})
    return {"results": results, "rescored_from": earlier, "nets": len(names), "predictions": predictions,
            "prediction_against": scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a profiler JSONL file (e.g. data/reference/work/cpu-t1.jsonl)")
    parser.add_argument("--count", type=int, default=24)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--since", default="", help="only records measured at or after this ISO time")
    parser.add_argument("--kind", default="generator", choices=("generator", "zoo"), help="random nets or zoo networks")
    parser.add_argument("--predictions", default="", help="a bench_predictor.py --per-network CSV: re-measure its held-out random nets "
                        "(with --kind zoo: its zoo networks)")
    parser.add_argument("--device", default="", help="with --predictions: the device (a unique part of its name)")
    parser.add_argument("--rescore", default="", metavar="EARLIER.json",
                        help="measure nothing: score --predictions against the new labels of an earlier run's output")
    args = parser.parse_args()
    if bool(args.predictions) != bool(args.device):
        raise SystemExit("bench_label_noise: give --predictions and --device together")
    if args.rescore:
        if not args.predictions:
            raise SystemExit("bench_label_noise: --rescore needs --predictions and --device")
        print(json.dumps(rescore(args.results, args.rescore, args.predictions, args.device), indent=1))
        return
    print(json.dumps(remeasure(args.results, args.count, args.seed, args.since, args.kind, args.predictions, args.device),
                     indent=1))


if __name__ == "__main__":
    main()
