"""Tasks for real dispatch: model, input, deadline, and when each arrives (seconds into the run)."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from sniper_onnx.errors import SniperError


@dataclass(frozen=True)
class DispatchTask:
    """One inference request. ``deadline`` is absolute seconds into the run (None: the run's
    deadline factor x the model's mean calibrated time); ``input`` an .npy/.npz file (None: the
    agent's generated input for that model)."""

    model: str
    arrival: float = 0.0
    deadline: Optional[float] = None
    input: Optional[str] = None
    row: Optional[int] = None  # the workload file's data row (0-based, as the simulator's task ids)


def read_workload(path: "str | Path", models: Sequence[str]) -> list[DispatchTask]:
    """CSV with columns ``arrival,model`` and optional ``deadline`` and ``input``."""
    from sniper_onnx.scheduling.workload import read_task_rows

    path = Path(path)
    rows = read_task_rows(path, "workload", "arrival,model[,deadline,input]")
    tasks = [replace(_task(f"{path}:{line}", row, models, path.parent), row=i) for i, (line, row) in enumerate(rows)]
    return sorted(tasks, key=lambda task: task.arrival)


def _task(where: str, row: dict, models: Sequence[str], base: Path) -> DispatchTask:
    model = (row.get("model") or "").strip()
    if model not in models:
        raise SniperError(f"{where}: model {model!r} is not in the fleet file (models: {', '.join(models)})")
    arrival = _seconds(where, "arrival", row.get("arrival"))
    deadline_text = (row.get("deadline") or "").strip()
    deadline = _seconds(where, "deadline", deadline_text) if deadline_text else None
    if deadline is not None and deadline < arrival:
        raise SniperError(f"{where}: deadline {deadline} is before arrival {arrival}; deadlines are absolute seconds")
    input_text = (row.get("input") or "").strip()
    input_path = None
    if input_text:
        candidate = Path(input_text) if Path(input_text).is_absolute() else base / input_text
        if not candidate.is_file():
            raise SniperError(f"{where}: input {candidate} does not exist; give an .npy or .npz file")
        input_path = str(candidate)
    return DispatchTask(model=model, arrival=arrival, deadline=deadline, input=input_path)


def _seconds(where: str, column: str, text: Optional[str]) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SniperError(f"{where}: {column} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise SniperError(f"{where}: {column} {value!r} must be finite and >= 0")
    return value


def poisson_workload(models: Sequence[str], rate: float, duration: float, seed: int = 0) -> list[DispatchTask]:
    """Poisson arrivals at ``rate`` tasks/s for ``duration`` s, models drawn uniformly."""
    from sniper_onnx.scheduling.workload import check_expected_tasks

    if not (rate > 0 and duration > 0 and math.isfinite(rate) and math.isfinite(duration)):
        raise SniperError(f"--rate {rate} and --duration {duration} must be finite and positive")
    if seed < 0:
        raise SniperError(f"--seed {seed}: give a whole number >= 0")
    expected = check_expected_tasks(rate, duration)
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=int(expected * 2 + 20)))
    arrivals = arrivals[arrivals < duration]
    picks = rng.integers(0, len(models), size=len(arrivals))
    return [DispatchTask(model=models[int(m)], arrival=float(a)) for a, m in zip(arrivals, picks)]


def write_workload(tasks: Sequence[DispatchTask], path: "str | Path") -> None:
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arrival", "model", "deadline"])
        for task in tasks:
            writer.writerow([f"{task.arrival:.4f}", task.model, "" if task.deadline is None else f"{task.deadline:.4f}"])
