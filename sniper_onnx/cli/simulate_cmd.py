"""`sniper-onnx simulate`: compare scheduling policies on a simulated heterogeneous platform."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Iterable, Optional

import typer

HELP = """Simulate inference-task scheduling on heterogeneous devices and compare policies.

The paper's setting (section 4.3, Figure 6; its shape, not its numbers: see docs/scheduling.md):

  sniper-onnx simulate --platform paper --rates 18:25 --seeds 5 --plot fig6.png

Replay a trace once (CSV: arrival,model[,deadline,noise]; no --rates/--seeds/--duration;
deadline in absolute seconds, noise a multiplier of the task's true time, 1 = unchanged):

  sniper-onnx simulate --platform paper --trace trace.csv
"""


def simulate(
    platform: Annotated[str, typer.Option(help="Built-in platform name (paper) or a JSON/YAML platform file.")] = "paper",
    rates: Annotated[
        Optional[str],
        typer.Option(help="Arrival rates T in tasks/s: START:STOP[:STEP] or a list 18,24 (default: 18:25). "
                          "Not with --trace."),
    ] = None,
    policies: Annotated[
        str, typer.Option(help="Comma-separated policies (see --list-policies).")
    ] = "polling,edf,mvsp-free,sniper,mct-oracle",
    seeds: Annotated[
        Optional[int],
        typer.Option(help="Seeds per rate; results give the median and min..max (default: 5). Not with --trace."),
    ] = None,
    seed: Annotated[int, typer.Option(help="First seed (with --trace: the seed of noise the trace leaves out).")] = 0,
    duration: Annotated[
        Optional[float],
        typer.Option(help="Arrival window in seconds; the run drains after it (default: 120). Not with --trace."),
    ] = None,
    noise: Annotated[float, typer.Option(help="Execution-time noise (coefficient of variation); with --trace, "
                                              "only for rows without a noise multiplier.")] = 0.05,
    deadline_factor: Annotated[
        float, typer.Option(help="Deadline = arrival + factor x the model's mean true time.")
    ] = 3.0,
    nodes: Annotated[Optional[str], typer.Option(help="Override node counts, e.g. AGX=4,TX2=3,NX=3.")] = None,
    idle_factor: Annotated[
        Optional[float],
        typer.Option(help="Sniper's idle factor (sniper, sniper-static): an idle device takes a task only if it "
                          "would finish it within this many times the best device's predicted completion "
                          "(counted from now), or when that device is running past its prediction. >= 1; "
                          "1 = least completion time (a tie goes to the idle device), inf = always an idle device "
                          "(the sniper-idle policy). Default: 4, chosen on held-out seeds."),
    ] = None,
    trace: Annotated[Optional[Path], typer.Option(help="Replay this CSV trace instead of Poisson arrivals.")] = None,
    predictor: Annotated[
        Optional[Path], typer.Option(help="Predictor .onnx file for --models (default: the shipped one).")
    ] = None,
    models: Annotated[
        Optional[Path],
        typer.Option(help="Folder of <model>.onnx files named as platform models: predicted times come from "
                          "the predictor instead of the platform file."),
    ] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a Figure-6-shaped PNG here.")] = None,
    schedule: Annotated[
        Optional[Path],
        typer.Option(help="Write every run's per-task schedule to this CSV: policy, rate, seed, task, model, "
                          "device, arrival, start, end, deadline (seconds)."),
    ] = None,
    per_device: Annotated[
        bool, typer.Option("--per-device", help="Also print each device's utilization (median over seeds).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    list_policies: Annotated[bool, typer.Option("--list-policies", help="List the policies and exit.")] = False,
) -> None:
    from sniper_onnx.scheduling.api import parse_nodes, runs_needed, simulate_platform
    from sniper_onnx.scheduling.experiment import parse_rates

    if list_policies:
        _print_policies(as_json)
        return
    from sniper_onnx.errors import SniperError

    if trace is not None:
        given = [name for name, value in (("--rates", rates), ("--seeds", seeds), ("--duration", duration))
                 if value is not None]
        if given:
            raise SniperError(f"{', '.join(given)}: a --trace replays its own arrivals once; drop "
                              f"{' and '.join(given)} (--seed still sets the noise the trace leaves out)")
    rates = "18:25" if rates is None else rates
    seeds = 5 if seeds is None else seeds
    duration = 120.0 if duration is None else duration
    policy_names = list(dict.fromkeys(p.strip() for p in policies.split(",") if p.strip()))
    rate_values = parse_rates(rates)
    if trace is not None:
        seeds = 1
    total = runs_needed(policy_names, rate_values, seeds, trace is not None)
    with _Progress(total, quiet=as_json) as advance:
        report = simulate_platform(
            platform=platform, rates=rate_values, policies=policy_names, seeds=seeds, first_seed=seed,
            duration=duration, noise=noise, deadline_factor=deadline_factor,
            nodes=parse_nodes(nodes) if nodes else None, trace=trace, predictor=predictor,
            models_dir=models, plot=plot, progress=advance, idle_factor=idle_factor, schedule=schedule,
        )
    for warning in report.warnings:
        typer.echo(f"sniper-onnx: warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(report.to_json_dict()))
        return
    _print_table(report, per_device)


def _print_policies(as_json: bool) -> None:
    from sniper_onnx.scheduling.policies import POLICIES

    if as_json:  # shaped as `zoo list --json` and `predict --list-devices --json`: {"<things>": [{...}]}
        typer.echo(json.dumps({"policies": [{"name": name, "description": description}
                                            for name, (_, description) in POLICIES.items()]}))
        return
    for name, (_, description) in POLICIES.items():
        typer.echo(f"{name:14s} {description}")


class _Progress:
    """A rich progress bar on stderr, or nothing for --json / tiny runs."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.bar = total, quiet, None

    def __enter__(self):
        if self.quiet or self.total < 10:
            return None
        from sniper_onnx.cli.progress import progress_bar

        self.bar = progress_bar()
        self.bar.start()
        task = self.bar.add_task("simulating", total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def _number(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _cell(spread, digits: int, seeds: int) -> str:
    if math.isnan(spread.median):
        return "-"
    text = f"{spread.median:.{digits}f}"
    if seeds > 1:
        text += f"\u00b1{(spread.high - spread.low) / 2:.{digits}f}"
    return text


# one unit for every time column of a table, so AWT and p99 compare at a glance; fixed decimals in
# seconds read 0.000 for a millisecond workload, hence a unit from the magnitudes and significant digits
TIME_UNITS: tuple[tuple[str, float], ...] = (("s", 1.0), ("ms", 1e-3), ("\u00b5s", 1e-6))
SIGNIFICANT = 3
MAX_DECIMALS = 6  # below a nanosecond in \u00b5s a difference is float noise, not a time


def time_unit(seconds: Iterable[float]) -> tuple[str, float]:
    """The largest unit in which the largest finite value shows as at least 1 at SIGNIFICANT digits
    (0.9996 s is 1.00 s, not 1000 ms); seconds when there is no nonzero value (an empty table)."""
    largest = max((abs(value) for value in seconds if math.isfinite(value)), default=0.0)
    if largest == 0:
        return TIME_UNITS[0]
    return next(((name, size) for name, size in TIME_UNITS if _rounded(largest / size) >= 1), TIME_UNITS[-1])


def _rounded(value: float) -> float:
    """``value`` rounded to SIGNIFICANT significant digits."""
    return float(f"{value:.{SIGNIFICANT - 1}e}") if value and math.isfinite(value) else value


def _decimals(value: float) -> int:
    """Decimals that show ``value`` to SIGNIFICANT significant digits (none for 0 or >= 100); 99.96
    rounds to 100, so it takes none (100, not 100.0)."""
    value = _rounded(value)
    if value == 0 or not math.isfinite(value):
        return 0
    return min(MAX_DECIMALS, max(0, SIGNIFICANT - 1 - math.floor(math.log10(abs(value)))))


def time_cell(spread, size: float, seeds: int) -> str:
    """A time median (± half the min-max range over seeds) in a unit of ``size`` seconds, to
    SIGNIFICANT digits; the half range takes the median's decimals so the two line up. A median of
    0 (no wait at all) prints ``0``, its half range then to its own SIGNIFICANT digits."""
    if math.isnan(spread.median):
        return "-"
    median = spread.median / size
    half = (spread.high - spread.low) / 2 / size
    if median == 0:
        text = "0"
        digits = _decimals(half)
    else:
        digits = _decimals(median)
        text = f"{median:.{digits}f}"
    if seeds > 1:
        text += f"\u00b1{half:.{digits}f}"
    return text


TIME_COLUMNS = ("awt", "p95_wait", "p99_wait", "mean_response", "load_std")


def _print_table(report, per_device: bool = False) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from sniper_onnx.outputs import output_console

    sweep = report.sweep
    seeds = len(sweep.seeds) if sweep.trace is None else 1
    title = f"{sweep.platform.name}: " + (
        f"trace {sweep.trace}" if sweep.trace else f"{sweep.duration:g}s of Poisson arrivals, {seeds} seed(s)"
    )
    unit, size = time_unit(row.summary[name].median for row in sweep.rows for name in TIME_COLUMNS)
    caption = f"times in {unit}; response = mean arrival to end"
    if seeds > 1:
        caption = f"medians over seeds, \u00b1 half the min-max range; {caption}"
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD)
    for column in ("policy", "T", "TPS", "AWT", "p95 wait", "p99 wait", "response", "miss%", "load std"):
        table.add_column(column, justify="left" if column == "policy" else "right", no_wrap=True)
    for row in sweep.rows:
        s = row.summary
        table.add_row(
            row.policy, "trace" if row.rate is None else f"{row.rate:g}", _cell(s["tps"], 2, seeds),
            time_cell(s["awt"], size, seeds), time_cell(s["p95_wait"], size, 1), time_cell(s["p99_wait"], size, 1),
            time_cell(s["mean_response"], size, 1), _number(100 * s["deadline_miss_rate"].median, 1), time_cell(s["load_std"], size, seeds),
        )
    console = output_console()  # piped into a file: no terminal to fit, every row on one line
    console.print(table)
    empty = {row.rate: row.empty_runs for row in sweep.rows if row.empty_runs}
    if empty:
        where = ", ".join(f"T={rate:g}: {count} of {seeds}" for rate, count in empty.items())
        console.print(f"seeds that drew no task ({where}) are left out of the medians; "
                      "'-' = no run had a value; raise --duration or the rate")
    if per_device:
        console.print(_utilization_table(report))
    if report.predictor_models:
        console.print(f"predicted times from the predictor for: {escape(', '.join(report.predictor_models))}")
    if report.table_models:
        console.print(f"platform's predicted times kept for: {escape(', '.join(report.table_models))}")
    if report.plot:
        console.print(f"plot written to {escape(str(report.plot))}")
    if report.schedule:
        console.print(f"per-task schedule written to {escape(str(report.schedule))}")


def _utilization_table(report):
    from statistics import median

    from rich import box
    from rich.table import Table

    sweep = report.sweep
    names = sweep.platform.device_names()
    table = Table(title="utilization per device (busy / makespan, median over seeds)", box=box.SIMPLE_HEAD)
    table.add_column("policy")
    table.add_column("T", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for row in sweep.rows:
        ran = [run for run in row.runs if run.tasks]  # a seed that drew no task has no utilization
        cells = [f"{median(run.utilization[i] for run in ran):.2f}" if ran else "-" for i in range(len(names))]
        table.add_row(row.policy, "trace" if row.rate is None else f"{row.rate:g}", *cells)
    return table


def register(app: typer.Typer) -> None:
    app.command(name="simulate", help=HELP)(simulate)
