"""Real dispatch on local worker processes: end to end, faults, joins, failing models, the DB."""

from __future__ import annotations

import json

import pytest
from dispatch_testkit import broken_reshape, fleet_dict, matmul_chain
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.dispatch import DispatchTask, Kill, dispatch, fleet_from_dict, write_workload
from sniper_profiler.config import ProfileConfig


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dispatch-models")
    return {"chain": matmul_chain(folder / "chain.onnx"), "small": matmul_chain(folder / "small.onnx", rows=32, layers=2),
            "mid": matmul_chain(folder / "mid.onnx", rows=64, width=128, layers=4),
            "big": matmul_chain(folder / "big.onnx", rows=512, width=512, layers=3)}


QUICK = ProfileConfig(min_repeats=3, max_repeats=3, warmup=1, min_time_s=0)  # the farm's measurements, kept short


def burst(count: int, spacing: float, names=("chain", "small")) -> list[DispatchTask]:
    return [DispatchTask(names[i % len(names)], arrival=i * spacing) for i in range(count)]


def assert_exactly_once(report, count: int) -> None:
    assert report.counts.lost == 0
    assert report.counts.duplicated == 0
    assert report.counts.completed + report.counts.failed == count
    assert all(outcome.status in ("ok", "failed") for outcome in report.outcomes)
    assert sorted(outcome.index for outcome in report.outcomes) == list(range(count))


@pytest.fixture(scope="module")
def cli_run(models, tmp_path_factory):
    """One CLI run with a database and predictor-mapped device types, shared by two tests."""
    folder = tmp_path_factory.mktemp("dispatch-cli")
    fleet = folder / "fleet.yaml"
    small_models = {name: models[name] for name in ("chain", "small", "mid")}
    fleet.write_text(json.dumps(fleet_dict(small_models, predictor_devices={"all": "silver_4210r", "off": "silver_4114"})))
    trace = folder / "trace.csv"
    write_workload(burst(24, 0.01, names=("chain", "small", "mid")), trace)
    db = folder / "ncd.sqlite"
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--workload", str(trace),
                                      "--policy", "sniper", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), db, fleet


def test_cli_runs_a_workload_and_stores_every_time(cli_run):
    report, db, _ = cli_run
    assert report["counts"]["completed"] == 24 and report["counts"]["lost"] == 0
    for key in ("tps", "awt", "p95_wait", "p99_wait", "deadline_miss_rate"):
        assert key in report["measured"] and key in report["simulated"] and key in report["gap"]
    assert report["simulated"]["tasks"] == 24
    assert set(report["calibration"]) == {"chain", "small", "mid"}
    assert report["predicted_source"] == "predictor"
    assert report["predicted"] != report["calibration"]
    assert sum(info["tasks"] for info in report["per_device"].values()) == 24
    assert report["overhead_us"]["median"] > 0

    from sniper_onnx.database import Database

    with Database(db) as store:
        rows = store.measurements()
    tasks = [row for row in rows if row.source == "dispatch"]
    assert len(tasks) == 24  # one per completed task, nothing lost
    assert report["measurements_written"] == len(rows)
    assert {row.device_id for row in tasks} <= {"fleet:test:all", "fleet:test:off"}


def test_time_trimmer_on_fleet_measurements_reports_error_before_and_after(cli_run, tmp_path):
    _, db, fleet = cli_run
    out = tmp_path / "pcn.onnx"
    result = CliRunner().invoke(app, ["fleet-feedback", "--fleet", str(fleet), "--db", str(db), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {t["device_type"] for t in report["types"]} == {"all", "off"}
    for item in report["types"]:
        assert item["networks"] == 3
        assert item["mape_after"] < item["mape_before"]
    assert out.is_file()


@pytest.fixture(scope="module")
def kernel_sum_run(models, tmp_path_factory):
    """A fleet mapped, by parts of names as `predict -d` takes them, to devices the shipped predictor
    answers by the kernel sum (not the first shipped predictor)."""
    folder = tmp_path_factory.mktemp("dispatch-kernels")
    fleet = folder / "fleet.yaml"
    small_models = {name: models[name] for name in ("chain", "small", "mid")}
    fleet.write_text(json.dumps(fleet_dict(small_models, predictor_devices={"all": "t1 opt-all",
                                                                             "off": "t1 opt-disabled"})))
    trace = folder / "trace.csv"
    write_workload(burst(3, 0.0, names=("chain", "small", "mid")), trace)
    db = folder / "ncd.sqlite"
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--workload", str(trace), "--db", str(db),
                                      "--calibration-repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), db, fleet


def test_dispatch_resolves_parts_of_predictor_device_names(kernel_sum_run):
    report, _, _ = kernel_sum_run
    assert report["predicted_source"] == "predictor"
    assert report["predicted"] != report["calibration"]


@pytest.mark.parametrize("explicit", [False, True])
def test_fleet_feedback_corrects_the_predictor_dispatch_used_on_its_kernel_sum(kernel_sum_run, tmp_path, explicit):
    from sniper_onnx.predictors.runtime import shipped_predictor_paths

    _, db, fleet = kernel_sum_run
    out = tmp_path / "pcn.onnx"
    reference = [str(p) for p in shipped_predictor_paths() if p.name == "pcn_reference.onnx"]
    result = CliRunner().invoke(app, ["fleet-feedback", "--fleet", str(fleet), "--db", str(db), "-o", str(out),
                                      "--json", *(["--predictor", *reference] if explicit else [])])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["predictor"].endswith("pcn_reference.onnx")
    assert {t["predictor_device"] for t in report["types"]} == {"AMD EPYC | cpu fp32 t1 opt-all",
                                                                 "AMD EPYC | cpu fp32 t1 opt-disabled"}
    # (whether 3 noisy dispatch times lower the error is up to the timing, not to this code)
    assert all(t["networks"] == 3 and t["mape_after"] >= 0 for t in report["types"])
    from sniper_onnx.predictors import load_predictor

    corrections = load_predictor(str(out)).meta["corrections"]
    assert sorted((c["device"], c["kind"], len(c["measurements"])) for c in corrections) == [
        ("AMD EPYC | cpu fp32 t1 opt-all", "feedback", 3), ("AMD EPYC | cpu fp32 t1 opt-disabled", "feedback", 3)]


def test_fleet_feedback_refuses_a_missing_database(kernel_sum_run, tmp_path):
    _, _, fleet = kernel_sum_run
    missing = tmp_path / "nodb.sqlite"
    result = CliRunner().invoke(app, ["fleet-feedback", "--fleet", str(fleet), "--db", str(missing),
                                      "-o", str(tmp_path / "out.onnx")])
    assert result.exit_code == 2 and "no such database" in result.output
    assert not missing.exists()


def test_sigkilled_device_loses_nothing_and_runs_nothing_twice(models):
    fleet = fleet_from_dict(fleet_dict(models))
    tasks = burst(16, 0.005, names=("big",))  # tens of ms each: the kill lands mid-task
    report = dispatch(fleet, tasks, "polling", kills=[Kill("slow-0", 0.05)])
    assert_exactly_once(report, 16)
    assert report.counts.completed == 16
    assert report.counts.devices_died == 1
    assert report.counts.redispatched >= 1  # the task it was running went elsewhere
    assert report.counts.sent == 16 + report.counts.redispatched
    # everything after the death ran on the survivor
    assert report.per_device["fast-0"]["tasks"] + report.per_device["slow-0"]["tasks"] == 16
    assert any("slow-0 died" in line for line in report.failures)


def test_a_joining_device_is_used_and_a_failing_model_stops_nothing(models, tmp_path):
    broken = broken_reshape(tmp_path / "broken.onnx")
    fleet = fleet_from_dict(fleet_dict({**models, "broken": broken}, devices=[
        {"name": "fast-0", "type": "all", "threads": 1, "opt_level": "all"},
        {"name": "late-0", "type": "off", "threads": 1, "opt_level": "disabled", "join_at": 0.2},
    ]))
    tasks = burst(60, 0.05, names=("chain", "small", "broken"))
    report = dispatch(fleet, tasks, "sniper")
    assert_exactly_once(report, 60)
    assert report.counts.failed == 20 and report.counts.completed == 40
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert {o.model for o in failed} == {"broken"} and all("Reshape" in o.error or "shape" in o.error.lower() for o in failed)
    assert report.counts.devices_joined == 1
    assert report.per_device["late-0"]["tasks"] > 0


def test_policies_the_real_world_cannot_run_are_refused(models):
    fleet = fleet_from_dict(fleet_dict(models))
    from sniper_onnx.errors import SniperError

    with pytest.raises(SniperError, match="only the simulator"):
        dispatch(fleet, burst(2, 0.0), "mct-oracle")


def test_profiling_farm_spreads_nets_over_the_fleet(models, tmp_path):
    from sniper_onnx.database import Database
    from sniper_onnx.database.collect import file_jobs
    from sniper_onnx.dispatch.profiling import profile_fleet

    broken = broken_reshape(tmp_path / "broken.onnx")
    fleet = fleet_from_dict(fleet_dict(models, devices=[
        {"name": "a-0", "type": "all", "threads": 1, "opt_level": "all"},
        {"name": "a-1", "type": "all", "threads": 1, "opt_level": "all"},
        {"name": "off-0", "type": "off", "threads": 1, "opt_level": "disabled"},
    ]))
    jobs = file_jobs([str(models["chain"]), str(models["small"]), str(broken)])
    summary = profile_fleet(fleet, jobs, tmp_path / "farm.sqlite", QUICK)
    assert summary.measured == 4 and summary.failed == 2  # 2 good nets x 2 types; the broken one fails on both
    assert summary.per_device.get("a-0", 0) + summary.per_device.get("a-1", 0) == 2
    with Database(tmp_path / "farm.sqlite") as db:
        rows = [row for row in db.measurements() if row.source == "fleet-profile"]
        assert len(rows) == 4 == summary.stored
        assert {row.device_id for row in rows} == {"fleet:test:all", "fleet:test:off"}


def test_a_hung_device_is_killed_and_its_task_runs_elsewhere_once(models):
    """SIGSTOP leaves the worker alive but silent: only the hang watchdog can free its task."""
    import multiprocessing
    import os
    import signal

    fleet = fleet_from_dict(fleet_dict(models))
    stopped: list[int] = []

    def stop_slow_device(finished: int, total: int) -> None:
        if finished >= 2 and not stopped:
            for process in multiprocessing.active_children():
                if process.name == "sniper-agent-slow-0":
                    os.kill(process.pid, signal.SIGSTOP)
                    stopped.append(process.pid)

    report = dispatch(fleet, burst(16, 0.005, names=("big",)), "polling", hang_floor_s=1.0, progress=stop_slow_device)
    assert stopped, "the slow device's worker was never found"
    assert_exactly_once(report, 16)
    assert report.counts.completed == 16
    assert report.counts.devices_died == 1
    assert any("slow-0 died: hung" in line for line in report.failures)


def test_tasks_arriving_together_start_in_the_simulators_order(models):
    """One idle device, three tasks at t=0, EDF: the first arrival starts at once (the device is
    idle when it arrives), then the earliest deadline of the other two, as the simulator does."""
    from sniper_onnx.scheduling.platform import platform_from_dict
    from sniper_onnx.scheduling.simulator import simulate
    from sniper_onnx.scheduling.workload import Task

    fleet = fleet_from_dict(fleet_dict({"small": models["small"]},
                                       devices=[{"name": "d0", "type": "t", "threads": 1}]))
    deadlines = [10.0, 0.5, 0.4]
    report = dispatch(fleet, [DispatchTask("small", 0.0, deadline=d) for d in deadlines], "edf",
                      calibration_repeats=1)
    real_order = sorted(range(3), key=lambda i: report.outcomes[i].start)
    platform = platform_from_dict({"devices": {"t": 1}, "true_times": {"small": {"t": 0.01}}})
    schedule = simulate(platform, "edf", [Task(i, 0, 0.0, d) for i, d in enumerate(deadlines)]).schedule
    assert real_order == sorted(range(3), key=lambda i: schedule.start[i]) == [0, 2, 1]


def test_a_run_where_no_task_completes_fails_and_keeps_its_report(tmp_path, models):
    import numpy as np

    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps(fleet_dict({"small": models["small"]}, devices=[{"name": "a", "type": "t"}])))
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 3), np.float32))  # the model takes 32 x 256: every task fails on the device
    trace = tmp_path / "trace.csv"
    trace.write_text(f"arrival,model,input\n0.0,small,{wrong}\n0.0,small,{wrong}\n")
    tasks = tmp_path / "tasks.jsonl"
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--workload", str(trace), "--json",
                                      "--calibration-repeats", "1", "--tasks-out", str(tasks)])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["counts"]["failed"] == 2
    assert len(tasks.read_text().splitlines()) == 2
    assert "no task completed (2 failed)" in result.stderr and "small on a" in result.stderr


def test_profiling_farm_holds_only_the_nets_in_flight(models, tmp_path):
    """Nets are built as devices need them and dropped when measured: never all of them at once."""
    import onnx

    from sniper_onnx.database.collect import CollectJob
    from sniper_onnx.dispatch.profiling import profile_fleet

    finished: list[int] = [0]
    built_when: list[int] = []  # pairs measured when each net was built

    def make(index: int):
        built_when.append(finished[0])
        return onnx.load(str(matmul_chain(tmp_path / f"n{index}.onnx", rows=index + 1, width=8)))

    jobs = [CollectJob(f"n{i}", None, {"kind": "test"}, make=lambda i=i: make(i)) for i in range(6)]
    fleet = fleet_from_dict(fleet_dict(models, devices=[{"name": "a-0", "type": "all", "threads": 1}]))
    summary = profile_fleet(fleet, jobs, tmp_path / "farm.sqlite", QUICK, in_flight=2,
                            progress=lambda done, total: finished.__setitem__(0, done))
    assert summary.measured == 6
    assert all(done >= index - 2 for index, done in enumerate(built_when)), built_when


def test_calibration_medians_are_stored_with_the_runs_they_took(models, tmp_path):
    from sniper_onnx.database import Database

    fleet = fleet_from_dict(fleet_dict({"small": models["small"]}, devices=[{"name": "d0", "type": "t", "threads": 1}]))
    report = dispatch(fleet, burst(2, 0.0, names=("small",)), "polling", db=tmp_path / "ncd.sqlite",
                      calibration_repeats=4)
    assert report.counts.completed == 2 and not report.failures
    with Database(tmp_path / "ncd.sqlite") as store:
        counts = sorted((row.source, row.stats["count"]) for row in store.measurements())
    assert counts == [("dispatch", 1), ("dispatch", 1), ("dispatch-calibration", 4)]


def test_ctrl_c_mid_run_stores_every_time_measured_and_says_how_many(models, tmp_path):
    from sniper_onnx.database import Database
    from sniper_onnx.dispatch import DispatchInterrupted

    def ctrl_c(done: int, total: int) -> None:
        if done >= 3:
            raise KeyboardInterrupt

    fleet = fleet_from_dict(fleet_dict({"small": models["small"]}, devices=[{"name": "d0", "type": "t", "threads": 1}]))
    with pytest.raises(DispatchInterrupted) as stop:
        dispatch(fleet, burst(40, 0.05, names=("small",)), "polling", db=tmp_path / "ncd.sqlite",
                 calibration_repeats=1, progress=ctrl_c)
    finished = [o for o in stop.value.outcomes if o.status == "ok"]
    assert len(finished) >= 3 and any(o.status == "pending" for o in stop.value.outcomes)
    with Database(tmp_path / "ncd.sqlite") as store:
        rows = store.measurements()
    assert stop.value.stored == len(rows) == len(finished) + 1  # every finished task and the calibration


def test_ctrl_c_on_the_cli_writes_the_outcomes_so_far_and_says_a_rerun_starts_over(models, tmp_path, monkeypatch):
    import sniper_onnx.dispatch as dispatch_module
    from sniper_onnx.dispatch import DispatchInterrupted, TaskOutcome

    def interrupted(*args, **kwargs):
        outcomes = [TaskOutcome(0, "small", 0.0, 1.0, status="ok", seconds=0.01), TaskOutcome(1, "small", 0.1, 1.1)]
        raise DispatchInterrupted(outcomes, 2, str(tmp_path / "ncd.sqlite"))

    monkeypatch.setattr(dispatch_module, "dispatch", interrupted)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(json.dumps(fleet_dict({"small": models["small"]})))
    trace = tmp_path / "trace.csv"
    write_workload(burst(2, 0.1, names=("small",)), trace)
    tasks = tmp_path / "tasks.jsonl"
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--workload", str(trace), "--json",
                                      "--db", str(tmp_path / "ncd.sqlite"), "--tasks-out", str(tasks)])
    assert result.exit_code == 130
    assert [json.loads(line)["status"] for line in tasks.read_text().splitlines()] == ["ok", "pending"]
    assert result.stderr.strip() == (
        f"sniper-onnx: interrupted; 2 measured time(s) stored in {tmp_path / 'ncd.sqlite'}; 1 finished task(s) of 2 "
        f"written to {tasks} (the rest 'pending'); no report; dispatch does not resume: running it again starts a new run")


def test_a_model_with_external_data_runs_with_its_weights(tmp_path):
    """The agents read a scratch copy of the model: its data file, beside the original, used to be
    left behind and onnxruntime refused every task."""
    import onnx

    from sniper_onnx.dispatch.fleet import self_contained_bytes
    from sniper_onnx.errors import SniperError

    model = onnx.load(str(matmul_chain(tmp_path / "chain.onnx")))
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=0)
    assert (tmp_path / "ext.data").stat().st_size > 3 * 256 * 256 * 4 - 1
    report = dispatch(fleet_from_dict(fleet_dict({"ext": tmp_path / "ext.onnx"})), burst(2, 0.0, names=("ext",)), "polling")
    assert report.counts.completed == 2, report.failures
    whole = onnx.load_model_from_string(self_contained_bytes(tmp_path / "ext.onnx"))
    original = onnx.load(str(tmp_path / "chain.onnx"))
    assert [onnx.numpy_helper.to_array(t).tolist() for t in whole.graph.initializer] == \
        [onnx.numpy_helper.to_array(t).tolist() for t in original.graph.initializer]
    (tmp_path / "ext.data").unlink()
    with pytest.raises(SniperError, match=r"ext.onnx: its external data cannot be read .*copy the data file"):
        self_contained_bytes(tmp_path / "ext.onnx")
