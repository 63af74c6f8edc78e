"""A discrete-event simulator of immediate-dispatch scheduling on heterogeneous devices.

Why a hand-written heap loop and not SimPy: the only events are arrivals (already sorted, read
with a cursor) and completions (a binary heap keyed by time, then by a sequence number so equal
times resolve the same way on every run). That is all a non-preemptive dispatcher needs; it costs
O(log n) per event, has no time-step error, and avoids SimPy's per-event generator overhead, which
matters for the 100,000-task runs. At equal times completions go first, so a device freed at t can
take a task arriving at t.

The engine is also the policy's :class:`~sniper_onnx.scheduling.policies.SchedulerView`: it keeps
``free_at`` in the policy's own estimates (re-anchored whenever a task really starts or ends, so
estimate errors do not pile up) and ``outstanding`` as a count.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.metrics import Metrics, compute_metrics
from sniper_onnx.scheduling.platform import Platform
from sniper_onnx.scheduling.policies import Policy, make_policy
from sniper_onnx.scheduling.timesource import make_time_source
from sniper_onnx.scheduling.workload import Task

PROBE_SEED_OFFSET = 7919  # measurement-run noise comes from its own stream, so tasks stay identical


@dataclass
class Probe:
    """A measurement run of ``model`` on one device of ``device_type`` (MVSP's cost)."""

    model: int
    device_type: int
    noise: float


@dataclass
class Schedule:
    """What happened: per task (indexed like the input list) its device, start and end."""

    device: np.ndarray
    start: np.ndarray
    end: np.ndarray
    busy_seconds: np.ndarray  # per device, tasks and measurement runs
    load_std: float = 0.0  # mean over arrivals of the std across devices of their backlog (s)
    probes: list[tuple[int, int, float, float]] = field(default_factory=list)  # device, model, start, end


@dataclass
class SimulationResult:
    policy: str
    metrics: Metrics
    schedule: Schedule


class _Engine:
    def __init__(self, platform: Platform, policy: Policy, tasks: list[Task], seed: int) -> None:
        self.platform = platform
        self.policy = policy
        self.tasks = tasks
        self.time_source = make_time_source(policy.time_source, platform)
        self.device_type = platform.device_type_of()
        n = len(self.device_type)
        self.now = 0.0
        self.free_at = np.zeros(n)
        self.outstanding = np.zeros(n, dtype=np.int64)
        self._true_per_device = [row[self.device_type] for row in platform.true_times]
        self._queues: list[list] = [[] for _ in range(n)]
        self._queued_estimate = [0.0] * n
        self._queued_true = np.zeros(n)  # real seconds of queued work, for the load metric
        self._running_until = np.zeros(n)
        self._load_std_sum = 0.0
        self._running: list[tuple | None] = [None] * n
        self._completions: list[tuple[float, int, int]] = []
        self._seq = 0
        self._pending: dict[int, list[Task]] = {}
        self._probing: dict[int, set[int]] = {}
        self._probe_rng = np.random.default_rng(seed + PROBE_SEED_OFFSET)
        self._noise_sigma = _noise_sigma(tasks)
        count = len(tasks)
        self.schedule = Schedule(
            device=np.full(count, -1), start=np.full(count, np.nan), end=np.full(count, np.nan),
            busy_seconds=np.zeros(n),
        )
        self._index = {id(task): i for i, task in enumerate(tasks)}

    # --- SchedulerView -----------------------------------------------------------------------
    def estimates(self, task: Task) -> np.ndarray:
        return self.time_source.estimates(task)

    # --- event loop --------------------------------------------------------------------------
    def run(self) -> Schedule:
        arrivals = sorted(self.tasks, key=lambda task: task.arrival)
        cursor, total = 0, len(arrivals)
        completions = self._completions
        while cursor < total or completions:
            if completions and (cursor >= total or completions[0][0] <= arrivals[cursor].arrival):
                time, _, device = heapq.heappop(completions)
                self.now = time
                self._complete(device)
            else:
                task = arrivals[cursor]
                cursor += 1
                self.now = task.arrival
                self._sample_load()
                self._arrive(task)
        self.schedule.load_std = self._load_std_sum / max(total, 1)
        return self.schedule

    def _sample_load(self) -> None:
        """What an arriving task sees: with Poisson arrivals this is also the time average (PASTA)."""
        backlog = self._queued_true + np.maximum(self._running_until - self.now, 0.0)
        self._load_std_sum += float(backlog.std())

    def _arrive(self, task: Task) -> None:
        missing = self.time_source.missing_types(task.model)
        if missing:
            self._pending.setdefault(task.model, []).append(task)
            self._start_probes(task.model, missing)
            return
        self._dispatch(task)

    def _dispatch(self, task: Task) -> None:
        device = self.policy.on_arrival(task, self)
        if not (isinstance(device, (int, np.integer)) and 0 <= device < len(self.device_type)):
            raise SniperError(f"policy {self.policy.name!r} chose device {device!r}; it must return 0..n-1")
        estimate = float(self.estimates(task)[device])
        key = float(self.policy.queue_key(task, device, self))
        self._enqueue(device, key, estimate, ("task", task))

    def _enqueue(self, device: int, key: float, estimate: float, job: tuple) -> None:
        self.free_at[device] = max(self.free_at[device], self.now) + estimate
        self.outstanding[device] += 1
        self._queued_estimate[device] += estimate
        duration = self._duration(device, job)
        self._queued_true[device] += duration
        self._seq += 1
        heapq.heappush(self._queues[device], (key, self._seq, estimate, duration, job))
        if self._running[device] is None:
            self._start_next(device)

    def _duration(self, device: int, job: tuple) -> float:
        kind, payload = job
        if kind == "task":
            return float(self._true_per_device[payload.model][device]) * payload.noise
        return float(self.platform.true_times[payload.model, payload.device_type]) * payload.noise

    def _start_next(self, device: int) -> None:
        _, _, estimate, duration, job = heapq.heappop(self._queues[device])
        self._queued_estimate[device] -= estimate
        self._queued_true[device] -= duration
        if not self._queues[device]:  # drop float residue
            self._queued_estimate[device] = 0.0
            self._queued_true[device] = 0.0
        kind, payload = job
        if kind == "task":
            index = self._index[id(payload)]
            self.schedule.device[index] = device
            self.schedule.start[index] = self.now
        self._running[device] = (job, self.now, duration)
        self._running_until[device] = self.now + duration
        self.free_at[device] = self.now + estimate + self._queued_estimate[device]
        self._seq += 1
        heapq.heappush(self._completions, (self.now + duration, self._seq, device))

    def _complete(self, device: int) -> None:
        (kind, payload), started, duration = self._running[device]
        self._running[device] = None
        self.outstanding[device] -= 1
        self.schedule.busy_seconds[device] += duration
        if kind == "task":
            self.schedule.end[self._index[id(payload)]] = self.now
            self.time_source.observe(payload, int(self.device_type[device]), duration)
        else:
            self.schedule.probes.append((device, payload.model, started, self.now))
            self._finish_probe(payload, duration)  # may dispatch, and so start, work on this device
        if self._running[device] is not None:
            return
        if self._queues[device]:
            self._start_next(device)
        else:
            self.free_at[device] = self.now

    # --- measurement runs (MVSP) -------------------------------------------------------------
    def _start_probes(self, model: int, missing: list[int]) -> None:
        in_flight = self._probing.setdefault(model, set())
        for device_type in missing:
            if device_type in in_flight:
                continue
            in_flight.add(device_type)
            members = np.flatnonzero(self.device_type == device_type)
            device = int(members[np.argmin(self.free_at[members])])
            noise = float(_lognormal(self._probe_rng, self._noise_sigma))
            # measurement runs jump every queue: no decision on this model can wait less
            self._enqueue(device, float("-inf"), 0.0, ("probe", Probe(model, device_type, noise)))

    def _finish_probe(self, probe: Probe, duration: float) -> None:
        self.time_source.record(probe.model, probe.device_type, duration)
        self._probing[probe.model].discard(probe.device_type)
        if not self.time_source.missing_types(probe.model):
            for task in self._pending.pop(probe.model, []):
                self._dispatch(task)


def _noise_sigma(tasks: list[Task]) -> float:
    """Measurement runs get the same spread as the tasks' own noise."""
    noise = np.array([task.noise for task in tasks]) if tasks else np.ones(1)
    return float(noise.std() / noise.mean()) if len(noise) > 1 else 0.0


def _lognormal(rng: np.random.Generator, sigma: float) -> float:
    if sigma <= 0:
        return 1.0
    s = float(np.sqrt(np.log1p(sigma * sigma)))
    return float(rng.lognormal(-s * s / 2, s))


def simulate(platform: Platform, policy: Policy | str, tasks: list[Task], seed: int = 0) -> SimulationResult:
    """Run ``tasks`` through ``policy`` on ``platform`` until every task has finished."""
    if not tasks:
        raise SniperError("no tasks to simulate; raise the rate or duration, or give a non-empty trace")
    policy = make_policy(policy) if isinstance(policy, str) else policy
    engine = _Engine(platform, policy, tasks, seed)
    schedule = engine.run()
    return SimulationResult(policy.name, compute_metrics(platform, tasks, schedule), schedule)


def schedule_violations(tasks: list[Task], schedule: Schedule, platform: Platform) -> list[str]:
    """Broken invariants of a finished schedule (empty when sound): every task ran exactly once,
    never before it arrived, for its true duration, and no device ran two jobs at once."""
    problems = []
    if np.isnan(schedule.start).any() or np.isnan(schedule.end).any() or (schedule.device < 0).any():
        problems.append("some task never ran")
    for i, task in enumerate(tasks):
        if schedule.start[i] < task.arrival - 1e-12:
            problems.append(f"task {task.task_id} started before it arrived")
        expected = platform.true_times[task.model, platform.device_type_of()[schedule.device[i]]] * task.noise
        if not np.isclose(schedule.end[i] - schedule.start[i], expected):
            problems.append(f"task {task.task_id} ran {schedule.end[i] - schedule.start[i]:.6f}s, not {expected:.6f}s")
    jobs = [(int(d), s, e) for d, s, e in zip(schedule.device, schedule.start, schedule.end)]
    jobs += [(d, s, e) for d, _, s, e in schedule.probes]
    jobs.sort()
    for (d1, _, e1), (d2, s2, _) in zip(jobs, jobs[1:]):
        if d1 == d2 and s2 < e1 - 1e-9:
            problems.append(f"device {d1} ran two jobs at once around t={s2:.6f}")
    return problems
