"""Platform and trace files that are not UTF-8 text (a binary, a Latin-1 export): one line, exit 2."""

from __future__ import annotations

import pytest
from scheduling_testkit import assert_one_line_error as assert_one_line
from typer.testing import CliRunner

from sniper_onnx.cli import app


BINARY = b"\x08\xca\x01\x12\x00\xff\xfe"  # the first bytes of an ONNX file: not UTF-8


@pytest.mark.parametrize("name", ["p.json", "p.yaml"])
def test_a_platform_file_that_is_not_utf8_is_one_line(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BINARY)
    result = CliRunner().invoke(app, ["simulate", "--platform", str(path), "--rates", "24", "--seeds", "1"])
    assert_one_line(result, name, "not UTF-8 text", "platform file")


def test_a_latin1_trace_is_one_line(tmp_path):
    path = tmp_path / "lat1.csv"
    path.write_bytes(b"arrival,model,deadline\n0.0,ResNet50,\n0.1,ResNet50,caf\xe9\n")
    result = CliRunner().invoke(app, ["simulate", "--trace", str(path)])
    assert_one_line(result, "lat1.csv", "not UTF-8 text", "arrival,model")


def test_a_trace_with_a_byte_order_mark_reads(tmp_path):
    """Spreadsheets write UTF-8 with a BOM: the first column is still 'arrival'."""
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffarrival,model\n0.1,VGG16\n".encode())
    result = CliRunner().invoke(app, ["simulate", "--trace", str(path), "--json"])
    assert result.exit_code == 0, result.output
