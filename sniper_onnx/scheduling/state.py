"""The dispatcher's bookkeeping, shared by every engine: the simulator here, real devices later.

An engine owns the clock and the devices; it tells :class:`DispatchState` what happened
(``now``, a task arrived, a device is free, a job finished) and the state applies the policy, keeps
the per-device queues, and keeps the :class:`~sniper_onnx.scheduling.policies.SchedulerView`
fields the policy reads. ``free_at`` is kept in the policy's own estimates and re-anchored to
``now`` whenever a job really starts or a device goes idle, so estimate errors do not pile up; and
before every decision a device whose running job has outlived its estimate is re-anchored to
``now`` + the estimates still queued on it, so the view never shows a device as clearing its work
sooner than its queue alone would take (it used to show the stale, already-passed ``free_at``,
which ``max(free_at, now)`` read as "free now", forgetting the queued work).
``running_until`` is the estimated end of each device's running job (+inf when idle); a device is
*overdue* (:meth:`DispatchState.overdue`) when that plus its queued estimates has passed: busy past
the time its estimates said it would clear its work, as Sniper's overdue rule reads it.
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.platform import Platform
from sniper_onnx.scheduling.policies import Policy
from sniper_onnx.scheduling.timesource import make_time_source
from sniper_onnx.scheduling.workload import Task

FIRST = float("-inf")  # queue key that runs before anything a policy can rank (measurement runs)


class DispatchState:
    """Implements ``SchedulerView`` (now, device_type, free_at, outstanding, estimates)."""

    def __init__(self, platform: Platform, policy: Policy) -> None:
        self.policy = policy
        self.time_source = make_time_source(policy.time_source, platform)
        self.device_type = platform.device_type_of()
        n = len(self.device_type)
        self.now = 0.0
        self.free_at = np.zeros(n)
        self.outstanding = np.zeros(n, dtype=np.int64)
        self.running_until = np.full(n, np.inf)  # estimated end of the running job; inf: idle
        self._queues: list[list] = [[] for _ in range(n)]
        self._queued_estimate = np.zeros(n)
        self._running_estimate = [0.0] * n
        self._seq = 0

    def estimates(self, task: Task) -> np.ndarray:
        return self.time_source.estimates(task)

    def missing_types(self, model: int) -> list[int]:
        return self.time_source.missing_types(model)

    def submit(self, task: Task) -> int:
        """Place ``task`` with the policy and queue it; returns the device."""
        self.refresh()
        device = self.policy.on_arrival(task, self)
        if not (isinstance(device, (int, np.integer)) and 0 <= device < len(self.device_type)):
            raise SniperError(f"policy {self.policy.name!r} chose device {device!r}; it must return 0..n-1")
        device = int(device)
        estimate = float(self.estimates(task)[device])
        self.enqueue(device, float(self.policy.queue_key(task, device, self)), estimate, task)
        return device

    def refresh(self) -> None:
        """Bring ``free_at`` up to ``now`` for devices whose running job outlived its estimate: such a
        device clears its work no sooner than ``now`` + its queued estimates (called before each
        decision; a policy reading the view between events sees it as of the last one)."""
        late = self.running_until < self.now
        if late.any():
            np.maximum(self.free_at, self.now + self._queued_estimate, out=self.free_at, where=late)

    def overdue(self, device: int) -> bool:
        """Whether ``device`` is busy past the time its estimates said it would clear all its work
        (running job and queue): how long it still needs is unknown. A running job a little over its
        estimate with work queued behind it is not overdue (noise alone does that half the time)."""
        return bool(self.running_until[device] + self._queued_estimate[device] < self.now)

    def enqueue(self, device: int, key: float, estimate: float, payload: Any) -> None:
        """Queue any job (a task, or a measurement run with ``key=FIRST``)."""
        self.free_at[device] = max(self.free_at[device], self.now) + estimate
        self.outstanding[device] += 1
        self._queued_estimate[device] += estimate
        self._seq += 1
        heapq.heappush(self._queues[device], (key, self._seq, estimate, payload))

    def has_queued(self, device: int) -> bool:
        return bool(self._queues[device])

    def start_next(self, device: int) -> Any:
        """The job ``device`` runs now (lowest key); call only when it is free and has a queue."""
        _, _, estimate, payload = heapq.heappop(self._queues[device])
        self._queued_estimate[device] -= estimate
        if not self._queues[device]:
            self._queued_estimate[device] = 0.0  # drop float residue
        self._running_estimate[device] = estimate
        self.running_until[device] = self.now + estimate
        self.free_at[device] = self.now + estimate + self._queued_estimate[device]
        return payload

    def finish(self, device: int, task: Task | None, seconds: float) -> None:
        """A job ended on ``device`` after ``seconds``; ``task`` is None for measurement runs."""
        self.outstanding[device] -= 1
        self.running_until[device] = np.inf
        self.free_at[device] = self.now + self._queued_estimate[device]
        if task is not None:
            self.time_source.observe(task, int(self.device_type[device]), seconds)

    def record_measurement(self, model: int, device_type: int, seconds: float) -> None:
        self.time_source.record(model, device_type, seconds)
