"""Real dispatch evidence (issue 8, points 5 and 6): Sniper vs Polling vs EDF on two genuinely
different local devices near saturation, the sim-to-real gap, a fault run, and the dispatcher's
own cost per task (embedded and Dask).

    .venv/bin/python benchmarks/bench_dispatch.py [--seeds 3] [--duration 10] [--load 0.85] [--json out.json]

The arrival rate is ``--load`` x the fleet's capacity, measured first: capacity = sum over
devices of 1 / (the device's mean calibrated time over the model mix). Every policy sees the very
same tasks for a seed (paired), so per-seed ratios are meaningful.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from sniper_onnx.dispatch import DispatchTask, Kill, dispatch, load_fleet, poisson_workload

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ("sniper", "polling", "edf", "edf-jsq")
KEYS = ("tps", "awt", "p95_wait", "p99_wait", "mean_response", "deadline_miss_rate")


def capacity(fleet, models) -> tuple[float, dict]:
    probe = [DispatchTask(model, arrival=0.1 * i) for i, model in enumerate(models)]
    report = dispatch(fleet, probe, "polling", calibration_repeats=10)
    per_device = {d.name: 1.0 / float(np.mean([report.calibration[m][d.type] for m in models])) for d in fleet.devices}
    return sum(per_device.values()), report.calibration


def policies_part(fleet, models, rate, args) -> dict:
    runs: dict[str, list[dict]] = {p: [] for p in POLICIES}
    for seed in range(args.seeds):
        tasks = poisson_workload(models, rate, args.duration, seed=seed)
        for policy in POLICIES:
            report = dispatch(fleet, tasks, policy)
            runs[policy].append({"seed": seed, "tasks": len(tasks), "measured": {k: report.measured[k] for k in KEYS},
                                 "simulated": {k: report.simulated[k] for k in KEYS}, "gap": report.gap,
                                 "simulated_calibration": {k: report.simulated_calibration[k] for k in KEYS},
                                 "overhead_us": report.overhead_us, "counts": report.counts.__dict__,
                                 "per_device": {n: i["tasks"] for n, i in report.per_device.items()}})
            m, s = report.measured, report.simulated
            print(f"seed {seed} {policy:8s} tasks {len(tasks)}: measured AWT {m['awt'] * 1e3:7.2f} ms TPS {m['tps']:6.2f} "
                  f"miss {m['deadline_miss_rate']:.3f} | simulated (replay) AWT {s['awt'] * 1e3:7.2f} ms TPS {s['tps']:6.2f} "
                  f"(calibration: AWT {report.simulated_calibration['awt'] * 1e3:7.2f} ms) | "
                  f"overhead median {report.overhead_us['median']:.0f} us", flush=True)
    return runs


def fault_part(fleet, models, rate, args) -> dict:
    tasks = poisson_workload(models, rate, args.duration, seed=100)
    report = dispatch(fleet, tasks, "sniper", kills=[Kill(fleet.devices[-1].name, args.duration / 3)])
    counts = report.counts.__dict__
    print(f"fault run (sniper, SIGKILL {fleet.devices[-1].name} at {args.duration / 3:.1f} s): {counts}", flush=True)
    return {"counts": counts, "failures": report.failures, "measured": {k: report.measured[k] for k in KEYS}}


def dask_part(fleet, models, rate, args) -> dict:
    import distributed

    from sniper_onnx.dispatch import fleet_from_dict

    cluster = distributed.LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address=None)
    agents = [subprocess.Popen([sys.executable, "-m", "sniper_profiler.agent", "--scheduler", cluster.scheduler_address,
                                "--name", d.name, "--host", "127.0.0.1"], stderr=subprocess.DEVNULL)
              for d in fleet.devices]
    try:
        data = {"name": fleet.name + "-dask", "engine": "dask", "scheduler": cluster.scheduler_address,
                "models": {n: ({"zoo": s.zoo, "resolution": s.resolution} if s.zoo else {"file": s.file})
                           for n, s in fleet.models.items()},
                "devices": [{"name": d.name, "type": d.type, "threads": d.threads, "opt_level": d.opt_level}
                            for d in fleet.devices]}
        tasks = poisson_workload(models, rate, args.duration, seed=0)
        out = {}
        for label, which in (("embedded", fleet), ("dask", fleet_from_dict(data))):  # side by side, same tasks
            report = dispatch(which, tasks, "sniper")
            exec_s = float(np.mean([o.seconds for o in report.outcomes if o.seconds is not None]))
            transport = report.measured["mean_response"] - report.measured["awt"] - exec_s
            print(f"{label} sniper seed 0: measured AWT {report.measured['awt'] * 1e3:.2f} ms TPS {report.measured['tps']:.2f}; "
                  f"overhead median {report.overhead_us['median']:.0f} us p95 {report.overhead_us['p95']:.0f} us; "
                  f"round trip beyond session.run {transport * 1e3:.2f} ms/task; {report.counts.__dict__}", flush=True)
            out[label] = {"overhead_us": report.overhead_us, "measured": {k: report.measured[k] for k in KEYS},
                          "simulated": {k: report.simulated[k] for k in KEYS}, "counts": report.counts.__dict__,
                          "transport_ms": transport * 1e3}
        return out
    finally:
        for agent in agents:
            agent.kill()
            agent.wait()
        cluster.close()


def summarize(runs: dict) -> None:
    def med(values):
        return f"{np.median(values):.3g} ({np.min(values):.3g}-{np.max(values):.3g})"

    print("\n| policy | measured AWT ms | simulated AWT ms (replay) | AWT real/sim | simulated AWT ms (calibration) | measured TPS | TPS real/sim | measured miss | overhead median us |")
    print("|---|---|---|---|---|---|---|---|---|")
    for policy, items in runs.items():
        print(f"| {policy} | {med([r['measured']['awt'] * 1e3 for r in items])} | {med([r['simulated']['awt'] * 1e3 for r in items])} | "
              f"{med([r['gap']['awt'] for r in items])} | {med([r['simulated_calibration']['awt'] * 1e3 for r in items])} | "
              f"{med([r['measured']['tps'] for r in items])} | "
              f"{med([r['gap']['tps'] for r in items])} | {med([r['measured']['deadline_miss_rate'] for r in items])} | "
              f"{med([r['overhead_us']['median'] for r in items])} |")
    for other in [p for p in runs if p != "sniper"]:
        ratios = [a["measured"]["awt"] / b["measured"]["awt"] for a, b in zip(runs["sniper"], runs[other])]
        sims = [a["simulated"]["awt"] / b["simulated"]["awt"] for a, b in zip(runs["sniper"], runs[other])]
        print(f"sniper/{other} AWT, paired per seed: measured {med(ratios)}; simulated {med(sims)}")
    seeds = len(runs["sniper"])
    least = [min(runs, key=lambda p: runs[p][i]["measured"]["awt"]) for i in range(seeds)]
    print(f"least measured AWT per seed: {', '.join(least)} (sniper in {least.count('sniper')} of {seeds})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", default=str(ROOT / "examples" / "fleet.yaml"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.85)
    parser.add_argument("--part", choices=("all", "policies", "fault", "dask"), default="all")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    fleet = load_fleet(args.fleet)
    models = list(fleet.models)
    began = time.time()
    total, calibration = capacity(fleet, models)
    rate = args.load * total
    print(f"calibration (s): {json.dumps(calibration)}\ncapacity {total:.1f} tasks/s -> rate {rate:.1f} tasks/s", flush=True)
    out: dict = {"rate": rate, "capacity": total, "calibration": calibration, "args": vars(args)}
    if args.part in ("all", "policies"):
        out["policies"] = policies_part(fleet, models, rate, args)
        summarize(out["policies"])
    if args.part in ("all", "fault"):
        out["fault"] = fault_part(fleet, models, rate, args)
    if args.part in ("all", "dask"):
        out["dask"] = dask_part(fleet, models, rate, args)
    print(f"total wall {time.time() - began:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
