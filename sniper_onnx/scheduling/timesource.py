"""Where a policy's execution-time estimates come from.

``true``: the exact time of the very task (the platform's true time x the task's noise), which no
real scheduler has: the oracle. ``predicted``: the platform's predicted table (Table 2's Predict/s,
or a predictor's output). ``predicted-feedback``: the same, corrected online by every finished
task's real time (the paper's Time Trimmer fits prediction residuals online; with no network
features in the simulator we fit one ratio per model and device type). ``measured``: unknown until measured; the first time a model meets a
device type, one real run of it on one device of that type gives the number (MVSP's cost, section
4.4 of the paper). ``measured-free``: the platform's true table (Table 2's Test/s, the mean of
real measurements) known from the start at no cost, as the paper runs MVSP in section 4.3
("without considering the real measured cost"). ``none``: a time-unaware policy; every task counts as one second so ``free_at``
still orders devices by backlog.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.platform import Platform
from sniper_onnx.scheduling.workload import Task


class TimeSource(Protocol):
    def estimates(self, task: Task) -> np.ndarray:
        """Seconds per device."""
        ...

    def missing_types(self, model: int) -> list[int]:
        """Device types whose time for ``model`` must be measured before any decision."""
        ...

    def record(self, model: int, device_type: int, seconds: float) -> None:
        """The result of a measurement run made for this source."""
        ...

    def observe(self, task: Task, device_type: int, seconds: float) -> None:
        """A task finished after ``seconds`` on a device of ``device_type`` (feedback)."""
        ...


class TableTimes:
    """A fixed [model, device type] table, expanded per device once."""

    def __init__(self, table: np.ndarray, device_type: np.ndarray) -> None:
        self._per_device = [np.ascontiguousarray(row[device_type]) for row in np.asarray(table, float)]

    def estimates(self, task: Task) -> np.ndarray:
        return self._per_device[task.model]

    def missing_types(self, model: int) -> list[int]:
        return []

    def record(self, model: int, device_type: int, seconds: float) -> None:
        return None

    def observe(self, task: Task, device_type: int, seconds: float) -> None:
        return None


class FeedbackTimes(TableTimes):
    """Predictions scaled by a running mean of observed/predicted per model and device type.

    The mean is over at most ``memory`` recent observations (an exponential average beyond that),
    so a model whose speed drifts is followed instead of averaged forever.

    ``stale_decay`` (1: off, the simulator's default): each run of a model on one device type moves
    that model's correction on every *other* type toward the prediction (its distance to 1 times
    ``stale_decay``) and takes one observation off its weight. A policy learns only from the devices
    it picks, so without it one slow outlier on the fast device (a run that met contention) kept
    every later task of that model off that device for the whole run. The real dispatcher sets it
    (``sniper_onnx.dispatch.dispatcher.STALE_DECAY``).
    """

    def __init__(self, table: np.ndarray, device_type: np.ndarray, memory: int = 20) -> None:
        super().__init__(table, device_type)
        self._table = np.asarray(table, float)
        self._device_type = device_type
        self._ratio = np.ones_like(self._table)
        self._count = np.zeros(self._table.shape, dtype=np.int64)
        self._memory = memory
        self.stale_decay = 1.0

    def observe(self, task: Task, device_type: int, seconds: float) -> None:
        model = task.model
        count = min(self._count[model, device_type] + 1, self._memory)
        self._count[model, device_type] = count
        ratio = seconds / self._table[model, device_type]
        self._ratio[model, device_type] += (ratio - self._ratio[model, device_type]) / count
        if self.stale_decay < 1.0:
            others = np.arange(self._ratio.shape[1]) != device_type
            self._ratio[model, others] = 1.0 + (self._ratio[model, others] - 1.0) * self.stale_decay
            self._count[model, others] = np.maximum(self._count[model, others] - 1, 0)
        self._per_device[model] = (self._table[model] * self._ratio[model])[self._device_type]


class OracleTimes(TableTimes):
    def estimates(self, task: Task) -> np.ndarray:
        return self._per_device[task.model] * task.noise


class MeasuredTimes:
    """Starts empty; filled by measurement runs the engine makes on the policy's behalf.

    Only device types that have nodes need measuring (a ``--nodes TX2=0`` type is never asked)."""

    def __init__(self, num_models: int, num_types: int, device_type: np.ndarray) -> None:
        self._device_type = device_type
        self._present = sorted({int(t) for t in device_type})
        self._table = np.full((num_models, num_types), np.nan)
        self._per_device: dict[int, np.ndarray] = {}

    def estimates(self, task: Task) -> np.ndarray:
        cached = self._per_device.get(task.model)
        if cached is None:
            if self.missing_types(task.model):
                raise SniperError(f"model #{task.model} has no measured time yet; measure it first")
            cached = self._per_device[task.model] = self._table[task.model][self._device_type]
        return cached

    def missing_types(self, model: int) -> list[int]:
        return [t for t in self._present if np.isnan(self._table[model, t])]

    def record(self, model: int, device_type: int, seconds: float) -> None:
        self._table[model, device_type] = seconds
        self._per_device.pop(model, None)

    def observe(self, task: Task, device_type: int, seconds: float) -> None:
        return None  # MVSP trusts its one measurement, as in the paper


def make_time_source(kind: str, platform: Platform) -> TimeSource:
    device_type = platform.device_type_of()
    builders = {
        "true": lambda: OracleTimes(platform.true_times, device_type),
        "predicted": lambda: TableTimes(platform.predicted_times, device_type),
        "predicted-feedback": lambda: FeedbackTimes(platform.predicted_times, device_type),
        "measured-free": lambda: TableTimes(platform.true_times, device_type),
        "measured": lambda: MeasuredTimes(len(platform.models), len(platform.device_types), device_type),
        "none": lambda: TableTimes(np.ones_like(platform.true_times), device_type),
    }
    if kind not in builders:
        raise SniperError(f"time source {kind!r}: unknown; use one of {', '.join(builders)}")
    return builders[kind]()
