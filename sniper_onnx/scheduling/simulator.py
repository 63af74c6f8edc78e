"""A discrete-event simulator of immediate-dispatch scheduling on heterogeneous devices.

Why a hand-written heap loop and not SimPy: the only events are arrivals (already sorted, read
with a cursor) and completions (a binary heap keyed by time, then by a sequence number so equal
times resolve the same way on every run). That is all a non-preemptive dispatcher needs; it costs
O(log n) per event, has no time-step error, and avoids SimPy's per-event generator overhead, which
matters for the 100,000-task runs. At equal times completions go first, so a device freed at t can
take a task arriving at t.

The engine owns only time and the devices' true run times; the policy, its queues and the view it
reads live in :class:`~sniper_onnx.scheduling.state.DispatchState`, which a real dispatcher reuses.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from sniper_onnx.scheduling.metrics import Metrics, compute_metrics
from sniper_onnx.scheduling.platform import Platform
from sniper_onnx.scheduling.policies import Policy, make_policy
from sniper_onnx.scheduling.state import FIRST, DispatchState
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
    """Owns the clock and the devices; the policy and its queues live in :class:`DispatchState`."""

    def __init__(self, platform: Platform, policy: Policy, tasks: list[Task], seed: int) -> None:
        self.platform = platform
        self.tasks = tasks
        self.state = DispatchState(platform, policy)
        self.device_type = self.state.device_type
        n = len(self.device_type)
        self._true_per_device = [row[self.device_type] for row in platform.true_times]
        self._running: list[tuple | None] = [None] * n
        self._completions: list[tuple[float, int, int]] = []
        self._seq = 0
        self._pending: dict[int, list[Task]] = {}
        self._probing: dict[int, set[int]] = {}
        self._probes_on = [0] * n  # measurement runs queued or running, per device
        self._probe_rng = np.random.default_rng(seed + PROBE_SEED_OFFSET)
        self._noise_sigma = _noise_sigma(tasks)
        self._queued_true = np.zeros(n)  # real seconds of queued work, for the load metric
        self._running_until = np.zeros(n)
        self._load_std_sum = 0.0
        count = len(tasks)
        self.schedule = Schedule(
            device=np.full(count, -1), start=np.full(count, np.nan), end=np.full(count, np.nan),
            busy_seconds=np.zeros(n),
        )
        self._index = {id(task): i for i, task in enumerate(tasks)}

    @property
    def now(self) -> float:
        return self.state.now

    def run(self) -> Schedule:
        arrivals = sorted(self.tasks, key=lambda task: task.arrival)
        cursor, total = 0, len(arrivals)
        completions = self._completions
        while cursor < total or completions:
            if completions and (cursor >= total or completions[0][0] <= arrivals[cursor].arrival):
                time, _, device = heapq.heappop(completions)
                self.state.now = time
                self._complete(device)
            else:
                task = arrivals[cursor]
                cursor += 1
                self.state.now = task.arrival
                self._sample_load()
                self._arrive(task)
        self.schedule.load_std = self._load_std_sum / max(total, 1)
        return self.schedule

    def _sample_load(self) -> None:
        """What an arriving task sees: with Poisson arrivals this is also the time average (PASTA)."""
        backlog = np.maximum(self._running_until - self.now, 0.0)
        backlog += self._queued_true
        n = len(backlog)
        mean = float(backlog.sum()) / n
        # E[x^2] - mean^2 with two BLAS-speed reductions: np.std costs ~5x more per call here
        self._load_std_sum += max(float(backlog @ backlog) / n - mean * mean, 0.0) ** 0.5

    def _arrive(self, task: Task) -> None:
        missing = self.state.missing_types(task.model)
        if missing:
            self._pending.setdefault(task.model, []).append(task)
            self._start_probes(task.model, missing)
            return
        self._dispatch(task)

    def _dispatch(self, task: Task) -> None:
        device = self.state.submit(task)
        self._queued(device, task)

    def _queued(self, device: int, job: Task | Probe) -> None:
        self._queued_true[device] += self._duration(device, job)
        if self._running[device] is None:
            self._start_next(device)

    def _duration(self, device: int, job: Task | Probe) -> float:
        if isinstance(job, Task):
            return float(self._true_per_device[job.model][device]) * job.noise
        return float(self.platform.true_times[job.model, job.device_type]) * job.noise

    def _start_next(self, device: int) -> None:
        job = self.state.start_next(device)
        duration = self._duration(device, job)
        self._queued_true[device] -= duration
        if not self.state.has_queued(device):
            self._queued_true[device] = 0.0  # drop float residue
        if isinstance(job, Task):
            index = self._index[id(job)]
            self.schedule.device[index] = device
            self.schedule.start[index] = self.now
        self._running[device] = (job, self.now, duration)
        self._running_until[device] = self.now + duration
        self._seq += 1
        heapq.heappush(self._completions, (self.now + duration, self._seq, device))

    def _complete(self, device: int) -> None:
        job, started, duration = self._running[device]
        self._running[device] = None
        self.schedule.busy_seconds[device] += duration
        if isinstance(job, Task):
            self.state.finish(device, job, duration)
            self.schedule.end[self._index[id(job)]] = self.now
        else:
            self._probes_on[device] -= 1
            self.state.finish(device, None, duration)
            self.schedule.probes.append((device, job.model, started, self.now))
            self._finish_probe(job, duration)  # may dispatch, and so start, work on this device
        if self._running[device] is None and self.state.has_queued(device):
            self._start_next(device)

    # --- measurement runs (MVSP) -------------------------------------------------------------
    def _start_probes(self, model: int, missing: list[int]) -> None:
        in_flight = self._probing.setdefault(model, set())
        for device_type in missing:
            if device_type in in_flight:
                continue
            in_flight.add(device_type)
            device = self._probe_device(device_type)
            probe = Probe(model, device_type, _lognormal(self._probe_rng, self._noise_sigma))
            # measurement runs jump every queue: no decision on this model can wait less.
            # Their length is unknown until they end, so they count 0 s in the policy's free_at.
            self._probes_on[device] += 1
            self.state.enqueue(device, FIRST, 0.0, probe)
            self._queued(device, probe)

    def _probe_device(self, device_type: int) -> int:
        """The device of ``device_type`` a measurement run goes to: an idle one if any, else the one
        with the fewest measurement runs queued or running (they count 0 s in ``free_at``, so
        ``free_at`` alone would pile them onto one busy device), then the earliest ``free_at``, then
        the lowest index."""
        members = np.flatnonzero(self.device_type == device_type)
        state = self.state
        return int(min(members, key=lambda d: (state.outstanding[d] > 0, self._probes_on[d],
                                               max(state.free_at[d], self.now), d)))

    def _finish_probe(self, probe: Probe, duration: float) -> None:
        self.state.record_measurement(probe.model, probe.device_type, duration)
        self._probing[probe.model].discard(probe.device_type)
        if not self.state.missing_types(probe.model):
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
    """Run ``tasks`` through ``policy`` on ``platform`` until every task has finished.

    No tasks (a low rate over a short window can draw none for one seed) is an empty result:
    0 tasks and NaN metrics (see :func:`~sniper_onnx.scheduling.metrics.empty_metrics`)."""
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
