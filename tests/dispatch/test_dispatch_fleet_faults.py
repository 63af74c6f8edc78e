"""A poison task, a device whose provider cannot load, a warm-up that never ends, SIGTERM, the
warm-up's order and Sniper's correction recovering (tester report, 2026-11-30)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from dispatch_testkit import ScriptedDispatchEngine, fleet_dict, loop_model, matmul_chain
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.dispatch import DispatchTask, Kill, dispatch, fleet_from_dict
from sniper_onnx.errors import SniperError

TWO = [{"name": "d0", "type": "a", "threads": 1}, {"name": "d1", "type": "b", "threads": 1}]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return matmul_chain(tmp_path_factory.mktemp("faults") / "tiny.onnx", rows=4, width=8, layers=1)


def test_a_task_that_hangs_everywhere_fails_and_the_killed_workers_come_back(tmp_path, tiny):
    """It hung on a0, was sent to a1 and hung there too: failed (not sent round the fleet), both
    workers started again, and the tasks after it run."""
    loop = loop_model(tmp_path / "loop.onnx")
    poison = tmp_path / "poison.npz"
    np.savez(poison, x=np.ones((16, 16), np.float32), n=np.array(10**9, np.int64))
    fleet = fleet_from_dict(fleet_dict({"lp": loop, "t": tiny}, devices=[
        {"name": "a0", "type": "t", "threads": 1}, {"name": "a1", "type": "t", "threads": 1}]))
    tasks = [DispatchTask("lp", 0.0, input=str(poison))] + [DispatchTask("t", 0.1 * i) for i in range(1, 4)]
    # after both hangs (3 s each) and, with room to spare on a busy machine, the restarts
    tasks += [DispatchTask("t", 15.0 + 0.1 * i) for i in range(3)]
    report = dispatch(fleet, tasks, "polling", hang_floor_s=3.0, calibration_repeats=1, orphan_timeout_s=60.0)
    poisoned = report.outcomes[0]
    assert poisoned.status == "failed" and "hung on 2 devices (a" in poisoned.error, poisoned
    assert sorted(poisoned.tried) == ["a0", "a1"]
    assert report.counts.completed == len(tasks) - 1 and report.counts.failed == 1
    assert report.counts.devices_restarted == 2 and report.counts.devices_died == 2
    assert all(info["live_at_end"] for info in report.per_device.values())


def test_a_run_with_failed_tasks_exits_1_with_a_one_line_summary(tmp_path, tiny):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps(fleet_dict({"t": tiny}, devices=[TWO[0]])))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 3), np.float32))
    trace = tmp_path / "trace.csv"
    trace.write_text(f"arrival,model,input\n0.0,t,\n0.05,t,{wrong}\n0.1,t,\n")
    tasks = tmp_path / "tasks.jsonl"
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--workload", str(trace), "--json",
                                      "--calibration-repeats", "1", "--tasks-out", str(tasks)])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["measured"]["failed"] == 1 and report["measured"]["deadline_miss_rate_with_failed"] >= 1 / 3
    assert report["per_device"]["d0"]["sent"] == 3 and report["per_device"]["d0"]["failed"] == 1
    assert result.stderr.strip().splitlines()[-1].startswith("sniper-onnx: 1 of 3 task(s) did not complete (1 failed")
    records = [json.loads(line) for line in tasks.read_text().splitlines()]
    done = [r for r in records if r["status"] == "ok"]
    assert all(r["wait"] == pytest.approx(r["start"] - r["arrival"]) and r["response"] >= r["wait"] for r in done)
    assert all(r["tried"] == ["d0"] for r in records)


def test_a_device_whose_provider_cannot_load_is_left_out_with_a_warning(tiny):
    said: list[str] = []
    engine = ScriptedDispatchEngine({"d0": {"t": 0.001}, "d1": {"t": "ProviderUnavailable: --provider "
                                                                     "CUDAExecutionProvider: did not load"}})
    fleet = fleet_from_dict(fleet_dict({"t": tiny}, devices=TWO))
    report = dispatch(fleet, [DispatchTask("t", 0.01 * i) for i in range(20)], "sniper", engine=engine, warn=said.append)
    assert report.counts.completed == 20 and report.counts.devices_left_out == 1
    assert report.per_device["d1"]["sent"] == 0 and report.per_device["d1"]["left_out"]
    assert len(said) == 1 and said[0].startswith("device d1: left out of the run") and "did not load" in said[0]


def test_a_model_that_fails_its_warm_up_everywhere_leaves_the_devices_in(tiny):
    """The model's fault, not the devices' (its tasks' own inputs may run): nothing is left out."""
    engine = ScriptedDispatchEngine({"d0": {"t": "InvalidGraph: bad"}, "d1": {"t": "InvalidGraph: bad"}})
    fleet = fleet_from_dict(fleet_dict({"t": tiny}, devices=TWO))
    report = dispatch(fleet, [DispatchTask("t", 0.0)], "polling", engine=engine)
    assert report.counts.devices_left_out == 0 and report.counts.completed == 1


def test_warm_ups_run_one_at_a_time_over_the_fleet(tiny, tmp_path):
    other = matmul_chain(tmp_path / "other.onnx", rows=4, width=8, layers=2)
    engine = ScriptedDispatchEngine({"d0": {"t": 0.001, "o": 0.002}, "d1": {"t": 0.002, "o": 0.003}})
    fleet = fleet_from_dict(fleet_dict({"t": tiny, "o": other}, devices=TWO))
    report = dispatch(fleet, [DispatchTask("t", 0.0)], "polling", engine=engine)
    assert report.counts.completed == 1
    assert engine.max_calibrating == 1  # timed together on shared cores, they contended


def test_a_warm_up_that_never_ends_names_the_device_and_the_model(tiny):
    engine = ScriptedDispatchEngine({"d0": {}})  # never answers
    fleet = fleet_from_dict(fleet_dict({"fe": tiny}, devices=[TWO[0]]))
    with pytest.raises(SniperError, match=r"device d0: warming up model fe did not finish in 0.15 s \(--hang-timeout"):
        dispatch(fleet, [DispatchTask("fe", 0.0)], "polling", engine=engine, hang_floor_s=0.05,
                 calibration_repeats=1, ready_timeout_s=30.0)


def test_sniper_comes_back_to_a_fast_device_after_one_slow_outlier(tiny):
    """Its correction learns only from the devices it picks: one run at 3x on the fast device kept
    every later task on the slow one. Runs elsewhere now fade that correction toward the prediction."""
    def seconds(device: str, model: str, n: int) -> float:
        if device == "d0":
            return 0.003 if n == 1 else 0.001
        return 0.002

    engine = ScriptedDispatchEngine({"d0": {"t": 0.001}, "d1": {"t": 0.002}}, run_seconds=seconds)
    fleet = fleet_from_dict(fleet_dict({"t": tiny}, devices=TWO))
    report = dispatch(fleet, [DispatchTask("t", 0.02 * i) for i in range(40)], "sniper", engine=engine)
    assert report.counts.completed == 40
    assert report.per_device["d0"]["tasks"] >= 25, report.per_device


def test_the_correction_fades_only_where_asked():
    from sniper_onnx.scheduling.timesource import FeedbackTimes
    from sniper_onnx.scheduling.workload import Task

    for decay, expect_back in ((1.0, False), (0.9, True)):
        source = FeedbackTimes(np.array([[0.001, 0.002]]), np.array([0, 1]))
        source.stale_decay = decay
        source.observe(Task(0, 0, 0.0, 1.0), 0, 0.003)
        for _ in range(10):
            source.observe(Task(0, 0, 0.0, 1.0), 1, 0.002)
        fast = source.estimates(Task(0, 0, 0.0, 1.0))[0]
        assert (fast < 0.002) == expect_back, (decay, fast)


def test_a_kill_that_never_fires_is_said(tiny):
    engine = ScriptedDispatchEngine({"d0": {"t": 0.001}})
    fleet = fleet_from_dict(fleet_dict({"t": tiny}, devices=[TWO[0]]))
    report = dispatch(fleet, [DispatchTask("t", 0.0)], "polling", engine=engine, kills=[Kill("d0", 100.0)])
    assert any(line.startswith("--kill d0@100 never fired") for line in report.warnings)


def _terminate_after_first(real):
    def wrapped(*args, progress=None, **kwargs):
        def hook(done: int, total: int) -> None:
            if done >= 1:
                os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, progress=hook, **kwargs)
    return wrapped


def test_sigterm_on_the_cli_keeps_the_records_and_removes_the_scratch_copies(tmp_path, tiny, monkeypatch):
    import sniper_onnx.dispatch as package

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(package, "dispatch", _terminate_after_first(package.dispatch))
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps(fleet_dict({"t": tiny}, devices=[TWO[0]])))
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival,model\n0.0,t\n30.0,t\n")
    tasks = tmp_path / "tasks.jsonl"
    before = signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--workload", str(trace), "--json",
                                      "--calibration-repeats", "1", "--tasks-out", str(tasks)])
    assert result.exit_code == 143, result.output
    assert result.stderr.strip().startswith("sniper-onnx: terminated (SIGTERM); 1 finished task(s) of 2 written")
    assert [json.loads(line)["status"] for line in tasks.read_text().splitlines()] == ["ok", "pending"]
    assert not list(scratch.glob("sniper-dispatch-*"))
    assert signal.getsignal(signal.SIGTERM) == before


def test_sigterm_stops_the_profiling_farm_without_leaving_its_scratch_folder(tmp_path, tiny, monkeypatch):
    from sniper_onnx.database.collect import file_jobs
    from sniper_onnx.dispatch.profiling import profile_fleet
    from sniper_profiler.config import ProfileConfig

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    fleet = fleet_from_dict(fleet_dict({"t": tiny}, devices=[TWO[0]]))
    nets = [matmul_chain(tmp_path / f"n{i}.onnx", rows=4, width=8, layers=i + 1) for i in range(3)]

    def hook(*_args) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(KeyboardInterrupt):
        profile_fleet(fleet, file_jobs([str(n) for n in nets]), tmp_path / "farm.sqlite",
                      ProfileConfig(min_repeats=1, max_repeats=1, warmup=0, min_time_s=0), progress=hook)
    assert not list(scratch.glob("sniper-farm-*"))


def test_worker_output_goes_to_stderr_so_json_stays_one_object():
    """onnxruntime prints its EP Error banner on stdout in the worker process."""
    code = ("import sniper_profiler.agent as agent\n"
            "agent.serve_pipe = lambda settings, connection: print('*** EP Error ***')\n"
            "from sniper_onnx.dispatch.engines import serve_quietly\n"
            "serve_quietly(None, None)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and "EP Error" in done.stderr


def test_dispatch_takes_an_idle_factor_as_simulate_does(tiny, tmp_path):
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps(fleet_dict({"t": tiny}, devices=[TWO[0]])))
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--rate", "5", "--duration", "0.5",
                                      "--idle-factor", "0.5"])
    assert result.exit_code == 2 and "idle factor 0.5" in result.stderr
