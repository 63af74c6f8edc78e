"""Each network's features carry the analyzer feature schema that computed them (schema migration 3),
so a predictor trained on them can record the schema they really have."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

from sniper_onnx.database import Database, export_csv, import_results
from sniper_onnx.database.schema import MIGRATIONS, SCHEMA_VERSION
from sniper_onnx.feature_schema import FEATURE_SCHEMA
from sniper_profiler.device import DeviceSpec


def _version_2_database(path: Path) -> Path:
    """A database as sniper-onnx wrote it before migration 3: one network with features, measured."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    for migration in MIGRATIONS[:2]:  # migrations are never edited, so these are the old schema
        for statement in migration.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    spec = DeviceSpec(name="old cpu", kind="desktop_cpu", threads=1)
    conn.execute("INSERT INTO networks(id, structure_hash, name, source, features, added_at) "
                 "VALUES (1, 'h-old', 'old', '{}', ?, '2026-11-01')", (json.dumps({"total_macs": 7.0}),))
    conn.execute("INSERT INTO devices(id, name, fingerprint, spec, features, added_at) VALUES ('d', 'old cpu', '{}', ?, ?, '2026-11-01')",
                 (json.dumps(spec.to_dict()), json.dumps(spec.features())))
    conn.execute("INSERT INTO measurements(record_key, network_id, device_id, status, median_s, stats, source, measured_at, "
                 "imported_at) VALUES ('rec:1', 1, 'd', 'ok', 0.002, '{\"median_s\": 0.002}', 'profiler', '2026-11-01', '2026-11-01')")
    conn.close()
    return path


def _export_rows(db: Database, out: Path) -> list[dict]:
    export_csv(db, out)
    with open(out, newline="") as handle:
        return list(csv.DictReader(handle))


def test_an_old_database_gains_the_column_and_keeps_everything(tmp_path):
    path = _version_2_database(tmp_path / "old.sqlite")
    with Database(path) as db:
        assert db.schema_version == SCHEMA_VERSION >= 3
        (old,) = db.networks()
        assert (old.features, old.feature_schema) == ({"total_macs": 7.0}, None)  # unknown, never guessed
        assert [m.median_s for m in db.measurements()] == [0.002]
        fresh = db.add_network("h-new", "new", {}, {"total_macs": 9.0})
        assert fresh.feature_schema == FEATURE_SCHEMA
        rows = _export_rows(db, tmp_path / "train.csv")
    assert [row["feature_schema"] for row in rows] == [""]  # only the measured network has a row
    with Database(path) as db:  # opening it again migrates nothing twice
        assert db.schema_version == SCHEMA_VERSION and len(db.networks()) == 2


def test_features_are_stored_with_the_schema_that_computed_them(tmp_path):
    with Database(tmp_path / "ncd.sqlite") as db:
        assert db.add_network("h1", "current", {}, {"total_macs": 1.0}).feature_schema == FEATURE_SCHEMA
        assert db.add_network("h2", "unknown", {}, {"total_macs": 1.0}, feature_schema=None).feature_schema is None
        bare = db.add_network("h3", "bare", {}, None)
        assert bare.feature_schema is None  # no features: no schema to describe them
        assert db.add_network("h3", "bare", {}, {"total_macs": 2.0}).feature_schema == FEATURE_SCHEMA  # filled in later
        db.set_network_features(bare.id, {"total_macs": 3.0}, feature_schema="2026-01-01")
        assert db.network_by_hash("h3").feature_schema == "2026-01-01"


def test_export_writes_each_rows_feature_schema(tmp_path):
    with Database(tmp_path / "ncd.sqlite") as db:
        device = db.add_device(DeviceSpec(name="cpu", kind="desktop_cpu", threads=1))
        for index, schema in enumerate([FEATURE_SCHEMA, None]):
            network = db.add_network(f"h{index}", f"n{index}", {}, {"total_macs": 1.0 + index}, feature_schema=schema)
            db.add_measurement(network.id, device.id, 0.001 * (index + 1))
        rows = _export_rows(db, tmp_path / "train.csv")
        header = next(csv.reader(open(tmp_path / "train.csv")))
    assert header[-1] == "feature_schema" and header[0] == "network_id"
    assert {row["network_name"]: row["feature_schema"] for row in rows} == {"n0": FEATURE_SCHEMA, "n1": ""}


def test_importing_profiler_records_records_the_running_schema(tmp_path, profiled):
    results, _ = profiled
    with Database(tmp_path / "ncd.sqlite") as db:
        import_results(db, results)
        schemas = {network.name: network.feature_schema for network in db.networks()}
    assert schemas and set(schemas.values()) == {FEATURE_SCHEMA}, schemas
