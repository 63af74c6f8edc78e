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

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.workload import Task


class SchedulerView(Protocol):
    """What a policy may look at when it decides; indices run over devices."""

    now: float
    device_type: np.ndarray  # int type index of each device
    free_at: np.ndarray  # when each device clears all work assigned to it, by this policy's estimates
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


@dataclass
class SniperLLF:
    """Sniper's "LLF with extra limits" on predicted times (the paper leaves the limits open).

    Dispatch: the device with the least predicted completion time among devices holding fewer than
    ``queue_bound`` outstanding tasks (all devices if every one is full). The default bound 1 means
    "an idle device if there is one": a task that can start now does not queue behind a faster
    device's backlog, which is what AWT counts, and a queue of k tasks carries k prediction errors.
    Queue order: least laxity first, laxity = deadline - now - predicted exec on that device (with
    corrected estimates, the estimate when the task was queued).
    By default the predictions are corrected online by finished tasks (``predicted-feedback``, the
    paper's Time Trimmer); ``sniper-static`` uses the raw predictions.
    """

    name: str = "sniper"
    time_source: str = "predicted-feedback"
    queue_bound: int = 1

    def on_arrival(self, task: Task, view: SchedulerView) -> int:
        open_devices = view.outstanding < self.queue_bound
        return least_completion(task, view, open_devices if open_devices.any() else None)

    def queue_key(self, task: Task, device: int, view: SchedulerView) -> float:
        return task.deadline - float(view.estimates(task)[device])


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
    "sniper": (SniperLLF, "idle device with least predicted completion (else any), least-laxity "
               "queues, predictions corrected by finished tasks"),
    "sniper-static": (lambda: SniperLLF(name="sniper-static", time_source="predicted"),
                      "as sniper, on the raw predictions only"),
    "mct-oracle": (lambda: MinimumCompletionTime(name="mct-oracle", time_source="true"),
                   "least completion time on the exact time of each task (bounds time knowledge, "
                   "not AWT: sniper waits less)"),
    "mct-pred": (lambda: MinimumCompletionTime(name="mct-pred", time_source="predicted"),
                 "least completion time on predicted times, FIFO"),
}

PAPER_POLICIES = ("polling", "edf", "mvsp-free", "sniper", "mct-oracle")


def make_policy(name: str) -> Policy:
    try:
        factory, _ = POLICIES[name]
    except KeyError:
        raise SniperError(f"policy {name!r}: unknown; choose from {', '.join(POLICIES)}") from None
    return factory()
