"""Measure many models, each in its own child process, appending one durable record per model.

Running the same command again resumes: a model whose key (model identity + configuration) is
already in the results file is skipped, successful or failed (``retry_failed`` retries failures).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from sniper_profiler import __version__
from sniper_profiler.config import GPU_PROVIDERS, ProfileConfig, ProfilerError
from sniper_profiler.fingerprint import Fingerprint, collect_fingerprint
from sniper_profiler.quiet import wait_until_quiet
from sniper_profiler.records import RECORD_SCHEMA, append_record, file_sha256, read_records, stable_hash


@dataclass
class ModelJob:
    """One model to measure. ``key`` identifies it across runs (default: its file's sha256);
    ``source`` tells the cloud side how to find it again (e.g. the generator's id)."""

    path: str
    name: Optional[str] = None
    source: Dict[str, Any] = field(default_factory=dict)
    key: Optional[str] = None


@dataclass
class RunSummary:
    out: str
    device_id: str
    device_name: str
    measured: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failed: int = 0  # of the skipped, those an earlier run recorded as failures
    records: List[Dict[str, Any]] = field(default_factory=list)


ProgressCallback = Callable[[str, ModelJob, Optional[Dict[str, Any]]], None]


def available_providers() -> List[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def device_fingerprint(config: ProfileConfig) -> Fingerprint:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if config.provider not in providers:
        raise ProfilerError(
            f"--provider {config.provider}: not available in this onnxruntime ({ort.__version__}); "
            f"available: {', '.join(providers)}"
        )
    return collect_fingerprint(
        ort.__version__, config.provider, config.provider_options, config.precision, config.threads, config.graph_optimization
    )


def config_id(fingerprint: Fingerprint, config: ProfileConfig) -> str:
    return stable_hash({"device": fingerprint.device_id, "config": config.identity()})


def usable_cores() -> int:
    """The cores this process may run on (a container's or taskset's share), else all of them."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 0


def _check_threads(config: ProfileConfig) -> None:
    """More intra-op threads than cores take turns on them: a run would time that contention, and
    record it as a device configuration ("t1000") that no real deployment has. Checked here, on the
    machine that measures, not in the config, which a fleet's dispatcher also builds."""
    cores = usable_cores()
    if config.provider not in GPU_PROVIDERS and cores and config.threads > cores:
        raise ProfilerError(f"--threads {config.threads}: more than the {cores} cores this machine lets the profiler "
                            f"use; extra threads would time their own contention, not the model; use at most {cores}")


class Profiler:
    """Holds the results file, the device fingerprint and the set of finished keys."""

    def __init__(self, out: "str | Path", config: ProfileConfig, retry_failed: bool = False,
                 retry_busy: bool = False) -> None:
        self.out = Path(out)
        if self.out.is_dir():
            raise ProfilerError(f"--out {self.out}: is a directory; give a .jsonl file path")
        if self.out.exists() and not self.out.is_file():  # a device or a pipe: reading it back never ends
            raise ProfilerError(f"--out {self.out}: not a regular file; give a .jsonl file path")
        if not self.out.parent.exists():
            raise ProfilerError(f"--out {self.out}: folder {self.out.parent} does not exist; create it first")
        _check_threads(config)
        self.config = config
        self.fingerprint = device_fingerprint(config)
        self._lock = _lock_results(self.out)
        self.config_id = config_id(self.fingerprint, config)
        records = read_records(self.out)
        self.done = records.keys(include_failed=not retry_failed, include_busy=not retry_busy)
        self.failed = records.keys() - records.keys(include_failed=False)
        # key -> the job that recorded it in this run: a later job with its key (the same bytes, or
        # the same generated net) is a duplicate, not a model "measured in an earlier run"
        self.recorded_here: Dict[str, ModelJob] = {}

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the handle releases the lock
            self._lock = None

    def __enter__(self) -> "Profiler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def key_for(self, job: ModelJob, sha256: Optional[str] = None, pass_index: int = 1) -> str:
        """Pass 1 keeps the plain key, so a finished run can be given more passes later."""
        model_key = job.key or f"sha256:{sha256 or file_sha256(job.path)}"
        return _in_pass(f"{model_key}|{self.config_id}", pass_index)

    def is_done(self, job: ModelJob, pass_index: int = 1) -> bool:
        return self.key_for(job, pass_index=pass_index) in self.done

    def should_skip(self, job: ModelJob, pass_index: int) -> bool:
        """Done in this pass, or a later pass of a model whose first pass failed (it would fail again)."""
        first = self.key_for(job)  # one hash of the file for both questions
        return _in_pass(first, pass_index) in self.done or (pass_index > 1 and first in self.failed)

    def failed_before(self, job: ModelJob, pass_index: int = 1) -> bool:
        """A model skipped because an earlier run recorded its failure (--retry-failed measures it again)."""
        return self.key_for(job, pass_index=pass_index) in self.failed or self.key_for(job) in self.failed

    def duplicate_of(self, job: ModelJob, pass_index: int = 1) -> Optional[ModelJob]:
        """The job of this run that already recorded ``job``'s key in this pass, if any."""
        if not self.recorded_here:  # spares a resumed run hashing each file once more
            return None
        return self.recorded_here.get(self.key_for(job, pass_index=pass_index))

    def profile(self, job: ModelJob, pass_index: int = 1) -> Dict[str, Any]:
        """Measure one model in a child process and append its record (success or failure)."""
        if not Path(job.path).is_file():
            raise ProfilerError(f"{job.path}: no such model file")
        sha256 = file_sha256(job.path)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        quiet = wait_until_quiet(self.config.max_busy, self.config.quiet_timeout_s) if self.config.max_busy is not None else None
        load_before = _load_average()
        result = run_child(job.path, self.config)
        if (result.get("failure") or {}).get("kind") == "provider_unavailable":
            raise ProfilerError(result["failure"]["reason"])
        record = {
            "schema": RECORD_SCHEMA,
            "record_id": uuid.uuid4().hex,
            "key": self.key_for(job, sha256, pass_index),
            "pass": pass_index,
            "status": result["status"],
            "model": {
                "path": str(Path(job.path).resolve()),
                "name": job.name or Path(job.path).stem,
                "sha256": sha256,
                "size_bytes": Path(job.path).stat().st_size,
                "source": job.source,
            },
            "device": {
                "device_id": self.fingerprint.device_id,
                "fingerprint": self.fingerprint.to_dict(),
                "spec": self.fingerprint.device_spec().to_dict(),
            },
            "config": {**self.config.to_dict(), "config_id": self.config_id},
            "stats": result.get("stats"),
            "inputs": result.get("inputs"),
            "output_check": result.get("output_check"),
            "flags": result.get("flags", []) + (["machine_busy"] if self._busy(quiet, result.get("stats")) else []),
            "failure": result.get("failure"),
            "providers_used": result.get("providers_used"),
            "profiler_version": __version__,
            # Other work on the machine skews timings; the load average lets the cloud side filter.
            "load_average_1m": [load_before, _load_average()],
            "machine_check": {"cpu_busy_before": quiet.busy, "waited_s": round(quiet.waited_s, 1), "max_busy": self.config.max_busy} if quiet else None,
            "started_at": started,
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        append_record(self.out, record)
        self.done.add(record["key"])
        self.recorded_here.setdefault(record["key"], job)
        if record["status"] != "ok":
            self.failed.add(record["key"])
        else:  # a retried failure that now succeeds: its later passes are measured, not skipped
            self.failed.discard(record["key"])
        return record


    def _busy(self, quiet: Any, stats: Optional[Dict[str, Any]]) -> bool:
        """Busy before the model (the wait timed out), or other work used more than --max-busy of
        the CPUs while it was timed."""
        if self.config.max_busy is None:
            return False
        during = (stats or {}).get("others_busy_during")
        return bool(quiet and not quiet.quiet) or (during is not None and during > self.config.max_busy)


def _in_pass(first_pass_key: str, pass_index: int) -> str:
    return first_pass_key + (f"|pass{pass_index}" if pass_index > 1 else "")


def _load_average() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on Windows
        return None


def _lock_results(out: Path) -> Any:
    """Hold an exclusive lock on the results file: two profilers appending to one file would
    both measure the models neither has finished. The kernel drops it if we are killed."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Windows
        return None
    handle = open(out, "ab")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ProfilerError(f"--out {out}: another sniper-profiler is writing it; wait for it or choose another file") from None
    return handle


def run_child(path: str, config: ProfileConfig) -> Dict[str, Any]:
    """Run :mod:`sniper_profiler._child` on one model; turn every way it can die into a failure."""
    with tempfile.TemporaryDirectory(prefix="sniper-profiler-") as scratch:
        job_path = os.path.join(scratch, "job.json")
        result_path = os.path.join(scratch, "result.json")
        stderr_path = os.path.join(scratch, "stderr.txt")
        with open(job_path, "w") as handle:
            json.dump({"path": str(Path(path).resolve()), "config": config.to_dict()}, handle)
        with open(stderr_path, "wb") as stderr:
            # Own session: a Ctrl-C in the terminal reaches only the parent, which kills the child
            # and records nothing, instead of the child dying first and being recorded as a crash.
            child = subprocess.Popen(
                [sys.executable, "-m", "sniper_profiler._child", job_path, result_path],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,
            )
            try:
                code = child.wait(timeout=config.timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                return _failure("timeout", f"no result after {config.timeout_s:g} s (hang, or raise --timeout)")
            except BaseException:
                child.kill()  # interrupted: do not leave the child measuring on its own
                child.wait()
                raise
        if os.path.exists(result_path):
            with open(result_path) as handle:
                return json.load(handle)
        return _failure(*_death_reason(code, _tail(stderr_path)))


def _failure(kind: str, reason: str) -> Dict[str, Any]:
    return {"status": "failed", "failure": {"kind": kind, "reason": reason}}


def _death_reason(code: int, stderr_tail: str) -> tuple:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        if -code == signal.SIGKILL:
            return "out_of_memory", f"child killed by {name} (most likely the out-of-memory killer){stderr_tail}"
        return "crash", f"child died from {name}{stderr_tail}"
    return "crash", f"child exited with code {code} without a result{stderr_tail}"


def _tail(path: str, limit: int = 800) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip()
    except OSError:
        return ""
    return f"; stderr: ...{text[-limit:]}" if text else ""


def run_profile(
    jobs: Sequence[ModelJob],
    out: "str | Path",
    config: ProfileConfig,
    retry_failed: bool = False,
    on_progress: Optional[ProgressCallback] = None,
    retry_busy: bool = False,
) -> RunSummary:
    missing = [job.path for job in jobs if not Path(job.path).is_file()]
    if missing:
        raise ProfilerError(f"{missing[0]}: no such model file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    with Profiler(out, config, retry_failed, retry_busy) as profiler:
        return _run_jobs(profiler, jobs, on_progress)


def _run_jobs(profiler: Profiler, jobs: Sequence[ModelJob], on_progress: Optional[ProgressCallback]) -> RunSummary:
    summary = RunSummary(str(profiler.out), profiler.fingerprint.device_id, profiler.fingerprint.short_name())
    for pass_index in range(1, profiler.config.passes + 1):
        for job in jobs:
            _run_job(profiler, job, pass_index, summary, on_progress)
    return summary


def _run_job(profiler: Profiler, job: ModelJob, pass_index: int, summary: RunSummary,
             on_progress: Optional[ProgressCallback]) -> None:
    if profiler.should_skip(job, pass_index):
        summary.skipped += 1
        if profiler.duplicate_of(job, pass_index) is not None:
            event = "skipped_duplicate"
        else:
            failed_before = profiler.failed_before(job, pass_index)
            summary.skipped_failed += int(failed_before)
            event = "skipped_failed" if failed_before else "skipped"
        if on_progress:
            on_progress(event, job, None)
        return
    if on_progress:
        on_progress("start", job, None)
    record = profiler.profile(job, pass_index)
    summary.records.append(record)
    if record["status"] == "ok":
        summary.measured += 1
    else:
        summary.failed += 1
    if on_progress:
        on_progress("done", job, record)
