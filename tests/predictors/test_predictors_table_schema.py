"""`train` records the feature schema the training table says computed its features: the table's own
when all its networks share one, the running analyzer's with one warning when the table does not
say, and a refusal when the table mixes schemas (until 2026-11-29 it always recorded the running
one, which silenced `predict`'s warning for features an older analyzer computed)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from predictors_testkit import DEVICES, FEATURES, device_spec, latency, synthetic_networks, write_table
from sniper_onnx.cli import app
from sniper_onnx.errors import SniperError
from sniper_onnx.feature_schema import FEATURE_SCHEMA
from sniper_onnx.predictors import load_predictor
from sniper_onnx.predictors.dataset import load_training_csv
from sniper_onnx.predictors.training import table_feature_schema

runner = CliRunner()
NETWORKS = 40
OLD = "2026-01-01"
REFERENCE_TABLE = Path(__file__).resolve().parents[2] / "data" / "reference" / "train.csv.gz"


def _table(tmp_path: Path, schema_of=None, name: str = "train.csv") -> Path:
    """A synthetic `db export`-like table; ``schema_of(network index)`` fills a feature_schema column
    (None: no such column, as in tables exported before 2026-11-29)."""
    path = write_table(tmp_path / name, synthetic_networks(NETWORKS, 5), DEVICES)
    if schema_of is None:
        return path
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    rows[0].append("feature_schema")
    for row in rows[1:]:
        row.append(schema_of(int(row[0][len("net"):])))
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _schema(tmp_path: Path, schema_of=None) -> tuple[str, str]:
    return table_feature_schema(load_training_csv(_table(tmp_path, schema_of)))


def test_one_schema_throughout_is_recorded_as_is(tmp_path):
    assert _schema(tmp_path, lambda n: OLD) == (OLD, "")
    assert _schema(tmp_path, lambda n: FEATURE_SCHEMA) == (FEATURE_SCHEMA, "")


def test_a_table_that_does_not_say_gets_the_running_schema_and_a_warning(tmp_path):
    schema, warning = _schema(tmp_path)
    assert schema == FEATURE_SCHEMA and "does not record which analyzer" in warning and "db import" in warning
    assert _schema(tmp_path, lambda n: "")[1] == warning  # a blank column says as little as none


def test_blank_rows_beside_one_known_schema_take_it_with_a_warning(tmp_path):
    """An old database's networks (NULL) beside ones a recording analyzer stored: the known schema is
    the one to record, even an older one, so `predict` can still say it differs."""
    schema, warning = _schema(tmp_path, lambda n: OLD if n % 2 else "")
    assert schema == OLD and f"{NETWORKS // 2} of {NETWORKS} networks" in warning


def test_a_table_mixing_schemas_is_refused(tmp_path):
    with pytest.raises(SniperError, match=f"mixes features computed by feature schemas {OLD}, {FEATURE_SCHEMA}"):
        _schema(tmp_path, lambda n: OLD if n < 3 else FEATURE_SCHEMA)


def test_the_column_changes_neither_features_nor_the_data_hash(tmp_path):
    plain = load_training_csv(_table(tmp_path))
    stamped = load_training_csv(_table(tmp_path, lambda n: OLD, "stamped.csv"))
    assert "feature_schema" not in stamped.network_feature_names
    assert stamped.network_feature_names == plain.network_feature_names and stamped.sha256() == plain.sha256()


def test_the_committed_reference_table_still_has_the_shipped_predictors_hash():
    from sniper_onnx.predictors.runtime import shipped_predictor_path

    data = load_training_csv(REFERENCE_TABLE)
    shipped = load_predictor(shipped_predictor_path("pcn_reference.onnx"))
    assert set(data.network_feature_schemas or []) == {shipped.feature_schema}  # exported from a fresh database
    assert data.sha256() == shipped.meta["training_data_sha256"]


def _train(table: Path, out: Path):
    return runner.invoke(app, ["train", "--table", str(table), "-o", str(out), "--epochs", "1"])


def _schema_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "which analyzer computed" in line]


def test_train_records_the_tables_schema_without_a_warning(tmp_path):
    out = tmp_path / "p.onnx"
    result = _train(_table(tmp_path, lambda n: OLD), out)
    assert result.exit_code == 0, result.output
    assert load_predictor(out).feature_schema == OLD and not _schema_warnings(result.stderr)


def test_train_warns_once_for_a_table_without_schemas(tmp_path):
    out = tmp_path / "p.onnx"
    result = _train(_table(tmp_path), out)
    assert result.exit_code == 0, result.output
    assert load_predictor(out).feature_schema == FEATURE_SCHEMA
    warned = _schema_warnings(result.stderr)
    assert len(warned) == 1 and warned[0].startswith("sniper-onnx: warning: "), result.stderr


def test_train_refuses_a_mixed_table_in_one_line(tmp_path):
    out = tmp_path / "p.onnx"
    result = _train(_table(tmp_path, lambda n: OLD if n < 3 else FEATURE_SCHEMA), out)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("sniper-onnx: error:") and "db import" in lines[0], result.output
    assert not out.exists()


def test_a_caller_that_knows_the_schema_is_not_warned(tmp_path):
    import warnings

    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.training import train_predictor

    data = load_training_csv(_table(tmp_path))
    config = PCNConfig(attention_dim=4, hidden=(8,), embedding=4, epochs=1, min_steps=5)  # only the metadata matters
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        predictor, _ = train_predictor(data, config, extra_meta={"feature_schema": OLD})
    assert predictor.feature_schema == OLD
    with pytest.warns(UserWarning, match="does not record which analyzer"):  # without it: the Python warning
        train_predictor(data, config)


def test_train_from_an_old_database_warns_and_from_a_new_one_does_not(tmp_path):
    """Networks stored before the database recorded schemas are unknown (NULL), not today's."""
    from sniper_onnx.database import Database
    from sniper_onnx.predictors.dataset import training_data_from_db

    db_path = tmp_path / "ncd.sqlite"
    with Database(db_path) as db:
        nets = synthetic_networks(NETWORKS, 5)
        for name, facts in DEVICES.items():
            device = db.add_device(device_spec(name, facts), name)
            for index, (row, seconds) in enumerate(zip(nets, latency(nets, facts, 0))):
                network = db.add_network(f"h{index}", f"net{index}", {}, dict(zip(FEATURES, row.tolist())))
                db.add_measurement(network.id, device.id, float(seconds))
    assert table_feature_schema(training_data_from_db(db_path, tmp_path)) == (FEATURE_SCHEMA, "")
    with sqlite3.connect(str(db_path)) as conn:  # as the migration leaves networks stored before it
        conn.execute("UPDATE networks SET feature_schema = NULL")
    out = tmp_path / "old.onnx"
    result = runner.invoke(app, ["train", "--db", str(db_path), "-o", str(out), "--epochs", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["networks"] == NETWORKS and load_predictor(out).feature_schema == FEATURE_SCHEMA
    assert len(_schema_warnings(result.stderr)) == 1, result.stderr
