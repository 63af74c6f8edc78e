"""A run an error stops partway (an agent older than the dispatcher, met mid-run) keeps what it
measured and says so in its one error line, as Ctrl-C does; and a predictor file's own warning
reaches the user of dispatch once."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Optional

import onnx
import pytest
import yaml
from dispatch_testkit import FakeEngineBase, fleet_dict, matmul_chain
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.dispatch import DispatchStopped, DispatchTask, dispatch, dispatcher, fleet_from_dict, write_workload
from sniper_onnx.dispatch.engines import Event, _refuse_older_agent
from sniper_onnx.errors import SniperError

OLDER = "device d-old: its agent runs an older sniper-profiler than this sniper-onnx"


class RefusingEngine(FakeEngineBase):
    """Devices that answer at once, until ``answers`` task results have come back: then every
    poll raises what DaskEngine.poll raises for an agent of an older sniper-profiler."""

    def __init__(self, answers: int) -> None:
        self.answers, self.given = answers, 0
        self.events: list[Event] = []
        self.closed = False

    def start(self, device) -> None:
        self.events.append(Event("ready", device.name, payload=1))

    def calibrate(self, device: str, model: str, repeats: int) -> None:
        self.events.append(Event("calibrated", device, model=model,
                                 payload={"status": "ok", "median_s": 0.001, "count": repeats}))

    def send(self, device: str, task_id: int, attempt: int, model: str, input_path: Optional[str]) -> None:
        self.events.append(Event("result", device, model=model,
                                 payload={"status": "ok", "task_id": task_id, "attempt": attempt, "seconds": 0.001}))

    def poll(self, timeout: float) -> list[Event]:
        if self.given >= self.answers:
            _refuse_older_agent("d-old", TypeError("dask_run_task() got an unexpected keyword argument 'reload'"))
        time.sleep(0.001)
        events, self.events = self.events, []
        self.given += sum(event.kind == "result" for event in events)
        return events

    def close(self) -> None:
        self.closed = True


def _fleet(tmp_path: Path, devices: Optional[list[dict]] = None, **extra) -> dict:
    model = matmul_chain(tmp_path / "m.onnx", rows=4, width=8, layers=1)
    return fleet_dict({"m": model}, devices=devices or [{"name": "d0", "type": "t", "threads": 1}], **extra)


def _tasks(count: int) -> list[DispatchTask]:
    return [DispatchTask("m", arrival=0.0) for _ in range(count)]


def _stored(db: Path) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("select count(*) from measurements").fetchone()[0]


def test_an_error_mid_run_keeps_the_outcomes_and_says_how_many_times_were_stored(tmp_path):
    engine = RefusingEngine(answers=3)
    db = tmp_path / "ncd.sqlite"
    with pytest.raises(DispatchStopped) as stop:
        dispatch(fleet_from_dict(_fleet(tmp_path)), _tasks(10), "polling", db=db, calibration_repeats=1,
                 engine=engine)
    assert [o.status for o in stop.value.outcomes] == ["ok"] * 3 + ["pending"] * 7
    assert stop.value.stored == _stored(db) == 3 + 1  # every finished task and the calibration
    message = str(stop.value)
    assert len(message.splitlines()) == 1 and message.startswith(OLDER)
    assert message.endswith(f"; 4 measured time(s) stored in {db}")
    assert stop.value.reason == message.rpartition("; 4 measured")[0]
    assert isinstance(stop.value, SniperError) and engine.closed


def test_an_error_before_anything_was_measured_is_the_error_alone(tmp_path):
    with pytest.raises(SniperError) as raised:
        dispatch(fleet_from_dict(_fleet(tmp_path)), _tasks(2), "polling", calibration_repeats=1,
                 engine=RefusingEngine(answers=0))
    assert type(raised.value) is SniperError and str(raised.value).startswith(OLDER)


def _cli(tmp_path: Path, monkeypatch, answers: int, *extra: str):
    monkeypatch.setattr(dispatcher, "_make_engine", lambda *args: RefusingEngine(answers))
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(_fleet(tmp_path)))
    trace = tmp_path / "trace.csv"
    write_workload(_tasks(10), trace)
    return CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--workload", str(trace), "--policy", "polling",
                                    "--calibration-repeats", "1", *extra])


def test_the_cli_writes_the_outcomes_so_far_and_ends_its_one_error_line_with_the_times_stored(tmp_path, monkeypatch):
    db, tasks = tmp_path / "ncd.sqlite", tmp_path / "tasks.jsonl"
    result = _cli(tmp_path, monkeypatch, 3, "--db", str(db), "--tasks-out", str(tasks), "--json")
    assert result.exit_code == 2, result.output
    assert [json.loads(line)["status"] for line in tasks.read_text().splitlines()] == ["ok"] * 3 + ["pending"] * 7
    assert _stored(db) == 4 and result.stdout == ""
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in result.stderr
    assert line.startswith(f"sniper-onnx: error: {OLDER}")
    assert line.endswith(f"run this again; 3 finished task(s) of 10 written to {tasks} (the rest 'pending'); "
                         f"4 measured time(s) stored in {db}")


def test_the_cli_says_nothing_was_kept_without_db_or_tasks_out(tmp_path, monkeypatch):
    result = _cli(tmp_path, monkeypatch, 3)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().endswith("run this again; nothing kept (--db stores times as they arrive)")
    assert len(result.stderr.strip().splitlines()) == 1


# --- a predictor trained on another feature schema --------------------------------------------------
SCHEMA_LINE = "trained on features of feature schema 2026-01-01"


def _old_schema_predictor(tmp_path: Path) -> Path:
    """The shipped predictor that knows silver_4210r, recorded as trained on an older feature schema."""
    from sniper_onnx.predictors.runtime import shipped_predictor_path

    model = onnx.load(str(shipped_predictor_path("pcn_hw_nasbench201.onnx")))
    for prop in model.metadata_props:
        if prop.key == "sniper.feature_schema":
            prop.value = json.dumps("2026-01-01")
    path = tmp_path / "old-schema.onnx"
    onnx.save(model, str(path))
    return path


def _predicted_fleet(tmp_path: Path, predictor: Optional[Path]) -> dict:
    """Two device types the predictor answers for: one predict() each, each with the file's warning."""
    extra = {"predictor": str(predictor)} if predictor else {}
    devices = [{"name": "d0", "type": "t", "threads": 1}, {"name": "d1", "type": "u", "threads": 1}]
    return _fleet(tmp_path, devices, predictor_devices={"t": "silver_4210r", "u": "silver_4114"}, **extra)


def test_dispatch_gives_the_predictors_schema_warning_once_and_keeps_it_in_the_report(tmp_path):
    said: list[str] = []
    fleet = fleet_from_dict(_predicted_fleet(tmp_path, _old_schema_predictor(tmp_path)))
    report = dispatch(fleet, _tasks(2), "sniper", calibration_repeats=1, engine=RefusingEngine(answers=99),
                      warn=said.append)
    assert report.predicted_source == "predictor" and report.counts.completed == 2
    assert len(said) == 1 and SCHEMA_LINE in said[0] and "retrain" in said[0]
    assert report.warnings == said and report.to_json_dict()["warnings"] == said


def test_dispatch_with_a_predictor_of_the_running_schema_warns_of_nothing(tmp_path):
    said: list[str] = []
    report = dispatch(fleet_from_dict(_predicted_fleet(tmp_path, None)), _tasks(1), "sniper", calibration_repeats=1,
                      engine=RefusingEngine(answers=99), warn=said.append)
    assert report.predicted_source == "predictor" and said == [] and report.warnings == []


def test_the_cli_says_the_predictors_schema_warning_once_on_stderr(tmp_path, monkeypatch):
    monkeypatch.setattr(dispatcher, "_make_engine", lambda *args: RefusingEngine(99))
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(_predicted_fleet(tmp_path, _old_schema_predictor(tmp_path))))
    trace = tmp_path / "trace.csv"
    write_workload(_tasks(3), trace)
    result = CliRunner().invoke(app, ["dispatch", "--fleet", str(fleet), "--workload", str(trace),
                                      "--calibration-repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if SCHEMA_LINE in line]
    assert len(warned) == 1 and warned[0].startswith("sniper-onnx: warning: "), result.stderr
    assert len(json.loads(result.stdout)["warnings"]) == 1  # stdout stays the one JSON object
