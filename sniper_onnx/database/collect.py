"""``sniper-onnx profile``: (generate or export ->) materialize -> measure -> store, resumable.

Jobs know their key before their model exists (``gen:<generator version>:<net id>``,
``zoo:<name>:<resolution>:b<batch>``), so a resumed run skips finished nets without re-making
them. Models are written to a scratch folder only for the measurement and deleted afterwards: the
database re-makes them from their source when it needs them again.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from sniper_onnx.errors import SniperError

ProgressHook = Callable[[str, int, Optional[str]], None]  # (event, total, detail)


@dataclass
class CollectJob:
    """A model to measure, possibly not yet written to disk."""

    name: str
    key: Optional[str]
    source: dict[str, Any]
    path: Optional[str] = None  # existing file, or None to make it with ``make``
    make: Optional[Callable[[], Any]] = None  # -> onnx.ModelProto


@dataclass
class CollectSummary:
    out: str
    db: Optional[str]
    device_id: str
    device_name: str
    total: int
    measured: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failed: int = 0  # of the skipped, those an earlier run recorded as failures
    # of the skipped, those with the key of a model this run measured (the same bytes, the same zoo
    # net twice): "b.onnx (as a.onnx)"; they are not "measured in an earlier run"
    skipped_duplicates: list[str] = field(default_factory=list)
    imported: int = 0
    failures: list[str] = field(default_factory=list)
    flagged: dict[str, list[str]] = field(default_factory=dict)  # flag -> names of the models it marks
    # models timed while other work used BUSY_NOTE of the CPUs or more, without --max-busy to flag
    # them: name -> that share (a tester's t2 labels came out 2-5x slow so, and trained in silence)
    busy: dict[str, float] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=list)  # input names of the nets measured in this run
    # --input-shape names no model of the run had (only found after a run with generated or zoo nets;
    # a run of files alone refuses them before measuring)
    unused_input_shapes: list[str] = field(default_factory=list)


BUSY_NOTE = 0.2


def _spec_dict(spec: Any) -> dict[str, Any]:
    for method in ("to_json_dict", "to_dict"):
        if hasattr(spec, method):
            return dict(getattr(spec, method)())
    if dataclasses.is_dataclass(spec):
        return dataclasses.asdict(spec)
    return {"net_id": spec.net_id, "seed": spec.seed, "family": spec.family, "config": spec.config}


def generated_jobs(count: int, seed: int, family: str, max_macs: Optional[float] = None) -> list[CollectJob]:
    import sniper_generator
    from sniper_generator import materialize, sample_specs

    default_version = getattr(sniper_generator, "GENERATOR_VERSION", getattr(sniper_generator, "__version__", "0"))
    jobs = []
    extra = {"max_macs": max_macs} if max_macs is not None else {}
    for spec in sample_specs(count, seed, family=family, **extra):
        version = getattr(spec, "generator_version", default_version)
        source = {"kind": "generator", "generator_version": version, "spec": _spec_dict(spec)}
        jobs.append(CollectJob(spec.net_id, f"gen:{version}:{spec.net_id}", source, make=lambda s=spec: materialize(s, weights=True)))
    return jobs


def zoo_jobs(resolutions: Sequence[int], batch: int = 1, names: Optional[Sequence[str]] = None) -> list[CollectJob]:
    from sniper_generator.zoo import ZOO, export_zoo_model

    unknown = sorted(set(names or []) - set(ZOO))
    if unknown:
        raise SniperError(f"--zoo-model {unknown[0]}: not in the zoo; choose from {', '.join(sorted(ZOO))}")
    for name in names or ():  # networks asked for by name: a size one refuses is an error before any run
        refused = [int(r) for r in resolutions if not ZOO[name].accepts(int(r))]
        if refused:
            export_zoo_model(name, resolution=refused[0], weights=False)  # raises the zoo's own one-line refusal
    jobs = []
    for name in names or sorted(ZOO):
        for resolution in resolutions:
            source = {"kind": "zoo", "name": name, "resolution": int(resolution), "batch": batch}
            make = lambda n=name, r=resolution: export_zoo_model(n, resolution=int(r), batch=batch, weights=True)  # noqa: E731
            jobs.append(CollectJob(f"{name}@{resolution}", f"zoo:{name}:{resolution}:b{batch}", source, make=make))
    return jobs


def expand_model_folders(paths: Sequence[str]) -> list[str]:
    """Each folder becomes the .onnx files in it (sorted); other paths stay as given. A file given
    twice, however spelled (a folder and a file in it, ``./a.onnx`` and ``a.onnx``, a link to it),
    is kept once, where it first appears: one prediction row, one measurement (until 2026-11-29 it
    came back once per mention)."""
    expanded: list[str] = []
    seen: set = set()
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(model) for model in path.glob("*.onnx"))
            if not found:
                raise SniperError(f"{path}: a folder with no .onnx file in it; give model files or a folder of them")
        else:
            found = [str(item)]
        for model in found:
            identity = _file_identity(Path(model))
            if identity not in seen:
                seen.add(identity)
                expanded.append(model)
    return expanded


def _file_identity(path: Path) -> tuple:
    """The same for every spelling of one file (device and inode, as ``os.path.samefile`` compares);
    a path that names no file keeps its resolved spelling, for its caller's own error."""
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is not None and stat.st_ino:  # a file system without inode numbers answers 0 for every file
        return ("file", stat.st_dev, stat.st_ino)
    return ("path", str(path.resolve()))


def file_jobs(paths: Sequence[str]) -> list[CollectJob]:
    from sniper_profiler.manifest import source_for

    manifests: dict = {}
    jobs = []
    for item in expand_model_folders(paths):
        model = Path(item)
        if not model.is_file():
            raise SniperError(f"{model}: no such model file")
        jobs.append(CollectJob(model.stem, None, source_for(model, manifests), path=str(model)))
    return jobs


class _BuildFailed(Exception):
    pass


@contextmanager
def _materialized(job: CollectJob, scratch: Path) -> Iterator[str]:
    if job.path:
        yield job.path
        return
    import onnx

    assert job.make is not None
    path = scratch / f"{job.name.replace('/', '_')}.onnx"
    try:
        onnx.save(job.make(), str(path))
    except Exception as error:  # noqa: BLE001 - one net that cannot be built must not stop the run
        raise _BuildFailed(f"{job.name}: could not build it ({type(error).__name__}: {error})") from None
    try:
        yield str(path)
    finally:
        path.unlink(missing_ok=True)


def collect(
    jobs: Sequence[CollectJob],
    out: "str | Path",
    config: Any,
    db_path: "str | Path | None" = None,
    retry_failed: bool = False,
    progress: Optional[ProgressHook] = None,
    retry_busy: bool = False,
) -> CollectSummary:
    """Measure every job not yet in ``out`` and import each record into ``db_path`` at once."""
    from sniper_profiler.config import ProfilerError
    from sniper_profiler.runner import Profiler, check_input_shape_names, check_out

    try:
        check_out(Path(out))  # before the database reads it: a model, a CSV or a database is refused
        if all(job.path for job in jobs):  # generated and zoo nets' inputs are known once they are built
            check_input_shape_names(config, [str(job.path) for job in jobs])
    except ProfilerError as error:
        raise SniperError(str(error)) from None
    db, caught_up = _open_db(db_path, out)  # first: a --db that is refused leaves no results file behind
    try:
        profiler = Profiler(out, config, retry_failed, retry_busy)
    except ProfilerError as error:
        if db is not None:
            db.close()
        raise SniperError(str(error)) from None
    passes = profiler.config.passes
    summary = CollectSummary(str(out), str(db_path) if db_path else None, profiler.fingerprint.device_id,
                             profiler.fingerprint.short_name(), total=len(jobs) * passes, imported=caught_up)
    if progress:
        progress("total", len(jobs) * passes, None)
    try:
        with tempfile.TemporaryDirectory(prefix="sniper-collect-") as scratch:
            for pass_index in range(1, passes + 1):
                for job in jobs:
                    _collect_one(profiler, job, pass_index, Path(scratch), summary, db, progress)
    finally:
        profiler.close()
        if db is not None:
            db.close()
    if config.input_shapes and not all(job.path for job in jobs):
        summary.unused_input_shapes = _unused_input_shapes(config, jobs, summary)
    return summary


def _unused_input_shapes(config: Any, jobs: Sequence[CollectJob], summary: CollectSummary) -> list[str]:
    """--input-shape names that neither a model file of the run nor a net measured now has (a run with
    generated or zoo nets cannot refuse them beforehand: their inputs are known once they are built)."""
    from sniper_profiler.graph_inputs import read_graph_inputs

    found = set(summary.input_names)
    for job in jobs:
        if job.path:
            found.update(name for name, _ in read_graph_inputs(job.path) or [])
    return sorted(set(config.input_shapes) - found)


def _collect_one(profiler: Any, job: CollectJob, pass_index: int, scratch: Path, summary: CollectSummary, db: Any,
                 progress: Optional[ProgressHook]) -> None:
    from sniper_profiler.runner import ModelJob

    model_job = ModelJob(path=job.path or "", name=job.name, source=job.source, key=job.key)
    label = job.name if pass_index == 1 else f"{job.name} (pass {pass_index})"
    if (job.key or job.path) and profiler.should_skip(model_job, pass_index):
        _count_skip(profiler, model_job, job, pass_index, summary)
        if progress:
            progress("advance", 1, f"{label}: done before")
        return
    if progress:
        progress("start", 0, label)
    _measure(profiler, model_job, job, pass_index, scratch, summary, db)
    if progress:
        progress("advance", 1, label)


def _count_skip(profiler: Any, model_job: Any, job: CollectJob, pass_index: int, summary: CollectSummary) -> None:
    summary.skipped += 1
    first = profiler.duplicate_of(model_job, pass_index)
    if first is not None:
        summary.skipped_duplicates.append(f"{_shown_name(job)} (as {_shown_name(first)})")
    else:
        summary.skipped_failed += int(profiler.failed_before(model_job, pass_index))


def _shown_name(job: Any) -> str:
    """A model file's name as the folder shows it (two files may share a stem); a net's name otherwise."""
    return Path(job.path).name if job.key is None and job.path else str(job.name)


def _measure(profiler: Any, model_job: Any, job: CollectJob, pass_index: int, scratch: Path, summary: CollectSummary,
             db: Any) -> None:
    from sniper_onnx.database.importer import import_record
    from sniper_profiler.config import ProfilerError

    try:
        with _materialized(job, scratch) as path:
            model_job.path = path
            record = profiler.profile(model_job, pass_index)
            flags = list(record.get("flags") or [])
            if db is not None:  # while the file exists, so features come from it
                imported, flags = import_record(db, record, str(profiler.out))  # as stored: the weights judge precision
                summary.imported += imported.added + imported.failures_added
    except ProfilerError as error:
        raise SniperError(str(error)) from None
    except _BuildFailed as error:
        summary.failed += 1
        summary.failures.append(str(error))  # nothing was measured, so no record; retried on resume
        return
    summary.input_names.extend(sorted({str(item.get("name")) for item in record.get("inputs") or []}
                                      - set(summary.input_names)))
    for flag in flags:
        summary.flagged.setdefault(flag, []).append(job.name)
    during = (record.get("stats") or {}).get("others_busy_during")
    if during is not None and during >= BUSY_NOTE and "machine_busy" not in flags:
        summary.busy[job.name] = float(during)
    if record["status"] == "ok":
        summary.measured += 1
    else:
        summary.failed += 1
        summary.failures.append(f"{job.name}: {record['failure']['kind']}: {record['failure']['reason']}")


def _open_db(db_path: "str | Path | None", out: "str | Path") -> tuple[Any, int]:
    """The database, and how many records of ``out`` it lacked and got: those an earlier run
    without --db, or a killed one, measured but did not store (they count as stored now)."""
    if db_path is None:
        return None, 0
    from sniper_onnx.database import Database, import_results

    db = Database(db_path)
    if Path(out).exists() and Path(out).stat().st_size:
        caught_up = import_results(db, out)
        return db, caught_up.added + caught_up.failures_added
    return db, 0
