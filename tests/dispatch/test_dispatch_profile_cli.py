"""`sniper-onnx profile --fleet` goes through the dispatch engine into the database."""

import sqlite3

from typer.testing import CliRunner

from sniper_onnx.cli import app

runner = CliRunner()


def test_fleet_needs_a_database(tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("name: f\ndevices: []\n")
    result = runner.invoke(app, ["profile", "--fleet", str(fleet), "--generate", "1", "--max-macs", "1e6"])
    assert result.exit_code == 2
    assert "--fleet needs --db" in result.output


def test_fleet_profile_stores_every_net_on_every_device_type(tmp_path):
    from pathlib import Path

    fleet = Path(__file__).resolve().parents[2] / "examples" / "fleet.yaml"
    db = tmp_path / "ncd.sqlite"
    args = ["profile", "--fleet", str(fleet), "--generate", "2", "--seed", "5", "--max-macs", "1e6",
            "--min-repeats", "3", "--db", str(db)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        devices = con.execute("select count(distinct device_id) from measurements").fetchone()[0]
        nets = con.execute("select count(distinct network_id) from measurements").fetchone()[0]
    assert (nets, devices) == (2, 2)
