import sqlite3

import pytest

from sniper_onnx.database import Database
from sniper_onnx.database.schema import SCHEMA_VERSION
from sniper_onnx.errors import SniperError
from sniper_profiler.device import DeviceSpec


@pytest.fixture
def db(tmp_path):
    with Database(tmp_path / "ncd.sqlite") as database:
        yield database


def test_new_file_is_wal_and_at_the_current_schema(db):
    assert db.schema_version == SCHEMA_VERSION
    assert db._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_add_network_is_idempotent_and_fills_missing_features(db):
    first = db.add_network("nb201:|a|", "a", {"kind": "nasbench201"}, None)
    again = db.add_network("nb201:|a|", "a-renamed", {}, {"total_macs": 10.0})
    assert first.added and not again.added and first.id == again.id
    assert again.features == {"total_macs": 10.0} and again.name == "a"
    kept = db.add_network("nb201:|a|", "a", {}, {"total_macs": 99.0})
    assert kept.features == {"total_macs": 10.0}  # existing features are never overwritten
    assert len(db.networks()) == 1


def test_add_device_defaults_to_a_spec_hash_id(db):
    spec = DeviceSpec(name="edgegpu", kind="embedded_gpu", memory_gb=8)
    first, again = db.add_device(spec), db.add_device(spec)
    assert first.added and not again.added and first.id == again.id and first.id.startswith("dev-")
    assert db.add_device(DeviceSpec(name="edgegpu", kind="embedded_gpu", memory_gb=4)).id != first.id
    assert db.device(first.id).spec == spec and db.device(first.id).features == spec.features()


def test_add_measurement_is_idempotent_by_natural_key(db):
    net = db.add_network("h1", "n")
    dev = db.add_device(DeviceSpec(name="d"))
    first = db.add_measurement(net.id, dev.id, 0.01, stats={"count": 5, "p90_s": 0.02}, source="table-x")
    again = db.add_measurement(net.id, dev.id, 0.01, stats={"count": 5}, source="table-x")
    other = db.add_measurement(net.id, dev.id, 0.02, source="table-y")
    assert first.added and not again.added and other.added
    assert first.stats["p90_s"] == 0.02 and first.count == 5
    assert len(db.measurements()) == 2


def test_failures_and_predictions_are_kept(db):
    net = db.add_network("h1", "n")
    dev = db.add_device(DeviceSpec(name="d"))
    failed = db.add_measurement(net.id, dev.id, None, status="failed", failure={"kind": "timeout", "reason": "slow"}, record_key="r1")
    prediction = db.add_prediction(net.id, dev.id, "pcn", 0.012, interval=(0.01, 0.014), measurement_id=failed.id)
    assert failed.failure["kind"] == "timeout" and prediction.interval_low_s == 0.01
    stats = db.stats()
    assert (stats.networks, stats.devices, stats.measurements, stats.failed_measurements, stats.predictions) == (1, 1, 0, 1, 1)
    assert stats.per_device[0].failures == 1


@pytest.mark.parametrize("median", [0.0, -1.0, None])
def test_bad_latency_is_refused(db, median):
    net = db.add_network("h1", "n")
    dev = db.add_device(DeviceSpec(name="d"))
    with pytest.raises(SniperError, match="median_s"):
        db.add_measurement(net.id, dev.id, median)


def test_unknown_network_is_refused_by_foreign_key(db):
    dev = db.add_device(DeviceSpec(name="d"))
    with pytest.raises(sqlite3.IntegrityError):
        db.add_measurement(12345, dev.id, 0.1)


def test_reopening_keeps_everything(tmp_path):
    path = tmp_path / "ncd.sqlite"
    with Database(path) as db:
        db.add_network("h1", "n")
    with Database(path) as db:
        assert [n.structure_hash for n in db.networks()] == ["h1"]


def test_a_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "ncd.sqlite"
    Database(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SniperError, match="upgrade sniper-onnx"):
        Database(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("hello " * 1000)
    with pytest.raises(SniperError, match="not a usable"):
        Database(path)


def test_another_programs_sqlite_file_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(SniperError, match=r"an SQLite file of another program \(tables users\)"):
        Database(path)
    assert path.read_bytes() == before


def test_a_database_another_sniper_onnx_creates_meanwhile_is_not_foreign(tmp_path, monkeypatch):
    """Two processes opening one new file: the other could commit its tables and version between
    this one's reads of the version and of the tables, and the file looked like another program's
    (seen once as a failed concurrent import in CI)."""
    path = tmp_path / "ncd.sqlite"
    with sqlite3.connect(path) as conn:  # a new file already in WAL mode: readers never block the other
        conn.execute("PRAGMA journal_mode=WAL")
    original = Database.schema_version.fget
    raced = []

    def racing(self):
        version = original(self)
        if not raced:
            raced.append(True)
            Database(path).close()  # the other process creates the whole database right now
        return version

    monkeypatch.setattr(Database, "schema_version", property(racing))
    with Database(path) as db:
        assert db.schema_version == original(db) > 0
    assert raced


def test_a_database_corrupted_after_opening_is_a_one_line_error(tmp_path):
    from typer.testing import CliRunner

    from sniper_onnx.cli import app

    path = tmp_path / "ncd.sqlite"
    with Database(path) as db:
        for index in range(400):
            db.add_network(f"h{index}", f"n{index}", features={"total_macs": float(index)})
    data = bytearray(path.read_bytes())
    data[8192:12288] = b"\xff" * 4096  # a page in the middle of the networks table
    path.write_bytes(bytes(data))
    result = CliRunner().invoke(app, ["db", "stats", "--db", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "malformed" in result.stderr


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(SniperError, match="does not exist"):
        Database(tmp_path / "no" / "ncd.sqlite")


def test_an_older_file_is_migrated_in_place_keeping_its_data(tmp_path, monkeypatch):
    from sniper_onnx.database import schema, store

    path = tmp_path / "ncd.sqlite"
    with Database(path) as db:
        db.add_network("h1", "kept")
    upgraded = schema.MIGRATIONS + ("ALTER TABLE networks ADD COLUMN note TEXT;",)
    monkeypatch.setattr(store, "MIGRATIONS", upgraded)
    monkeypatch.setattr(store, "SCHEMA_VERSION", len(upgraded))
    with Database(path) as db:
        assert db.schema_version == len(upgraded)
        assert [n.name for n in db.networks()] == ["kept"]
        assert "note" in [row[1] for row in db._conn.execute("PRAGMA table_info(networks)")]


def test_prediction_residuals_compare_with_the_measured_median(db):
    dev = db.add_device(DeviceSpec(name="d"))
    measured, unmeasured = db.add_network("h1", "n1"), db.add_network("h2", "n2")
    for index, seconds in enumerate([0.010, 0.030, 0.020]):
        db.add_measurement(measured.id, dev.id, seconds, record_key=f"r{index}")
    db.add_prediction(measured.id, dev.id, "pcn", 0.025)
    db.add_prediction(measured.id, dev.id, "flops", 0.010)
    db.add_prediction(unmeasured.id, dev.id, "pcn", 0.5)
    residuals = db.prediction_residuals()
    assert [(r.predictor, r.measured_s) for r in residuals] == [("pcn", 0.020), ("flops", 0.020)]
    assert residuals[0].relative_error == pytest.approx(0.25)
    assert [r.predictor for r in db.prediction_residuals("flops")] == ["flops"]


def test_a_read_only_database_is_read_by_the_commands_that_only_read(tmp_path, monkeypatch):
    """Tests run as root, whom file modes do not stop: the check that the file is writable is what
    is replaced (a shared read-only copy of a dataset, read by a user who cannot write it)."""
    import sniper_onnx.database.store as store

    with Database(tmp_path / "ncd.sqlite") as db:
        dev = db.add_device(DeviceSpec(name="d"))
        net = db.add_network("h", "n", features={"total_macs": 1.0})
        db.add_measurement(net.id, dev.id, 0.01)
    before = (tmp_path / "ncd.sqlite").read_bytes()
    monkeypatch.setattr(store, "_writable", lambda path: False)
    with Database(tmp_path / "ncd.sqlite", create=False) as db:
        assert db.read_only and len(db.measurements()) == 1
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.add_network("h2", "n2")
    assert (tmp_path / "ncd.sqlite").read_bytes() == before


def test_a_read_only_database_of_an_older_schema_is_refused_with_the_reason(tmp_path, monkeypatch):
    import sniper_onnx.database.store as store

    from database_testkit import as_older_version

    with Database(tmp_path / "ncd.sqlite"):
        pass
    old = as_older_version(tmp_path / "ncd.sqlite", tmp_path / "old.sqlite", SCHEMA_VERSION - 1)
    monkeypatch.setattr(store, "_writable", lambda path: False)
    with pytest.raises(SniperError, match="read-only here, so it cannot be upgraded; copy it somewhere writable"):
        Database(old, create=False)


def test_a_read_only_database_with_rows_still_in_its_wal_is_refused_not_read_short(tmp_path, monkeypatch):
    """immutable=1, the only way into a WAL database in a read-only folder, reads the main file
    alone: rows a killed writer left in the -wal would vanish from exports without a word."""
    import shutil

    import sniper_onnx.database.store as store

    with Database(tmp_path / "ncd.sqlite") as db:
        dev = db.add_device(DeviceSpec(name="d"))
        net = db.add_network("h", "n", features={"total_macs": 1.0})
        db.add_measurement(net.id, dev.id, 0.01)
        copy = tmp_path / "copy"
        copy.mkdir()
        for suffix in ("", "-wal"):  # as a killed writer leaves them: the rows in the WAL
            shutil.copy(tmp_path / f"ncd.sqlite{suffix}", copy / f"ncd.sqlite{suffix}")
    assert (copy / "ncd.sqlite-wal").stat().st_size > 0
    monkeypatch.setattr(store.os, "access", lambda path, mode: False)
    with pytest.raises(SniperError, match="rows committed to it are still in ncd.sqlite-wal"):
        Database(copy / "ncd.sqlite", create=False)
