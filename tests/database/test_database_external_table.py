"""`import-latencies`: what its summary says was stored, and its refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from database_testkit import conv_net
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.database.external import import_latency_table
from sniper_onnx.database.store import Database

runner = CliRunner()


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """Two ONNX files; one good latency, one negative, a nan, an inf and an empty cell."""
    conv_net(tmp_path / "n1.onnx")
    conv_net(tmp_path / "n2.onnx", channels=8)
    path = tmp_path / "lat.csv"
    path.write_text("network,device,latency_ms\nn1.onnx,cpuA,1.5\nn1.onnx,cpuB,-2\nn2.onnx,cpuA,nan\n"
                    "n2.onnx,cpuB,\nn2.onnx,cpuC,inf\n")
    return path


def _import(table: Path, *extra: str):
    return runner.invoke(app, ["import-latencies", str(table), "--db", str(table.parent / "x.sqlite"), *extra])


def _one_line_error(result, words: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith("sniper-onnx: error:") and words in lines[0], lines[0]
    return lines[0]


def test_not_a_number_latencies_are_kept_as_failed_and_said_apart_from_empty_cells(table: Path) -> None:
    result = import_latency_table(table.parent / "x.sqlite", table)
    assert (result.measurements_added, result.non_positive, result.not_a_number, result.missing_values) == (4, 1, 2, 1)
    with Database(table.parent / "x.sqlite") as db:
        flags = sorted(flag for m in db.measurements() if m.status == "failed" for flag in m.flags)
    assert flags == ["non_positive_latency", "not_a_number_latency", "not_a_number_latency"]


def test_the_summary_says_which_measurements_were_stored_as_failed(table: Path) -> None:
    for added, there in ((4, 0), (0, 4)):  # a second import stores nothing new, and says the same of the table
        result = _import(table)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[3:] == [
            f"  measurements {added} added, {there} already there",
            "  failed       3 of these 4 stored as failed measurements, without a latency: "
            "1 latency of 0 or less, 2 not-a-number latencies (NaN or inf)",
            "  skipped      1 empty or NA cell, nothing stored",
        ]


@pytest.mark.parametrize("jobs", ["0", "-3"])
def test_jobs_must_be_positive_and_a_refusal_makes_no_database(table: Path, jobs: str) -> None:
    _one_line_error(_import(table, "-j", jobs), f"--jobs {jobs}: must be at least 1")
    assert not (table.parent / "x.sqlite").exists()


def test_a_missing_network_file_names_each_place_looked_once(table: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    table.write_text("network,device,latency_ms\nmissing.onnx,cpuA,1.5\n")
    monkeypatch.chdir(tmp_path)
    assert "(looked in the current folder);" in _one_line_error(_import(Path(table.name)), "missing.onnx")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.csv").write_text(table.read_text())
    line = _one_line_error(_import(Path("sub") / "t.csv"), "missing.onnx")
    assert "(looked in sub and the current folder);" in line
    absolute = os.path.join(str(tmp_path), "gone.onnx")
    table.write_text(f"network,device,latency_ms\n{absolute},cpuA,1.5\n")
    assert f"(no file {absolute});" in _one_line_error(_import(table), "gone.onnx")
