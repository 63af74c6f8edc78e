"""Scheduling policies behind one interface, shared by the simulator and a real dispatcher.

Every policy is *immediate dispatch*: when a task arrives it is bound to one device
(``on_arrival``) and waits in that device's queue; a device that frees up runs the queued task with
the lowest ``queue_key``. Both calls see only a :class:`SchedulerView`, so the same policy object
can drive the discrete-event simulator here or a dispatcher over real devices (issue 8).

Why a key instead of ``pick_next(queue)``: every order we need (FIFO, earliest deadline, least
laxity) ranks two tasks on one device the same way at any time, because ``now`` is common to both
(laxity = deadline - now - exec, so ordering by deadline - exec is exact). A static key lets an
engine keep each queue as a heap, O(log n) per task even with thousands queued under overload,
where re-scanning a queue on every pick would be O(n). :func:`pick_next` is given for engines that
keep plain lists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Protocol, Sequence

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.workload import Task


class SchedulerView(Protocol):
    """What a policy may look at when it decides; indices run over devices."""

    now: float
    device_type: np.ndarray  # int type index of each device
    free_at: np.ndarray  # when each device clears all work assigned to it, by this policy's estimates
    # (DispatchState also has running_until: the estimated end of each device's running job, inf when idle)
    outstanding: np.ndarray  # tasks assigned to each device and not finished (queued + running)

    def estimates(self, task: Task) -> np.ndarray:
        """Seconds ``task`` would run on each device, from the policy's time source."""
        ...


class Policy(Protocol):
    """A scheduling policy. ``time_source`` names the estimates ``view.estimates`` returns:
    ``none`` (time-unaware), ``true`` (oracle: exact time of this very task), ``predicted``
    (the platform's predictions, e.g. Sniper's PCN), ``predicted-feedback`` (predictions corrected
    by finished tasks), ``measured`` (one real run per model and device type, paid for the first
    time they meet) or ``measured-free`` (the platform's mean true times, known from the start at
    no cost: the paper's MVSP)."""

    name: str
    time_source: str

    def on_arrival(self, task: Task, view: SchedulerView) -> int: ...

    def queue_key(self, task: Task, device: int, view: SchedulerView) -> float: ...


def pick_next(policy: Policy, device: int, queue: Sequence[Task], view: SchedulerView) -> Task:
    """The task a free ``device`` runs next, for engines that keep plain lists."""
    return min(queue, key=lambda task: policy.queue_key(task, device, view))


def least_completion(task: Task, view: SchedulerView, candidates: np.ndarray | None = None) -> int:
    """Device with the earliest estimated completion of ``task``; ties go to the lowest index."""
    completion = np.maximum(view.free_at, view.now) + view.estimates(task)
    if candidates is not None:
        completion = np.where(candidates, completion, np.inf)
    return int(np.argmin(completion))


class _Fifo:
    def queue_key(self, task: Task, device: int, view: SchedulerView) -> float:
        return task.arrival


@dataclass
class Polling(_Fifo):
    """Round robin over devices, FIFO queues; knows nothing of times."""

    name: str = "polling"
    time_source: str = "none"
    _next: int = 0

    def on_arrival(self, task: Task, view: SchedulerView) -> int:
        device = self._next % len(view.device_type)
        self._next = device + 1
        return device


@dataclass
class JoinShortestQueue(_Fifo):
    """Device with the fewest outstanding tasks (a count, not seconds), FIFO queues."""

    name: str = "jsq"
    time_source: str = "none"

    def on_arrival(self, task: Task, view: SchedulerView) -> int:
        return int(np.argmin(view.outstanding))


@dataclass
class EarliestDeadlineFirst(Polling):
    """The paper's EDF baseline: neither time- nor load-aware dispatch (round robin, which is what
    reproduces the load imbalance of its Figure 2), each queue served earliest deadline first."""

    name: str = "edf"

    def queue_key(self, task: Task, device: int, view: SchedulerView) -> float:
        return task.deadline


@dataclass
class EarliestDeadlineFirstJSQ(JoinShortestQueue):
    """A stronger time-unaware EDF: fewest outstanding tasks, queues earliest deadline first."""

    name: str = "edf-jsq"

    def queue_key(self, task: Task, device: int, view: SchedulerView) -> float:
        return task.deadline


@dataclass
class MinimumCompletionTime(_Fifo):
    """Device with the least estimated completion time (``free_at`` + exec), FIFO queues.

    With ``time_source='true'`` it knows each task's exact time (the time-knowledge bound, not an
    AWT bound), with ``'predicted'`` it uses the predictor, with ``'measured-free'`` it is the
    paper's MVSP (measured mean times, measurement cost ignored) and with ``'measured'`` it is
    MVSP paying for its measurements. The cited MVSP [6] is a MILP placement; this is greedy."""

    name: str = "mct"
    time_source: str = "true"

    def on_arrival(self, task: Task, view: SchedulerView) -> int:
        return least_completion(task, view)


IDLE_FACTOR = 4.0  # chosen on held-out seeds 10-17 (docs/scheduling.md, "How the idle factor was chosen")


@dataclass
class SniperLLF:
    """Sniper's "LLF with extra limits" on predicted times (the paper leaves the limits open).

    Dispatch: the device with the least predicted completion time among devices holding fewer than
    ``queue_bound`` outstanding tasks (the default bound 1 means "an idle device"), *unless* that
    device would take more than ``idle_factor`` times as long, counted from now, as the device with
    the least predicted completion overall; then (and when no device is open) that overall best.
    Starting now rather than queueing behind a faster device's backlog is what AWT counts, and a
    short queue carries few prediction errors; but an idle device 4-380x slower than a busy one
    (a CPU beside a GPU) would hold the task, and itself, far longer than the busy one's backlog
    lasts. The override never queues behind an overdue device (busy past its predicted free time:
    its completion is unknown, not "now"). ``idle_factor=inf`` is the old pure idle-first rule
    (``sniper-idle``); 1 is least completion time, except that a tie goes to the open device.
    Queue order: least laxity first, laxity = deadline - now - predicted exec on that device (with
    corrected estimates, the estimate when the task was queued).
    By default the predictions are corrected online by finished tasks (``predicted-feedback``, the
    paper's Time Trimmer); ``sniper-static`` uses the raw predictions.
    """

    name: str = "sniper"
    time_source: str = "predicted-feedback"
    queue_bound: int = 1
    idle_factor: float = IDLE_FACTOR

    def __post_init__(self) -> None:
        self.idle_factor = check_idle_factor(self.idle_factor)

    def on_arrival(self, task: Task, view: SchedulerView) -> int:
        completion = np.maximum(view.free_at, view.now) + view.estimates(task)
        best = int(np.argmin(completion))
        open_devices = view.outstanding < self.queue_bound
        if not open_devices.any():
            return best
        candidate = int(np.argmin(np.where(open_devices, completion, np.inf)))
        if candidate == best or math.isinf(self.idle_factor):
            return candidate
        if _overdue(view, best):
            # The best device is still running past the time its estimates said it would be free
            # (a task slower than predicted: noise, or a throttled, mis-predicted or hung device).
            # max(free_at, now) counts it as free this instant, which is the one thing known to be
            # false, and how much longer it needs is unknown; queueing behind it would stake the
            # task on an unbounded wait, so take the device that can start now.
            return candidate
        # both counted from now: how long until the open device, and the best one, would finish it
        if completion[candidate] - view.now <= self.idle_factor * (completion[best] - view.now):
            return candidate
        return best

    def queue_key(self, task: Task, device: int, view: SchedulerView) -> float:
        return task.deadline - float(view.estimates(task)[device])


def _overdue(view: SchedulerView, device: int) -> bool:
    """Whether ``device`` is busy past the time its estimates said it would clear its work. A view
    with an ``overdue`` method (``DispatchState``, whose ``free_at`` never falls behind ``now`` while
    work is queued) answers it; for another view, busy with ``free_at`` already passed."""
    overdue = getattr(view, "overdue", None)
    if callable(overdue):
        return bool(overdue(device))
    return bool(view.outstanding[device] > 0 and view.free_at[device] < view.now)


def check_idle_factor(value: float, label: str = "idle factor") -> float:
    """An idle factor is a number >= 1 (inf allowed: the old idle-first rule)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SniperError(f"{label} {value!r}: give a number >= 1, or inf") from None
    if math.isnan(number) or number < 1:
        raise SniperError(f"{label} {value!r}: give a number >= 1 (1 = least completion time, a tie to the idle "
                          f"device; inf = always an idle device; default {IDLE_FACTOR:g})")
    return number


POLICIES: dict[str, tuple[Callable[[], Policy], str]] = {
    "polling": (Polling, "round robin, FIFO queues (time-unaware)"),
    "edf": (EarliestDeadlineFirst, "round robin, earliest-deadline-first queues (time-unaware)"),
    "edf-jsq": (EarliestDeadlineFirstJSQ, "fewest outstanding tasks, earliest deadline first (time-unaware)"),
    "jsq": (JoinShortestQueue, "join the shortest queue by task count, FIFO (time-unaware)"),
    "mvsp-free": (lambda: MinimumCompletionTime(name="mvsp-free", time_source="measured-free"),
                  "the paper's MVSP ceiling: least completion time on the measured mean times "
                  "(the platform's true table), measurement cost ignored"),
    "mvsp": (lambda: MinimumCompletionTime(name="mvsp", time_source="measured"),
             "least completion time on measured times; pays one real run per new model x device type "
             "and holds that model's tasks until every type is measured"),
    "sniper": (SniperLLF, "idle device with least predicted completion unless it would take over "
               f"{IDLE_FACTOR:g}x the best device's predicted completion (then that device), "
               "least-laxity queues, predictions corrected by finished tasks"),
    "sniper-idle": (lambda: SniperLLF(name="sniper-idle", idle_factor=math.inf),
                    "as sniper with the old idle-first dispatch: an idle device whenever there is "
                    "one, however slow (ablation)"),
    "sniper-static": (lambda: SniperLLF(name="sniper-static", time_source="predicted"),
                      "as sniper, on the raw predictions only"),
    "mct-oracle": (lambda: MinimumCompletionTime(name="mct-oracle", time_source="true"),
                   "least completion time on the exact time of each task (bounds time knowledge, "
                   "not AWT: sniper waits less)"),
    "mct-pred": (lambda: MinimumCompletionTime(name="mct-pred", time_source="predicted"),
                 "least completion time on predicted times, FIFO"),
}

PAPER_POLICIES = ("polling", "edf", "mvsp-free", "sniper", "mct-oracle")


def make_policy(name: str, idle_factor: float | None = None) -> Policy:
    """The policy called ``name``; ``idle_factor``, if given, replaces the idle factor of the
    Sniper policies that use one (``sniper``, ``sniper-static``; ``sniper-idle`` is always inf)."""
    try:
        factory, _ = POLICIES[name]
    except KeyError:
        raise SniperError(f"policy {name!r}: unknown; choose from {', '.join(POLICIES)}") from None
    policy = factory()
    if idle_factor is not None and uses_idle_factor(name):
        policy = replace(policy, idle_factor=check_idle_factor(idle_factor))
    return policy


def uses_idle_factor(name: str) -> bool:
    """Whether ``--idle-factor`` changes the policy called ``name`` (sniper-idle is pinned to inf)."""
    entry = POLICIES.get(name)
    return entry is not None and name != "sniper-idle" and isinstance(entry[0](), SniperLLF)


def idle_factor_unused(policies: Sequence[str], idle_factor: float | None) -> str | None:
    """A warning when an idle factor is given but none of ``policies`` would use it."""
    if idle_factor is None or any(uses_idle_factor(name) for name in policies):
        return None
    return (f"--idle-factor {idle_factor:g} has no effect on {', '.join(policies)}: only sniper and "
            "sniper-static take it (sniper-idle is always inf)")
