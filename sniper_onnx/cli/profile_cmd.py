"""`sniper-onnx profile`: measure models on this machine (same code as `sniper-profiler run`)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, List, Optional

import typer

PROVIDER_HELP = "execution provider: cpu, cuda, tensorrt or any name onnxruntime reports"


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile(
        models: Annotated[Optional[List[Path]], typer.Argument(help=".onnx files or folders of them")] = None,
        out: Annotated[Optional[Path], typer.Option("-o", "--out", help="results JSONL (appended; default: <db>.results.jsonl or results.jsonl)")] = None,
        db: Annotated[Optional[Path], typer.Option("--db", help="also store each record in this database")] = None,
        generate: Annotated[int, typer.Option("--generate", help="measure N random nets from the generator")] = 0,
        seed: Annotated[int, typer.Option("--seed", help="generator seed")] = 0,
        family: Annotated[str, typer.Option("--family", help="generator family: cnn, cnn-strided, cnn-wide, transformer, transformer-torch, tiny, mixed or nasbench201")] = "mixed",
        max_macs: Annotated[Optional[float], typer.Option("--max-macs", help="cap generated nets' MACs (about; the generator may exceed it up to 2x)")] = None,
        zoo: Annotated[bool, typer.Option("--zoo", help="measure every zoo network at each --resolution")] = False,
        zoo_model: Annotated[Optional[List[str]], typer.Option("--zoo-model", help="only this zoo network (repeatable)")] = None,
        resolution: Annotated[Optional[List[int]], typer.Option("--resolution", help="zoo input resolution (repeatable; default 224)")] = None,
        provider: Annotated[Optional[str], typer.Option("--provider", help=PROVIDER_HELP + " (default: cpu)", show_default=False)] = None,
        provider_option: Annotated[Optional[List[str]], typer.Option("--provider-option", help="KEY=VALUE (repeatable)")] = None,
        threads: Annotated[Optional[int], typer.Option("--threads", help="intra-op threads; 0 = onnxruntime default (default: 0)", show_default=False)] = None,
        opt_level: Annotated[Optional[str], typer.Option("--opt-level", help="graph optimization: disabled, basic, extended, all (default: all)", show_default=False)] = None,
        precision: Annotated[str, typer.Option("--precision", help="precision label (fp16 enables TensorRT fp16)")] = "fp32",
        input_shape: Annotated[Optional[List[str]], typer.Option("--input-shape", help="NAME=1x3x224x224 (or NAME:1,3,224,224, NAME:[1,3,224,224]) for symbolic dims (repeatable)")] = None,
        default_dim: Annotated[int, typer.Option("--default-dim", help="value of other symbolic dims")] = 1,
        warmup: Annotated[int, typer.Option("--warmup", help="warm-up runs")] = 5,
        min_repeats: Annotated[int, typer.Option("--min-repeats", help="timed runs before the CI is checked")] = 10,
        max_repeats: Annotated[int, typer.Option("--max-repeats", help="most timed runs, once --min-time has passed (a microsecond net runs on until then)")] = 1000,
        max_time: Annotated[float, typer.Option("--max-time", help="seconds of timed runs per model")] = 10.0,
        min_time: Annotated[float, typer.Option("--min-time", help="seconds of timed runs before the CI may stop a model (capped by --max-time)")] = 1.0,
        sessions: Annotated[int, typer.Option("--sessions", help="sessions of each model timed in turns (min and median kept per session); 0 = 3 on CPU with --threads 1, else 1")] = 0,
        target_ci: Annotated[float, typer.Option("--target-ci", help="stop when the median's CI half-width / median is below this")] = 0.01,
        timeout: Annotated[float, typer.Option("--timeout", help="seconds before a model's child process is killed")] = 300.0,
        max_busy: Annotated[Optional[float], typer.Option("--max-busy", help="before each model, wait until other work uses at most this CPU share (e.g. 0.1)")] = None,
        quiet_timeout: Annotated[float, typer.Option("--quiet-timeout", help="longest wait for --max-busy; then measure, flagged machine_busy")] = 900.0,
        memory_limit: Annotated[Optional[float], typer.Option("--memory-limit", help="GB of address space per model's child (CPU providers); more is recorded as out_of_memory")] = None,
        passes: Annotated[int, typer.Option("--passes", help="measure every model this many times, one pass after another; the database keeps the median (3 on a host whose speed drifts)")] = 1,
        retry_failed: Annotated[bool, typer.Option("--retry-failed", help="measure earlier failures again")] = False,
        retry_busy: Annotated[bool, typer.Option("--retry-busy", help="measure again models whose records are all flagged machine_busy (other work ran meanwhile); the old records stay")] = False,
        fleet: Annotated[Optional[Path], typer.Option("--fleet", help="spread the nets over this fleet's devices (dispatch fleet file; its devices set provider, threads and opt-level); needs --db")] = None,
        json_output: Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")] = False,
    ) -> None:
        """Measure models on this machine: files, --generate N random nets and/or --zoo; resumable."""
        from sniper_onnx.database.collect import collect, file_jobs, generated_jobs, zoo_jobs
        from sniper_onnx.errors import SniperError
        from sniper_onnx.analysis.loading import parse_input_shapes
        from sniper_profiler.config import ProfileConfig, ProfilerError, parse_provider_option

        try:
            config = ProfileConfig(
                provider=provider or "cpu", provider_options=dict(parse_provider_option(t) for t in provider_option or []),
                threads=_threads(threads, fleet), graph_optimization=opt_level or "all", precision=precision,
                input_shapes=parse_input_shapes(input_shape), default_dim=default_dim,
                warmup=warmup, min_repeats=min_repeats, max_repeats=max_repeats, max_time_s=max_time, min_time_s=min_time, sessions=sessions,
                target_relative_ci=target_ci, timeout_s=timeout, max_busy=max_busy, quiet_timeout_s=quiet_timeout, memory_limit_gb=memory_limit,
                passes=passes,
            )
        except ProfilerError as error:
            raise SniperError(str(error)) from None
        if generate < 0:
            raise SniperError(f"--generate {generate}: must be 0 or more")
        jobs = file_jobs([str(m) for m in models or []])
        if generate:
            jobs += generated_jobs(generate, seed, family, max_macs)
        if zoo or zoo_model:
            jobs += zoo_jobs(resolution or [224], names=zoo_model)
        if not jobs:
            raise SniperError("nothing to measure; pass .onnx files, --generate N or --zoo")
        if fleet is not None:
            if out is not None:
                raise SniperError(f"-o {out} with --fleet: the farm stores into --db only; drop -o "
                                  "(`sniper-onnx db export` writes the measurements out)")
            retries = [flag for flag, on in (("--retry-failed", retry_failed), ("--retry-busy", retry_busy)) if on]
            if retries:  # the farm measures what the database lacks; it keeps no results file to retry from
                raise SniperError(f"{retries[0]} with --fleet: the farm measures every net its database lacks and "
                                  "keeps no results file to retry from; drop it")
            _profile_on_fleet(fleet, jobs, db, config, (provider, threads, opt_level), json_output)
            return
        out = out or (Path(f"{db}.results.jsonl") if db else Path("results.jsonl"))
        from sniper_onnx.cli import on_interrupt

        on_interrupt(f"the models measured so far are kept in {out}" + (f" and {db}" if db else "")
                     + "; running the same command again resumes (it skips them)")
        from sniper_profiler.runner import terminate_as_interrupt

        with terminate_as_interrupt():  # SIGTERM, SIGHUP: cleaned up and said as Ctrl-C is
            summary = _run_with_progress(collect, jobs, out, config, db, (retry_failed, retry_busy), disable=json_output)
        if json_output:
            typer.echo(json.dumps(asdict(summary)))
        else:
            _print_summary(summary)
        if summary.failed or (not summary.measured and summary.skipped_failed == summary.total):
            # a model failed now, or every one failed before: a script must not read that as success.
            # 1, not a user error's 2: what was measured is kept, and a script can tell the two apart
            raise typer.Exit(1)

    return None


def _threads(threads: Optional[int], fleet: Optional[Path]) -> int:
    """On a fleet each device's threads are the fleet file's, checked per device type by the farm:
    its default of 1 here keeps --sessions from being judged against this machine's default of 0."""
    if threads is not None:
        return threads
    return 1 if fleet is not None else 0


def _print_summary(summary) -> None:
    from sniper_onnx.analysis.wording import first_five

    typer.echo(f"{summary.measured} measured, {summary.failed} failed, {summary.skipped} skipped "
               f"(device {summary.device_id}: {summary.device_name}) -> {summary.out}"
               + (f", {summary.imported} stored in {summary.db}" if summary.db else ""))
    for failure in summary.failures[:10]:
        typer.echo(f"  failed: {failure}", err=True)
    if summary.skipped_failed:
        typer.echo(f"  skipped {summary.skipped_failed} that failed before (in an earlier run, or an earlier pass of "
                   "this one); --retry-failed measures them again", err=True)
    if summary.skipped_duplicates:
        typer.echo(f"  skipped {len(summary.skipped_duplicates)} identical to another model of this run (run once, "
                   f"under the other's name, measured or failed): {first_five(summary.skipped_duplicates)}", err=True)
    earlier = summary.skipped - summary.skipped_failed - len(summary.skipped_duplicates)
    if earlier:
        typer.echo(f"  skipped {earlier} measured in an earlier run on this device "
                   "configuration (the stopping rule, such as --max-time, is not part of it); --passes K measures "
                   "each K times, or give another --out", err=True)
    for flag, names in summary.flagged.items():
        typer.echo(f"  flagged {flag}: {first_five(names)}; {FLAG_ADVICE.get(flag, 'see docs/profiler.md, Flags')}", err=True)
    if summary.unused_input_shapes:
        typer.echo(f"sniper-onnx: warning: --input-shape {', '.join(summary.unused_input_shapes)}: no model of this run "
                   f"has an input of that name, so it sized nothing (their inputs: {first_five(summary.input_names)})",
                   err=True)
    if summary.busy:
        low, high = (f"{100 * share:.0f}" for share in (min(summary.busy.values()), max(summary.busy.values())))
        typer.echo(f"sniper-onnx: warning: {len(summary.busy)} of {summary.measured + summary.failed} models were timed "
                   f"while other work used {low if low == high else f'{low}-{high}'} % of the CPUs (stats.others_busy_during): "
                   "their times may be slow; measure on a quiet machine, or pass --max-busy 0.1 to wait for quiet and "
                   "flag the rest machine_busy (then --retry-busy measures them again)", err=True)


FLAG_ADVICE = {
    "precision_mismatch": "the model's precision (its weights' where --db judged them, else its inputs' float type) "
                          "is not --precision's; `db export` leaves it out: measure it again with --precision set to "
                          "the model's (fp32, fp16, bf16, or int8 for a quantized model)",
    "denormal_outputs": "subnormal outputs slow x86 down up to 50x: initialize the weights like trained ones",
    "nan_outputs": "the outputs hold NaN: check the weights and inputs",
    "inf_outputs": "the outputs hold Inf: check the weights and inputs",
    "machine_busy": "other work ran meanwhile: `db export --exclude-flag machine_busy` leaves it out; "
                    "run the same command with --retry-busy on a quiet machine to measure it again",
    "ci_target_not_reached": "the timing interval stayed wide: raise --max-time or --max-repeats",
    "symbolic_dims_defaulted": "symbolic dims past the batch (an image's height and width, a sequence's length) "
                               "were set to --default-dim: pass --input-shape NAME=DIMS for the size you mean",
}


def _profile_on_fleet(fleet: Path, jobs, db: Optional[Path], config, device_options: tuple, json_output: bool) -> None:
    from sniper_onnx.dispatch import load_fleet
    from sniper_onnx.dispatch.profiling import check_device_options, profile_fleet, refuse_unsupported
    from sniper_onnx.errors import SniperError

    if db is None:
        raise SniperError("--fleet needs --db ncd.sqlite: the farm stores every median there")
    refuse_unsupported(config)  # an option the farm cannot honour is said before the fleet file is read
    loaded = load_fleet(fleet)
    check_device_options(loaded, *device_options)
    # profile_fleet checks the settings against the fleet before any net is generated or read
    from sniper_onnx.cli import on_interrupt

    on_interrupt(f"the medians measured so far are stored in {db}; running the same command again resumes "
                 "(it skips them)")
    summary = profile_fleet(loaded, jobs, db, config)
    if json_output:
        typer.echo(json.dumps(asdict(summary)))
    else:
        _print_fleet_summary(summary)
    # a script must not read "nothing measured" or "measured but not stored" as success
    if summary.failed or summary.store_errors:
        raise typer.Exit(1)


def _print_fleet_summary(summary) -> None:
    skipped = f", {summary.skipped} skipped (already in the database)" if summary.skipped else ""
    typer.echo(f"{summary.measured} measured, {summary.failed} failed{skipped} on fleet {summary.fleet}; "
               f"{summary.stored} stored in {summary.db}")
    if summary.same_bytes:
        more = len(summary.same_bytes) - 5
        shown = "; ".join(summary.same_bytes[:5]) + (f" and {more} more" if more > 0 else "")
        typer.echo(f"  {len(summary.same_bytes)} net(s) with the same bytes as an earlier net share its record "
                   f"(measured and stored once, under the first one's name): {shown}", err=True)
    if summary.already_stored:
        typer.echo(f"  {summary.already_stored} median(s) not stored again: the database already held them "
                   "(another run with the same settings)", err=True)
    for failure in summary.failures[:10]:
        typer.echo(f"  failed: {failure}", err=True)
    if len(summary.failures) > 10:
        typer.echo(f"  ... and {len(summary.failures) - 10} more (--json lists them all)", err=True)
    for error in summary.store_errors[:10]:
        typer.echo(f"  not stored: {error}", err=True)
    for flag, names in summary.flagged.items():
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        typer.echo(f"  flagged {flag}: {shown}; {FLAG_ADVICE.get(flag, 'see docs/profiler.md, Flags')}", err=True)


def _run_with_progress(collect, jobs, out, config, db, retries: tuple[bool, bool], disable: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from sniper_onnx.cli.progress import progress_bar

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with progress_bar(*columns, disable=disable, transient=False) as progress:
        task = progress.add_task("profiling", total=len(jobs))

        def hook(event: str, amount: int, detail: Optional[str]) -> None:
            if event in ("start", "advance"):
                progress.update(task, advance=amount, description=f"profiling {detail or ''}"[:60])

        return collect(jobs, out, config, db, retries[0], hook, retry_busy=retries[1])
