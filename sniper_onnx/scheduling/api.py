"""The Python API behind ``sniper-onnx simulate``: one call, one dataclass back."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.experiment import DEFAULT_DURATION, SweepResult, policy_specs, run_sweep, run_trace
from sniper_onnx.scheduling.platform import load_platform
from sniper_onnx.scheduling.policies import PAPER_POLICIES, Policy, check_idle_factor, idle_factor_unused
from sniper_onnx.scheduling.workload import DEFAULT_DEADLINE_FACTOR, DEFAULT_NOISE, check_expected_tasks, read_trace


@dataclass(frozen=True)
class SimulationReport:
    sweep: SweepResult
    plot: Path | None = None
    schedule: Path | None = None  # the per-task schedule CSV written (--schedule), if any
    predictor_models: tuple[str, ...] = ()  # models whose predictions came from --predictor
    table_models: tuple[str, ...] = ()  # models that kept the platform's predicted times
    warnings: tuple[str, ...] = ()  # for stderr: an --idle-factor no policy uses, the predictor's warnings
    # model -> device type -> the predictor's seconds that replaced the platform's predicted times
    # (the platform's own 'predicted_times' in --json already hold them, but do not say which came from where)
    predictor_times: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json_dict(self) -> dict:
        data = finite(self.sweep.to_json_dict())
        data["plot"] = str(self.plot) if self.plot else None
        data["schedule"] = str(self.schedule) if self.schedule else None
        data["predictor_models"] = list(self.predictor_models)
        data["table_models"] = list(self.table_models)
        data["warnings"] = list(self.warnings)
        data["predicted_times_from_predictor"] = finite(self.predictor_times)
        return data


def finite(value: object) -> object:
    """NaN/inf become null: ``--json`` must print valid JSON, and a metric with no value (no task
    with a deadline, say) has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def parse_nodes(text: str) -> dict[str, int]:
    """``AGX=4,TX2=3,NX=3`` -> {"AGX": 4, ...}."""
    counts = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name.strip() in counts:
            raise SniperError(f"--nodes {text!r}: device type {name.strip()!r} is given twice; give each type once")
        try:
            counts[name.strip()] = int(value)
        except ValueError:
            raise SniperError(f"--nodes {text!r}: write TYPE=COUNT pairs, e.g. AGX=4,TX2=3,NX=3") from None
    if not counts:
        raise SniperError(f"--nodes {text!r}: write TYPE=COUNT pairs, e.g. AGX=4,TX2=3,NX=3")
    return counts


def simulate_platform(
    platform: str | Path = "paper",
    rates: Sequence[float] = (18, 19, 20, 21, 22, 23, 24, 25),
    policies: str | Policy | Sequence[str | Policy] = PAPER_POLICIES,
    seeds: int = 5,
    first_seed: int = 0,
    duration: float = DEFAULT_DURATION,
    noise: float = DEFAULT_NOISE,
    deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
    nodes: dict[str, int] | None = None,
    trace: str | Path | None = None,
    predictor: str | Path | None = None,
    models_dir: str | Path | None = None,
    plot: str | Path | None = None,
    progress: Callable[[int], None] | None = None,
    idle_factor: float | None = None,
    schedule: str | Path | None = None,
) -> SimulationReport:
    """Load a platform, optionally swap in a predictor's times, run a rate sweep or a trace, plot.
    ``policies``: built-in names and/or :class:`~sniper_onnx.scheduling.policies.Policy` objects
    (a bare string is one name). ``idle_factor`` overrides the built-in Sniper policies' idle factor
    (None: their default). ``schedule``: write every run's per-task schedule to this CSV."""
    specs = policy_specs(policies)  # unknown names fail before anything runs
    policy_names = [name for name, _ in specs]
    policies = [obj if obj is not None else name for name, obj in specs]
    if predictor is not None and models_dir is None:
        raise SniperError("--predictor needs --models DIR: a folder of <model>.onnx files for it to time")
    if plot is not None and trace is not None:
        raise SniperError("--plot draws a rate sweep; drop --plot when replaying a --trace")
    check_run_numbers(seeds, first_seed, noise, deadline_factor)
    if idle_factor is not None:
        check_idle_factor(idle_factor, "--idle-factor")
    if trace is None:  # the largest rate fails now, not after the smaller ones have run
        if not (math.isfinite(duration) and duration > 0):
            raise SniperError(f"--duration {duration}: give a finite number of seconds > 0")
        check_expected_tasks(max(rates, default=0.0), duration)
    if plot is not None:
        if Path(plot).is_dir():  # else a suffix-less DIR would become DIR.png beside it
            raise SniperError(f"--plot {plot}: is a directory; give a file name such as {Path(plot) / 'fig.png'}")
        from sniper_onnx.outputs import plot_path as checked_plot_path

        plot = checked_plot_path(plot)
    schedule_path = check_schedule_path(schedule) if schedule is not None else None
    loaded = load_platform(platform)
    if nodes:
        loaded = loaded.with_nodes(nodes)
    predictor_models: tuple[str, ...] = ()
    table_models: tuple[str, ...] = ()
    predictor_times: dict[str, dict[str, float]] = {}
    unused = idle_factor_unused(policy_names, idle_factor)
    warnings: tuple[str, ...] = (unused,) if unused else ()
    if models_dir is not None:  # without --predictor: the predictor shipped with the package
        from sniper_onnx.scheduling.predicted import with_predictor

        swap = with_predictor(loaded, predictor, models_dir)
        loaded, predictor_models, table_models = swap.platform, swap.replaced, swap.kept
        warnings += swap.warnings
        predictor_times = swap.times
    tasks = read_trace(trace, loaded, first_seed, noise, deadline_factor) if trace is not None else None
    writer = ScheduleWriter(schedule_path, loaded) if schedule_path is not None else None
    try:
        if tasks is not None:
            sweep = run_trace(loaded, policies, tasks, trace, first_seed, noise, deadline_factor, idle_factor,
                              on_run=writer)
        else:
            seed_list = list(range(first_seed, first_seed + seeds))
            sweep = run_sweep(loaded, policies, rates, seed_list, duration, noise, deadline_factor, progress,
                              idle_factor, on_run=writer)
    finally:
        if writer is not None:
            writer.close()
    plot_path = None
    if plot is not None:
        from sniper_onnx.scheduling.plot import plot_sweep

        plot_path = plot_sweep(sweep, plot)
    return SimulationReport(sweep, plot_path, schedule_path, predictor_models, table_models, warnings,
                            predictor_times)


SCHEDULE_COLUMNS = ("policy", "rate", "seed", "task", "model", "device", "arrival", "start", "end", "deadline")


def check_schedule_path(path: str | Path) -> Path:
    """Where ``--schedule`` may write, checked before any run (a run of minutes lost to a typo'd folder)."""
    path = Path(path)
    if path.is_dir():
        raise SniperError(f"--schedule {path}: is a directory; give a file name such as {path / 'schedule.csv'}")
    if not path.parent.is_dir():
        raise SniperError(f"--schedule {path}: folder {path.parent} does not exist; create it or choose another")
    return path


class ScheduleWriter:
    """Every run's per-task schedule as CSV rows: policy, rate (empty for a trace), seed, task id,
    model, device name, arrival, start, end, deadline (seconds; task order as arrived)."""

    def __init__(self, path: Path, platform) -> None:
        import csv

        self.path = path
        try:
            self._file = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as error:
            raise SniperError(f"--schedule {path}: cannot write ({error.strerror}); choose a writable path") from None
        self._csv = csv.writer(self._file)
        self._csv.writerow(SCHEDULE_COLUMNS)
        self._models = platform.models
        self._devices = platform.device_names()

    def __call__(self, policy: str, rate: float | None, seed: int, tasks: list, result) -> None:
        schedule = result.schedule
        rate_text = "" if rate is None else f"{rate:g}"
        self._csv.writerows(
            (policy, rate_text, seed, task.task_id, self._models[task.model], self._devices[int(schedule.device[i])],
             repr(task.arrival), repr(float(schedule.start[i])), repr(float(schedule.end[i])), repr(task.deadline))
            for i, task in enumerate(tasks)
        )

    def close(self) -> None:
        self._file.close()


def check_run_numbers(seeds: int, first_seed: int, noise: float, deadline_factor: float) -> None:
    """Numbers a run cannot use, refused before it starts (a NaN would run and report NaN)."""
    if seeds < 1:
        raise SniperError(f"--seeds {seeds}: give at least 1")
    if first_seed < 0:
        raise SniperError(f"--seed {first_seed}: give a whole number >= 0")
    if not (math.isfinite(noise) and noise >= 0):
        raise SniperError(f"--noise {noise}: give a finite coefficient of variation >= 0, e.g. 0.05")
    check_deadline_factor(deadline_factor)


def check_deadline_factor(factor: float) -> None:
    if not (math.isfinite(factor) and factor > 0):
        raise SniperError(f"--deadline-factor {factor}: give a finite number > 0, e.g. 3")


def runs_needed(policies: str | Sequence[object], rates: Sequence[float], seeds: int, trace: bool) -> int:
    count = 1 if isinstance(policies, str) else len(policies)
    return count if trace else count * len(rates) * seeds
