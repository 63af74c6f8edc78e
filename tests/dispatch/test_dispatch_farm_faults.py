"""The profiling farm and the writers when things fail: agents that die at a restart or come back
under the same name, an engine that cannot start, a writer thread that cannot open the database,
and a second Ctrl-C while the dispatcher closes."""

from __future__ import annotations

import threading
import time

import pytest
from dispatch_testkit import DoneFuture, ErredFuture, fleet_dict, matmul_chain

from sniper_onnx.dispatch import fleet_from_dict, profiling
from sniper_onnx.dispatch.engines import Event

OK = {"status": "ok", "median_s": 0.001, "stats": {"count": 3, "median_s": 0.001}, "flags": []}


class ScriptedEngine:
    """An engine whose devices do what the test says: ``hang`` nets never answer; ``restart``
    says what a kill brings: ``died-at-start`` (embedded: the fresh process dies before ready) or
    ``same-name`` (Dask: the host started the agent again, seen as "ready", never as "died")."""

    def __init__(self, name: str, hang: set[str], restart: str) -> None:
        self.name, self.hang, self.restart = name, hang, restart
        self.events: list[Event] = []
        self.starts: dict[str, int] = {}
        self.forgotten: list[tuple[str, str]] = []
        self.closed = False

    def start(self, device) -> None:
        self.starts[device.name] = self.starts.get(device.name, 0) + 1
        if self.starts[device.name] > 1 and self.restart == "died-at-start":
            self.events.append(Event("died", device.name, payload="crashed at start"))
        else:
            self.events.append(Event("ready", device.name, payload=1))

    def calibrate(self, device: str, model: str, measurement) -> None:
        if model not in self.hang:
            self.events.append(Event("calibrated", device, model=model, payload=dict(OK)))

    def kill(self, device: str) -> None:
        if self.restart == "same-name":
            self.events.append(Event("ready", device, payload=2))
        else:
            self.events.append(Event("died", device, payload="killed"))

    def forget(self, device: str, model: str) -> None:
        self.forgotten.append((device, model))

    def poll(self, timeout: float) -> list[Event]:
        time.sleep(0.005)
        events, self.events = self.events, []
        return events

    def close(self) -> None:
        self.closed = True


def _farm(tmp_path, monkeypatch, scripted: ScriptedEngine, nets: int = 2, **extra):
    from sniper_onnx.database.collect import file_jobs
    from sniper_profiler.config import ProfileConfig

    paths = [str(matmul_chain(tmp_path / f"n{i}.onnx", rows=4 + i, width=8)) for i in range(nets)]
    fleet = fleet_from_dict(fleet_dict({"m": tmp_path / "n0.onnx"}, [{"name": "d0", "type": "t"}], **extra))
    monkeypatch.setattr(profiling, "_make_farm_engine", lambda *args: scripted)
    result: dict = {}

    def run() -> None:
        result["summary"] = profiling.profile_fleet(fleet, file_jobs(paths), tmp_path / "ncd.sqlite",
                                                    ProfileConfig(timeout_s=0.3), ready_timeout_s=10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the farm hangs"
    return result["summary"]


def test_a_restarted_agent_that_dies_before_ready_fails_its_type_instead_of_hanging(tmp_path, monkeypatch):
    engine = ScriptedEngine("embedded", hang={"n0"}, restart="died-at-start")
    summary = _farm(tmp_path, monkeypatch, engine)
    assert (summary.timed_out, summary.failed, summary.measured) == (1, 2, 0)
    assert "device d0 died: crashed at start" in summary.failures
    assert "n1 on t: no live device of that type" in summary.failures
    assert engine.closed


def test_a_dask_agent_back_under_its_name_after_a_kill_measures_again(tmp_path, monkeypatch):
    engine = ScriptedEngine("dask", hang={"n0"}, restart="same-name")
    summary = _farm(tmp_path, monkeypatch, engine, engine="dask", scheduler="tcp://127.0.0.1:8786")
    assert (summary.timed_out, summary.failed, summary.measured, summary.stored) == (1, 1, 1, 1)
    assert engine.forgotten == [("d0", "n1")]  # the engine's copy of a measured net is dropped


def test_the_farm_writer_is_closed_when_the_engine_cannot_start(tmp_path, monkeypatch):
    from sniper_onnx.database.collect import file_jobs
    from sniper_onnx.errors import SniperError

    writers = []

    class Writer(profiling.FarmWriter):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            writers.append(self)

    def unreachable(*args):
        raise SniperError("engine dask: cannot reach the scheduler")

    monkeypatch.setattr(profiling, "FarmWriter", Writer)
    monkeypatch.setattr(profiling, "_make_farm_engine", unreachable)
    fleet = fleet_from_dict(fleet_dict({"m": matmul_chain(tmp_path / "m.onnx", rows=4, width=8)},
                                       [{"name": "d0", "type": "t"}]))
    with pytest.raises(SniperError, match="cannot reach"):
        profiling.profile_fleet(fleet, file_jobs([str(tmp_path / "m.onnx")]), tmp_path / "ncd.sqlite")
    [writer] = writers
    assert writer._closed and not writer._thread.is_alive()


def test_a_writer_that_cannot_open_the_database_says_how_many_it_did_not_store(tmp_path):
    from sniper_onnx.dispatch.feedback import BackgroundDbWriter

    class Locked(BackgroundDbWriter):
        def _work(self, path, *args) -> None:
            raise RuntimeError("database is locked")

    writer = Locked(tmp_path / "ncd.sqlite", "test-writer")
    writer.put("a")
    writer.put("b")
    assert writer.close() == 0
    assert writer.dropped == 2
    assert writer.errors == ["the database writer stopped: RuntimeError: database is locked"]


def test_a_second_ctrl_c_while_the_writer_drains_still_closes_the_engine():
    from sniper_onnx.dispatch.dispatcher import _Run

    class Writer:
        def close(self) -> int:
            raise KeyboardInterrupt  # the second Ctrl-C, mid-drain

    class Engine:
        closed = False

        def close(self) -> None:
            Engine.closed = True

    run = _Run.__new__(_Run)
    run._closed, run.writer, run.engine = False, Writer(), Engine()
    with pytest.raises(KeyboardInterrupt):
        run.close()
    assert Engine.closed


def test_a_dask_worker_replaced_under_its_name_between_two_looks_is_reported_died_then_ready():
    from sniper_onnx.dispatch.engines import DaskEngine

    workers = {"d0": (11, "tcp://10.0.0.1:4000")}

    class Client:
        def run_on_scheduler(self, function):
            return dict(workers)

        def scheduler_info(self, n_workers: int = -1):  # each agent reports the current protocol
            from sniper_profiler.agent import AGENT_INFO_KEY, dask_agent_protocol

            return {"workers": {address: {AGENT_INFO_KEY: dask_agent_protocol()} for _, address in workers.values()}}

    engine = DaskEngine.__new__(DaskEngine)
    engine.client, engine._checked, engine._wanted, engine._present = Client(), 0.0, {"d0"}, set()
    engine.pids, engine._addresses, engine._device_data, engine._pending, engine._tasks = {}, {}, {}, {}, {}
    assert [e.kind for e in engine._membership()] == ["ready"]
    engine._device_data[("d0", "m")] = object()
    workers["d0"] = (12, "tcp://10.0.0.1:4001")  # killed, and started again by its host
    events = engine._membership()
    assert [(e.kind, e.device) for e in events] == [("died", "d0"), ("ready", "d0")]
    assert engine._device_data == {} and engine.pids["d0"] == 12
    assert engine._membership() == []


def _engine_with(kind: str, error: BaseException, before: dict | None = None, after: dict | None = None):
    """A Dask engine whose one erred future comes after the ``before`` futures and before ``after``
    (future -> (kind, device, model)): the order poll() meets them in."""
    pytest.importorskip("distributed")
    from sniper_onnx.dispatch.engines import DaskEngine

    engine = DaskEngine.__new__(DaskEngine)
    engine._checked = time.monotonic() + 3600  # no membership look: the test has no scheduler
    engine._pending = {**(before or {}), ErredFuture(error): (kind, "jetson-0", "m"), **(after or {})}
    engine._tasks = {}
    return engine


@pytest.mark.parametrize("kind, error", [
    ("result", TypeError("dask_run_task() got an unexpected keyword argument 'reload'")),
    ("calibrated", TypeError("__init__() got an unexpected keyword argument 'scope'")),
], ids=["reload", "scope"])
def test_a_dask_agent_older_than_the_dispatcher_is_one_error_not_a_failure_per_net(kind, error):
    from sniper_onnx.errors import SniperError

    with pytest.raises(SniperError, match=r"^device jetson-0: its agent runs an older sniper-profiler .*"
                                          r"upgrade sniper-profiler on that device \(`pip install --no-deps ./profiler`"):
        _engine_with(kind, error).poll(0.01)


def test_other_errors_of_a_dask_task_stay_failures_of_that_task():
    """A setting the agent does not know that no older agent lacked either (a bad fleet entry)."""
    events = _engine_with("result", TypeError("__init__() got an unexpected keyword argument 'no_such'")).poll(0.01)
    assert [(e.kind, e.device, e.payload["status"]) for e in events] == [("result", "jetson-0", "failed")]
    assert "no_such" in events[0].payload["error"]


OLD_RELOAD = TypeError("dask_run_task() got an unexpected keyword argument 'reload'")


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_older_agent_met_in_a_poll_loses_none_of_the_answers_that_came_with_it(where):
    """The refusal was raised in the middle of the loop over finished futures: the answers popped
    before it were in no event, so never stored, and close() cancelled the rest."""
    from sniper_onnx.errors import SniperError

    answer = {"status": "ok", "task_id": 7, "attempt": 1, "seconds": 0.0123}
    engine = _engine_with("result", OLD_RELOAD, **{where: {DoneFuture(answer): ("result", "d-new", "m")}})
    events = engine.poll(0.01)
    assert [(e.kind, e.device, e.payload) for e in events] == [("result", "d-new", answer)]
    assert engine._pending == {}  # the old agent's task has no "failed" answer: the run stops instead
    for _ in range(2):  # and stays stopped
        with pytest.raises(SniperError, match=r"^device jetson-0: its agent runs an older sniper-profiler"):
            engine.poll(0.01)


class RefusingFarmEngine(ScriptedEngine):
    """Measures ``answers`` nets, then every poll raises what DaskEngine.poll raises for an agent
    of an older sniper-profiler."""

    def __init__(self, answers: int) -> None:
        super().__init__("dask", hang=set(), restart="same-name")
        self.answers, self.given = answers, 0

    def poll(self, timeout: float) -> list[Event]:
        from sniper_onnx.dispatch.engines import _refuse_older_agent

        if self.given >= self.answers:
            _refuse_older_agent("d0", OLD_RELOAD)
        events = super().poll(timeout)
        self.given += sum(event.kind == "calibrated" for event in events)
        return events


def _nets(tmp_path, count: int) -> list[str]:
    return [str(matmul_chain(tmp_path / f"n{i}.onnx", rows=4 + i, width=8)) for i in range(count)]


def test_a_farm_stopped_by_an_older_agent_keeps_its_medians_and_says_how_many(tmp_path, monkeypatch):
    import sqlite3

    from sniper_onnx.database.collect import file_jobs
    from sniper_profiler.config import ProfileConfig

    nets = _nets(tmp_path, 5)
    fleet = fleet_from_dict(fleet_dict({"m": tmp_path / "n0.onnx"}, [{"name": "d0", "type": "t"}]))
    db = tmp_path / "ncd.sqlite"
    monkeypatch.setattr(profiling, "_make_farm_engine", lambda *args: RefusingFarmEngine(2))
    with pytest.raises(profiling.FarmStopped) as stop:
        profiling.profile_fleet(fleet, file_jobs(nets), db, ProfileConfig(), ready_timeout_s=10)
    with sqlite3.connect(db) as con:
        assert con.execute("select count(*) from measurements").fetchone()[0] == 2
    assert (stop.value.summary.measured, stop.value.summary.stored) == (2, 2)
    assert str(stop.value).startswith("device d0: its agent runs an older sniper-profiler")
    assert str(stop.value).endswith(f"run this again; 2 median(s) stored in {db}; running the same command again "
                                    "resumes (it skips them)")
    # and it does: a rerun with an agent that answers measures only the 3 left
    monkeypatch.setattr(profiling, "_make_farm_engine", lambda *args: RefusingFarmEngine(99))
    summary = profiling.profile_fleet(fleet, file_jobs(nets), db, ProfileConfig(), ready_timeout_s=10)
    assert (summary.skipped, summary.measured, summary.stored) == (2, 3, 3)


def test_profile_fleet_on_the_cli_ends_its_one_error_line_with_the_medians_stored(tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from sniper_onnx.cli import app

    nets = _nets(tmp_path, 5)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(fleet_dict({"m": tmp_path / "n0.onnx"}, [{"name": "d0", "type": "t"}])))
    db = tmp_path / "ncd.sqlite"
    monkeypatch.setattr(profiling, "_make_farm_engine", lambda *args: RefusingFarmEngine(2))
    result = CliRunner().invoke(app, ["profile", "--fleet", str(fleet), *nets, "--db", str(db)])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in result.stderr
    assert line.startswith("sniper-onnx: error: device d0: its agent runs an older sniper-profiler")
    assert line.endswith(f"; 2 median(s) stored in {db}; running the same command again resumes (it skips them)")
