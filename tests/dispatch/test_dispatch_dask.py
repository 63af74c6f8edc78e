"""Dask engine on a real loopback cluster: devices are named workers started the way a Jetson
joins a fleet (``python -m sniper_profiler.agent --scheduler ... --name ...``)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from dispatch_testkit import fleet_dict, matmul_chain

from sniper_onnx.dispatch import DispatchTask, Kill, dispatch, fleet_from_dict

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    local = distributed.LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address=None,
                                     processes=True)
    agents = [subprocess.Popen([sys.executable, "-m", "sniper_profiler.agent", "--scheduler", local.scheduler_address,
                                "--name", name, "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for name in ("d-fast", "d-slow")]
    try:
        yield local.scheduler_address, agents
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
            agent.wait(timeout=10)
        local.close()


def test_dask_fleet_survives_a_killed_worker(cluster, tmp_path):
    address, agents = cluster
    models = {"big": matmul_chain(tmp_path / "big.onnx", rows=512, width=512, layers=3),
              "small": matmul_chain(tmp_path / "small.onnx", rows=32, layers=2)}
    fleet = fleet_from_dict(fleet_dict(models, devices=[
        {"name": "d-fast", "type": "all", "threads": 1, "opt_level": "all"},
        {"name": "d-slow", "type": "off", "threads": 1, "opt_level": "disabled"},
    ], engine="dask", scheduler=address))
    tasks = [DispatchTask("big" if i % 2 else "small", arrival=i * 0.01) for i in range(16)]
    report = dispatch(fleet, tasks, "sniper", kills=[Kill("d-slow", 0.05)], ready_timeout_s=60)
    assert report.engine == "dask"
    assert report.counts.completed == 16 and report.counts.failed == 0
    assert report.counts.lost == 0 and report.counts.duplicated == 0
    assert report.counts.devices_died == 1
    assert report.counts.sent == 16 + report.counts.redispatched
    assert sum(info["tasks"] for info in report.per_device.values()) == 16
    deadline = time.monotonic() + 10
    while agents[1].poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert agents[1].poll() is not None  # the worker process really died (SIGKILL)


def test_dask_worker_joining_mid_run_gets_work(cluster, tmp_path):
    address, _ = cluster
    model = {"small": matmul_chain(tmp_path / "small.onnx", rows=32, layers=2)}
    fleet = fleet_from_dict(fleet_dict(model, devices=[
        {"name": "d-fast", "type": "all", "threads": 1, "opt_level": "all"},
        {"name": "d-late", "type": "off", "threads": 1, "opt_level": "disabled", "join_at": 1},
    ], engine="dask", scheduler=address))
    late: list[subprocess.Popen] = []

    def start_late_worker(done: int, total: int) -> None:  # called once the clock runs
        if not late:
            late.append(subprocess.Popen([sys.executable, "-m", "sniper_profiler.agent", "--scheduler", address,
                                          "--name", "d-late", "--host", "127.0.0.1"],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    tasks = [DispatchTask("small", arrival=i * 0.1) for i in range(80)]  # 8 s: time for a worker to start
    try:
        report = dispatch(fleet, tasks, "polling", progress=start_late_worker)  # round robin: it must get some
    finally:
        for worker in late:
            worker.kill()
            worker.wait(timeout=10)
    assert report.counts.completed == 80 and report.counts.lost == 0 and report.counts.duplicated == 0
    assert report.counts.devices_joined == 1
    assert report.per_device["d-late"]["tasks"] > 0


def test_an_agent_keeping_one_session_runs_a_fleet_of_two_models(cluster, tmp_path):
    """Started with --max-sessions 1, the agent drops one model's session for the other's; its
    tasks carry no bytes, so the session is made again from those the dispatcher scattered."""
    address, _ = cluster
    models = {"a": matmul_chain(tmp_path / "a.onnx", rows=4, width=8),
              "b": matmul_chain(tmp_path / "b.onnx", rows=4, width=16)}
    fleet = fleet_from_dict(fleet_dict(models, devices=[{"name": "d-one", "type": "t", "threads": 1}],
                                       engine="dask", scheduler=address))
    worker = subprocess.Popen([sys.executable, "-m", "sniper_profiler.agent", "--scheduler", address, "--name", "d-one",
                               "--host", "127.0.0.1", "--max-sessions", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        report = dispatch(fleet, [DispatchTask("ab"[i % 2], arrival=i * 0.01) for i in range(6)], "polling",
                          calibration_repeats=1, ready_timeout_s=60)
    finally:
        worker.kill()
        worker.wait(timeout=10)
    assert report.counts.completed == 6 and report.counts.failed == 0, report.failures
    assert report.counts.sessions_remade >= 5  # a and b take turns on one session: each task remakes it


def test_farm_fails_a_device_type_that_never_comes_up_and_goes_on(cluster, tmp_path):
    from sniper_onnx.database.collect import file_jobs
    from sniper_onnx.dispatch.profiling import profile_fleet
    from sniper_profiler.config import ProfileConfig

    address, _ = cluster
    model = {"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8)}
    fleet = fleet_from_dict(fleet_dict(model, devices=[
        {"name": "d-fast", "type": "all"}, {"name": "nobody-serves-me", "type": "ghost"},
    ], engine="dask", scheduler=address))
    summary = profile_fleet(fleet, file_jobs([str(model["m"])]), tmp_path / "ncd.sqlite",
                            ProfileConfig(min_repeats=2, max_repeats=2, warmup=1, min_time_s=0),
                            ready_timeout_s=2)
    assert (summary.measured, summary.failed) == (1, 1)
    assert "no device of type ghost came up" in summary.failures[0]


def test_a_dask_task_that_raises_is_a_failure_not_a_busy_device(cluster, tmp_path):
    from sniper_onnx.dispatch.engines import DaskEngine
    from sniper_onnx.dispatch.fleet import FleetDevice

    address, _ = cluster
    blob = matmul_chain(tmp_path / "m.onnx", rows=4, width=8).read_bytes()
    # an unknown setting makes AgentSettings raise before the agent's own try: the future errs
    engine = DaskEngine(address, {"m": blob}, {"d-fast": {"name": "d-fast", "no_such_setting": 1}})
    try:
        engine.start(FleetDevice("d-fast", "all"))
        events, deadline = [], time.monotonic() + 8
        while not any(e.kind == "calibrated" for e in events) and time.monotonic() < deadline:
            for event in engine.poll(0.2):
                events.append(event)
                if event.kind == "ready":
                    engine.calibrate("d-fast", "m", 2)
        calibrated = [e for e in events if e.kind == "calibrated"]
        assert calibrated and calibrated[0].payload["status"] == "failed"
        assert "no_such_setting" in calibrated[0].payload["error"]
    finally:
        engine.close()


def test_an_agent_whose_name_is_taken_says_so_in_one_line(cluster):
    address, _ = cluster
    done = subprocess.run([sys.executable, "-m", "sniper_profiler.agent", "--scheduler", address, "--name", "d-fast",
                           "--host", "127.0.0.1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("sniper-profiler agent: error: the name 'd-fast' is taken by "
                                                    "another worker of this scheduler; give each device its own --name")


def test_an_agent_with_a_bad_scheduler_address_says_so_in_one_line():
    done = subprocess.run([sys.executable, "-m", "sniper_profiler.agent", "--scheduler", "notaurl", "--name", "x"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("sniper-profiler agent: error: --scheduler 'notaurl' must be")
    assert len(done.stderr.strip().splitlines()) == 1


# An agent whose task function is from a sniper-profiler before 2026-11-29's `reload` but whose
# worker registers the current agent protocol (a sniper-profiler edited on the device): the protocol
# check at join lets it in, and the TypeError of its first task is the fallback that stops the run.
# (An older agent in full, which registers no protocol, is refused at join:
# test_dispatch_agent_protocol.py.)
OLD_AGENT = """
import sys
from sniper_profiler import agent

def dask_run_task(settings, task_id, attempt, model, source, input_path=None):
    found, scope = agent._dask_agent(settings)
    return found.run(task_id, attempt, model, source, input_path, scope=scope).to_dict()

agent.dask_run_task = dask_run_task
agent.main(sys.argv[1:])
"""


def test_an_agent_of_an_older_sniper_profiler_is_one_error_naming_the_device_and_the_fix(cluster, tmp_path):
    """It failed every task with a TypeError (`unexpected keyword argument 'reload'`), one failure
    per task, and the run went on as if the nets were at fault."""
    from sniper_onnx.errors import SniperError

    address, _ = cluster
    model = {"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8)}
    fleet = fleet_from_dict(fleet_dict(model, devices=[{"name": "d-old", "type": "t", "threads": 1}],
                                       engine="dask", scheduler=address))
    worker = subprocess.Popen([sys.executable, "-c", OLD_AGENT, "--scheduler", address, "--name", "d-old",
                               "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with pytest.raises(SniperError) as raised:
            dispatch(fleet, [DispatchTask("m", arrival=i * 0.01) for i in range(5)], "polling",
                     calibration_repeats=1, ready_timeout_s=60)
    finally:
        worker.kill()
        worker.wait(timeout=10)
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("device d-old: its agent runs an older sniper-profiler than this sniper-onnx")
    assert "unexpected keyword argument 'reload'" in message
    assert "upgrade sniper-profiler on that device (`pip install --no-deps ./profiler`" in message
