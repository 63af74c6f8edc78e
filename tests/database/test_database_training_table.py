"""Training tables given to `train`/`evaluate --table`: .csv and .csv.gz read, anything else is one line."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.errors import SniperError
from sniper_onnx.predictors.dataset import load_training_csv

TABLE = "network_name,device_name,total_macs,device_cores,latency_s\nnet-a,cpu,100,4,0.5\nnet-b,cpu,200,4,1.0\n"


@pytest.mark.parametrize("name, data", [
    ("t.csv", TABLE.encode()),
    ("t.csv.gz", gzip.compress(TABLE.encode())),
    ("t.csv", b"\xef\xbb\xbf" + TABLE.encode()),  # a spreadsheet's UTF-8 with a BOM
])
def test_plain_gzipped_and_bom_tables_read(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    assert load_training_csv(path).network_names == ["net-a", "net-b"]


@pytest.mark.parametrize("data, message", [
    (b"\x08\xca\x01\x12\x00\xff", "not UTF-8 text; give a .csv or .csv.gz training table"),
    (gzip.compress(b"network_name,device\ncaf\xe9,cpu\n"), "not UTF-8 text"),
    (gzip.compress(TABLE.encode())[:20], "a broken gzip file"),
])
def test_tables_that_are_not_text_are_one_error(tmp_path, data, message):
    path = tmp_path / "t.csv.gz"
    path.write_bytes(data)
    with pytest.raises(SniperError, match=message):
        load_training_csv(path)


@pytest.mark.parametrize("command", [["evaluate"], ["train", "-o", "{tmp}/p.pt"]])
def test_cli_table_that_is_not_utf8_is_one_line(tmp_path: Path, command):
    path = tmp_path / "conv.onnx"
    path.write_bytes(b"\x08\xca\x01\x12\x00\xff")
    argv = [arg.format(tmp=tmp_path) for arg in command] + ["--table", str(path)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "conv.onnx: not UTF-8 text" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "p.pt").exists()


def test_import_latencies_says_not_utf8_like_the_other_inputs_and_makes_no_database(tmp_path: Path):
    table = tmp_path / "lat1.csv"
    table.write_bytes(b"network,cpu\n|nor_conv_3x3~0|,caf\xe9\n")
    result = CliRunner().invoke(app, ["import-latencies", str(table), "--db", str(tmp_path / "x.sqlite")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"sniper-onnx: error: {table}: not UTF-8 text; "
                                     "give a comma-separated .csv or .csv.gz latency table")
    assert not (tmp_path / "x.sqlite").exists()
