"""Task streams: Poisson arrivals over a platform's task mix, or a replayed CSV trace."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sniper_onnx.errors import SniperError, read_text
from sniper_onnx.scheduling.platform import Platform

DEFAULT_DEADLINE_FACTOR = 3.0
DEFAULT_NOISE = 0.05
MAX_EXPECTED_TASKS = 2_000_000  # per run: 20x the paper's longest; more would not fit in memory as Tasks
# Largest trace arrival/deadline, in seconds (~317 years; Unix times in seconds fit). A double near
# 1e10 still resolves 2 us; near 1e308 a whole run rounds to no time at all and TPS comes out ~1e12.
MAX_TRACE_SECONDS = 1e10
MIN_TRACE_NOISE = 1e-9  # a trace's noise multiplier: no task runs in (next to) no time


@dataclass(slots=True)
class Task:
    """One inference request.

    ``noise`` multiplies the model's true time on whichever device runs it, so a task that is slow
    on one device type would be as slow (relatively) on another: that is what an oracle knows.
    """

    task_id: int
    model: int
    arrival: float
    deadline: float
    noise: float = 1.0


def deadlines_for(platform: Platform, models: np.ndarray, arrivals: np.ndarray, factor: float) -> np.ndarray:
    """Deadline = arrival + factor x the model's mean true time over device types."""
    reference = platform.true_times.mean(axis=1)
    return arrivals + factor * reference[models]


def noise_factors(rng: np.random.Generator, count: int, sigma: float) -> np.ndarray:
    """Lognormal multipliers with mean 1 and coefficient of variation about ``sigma``."""
    if sigma <= 0:
        return np.ones(count)
    s = math.sqrt(math.log1p(sigma * sigma))
    return rng.lognormal(mean=-s * s / 2, sigma=s, size=count)


def poisson_tasks(
    platform: Platform,
    rate: float,
    duration: float,
    seed: int,
    noise: float = DEFAULT_NOISE,
    deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
) -> list[Task]:
    """Poisson arrivals at ``rate`` tasks/s during [0, duration), models drawn from the platform's mix."""
    if not (rate > 0 and math.isfinite(rate)):
        raise SniperError(f"rate {rate!r}: give a positive number of tasks per second")
    if not (duration > 0 and math.isfinite(duration)):
        raise SniperError(f"duration {duration!r}: give a positive number of seconds")
    if not (noise >= 0 and math.isfinite(noise) and deadline_factor > 0 and math.isfinite(deadline_factor)):
        raise SniperError("noise must be >= 0 and deadline factor > 0, both finite; "
                          "e.g. --noise 0.05 --deadline-factor 3")
    expected = check_expected_tasks(rate, duration)
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=int(expected + 10 * math.sqrt(expected) + 20))
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < duration]
    models = rng.choice(len(platform.models), size=len(arrivals), p=platform.mix)
    factors = noise_factors(rng, len(arrivals), noise)
    deadlines = deadlines_for(platform, models, arrivals, deadline_factor)
    return [
        Task(i, int(m), float(a), float(d), float(f))
        for i, (m, a, d, f) in enumerate(zip(models, arrivals, deadlines, factors))
    ]


def check_expected_tasks(rate: float, duration: float) -> float:
    """rate x duration, once it is a number of tasks one run can hold."""
    expected = rate * duration
    if expected > MAX_EXPECTED_TASKS:
        raise SniperError(f"rate {rate:g}/s x duration {duration:g} s = {expected:.3g} expected tasks in one run; "
                          f"at most {MAX_EXPECTED_TASKS:,}: lower the rate or the duration")
    return expected


def read_task_rows(path: Path, what: str, columns_hint: str) -> list[tuple[int, dict]]:
    """The rows of a task CSV (a simulator trace or a dispatch workload): ``arrival``, ``model``, ...,
    each with the file line it ends on (for messages: blank lines in between are counted, so the
    line named is the line a user's editor shows)."""
    if path.is_dir():
        raise SniperError(f"{path}: is a directory; give the {what} CSV file (columns {columns_hint})")
    if not path.is_file():
        raise SniperError(f"{path}: no such {what} file; give a CSV with columns {columns_hint}")
    text = read_text(path, f"a {what} CSV with columns {columns_hint}")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = set(reader.fieldnames or ())
    if not {"arrival", "model"} <= columns:
        raise SniperError(f"{path}: {what} needs columns 'arrival' and 'model' (found {sorted(columns)})")
    rows = [(reader.line_num, _check_width(path, reader, row)) for row in reader]
    if not rows:
        raise SniperError(f"{path}: {what} has no tasks")
    return rows


def _check_width(path: Path, reader: csv.DictReader, row: dict) -> dict:
    """``row``, unless it has more fields than the header: DictReader would file the extras under
    ``None`` and the row would run as if they were not there, hiding a shifted or unquoted value."""
    extra = row.get(None)
    if extra is None:
        return row
    header = reader.fieldnames or []
    raise SniperError(f"{path}:{reader.line_num}: {len(header) + len(extra)} fields, but the header has "
                      f"{len(header)} ({','.join(header)}); drop the extra fields or quote a value holding a comma")


def read_trace(
    path: str | Path,
    platform: Platform,
    seed: int = 0,
    noise: float = DEFAULT_NOISE,
    deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
) -> list[Task]:
    """Replay a CSV trace with columns ``arrival,model`` and optional ``deadline`` and ``noise``.

    ``arrival`` and ``deadline`` are absolute seconds. Missing deadlines follow ``deadline_factor``;
    missing noise multipliers are drawn from ``seed`` so replays stay reproducible.
    """
    path = Path(path)
    rows = read_task_rows(path, "trace", "arrival,model[,deadline,noise]")
    rng = np.random.default_rng(seed)
    drawn_noise = noise_factors(rng, len(rows), noise)
    tasks = [
        _trace_task(f"{path}:{line}", index, row, platform, deadline_factor, float(drawn_noise[index]))
        for index, (line, row) in enumerate(rows)
    ]
    tasks.sort(key=lambda task: (task.arrival, task.task_id))
    return tasks


def _trace_task(
    where: str, task_id: int, row: dict, platform: Platform, deadline_factor: float, default_noise: float
) -> Task:
    model_name = (row.get("model") or "").strip()
    if model_name not in platform.models:
        raise SniperError(f"{where}: model {model_name!r} is not on platform {platform.name!r} "
                          f"(known: {', '.join(platform.models)})")
    model = platform.models.index(model_name)
    arrival = _number(where, "arrival", row.get("arrival"), minimum=0.0)
    deadline_text = (row.get("deadline") or "").strip()
    reference = float(platform.true_times[model].mean())
    deadline = _deadline(where, deadline_text, arrival) if deadline_text else arrival + deadline_factor * reference
    noise_text = (row.get("noise") or "").strip()
    noise = _noise(where, noise_text) if noise_text else default_noise
    return Task(task_id, model, arrival, deadline, noise)


def _deadline(where: str, text: str, arrival: float) -> float:
    deadline = _number(where, "deadline", text, minimum=-math.inf)
    if deadline < arrival:
        raise SniperError(f"{where}: deadline {deadline!r} is before its arrival {arrival!r}; "
                          f"a deadline is absolute seconds, like the arrival, not a time allowed after it")
    return deadline


def _noise(where: str, text: str) -> float:
    # a user who knows --noise (a coefficient of variation, >= 0) may read this column as one too
    what = ("the noise column is a multiplier of the task's true time (1 = the platform's time, 2 = twice "
            "it; not a coefficient of variation like --noise)")
    try:
        value = float(text)
    except ValueError:
        raise SniperError(f"{where}: noise {text!r} is not a number; {what}") from None
    if not (math.isfinite(value) and value >= MIN_TRACE_NOISE):
        raise SniperError(f"{where}: noise {value!r} is out of range: {what}, so a finite number > 0 "
                          f"(at least {MIN_TRACE_NOISE:g})")
    return value


def _number(where: str, column: str, text: str | None, minimum: float) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SniperError(f"{where}: {column} {text!r} is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise SniperError(f"{where}: {column} {value!r} must be a finite number >= {minimum:g}")
    if column in ("arrival", "deadline") and value > MAX_TRACE_SECONDS:
        raise SniperError(f"{where}: {column} {value!r} s is beyond {MAX_TRACE_SECONDS:g} s, where seconds lose "
                          f"their precision; give times relative to the trace's start")
    return value
