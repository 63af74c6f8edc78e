"""`db export --device`: a device id, a name, or a part of one that only one device holds."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.database import Database
from sniper_profiler.device import DeviceSpec

runner = CliRunner()
NAMES = {"epyc-t1": "AMD EPYC | cpu fp32 t1 opt-all", "epyc-t16": "AMD EPYC | cpu fp32 t16 opt-all",
         "xeon-t1": "Intel Xeon | cpu fp32 t1 opt-basic"}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Three devices, one network measured once on each."""
    path = tmp_path / "p 1.sqlite"  # a space: the hint must quote it
    with Database(path) as db:
        net = db.add_network("h0", "n0", features={"total_macs": 1.0})
        for device_id, name in NAMES.items():
            db.add_device(DeviceSpec(name=name), device_id=device_id)
            db.add_measurement(net.id, device_id, 0.01)
    return path


def _export(db_path: Path, *devices: str):
    out = db_path.parent / "t.csv"
    arguments = [argument for device in devices for argument in ("--device", device)]
    return runner.invoke(app, ["db", "export", "--db", str(db_path), "-o", str(out), *arguments]), out


def _exported_devices(out: Path) -> list[str]:
    return [row["device_id"] for row in csv.DictReader(out.open())]


@pytest.mark.parametrize("given, expected", [
    ("epyc-t1", ["epyc-t1"]),                              # the id
    ("AMD EPYC | cpu fp32 t1 opt-all", ["epyc-t1"]),       # the whole name
    ("t16", ["epyc-t16"]),                                 # a part only one name holds
    ("opt-basic", ["xeon-t1"]),
    ("amd epyc | cpu fp32 t1", ["epyc-t1"]),               # case-insensitive; "t1" as a word, not in "t16"
])
def test_a_device_is_named_by_id_name_or_unique_part(db_path: Path, given: str, expected: list[str]) -> None:
    result, out = _export(db_path, given)
    assert result.exit_code == 0, result.output
    assert _exported_devices(out) == expected


def test_several_devices_give_their_union_once(db_path: Path) -> None:
    result, out = _export(db_path, "t16", "epyc-t16", "opt-basic")
    assert result.exit_code == 0, result.output
    assert sorted(_exported_devices(out)) == ["epyc-t16", "xeon-t1"]


def test_a_part_that_several_devices_hold_is_one_error_listing_them(db_path: Path) -> None:
    result, out = _export(db_path, "AMD EPYC")
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr.strip() == (
        f"sniper-onnx: error: --device 'AMD EPYC': matches 2 devices in {db_path}: epyc-t1 (AMD EPYC | cpu fp32 t1 "
        "opt-all), epyc-t16 (AMD EPYC | cpu fp32 t16 opt-all); give more of the name, or the id")


@pytest.mark.parametrize("given, words", [("ARM", "no such device"), ("", "empty")])
def test_an_unknown_device_hint_looks_in_the_database_given(db_path: Path, given: str, words: str) -> None:
    result, _ = _export(db_path, given)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in result.output
    assert f"see `sniper-onnx db stats --db '{db_path}'`" in lines[0]
