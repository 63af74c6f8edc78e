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


def _two_device_fleet(tmp_path, devices=None):
    import yaml
    from dispatch_testkit import fleet_dict, matmul_chain

    data = fleet_dict({"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8)}, devices)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(data))
    return fleet


def test_fleet_profile_keeps_nets_whose_files_share_a_stem(tmp_path):
    from dispatch_testkit import matmul_chain

    for folder, width in (("a", 8), ("b", 16)):
        (tmp_path / folder).mkdir()
        matmul_chain(tmp_path / folder / "net.onnx", rows=4, width=width)
    fleet = _two_device_fleet(tmp_path, [{"name": "d0", "type": "all"}])
    db = tmp_path / "ncd.sqlite"
    result = runner.invoke(app, ["profile", "--fleet", str(fleet), str(tmp_path / "a" / "net.onnx"),
                                 str(tmp_path / "b" / "net.onnx"), "--min-repeats", "2", "--db", str(db)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(db) as con:
        names = sorted(row[0] for row in con.execute(
            "select n.name from measurements m join networks n on n.id = m.network_id"))
    assert names == ["a/net", "b/net"]


def test_fleet_profile_rerun_skips_what_is_stored_and_adds_nothing(tmp_path):
    fleet = _two_device_fleet(tmp_path)
    db = tmp_path / "ncd.sqlite"
    args = ["profile", "--fleet", str(fleet), str(tmp_path / "m.onnx"), "--min-repeats", "2", "--db", str(db)]
    assert runner.invoke(app, args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "0 measured" in again.output and "2 skipped" in again.output
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from measurements").fetchone()[0] == 2


def test_fleet_profile_where_every_net_fails_says_why_and_exits_1(tmp_path):
    from dispatch_testkit import broken_reshape

    fleet = _two_device_fleet(tmp_path, [{"name": "d0", "type": "all"}])
    broken = broken_reshape(tmp_path / "broken.onnx")
    result = runner.invoke(app, ["profile", "--fleet", str(fleet), str(broken), "--min-repeats", "2",
                                 "--db", str(tmp_path / "ncd.sqlite")])
    assert result.exit_code == 1
    assert "failed: broken on d0" in result.output
