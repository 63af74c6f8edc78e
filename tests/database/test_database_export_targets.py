"""`db export -o` to stdout and to paths that are not regular files: written as streams, never read
back (a tester's `-o /dev/stdout | head` hung; `-o -` wrote a file named `-`)."""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.database import Database
from sniper_profiler.device import DeviceSpec

runner = CliRunner()
HEADER_START = "network_id,network_name,structure_hash,device_id,device_name,"
TIMEOUT_S = 30


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Two networks measured on one device."""
    path = tmp_path / "ncd.sqlite"
    with Database(path) as db:
        db.add_device(DeviceSpec(name="cpu t1"), device_id="d1")
        for index in range(2):
            net = db.add_network(f"h{index}", f"n{index}", features={"total_macs": float(index)})
            db.add_measurement(net.id, "d1", 0.01 * (index + 1))
    return path


def _export(db_path: Path, out: str, *extra: str):
    return runner.invoke(app, ["db", "export", "--db", str(db_path), "-o", out, *extra])


def test_dash_writes_the_csv_alone_to_stdout_and_no_file(db_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _export(db_path, "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(HEADER_START)
    assert len(list(csv.reader(io.StringIO(result.stdout)))) == 3  # header and two rows, nothing else
    assert "2 rows -> stdout" in result.stderr
    assert not (tmp_path / "-").exists()


def test_dash_with_json_is_refused_in_one_line(db_path):
    result = _export(db_path, "-", "--json")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "-o - with --json: both would be written to stdout" in result.stderr


def test_dev_stdout_redirected_to_a_file_is_written_not_refused(db_path, capfd):
    """pytest points fd 1 at a file: the tester's `-o /dev/stdout > t.csv`, refused as "not an earlier export"."""
    result = _export(db_path, "/dev/stdout")
    assert result.exit_code == 0, result.output
    assert HEADER_START in capfd.readouterr().out
    assert "2 rows -> /dev/stdout" in result.stderr and not result.stdout


def test_a_fifo_is_written_directly_and_never_read(db_path, tmp_path):
    fifo = tmp_path / "train.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    exporter = threading.Thread(target=lambda: received.append(_export(db_path, str(fifo))), daemon=True)
    reader.start()
    exporter.start()
    exporter.join(TIMEOUT_S)
    hung = exporter.is_alive()
    if hung:  # a writer's open and close wakes every open blocked on reading, so the test ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        exporter.join(TIMEOUT_S)
    reader.join(TIMEOUT_S)
    assert not hung, "db export blocked on the FIFO"
    data = next(item for item in received if isinstance(item, bytes))
    result = next(item for item in received if not isinstance(item, bytes))
    assert result.exit_code == 0, result.output
    assert data.decode().startswith(HEADER_START) and len(data.decode().splitlines()) == 3
    assert fifo.exists() and not fifo.is_file()  # still the FIFO: no temporary file renamed over it
    assert not (tmp_path / "train.fifo.tmp").exists()


def test_a_regular_file_that_is_not_an_export_is_still_refused(db_path, tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_text('{"schema": "sniper-profiler/1"}\n')
    result = _export(db_path, str(results))
    assert result.exit_code == 2 and "is not an earlier `db export` CSV" in result.stderr
    assert results.read_text() == '{"schema": "sniper-profiler/1"}\n'


def test_dev_stdout_appended_to_a_file_that_holds_something_is_refused(db_path, tmp_path):
    """`-o /dev/stdout >> results.jsonl` would have put a CSV after someone's measurements."""
    import subprocess
    import sys

    kept = tmp_path / "results.jsonl"
    kept.write_text('{"status": "ok"}\n')
    with open(kept, "a") as handle:
        done = subprocess.run([str(Path(sys.executable).parent / "sniper-onnx"), "db", "export", "--db", str(db_path),
                               "-o", "/dev/stdout"], stdout=handle, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 2 and "appended to a file that is not empty" in done.stderr
    assert kept.read_text() == '{"status": "ok"}\n'
