"""A task's start is when the dispatcher hands it to its device, so end - start never comes out
shorter than the time the device itself measured (until 2026-11-30 start was read after the
engine's send returned, and a slow send was cut out of the response and counted as wait)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from dispatch_testkit import FakeEngineBase, fleet_dict, matmul_chain

from sniper_onnx.dispatch import DispatchTask, dispatch, fleet_from_dict
from sniper_onnx.dispatch.engines import Event

# the device runs the task inside send's own window (a device on the other end of a pipe starts
# as soon as the message is written, while send is still returning): longer than any scheduling
# hiccup between send returning and the result being read, so the old reading fails for certain
RUN_S = 0.2
SEND_S = 0.25


class SlowSendEngine(FakeEngineBase):
    """Answers at once, but each send takes SEND_S and the device reports RUN_S of it as its run."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def start(self, device) -> None:
        self.events.append(Event("ready", device.name, payload=1))

    def calibrate(self, device: str, model: str, repeats: int) -> None:
        self.events.append(Event("calibrated", device, model=model,
                                 payload={"status": "ok", "median_s": RUN_S, "count": repeats}))

    def send(self, device: str, task_id: int, attempt: int, model: str, input_path: Optional[str]) -> None:
        time.sleep(SEND_S)
        self.events.append(Event("result", device, model=model,
                                 payload={"status": "ok", "task_id": task_id, "attempt": attempt, "seconds": RUN_S}))

    def poll(self, timeout: float) -> list[Event]:
        time.sleep(0.001)
        events, self.events = self.events, []
        return events



def test_end_minus_start_covers_the_time_the_device_measured(tmp_path: Path) -> None:
    model = matmul_chain(tmp_path / "m.onnx", rows=4, width=8, layers=1)
    fleet = fleet_from_dict(fleet_dict({"m": model}, devices=[{"name": "d0", "type": "t", "threads": 1}]))
    tasks = [DispatchTask("m", arrival=0.0) for _ in range(3)]
    report = dispatch(fleet, tasks, "polling", calibration_repeats=1, engine=SlowSendEngine())
    assert [o.status for o in report.outcomes] == ["ok"] * 3
    for outcome in report.outcomes:
        assert outcome.end - outcome.start >= outcome.seconds, outcome
    # one device, one at a time: each task waits for the sends before it, never less
    waits = sorted(o.start - o.arrival for o in report.outcomes)
    assert waits[1] >= SEND_S and waits[2] >= 2 * SEND_S


class RecordingPollEngine(SlowSendEngine):
    """Answers at once; records every poll timeout the dispatcher asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float] = []

    def send(self, device: str, task_id: int, attempt: int, model: str, input_path: Optional[str]) -> None:
        self.events.append(Event("result", device, model=model,
                                 payload={"status": "ok", "task_id": task_id, "attempt": attempt, "seconds": 1e-5}))

    def poll(self, timeout: float) -> list[Event]:
        self.timeouts.append(timeout)
        events, self.events = self.events, []
        return events


def test_the_loop_never_polls_past_an_arrival_by_a_rounded_up_millisecond(tmp_path: Path) -> None:
    """A poll's timeout is whole milliseconds rounded up: asked for the 1.5 ms left until the next
    arrival, it returned up to 1 ms late (an idle fleet waited 1.1 ms median a task, now 0.4)."""
    model = matmul_chain(tmp_path / "m.onnx", rows=4, width=8, layers=1)
    fleet = fleet_from_dict(fleet_dict({"m": model}, devices=[{"name": "d0", "type": "t", "threads": 1}]))
    engine = RecordingPollEngine()
    tasks = [DispatchTask("m", arrival=0.02 * i) for i in range(5)]
    report = dispatch(fleet, tasks, "polling", calibration_repeats=1, engine=engine)
    assert [o.status for o in report.outcomes] == ["ok"] * 5
    # blocking polls end a millisecond before the arrival they wait for; the last 2 ms go by
    # non-blocking polls and short sleeps (before, the loop asked for the exact wait, and got it
    # rounded up)
    assert engine.timeouts.count(0.0) >= 4
