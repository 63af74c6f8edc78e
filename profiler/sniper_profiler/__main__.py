"""``sniper-profiler``: the device-side command (argparse only: typer is not a device dependency)."""

from __future__ import annotations

import argparse
import os
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from sniper_profiler.config import ProfileConfig, ProfilerError, parse_input_shape, parse_provider_option
from sniper_profiler.units import milliseconds

PROG = "sniper-profiler"


def add_measurement_options(parser: argparse.ArgumentParser) -> None:
    add_device_options(parser)
    add_stopping_options(parser)


def add_device_options(parser: argparse.ArgumentParser) -> None:
    """The settings that make a device configuration (what ``device`` describes)."""
    defaults = ProfileConfig()
    group = parser.add_argument_group("device configuration")
    group.add_argument("--provider", default="cpu", help="execution provider: cpu, cuda, tensorrt or any name onnxruntime reports (default: cpu)")
    group.add_argument("--provider-option", action="append", default=[], metavar="KEY=VALUE", help="provider option, repeatable (e.g. device_id=0)")
    group.add_argument("--threads", type=int, default=defaults.threads, help="intra-op threads; 0 = onnxruntime default (default: 0)")
    group.add_argument("--opt-level", default=defaults.graph_optimization, choices=["disabled", "basic", "extended", "all"], help="graph optimization level (default: all)")
    group.add_argument("--precision", default=defaults.precision, help="precision label; fp16 turns on TensorRT's fp16 mode (default: fp32)")
    group.add_argument("--input-shape", action="append", default=[], metavar="NAME=1x3x224x224", help="shape for an input with symbolic dims, repeatable")
    group.add_argument("--default-dim", type=int, default=defaults.default_dim, help="value of symbolic dims not set by --input-shape (default: 1)")


def add_stopping_options(parser: argparse.ArgumentParser) -> None:
    """How long ``run`` measures each model: ``device`` measures nothing, so it does not take them."""
    defaults = ProfileConfig()
    stop = parser.add_argument_group("stopping rule")
    stop.add_argument("--warmup", type=int, default=defaults.warmup, help="warm-up runs (default: %(default)s)")
    stop.add_argument("--min-repeats", type=int, default=defaults.min_repeats, help="timed runs before the CI is checked (default: %(default)s)")
    stop.add_argument("--max-repeats", type=int, default=defaults.max_repeats,
                      help="most timed runs, once --min-time has passed (default: %(default)s)")
    stop.add_argument("--max-time", type=float, default=defaults.max_time_s, help="seconds of timed runs per model (default: %(default)s)")
    stop.add_argument("--min-time", type=float, default=defaults.min_time_s, help="seconds of timed runs before the CI may stop a model, capped by --max-time (default: %(default)s)")
    stop.add_argument("--sessions", type=int, default=defaults.sessions, help="sessions of each model timed in turns, min and median kept per session; 0 = 3 on CPU with --threads 1, else 1 (default: %(default)s)")
    stop.add_argument("--target-ci", type=float, default=defaults.target_relative_ci, help="stop once the median's CI half-width / median is below this (default: %(default)s)")
    stop.add_argument("--confidence", type=float, default=defaults.confidence, help="(default: %(default)s)")
    stop.add_argument("--max-busy", type=float, default=None, help="before each model, wait until other work uses at most this share of the CPUs (e.g. 0.1); off by default")
    stop.add_argument("--quiet-timeout", type=float, default=defaults.quiet_timeout_s, help="longest wait for --max-busy, then measure flagged machine_busy (default: %(default)s)")
    stop.add_argument("--memory-limit", type=float, default=None, metavar="GB", help="cap each child's address space (CPU providers): a model needing more is recorded as out_of_memory")
    stop.add_argument("--passes", type=int, default=defaults.passes, help="measure every model this many times, one pass over all of them after another; the database keeps the median (default: %(default)s; 3 on a host whose speed drifts)")
    stop.add_argument("--timeout", type=float, default=defaults.timeout_s, help="seconds before a model's child process is killed (default: %(default)s)")


def device_config_from_args(args: argparse.Namespace) -> ProfileConfig:
    shapes: Dict[str, List[int]] = dict(parse_input_shape(text) for text in args.input_shape)
    options = dict(parse_provider_option(text) for text in args.provider_option)
    return ProfileConfig(provider=args.provider, provider_options=options, threads=args.threads,
                         graph_optimization=args.opt_level, precision=args.precision, input_shapes=shapes,
                         default_dim=args.default_dim)


def config_from_args(args: argparse.Namespace) -> ProfileConfig:
    """The device configuration (:func:`device_config_from_args`) with the stopping rule."""
    from dataclasses import replace

    return replace(
        device_config_from_args(args), warmup=args.warmup,
        min_repeats=args.min_repeats, max_repeats=args.max_repeats, max_time_s=args.max_time,
        min_time_s=args.min_time, sessions=args.sessions,
        target_relative_ci=args.target_ci, confidence=args.confidence, timeout_s=args.timeout,
        max_busy=args.max_busy, quiet_timeout_s=args.quiet_timeout, memory_limit_gb=args.memory_limit,
        passes=args.passes,
    )


def _expand(models: Sequence[str]) -> List[str]:
    paths: List[str] = []
    for item in models:
        path = Path(item)
        paths.extend(sorted(str(p) for p in path.glob("*.onnx")) if path.is_dir() else [item])
    return paths


def _print_progress(event: str, job, record) -> None:
    if event == "done" and record is not None:
        if record["status"] == "ok":
            stats = record["stats"]
            note = f" [{', '.join(record['flags'])}]" if record["flags"] else ""
            note += f" (pass {record['pass']})" if record.get("pass", 1) > 1 else ""
            print(f"{job.path}: median {milliseconds(stats['median_s'])} ms over {stats['count']} runs{note}", file=sys.stderr)
        else:
            print(f"{job.path}: FAILED ({record['failure']['kind']}): {record['failure']['reason']}", file=sys.stderr)
    elif event == "skipped":
        print(f"{job.path}: already measured, skipped", file=sys.stderr)
    elif event == "skipped_duplicate":
        print(f"{job.path}: the same model as one this run already ran (measured or failed), skipped", file=sys.stderr)
    elif event == "skipped_failed":
        print(f"{job.path}: failed before (in an earlier run, or an earlier pass of this one), skipped "
              "(--retry-failed measures it again)", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from sniper_profiler.runner import ModelJob, run_profile

    from sniper_profiler.manifest import source_for

    config = config_from_args(args)
    manifests: dict = {}
    jobs = [ModelJob(path=path, source=source_for(path, manifests)) for path in _expand(args.models)]
    if not jobs:
        raise ProfilerError("no models given; pass .onnx files or folders holding them")
    summary = run_profile(jobs, args.out, config, retry_failed=args.retry_failed, retry_busy=args.retry_busy,
                          on_progress=None if args.quiet else _print_progress)
    result = {"out": summary.out, "device_id": summary.device_id, "device": summary.device_name,
              "measured": summary.measured, "failed": summary.failed, "skipped": summary.skipped,
              "skipped_failed": summary.skipped_failed}
    print(json.dumps(result) if args.json else
          f"{summary.measured} measured, {summary.failed} failed, {summary.skipped} skipped -> {summary.out} (device {summary.device_id})")
    every_one_failed_before = not summary.measured and summary.skipped_failed == summary.failed + summary.skipped
    # as `sniper-onnx profile`: 1 when a model failed (what was measured is kept), 2 for a usage error
    return 1 if summary.failed or every_one_failed_before else 0


def cmd_device(args: argparse.Namespace) -> int:
    from sniper_profiler.runner import _check_threads, check_provider_loads, device_fingerprint

    config = device_config_from_args(args)
    _check_threads(config)  # the checks `run` makes: no id for a configuration it would refuse
    fingerprint = device_fingerprint(config)
    check_provider_loads(config)
    data = {"fingerprint": fingerprint.to_dict(), "spec": fingerprint.device_spec().to_dict(),
            "features": dict(zip(_feature_names(), fingerprint.device_spec().features()))}
    print(json.dumps(data, indent=None if args.json else 2))
    return 0


def cmd_providers(args: argparse.Namespace) -> int:
    from sniper_profiler.runner import available_providers

    print("\n".join(available_providers()))
    return 0


def _feature_names() -> List[str]:
    from sniper_profiler.device import DEVICE_FEATURE_NAMES

    return list(DEVICE_FEATURE_NAMES)


def _stopping_option(extra: Sequence[str]) -> Optional[str]:
    """The first of ``extra`` that is one of ``run``'s stopping-rule options (``--max-time=3`` too)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_stopping_options(probe)
    known = {option for action in probe._actions for option in action.option_strings}
    return next((item.split("=")[0] for item in extra if item.split("=")[0] in known), None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Measure ONNX inference latency on this device (needs only numpy and onnxruntime).")
    parser.add_argument("--version", action="version", version=f"{PROG} " + __import__("sniper_profiler").__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="measure models, appending one JSONL record per model (resumable)")
    run.add_argument("models", nargs="+", help=".onnx files or folders of them")
    run.add_argument("-o", "--out", required=True, help="results file (JSONL, appended; rerunning skips what is there)")
    run.add_argument("--retry-failed", action="store_true", help="measure again models whose earlier record is a failure")
    run.add_argument("--retry-busy", action="store_true", help="measure again models whose every record is flagged machine_busy (the old records stay)")
    run.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    run.add_argument("-q", "--quiet", action="store_true", help="no per-model lines on stderr")
    add_measurement_options(run)
    run.set_defaults(handler=cmd_run)
    device = commands.add_parser("device", help="print this device's fingerprint, id and feature vector")
    device.add_argument("--json", action="store_true", help="one-line JSON")
    add_device_options(device)  # no stopping rule: it measures nothing
    device.set_defaults(handler=cmd_device)
    providers = commands.add_parser("providers", help="list the execution providers onnxruntime offers here")
    providers.set_defaults(handler=cmd_providers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        stopping = _stopping_option(extra) if getattr(args, "command", None) == "device" else None
        if stopping:
            print(f"{PROG} device: error: {stopping} is a stopping-rule option of `run`; `device` measures "
                  "nothing, so drop it", file=sys.stderr)
            return 2
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    from sniper_profiler.runner import Terminated, terminate_as_interrupt

    try:
        with terminate_as_interrupt():
            return args.handler(args)
    except ProfilerError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        # only `run` resumes (its --out file says which models are done); the others measure nothing
        resumes = "; the models measured so far are kept in --out, rerun the same command to resume" \
            if getattr(args, "command", None) == "run" else ""
        if isinstance(interrupt, Terminated):  # SIGTERM, SIGHUP: said, and the shell's 128 + signal
            import signal

            print(f"{PROG}: interrupted by {signal.Signals(interrupt.signum).name}{resumes}", file=sys.stderr)
            return 128 + interrupt.signum
        print(f"{PROG}: interrupted{resumes}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `sniper-profiler device | head`: the reader left; stop quietly as shell tools do
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except Exception as error:  # noqa: BLE001 - 1 means "a model failed, the rest measured": a crash must not read so
        if os.environ.get("SNIPER_PROFILER_DEBUG"):
            raise
        print(f"{PROG}: internal error: {type(error).__name__}: {error} (set SNIPER_PROFILER_DEBUG=1 for the "
              "traceback, and please report it)", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
