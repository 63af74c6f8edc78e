"""Scheduling metrics, defined once so every engine and report means the same thing.

- TPS: completed tasks / makespan, makespan = last completion - first arrival. Arrivals stop at the
  end of the arrival window and the run drains, so below capacity TPS sits just under the arrival
  rate T and above it TPS is the platform's sustained throughput (the paper's "TPS is 22.67 at
  T <= 23" behaves this way; it does not define its window).
- wait = start - arrival (includes any wait for measurement runs); AWT is its mean, with p95/p99.
- response = end - arrival. A deadline miss is end > deadline.
- load std: the load of a device is its backlog, the real seconds of work queued on it plus what
  is left of its running job. At every arrival we take the population standard deviation of the
  backlog across devices and average it over arrivals (for Poisson arrivals that is the time
  average, by PASTA). Balanced queues give ~0; a device type left behind by round robin makes it
  grow with the run. This is our reading of the paper's "standard deviation for load balancing".
- utilization of a device = its busy seconds (tasks and measurement runs) / makespan;
  utilization_std is its standard deviation across devices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from sniper_onnx.scheduling.platform import Platform
    from sniper_onnx.scheduling.simulator import Schedule
    from sniper_onnx.scheduling.workload import Task


@dataclass(frozen=True)
class Metrics:
    tasks: int
    tps: float
    awt: float
    p95_wait: float
    p99_wait: float
    mean_response: float
    deadline_miss_rate: float
    load_std: float
    utilization_std: float
    utilization: tuple[float, ...]
    makespan: float
    measurement_runs: int

    def to_json_dict(self) -> dict:
        data = asdict(self)
        data["utilization"] = list(self.utilization)
        return data


SUMMARY_FIELDS = (
    "tps", "awt", "p95_wait", "p99_wait", "mean_response", "deadline_miss_rate", "load_std", "utilization_std",
)


def empty_metrics(num_devices: int) -> Metrics:
    """A run that had no task (a low rate over a short window can draw none): 0 tasks, every
    metric NaN (null in JSON, "-" in tables), left out of medians over seeds."""
    nan = float("nan")
    return Metrics(tasks=0, tps=nan, awt=nan, p95_wait=nan, p99_wait=nan, mean_response=nan,
                   deadline_miss_rate=nan, load_std=nan, utilization_std=nan,
                   utilization=tuple(nan for _ in range(num_devices)), makespan=0.0, measurement_runs=0)


def compute_metrics(platform: Platform, tasks: list[Task], schedule: Schedule) -> Metrics:
    if not tasks:
        return empty_metrics(len(schedule.busy_seconds))
    arrival = np.array([task.arrival for task in tasks])
    deadline = np.array([task.deadline for task in tasks])
    wait = schedule.start - arrival
    makespan = float(schedule.end.max() - arrival.min())
    # a single instantaneous task would divide by zero; its makespan is its run time anyway
    makespan = max(makespan, 1e-12)
    utilization = schedule.busy_seconds / makespan
    return Metrics(
        tasks=len(tasks),
        tps=len(tasks) / makespan,
        awt=float(wait.mean()),
        p95_wait=float(np.percentile(wait, 95)),
        p99_wait=float(np.percentile(wait, 99)),
        mean_response=float((schedule.end - arrival).mean()),
        deadline_miss_rate=float((schedule.end > deadline).mean()),
        load_std=schedule.load_std,
        utilization_std=float(utilization.std()),
        utilization=tuple(float(u) for u in utilization),
        makespan=makespan,
        measurement_runs=len(schedule.probes),
    )
