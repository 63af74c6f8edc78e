"""Sweeps: several policies x arrival rates x seeds on one platform, summarised per (policy, rate).

Every policy sees the very same tasks for a given (rate, seed) (common random numbers), so
differences between policies are not sampling noise of the workload.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.metrics import SUMMARY_FIELDS, Metrics
from sniper_onnx.scheduling.platform import Platform
from sniper_onnx.scheduling.policies import Policy, make_policy, uses_idle_factor
from sniper_onnx.scheduling.simulator import SimulationResult, simulate
from sniper_onnx.scheduling.workload import DEFAULT_DEADLINE_FACTOR, DEFAULT_NOISE, Task, poisson_tasks

DEFAULT_DURATION = 120.0
# on_run(policy name, rate (None for a trace), seed, tasks, SimulationResult): every run, as it ends
RunCallback = Callable[[str, "float | None", int, "list[Task]", "SimulationResult"], None]
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
            # the names of the devices each run's `utilization` lists, in that order
            "device_names": self.platform.device_names(),
            "rows": [self._row_json(row) for row in self.rows],
        }

    def _row_json(self, row: SweepRow) -> dict:
        """A row, each run with the seed it ran (runs follow ``seeds``; a trace runs its one seed)."""
        data = row.to_json_dict()
        for run, seed in zip(data["runs"], self.seeds):
            run["seed"] = seed
        return data


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


PolicySpec = tuple[str, "Policy | None"]  # a name, and the user's policy object (None: a built-in by name)


def policy_specs(policies: str | Policy | Sequence[str | Policy]) -> list[PolicySpec]:
    """Policies as (name, object or None): built-in names (checked) and user :class:`Policy` objects,
    keyed by their ``.name``. A bare string is one name (not its letters), a bare object one policy."""
    if isinstance(policies, str) or _is_policy(policies):
        policies = [policies]  # type: ignore[list-item]
    specs: dict[str, Policy | None] = {}
    for policy in policies:
        if isinstance(policy, str):
            make_policy(policy)  # raises a SniperError naming the choices
            name, obj = policy, None
        elif _is_policy(policy):
            name, obj = policy.name, policy
        else:
            raise SniperError(f"policy {policy!r}: give a policy name ({', '.join(_builtin_names())}) or an "
                              "object with name, time_source, on_arrival and queue_key (the Policy protocol)")
        if name in specs and specs[name] is not obj:
            raise SniperError(f"policy name {name!r} is given to two different policies; rows are keyed by name, "
                              "give each its own")
        specs[name] = obj  # a name given twice is one row
    if not specs:
        raise SniperError("no policies given; name at least one, e.g. --policies sniper,edf")
    return list(specs.items())


def _builtin_names() -> list[str]:
    from sniper_onnx.scheduling.policies import POLICIES

    return list(POLICIES)


def _is_policy(value: object) -> bool:
    return (isinstance(getattr(value, "name", None), str) and isinstance(getattr(value, "time_source", None), str)
            and callable(getattr(value, "on_arrival", None)) and callable(getattr(value, "queue_key", None)))


def _instance(spec: PolicySpec, idle_factor: float | None) -> Policy:
    """A fresh policy for one run: a built-in made anew, a user's object deep-copied (a policy keeps
    state, a round-robin pointer say, and every run must start from the same one)."""
    name, obj = spec
    if obj is None:
        return make_policy(name, idle_factor)
    try:
        return copy.deepcopy(obj)
    except Exception:  # noqa: BLE001 - an object that cannot be copied runs as it is
        return obj


def _summarise(policy: str, rate: float | None, runs: list[Metrics], idle_factor: float | None = None) -> SweepRow:
    summary = {name: Spread.of([getattr(run, name) for run in runs]) for name in SUMMARY_FIELDS}
    return SweepRow(policy, rate, len(runs), summary, runs, idle_factor)


def _factor_of(spec: PolicySpec, idle_factor: float | None) -> float | None:
    factor = getattr(_instance(spec, idle_factor), "idle_factor", None)
    return float(factor) if isinstance(factor, (int, float)) and not isinstance(factor, bool) else None


def run_sweep(
    platform: Platform,
    policies: str | Policy | Sequence[str | Policy],
    rates: Sequence[float],
    seeds: Sequence[int],
    duration: float = DEFAULT_DURATION,
    noise: float = DEFAULT_NOISE,
    deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
    progress: Callable[[int], None] | None = None,
    idle_factor: float | None = None,
    on_run: RunCallback | None = None,
) -> SweepResult:
    """Simulate each policy at each Poisson rate for each seed. ``progress(n)`` is told of each run.
    ``policies``: built-in names and/or :class:`Policy` objects (rows keyed by ``.name``; each run gets
    a deep copy, so every run starts from the object's state); a bare string is one name.
    ``idle_factor`` overrides the built-in Sniper policies' (see
    :func:`~sniper_onnx.scheduling.policies.make_policy`); a policy object runs as given.
    ``on_run(policy, rate, seed, tasks, result)``, if given, sees every run's
    :class:`~sniper_onnx.scheduling.simulator.SimulationResult` (its per-task schedule included)."""
    specs = policy_specs(policies)
    if not seeds:
        raise SniperError("no seeds; give --seeds N with N >= 1")
    names = tuple(name for name, _ in specs)
    runs: dict[tuple[str, float], list[Metrics]] = {(p, r): [] for p in names for r in rates}
    for rate in rates:
        for seed in seeds:
            tasks = poisson_tasks(platform, rate, duration, seed, noise, deadline_factor)
            for spec in specs:
                result = simulate(platform, _instance(spec, idle_factor), tasks, seed)
                runs[(spec[0], rate)].append(result.metrics)
                if on_run:
                    on_run(spec[0], rate, seed, tasks, result)
                if progress:
                    progress(1)
    rows = [_summarise(p, r, runs[(p, r)], _factor_of(spec, idle_factor)) for spec in specs for p in [spec[0]]
            for r in rates]
    return SweepResult(platform, names, tuple(rates), tuple(seeds), duration, noise, deadline_factor, rows,
                       idle_factor=idle_factor)


def run_trace(
    platform: Platform,
    policies: str | Policy | Sequence[str | Policy],
    tasks: list[Task],
    trace: str | Path,
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
    idle_factor: float | None = None,
    on_run: RunCallback | None = None,
) -> SweepResult:
    """Replay one trace under each policy (names or :class:`Policy` objects, as for :func:`run_sweep`)."""
    specs = policy_specs(policies)
    rows = []
    for spec in specs:
        result = simulate(platform, _instance(spec, idle_factor), tasks, seed)
        if on_run:
            on_run(spec[0], None, seed, tasks, result)
        rows.append(_summarise(spec[0], None, [result.metrics], _factor_of(spec, idle_factor)))
    span = max(t.arrival for t in tasks) - min(t.arrival for t in tasks)
    return SweepResult(platform, tuple(name for name, _ in specs), (), (seed,), span, noise, deadline_factor, rows,
                       trace=str(trace), idle_factor=idle_factor)
