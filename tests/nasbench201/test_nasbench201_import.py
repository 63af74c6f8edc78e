"""Importing external latency tables into the Network Characteristic Database."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sniper_generator.nasbench201 import build_nasbench201
from sniper_onnx.cli import app
from sniper_onnx.database.external import import_latency_table
from sniper_onnx.database.hashing import structure_hash
from sniper_onnx.database.store import Database
from sniper_onnx.errors import SniperError

FIXTURES = Path(__file__).parent / "fixtures"
WIDE = FIXTURES / "hw_latency_wide.csv"
ARCH0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


def test_wide_table_imports_once(tmp_path: Path) -> None:
    db_path = tmp_path / "ncd.sqlite"
    first = import_latency_table(db_path, WIDE)
    # 3 archs x 3 devices, one empty cell; pixel3's 0 ms is kept as a failed measurement
    assert (first.layout, first.rows, first.devices) == ("wide", 3, ["1080ti_1", "pixel3", "new_board"])
    assert (first.networks_added, first.devices_added, first.measurements_added) == (3, 3, 8)
    assert (first.non_positive, first.missing_values, first.devices_without_spec) == (1, 1, ["new_board"])
    second = import_latency_table(db_path, WIDE)
    assert (second.networks_added, second.devices_added, second.measurements_added) == (0, 0, 0)
    assert second.measurements_seen == 8
    with Database(db_path) as db:
        measurements = db.measurements()
        assert len(measurements) == 8
        assert sum(m.status == "failed" and "non_positive_latency" in m.flags for m in measurements) == 1
        by_device = {d.name: d for d in db.devices()}
        assert by_device["1080ti_1"].spec.compute_units == 3584  # the shipped spec
        assert by_device["new_board"].spec.kind == "other"
        network = db.network_by_hash(structure_hash(build_nasbench201(ARCH0, weights=False)))
        assert network is not None and network.name == ARCH0
        gtx = [m for m in measurements if m.network_id == network.id and m.device_id == by_device["1080ti_1"].id]
        assert [m.median_s for m in gtx] == [pytest.approx(10.7544e-3)]
        assert gtx[0].config == {"batch_size": 1, "source_network": ARCH0}


def test_long_table_with_onnx_path_and_units(tmp_path: Path) -> None:
    model_path = tmp_path / "net.onnx"
    model_path.write_bytes(build_nasbench201(ARCH0, weights=False).SerializeToString())
    table = tmp_path / "long.csv"
    table.write_text(
        "network,device,latency_s\n"
        f"net.onnx,1080ti_1,0.0105\n"
        f"{ARCH0},1080ti_1,0.0107\n"
        f"net.onnx,gold_6240,0.02\n"
    )
    db_path = tmp_path / "ncd.sqlite"
    result = import_latency_table(db_path, table)
    assert (result.layout, result.unit, result.devices) == ("long", "s", ["1080ti_1", "gold_6240"])
    # the ONNX file and the arch string are one network: the skeleton hashes like the file
    assert (result.networks_added, result.measurements_added) == (1, 3)
    assert import_latency_table(db_path, table).measurements_added == 0
    with Database(db_path) as db:
        assert sorted(m.median_s for m in db.measurements()) == pytest.approx([0.0105, 0.0107, 0.02])



def test_a_latency_column_without_a_known_unit_needs_one(tmp_path: Path) -> None:
    table = tmp_path / "long.csv"
    table.write_text(f"network,device,latency_mean\n{ARCH0},1080ti_1,1.5\n")
    with pytest.raises(SniperError, match="latency column 'latency_mean' names no unit this importer knows; give it with --unit"):
        import_latency_table(tmp_path / "ncd.sqlite", table, latency_column="latency_mean")
    assert import_latency_table(tmp_path / "ncd.sqlite", table, latency_column="latency_mean", unit="us").unit == "us"


def test_the_same_table_again_in_another_unit_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "wide.csv"
    table.write_text(f"arch,1080ti_1\n{ARCH0},1.5\n")
    import_latency_table(tmp_path / "ncd.sqlite", table, unit="s")
    with pytest.raises(SniperError, match="an earlier import of this table stored 1.5 s, 1000 times more; give the --unit"):
        import_latency_table(tmp_path / "ncd.sqlite", table)
    table.write_text(f"arch,1080ti_1\n{ARCH0},1.6\n")  # a re-measured value is kept beside the first
    assert import_latency_table(tmp_path / "ncd.sqlite", table, unit="s").measurements_added == 1
    with Database(tmp_path / "ncd.sqlite") as db:
        assert sorted(m.median_s for m in db.measurements()) == [1.5, 1.6]


@pytest.mark.parametrize("column, seconds", [("latency_ns", 1.5e-3), ("time_sec", 1.5e6), ("latency_usec", 1.5)])
def test_a_latency_columns_unit_suffix_is_read(tmp_path: Path, column: str, seconds: float) -> None:
    table = tmp_path / "long.csv"
    table.write_text(f"network,device,{column}\n{ARCH0},1080ti_1,1500000\n")
    import_latency_table(tmp_path / "ncd.sqlite", table)
    with Database(tmp_path / "ncd.sqlite") as db:
        assert [m.median_s for m in db.measurements()] == pytest.approx([seconds])


@pytest.mark.parametrize(
    "content, message",
    [
        ("arch,1080ti_1\n|bad|,1.0\n", "3 node groups"),
        ("arch,1080ti_1\nmissing.onnx,1.0\n", "neither a NAS-Bench-201 arch string nor an ONNX file"),
        (f"arch,1080ti_1\n{ARCH0},fast\n", "latency 'fast' is not a number"),
        ("foo,bar\nx,1\n", "no network column"),
        ("arch\n", "at least one data row"),
        (f"arch,1080ti_1,1080ti_1\n{ARCH0},1.5,9.0\n", "column '1080ti_1' appears 2 times"),
    ],
)
def test_bad_tables_fail_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    table = tmp_path / "bad.csv"
    table.write_text(content)
    with pytest.raises(SniperError, match=message):
        import_latency_table(tmp_path / "ncd.sqlite", table)
    result = CliRunner().invoke(app, ["import-latencies", str(table), "--db", str(tmp_path / "cli.sqlite")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert message in result.output


def test_cli_json_and_text(tmp_path: Path) -> None:
    db_path = str(tmp_path / "ncd.sqlite")
    runner = CliRunner()
    first = runner.invoke(app, ["import-latencies", str(WIDE), "--db", db_path, "--json", "--device", "1080ti_1"])
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert payload["measurements_added"] == 3 and payload["devices"] == ["1080ti_1"]
    again = runner.invoke(app, ["import-latencies", str(WIDE), "--db", db_path])
    assert again.exit_code == 0, again.output
    assert "measurements 5 added, 3 already there" in again.stdout
    assert "no device spec for new_board" in again.stderr
    assert runner.invoke(app, ["import-latencies", "-h"]).exit_code == 0


def test_parallel_hashing_gives_the_same_networks(tmp_path: Path) -> None:
    from sniper_generator.nasbench201 import ordinal_to_arch
    from sniper_onnx.database.external import HASH_CHUNK, nasbench201_structure_hash

    archs = [ordinal_to_arch(7 + 61 * i) for i in range(2 * HASH_CHUNK)]  # just enough to use the pool
    table = tmp_path / "wide.csv.gz"
    with gzip.open(table, "wt") as handle:
        handle.write("arch,1080ti_1\n" + "".join(f"{arch},{1 + i / 100}\n" for i, arch in enumerate(archs)))
    phases = set()
    result = import_latency_table(tmp_path / "ncd.sqlite", table, jobs=2, progress=lambda phase, *_: phases.add(phase))
    assert phases == {"hashing networks", "importing latencies"}
    assert result.measurements_added == len(archs)
    with Database(tmp_path / "ncd.sqlite") as db:
        stored = {n.structure_hash for n in db.networks()}
    assert stored == {nasbench201_structure_hash(arch) for arch in archs}
