"""Writing generated networks to disk: ONNX files plus a JSONL manifest, or the manifest alone."""

from __future__ import annotations

import json
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from sniper_generator.spec import NetSpec, make_net_id, materialize, sample_spec
from sniper_onnx.errors import SniperError

MANIFEST_NAME = "manifest.jsonl"


@dataclass
class GenerateResult:
    """What ``generate_dataset`` wrote."""

    out_dir: str
    manifest: str
    count: int
    family: str
    seed: int
    manifest_only: bool
    onnx_files: list[str] = field(default_factory=list)
    total_macs: list[float] = field(default_factory=list)
    removed_onnx: list[str] = field(default_factory=list)  # --overwrite: files the replaced manifest listed
    unlisted_onnx: list[str] = field(default_factory=list)  # other .onnx files left in the folder
    removed_partial_onnx: list[str] = field(default_factory=list)  # --overwrite: a stopped run's files

    def to_json_dict(self) -> dict:
        return {"out_dir": self.out_dir, "manifest": self.manifest, "count": self.count, "family": self.family,
                "seed": self.seed, "manifest_only": self.manifest_only, "onnx_files": len(self.onnx_files),
                "min_total_macs": min(self.total_macs, default=None),
                "max_total_macs": max(self.total_macs, default=None),
                "removed_onnx": len(self.removed_onnx), "unlisted_onnx": len(self.unlisted_onnx),
                "removed_partial_onnx": len(self.removed_partial_onnx)}


def spec_features(spec: NetSpec) -> tuple[dict[str, float], dict[str, int]]:
    """The analyzer's features of ``spec`` and its unknown ops, from a weightless skeleton (fast)."""
    from sniper_onnx import analyze

    result = analyze(materialize(spec, weights=False))
    return {name: float(value) for name, value in result.features.items()}, dict(result.unknown_ops)


def manifest_record(spec: NetSpec, features: dict[str, float], onnx_file: str | None,
                    unknown_ops: dict[str, int] | None = None) -> dict:
    record = {**spec.to_json_dict(), "file": onnx_file, "features": features}
    if unknown_ops:  # features then miss those ops' costs: keep the warning with the data
        record["unknown_ops"] = unknown_ops
    return record


def read_manifest(path: str | Path) -> list[NetSpec]:
    """The specs of a manifest written by ``generate_dataset`` (to re-materialize its nets).

    A line whose (generator version, family, config, seed) no longer hashes to its ``net_id`` (an edited
    config or seed) is refused: ``materialize`` would build another net under that id."""
    path = Path(path)
    if not path.is_file():
        raise SniperError(f"{path}: no such manifest; run `sniper-onnx generate --out DIR` first")
    specs = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                spec = NetSpec.from_json_dict(json.loads(line))
            except json.JSONDecodeError as error:
                raise SniperError(f"{path}:{number}: not JSON ({error.msg}); the manifest is damaged") from None
            expected = make_net_id(spec.family, spec.config, spec.seed, spec.generator_version)
            if spec.net_id != expected:
                raise SniperError(f"{path}:{number}: net_id {spec.net_id} does not match its family, config and "
                                  f"seed (they hash to {expected}); the line was edited: restore it or "
                                  "generate the manifest again")
            specs.append(spec)
    return specs


def _make_record(task: tuple[int, int, str, float | None, str | None]) -> dict:
    seed, index, family, max_macs, out_dir = task
    spec = sample_spec(seed, index, family, max_macs)
    features, unknown_ops = spec_features(spec)
    onnx_file = None
    if out_dir is not None:
        onnx_file = f"{spec.net_id}.onnx"
        target = Path(out_dir) / onnx_file
        # written under another name, then renamed: a run stopped mid-write leaves no truncated .onnx file;
        # the process id in it keeps two workers apart on the rare net a run makes twice (32-bit seeds)
        temporary = target.with_name(f"{onnx_file}.{os.getpid()}{TEMPORARY_SUFFIX}")
        onnx.save_model(materialize(spec, weights=True), str(temporary), format="protobuf")
        os.replace(temporary, target)
    return manifest_record(spec, features, onnx_file, unknown_ops)


TEMPORARY_SUFFIX = ".tmp"  # <net_id>.onnx.<pid>.tmp while a file is written: `profile DIR` does not pick it up
TASKS_PER_WORKER = 4  # nets handed to each worker ahead of the one being recorded


def in_flight(jobs: int) -> int:
    """How many nets past the last one recorded may be under way (and have their file written)."""
    return 1 if jobs <= 1 else jobs * TASKS_PER_WORKER


def _worker_init() -> None:
    """Workers leave signals to the main process, which stops them: Ctrl-C reaches the whole process
    group, and a worker forked inside ``terminate_as_interrupt`` would inherit its handler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)


def _stop_workers(pool) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join(5)


def iter_records(count: int, seed: int, family: str = "cnn", max_macs: float | None = None,
                 out_dir: str | None = None, jobs: int = 1) -> Iterator[dict]:
    """Manifest records of nets ``0..count-1`` in order; ONNX files go to ``out_dir`` when given.

    ``jobs > 1`` spreads the nets over processes; the records (and files) are the same as with one.
    Tasks are made as they are needed, at most ``in_flight(jobs)`` ahead of the record last yielded, so
    memory does not grow with ``count``. If the caller stops (an exception, Ctrl-C, SIGTERM inside
    ``terminate_as_interrupt``, or it closes the iterator), the workers are stopped with it.
    """
    tasks = ((seed, index, family, max_macs, out_dir) for index in range(count))
    if jobs <= 1:
        yield from map(_make_record, tasks)
        return
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init)
    try:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.submit(_make_record, task))
            if len(pending) >= in_flight(jobs):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown()


@dataclass
class Interrupted:
    """What a stopped ``generate_dataset`` left: the nets its ``.partial`` manifest lists and their files."""

    partial: str
    nets: int
    onnx_files: int

    def hint(self) -> str:
        made = f"{self.nets} net{'s' if self.nets != 1 else ''} made so far"
        if not self.onnx_files:
            return f"the {made} are listed in {self.partial} (no ONNX file kept)"
        return (f"the {made} are listed in {self.partial}, with the {self.onnx_files} ONNX "
                f"file{'s' if self.onnx_files != 1 else ''} written (no other); a new run into that folder needs "
                "--overwrite, which deletes them first")


def generate_dataset(count: int, seed: int, out_dir: str | Path, family: str = "cnn", manifest_only: bool = False,
                     max_macs: float | None = None, overwrite: bool = False, jobs: int = 1,
                     progress: Callable[[int], None] | None = None,
                     interrupted: Callable[[Interrupted], None] | None = None) -> GenerateResult:
    """Samples ``count`` nets, writes ``DIR/manifest.jsonl`` and, unless ``manifest_only``, ``DIR/<id>.onnx``.

    Each manifest line holds the spec (id, seed, family, config, generator version), the analyzer's
    features and the ONNX file name (null in manifest-only mode). ``progress(i)`` is called after each net.
    ``overwrite`` replaces an existing manifest and then deletes the ONNX files it listed that the new
    one does not (never other files); ``.onnx`` files the new manifest does not list are reported in
    ``unlisted_onnx``.

    The manifest is written as ``manifest.jsonl.partial`` and renamed when complete. A run that stops
    (Ctrl-C, SIGTERM, an error) first deletes the files of the nets it had under way but not yet
    listed, so every file it leaves is listed in the ``.partial``; ``interrupted`` is then told what
    was left. A later run refuses a ``.partial`` left there that lists files still present unless
    ``overwrite``, which deletes those files (not those the complete manifest lists) before it starts.
    """
    if count < 1:
        raise SniperError(f"--count {count}: must be at least 1")
    sample_spec(seed, 0, family, max_macs)  # bad family or cap: fail before touching the disk
    out = Path(out_dir)
    manifest = out / MANIFEST_NAME
    temporary = manifest.with_suffix(".jsonl.partial")
    for path in (manifest, temporary):  # before any net is made, naming the path that is wrong
        if path.is_dir():
            raise SniperError(f"{path}: is a directory, where the generator writes its manifest; remove it or "
                              "choose another --out")
    if manifest.exists() and not overwrite:
        raise SniperError(f"{manifest}: already exists; choose another --out directory or pass --overwrite")
    # a .partial left by a stopped run: its files are in no manifest, so they are not replaced silently
    stale = {name for name in listed_onnx_files(temporary) if (out / name).is_file()} if temporary.exists() else set()
    if stale and not overwrite:
        raise SniperError(f"{temporary}: left by an interrupted run, with {len(stale)} ONNX file"
                          f"{'s' if len(stale) != 1 else ''} it lists; pass --overwrite to delete them and start "
                          "over, or choose another --out directory")
    if out.exists() and not out.is_dir():
        raise SniperError(f"{out}: exists and is not a directory; choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SniperError(f"{out}: cannot create the folder ({error.strerror}); choose another --out") from None
    if jobs < 1:
        raise SniperError(f"--jobs {jobs}: must be at least 1")
    previous = listed_onnx_files(manifest) if overwrite else set()
    result = GenerateResult(str(out), str(manifest), count, family, seed, manifest_only)
    if stale:  # the stale .partial is no manifest anyone can use: its files go now
        result.removed_partial_onnx = _remove_unlisted(out, stale - previous)
    existing = {path.name for path in out.glob("*.onnx")}  # never deleted on a stop: not this run's
    records = iter_records(count, seed, family, max_macs, None if manifest_only else str(out), jobs)
    listed: set[str] = set()  # the new manifest's nets, by the file name each has or would have
    done = 0
    try:
        with temporary.open("w") as handle:
            for record in records:
                handle.write(json.dumps(record, sort_keys=True) + "\n")
                done += 1
                listed.add(f"{record['net_id']}.onnx")
                if record["file"]:
                    result.onnx_files.append(str(out / record["file"]))
                result.total_macs.append(record["features"].get("total_macs", 0.0))
                if progress is not None:
                    progress(done)
    except BaseException:
        records.close()  # the workers stop before their files are looked for
        if not manifest_only:
            _remove_unfinished(out, seed, family, max_macs, range(done, min(count, done + in_flight(jobs))),
                               keep=listed | previous | existing)
        if interrupted is not None:
            interrupted(Interrupted(str(temporary), done, len(result.onnx_files)))
        raise
    temporary.replace(manifest)  # an interrupted run never leaves a manifest that looks complete
    # only now: until the new manifest is in place, the old one must still find its files
    # a net the new manifest lists keeps its file, also with --manifest-only, which writes none
    result.removed_onnx = _remove_unlisted(out, previous - listed)
    result.unlisted_onnx = sorted(str(path) for path in out.glob("*.onnx") if path.name not in listed)
    return result


def _remove_unfinished(out: Path, seed: int, family: str, max_macs: float | None, indices: range,
                       keep: set[str]) -> None:
    """Deletes the files of the nets ``indices`` (under way when a run stopped, so in no manifest):
    their names are re-made from their specs; a name in ``keep`` stays."""
    for index in indices:
        try:
            name = f"{sample_spec(seed, index, family, max_macs).net_id}.onnx"
        except Exception:  # noqa: BLE001 - it was sampled once already; never let the clean-up hide the stop
            continue
        paths = list(out.glob(f"{name}.*{TEMPORARY_SUFFIX}")) + ([] if name in keep else [out / name])
        for path in paths:
            try:
                path.unlink()
            except OSError:
                pass


def listed_onnx_files(manifest: Path) -> set[str]:
    """The ONNX files a manifest says the generator wrote: ``<net_id>.onnx`` names in its folder.

    A line that is not JSON, or names a file any other way (a path, another name), is left out: only
    files known to be the generator's may be deleted, never one the user put there."""
    try:
        text = manifest.read_text(errors="replace")
    except OSError:  # unreadable: nothing is known to be the generator's, so nothing is deleted
        return set()
    names = set()
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("file") and record.get("file") == f"{record.get('net_id')}.onnx":
            names.add(record["file"])
    return {name for name in names if Path(name).name == name}


def _remove_unlisted(out: Path, names: set[str]) -> list[str]:
    """Deletes ``out/<name>`` for each of ``names``; the paths it deleted."""
    removed = []
    for name in sorted(names):
        path = out / name
        try:
            path.unlink()
        except OSError:  # gone already, or not ours to delete: a file left is reported as unlisted
            continue
        removed.append(str(path))
    return removed
