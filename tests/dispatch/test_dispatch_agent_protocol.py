"""The dispatcher-agent protocol: a Dask agent reports its protocol when its worker registers, and
the dispatcher refuses a device whose agent it cannot talk to before sending it anything (at the
start, and for a worker restarted mid-run, keeping what the run measured)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from dispatch_testkit import DoneFuture, fleet_dict, matmul_chain

from sniper_onnx.dispatch import DispatchStopped, DispatchTask, dispatch, fleet_from_dict
from sniper_onnx.dispatch.engines import AGENT_INFO_KEY, AGENT_PROTOCOL, Event, _agent_refusal
from sniper_onnx.errors import SniperError
from sniper_profiler import agent

OLDER = "its agent runs an older sniper-profiler than this sniper-onnx"
FIX = "upgrade sniper-profiler on that device (`pip install --no-deps ./profiler` from this sniper-onnx's checkout)"


# --- the numbers ------------------------------------------------------------------------------------
def test_the_dispatcher_speaks_the_protocol_of_this_checkouts_agent():
    assert AGENT_PROTOCOL == agent.AGENT_PROTOCOL >= 2 and agent.OLDEST_DISPATCHER_PROTOCOL <= agent.AGENT_PROTOCOL
    assert AGENT_INFO_KEY == agent.AGENT_INFO_KEY
    from sniper_profiler import __version__

    expected = {"protocol": agent.AGENT_PROTOCOL, "oldest_dispatcher": agent.OLDEST_DISPATCHER_PROTOCOL,
                "version": __version__}
    assert agent.dask_agent_protocol() == agent.dask_agent_protocol(object()) == expected  # Dask passes the worker
    assert _agent_refusal("d0", agent.dask_agent_protocol()) is None


@pytest.mark.parametrize("info, said", [
    (None, "(it reports no agent protocol, so protocol 1: an agent from before 2026-11-29, or a Dask worker not "
           "started with `python -m sniper_profiler.agent`; this sniper-onnx speaks protocol 2); "),
    ({"protocol": "two"}, "(it reports no agent protocol, so protocol 1"),
    ({"protocol": 1, "oldest_dispatcher": 1, "version": "0.0.9"},
     "(agent protocol 1, sniper-profiler 0.0.9; this sniper-onnx speaks protocol 2); "),
], ids=["none", "garbled", "older"])
def test_an_older_agent_is_one_line_naming_the_device_both_protocols_and_the_fix(info, said):
    message = str(_agent_refusal("jetson-0", info))
    assert len(message.splitlines()) == 1
    assert message.startswith(f"device jetson-0: {OLDER} {said}")
    assert message.endswith(f"{FIX}, start its agent again and run this again")


def test_a_newer_agent_is_accepted_while_it_still_answers_this_dispatchers_protocol():
    assert _agent_refusal("d0", {"protocol": AGENT_PROTOCOL + 1, "oldest_dispatcher": AGENT_PROTOCOL}) is None
    message = str(_agent_refusal("d0", {"protocol": AGENT_PROTOCOL + 1, "oldest_dispatcher": AGENT_PROTOCOL + 1,
                                        "version": "0.3.0"}))
    assert len(message.splitlines()) == 1
    assert message.startswith(f"device d0: its agent runs a newer sniper-profiler than this sniper-onnx (agent "
                              f"protocol {AGENT_PROTOCOL + 1}, sniper-profiler 0.3.0, answering dispatchers of "
                              f"protocol {AGENT_PROTOCOL + 1} and later; this sniper-onnx speaks protocol "
                              f"{AGENT_PROTOCOL}); upgrade sniper-onnx here")
    # a newer agent that says nothing of the oldest it answers answers its own protocol only
    assert "a newer sniper-profiler" in str(_agent_refusal("d0", {"protocol": AGENT_PROTOCOL + 1}))


# --- the Dask engine, on a scheduler the test plays -------------------------------------------------
class _Client:
    """The scheduler's view: worker name -> (pid, address, what its agent reported or None)."""

    def __init__(self, workers: dict) -> None:
        self.workers = workers
        self.submitted: list = []

    def run_on_scheduler(self, function):
        return {name: (pid, address) for name, (pid, address, _) in self.workers.items()}

    def scheduler_info(self, n_workers: int = -1):
        return {"workers": {address: ({AGENT_INFO_KEY: info} if info is not None else {})
                            for _, address, info in self.workers.values()}}

    def scatter(self, *args, **kwargs):
        self.submitted.append("scatter")

    def submit(self, *args, **kwargs):
        self.submitted.append(args[0].__name__)


def _engine(workers: dict):
    pytest.importorskip("distributed")
    from sniper_onnx.dispatch.engines import DaskEngine

    engine = DaskEngine.__new__(DaskEngine)
    engine.client, engine._checked, engine._wanted, engine._present = _Client(workers), 0.0, set(workers), set()
    engine.pids, engine._addresses, engine._device_data, engine._pending, engine._tasks = {}, {}, {}, {}, {}
    return engine


CURRENT = agent.dask_agent_protocol()


def test_an_agent_that_reports_no_protocol_is_refused_when_it_joins_before_anything_is_sent():
    engine = _engine({"d-new": (1, "tcp://h:1", CURRENT), "d-old": (2, "tcp://h:2", None)})
    events = engine.poll(0.0)  # the device that can be talked to is ready; the old one is not
    assert [(e.kind, e.device) for e in events] == [("ready", "d-new")]
    with pytest.raises(SniperError) as raised:
        engine.poll(0.0)
    assert str(raised.value).startswith(f"device d-old: {OLDER} (it reports no agent protocol, so protocol 1")
    assert engine.client.submitted == []  # no calibration, no task, no bytes went anywhere


def test_a_worker_replaced_between_the_two_looks_at_the_scheduler_joins_at_the_next_check():
    engine = _engine({"d0": (1, "tcp://h:1", CURRENT)})
    names = engine.client.run_on_scheduler
    # the names' look saw the new worker's address; the identities' look, a moment later, does not
    engine.client.run_on_scheduler = lambda function: {"d0": (2, "tcp://h:2")}
    assert engine.poll(0.0) == []  # neither ready nor refused as "reports no agent protocol"
    engine.client.run_on_scheduler, engine._checked = names, 0.0
    assert [(e.kind, e.device) for e in engine.poll(0.0)] == [("ready", "d0")]


def test_a_worker_restarted_mid_run_with_an_older_agent_stops_the_engine_once_its_death_is_handed_over():
    workers = {"d0": (1, "tcp://h:1", CURRENT)}
    engine = _engine(workers)
    assert [e.kind for e in engine.poll(0.0)] == ["ready"]
    workers["d0"] = (9, "tcp://h:9", {"protocol": 1})  # its host started an older sniper-profiler's agent
    engine._checked = 0.0
    events = engine.poll(0.0)  # the old worker's death (its task goes back to the queue); the new one is not ready
    assert [(e.kind, e.device, e.payload) for e in events] == [
        ("died", "d0", "Dask worker was replaced by a new one of the same name")]
    with pytest.raises(SniperError, match=r"^device d0: its agent runs an older sniper-profiler than this "
                                          r"sniper-onnx \(agent protocol 1; this sniper-onnx speaks protocol 2\)"):
        engine.poll(0.0)


def test_answers_that_came_back_with_a_refusal_are_handed_over_first():
    workers = {"d0": (1, "tcp://h:1", CURRENT)}
    engine = _engine(workers)
    engine.poll(0.0)
    answer = {"status": "ok", "task_id": 3, "attempt": 1, "seconds": 0.01}
    engine._pending[DoneFuture(answer)] = ("result", "d0", "m")
    workers["d1"] = (5, "tcp://h:5", None)  # another device joins with an older agent
    engine._wanted.add("d1")
    engine._checked = 0.0
    assert [(e.kind, e.payload) for e in engine.poll(0.0)] == [("result", answer)]
    with pytest.raises(SniperError, match=r"^device d1: its agent runs an older"):
        engine.poll(0.0)


def test_an_answer_lost_with_a_worker_that_just_died_is_no_answer_not_a_crash():
    """Seen on the loopback cluster: a future "finished" on a worker SIGKILLed before its result was
    fetched; the membership check reports the device and the task is sent again."""
    from concurrent.futures import CancelledError

    class Lost(DoneFuture):
        def result(self) -> dict:
            raise CancelledError("sniper-task-1-1-d0 cancelled for reason: already forgotten")

    engine = _engine({"d0": (1, "tcp://h:1", CURRENT)})
    engine.poll(0.0)
    engine._pending[Lost({})] = ("result", "d0", "m")
    assert engine.poll(0.0) == [] and engine._pending == {}


# --- a real loopback Dask cluster ---------------------------------------------------------------------
distributed = pytest.importorskip("distributed")

# An agent installed from a sniper-profiler before the protocol number (2026-11-29): its worker
# registers no protocol, its task function takes no ``reload``.
OLD_AGENT = """
import asyncio
import sys

from sniper_profiler import agent


def dask_run_task(settings, task_id, attempt, model, source, input_path=None):
    found, scope = agent._dask_agent(settings)
    return found.run(task_id, attempt, model, source, input_path, scope=scope).to_dict()


def run_dask_worker(scheduler, name, host=None):
    from distributed import Worker

    async def main():
        worker = await Worker(scheduler, name=name, nthreads=1, host=host)
        async with worker:
            await worker.finished()

    asyncio.run(main())


agent.dask_run_task, agent.run_dask_worker = dask_run_task, run_dask_worker
del agent.dask_agent_protocol, agent.AGENT_PROTOCOL, agent.OLDEST_DISPATCHER_PROTOCOL
agent.main(sys.argv[1:])
"""


def _start(address: str, name: str, old: bool = False) -> subprocess.Popen:
    command = ["-c", OLD_AGENT] if old else ["-m", "sniper_profiler.agent"]
    return subprocess.Popen([sys.executable, *command, "--scheduler", address, "--name", name, "--host", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def scheduler():
    local = distributed.LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address=None,
                                     processes=True)
    try:
        yield local.scheduler_address
    finally:
        local.close()


@pytest.fixture
def workers():
    started: list[subprocess.Popen] = []
    yield started
    for worker in started:
        if worker.poll() is None:
            worker.kill()
        worker.wait(timeout=10)


def _counting_engine(address: str, fleet):
    from sniper_onnx.dispatch.engines import DaskEngine
    from sniper_onnx.dispatch.fleet import model_bytes

    class Engine(DaskEngine):
        sent = 0

        def calibrate(self, *args) -> None:
            Engine.sent += 1
            super().calibrate(*args)

        def send(self, *args) -> None:
            Engine.sent += 1
            super().send(*args)

    return Engine(address, {name: model_bytes(model) for name, model in fleet.models.items()},
                  {d.name: d.agent_settings() for d in fleet.devices})


def test_an_agent_without_a_protocol_is_refused_before_any_task_and_a_current_one_reports_its_own(
        scheduler, workers, tmp_path):
    model = {"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8)}
    fleet = fleet_from_dict(fleet_dict(model, devices=[{"name": "p-old", "type": "t", "threads": 1}],
                                       engine="dask", scheduler=scheduler))
    workers += [_start(scheduler, "p-old", old=True), _start(scheduler, "p-new")]
    engine = _counting_engine(scheduler, fleet)
    with pytest.raises(SniperError) as raised:
        dispatch(fleet, [DispatchTask("m", arrival=0.0)], "polling", calibration_repeats=1, engine=engine,
                 ready_timeout_s=60)
    message = str(raised.value)
    assert len(message.splitlines()) == 1 and type(raised.value) is SniperError  # nothing measured: the error alone
    assert message.startswith(f"device p-old: {OLDER} (it reports no agent protocol, so protocol 1")
    assert FIX in message
    assert engine.sent == 0  # refused when it joined: no calibration, no task
    with distributed.Client(scheduler) as client:  # what the dispatcher read for the current agent
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            reported = {str(w["name"]): w.get(AGENT_INFO_KEY) for w in client.scheduler_info()["workers"].values()}
            if "p-new" in reported:
                break
            time.sleep(0.2)
        assert reported["p-new"] == CURRENT and reported.get("p-old", "gone") in (None, "gone")


def test_a_device_restarted_mid_run_with_an_older_agent_stops_the_run_keeping_what_it_measured(
        scheduler, workers, tmp_path):
    model = {"m": matmul_chain(tmp_path / "m.onnx", rows=16, width=32, layers=2)}
    fleet = fleet_from_dict(fleet_dict(model, devices=[{"name": "r-keep", "type": "a", "threads": 1},
                                                       {"name": "r-swap", "type": "b", "threads": 1}],
                                       engine="dask", scheduler=scheduler))
    workers += [_start(scheduler, "r-keep"), _start(scheduler, "r-swap")]
    db = tmp_path / "ncd.sqlite"

    def restart_old() -> None:
        workers[1].wait(timeout=10)
        time.sleep(0.5)  # the scheduler has dropped the killed worker's name
        workers.append(_start(scheduler, "r-swap", old=True))

    def on_progress(done: int, total: int) -> None:  # its host starts an older agent under its name
        if done >= 5 and workers[1].poll() is None and len(workers) == 2:
            workers[1].kill()
            threading.Thread(target=restart_old, daemon=True).start()

    tasks = [DispatchTask("m", arrival=i * 0.05) for i in range(600)]  # 30 s: the run stops long before
    began = time.monotonic()
    with pytest.raises(DispatchStopped) as stop:
        dispatch(fleet, tasks, "polling", db=db, calibration_repeats=1, ready_timeout_s=60, progress=on_progress)
    assert time.monotonic() - began < 30
    assert stop.value.reason.startswith(f"device r-swap: {OLDER} (it reports no agent protocol, so protocol 1")
    finished = [o for o in stop.value.outcomes if o.status == "ok"]
    assert len(finished) >= 5 and len(stop.value.outcomes) == 600
    with sqlite3.connect(db) as con:
        stored = con.execute("select count(*) from measurements").fetchone()[0]
    assert stop.value.stored == stored == len(finished) + 2  # every finished task and both calibrations
    assert str(stop.value).endswith(f"; {stored} measured time(s) stored in {db}")
