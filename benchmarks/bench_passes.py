"""Do several profiler passes make a label reproduce? (`--passes`, docs/profiler.md)

    python benchmarks/bench_passes.py data/reference/work/cpu-t1.jsonl --count 40 --passes 3
    python benchmarks/bench_passes.py data/reference/work/cpu-t2.jsonl --count 40 --passes 3

Draws ``--count`` generated nets from a results file (as bench_label_noise.py does), re-makes them,
and measures them in two independent profiler runs, A and then B, each with ``--passes P`` and the
record's own settings. A net's one-pass label is its pass-1 minimum; its P-pass label is the median
of its P passes' minima (what `db export --statistic min` keeps). Reported for both: how often run
B's label is within +-5 % and +-10 % of run A's, and the median |B/A - 1|. Both are also compared
with the label stored in the results file (measured hours or days earlier). A run's passes follow
one another over the whole list, so A's pass 1 and B's pass 1 are P passes apart in time.

Run it on a quiet machine (nothing else running). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_label_noise import _candidates, _config_of, remade_jobs  # noqa: E402


def _minima_by_pass(path: Path) -> dict[str, list[float]]:
    from sniper_profiler.records import read_records

    minima: dict[str, dict[int, float]] = {}
    for record in read_records(path).records:
        if record.get("status") == "ok":
            minima.setdefault(record["model"]["name"], {})[record.get("pass", 1)] = record["stats"]["min_s"]
    return {name: [by_pass[p] for p in sorted(by_pass)] for name, by_pass in minima.items()}


def _agreement(a: dict[str, float], b: dict[str, float]) -> dict:
    names = sorted(set(a) & set(b))
    ratios = np.array([b[n] / a[n] for n in names])
    deviation = np.abs(ratios - 1.0)
    # a median ratio far from 1 is the host's speed moving between the two, not per-net noise
    return {"nets": len(names), "median_ratio": round(float(np.median(ratios)), 3),
            "within_5_pct": round(float(np.mean(deviation <= 0.05)), 3),
            "within_10_pct": round(float(np.mean(deviation <= 0.10)), 3),
            "median_abs_ratio_minus_1_pct": round(100 * float(np.median(deviation)), 2)}


def _run(jobs: list, config, out: Path) -> float:
    from sniper_profiler import run_profile

    started = time.perf_counter()
    run_profile(jobs, out, config)
    return time.perf_counter() - started


def compare_passes(results: str, count: int, seed: int, passes: int) -> dict:
    import dataclasses

    pool = _candidates(results, "", "generator")
    if not pool:
        raise SystemExit(f"bench_passes: {results} has no usable generator records")
    picked = [pool[i] for i in np.random.default_rng(seed).choice(len(pool), min(count, len(pool)), replace=False)]
    config = dataclasses.replace(_config_of(picked[0]), passes=passes)
    stored = {r["model"]["name"]: r["stats"]["min_s"] for r in picked}
    with tempfile.TemporaryDirectory(prefix="passes-") as scratch:
        jobs = remade_jobs(picked, Path(scratch))
        seconds = {run: _run(jobs, config, Path(scratch) / f"{run}.jsonl") for run in ("A", "B")}
        runs = {run: _minima_by_pass(Path(scratch) / f"{run}.jsonl") for run in ("A", "B")}
    complete = {run: {n: m for n, m in minima.items() if len(m) == passes} for run, minima in runs.items()}
    one = {run: {n: m[0] for n, m in minima.items()} for run, minima in complete.items()}
    median = {run: {n: float(np.median(m)) for n, m in minima.items()} for run, minima in complete.items()}
    return {"results": results, "config": picked[0]["config"].get("config_id"), "nets": len(picked), "passes": passes,
            "wall_s_per_run": {run: round(s, 1) for run, s in seconds.items()},
            "B_against_A": {"one_pass": _agreement(one["A"], one["B"]), f"median_of_{passes}": _agreement(median["A"], median["B"])},
            "A_against_stored": {"one_pass": _agreement(stored, one["A"]), f"median_of_{passes}": _agreement(stored, median["A"])},
            "B_against_stored": {"one_pass": _agreement(stored, one["B"]), f"median_of_{passes}": _agreement(stored, median["B"])}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="a profiler JSONL file (e.g. data/reference/work/cpu-t1.jsonl)")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    if args.passes < 2:
        raise SystemExit("bench_passes: --passes must be at least 2 to compare with one pass")
    print(json.dumps(compare_passes(args.results, args.count, args.seed, args.passes), indent=1))


if __name__ == "__main__":
    main()
