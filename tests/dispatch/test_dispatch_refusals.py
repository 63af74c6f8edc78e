"""What dispatch refuses before its clock starts, in one line (all since 2026-11-30): a fleet model
file that is not an ONNX model, a --hang-timeout that would switch the watchdog off, a folder
given as the fleet file; and failures of a model onnxruntime cannot load name the user's file."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from dispatch_testkit import fleet_dict, matmul_chain
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.dispatch import DispatchTask, dispatch, fleet_from_dict, load_fleet
from sniper_onnx.errors import SniperError


class NoEngine:
    """Any start means the run began before its models were checked."""

    name = "embedded"

    def start(self, device) -> None:
        raise AssertionError(f"{device.name} started before the fleet's model files were checked")

    def close(self) -> None:
        pass


def _write_bad(path: Path, kind: str) -> Path:
    if kind == "text":
        path.write_text("hello, this is not a model\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:  # truncated: the first bytes of a real model
        good = matmul_chain(path.with_name("whole.onnx"), rows=4, width=8, layers=1).read_bytes()
        path.write_bytes(good[:300])
    return path


def _two_model_fleet(tmp_path: Path, kind: str) -> Path:
    bad = _write_bad(tmp_path / "text.onnx", kind)
    good = matmul_chain(tmp_path / "conv.onnx", rows=4, width=8, layers=1)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps(fleet_dict({"a": bad, "b": good})))
    return fleet


@pytest.mark.parametrize("kind, says", [("text", "not a readable ONNX model"), ("empty", "empty file"),
                                        ("truncated", "not a readable ONNX model")])
def test_a_model_file_that_is_not_onnx_stops_dispatch_before_any_device_starts(tmp_path, kind, says):
    fleet = load_fleet(_two_model_fleet(tmp_path, kind))
    tasks = [DispatchTask("a", arrival=0.0), DispatchTask("b", arrival=0.0)]
    with pytest.raises(SniperError) as raised:
        dispatch(fleet, tasks, "polling", engine=NoEngine())
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'fleet.yaml'}: models.a: {tmp_path / 'text.onnx'}: "), message
    assert says in message and "sniper-dispatch-" not in message


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path):
    fleet = _two_model_fleet(tmp_path, "text")
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--rate", "20", "--duration", "2"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sniper-onnx: error: {fleet}: models.a: {tmp_path / 'text.onnx'}: ")
    assert "completed" not in result.output  # no run, no report


def test_a_model_file_emptied_after_the_fleet_was_loaded_is_caught_too(tmp_path):
    good = matmul_chain(tmp_path / "m.onnx", rows=4, width=8, layers=1)
    fleet = fleet_from_dict(fleet_dict({"m": good}))
    good.write_bytes(b"")
    with pytest.raises(SniperError, match=r"models\.m: .*m\.onnx: empty file"):
        dispatch(fleet, [DispatchTask("m")], engine=NoEngine())


def test_a_model_file_that_is_a_folder_is_said_so(tmp_path):
    (tmp_path / "m.onnx").mkdir()
    with pytest.raises(SniperError, match=r"models\.m: .*m\.onnx is a directory; give the \.onnx file inside it"):
        fleet_from_dict(fleet_dict({"m": tmp_path / "m.onnx"}))


def test_a_model_onnxruntime_cannot_load_names_the_users_file_not_the_temporary_copy(tmp_path):
    """Valid ONNX, so it passes the check; onnxruntime refuses it (an op it does not know) on the
    device, and that is each of its tasks' failure, as for any model that fails on a device."""
    model = onnx.load(str(matmul_chain(tmp_path / "m.onnx", rows=4, width=8, layers=1)))
    model.graph.node[0].op_type = "NoSuchOp"
    unknown = tmp_path / "unknown-op.onnx"
    onnx.save(model, str(unknown))
    fleet = fleet_from_dict(fleet_dict({"u": unknown}, devices=[{"name": "d0", "type": "t", "threads": 1}]))
    report = dispatch(fleet, [DispatchTask("u", arrival=0.0)], "polling", calibration_repeats=1)
    failed = report.outcomes[0]
    assert failed.status == "failed" and "NoSuchOp" in failed.error, failed
    assert str(unknown) in failed.error and "sniper-dispatch-" not in failed.error
    assert all("sniper-dispatch-" not in line for line in report.failures), report.failures


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-5"])
def test_a_hang_timeout_that_would_switch_the_watchdog_off_is_refused(tmp_path, value):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps(fleet_dict({"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8, layers=1)})))
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--rate", "5", "--duration", "0.5",
                                      f"--hang-timeout={value}"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sniper-onnx: error: --hang-timeout {float(value)}: give a finite")


def test_the_python_api_refuses_it_too(tmp_path):
    fleet = fleet_from_dict(fleet_dict({"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8, layers=1)}))
    with pytest.raises(SniperError, match="--hang-timeout nan"):
        dispatch(fleet, [DispatchTask("m")], hang_floor_s=float("nan"), engine=NoEngine())


def test_a_folder_given_as_the_fleet_file_is_said_so_with_the_yaml_files_in_it(tmp_path):
    (tmp_path / "fleet.yaml").write_text("{}")
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(tmp_path), "--rate", "5"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (f"sniper-onnx: error: {tmp_path}: is a directory, not a fleet file; "
                                     f"give the fleet YAML file, e.g. one of {tmp_path / 'fleet.yaml'}")


def test_a_folder_with_no_yaml_in_it_points_at_the_example(tmp_path):
    with pytest.raises(SniperError, match=r"is a directory, not a fleet file; give the fleet YAML file \(see examples"):
        load_fleet(tmp_path)


UNGUARDED = {
    "dispatch": ("from sniper_onnx.dispatch import DispatchTask, dispatch, load_fleet\n"
                 "dispatch(load_fleet({fleet!r}), [DispatchTask('m', arrival=0.0)], policy='polling')\n"),
    "profile_fleet": ("from sniper_onnx.database.collect import file_jobs\n"
                      "from sniper_onnx.dispatch import load_fleet\n"
                      "from sniper_onnx.dispatch.profiling import profile_fleet\n"
                      "profile_fleet(load_fleet({fleet!r}), file_jobs([{model!r}]), {db!r})\n"),
}


@pytest.mark.parametrize("api", sorted(UNGUARDED))
def test_a_script_without_a_main_guard_gets_one_clear_error_at_once(tmp_path, api):
    """Spawn runs the script again in each worker; that used to wait 30 s for devices that never
    came, then fail every task with 'no live device for 30 s' (and a RuntimeError per worker)."""
    import subprocess
    import sys

    model = matmul_chain(tmp_path / "m.onnx", rows=4, width=8, layers=1)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps(fleet_dict({"m": model})))
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED[api].format(fleet=str(fleet), model=str(model), db=str(tmp_path / "farm.sqlite")))
    # well inside the 30 s the dispatcher waited for a device before the fix
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=25, cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.count(f"the script that calls {api}() has no 'if __name__ == \"__main__\":' guard") == 1
    assert "RuntimeError" not in done.stderr and "no live device" not in done.stderr, done.stderr
