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
