"""Fleet and workload files: what they accept, and one-line errors for what they do not."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from dispatch_testkit import fleet_dict, matmul_chain
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.dispatch import fleet_from_dict, load_fleet, read_workload
from sniper_onnx.errors import SniperError


@pytest.fixture()
def fleet_file(tmp_path):
    model = matmul_chain(tmp_path / "m.onnx", rows=8, width=16, layers=1)
    path = tmp_path / "fleet.yaml"
    path.write_text(json.dumps(fleet_dict({"m": model})))
    return path


def test_example_fleet_and_trace_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    fleet = load_fleet(root / "examples" / "fleet.yaml")
    assert fleet.engine == "embedded" and len({d.opt_level for d in fleet.devices}) == 2
    tasks = read_workload(root / "examples" / "trace.csv", list(fleet.models))
    assert tasks and all(a.arrival <= b.arrival for a, b in zip(tasks, tasks[1:]))


@pytest.mark.parametrize("change, message", [
    ({"engine": "ray"}, "engine 'ray' is unknown"),
    ({"engine": "dask"}, "needs 'scheduler"),
    ({"devices": []}, "'devices' must be a non-empty list"),
    ({"devices": [{"name": "a", "opt_level": "max"}]}, "opt_level 'max'"),
    ({"devices": [{"name": "a"}, {"name": "a"}]}, "appear twice"),
    ({"devices": [{"name": "a", "cores": 2}]}, "unknown key(s) 'cores'"),
    ({"models": {"x": {"zoo_name": "resnet50"}}}, "give {zoo: NAME"),
    ({"predicted_times": {"m": {"all": -1}}}, "give positive seconds"),
    ({"predictor_devices": {"gpu": "x"}}, "unknown device type(s) gpu"),
    # since 2026-11-30: typos outside 'devices', an unknown provider (the tester's report, finding 6/7)
    ({"predicted_time": {"m": {"all": 1}}}, "<fleet>: unknown key(s) 'predicted_time'; a fleet file has name, engine"),
    ({"models": {"r": {"zoo": "squeezenet1_1", "resolutoin": 64}}}, "models.r: unknown key(s) 'resolutoin'; a zoo model has zoo, resolution"),
    ({"models": {"r": {"zoo": "resnet50", "file": "m.onnx"}}}, "models.r: give either file or zoo, not both"),
    ({"devices": [{"name": "a", "provider": "tpu"}]}, "provider 'tpu' is unknown; use one of cpu, cuda"),
])
def test_bad_fleets_say_what_to_fix(tmp_path, change, message):
    model = matmul_chain(tmp_path / "m.onnx", rows=8, width=16, layers=1)
    data = {**fleet_dict({"m": model}), **change}
    with pytest.raises(SniperError, match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{")):
        fleet_from_dict(data)


@pytest.mark.parametrize("rows, message", [
    ("arrival,model\n0,nope\n", "model 'nope' is not in the fleet"),
    ("arrival,model\nsoon,m\n", "arrival 'soon' is not a number"),
    ("arrival,model,deadline\n2,m,1\n", "deadline 1.0 is before arrival"),
    ("time,model\n0,m\n", "needs columns 'arrival' and 'model'"),
    ("arrival,model,input\n0,m,missing.npy\n", "does not exist"),
])
def test_bad_workloads_say_what_to_fix(tmp_path, rows, message):
    path = tmp_path / "trace.csv"
    path.write_text(rows)
    with pytest.raises(SniperError, match=message):
        read_workload(path, ["m"])


def test_an_unsorted_workload_keeps_each_tasks_row(tmp_path):
    workload = tmp_path / "w.csv"
    workload.write_text("arrival,model\n0.3,m\n0.1,m\n0.2,m\n")
    tasks = read_workload(workload, ["m"])
    assert [(t.arrival, t.row) for t in tasks] == [(0.1, 1), (0.2, 2), (0.3, 0)]


@pytest.mark.parametrize("args, message", [
    (["--rate", "5", "--kill", "slow"], "write DEVICE@SECONDS"),
    (["--policy", "mct-oracle", "--rate", "5"], "only the simulator"),
    (["--policy", "fastest", "--rate", "5"], "unknown; choose from"),
    ([], "exactly one of --workload"),
    (["--rate", "5", "--kill", "ghost@1"], "no device named 'ghost'"),
    (["--rate", "5", "--deadline-factor", "-3"], "--deadline-factor -3.0"),
    (["--rate", "5", "--deadline-factor", "nan"], "--deadline-factor nan"),
    (["--rate", "5", "--seed", "-1"], "--seed -1"),
    (["--rate", "inf"], "must be finite and positive"),
    (["--rate", "5", "--duration", "inf"], "must be finite and positive"),
    (["--rate", "1e12"], "expected tasks in one run"),
    (["--rate", "5", "--tasks-out", "/nonexistent/dir/t.jsonl"], "folder /nonexistent/dir does not exist"),
])
def test_cli_errors_are_one_line(fleet_file, args, message):
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet_file), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


@pytest.mark.parametrize("text, message", [
    ("models: {m: {file: m.onnx}, m: {file: m.onnx}}\ndevices: [{name: a}]\n", "key 'm' appears twice"),
    ("models: {m: {file: m.onnx}}\ndevices: [{name: a, threads: 1, threads: 2}]\n", "key 'threads' appears twice"),
    ("models: {m: {file: m.onnx}}\ndevices: [{name: null}]\n", "devices[0]: name None must be a non-empty name"),
    ("models: {m: {file: m.onnx}}\ndevices: [{name: ''}]\n", "devices[0]: name '' must be a non-empty name"),
    ("models: {m: {file: m.onnx}}\ndevices: [{name: a, type: null}]\n", "type None must be a non-empty name"),
    ("name: null\nmodels: {m: {file: m.onnx}}\ndevices: [{name: a}]\n", "name None must be a non-empty name"),
    ("models: {a: 1\ndevices: [\n", "cannot parse the fleet file"),
])
def test_fleet_file_mistakes_are_one_line(tmp_path, text, message):
    matmul_chain(tmp_path / "m.onnx", rows=8, width=16, layers=1)
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(path), "--rate", "1"])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1


def test_missing_fleet_file_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(tmp_path / "none.yaml"), "--rate", "1"])
    assert result.exit_code == 2 and "no such fleet file" in result.output


def test_agent_imports_no_dask_and_dispatch_imports_no_torch():
    code = ("import sys, sniper_profiler.agent, sniper_onnx.dispatch, sniper_onnx.cli.dispatch_cmd; "
            "bad = [m for m in ('distributed', 'dask', 'torch', 'sklearn', 'onnxruntime') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    # onnxruntime: the agent imports it lazily too (sessions are made in the device process)
    assert out == "[]"


class NoEngine:
    """Any start means the run began before its inputs were checked."""

    name = "embedded"

    def start(self, device):
        raise AssertionError(f"{device.name} started before the predictor mapping was checked")

    def close(self):
        pass


@pytest.mark.parametrize("mapping, message", [
    ({"all": "nosuch"}, r"maps 'all' to 'nosuch', not a device of predictor .*pcn_reference.onnx \(it knows: AMD EPYC"),
    ({"all": "t1"}, r"matches 2 devices"),
])
def test_unknown_predictor_devices_fail_before_any_warm_up(tmp_path, mapping, message):
    from sniper_onnx.dispatch import DispatchTask, dispatch

    model = matmul_chain(tmp_path / "m.onnx", rows=8, width=16, layers=1)
    fleet = fleet_from_dict(fleet_dict({"m": model}, predictor_devices=mapping))
    with pytest.raises(SniperError, match=message):
        dispatch(fleet, [DispatchTask("m")], engine=NoEngine())


def test_predictor_devices_must_be_a_mapping(tmp_path):
    model = matmul_chain(tmp_path / "m.onnx", rows=8, width=16, layers=1)
    with pytest.raises(SniperError, match="predictor_devices must map"):
        fleet_from_dict(fleet_dict({"m": model}, predictor_devices=["all"]))


def test_a_fleet_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_bytes(b"\x08\xca\x01\x12\x00\xff")
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(path), "--rate", "5"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"sniper-onnx: error: {path}: not UTF-8 text; give a YAML fleet file"


def test_a_workload_that_is_not_utf8_is_one_line(fleet_file, tmp_path):
    path = tmp_path / "lat1.csv"
    path.write_bytes(b"arrival,model\n0.0,m\n0.1,caf\xe9\n")
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet_file), "--workload", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "lat1.csv: not UTF-8 text; give a workload CSV" in lines[0], result.output


@pytest.mark.parametrize("content, message", [(b"", "an empty file"), (b"x", "not an SQLite file")])
def test_fleet_feedback_reads_only_a_database_and_keeps_any_other_file(fleet_file, tmp_path, content, message):
    """fleet-feedback only reads: SQLite would have turned a tiny notes file into an empty database."""
    from sniper_onnx.dispatch.feedback import fleet_samples

    notes = tmp_path / "one.txt"
    notes.write_bytes(content)
    with pytest.raises(SniperError, match=message):
        fleet_samples(notes, load_fleet(fleet_file))
    assert notes.read_bytes() == content
