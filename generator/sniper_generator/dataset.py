"""Writing generated networks to disk: ONNX files plus a JSONL manifest, or the manifest alone."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from sniper_generator.spec import NetSpec, materialize, sample_spec
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

    def to_json_dict(self) -> dict:
        return {"out_dir": self.out_dir, "manifest": self.manifest, "count": self.count, "family": self.family,
                "seed": self.seed, "manifest_only": self.manifest_only, "onnx_files": len(self.onnx_files),
                "min_total_macs": min(self.total_macs, default=None),
                "max_total_macs": max(self.total_macs, default=None),
                "removed_onnx": len(self.removed_onnx), "unlisted_onnx": len(self.unlisted_onnx)}


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
    """The specs of a manifest written by ``generate_dataset`` (to re-materialize its nets)."""
    path = Path(path)
    if not path.is_file():
        raise SniperError(f"{path}: no such manifest; run `sniper-onnx generate --out DIR` first")
    specs = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                specs.append(NetSpec.from_json_dict(json.loads(line)))
            except json.JSONDecodeError as error:
                raise SniperError(f"{path}:{number}: not JSON ({error.msg}); the manifest is damaged") from None
    return specs


def _make_record(task: tuple[int, int, str, float | None, str | None]) -> dict:
    seed, index, family, max_macs, out_dir = task
    spec = sample_spec(seed, index, family, max_macs)
    features, unknown_ops = spec_features(spec)
    onnx_file = None
    if out_dir is not None:
        onnx_file = f"{spec.net_id}.onnx"
        onnx.save_model(materialize(spec, weights=True), str(Path(out_dir) / onnx_file))
    return manifest_record(spec, features, onnx_file, unknown_ops)


def iter_records(count: int, seed: int, family: str = "cnn", max_macs: float | None = None,
                 out_dir: str | None = None, jobs: int = 1) -> Iterator[dict]:
    """Manifest records of nets ``0..count-1`` in order; ONNX files go to ``out_dir`` when given.

    ``jobs > 1`` spreads the nets over processes; the records (and files) are the same as with one.
    """
    tasks = [(seed, index, family, max_macs, out_dir) for index in range(count)]
    if jobs <= 1:
        yield from map(_make_record, tasks)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_make_record, tasks, chunksize=4)


def generate_dataset(count: int, seed: int, out_dir: str | Path, family: str = "cnn", manifest_only: bool = False,
                     max_macs: float | None = None, overwrite: bool = False, jobs: int = 1,
                     progress: Callable[[int], None] | None = None) -> GenerateResult:
    """Samples ``count`` nets, writes ``DIR/manifest.jsonl`` and, unless ``manifest_only``, ``DIR/<id>.onnx``.

    Each manifest line holds the spec (id, seed, family, config, generator version), the analyzer's
    features and the ONNX file name (null in manifest-only mode). ``progress(i)`` is called after each net.
    ``overwrite`` replaces an existing manifest and then deletes the ONNX files it listed that the new
    one does not (never other files); ``.onnx`` files the new manifest does not list are reported in
    ``unlisted_onnx``.
    """
    if count < 1:
        raise SniperError(f"--count {count}: must be at least 1")
    sample_spec(seed, 0, family, max_macs)  # bad family or cap: fail before touching the disk
    out = Path(out_dir)
    manifest = out / MANIFEST_NAME
    if manifest.exists() and not overwrite:
        raise SniperError(f"{manifest}: already exists; choose another --out directory or pass --overwrite")
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
    temporary = manifest.with_suffix(".jsonl.partial")
    records = iter_records(count, seed, family, max_macs, None if manifest_only else str(out), jobs)
    listed: set[str] = set()  # the new manifest's nets, by the file name each has or would have
    with temporary.open("w") as handle:
        for index, record in enumerate(records):
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            listed.add(f"{record['net_id']}.onnx")
            if record["file"]:
                result.onnx_files.append(str(out / record["file"]))
            result.total_macs.append(record["features"].get("total_macs", 0.0))
            if progress is not None:
                progress(index + 1)
    temporary.replace(manifest)  # an interrupted run never leaves a manifest that looks complete
    # only now: until the new manifest is in place, the old one must still find its files
    # a net the new manifest lists keeps its file, also with --manifest-only, which writes none
    result.removed_onnx = _remove_unlisted(out, previous - listed)
    result.unlisted_onnx = sorted(str(path) for path in out.glob("*.onnx") if path.name not in listed)
    return result


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
