"""`sniper-onnx profile --fleet` goes through the dispatch engine into the database."""

import json
import sqlite3

import pytest
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


def _measurements(db):
    import json

    with sqlite3.connect(db) as con:
        return [(count, json.loads(config)) for count, config in con.execute("select count, config from measurements")]


@pytest.mark.parametrize("extra, message", [
    (["--threads", "4"], "--threads 4 with --fleet: the fleet file sets threads per device (d0: 1)"),
    (["--opt-level", "disabled"], "--opt-level disabled with --fleet"),
    (["--provider", "cuda"], "--provider cuda with --fleet"),
    (["-o", "r.jsonl"], "with --fleet: the farm stores into --db only"),
    (["--max-busy", "0.1"], "--max-busy with --fleet"),
    (["--memory-limit", "2"], "--memory-limit with --fleet"),
    (["--precision", "fp16"], "--precision fp16 with --fleet"),
    (["--provider-option", "device_id=0"], "--provider-option with --fleet"),
    (["--passes", "2"], "--passes 2 with --fleet"),
    (["--retry-failed"], "--retry-failed with --fleet"),
    (["--retry-busy"], "--retry-busy with --fleet"),
    (["--sessions", "3"], "device type all (threads 2): --sessions 3 with --threads 2"),
])
def test_fleet_profile_refuses_what_it_cannot_honour_in_one_line(tmp_path, extra, message):
    fleet = _two_device_fleet(tmp_path, [{"name": "d0", "type": "all"}] if "--sessions" not in extra
                              else [{"name": "d0", "type": "all", "threads": 2}])
    db = tmp_path / "ncd.sqlite"
    result = runner.invoke(app, ["profile", "--fleet", str(fleet), str(tmp_path / "m.onnx"), "--db", str(db), *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_fleet_profile_takes_device_options_that_match_the_fleet(tmp_path):
    fleet = _two_device_fleet(tmp_path, [{"name": "d0", "type": "all"}])
    result = runner.invoke(app, ["profile", "--fleet", str(fleet), str(tmp_path / "m.onnx"), "--db", str(tmp_path / "db"),
                                 "--threads", "1", "--opt-level", "all", "--provider", "cpu", "--max-repeats", "3", "--min-time", "0",
                                 "--min-repeats", "3"])
    assert result.exit_code == 0, result.output


def test_fleet_profile_measures_with_the_stopping_rule_given_and_stores_the_runs_timed(tmp_path):
    fleet = _two_device_fleet(tmp_path, [{"name": "d0", "type": "all"}])
    db = tmp_path / "ncd.sqlite"
    args = ["profile", "--fleet", str(fleet), str(tmp_path / "m.onnx"), "--db", str(db), "--warmup", "0", "--min-time", "0",
            "--min-repeats", "7", "--max-repeats", "7", "--max-time", "5", "--sessions", "1"]
    assert runner.invoke(app, args).exit_code == 0
    [(count, config)] = _measurements(db)
    assert count == 7  # the agent's timed runs, not 1
    assert (config["warmup"], config["max_repeats"], config["max_time_s"], config["sessions"]) == (0, 7, 5.0, 1)
    # other measurement settings are another record: the rerun measures, it does not skip
    again = runner.invoke(app, args[:-6] + ["--min-repeats", "9", "--max-repeats", "9"])
    assert again.exit_code == 0 and "1 measured" in again.output, again.output
    assert sorted(count for count, _ in _measurements(db)) == [7, 9]


def test_fleet_profile_timeout_fails_the_net_and_a_fresh_agent_takes_the_next(tmp_path):
    from dispatch_testkit import matmul_chain

    fleet = _two_device_fleet(tmp_path, [{"name": "d0", "type": "all"}])
    matmul_chain(tmp_path / "m2.onnx", rows=4, width=16)  # other bytes: a copy of m would share m's record
    result = runner.invoke(app, ["profile", "--fleet", str(fleet), str(tmp_path / "m.onnx"), str(tmp_path / "m2.onnx"),
                                 "--db", str(tmp_path / "ncd.sqlite"), "--min-time", "30", "--max-time", "30",
                                 "--max-repeats", "100000000", "--timeout", "0.5", "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["timed_out"] == 2 and summary["failed"] == 2  # the second net ran on a restarted agent
    assert all("timed out after 0.5 s (--timeout)" in failure for failure in summary["failures"])


def test_fleet_profile_measures_identical_bytes_once_and_says_what_it_stored(tmp_path):
    import shutil

    fleet = _two_device_fleet(tmp_path)  # two device types
    (tmp_path / "nets").mkdir()
    shutil.copy(tmp_path / "m.onnx", tmp_path / "nets" / "a.onnx")
    shutil.copy(tmp_path / "m.onnx", tmp_path / "nets" / "b.onnx")
    db = tmp_path / "ncd.sqlite"
    args = ["profile", "--fleet", str(fleet), str(tmp_path / "nets"), "--min-repeats", "2", "--db", str(db), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    with sqlite3.connect(db) as con:
        stored = con.execute("select count(*) from measurements").fetchone()[0]
        names = {row[0] for row in con.execute("select name from networks")}
    assert (summary["measured"], summary["stored"], stored) == (2, 2, 2)  # a on both types; b is a's record
    assert summary["same_bytes"] == ["b: same bytes as a"] and names == {"a"}
    text = runner.invoke(app, args[:-1])  # rerun, as text: skipped, and the duplicate said again
    assert "0 measured, 0 failed, 2 skipped" in text.output and "0 stored" in text.output
    assert "1 net(s) with the same bytes as an earlier net share its record" in text.output


def test_the_farm_writer_counts_only_what_it_stored(tmp_path):
    from dispatch_testkit import fleet_dict, matmul_chain

    from sniper_onnx.dispatch import fleet_from_dict
    from sniper_onnx.dispatch.profiling import FarmWriter, _Record

    blob = matmul_chain(tmp_path / "m.onnx", rows=4, width=8).read_bytes()
    fleet = fleet_from_dict(fleet_dict({"m": tmp_path / "m.onnx"}, [{"name": "d0", "type": "t"}]))
    result = {"median_s": 0.001, "stats": {"count": 3, "median_s": 0.001}, "flags": []}
    writer = FarmWriter(tmp_path / "ncd.sqlite", fleet)
    for name in ("m", "copy-of-m"):  # one record key: the database keeps the first
        writer.put(_Record(name, {"kind": "test"}, blob, fleet.devices[0], result, "fleet-profile:key", {}))
    assert (writer.close(), writer.already, writer.errors) == (1, 1, [])


def test_fleet_profile_stopped_by_ctrl_c_keeps_what_it_measured_and_a_rerun_resumes(tmp_path):
    from dispatch_testkit import fleet_dict, matmul_chain

    from sniper_onnx.database.collect import file_jobs
    from sniper_onnx.dispatch import fleet_from_dict
    from sniper_onnx.dispatch.profiling import profile_fleet
    from sniper_profiler.config import ProfileConfig

    nets = [str(matmul_chain(tmp_path / f"n{i}.onnx", rows=4 + i, width=8)) for i in range(4)]
    fleet = fleet_from_dict(fleet_dict({"m": tmp_path / "n0.onnx"}, [{"name": "d0", "type": "t"}]))
    config = ProfileConfig(min_repeats=2, max_repeats=2, warmup=0, min_time_s=0)

    def ctrl_c(done: int, total: int) -> None:
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_fleet(fleet, file_jobs(nets), tmp_path / "ncd.sqlite", config, progress=ctrl_c, in_flight=1)
    with sqlite3.connect(tmp_path / "ncd.sqlite") as con:
        assert con.execute("select count(*) from measurements").fetchone()[0] == 2
    summary = profile_fleet(fleet, file_jobs(nets), tmp_path / "ncd.sqlite", config)
    assert (summary.skipped, summary.measured, summary.stored) == (2, 2, 2)
