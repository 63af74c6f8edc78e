"""Scheduling evidence (issue 6): the paper reproduction and the simulator's speed.

    .venv/bin/python benchmarks/bench_scheduling.py                 # paper + speed, ~2 min on 2 cores
    .venv/bin/python benchmarks/bench_scheduling.py --part paper --plot /tmp/fig6.png   # ~25 s
    .venv/bin/python benchmarks/bench_scheduling.py --part speed
    .venv/bin/python benchmarks/bench_scheduling.py --part bound    # Sniper's queue bound, held-out seeds
    .venv/bin/python benchmarks/bench_scheduling.py --part predictions  # wrong predictions; LLF vs FIFO
    .venv/bin/python benchmarks/bench_scheduling.py --part idle --reference /tmp/refplat/platform.json
        # Sniper's idle factor, held-out seeds, paper + reference platform (examples/reference_platform.py)

Prints markdown for docs/scheduling.md. Timings are wall-clock medians on whatever machine runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass

import numpy as np

from sniper_onnx.scheduling import load_platform, make_policy, poisson_tasks, run_sweep, simulate
from sniper_onnx.scheduling.policies import PAPER_POLICIES, SniperLLF
from sniper_onnx.scheduling.timesource import make_time_source

POLICIES = ["polling", "edf", "edf-jsq", "jsq", "mvsp-free", "mvsp", "sniper-idle", "sniper", "sniper-static",
            "mct-pred", "mct-oracle"]
RATES = [18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0]


def paper(seeds: int, duration: float, plot: str | None) -> dict:
    platform = load_platform("paper")
    sweep = run_sweep(platform, POLICIES, RATES, list(range(seeds)), duration)
    print(f"## Paper platform, {duration:g} s arrival window, seeds 0..{seeds - 1}\n")
    for metric, digits in (("tps", 2), ("awt", 3), ("load_std", 3), ("deadline_miss_rate", 3)):
        print(f"### {metric}: median (min-max over seeds)\n")
        print("| policy | " + " | ".join(f"T={r:g}" for r in RATES) + " |")
        print("|---|" + "---|" * len(RATES))
        for policy in POLICIES:
            cells = []
            for rate in RATES:
                s = sweep.row(policy, rate).summary[metric]
                cells.append(f"{s.median:.{digits}f} ({s.low:.{digits}f}-{s.high:.{digits}f})")
            print(f"| {policy} | " + " | ".join(cells) + " |")
        print()
    evidence = targets(sweep)
    if plot:
        from sniper_onnx.scheduling.plot import plot_sweep

        paper_view = run_sweep(platform, list(PAPER_POLICIES), RATES,
                               list(range(seeds)), duration)
        plot_sweep(paper_view, plot)
        print(f"plot: {plot}\n")
    return evidence


def per_seed(sweep, metric: str, policy: str, other: str, rate: float) -> list[float]:
    """Per-seed ratio policy/other: both saw the very same tasks, so the ratio is paired."""
    mine = [getattr(run, metric) for run in sweep.row(policy, rate).runs]
    theirs = [getattr(run, metric) for run in sweep.row(other, rate).runs]
    return [a / b for a, b in zip(mine, theirs)]


def describe(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def targets(sweep) -> dict:
    print("### Targets (per-seed paired ratios: median (min-max))\n")
    results = {}
    for sniper in ("sniper", "sniper-idle", "sniper-static"):
        for baseline in ("edf", "polling", "edf-jsq", "jsq", "mct-oracle", "mvsp-free", "mvsp"):
            ratio = per_seed(sweep, "awt", sniper, baseline, 24.0)
            results[f"{sniper}/{baseline} AWT at T=24"] = ratio
        for baseline in ("edf", "edf-jsq"):
            results[f"{sniper}/{baseline} TPS at T=24"] = per_seed(sweep, "tps", sniper, baseline, 24.0)
        for mvsp in ("mvsp-free", "mvsp"):
            gaps = [abs(r - 1) for rate in RATES if rate <= 23 for r in per_seed(sweep, "tps", sniper, mvsp, rate)]
            results[f"{sniper} |TPS/{mvsp}-1| at T<=23"] = gaps
    for name, values in results.items():
        print(f"- {name}: {describe(values)}")
    print()
    return {name: values for name, values in results.items()}


def queue_bound(seeds: range = range(10, 18), duration: float = 120.0) -> dict:
    """Sniper's queue bound against the oracle, on seeds the paper part does not report."""
    platform = load_platform("paper")
    bounds, rates = (1, 2, 4, 1000), (20.0, 23.0, 24.0, 25.0)
    print(f"## Sniper queue bound, seeds {seeds.start}..{seeds.stop - 1} (1000 = no bound)\n")
    print("| bound | " + " | ".join(f"AWT/oracle T={r:g}" for r in rates) + " | response/oracle T=24 |")
    print("|---|" + "---|" * (len(rates) + 1))
    ratios: dict = {b: {r: [] for r in rates} for b in bounds}
    response: dict = {b: [] for b in bounds}
    for rate in rates:
        for seed in seeds:
            tasks = poisson_tasks(platform, rate, duration, seed)
            oracle = simulate(platform, "mct-oracle", tasks, seed).metrics
            for bound in bounds:
                # the bound was chosen (2026-11-27) under the idle-first rule, before the idle factor
                mine = simulate(platform, SniperLLF(queue_bound=bound, idle_factor=math.inf), tasks, seed).metrics
                ratios[bound][rate].append(mine.awt / oracle.awt)
                if rate == 24.0:
                    response[bound].append(mine.mean_response / oracle.mean_response)
    for bound in bounds:
        cells = [describe(ratios[bound][r]) for r in rates]
        print(f"| {bound} | " + " | ".join(cells) + f" | {statistics.median(response[bound]):.3f} |")
    print()
    return {str(b): {str(r): v for r, v in ratios[b].items()} for b in bounds}


IDLE_FACTORS = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, math.inf)


def idle_factor(reference: str, seeds: range = range(10, 18), duration: float = 120.0) -> dict:
    """Sniper's idle factor against the oracle, on seeds the paper part and the reference-platform
    run do not report: the paper platform (T = 20..25, as for the queue bound) and the reference
    platform (T = 300..400; its table's true times as predictions, which `sniper` corrects anyway)."""
    cases = [("paper", load_platform("paper"), (20.0, 23.0, 24.0, 25.0)),
             ("ref", load_platform(reference), (300.0, 350.0, 400.0))]
    awt: dict = {k: {} for k in IDLE_FACTORS}
    miss: dict = {k: {} for k in IDLE_FACTORS}
    response: dict = {k: {} for k in IDLE_FACTORS}
    oracle_miss: dict = {}
    for label, platform, rates in cases:
        for rate in rates:
            cell = f"{label} T={rate:g}"
            oracle_miss[cell] = []
            for k in IDLE_FACTORS:
                awt[k][cell], miss[k][cell], response[k][cell] = [], [], []
            for seed in seeds:
                tasks = poisson_tasks(platform, rate, duration, seed)
                oracle = simulate(platform, "mct-oracle", tasks, seed).metrics
                oracle_miss[cell].append(oracle.deadline_miss_rate)
                for k in IDLE_FACTORS:
                    mine = simulate(platform, SniperLLF(idle_factor=k), tasks, seed).metrics
                    awt[k][cell].append(mine.awt / oracle.awt)
                    miss[k][cell].append(mine.deadline_miss_rate)
                    response[k][cell].append(mine.mean_response / oracle.mean_response)
    cells = list(oracle_miss)
    print(f"## Sniper idle factor, seeds {seeds.start}..{seeds.stop - 1} (inf = the old idle-first rule)\n")
    for title, table in (("mean response / mct-oracle's (the criterion)", response),
                         ("AWT / mct-oracle's", awt)):
        print(f"{title} on the same tasks, median (min-max); geo = geometric mean of the medians\n")
        print("| factor | " + " | ".join(cells) + " | geo |")
        print("|---|" + "---|" * (len(cells) + 1))
        for k in IDLE_FACTORS:
            medians = [statistics.median(table[k][c]) for c in cells]
            geo = math.exp(statistics.fmean(math.log(m) for m in medians))
            print(f"| {k:g} | " + " | ".join(describe(table[k][c]) for c in cells) + f" | {geo:.3f} |")
        print()
    print("deadline miss %, median\n")
    print("| factor | " + " | ".join(cells) + " |")
    print("|---|" + "---|" * len(cells))
    rows = [("mct-oracle", oracle_miss)] + [(f"{k:g}", miss[k]) for k in IDLE_FACTORS]
    for label, table in rows:
        print(f"| {label} | " + " | ".join(f"{100 * statistics.median(table[c]):.2f}" for c in cells) + " |")
    print()
    return {str(k): {"awt_ratio": awt[k], "miss": miss[k], "response_ratio": response[k]} for k in IDLE_FACTORS}


@dataclass
class SniperFifo(SniperLLF):
    """Sniper's dispatch with FIFO queues instead of least laxity (an ablation)."""

    name: str = "sniper-fifo"

    def queue_key(self, task, device, view) -> float:
        return task.arrival


def predictions(seeds: range = range(3), duration: float = 120.0) -> dict:
    """How much the predictions matter: Table 2's, deliberately wrong ones, and no least laxity.

    The online correction (one running ratio per model x device type) sees ~300 finished tasks per
    model in a 120 s window at T = 24, so `sniper` recovers from any consistent error; only
    `sniper-static` (raw predictions) shows what the predictions are worth."""
    platform = load_platform("paper")
    true = platform.true_times
    wrong = true * np.array([2.0, 0.5, 1.0])  # AGX predicted 2x too slow, TX2 2x too fast, NX exact
    random = true * np.random.default_rng(5).uniform(0.3, 3.0, true.shape)
    variants = (("Table 2 Predict/s", platform), ("AGX x2, TX2 x0.5", platform.with_predicted_times(wrong)),
                ("random x0.3-3", platform.with_predicted_times(random)))
    print(f"## Predictions and queue order, seeds {seeds.start}..{seeds.stop - 1}, AWT median (s)\n")
    print("| T | predicted times | sniper-idle | sniper | sniper-static | sniper-fifo | mct-oracle |")
    print("|---|---|---|---|---|---|---|")
    out = {}
    for rate in (20.0, 24.0):
        tasks_by_seed = [poisson_tasks(platform, rate, duration, seed) for seed in seeds]
        oracle = statistics.median(simulate(platform, "mct-oracle", t, s).metrics.awt
                                   for s, t in zip(seeds, tasks_by_seed))
        for label, plat in variants:
            row = {}
            for name, policy in (("sniper-idle", lambda: make_policy("sniper-idle")),
                                 ("sniper", lambda: make_policy("sniper")),
                                 ("sniper-static", lambda: make_policy("sniper-static")),
                                 ("sniper-fifo", SniperFifo),
                                 # the same two under the old idle-first rule: where does the factor act?
                                 ("sniper-static k=inf", lambda: make_policy("sniper-static", math.inf)),
                                 ("sniper-fifo k=inf", lambda: SniperFifo(idle_factor=math.inf))):
                row[name] = statistics.median(simulate(plat, policy(), t, s).metrics.awt
                                              for s, t in zip(seeds, tasks_by_seed))
            row["mct-oracle"] = oracle
            out[f"{rate:g} {label}"] = row
            print(f"| {rate:g} | {label} | {row['sniper-idle']:.3f} | {row['sniper']:.3f} | {row['sniper-static']:.3f} | "
                  f"{row['sniper-fifo']:.3f} | {oracle:.3f} |")
    print("\nThe same under the old idle-first rule (idle factor inf): sniper-static, sniper-fifo AWT\n")
    for key, row in out.items():
        print(f"- T={key}: {row['sniper-static k=inf']:.3f}, {row['sniper-fifo k=inf']:.3f}")
    print()
    return out


@dataclass
class StaticView:
    """A frozen SchedulerView over random state, to time single decisions."""

    now: float
    device_type: np.ndarray
    free_at: np.ndarray
    outstanding: np.ndarray
    source: object

    def estimates(self, task):
        return self.source.estimates(task)


def speed(repeats: int) -> dict:
    platform = load_platform("paper").with_nodes({"AGX": 34, "TX2": 33, "NX": 33})
    rate = 216.0  # ~90% of the 100 nodes' capacity (about 240 tasks/s for this mix)
    tasks = poisson_tasks(platform, rate, 100_000 / rate, seed=0)
    print(f"## Speed: {len(tasks)} tasks, {platform.num_devices} devices, T={rate:g}/s\n")
    print("| policy | simulate (s), median of %d | decision (us), median |" % repeats)
    print("|---|---|---|")
    rng = np.random.default_rng(0)
    results = {}
    for policy_name in ("polling", "jsq", "edf", "mvsp", "sniper", "mct-oracle"):
        walls = []
        for _ in range(repeats):
            start = time.perf_counter()
            simulate(platform, policy_name, tasks)
            walls.append(time.perf_counter() - start)
        decision = decision_time(platform, policy_name, tasks[:20_000], rng)
        results[policy_name] = {"simulate_s": statistics.median(walls), "decision_us": decision}
        print(f"| {policy_name} | {statistics.median(walls):.2f} | {decision:.1f} |")
    print()
    return results


def decision_time(platform, policy_name: str, tasks, rng) -> float:
    """Median wall time of on_arrival + queue_key, one task at a time, 100 busy devices."""
    policy = make_policy(policy_name)
    kind = "predicted" if policy.time_source == "measured" else policy.time_source
    source = make_time_source(kind, platform)  # a measured table would be full by now: use a full one
    n = platform.num_devices
    view = StaticView(10.0, platform.device_type_of(), 10.0 + rng.random(n) * 3, rng.integers(0, 6, n), source)
    samples = []
    for task in tasks:
        start = time.perf_counter_ns()
        device = policy.on_arrival(task, view)
        policy.queue_key(task, device, view)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("all", "paper", "speed", "bound", "predictions", "idle"), default="all")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plot", default=None, help="write the Figure-6-shaped PNG here")
    parser.add_argument("--reference", default=None,
                        help="platform.json from examples/reference_platform.py (for --part idle)")
    parser.add_argument("--json", default=None, help="also write raw results to this JSON file")
    args = parser.parse_args()
    out = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.part in ("all", "paper"):
        out["paper"] = paper(args.seeds, args.duration, args.plot)
    if args.part in ("all", "speed"):
        out["speed"] = speed(args.repeats)
    if args.part == "bound":
        out["bound"] = queue_bound()
    if args.part == "idle":
        if not args.reference:
            parser.error("--part idle needs --reference PLATFORM.json (make it with examples/reference_platform.py)")
        out["idle"] = idle_factor(args.reference)
    if args.part == "predictions":
        out["predictions"] = predictions()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(out, handle, indent=1)


if __name__ == "__main__":
    main()
