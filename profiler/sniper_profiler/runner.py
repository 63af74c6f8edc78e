"""Measure many models, each in its own child process, appending one durable record per model.

Running the same command again resumes: a model whose key (model identity + configuration) is
already in the results file is skipped, successful or failed (``retry_failed`` retries failures).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from sniper_profiler import __version__
from sniper_profiler.config import GPU_PROVIDERS, ProfileConfig, ProfilerError
from sniper_profiler.fingerprint import Fingerprint, collect_fingerprint
from sniper_profiler.quiet import wait_until_quiet
from sniper_profiler.graph_inputs import read_graph_inputs
from sniper_profiler.records import RECORD_SCHEMA, append_record, file_sha256, is_results_file, read_records, stable_hash


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


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (systemd, docker stop, a batch scheduler, a closed terminal), raised where
    the run is, as Ctrl-C's KeyboardInterrupt: the child is killed, its scratch folder removed, the
    records kept, and the command says so."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within it, SIGTERM and SIGHUP raise :class:`Terminated` (in the main thread only, where Python
    delivers signals); a second one during the clean-up is ignored, as it would cut the clean-up short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]

    def handler(signum: int, frame: Any) -> None:
        for number in wanted:
            signal.signal(number, signal.SIG_IGN)
        raise Terminated(signum)

    previous = {number: signal.signal(number, handler) for number in wanted}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


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


def check_provider_loads(config: ProfileConfig) -> None:
    """Open a session of a one-node model with the provider and its options, as ``run`` opens one per
    model: a provider onnxruntime lists but cannot load (no CUDA libraries, no GPU) falls back to
    CPU, and ``device`` must not hand out an id and a feature vector of a configuration that can
    never be measured here."""
    from sniper_profiler.graph_inputs import probe_model
    from sniper_profiler.measure import ProviderUnavailable, create_session

    import onnxruntime as ort

    # onnxruntime logs a provider library it cannot load in several lines of its own, before the
    # session falls back; the one line below says it (the process ends after `device`)
    ort.set_default_logger_severity(4)
    try:
        # onnxruntime's Python layer prints its fallback ("EP Error ...") on stdout, where `device`
        # writes its JSON
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            create_session(probe_model(), config)  # type: ignore[arg-type]  # onnxruntime takes bytes too
    except ProviderUnavailable as error:
        raise ProfilerError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - onnxruntime's own refusal (a bad option value, a missing library)
        words = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ProfilerError(f"--provider {config.provider}: did not load ({words[:300]}); check its libraries "
                            "and --provider-option values") from None
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default, warnings


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


def check_out(out: Path) -> None:
    """Refuse an --out that a run would harm or cannot use, before anything is measured. Records are
    appended, so an existing file must be an earlier results file (or empty): appended to a model,
    a CSV or a database, they destroyed it (the .onnx being measured, too)."""
    if out.is_dir():
        raise ProfilerError(f"--out {out}: is a directory; give a .jsonl file path")
    if out.exists() and not out.is_file():  # a device or a pipe: reading it back never ends
        raise ProfilerError(f"--out {out}: not a regular file; give a .jsonl file path")
    if not out.parent.exists():
        raise ProfilerError(f"--out {out}: folder {out.parent} does not exist; create it first")
    try:
        foreign = out.exists() and not is_results_file(out)
    except OSError as error:
        raise ProfilerError(f"--out {out}: {error.strerror or error}; check the path exists and is readable") from None
    if foreign:
        raise ProfilerError(f"--out {out}: exists and is not a sniper-profiler results file (its first line is no "
                            "profiler record); records are appended to --out, so give a new .jsonl path or an "
                            "earlier results file")


def check_input_shape_names(config: ProfileConfig, paths: Sequence[str]) -> None:
    """A shape applies to the models that have an input of its name (a run may mix a BERT with CNNs);
    a name that none of ``paths`` has is a typo or the wrong models, refused before anything is
    measured. Files that cannot be read as ONNX are left to their failure record."""
    if not config.input_shapes:
        return
    found: Set[str] = set()
    readable = 0
    for path in paths:
        inputs = read_graph_inputs(path)
        if inputs is not None:
            readable += 1
            found.update(name for name, _ in inputs)
    unknown = sorted(set(config.input_shapes) - found)
    if readable and unknown:
        names = ", ".join(sorted(found)) or "none"
        raise ProfilerError(f"--input-shape {unknown[0]}: no model of this run has an input of that name "
                            f"(their inputs: {names if len(names) <= 200 else names[:200] + '...'})")


class Profiler:
    """Holds the results file, the device fingerprint and the set of finished keys."""

    def __init__(self, out: "str | Path", config: ProfileConfig, retry_failed: bool = False,
                 retry_busy: bool = False) -> None:
        self.out = Path(out)
        check_out(self.out)
        _check_threads(config)
        self.config = config
        self.fingerprint = device_fingerprint(config)
        try:
            self._lock = _lock_results(self.out)
            records = read_records(self.out)
        except OSError as error:  # a folder or a file this user may not write
            raise ProfilerError(f"--out {self.out}: {error.strerror or error}; check the path exists and is "
                                "writable") from None
        # Keyed on the threads onnxruntime runs (0 resolved); a file's models add only the shapes they
        # use (config_id_for). Records of earlier versions hashed the settings as given: their keys
        # (legacy_config_id) still count, so a results file of any version resumes.
        self.config_id = stable_hash({"device": self.fingerprint.device_id,
                                      "config": config.model_identity(self.fingerprint.threads)})
        self.legacy_config_id = config_id(self.fingerprint, config)
        self._file_config_ids: Dict[str, str] = {}  # sha256 -> config id of that model
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

    def config_id_for(self, path: str, sha256: str) -> str:
        """The configuration id of one model file: only the input shapes it uses count."""
        if sha256 not in self._file_config_ids:
            identity = self.config.model_identity(self.fingerprint.threads, read_graph_inputs(path))
            self._file_config_ids[sha256] = stable_hash({"device": self.fingerprint.device_id, "config": identity})
        return self._file_config_ids[sha256]

    def key_for(self, job: ModelJob, sha256: Optional[str] = None, pass_index: int = 1) -> str:
        """Pass 1 keeps the plain key, so a finished run can be given more passes later."""
        return _in_pass(self._keys(job, sha256)[0], pass_index)

    def _keys(self, job: ModelJob, sha256: Optional[str] = None) -> Tuple[str, str]:
        """The first pass's key, and the one a profiler before 2026-11-30 gave the same measurement."""
        if job.key:
            return f"{job.key}|{self.config_id}", f"{job.key}|{self.legacy_config_id}"
        sha256 = sha256 or file_sha256(job.path)
        model_key = f"sha256:{sha256}"
        return f"{model_key}|{self.config_id_for(job.path, sha256)}", f"{model_key}|{self.legacy_config_id}"

    def _any_in(self, keys: Set[str], job: ModelJob, pass_index: int, first: Optional[Tuple[str, str]] = None) -> bool:
        return any(_in_pass(key, pass_index) in keys for key in first or self._keys(job))

    def is_done(self, job: ModelJob, pass_index: int = 1) -> bool:
        return self._any_in(self.done, job, pass_index)

    def should_skip(self, job: ModelJob, pass_index: int) -> bool:
        """Done in this pass, or a later pass of a model whose first pass failed (it would fail again)."""
        first = self._keys(job)  # one hash of the file for both questions
        return self._any_in(self.done, job, pass_index, first) or (pass_index > 1 and self._any_in(self.failed, job, 1, first))

    def failed_before(self, job: ModelJob, pass_index: int = 1) -> bool:
        """A model skipped because its failure was recorded before: by an earlier run, or in an earlier
        pass of this one (--retry-failed measures it again)."""
        first = self._keys(job)
        return self._any_in(self.failed, job, pass_index, first) or self._any_in(self.failed, job, 1, first)

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
        key = self.key_for(job, sha256, pass_index)
        record = {
            "schema": RECORD_SCHEMA,
            "record_id": uuid.uuid4().hex,
            "key": key,
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
            "config": {**self.config.to_dict(), "config_id": self._keys(job, sha256)[0].rsplit("|", 1)[1]},
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
    check_input_shape_names(config, [job.path for job in jobs])
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
