"""A --db path that is not a sniper-onnx database is refused, and a refused command leaves no file.

SQLite takes an empty or tiny file for an empty database and writes one over it; a command that
only reads must not make a database at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from database_testkit import synthetic_results
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.database import Database
from sniper_onnx.errors import SniperError

runner = CliRunner()

COMMANDS = {
    "db stats": ["db", "stats"],
    "db export": ["db", "export", "-o", "{tmp}/t.csv"],
    "evaluate": ["evaluate"],
    "train": ["train", "-o", "{tmp}/p.pt"],
    "db import": ["db", "import", "{tmp}/r.jsonl"],
}


def invoke(tmp_path: Path, command: str, db: Path):
    synthetic_results(tmp_path / "r.jsonl", 2)
    argv = [arg.format(tmp=tmp_path) for arg in COMMANDS[command]] + ["--db", str(db)]
    return runner.invoke(app, argv)


def assert_one_line(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output, result.output


# an empty file holds nothing to lose: db import makes the database in it (test below), the others refuse it
SMALL_FILES = [(command, content, fragment) for command in COMMANDS
               for content, fragment in ((b"", "an empty file"), (b"x", "not an SQLite file"), (b"notes\n", "not an SQLite file"))
               if content or command != "db import"]


@pytest.mark.parametrize("command, content, fragment", SMALL_FILES)
def test_a_small_file_given_as_db_is_refused_and_kept(tmp_path, command, content, fragment):
    db = tmp_path / "one.txt"
    db.write_bytes(content)
    assert_one_line(invoke(tmp_path, command, db), fragment)
    assert db.read_bytes() == content
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "p.pt").exists()


@pytest.mark.parametrize("command", ["db stats", "db export", "evaluate", "train"])
def test_reading_commands_never_add_tables_to_an_empty_sqlite_file(tmp_path, command):
    db = tmp_path / "empty.sqlite"
    sqlite3.connect(db).execute("PRAGMA journal_mode=WAL").close()
    before = db.read_bytes()
    assert_one_line(invoke(tmp_path, command, db), "without sniper-onnx tables")
    assert db.read_bytes() == before


def test_an_empty_file_takes_a_new_database_as_a_missing_path_does(tmp_path):
    touched = tmp_path / "ncd.sqlite"
    touched.write_bytes(b"")  # `touch ncd.sqlite`, or a temporary file's name
    with Database(touched) as db:
        assert db.stats().networks == 0
    assert touched.read_bytes().startswith(b"SQLite format 3")


def test_a_reading_open_of_a_missing_path_makes_no_file(tmp_path):
    with pytest.raises(SniperError, match="no such database"):
        Database(tmp_path / "absent.sqlite", create=False)
    assert list(tmp_path.iterdir()) == []


def test_a_new_database_appears_whole_and_leaves_nothing_beside_it(tmp_path):
    with Database(tmp_path / "ncd.sqlite") as db:
        assert db.schema_version > 0
    assert [p.name for p in tmp_path.iterdir()] == ["ncd.sqlite"]
    with Database(tmp_path / "ncd.sqlite", create=False) as db:
        assert db.stats().networks == 0


@pytest.mark.parametrize("results, models, fragment", [
    ("{m}/conv.onnx", None, "no profiler records"),
    ("{tmp}/missing.jsonl", None, "no such results file"),
    ("{tmp}/r.jsonl", "{tmp}/no-models", "--models"),
])
def test_a_refused_import_creates_no_database(tmp_path, results, models, fragment):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "conv.onnx").write_bytes(b"\x08\xca\x01\x12\x00\xff")
    synthetic_results(tmp_path / "r.jsonl", 2)
    db = tmp_path / "x.sqlite"
    argv = ["db", "import", results.format(m=tmp_path / "m", tmp=tmp_path), "--db", str(db)]
    if models:
        argv += ["--models", models.format(tmp=tmp_path)]
    assert_one_line(runner.invoke(app, argv), fragment)
    assert not db.exists()


def test_an_import_into_a_new_path_still_works(tmp_path):
    synthetic_results(tmp_path / "r.jsonl", 3)
    result = runner.invoke(app, ["db", "import", str(tmp_path / "r.jsonl"), "--db", str(tmp_path / "new.sqlite")])
    assert result.exit_code == 0, result.output
    with Database(tmp_path / "new.sqlite", create=False) as db:
        assert db.stats().measurements == 3
