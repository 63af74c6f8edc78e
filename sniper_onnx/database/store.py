"""The Network Characteristic Database: one SQLite file in WAL mode.

Every ``add_*`` method is idempotent by a natural key (structure hash, device id, record key), so
importing the same data twice adds nothing, and several processes may write at once: each write
is one ``BEGIN IMMEDIATE`` transaction and SQLite serialises them (the busy timeout makes the
others wait instead of failing).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from sniper_onnx.database.schema import MIGRATIONS, SCHEMA_VERSION
from sniper_onnx.errors import SniperError
from sniper_onnx.feature_schema import FEATURE_SCHEMA
from sniper_profiler.device import DeviceSpec

BUSY_TIMEOUT_S = 120.0
# The per-measurement latency a training table uses. The median is the typical run; the minimum is
# the run undisturbed by other work, far more repeatable on a shared host (docs/profiler.md).
LATENCY_STATISTICS = {
    "median": "m.median_s",
    "min": "json_extract(m.stats, '$.min_s')",
    "p10": "json_extract(m.stats, '$.p10_s')",
    "mean": "json_extract(m.stats, '$.mean_s')",
}
STAT_COLUMNS = ("median_s", "mean_s", "std_s", "p10_s", "p90_s", "min_s", "count", "session_create_s")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class NetworkRecord:
    id: int
    structure_hash: str
    name: str
    source: dict[str, Any]
    features: Optional[dict[str, float]]
    added_at: str
    added: bool = False  # True when this call inserted it
    feature_schema: Optional[str] = None  # the analyzer schema that computed ``features``; None: unknown
    weight_type: Optional[str] = None  # the element type most weights are stored in; None: unknown or weightless


@dataclass
class DeviceRecord:
    id: str
    name: str
    spec: DeviceSpec
    fingerprint: dict[str, Any]
    features: list[float]
    added_at: str
    added: bool = False


@dataclass
class MeasurementRecord:
    id: int
    record_key: str
    network_id: int
    device_id: str
    status: str
    median_s: Optional[float]
    count: Optional[int]
    config: dict[str, Any]
    stats: dict[str, Any]
    flags: list[str]
    failure: Optional[dict[str, Any]]
    source: str
    measured_at: str
    added: bool = False


@dataclass
class PredictionRecord:
    id: int
    network_id: int
    device_id: str
    predictor: str
    predicted_s: float
    interval_low_s: Optional[float]
    interval_high_s: Optional[float]
    measurement_id: Optional[int]
    predicted_at: str


@dataclass
class PredictionResidual:
    """A prediction next to what was measured for the same pair: the feedback-learning signal
    (paper, section 3.3: the Time Trimmer fits these residuals)."""

    prediction_id: int
    network_id: int
    device_id: str
    predictor: str
    predicted_s: float
    measured_s: float  # median of the pair's successful measurement medians
    relative_error: float  # (predicted - measured) / measured


@dataclass
class DeviceCount:
    device_id: str
    name: str
    networks: int
    measurements: int
    failures: int


@dataclass
class DatabaseStats:
    path: str
    schema_version: int
    networks: int
    networks_without_features: int
    devices: int
    measurements: int
    failed_measurements: int
    predictions: int
    per_device: list[DeviceCount] = field(default_factory=list)


def default_device_id(spec: DeviceSpec) -> str:
    """A stable id for a device known only from its spec (external latency tables)."""
    digest = hashlib.sha256(_dumps(spec.to_dict()).encode()).hexdigest()
    return f"dev-{digest[:16]}"


SQLITE_HEADER = b"SQLite format 3\x00"


def check_database_path(path: Path, create: bool = True) -> None:
    """What can be told of a --db path without opening it, so that a command can check it before
    any other work. SQLite takes a file shorter than its header for an empty database and writes one
    over it: a notes file of a byte or two given as --db would be lost, so only a file that starts
    as an SQLite file is opened."""
    if path.is_dir():
        raise SniperError(f"{path}: is a directory; give a database file path such as ncd.sqlite")
    if not path.parent.exists():
        raise SniperError(f"{path}: folder {path.parent} does not exist; create it first")
    if not path.exists():
        if not create:
            raise SniperError(f"{path}: no such database; create one with `sniper-onnx db import RESULTS.jsonl --db {path}`")
        return
    with path.open("rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if not header:
        if create:
            return  # holds nothing to lose (`touch ncd.sqlite`, a temporary file's name): the database goes in it
        raise SniperError(f"{path}: an empty file, not a sniper-onnx database; create one with "
                          f"`sniper-onnx db import RESULTS.jsonl --db {path}`")
    if header != SQLITE_HEADER:
        raise SniperError(f"{path}: not a usable sniper-onnx database (not an SQLite file); give another --db path")


def _writable(path: Path) -> bool:
    """Whether SQLite can write the file and, for its WAL and shared-memory files, its folder."""
    return os.access(path, os.W_OK) and os.access(path.parent or Path("."), os.W_OK)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only file (a shared copy of a dataset) for commands that only read. A WAL database
    whose folder is read-only too cannot get its shared-memory file, so it is opened as immutable:
    nothing can write it from here."""
    from urllib.parse import quote

    folder_writable = os.access(path.parent or Path("."), os.W_OK)
    wal = path.with_name(path.name + "-wal")
    if not folder_writable and wal.exists() and wal.stat().st_size > 0:
        # immutable=1 would read the main file alone and silently miss the rows committed in the
        # WAL (a killed `profile --db` leaves them there until the next writer checkpoints)
        raise SniperError(f"{path}: read-only, and rows committed to it are still in {wal.name}, which SQLite "
                          f"cannot read from a read-only folder; copy {path.name} and {wal.name} somewhere writable")
    uri = f"file:{quote(str(path.resolve()))}?{'mode=ro' if folder_writable else 'immutable=1'}"
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)


class Database:
    """Open (creating and migrating as needed) with ``Database(path)``; use as a context manager.

    ``create=False`` is for commands that only read (``db stats``, ``db export``, training from
    ``--db``): the path must already hold a sniper-onnx database (an older one is still migrated, as
    every open does, so a read-only file of an older schema is refused with the reason); a read-only
    file of this schema is opened read-only. Even with ``create=True`` a new
    database is made only where no file is: an existing file that is not an SQLite database (an
    empty one included, which SQLite itself would quietly turn into one) is refused, never replaced.
    """

    def __init__(self, path: "str | Path", create: bool = True) -> None:
        self.path = Path(path)
        check_database_path(self.path, create)
        self._depth = 0
        try:
            if not self.path.exists():
                _create_empty(self.path)
                check_database_path(self.path)  # where another process linked its file first: that one
            self.read_only = not create and not _writable(self.path)
            self._conn = _connect_read_only(self.path) if self.read_only else sqlite3.connect(
                str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            self._conn.row_factory = sqlite3.Row
            self._refuse_foreign(create)
            if not self.read_only:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as error:
            if "unable to open" in str(error) or "readonly" in str(error):
                raise SniperError(f"{self.path}: cannot open it for writing ({error}); is the file or its folder "
                                  "read-only? copy it somewhere writable") from None
            raise SniperError(f"{self.path}: not a usable sniper-onnx database ({error}); give another --db path") from None

    def _refuse_foreign(self, create: bool) -> None:
        """Another program's SQLite file: never add our tables to it (nor switch it to WAL). Nor,
        for a command that only reads, to an SQLite file without tables."""
        # Both reads in one read transaction: read apart, another sniper-onnx creating the same new
        # file could commit its tables and version between them, and its database looked foreign.
        self._conn.execute("BEGIN")
        try:
            version = self.schema_version
            tables = [row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            self._conn.execute("COMMIT")
        if tables and not version:
            self._conn.close()
            raise SniperError(f"{self.path}: an SQLite file of another program (tables {', '.join(sorted(tables)[:3])}"
                              f"{' ...' if len(tables) > 3 else ''}); give a sniper-onnx database or a new file with --db")
        if not create and not version:
            self._conn.close()
            raise SniperError(f"{self.path}: an SQLite file without sniper-onnx tables, not a sniper-onnx database; "
                              "give the database the measurements were imported into")

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self._conn
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._depth = 0

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        if self.schema_version == SCHEMA_VERSION:
            return
        if self.read_only and self.schema_version < SCHEMA_VERSION:
            raise SniperError(f"{self.path}: a database of an older sniper-onnx (schema {self.schema_version}, this one reads "
                              f"{SCHEMA_VERSION}) and read-only here, so it cannot be upgraded; copy it somewhere writable")
        if self.read_only:
            raise SniperError(f"{self.path}: schema version {self.schema_version} is newer than this sniper-onnx knows "
                              f"({SCHEMA_VERSION}); upgrade sniper-onnx")
        with self.transaction() as conn:
            version = self.schema_version  # re-read under the lock: another process may have migrated
            if version > SCHEMA_VERSION:
                raise SniperError(
                    f"{self.path}: schema version {version} is newer than this sniper-onnx knows "
                    f"({SCHEMA_VERSION}); upgrade sniper-onnx"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    # -- networks --------------------------------------------------------------------------------
    def add_network(
        self,
        structure_hash: str,
        name: str,
        source: Optional[Mapping[str, Any]] = None,
        features: Optional[Mapping[str, float]] = None,
        *,
        feature_schema: Optional[str] = FEATURE_SCHEMA,
        weight_type: Optional[str] = None,
    ) -> NetworkRecord:
        """Insert a network once per ``structure_hash`` (any stable unique string works, e.g. a
        NAS-Bench-201 architecture string). A later call may fill in missing features; it never
        overwrites existing ones. ``feature_schema``: the analyzer schema that computed
        ``features``; the default is the running analyzer's, None when they came from elsewhere.
        ``weight_type``: the element type most of its weights are stored in (fills a missing one)."""
        if not structure_hash:
            raise SniperError("add_network: structure_hash is empty; pass a stable unique key for the network")
        schema = feature_schema if features else None  # no features, nothing for a schema to describe
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO networks(structure_hash, name, source, features, feature_schema, weight_type, added_at) "
                "VALUES (?,?,?,?,?,?,?)",
                (structure_hash, name, _dumps(dict(source or {})), _dumps(dict(features)) if features else None, schema,
                 weight_type, utc_now()),
            )
            added = cursor.rowcount == 1
            if not added and features:
                conn.execute(
                    "UPDATE networks SET features = ?, feature_schema = ? WHERE structure_hash = ? AND features IS NULL",
                    (_dumps(dict(features)), schema, structure_hash),
                )
            if not added and weight_type is not None:
                conn.execute("UPDATE networks SET weight_type = ? WHERE structure_hash = ? AND weight_type IS NULL",
                             (weight_type, structure_hash))
            record = self.network_by_hash(structure_hash)
        assert record is not None
        record.added = added
        return record

    def set_network_features(self, network_id: int, features: Mapping[str, float],
                             feature_schema: Optional[str] = FEATURE_SCHEMA) -> None:
        """Replace a network's features, with the analyzer schema that computed them (as add_network)."""
        with self.transaction() as conn:
            conn.execute("UPDATE networks SET features = ?, feature_schema = ? WHERE id = ?",
                         (_dumps(dict(features)), feature_schema, network_id))

    def link_file(self, file_sha256: str, network_id: int, path: Optional[str] = None) -> None:
        """Remember which network a model file holds, so a re-import need not load it again."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO network_files(file_sha256, network_id, path) VALUES (?,?,?)",
                (file_sha256, network_id, path),
            )

    def merge_network(self, placeholder_id: int, network_id: int) -> None:
        """Move a placeholder's measurements, predictions and files onto the real network (its
        model was found again) and drop the now empty placeholder."""
        if placeholder_id == network_id:
            return
        with self.transaction() as conn:
            for table in ("measurements", "predictions", "network_files"):
                conn.execute(f"UPDATE {table} SET network_id = ? WHERE network_id = ?", (network_id, placeholder_id))
            conn.execute("DELETE FROM networks WHERE id = ? AND structure_hash LIKE 'file:%'", (placeholder_id,))

    def network_for_file(self, file_sha256: str) -> Optional[NetworkRecord]:
        row = self._conn.execute(
            "SELECT n.* FROM networks n JOIN network_files f ON f.network_id = n.id WHERE f.file_sha256 = ?",
            (file_sha256,),
        ).fetchone()
        return _network(row) if row else None

    def network_paths(self) -> dict[int, str]:
        """network id -> one path of a file that held it (the first linked, if several)."""
        rows = self._conn.execute(
            "SELECT network_id, MIN(path) FROM network_files WHERE path IS NOT NULL GROUP BY network_id")
        return {network_id: path for network_id, path in rows}

    def network_by_hash(self, structure_hash: str) -> Optional[NetworkRecord]:
        row = self._conn.execute("SELECT * FROM networks WHERE structure_hash = ?", (structure_hash,)).fetchone()
        return _network(row) if row else None

    def networks(self) -> list[NetworkRecord]:
        return [_network(row) for row in self._conn.execute("SELECT * FROM networks ORDER BY id")]

    # -- devices ---------------------------------------------------------------------------------
    def add_device(
        self,
        spec: DeviceSpec,
        device_id: Optional[str] = None,
        fingerprint: Optional[Mapping[str, Any]] = None,
    ) -> DeviceRecord:
        """Insert a device once per id (default: a hash of the spec)."""
        device_id = device_id or default_device_id(spec)
        with self.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO devices(id, name, fingerprint, spec, features, added_at) VALUES (?,?,?,?,?,?)",
                (device_id, spec.name, _dumps(dict(fingerprint or {})), _dumps(spec.to_dict()), _dumps(spec.features()), utc_now()),
            )
            record = self.device(device_id)
        assert record is not None
        record.added = cursor.rowcount == 1
        return record

    def device(self, device_id: str) -> Optional[DeviceRecord]:
        row = self._conn.execute("SELECT * FROM devices WHERE id = ?", (device_id,)).fetchone()
        return _device(row) if row else None

    def devices(self) -> list[DeviceRecord]:
        return [_device(row) for row in self._conn.execute("SELECT * FROM devices ORDER BY added_at, id")]

    # -- measurements ----------------------------------------------------------------------------
    def add_measurement(
        self,
        network_id: int,
        device_id: str,
        median_s: Optional[float],
        *,
        stats: Optional[Mapping[str, Any]] = None,
        config: Optional[Mapping[str, Any]] = None,
        status: str = "ok",
        flags: Sequence[str] = (),
        failure: Optional[Mapping[str, Any]] = None,
        source: str = "external",
        measured_at: Optional[str] = None,
        record_key: Optional[str] = None,
    ) -> MeasurementRecord:
        """Insert one latency measurement once per ``record_key``.

        Without a key, (network, device, config, source) is the key: an external table holds one
        value per pair. ``stats`` may carry mean_s, std_s, p10_s, p90_s, min_s, count,
        session_create_s and anything else (kept as JSON)."""
        if status not in ("ok", "failed"):
            raise SniperError(f"add_measurement: status {status!r} must be 'ok' or 'failed'")
        if status == "ok" and (median_s is None or not median_s > 0):
            raise SniperError(f"add_measurement: median_s {median_s!r} must be a positive number of seconds")
        config = dict(config or {})
        stats = dict(stats or {})
        if median_s is not None:
            stats["median_s"] = float(median_s)
        if record_key is None:
            record_key = "nat:" + hashlib.sha256(_dumps([network_id, device_id, config, source]).encode()).hexdigest()
        values = [stats.get(name) for name in STAT_COLUMNS]
        with self.transaction() as conn:
            cursor = conn.execute(
                f"""INSERT OR IGNORE INTO measurements(record_key, network_id, device_id, config, status,
                    {", ".join(STAT_COLUMNS)}, stats, flags, failure, source, measured_at, imported_at)
                    VALUES (?,?,?,?,?,{",".join("?" * len(STAT_COLUMNS))},?,?,?,?,?,?)""",
                (
                    record_key, network_id, device_id, _dumps(config), status, *values, _dumps(stats),
                    _dumps(list(flags)), _dumps(dict(failure)) if failure else None, source,
                    measured_at or utc_now(), utc_now(),
                ),
            )
            row = conn.execute("SELECT * FROM measurements WHERE record_key = ?", (record_key,)).fetchone()
        record = _measurement(row)
        record.added = cursor.rowcount == 1
        return record

    def has_measurement(self, record_key: str) -> bool:
        return self._conn.execute("SELECT 1 FROM measurements WHERE record_key = ?", (record_key,)).fetchone() is not None

    def measurements(self, device_id: Optional[str] = None, network_id: Optional[int] = None) -> list[MeasurementRecord]:
        wheres = [(column, value) for column, value in (("device_id", device_id), ("network_id", network_id))
                  if value is not None and value != ""]
        query = "SELECT * FROM measurements" + (" WHERE " + " AND ".join(f"{c} = ?" for c, _ in wheres) if wheres else "")
        return [_measurement(row) for row in self._conn.execute(query + " ORDER BY id", [v for _, v in wheres])]

    def set_flags(self, measurement_id: int, flags: Sequence[str]) -> None:
        """Replace a measurement's flags (what is known of it later, e.g. its model's precision);
        its times are never changed."""
        with self.transaction() as conn:
            conn.execute("UPDATE measurements SET flags = ? WHERE id = ?", (_dumps(list(flags)), measurement_id))

    # -- predictions (kept for feedback learning) ------------------------------------------------
    def add_prediction(
        self,
        network_id: int,
        device_id: str,
        predictor: str,
        predicted_s: float,
        interval: Optional[tuple[float, float]] = None,
        measurement_id: Optional[int] = None,
    ) -> PredictionRecord:
        low, high = interval if interval else (None, None)
        with self.transaction() as conn:
            cursor = conn.execute(
                """INSERT INTO predictions(network_id, device_id, predictor, predicted_s, interval_low_s,
                   interval_high_s, measurement_id, predicted_at) VALUES (?,?,?,?,?,?,?,?)""",
                (network_id, device_id, predictor, float(predicted_s), low, high, measurement_id, utc_now()),
            )
            row = conn.execute("SELECT * FROM predictions WHERE id = ?", (cursor.lastrowid,)).fetchone()
        return PredictionRecord(**dict(row))

    def predictions(self) -> list[PredictionRecord]:
        return [PredictionRecord(**dict(row)) for row in self._conn.execute("SELECT * FROM predictions ORDER BY id")]

    def prediction_residuals(self, predictor: Optional[str] = None) -> list[PredictionResidual]:
        """Every prediction whose (network, device) pair has been measured, with its error."""
        query = "SELECT * FROM predictions" + (" WHERE predictor = ?" if predictor else "") + " ORDER BY id"
        measured = {(row["network_id"], row["device_id"]): _median_of(row["latencies"]) for row in self.latency_rows()}
        residuals = []
        for row in self._conn.execute(query, (predictor,) if predictor else ()):
            truth = measured.get((row["network_id"], row["device_id"]))
            if truth:
                residuals.append(PredictionResidual(
                    row["id"], row["network_id"], row["device_id"], row["predictor"], row["predicted_s"], truth,
                    (row["predicted_s"] - truth) / truth,
                ))
        return residuals

    # -- summaries -------------------------------------------------------------------------------
    def stats(self) -> DatabaseStats:
        def count(query: str) -> int:
            return int(self._conn.execute(query).fetchone()[0])

        per_device = [
            DeviceCount(row["id"], row["name"], row["networks"] or 0, row["measurements"] or 0, row["failures"] or 0)
            for row in self._conn.execute(
                """SELECT d.id, d.name,
                          COUNT(DISTINCT CASE WHEN m.status = 'ok' THEN m.network_id END) AS networks,
                          SUM(m.status = 'ok') AS measurements, SUM(m.status = 'failed') AS failures
                   FROM devices d LEFT JOIN measurements m ON m.device_id = d.id
                   GROUP BY d.id ORDER BY d.name"""
            )
        ]
        return DatabaseStats(
            path=str(self.path),
            schema_version=self.schema_version,
            networks=count("SELECT COUNT(*) FROM networks"),
            networks_without_features=count("SELECT COUNT(*) FROM networks WHERE features IS NULL"),
            devices=count("SELECT COUNT(*) FROM devices"),
            measurements=count("SELECT COUNT(*) FROM measurements WHERE status = 'ok'"),
            failed_measurements=count("SELECT COUNT(*) FROM measurements WHERE status = 'failed'"),
            predictions=count("SELECT COUNT(*) FROM predictions"),
            per_device=per_device,
        )

    def flagged_counts(self, flags: Sequence[str], device_ids: Optional[Sequence[str]] = None) -> dict[str, int]:
        """Successful measurements (on ``device_ids``, default all) carrying each of ``flags``: those
        a flag filter leaves out."""
        counts = {}
        devices = list(device_ids or [])
        on_devices = f"AND m.device_id IN ({','.join('?' * len(devices))})" if devices else ""
        for flag in flags:
            (count,) = self._conn.execute(
                f"SELECT COUNT(*) FROM measurements m WHERE m.status = 'ok' {on_devices} "
                "AND EXISTS (SELECT 1 FROM json_each(m.flags) WHERE value = ?)", (*devices, flag)).fetchone()
            if count:
                counts[flag] = int(count)
        return counts

    def imported_values(self, source: str) -> dict[tuple[str, str], float]:
        """(the table's network name, device id) -> median seconds of the successful measurements
        an external table ``source`` (``external:NAME``) was imported as."""
        rows = self._conn.execute(
            "SELECT json_extract(config, '$.source_network'), device_id, median_s FROM measurements "
            "WHERE source = ? AND status = 'ok'", (source,))
        return {(network, device): seconds for network, device, seconds in rows}

    def count_without_statistic(self, statistic: str, device_ids: Optional[Sequence[str]] = None) -> int:
        """Successful measurements (on ``device_ids``, default all) that do not have ``statistic``:
        imported tables give a median only."""
        devices = list(device_ids or [])
        on_devices = f"AND m.device_id IN ({','.join('?' * len(devices))})" if devices else ""
        (count,) = self._conn.execute(
            f"SELECT COUNT(*) FROM measurements m WHERE m.status = 'ok' {on_devices} "
            f"AND {LATENCY_STATISTICS[statistic]} IS NULL", devices).fetchone()
        return int(count)

    def latency_rows(self, exclude_flags: Sequence[str] = (), statistic: str = "median") -> Iterator[sqlite3.Row]:
        """One row per (network, device) with ``statistic`` (see :data:`LATENCY_STATISTICS`) of each
        of its successful measurements, in column ``latencies``, leaving out measurements carrying any
        of ``exclude_flags``."""
        if statistic not in LATENCY_STATISTICS:
            raise SniperError(f"--statistic {statistic!r}: use one of {', '.join(LATENCY_STATISTICS)}")
        value = LATENCY_STATISTICS[statistic]
        marks = ",".join("?" * len(exclude_flags))
        flag_filter = f"AND NOT EXISTS (SELECT 1 FROM json_each(m.flags) WHERE value IN ({marks}))" if exclude_flags else ""
        pairs = self._conn.execute(
            f"""SELECT m.network_id, m.device_id, n.name AS network_name, n.structure_hash, n.features, n.feature_schema,
                      n.source AS network_source,
                      d.name AS device_name, d.features AS device_features,
                      GROUP_CONCAT(printf('%!.17g', {value})) AS latencies, COUNT(*) AS measurements, SUM(m.count) AS runs
               FROM measurements m JOIN networks n ON n.id = m.network_id JOIN devices d ON d.id = m.device_id
               WHERE m.status = 'ok' AND {value} IS NOT NULL {flag_filter}
               GROUP BY m.network_id, m.device_id ORDER BY m.network_id, m.device_id""",
            tuple(exclude_flags),
        )
        yield from pairs


def _create_empty(path: Path) -> None:
    """An empty WAL-mode SQLite file at ``path``, made beside it and linked in whole: the path never
    holds a half-made file that another sniper-onnx opening it meanwhile would take for a user's
    empty file. Where another process linked its own first, that one is kept."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.new")
    try:
        conn = sqlite3.connect(str(partial), isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")  # writes the header: the file is an SQLite database
        finally:
            conn.close()
        try:
            os.link(partial, path)
        except FileExistsError:
            pass  # another process created the database meanwhile: open theirs
        except OSError:  # a file system without hard links: copy, still never over an existing file
            try:
                with path.open("xb") as handle:
                    handle.write(partial.read_bytes())
            except FileExistsError:
                pass
    finally:
        for leftover in (partial, partial.with_name(partial.name + "-wal"), partial.with_name(partial.name + "-shm")):
            leftover.unlink(missing_ok=True)


def _median_of(joined: str) -> float:
    values = sorted(float(v) for v in str(joined).split(","))
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def _network(row: sqlite3.Row) -> NetworkRecord:
    return NetworkRecord(
        id=row["id"],
        structure_hash=row["structure_hash"],
        name=row["name"],
        source=json.loads(row["source"]),
        features=json.loads(row["features"]) if row["features"] else None,
        added_at=row["added_at"],
        feature_schema=row["feature_schema"],
        weight_type=row["weight_type"],
    )


def _device(row: sqlite3.Row) -> DeviceRecord:
    return DeviceRecord(
        id=row["id"],
        name=row["name"],
        spec=DeviceSpec.from_dict(json.loads(row["spec"])),
        fingerprint=json.loads(row["fingerprint"]),
        features=json.loads(row["features"]),
        added_at=row["added_at"],
    )


def _measurement(row: sqlite3.Row) -> MeasurementRecord:
    return MeasurementRecord(
        id=row["id"],
        record_key=row["record_key"],
        network_id=row["network_id"],
        device_id=row["device_id"],
        status=row["status"],
        median_s=row["median_s"],
        count=row["count"],
        config=json.loads(row["config"]),
        stats=json.loads(row["stats"]),
        flags=json.loads(row["flags"]),
        failure=json.loads(row["failure"]) if row["failure"] else None,
        source=row["source"],
        measured_at=row["measured_at"],
    )
