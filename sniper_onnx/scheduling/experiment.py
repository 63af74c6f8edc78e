"""Sweeps: several policies x arrival rates x seeds on one platform, summarised per (policy, rate).

Every policy sees the very same tasks for a given (rate, seed) (common random numbers), so
differences between policies are not sampling noise of the workload.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.metrics import SUMMARY_FIELDS, Metrics
from sniper_onnx.scheduling.platform import Platform
from sniper_onnx.scheduling.policies import make_policy, uses_idle_factor
from sniper_onnx.scheduling.simulator import simulate
from sniper_onnx.scheduling.workload import DEFAULT_DEADLINE_FACTOR, DEFAULT_NOISE, Task, poisson_tasks

DEFAULT_DURATION = 120.0
MAX_RATES = 1000  # a typo'd step (1:2:1e-8) would otherwise build and run 1e8 sweeps


@dataclass(frozen=True)
class Spread:
    """Median and range of one metric over seeds; runs without a value (NaN: a seed that drew no
    task, or no task with a deadline) are left out, and NaN is all that is left if none has one."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        array = np.asarray(values, dtype=float)
        array = array[~np.isnan(array)]
        if not array.size:
            return cls(math.nan, math.nan, math.nan)
        return cls(float(np.median(array)), float(array.min()), float(array.max()))


@dataclass(frozen=True)
class SweepRow:
    policy: str
    rate: float | None  # None for a replayed trace
    seeds: int
    summary: dict[str, Spread]
    runs: list[Metrics] = field(repr=False)
    idle_factor: float | None = None  # the idle factor this policy ran with; None: it has none

    @property
    def empty_runs(self) -> int:
        """Seeds that drew no task at this rate (their metrics are NaN and left out of ``summary``)."""
        return sum(1 for run in self.runs if run.tasks == 0)

    def to_json_dict(self) -> dict:
        return {
            "policy": self.policy,
            "rate": self.rate,
            "seeds": self.seeds,
            "idle_factor": factor_json(self.idle_factor),
            "empty_runs": self.empty_runs,
            "summary": {name: asdict(spread) for name, spread in self.summary.items()},
            "runs": [run.to_json_dict() for run in self.runs],
        }


@dataclass(frozen=True)
class SweepResult:
    platform: Platform
    policies: tuple[str, ...]
    rates: tuple[float, ...]
    seeds: tuple[int, ...]
    duration: float
    noise: float
    deadline_factor: float
    rows: list[SweepRow]
    trace: str | None = None
    idle_factor: float | None = None  # --idle-factor as given; None: each Sniper policy's own default

    @property
    def idle_factor_used(self) -> float | None:
        """The idle factor of the policies that take ``--idle-factor`` (sniper, sniper-static):
        the given one or their default; None when no such policy ran."""
        used = {row.idle_factor for row in self.rows if uses_idle_factor(row.policy)}
        return used.pop() if len(used) == 1 else None

    def row(self, policy: str, rate: float | None) -> SweepRow:
        for row in self.rows:
            if row.policy == policy and (rate is None or math.isclose(row.rate or 0.0, rate)):
                return row
        raise KeyError((policy, rate))

    def to_json_dict(self) -> dict:
        return {
            "platform": self.platform.to_json_dict(),
            "policies": list(self.policies),
            "rates": list(self.rates),
            "seeds": list(self.seeds),
            "duration_s": self.duration,
            "noise": self.noise,
            "deadline_factor": self.deadline_factor,
            "trace": self.trace,
            # the factor the runs really used, not the option (None would hide the default 4);
            # sniper-idle's is always inf whatever sniper's is, so it is also given per policy and row
            "idle_factor": factor_json(self.idle_factor_used),
            "idle_factors": {row.policy: factor_json(row.idle_factor) for row in self.rows
                             if row.idle_factor is not None},
            "rows": [row.to_json_dict() for row in self.rows],
        }


def factor_json(value: float | None) -> float | str | None:
    """An idle factor as JSON: the number, "inf" for infinity (JSON has none, and null would read
    as "not set"), null for a policy without one."""
    if value is None:
        return None
    return "inf" if math.isinf(value) else float(value)


def parse_rates(text: str) -> tuple[float, ...]:
    """``18:25`` (step 1), ``18:25:0.5``, or a comma list ``18,20,24``."""
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1.0
            if step > 0 and math.isfinite(stop) and stop < start:
                raise SniperError(f"--rates {text!r}: STOP {stop:g} is below START {start:g}; rates run "
                                  f"upwards, write {stop:g}:{start:g}")
            if not (step > 0 and stop >= start and math.isfinite(stop)):
                raise ValueError
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            if count > MAX_RATES:
                raise SniperError(f"--rates {text!r}: {count} rates; at most {MAX_RATES}, use a larger STEP")
            rates = tuple(round(start + i * step, 10) for i in range(count))
        else:
            rates = _rate_list(text)
    except ValueError:
        raise SniperError(f"--rates {text!r}: write START:STOP[:STEP] (e.g. 18:25) or a list (18,20,24)") from None
    if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
        raise SniperError(f"--rates {text!r}: every rate must be a positive number of tasks/s")
    if len(rates) > MAX_RATES:
        raise SniperError(f"--rates {text!r}: {len(rates)} rates; at most {MAX_RATES}")
    return tuple(dict.fromkeys(rates))  # a rate given twice is one row, not two rows of the same seeds


def _rate_list(text: str) -> tuple[float, ...]:
    items = text.split(",")
    empty = [str(i + 1) for i, item in enumerate(items) if not item.strip()]
    if empty and text.strip():
        # "18,,24" is more likely a lost rate than a stray comma: running the rest would hide it
        which = f"item {empty[0]} is" if len(empty) == 1 else f"items {', '.join(empty)} are"
        raise SniperError(f"--rates {text!r}: {which} empty; give a number between every two commas "
                          f"(e.g. 18,20,24)")
    return tuple(float(item) for item in items if item.strip())


def _check_policies(policies: Sequence[str]) -> tuple[str, ...]:
    if not policies:
        raise SniperError("no policies given; name at least one, e.g. --policies sniper,edf")
    for name in policies:
        make_policy(name)  # raises a SniperError naming the choices
    return tuple(dict.fromkeys(policies))  # a policy named twice is one row


def _summarise(policy: str, rate: float | None, runs: list[Metrics], idle_factor: float | None = None) -> SweepRow:
    summary = {name: Spread.of([getattr(run, name) for run in runs]) for name in SUMMARY_FIELDS}
    return SweepRow(policy, rate, len(runs), summary, runs, idle_factor)


def _factor_of(policy: str, idle_factor: float | None) -> float | None:
    return getattr(make_policy(policy, idle_factor), "idle_factor", None)


def run_sweep(
    platform: Platform,
    policies: Sequence[str],
    rates: Sequence[float],
    seeds: Sequence[int],
    duration: float = DEFAULT_DURATION,
    noise: float = DEFAULT_NOISE,
    deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
    progress: Callable[[int], None] | None = None,
    idle_factor: float | None = None,
) -> SweepResult:
    """Simulate each policy at each Poisson rate for each seed. ``progress(n)`` is told of each run.
    ``idle_factor`` overrides Sniper's (see :func:`~sniper_onnx.scheduling.policies.make_policy`)."""
    policies = _check_policies(policies)
    if not seeds:
        raise SniperError("no seeds; give --seeds N with N >= 1")
    runs: dict[tuple[str, float], list[Metrics]] = {(p, r): [] for p in policies for r in rates}
    for rate in rates:
        for seed in seeds:
            tasks = poisson_tasks(platform, rate, duration, seed, noise, deadline_factor)
            for policy in policies:
                runs[(policy, rate)].append(simulate(platform, make_policy(policy, idle_factor), tasks, seed).metrics)
                if progress:
                    progress(1)
    rows = [_summarise(p, r, runs[(p, r)], _factor_of(p, idle_factor)) for p in policies for r in rates]
    return SweepResult(platform, policies, tuple(rates), tuple(seeds), duration, noise, deadline_factor, rows,
                       idle_factor=idle_factor)


def run_trace(
    platform: Platform,
    policies: Sequence[str],
    tasks: list[Task],
    trace: str | Path,
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
    idle_factor: float | None = None,
) -> SweepResult:
    """Replay one trace under each policy."""
    policies = _check_policies(policies)
    rows = [_summarise(p, None, [simulate(platform, make_policy(p, idle_factor), tasks, seed).metrics],
                       _factor_of(p, idle_factor)) for p in policies]
    span = max(t.arrival for t in tasks) - min(t.arrival for t in tasks)
    return SweepResult(platform, policies, (), (seed,), span, noise, deadline_factor, rows, trace=str(trace),
                       idle_factor=idle_factor)
