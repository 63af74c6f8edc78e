"""`sniper-onnx dispatch`: run a workload on a real fleet of devices and compare with the simulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, List, Optional

import typer

if TYPE_CHECKING:  # the dispatcher (numpy) is imported only when the command runs
    from sniper_onnx.dispatch import DispatchStopped, StoppedRun

HELP = """Dispatch inference tasks to real devices with a scheduling policy; report measured TPS, AWT,
p95/p99 wait and deadline misses next to the simulator's numbers for the same tasks.

  sniper-onnx dispatch --fleet examples/fleet.yaml --workload examples/trace.csv --policy sniper
  sniper-onnx dispatch --fleet fleet.yaml --rate 30 --duration 10 --policy edf --json
  sniper-onnx dispatch --fleet fleet.yaml --workload trace.csv --kill slow-0@2.5 --db ncd.sqlite
"""

METRIC_ROWS = (("tps", "TPS", "{:.2f}"), ("awt", "AWT (ms)", "ms"), ("p95_wait", "p95 wait (ms)", "ms"),
               ("p99_wait", "p99 wait (ms)", "ms"), ("mean_response", "mean response (ms)", "ms"),
               ("deadline_miss_rate", "deadline misses", "{:.1%}"))


def _parse_kill(text: str):
    from sniper_onnx.dispatch import Kill
    from sniper_onnx.errors import SniperError

    device, sep, at = text.rpartition("@")
    try:
        seconds = float(at)
    except ValueError:
        seconds = -1.0
    if not sep or not device or seconds < 0:
        raise SniperError(f"--kill {text!r}: write DEVICE@SECONDS, e.g. slow-0@2.5")
    return Kill(device, seconds)


def _cell(value, fmt: str) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{value * 1e3:.2f}" if fmt == "ms" else fmt.format(value)


def _print(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    from sniper_onnx.outputs import output_console

    console = output_console()
    table = Table(title=f"{report.policy} on {report.fleet} ({report.engine}): measured vs simulated")
    for column in ("metric", "measured", "sim (replay)", "real/sim", "sim (calibration)"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, label, fmt in METRIC_ROWS:
        ratio = report.gap.get(key)
        table.add_row(label, _cell(report.measured.get(key), fmt), _cell(report.simulated.get(key), fmt),
                      "-" if ratio is None or ratio != ratio else f"{ratio:.2f}",
                      _cell(report.simulated_calibration.get(key), fmt))
    console.print(table)
    failed = report.measured.get("failed") or 0
    if failed:
        console.print(f"the metrics above cover the {report.measured.get('tasks', 0)} completed task(s); with the "
                      f"{failed} failed one(s) counted as missed, deadline misses "
                      f"{_cell(report.measured.get('deadline_miss_rate_with_failed'), '{:.1%}')}")
    c = report.counts
    console.print(f"tasks {c.tasks}: sent {c.sent}, completed {c.completed}, failed {c.failed}, "
                  f"re-dispatched {c.redispatched}, lost {c.lost}, duplicated {c.duplicated}; "
                  f"devices died {c.devices_died}, joined {c.devices_joined}"
                  + (f", restarted {c.devices_restarted}" if c.devices_restarted else "")
                  + (f", left out {c.devices_left_out}" if c.devices_left_out else ""))
    if c.sessions_remade:
        console.print(f"{c.sessions_remade} task(s) waited for their device to make the model's session again "
                      "(the agent keeps fewer sessions than the fleet has models: python -m sniper_profiler.agent "
                      "--max-sessions / --max-session-mb)")
    console.print(f"dispatcher overhead per task (decision to send): median {report.overhead_us['median']:.0f} us, "
                  f"p95 {report.overhead_us['p95']:.0f} us; predicted times from {report.predicted_source}")
    for name, info in report.per_device.items():
        state = " (left out: every model failed its warm-up)" if info.get("left_out") else (
            "" if info.get("live_at_end", True) else " (not live at the end)")
        console.print(f"  {escape(name)} ({escape(info['type'])}): {info['tasks']} tasks completed of {info.get('sent', 0)} "
                      f"sent, {info.get('failed', 0)} failed, busy {info['busy_s']:.2f} s{state}")
    if report.db:
        console.print(f"{report.measurements_written} measurements stored in {escape(str(report.db))} (each task's "
                      "time, and each device's warm-up median of each model)")
    for failure in report.failures[:10]:
        typer.echo(f"  {failure}", err=True)


def register(app: typer.Typer) -> None:
    register_feedback(app)

    @app.command("dispatch", help=HELP)
    def dispatch_command(
        fleet: Annotated[Path, typer.Option("--fleet", help="Fleet YAML: devices, models, engine (see examples/fleet.yaml).")],
        workload: Annotated[Optional[Path], typer.Option("--workload", help="CSV: arrival,model[,deadline,input] (seconds into the run).")] = None,
        policy: Annotated[str, typer.Option("--policy", help="Scheduling policy (see `sniper-onnx simulate --list-policies`).")] = "sniper",
        rate: Annotated[Optional[float], typer.Option("--rate", help="Instead of --workload: Poisson arrivals, tasks/s.")] = None,
        duration: Annotated[float, typer.Option("--duration", help="Arrival window for --rate, seconds.")] = 10.0,
        seed: Annotated[int, typer.Option("--seed", help="Seed for --rate.")] = 0,
        deadline_factor: Annotated[float, typer.Option("--deadline-factor", help="Deadline when the workload gives none: arrival + factor x mean calibrated time.")] = 3.0,
        db: Annotated[Optional[Path], typer.Option("--db", help="Store every measured time in this database as it arrives.")] = None,
        kill: Annotated[Optional[List[str]], typer.Option("--kill", help="Fault run: SIGKILL DEVICE's worker at SECONDS while it runs a task (repeatable).")] = None,
        hang_timeout: Annotated[float, typer.Option("--hang-timeout", help="A device still running one task after max(this, 20 x its calibrated time) is taken as hung: killed, task re-dispatched.")] = 30.0,
        calibration_repeats: Annotated[int, typer.Option("--calibration-repeats", help="Timed warm-up runs per model and device.")] = 5,
        tasks_out: Annotated[Optional[Path], typer.Option("--tasks-out", help="Write every task's outcome here (JSON lines).")] = None,
        idle_factor: Annotated[Optional[float], typer.Option("--idle-factor", help="Sniper's idle factor (sniper, sniper-static), as for simulate.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    ) -> None:
        from sniper_onnx.dispatch import check_hang_timeout, check_policy, load_fleet, poisson_workload, read_workload
        from sniper_onnx.errors import SniperError
        from sniper_onnx.scheduling.api import check_deadline_factor
        from sniper_onnx.outputs import check_output_file

        check_policy(policy, idle_factor)
        from sniper_onnx.scheduling.policies import idle_factor_unused

        unused = idle_factor_unused([policy], idle_factor)
        if unused:
            _warn(unused)
        check_deadline_factor(deadline_factor)
        check_hang_timeout(hang_timeout)
        if tasks_out:
            check_output_file(tasks_out, "--tasks-out")
        loaded = load_fleet(fleet)
        if (workload is None) == (rate is None):
            raise SniperError("give exactly one of --workload trace.csv or --rate N")
        if calibration_repeats < 1:
            raise SniperError(f"--calibration-repeats {calibration_repeats}: must be at least 1")
        tasks = (read_workload(workload, list(loaded.models)) if workload is not None
                 else poisson_workload(list(loaded.models), rate, duration, seed))
        kills = [_parse_kill(text) for text in kill or []]
        from sniper_onnx.dispatch import DispatchInterrupted, DispatchStopped

        try:
            report = _run(loaded, tasks, policy, db, deadline_factor, calibration_repeats, kills, hang_timeout,
                          quiet=as_json, idle_factor=idle_factor)
        except DispatchInterrupted as stop:
            from sniper_onnx.cli import on_interrupt

            kept = _kept_on_interrupt(stop, _keep(stop, tasks_out))
            if stop.signum is not None:  # SIGTERM, SIGHUP: said as Ctrl-C is, and the shell's 128 + signal
                import signal

                typer.echo(f"sniper-onnx: terminated ({signal.Signals(stop.signum).name}); {kept}", err=True)
                raise typer.Exit(128 + stop.signum) from None
            on_interrupt(kept)
            raise
        except DispatchStopped as stop:  # the one error line also says what the run kept
            raise SniperError(_kept_on_error(stop, _keep(stop, tasks_out))) from None
        if tasks_out:
            _write_outcomes(tasks_out, report.outcomes)
        if as_json:
            typer.echo(json.dumps(report.to_json_dict()))
        else:
            _print(report)
        if report.counts.completed == 0:  # the report above says what happened to each task
            reason = report.failures[0] if report.failures else "no device ran any"
            raise SniperError(f"no task completed ({report.counts.failed} failed); first failure: {reason.strip()}")
        unfinished = report.counts.failed + report.counts.lost
        if unfinished:  # a script must not read a run with failed tasks as a success
            first = next((o.error for o in report.outcomes if o.status == "failed" and o.error), "")
            typer.echo(f"sniper-onnx: {unfinished} of {report.counts.tasks} task(s) did not complete "
                       f"({report.counts.failed} failed, {report.counts.lost} lost); first: {first[:300]}", err=True)
            raise typer.Exit(1)


def _write_outcomes(path: Path, outcomes) -> None:
    with path.open("w") as handle:
        for outcome in outcomes:
            handle.write(json.dumps(outcome.__dict__) + "\n")


NOTHING_KEPT = "nothing kept (--db stores times as they arrive)"


def _keep(stop: "StoppedRun", tasks_out: Optional[Path]) -> Optional[str]:
    """Write the outcomes of a run stopped partway to --tasks-out; what that kept, if anything."""
    if not (tasks_out and stop.outcomes):
        return None
    _write_outcomes(tasks_out, stop.outcomes)
    finished = sum(1 for outcome in stop.outcomes if outcome.status != "pending")
    return f"{finished} finished task(s) of {len(stop.outcomes)} written to {tasks_out} (the rest 'pending')"


def _stored(stop: "StoppedRun") -> Optional[str]:
    return f"{stop.stored} measured time(s) stored in {stop.db}" if stop.db else None


def _kept_on_interrupt(stop: "StoppedRun", written: Optional[str]) -> str:
    """What a run stopped by Ctrl-C kept: dispatch does not resume (a run is its arrivals' timing)."""
    kept = [part for part in (_stored(stop), written) if part]
    return f"{'; '.join(kept) or NOTHING_KEPT}; no report; dispatch does not resume: running it again starts a new run"


def _kept_on_error(stop: "DispatchStopped", written: Optional[str]) -> str:
    """The error, then what the run kept; the stored count last, where the API's message has it."""
    kept = [part for part in (written, _stored(stop)) if part]
    return f"{stop.reason}; {'; '.join(kept) or NOTHING_KEPT}"


def _run(fleet, tasks, policy, db, deadline_factor, repeats, kills, hang_timeout, quiet: bool, idle_factor=None):
    from sniper_onnx.cli.progress import progress_bar

    from sniper_onnx.dispatch import dispatch

    with progress_bar(disable=quiet) as bar:
        job = bar.add_task("dispatching", total=len(tasks))
        return dispatch(fleet, tasks, policy, db=db, deadline_factor=deadline_factor, calibration_repeats=repeats,
                        kills=kills, hang_floor_s=hang_timeout, warn=_warn, idle_factor=idle_factor,
                        progress=lambda done, total: bar.update(job, completed=done))


def _warn(message: str) -> None:
    """Said once, before the run (on stderr, so --json's stdout stays one object); the report keeps it too."""
    typer.echo(f"sniper-onnx: warning: {message}", err=True)


def register_feedback(app: typer.Typer) -> None:
    @app.command("fleet-feedback")
    def fleet_feedback(
        fleet: Annotated[Path, typer.Option("--fleet", help="Fleet YAML with predictor_devices (type -> device the predictor knows).")],
        db: Annotated[Path, typer.Option("--db", help="Database the fleet's dispatch/profile runs stored times in.")],
        output: Annotated[Path, typer.Option("--output", "-o", help="Corrected predictor .onnx to write.")],
        predictor: Annotated[Optional[Path], typer.Option("--predictor", help="Predictor to correct (default: the fleet's, else the shipped one).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    ) -> None:
        """Time Trimmer on what the fleet measured: prediction error per device type before and after."""
        from dataclasses import asdict

        from sniper_onnx.dispatch import load_fleet
        from sniper_onnx.dispatch.feedback import feedback_from_db

        report = feedback_from_db(load_fleet(fleet), db, output, predictor)
        if as_json:
            typer.echo(json.dumps(asdict(report)))
            return
        for item in report.types:
            typer.echo(f"{item.device_type} (as {item.predictor_device}, {item.networks} networks): MAPE "
                       f"{item.mape_before:.1%} -> {item.mape_after:.1%} (in-sample); leave-one-out RMSE(log) "
                       f"{item.loo_rmse_log:.3f}")
        for line in report.skipped:
            typer.echo(f"  skipped {line}", err=True)
        typer.echo(f"corrected predictor -> {report.output}")
