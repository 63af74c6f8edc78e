"""``db import``: profiler JSONL records -> networks, devices and measurements.

Network features are computed here, on the cloud side (the device side has no onnx): the model is
read from the record's path when the file is still there with the same content, else re-made from
its source (generator spec or zoo entry) as a weightless skeleton. Records are keyed by their
``record_id``, so importing a file twice, or from several processes at once, adds each record once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from sniper_onnx.precision import PRECISION_MISMATCH, judged_flags
from sniper_onnx.database.store import Database, NetworkRecord
from sniper_onnx.errors import SniperError
from sniper_profiler.device import DeviceSpec
from sniper_profiler.records import CONTENDED_SESSIONS_FLAG, contended_sessions, file_sha256, read_records


def protocol_flags(record: dict[str, Any]) -> list[str]:
    """Flags for records of a protocol later found to bias them (sniper_profiler.records);
    schema migration 2 flags the ones already stored the same way."""
    return [CONTENDED_SESSIONS_FLAG] if contended_sessions(record) else []


@dataclass
class ImportSummary:
    path: str
    records: int = 0
    added: int = 0
    failures_added: int = 0
    already_present: int = 0
    unreadable_lines: list[int] = field(default_factory=list)
    newer_schema_lines: list[int] = field(default_factory=list)  # kept in the file for a later sniper-onnx
    invalid_records: list[str] = field(default_factory=list)  # why each was left out, one line each
    networks_added: int = 0
    devices_added: int = 0
    networks_without_features: list[str] = field(default_factory=list)  # why, one line each
    # flag -> "network: weights T, measured under P" for precision flags the weights set or cleared
    precision_flagged: list[str] = field(default_factory=list)
    precision_cleared: list[str] = field(default_factory=list)

    def note_precision(self, network: NetworkRecord, config: dict[str, Any], flags: Sequence[str]) -> None:
        line = f"{network.name} (weights {network.weight_type}, measured under {config.get('precision') or 'fp32'})"
        target = self.precision_flagged if PRECISION_MISMATCH in flags else self.precision_cleared
        if line not in target:
            target.append(line)


def _load_generated(source: dict[str, Any]) -> Any:
    from sniper_generator import NetSpec, materialize

    data = source["spec"]
    reader = getattr(NetSpec, "from_json_dict", None) or getattr(NetSpec, "from_dict", None)
    spec = reader(data) if reader else NetSpec(**data)
    return materialize(spec, weights=False)


def _load_zoo(source: dict[str, Any]) -> Any:
    from sniper_generator.zoo import export_zoo_model

    return export_zoo_model(source["name"], resolution=int(source.get("resolution", 224)), batch=int(source.get("batch", 1)), weights=False)


# How to re-make a model from the ``source`` a record carries, by ``source["kind"]``.
SOURCE_LOADERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "generator": _load_generated,
    "zoo": _load_zoo,
}


def check_model_folders(folders: Sequence["str | Path"]) -> None:
    for folder in folders:
        if not Path(folder).is_dir():
            raise SniperError(f"--models {folder}: no such folder; give the folder holding the measured .onnx files")


def index_model_folders(folders: Sequence["str | Path"]) -> dict[str, Path]:
    """sha256 -> path of every .onnx file under ``folders`` (models measured on another machine)."""
    check_model_folders(folders)
    index: dict[str, Path] = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.onnx")):
            index.setdefault(file_sha256(path), path)
    return index


def load_model_for(model: dict[str, Any], local_models: Optional[dict[str, Path]] = None) -> tuple[Optional[Any], str]:
    """The ModelProto a record measured, or None and the reason it cannot be found: from its path,
    from a local copy with the same sha256, or re-made from its generator/zoo source."""
    import onnx

    path = Path(model.get("path") or "")
    local = (local_models or {}).get(model.get("sha256") or "")
    copies = ([path] if path.is_file() and file_sha256(path) == model.get("sha256") else []) + ([local] if local else [])
    for copy in copies:
        try:
            return onnx.load(str(copy), load_external_data=False), ""
        except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and onnx's own; keep the record
            problem = f"{copy}: not a readable ONNX model ({type(error).__name__})"
    if copies:
        return None, problem
    source = model.get("source") or {}
    loader = SOURCE_LOADERS.get(source.get("kind", ""))
    if loader is None:
        return None, f"{path}: file missing or changed since it was measured, and no generator/zoo source to re-make it (pass --models DIR with a copy)"
    try:
        return loader(source), ""
    except Exception as error:  # noqa: BLE001 - keep the measurement even if re-making fails
        return None, f"{model.get('name')}: could not re-make from {source.get('kind')} source ({type(error).__name__}: {error})"


def network_key(base_hash: str, inputs: list[dict[str, Any]]) -> str:
    """A model with symbolic dims measured at another shape is another network for the predictors."""
    symbolic = [i for i in inputs or [] if any(not isinstance(d, int) or d <= 0 for d in i.get("model_shape", []))]
    if not symbolic:
        return base_hash
    shapes = ",".join(f"{i['name']}={'x'.join(map(str, i['shape']))}" for i in sorted(symbolic, key=lambda i: i["name"]))
    return f"{base_hash}@{shapes}"


def compute_features(model_proto: Any, inputs: list[dict[str, Any]]) -> tuple[Optional[dict[str, float]], Optional[str], str]:
    """(features, the weights' dominant element type or "" for none, why features failed)."""
    try:
        from sniper_onnx import analyze
        from sniper_onnx.precision import model_weight_type

        shapes = {i["name"]: tuple(i["shape"]) for i in inputs or []} or None
        result = analyze(model_proto, input_shapes=shapes)
        return dict(result.features), model_weight_type(result.model_info) or "", ""
    except Exception as error:  # noqa: BLE001 - features can be filled in by a later import
        return None, None, f"analysis failed ({type(error).__name__}: {error})"


class _NetworkResolver:
    def __init__(self, db: Database, summary: ImportSummary, local_models: Optional[dict[str, Path]] = None) -> None:
        self.db = db
        self.summary = summary
        self.local_models = local_models or {}
        self.tried: set[int] = set()  # known networks whose model was looked for in this import

    @staticmethod
    def file_key(record: dict[str, Any]) -> str:
        """The file's hash, plus the input shapes where the model has symbolic dims: one file
        measured at two shapes is two networks."""
        sha256 = (record.get("model") or {}).get("sha256") or ""
        return network_key(sha256, record.get("inputs") or []) if sha256 else ""

    def resolve(self, record: dict[str, Any]) -> NetworkRecord:
        model = record.get("model") or {}
        sha256 = self.file_key(record)
        known = self.db.network_for_file(sha256) if sha256 else None
        if known is not None and known.features is not None and (known.weight_type is not None or known.id in self.tried):
            return known
        name = model.get("name") or Path(model.get("path") or "unnamed").stem
        if known is not None:
            self.tried.add(known.id)
        proto, problem = load_model_for(model, self.local_models)
        if proto is None:
            return known or self._placeholder(sha256, name, model, problem, record_key_of(record))
        from sniper_onnx.database.hashing import structure_hash

        features, weight_type, problem = compute_features(proto, record.get("inputs") or [])
        network = self.db.add_network(network_key(structure_hash(proto), record.get("inputs") or []), name,
                                      model.get("source") or {}, features, weight_type=weight_type)
        if problem and network.features is None:
            self.summary.networks_without_features.append(f"{name}: {problem}")
        self.summary.networks_added += int(network.added)
        if known is not None and known.id != network.id:
            self.db.merge_network(known.id, network.id)
        if sha256:
            self.db.link_file(sha256, network.id, model.get("path"))
        if known is None or known.id != network.id or known.weight_type is None:
            self.judge_stored(network)  # measurements stored before its weights were known
        return network

    def judge_stored(self, network: NetworkRecord) -> None:
        """Re-judge the precision flags of a network's stored measurements by its weights."""
        for stored in self.db.measurements(network_id=network.id):
            flags = judged_flags(stored.flags, network.weight_type, stored.config)
            if flags != stored.flags:
                self.db.set_flags(stored.id, flags)
                self.summary.note_precision(network, stored.config, flags)

    def fill_features(self, record: dict[str, Any]) -> None:
        """For a record imported before its model could be found, or before the weights' type was
        stored (a database of an older sniper-onnx): try again."""
        sha256 = self.file_key(record)
        known = self.db.network_for_file(sha256) if sha256 else None
        if known is not None and (known.features is None or known.weight_type is None):
            self.resolve(record)

    def _placeholder(self, sha256: str, name: str, model: dict[str, Any], problem: str, record_key: str) -> NetworkRecord:
        # The measurement is kept under the file's hash; a later import that finds the model fills
        # in its features (nothing a user measured is ever dropped).
        key = f"file:sha256:{sha256}" if sha256 else f"file:record:{record_key}"
        network = self.db.add_network(key, name, model.get("source") or {}, None)
        self.summary.networks_added += int(network.added)
        self.summary.networks_without_features.append(problem)
        if sha256:
            self.db.link_file(sha256, network.id, model.get("path"))
        return network


def read_results(path: "str | Path") -> Any:
    """The profiler records of a results file (a ``ResultsFile``), or one line on why it has none.
    ``db import`` reads every file with this before it opens the database: a file that is no
    results file must not leave a new database behind."""
    path = Path(path)
    if not path.is_file():
        raise SniperError(f"{path}: no such results file; give the JSONL written by `sniper-profiler run --out`")
    results = read_records(path)
    if not results.records:
        raise SniperError(_no_records_reason(path, results))
    return results


def import_results(
    db: Database,
    path: "str | Path",
    on_progress: Optional[Callable[[int, int], None]] = None,
    model_folders: Sequence["str | Path"] = (),
    results: Any = None,
) -> ImportSummary:
    """Import a profiler JSONL file; ``model_folders`` hold copies of models measured elsewhere;
    ``results`` is the file's :func:`read_results` where the caller has read it already."""
    path = Path(path)
    if results is None:
        results = read_results(path)
    summary = ImportSummary(str(path), records=len(results.records), unreadable_lines=results.unreadable_lines,
                            newer_schema_lines=results.newer_schema_lines)
    resolver = _NetworkResolver(db, summary, index_model_folders(model_folders) if model_folders else None)
    devices_seen: set[str] = set()
    for index, record in enumerate(results.records, start=1):
        record_key = record_key_of(record)
        if db.has_measurement(record_key):
            summary.already_present += 1
            resolver.fill_features(record)
        else:
            _import_one(db, record, record_key, resolver, devices_seen, summary)
        if on_progress:
            on_progress(index, len(results.records))
    return summary


def _no_records_reason(path: Path, results: Any) -> str:
    if results.newer_schema_lines:
        return (f"{path}: its records are of a newer sniper-profiler than this sniper-onnx reads; upgrade sniper-onnx "
                "(the file is left as it is)")
    if results.unreadable_lines:
        return f"{path}: no profiler records in it (lines {results.unreadable_lines[:5]} unreadable); is it a sniper-profiler JSONL file?"
    return f"{path}: holds no records; measure models into it with `sniper-profiler run --out {path.name}` first"


def _invalid_latency(record: dict[str, Any]) -> Optional[str]:
    """Why a successful record's median cannot be stored, or None: one bad record must not stop
    the rest of the file from being imported."""
    if record.get("status") != "ok":
        return None
    median = (record.get("stats") or {}).get("median_s")
    if isinstance(median, bool) or not isinstance(median, (int, float)) or not math.isfinite(median) or median <= 0:
        return f"record {record.get('record_id') or record.get('key')}: median_s {median!r} is not a positive number of seconds"
    return None


# the parts of a profiler record and the JSON types they must have (absent or null is allowed)
RECORD_FIELD_TYPES = {"model": dict, "config": dict, "stats": dict, "failure": dict, "inputs": list, "flags": list}


def _malformed(record: dict[str, Any]) -> Optional[str]:
    """Why a record's fields are not of the types the profiler writes, or None."""
    name = f"record {record.get('record_id') or record.get('key')}"
    for field_name, kind in RECORD_FIELD_TYPES.items():
        value = record.get(field_name)
        if value is not None and not isinstance(value, kind):
            return f"{name}: {field_name} is {type(value).__name__}, not {'an object' if kind is dict else 'a list'}"
    if not all(isinstance(flag, str) for flag in record.get("flags") or []):
        return f"{name}: flags hold something other than names"
    if any(not isinstance(entry, dict) for entry in record.get("inputs") or []):
        return f"{name}: inputs hold something other than objects"
    if "status" in record and record["status"] not in ("ok", "failed"):  # absent: a failure, as ever
        return f"{name}: status {record.get('status')!r} is neither 'ok' nor 'failed'"
    fingerprint = (record.get("device") or {}).get("fingerprint") if isinstance(record.get("device"), dict) else None
    if fingerprint is not None and not isinstance(fingerprint, dict):
        return f"{name}: device fingerprint is {type(fingerprint).__name__}, not an object"
    return None


def _device_spec(record: dict[str, Any]) -> tuple[Optional[DeviceSpec], Optional[str]]:
    """The record's device, or why it has none that can be read."""
    device = record.get("device") or {}
    name = f"record {record.get('record_id') or record.get('key')}"
    if not isinstance(device, dict) or not device.get("device_id") or "spec" not in device:
        return None, f"{name}: has no device; was it written by sniper-profiler?"
    try:
        return DeviceSpec.from_dict(device["spec"]), None
    except (TypeError, ValueError, AttributeError) as error:
        return None, f"{name}: a device spec this sniper-onnx cannot read ({error}); upgrade sniper-onnx"


def record_key_of(record: dict[str, Any]) -> str:
    return f"rec:{record.get('record_id') or record['key']}"


def import_record(db: Database, record: dict[str, Any], source_path: str = "") -> tuple[ImportSummary, list[str]]:
    """Store one profiler record (as ``profile --db`` does right after measuring): the summary
    (whether it was added, and which stored measurements its model's weights flagged or cleared)
    and the flags this record was stored with (its own, once the weights judged its precision)."""
    summary = ImportSummary(source_path, records=1)
    record_key = record_key_of(record)
    if db.has_measurement(record_key):
        summary.already_present = 1
        return summary, list(record.get("flags") or [])
    stored = _import_one(db, record, record_key, _NetworkResolver(db, summary), set(), summary)
    return summary, stored if stored is not None else list(record.get("flags") or [])


def _import_one(
    db: Database, record: dict[str, Any], record_key: str, resolver: _NetworkResolver, devices_seen: set[str], summary: ImportSummary
) -> Optional[list[str]]:
    """Store one record; the flags it was stored with, None when it was left out."""
    invalid = _malformed(record)
    spec, device_problem = (None, None) if invalid else _device_spec(record)
    invalid = invalid or device_problem or _invalid_latency(record)
    if invalid:  # one bad record must not stop the rest of the file
        summary.invalid_records.append(invalid)
        return None
    device = record["device"]
    device_id = device["device_id"]
    network = resolver.resolve(record)
    flags = list(dict.fromkeys([*(record.get("flags") or []), *protocol_flags(record)]))
    judged = judged_flags(flags, network.weight_type, record.get("config") or {})
    if judged != flags:
        summary.note_precision(network, record.get("config") or {}, judged)
    with db.transaction():
        if device_id not in devices_seen:
            summary.devices_added += int(db.add_device(spec, device_id, device.get("fingerprint")).added)
            devices_seen.add(device_id)
        stats = record.get("stats") or {}
        measurement = db.add_measurement(
            network.id,
            device_id,
            stats.get("median_s") if record.get("status") == "ok" else None,
            stats=stats,
            config=record.get("config") or {},
            status=record.get("status", "failed"),
            flags=judged,
            failure=record.get("failure"),
            source="profiler",
            measured_at=record.get("measured_at"),
            record_key=record_key,
        )
    if measurement.added:
        summary.added += int(measurement.status == "ok")
        summary.failures_added += int(measurement.status == "failed")
    else:
        summary.already_present += 1
    return judged
