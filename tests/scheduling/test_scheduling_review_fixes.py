"""Findings of the scheduling review (2026-11-30): each test fails without its fix."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest
import yaml

from scheduling_testkit import assert_one_line_error, run

from sniper_onnx.cli.simulate_cmd import time_cell, time_unit
from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling import (
    Task, load_platform, make_policy, platform_from_dict, run_sweep, simulate, simulate_platform,
)
from sniper_onnx.scheduling.experiment import Spread
from sniper_onnx.scheduling.state import DispatchState




# --- 1. YAML floats written without a dot ----------------------------------------------------
def test_yaml_times_in_exponent_form_are_numbers(tmp_path):
    path = tmp_path / "sci.yaml"
    path.write_text("devices: {GPU: 1, CPU: 2}\ntrue_times: {resnet: {GPU: 2e-3, CPU: 5E-2}}\n"
                    "predicted_times: {resnet: {GPU: 1e300, CPU: +5e-1}}\n")
    platform = load_platform(path)
    assert platform.true_times.tolist() == [[0.002, 0.05]]
    assert platform.predicted_times.tolist() == [[1e300, 0.5]]
    result = run("--platform", str(path), "--rates", "10", "--seeds", "1", "--duration", "2", "--json")
    assert result.exit_code == 0, result.output


def test_yaml_float_rule_is_scoped_to_our_loader():
    assert yaml.safe_load("v: 2e-3")["v"] == "2e-3"  # PyYAML's own loader is left as it was


# --- 2. unknown keys and stray names in a platform -------------------------------------------
@pytest.mark.parametrize(("text", "fragments"), [
    ("devices: {A: 1}\ntrue_times: {M: {A: 1}}\npredicted_time: {M: {A: 100}}\n",
     ("unknown key(s) 'predicted_time'", "predicted_times", "predictor_devices")),
    ("devices: {A: 1}\ntrue_times: {M: {A: 1}}\nfoo: 3\n", ("unknown key(s) 'foo'",)),
    ("devices: {A: 1}\ntrue_times: {M: {A: 1, B: 2}}\n", ("true_times['M']", "device type(s) B", "'devices' lacks")),
    ("devices: {A: 1}\ntrue_times: {M: {A: 1}}\npredicted_times: {M: {A: 1}, N: {A: 2}}\n",
     ("predicted_times has model(s) N", "true_times lacks")),
    ("devices: {A: 1}\ntrue_times: {M: {A: 1}}\npredicted_times: {}\n",
     ("'predicted_times' is {}", "drop the key to use the true times")),
])
def test_platform_keys_that_would_be_ignored_are_refused(tmp_path, text, fragments):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    assert_one_line_error(run("--platform", str(path), "--rates", "0.5", "--seeds", "1"), *fragments)


def test_the_shipped_platform_still_loads():
    assert load_platform("paper").num_devices == 10
    assert platform_from_dict(load_platform("paper").to_json_dict()).models == load_platform("paper").models


# --- 3. sweeps of user-written policies ------------------------------------------------------
@dataclass
class FirstDevice:
    name: str = "first"
    time_source: str = "none"
    calls: int = 0

    def on_arrival(self, task, view):
        self.calls += 1
        return 0

    def queue_key(self, task, device, view):
        return task.arrival


def test_run_sweep_takes_policy_objects():
    policy = FirstDevice()
    sweep = run_sweep(load_platform("paper"), [policy, "edf"], [5], [0, 1], duration=4)
    assert sweep.policies == ("first", "edf")
    assert sweep.row("first", 5).runs[0].utilization[1:] == (0.0,) * 9
    assert policy.calls == 0  # every run got its own copy, so each starts from the same state


def test_simulate_platform_takes_objects_and_a_bare_name():
    report = simulate_platform(policies=[FirstDevice()], rates=[5], seeds=1, duration=4)
    assert report.sweep.policies == ("first",)
    report = simulate_platform(policies="sniper", rates=[5], seeds=1, duration=4)
    assert report.sweep.policies == ("sniper",)


def test_two_policies_under_one_name_are_refused():
    with pytest.raises(SniperError, match="given to two different policies"):
        run_sweep(load_platform("paper"), [FirstDevice(), FirstDevice()], [5], [0], duration=2)
    with pytest.raises(SniperError, match="Policy protocol"):
        run_sweep(load_platform("paper"), [3], [5], [0], duration=2)


# --- 4. MVSP's measurement runs spread over idle devices --------------------------------------
def test_mvsp_measurement_runs_go_to_idle_devices():
    platform = platform_from_dict({"devices": {"A": 4}, "true_times": {m: {"A": 1.0} for m in "WXYZ"}}, source="p")
    for arrivals in ((0.0, 0.0, 0.0, 0.0), (0.0, 0.1, 0.2, 0.3)):
        result = simulate(platform, "mvsp", [Task(i, i, a, 100.0) for i, a in enumerate(arrivals)])
        assert sorted(device for device, *_ in result.schedule.probes) == [0, 1, 2, 3]
        assert result.metrics.awt == pytest.approx(1.0)  # each model waits for its own 1 s run only


# --- 5. the view keeps the work queued behind an overrunning job ------------------------------
def overrun_platform():
    return platform_from_dict({"devices": {"F": 1, "S": 1}, "true_times": {"A": {"F": 8.0, "S": 3.0}},
                               "predicted_times": {"A": {"F": 1.0, "S": 3.0}}}, source="q")


def test_free_at_keeps_queued_work_behind_an_overdue_job():
    state = DispatchState(overrun_platform(), make_policy("mct-pred"))
    for i, arrival in enumerate((0.0, 0.1, 0.2)):
        state.now = arrival
        assert state.submit(Task(i, 0, arrival, 100.0)) == 0
        if i == 0:
            state.start_next(0)
    state.now = 5.0  # F's job was predicted to end at 1 and still runs; 2 s of predictions queued
    assert state.overdue(0) and not state.overdue(1)
    state.refresh()
    assert state.free_at[0] == pytest.approx(5.0 + 2.0)


def test_mct_pred_does_not_queue_a_task_on_an_overdue_device_it_believes_free():
    arrivals = (0.0, 0.1, 0.2, 0.3, 5.0, 5.0)
    result = simulate(overrun_platform(), "mct-pred", [Task(i, 0, a, 100.0) for i, a in enumerate(arrivals)])
    # task 4 at 5: F 5+2+1 = 8 ties S 5+3 = 8 -> F (lowest index); task 5: F 9 > S 8 -> S
    assert int(result.schedule.device[5]) == 1


# --- 6. the response column and the per-task schedule -----------------------------------------
def test_table_has_a_response_column():
    result = run("--rates", "20", "--seeds", "1", "--duration", "4", "--policies", "edf")
    assert result.exit_code == 0, result.output
    assert "response" in result.output and "response = mean arrival to end" in result.output


def test_schedule_csv(tmp_path):
    path = tmp_path / "s.csv"
    result = run("--rates", "5", "--seeds", "2", "--duration", "3", "--policies", "edf,sniper",
                 "--schedule", str(path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schedule"] == str(path)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["policy", "rate", "seed", "task", "model", "device", "arrival", "start", "end",
                             "deadline"]
    tasks = sum(run["tasks"] for row in data["rows"] for run in row["runs"])
    assert len(rows) == tasks and {r["policy"] for r in rows} == {"edf", "sniper"} and {r["seed"] for r in rows} == {
        "0", "1"}
    for r in rows:
        assert float(r["arrival"]) <= float(r["start"]) < float(r["end"])
        assert r["device"] in load_platform("paper").device_names() and r["model"] in load_platform("paper").models


def test_schedule_of_a_trace(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("arrival,model,deadline\n0.0,VGG16,5\n0.1,VGG16,5\n")
    path = tmp_path / "s.csv"
    assert run("--trace", str(trace), "--policies", "edf", "--schedule", str(path)).exit_code == 0
    rows = list(csv.DictReader(path.open()))
    assert [(r["rate"], r["task"], r["deadline"]) for r in rows] == [("", "0", "5.0"), ("", "1", "5.0")]


def test_schedule_into_a_directory_or_missing_folder_is_one_line(tmp_path):
    assert_one_line_error(run("--rates", "5", "--seeds", "1", "--schedule", str(tmp_path)), "is a directory")
    assert_one_line_error(run("--rates", "5", "--seeds", "1", "--schedule", str(tmp_path / "no" / "s.csv")),
                          "does not exist")


# --- 8. number display ------------------------------------------------------------------------
def test_a_zero_median_prints_zero():
    assert time_cell(Spread(0.0, 0.0, 0.0584), 1.0, 3) == "0\u00b10.0292"
    assert time_cell(Spread(0.0, 0.0, 0.0), 1.0, 1) == "0"


def test_a_value_just_under_a_unit_boundary_takes_the_larger_unit():
    assert time_unit([0.9996, 0.2]) == ("s", 1.0)
    assert time_cell(Spread(0.9996, 0.9, 1.1), 1.0, 3) == "1.00\u00b10.10"
    assert time_cell(Spread(0.09996, 0.09996, 0.09996), 1e-3, 1) == "100"  # not 100.0


def test_an_empty_table_is_captioned_in_seconds():
    assert time_unit([float("nan"), 0.0]) == ("s", 1.0)
    result = run("--rates", "1e-9", "--seeds", "1", "--duration", "1", "--policies", "edf")
    assert result.exit_code == 0, result.output
    assert "times in s;" in result.output and "\u00b5s" not in result.output


# --- 10. small input handling -------------------------------------------------------------------
def test_nodes_given_twice_is_refused():
    assert_one_line_error(run("--rates", "5", "--seeds", "1", "--nodes", "AGX=2,AGX=3"), "'AGX' is given twice")


def test_a_directory_as_trace(tmp_path):
    assert_one_line_error(run("--trace", str(tmp_path)), "is a directory", "trace CSV")


def test_a_yaml_platform_without_its_suffix(tmp_path):
    path = tmp_path / "okyaml"
    path.write_text("devices: {A: 1}\ntrue_times: {M: {A: 1}}\n")
    assert_one_line_error(run("--platform", str(path), "--rates", "1", "--seeds", "1"),
                          "reads as YAML", ".yaml or .yml suffix")
    broken = tmp_path / "broken.json"
    broken.write_text("{devices: {A: 1}}")  # a .json file stays a JSON error
    assert_one_line_error(run("--platform", str(broken), "--rates", "1", "--seeds", "1"), "fix its JSON syntax")


# --- 11. plot lines told apart --------------------------------------------------------------------
def test_each_policy_has_its_own_line_style():
    from sniper_onnx.scheduling.plot import line_style

    styles = [line_style(i, 5) for i in range(5)]
    assert len({(s["marker"], s["linestyle"]) for s in styles}) == 5
    assert styles[0]["linewidth"] > styles[-1]["linewidth"]  # the first drawn (underneath) is widest


# --- 12. --json carries each run's seed and the device names ------------------------------------
def test_json_runs_carry_seed_and_device_names():
    result = run("--rates", "5", "--seeds", "2", "--seed", "7", "--duration", "3", "--policies", "edf", "--json",
                 "--nodes", "TX2=1")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["seed"] for r in data["rows"][0]["runs"]] == [7, 8]
    assert data["device_names"] == ["AGX-0", "AGX-1", "AGX-2", "AGX-3", "TX2-0", "NX-0", "NX-1", "NX-2"]
    assert len(data["rows"][0]["runs"][0]["utilization"]) == len(data["device_names"])


def test_paper_platform_still_places_every_task():
    from sniper_onnx.scheduling import poisson_tasks, schedule_violations

    platform = load_platform("paper")
    tasks = poisson_tasks(platform, 24, 20, 0)
    for name in ("mvsp", "mvsp-free", "sniper", "mct-pred"):
        result = simulate(platform, name, tasks)
        assert schedule_violations(tasks, result.schedule, platform) == []
        assert np.isfinite(result.metrics.awt)
