"""Real dispatch: the scheduling package's very policy objects, driven by a wall clock and real
device agents instead of the simulator's event heap.

The dispatcher owns the per-device queues (a :class:`~sniper_onnx.scheduling.state.DispatchState`
over the devices that are up) and sends one task at a time per device. Devices come and go: when
one dies its running task and its queue go back through the policy onto the survivors; when one
joins (after its sessions are warm) the state is rebuilt over the new set with the same policy
object and the feedback it has learned. Each task completes once or is reported failed with its
reason; a result that comes back for an attempt the dispatcher already gave up on is counted and
ignored.

Before the clock starts every device warms a session for every model and times it (the
"calibration"): that gives the simulator its true times for the side-by-side report, and MVSP its
measured times (paid before the run, not inside it as in the simulator).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from sniper_onnx.dispatch.fleet import Fleet, FleetDevice, check_model_file, model_bytes
from sniper_onnx.dispatch.workload import DispatchTask
from sniper_onnx.errors import SniperError

SIMULATOR_ONLY = {"true": "it needs each task's exact run time, which only the simulator knows"}
STATUS_OK, STATUS_FAILED = "ok", "failed"
ProgressHook = Callable[[int, int], None]  # (finished tasks, total)
WarnHook = Callable[[str], None]  # one warning line, said as soon as it is known


# A task running this many times its calibrated time marks its device as hung (see dispatch()).
HANG_FACTOR = 20.0
# A task that hung on this many devices is failed, not sent again: it hangs wherever it runs (an
# input that makes a Loop run forever), and re-sending it killed the fleet one device at a time.
MAX_TASK_HANGS = 2
# A worker the watchdog killed is started again (embedded engine) at most this many times.
MAX_RESTARTS = 3
# Sniper's online correction, per run of a model elsewhere: a correction on a device type not
# picked again fades toward the prediction (see FeedbackTimes.stale_decay).
STALE_DECAY = 0.9
# Below this wait for the next arrival the loop sleeps in steps of FINE_SLEEP_S instead of a poll
# (whose millisecond timeout rounds up); a result coming in meanwhile waits at most one step.
FINE_WAIT_S, FINE_SLEEP_S = 0.002, 0.0002
POLL_GRANULARITY_S = 0.001  # selectors round a poll's timeout up to this


@dataclass
class Kill:
    """SIGKILL ``device``'s worker the first time it is running a task ``at`` seconds or later."""

    device: str
    at: float
    done: bool = False


@dataclass
class TaskOutcome:
    index: int
    model: str
    arrival: float
    deadline: float
    status: str = "pending"
    device: Optional[str] = None
    start: Optional[float] = None  # when the successful attempt was handed to its device (s into the run)
    end: Optional[float] = None  # when its result came back
    seconds: Optional[float] = None  # session.run on the device
    attempts: int = 0
    error: str = ""
    row: Optional[int] = None  # the workload file's data row; index is the order of arrival
    tried: list[str] = field(default_factory=list)  # every device an attempt was sent to, in order
    wait: Optional[float] = None  # start - arrival (s), of the successful attempt
    response: Optional[float] = None  # end - arrival (s)


@dataclass
class Counts:
    tasks: int = 0
    sent: int = 0
    completed: int = 0
    failed: int = 0
    redispatched: int = 0
    lost: int = 0
    duplicated: int = 0
    stale_results_ignored: int = 0
    devices_died: int = 0
    devices_joined: int = 0
    devices_restarted: int = 0  # workers the hang watchdog killed, started again
    devices_left_out: int = 0  # every model failed its warm-up there (a provider that cannot load)
    # tasks whose device had dropped the model's warm session (a Dask agent's session bound) and
    # made it again: their response includes the session creation
    sessions_remade: int = 0


@dataclass
class DispatchReport:
    fleet: str
    engine: str
    policy: str
    counts: Counts
    measured: dict[str, Any]  # Metrics of the real run (completed tasks)
    simulated: dict[str, Any]  # the simulator replaying the completed tasks with their measured times
    simulated_calibration: dict[str, Any]  # the simulator on the same tasks with the warm-up times
    gap: dict[str, float]  # measured / simulated for tps, awt, p95_wait, p99_wait, deadline_miss_rate
    overhead_us: dict[str, float]  # dispatcher's own cost per task, decision to send
    calibration: dict[str, dict[str, float]]  # model -> device type -> median seconds
    predicted: dict[str, dict[str, float]]  # what the policy was given
    predicted_source: str
    per_device: dict[str, dict[str, Any]]
    failures: list[str] = field(default_factory=list)
    outcomes: list[TaskOutcome] = field(default_factory=list)
    db: Optional[str] = None
    measurements_written: int = 0
    # about the inputs, once each: a predictor trained on features of another analyzer's schema
    warnings: list[str] = field(default_factory=list)

    def to_json_dict(self, with_tasks: bool = False) -> dict[str, Any]:
        from sniper_onnx.scheduling.api import finite

        data = asdict(self)
        if not with_tasks:
            data.pop("outcomes")
        return finite(data)


class StoppedRun:
    """What a run stopped partway kept: ``outcomes`` so far (``pending``: not finished; none when it
    stopped before the clock started) and how many measured times were ``stored`` in the database
    ``db`` (drained before the stop is raised). No report is made. Shared by Ctrl-C and errors, so
    the CLI keeps and says the same for both."""

    outcomes: list[TaskOutcome]
    stored: int
    db: Optional[str]

    def _keep(self, outcomes: list[TaskOutcome], stored: int, db: Optional[str]) -> None:
        self.outcomes, self.stored, self.db = outcomes, stored, db


class DispatchInterrupted(StoppedRun, KeyboardInterrupt):
    """Ctrl-C stopped a run (see :class:`StoppedRun`); or SIGTERM / SIGHUP, then ``signum`` is that
    signal's number (None for Ctrl-C)."""

    def __init__(self, outcomes: list[TaskOutcome], stored: int, db: Optional[str],
                 signum: Optional[int] = None) -> None:
        super().__init__("dispatch interrupted")
        self._keep(outcomes, stored, db)
        self.signum = signum


class DispatchStopped(StoppedRun, SniperError):
    """An error stopped a run after it began (an agent older than the dispatcher, met mid-run; see
    :class:`StoppedRun`). ``reason`` is the error; the message adds how many times were stored."""

    def __init__(self, reason: str, outcomes: list[TaskOutcome], stored: int, db: Optional[str]) -> None:
        super().__init__(reason + (f"; {stored} measured time(s) stored in {db}" if db else ""))
        self.reason = reason
        self._keep(outcomes, stored, db)


@dataclass
class _Device:
    spec: FleetDevice
    calibration: dict[str, float] = field(default_factory=dict)
    calibration_pending: set[str] = field(default_factory=set)
    live: bool = False
    ready: bool = False  # its agent answered (then it warms every model up, one at a time)
    left_out: bool = False  # every model failed its warm-up: out of the rotation
    restarts: int = 0
    warmup_errors: list[str] = field(default_factory=list)
    running: Optional[tuple[int, int]] = None  # (task index, attempt)
    busy_s: float = 0.0
    tasks: int = 0  # completed
    sent: int = 0
    failed: int = 0


def check_policy(name: str, idle_factor: Optional[float] = None) -> Any:
    from sniper_onnx.scheduling.policies import make_policy

    policy = make_policy(name, idle_factor)
    if policy.time_source in SIMULATOR_ONLY:
        raise SniperError(f"policy {name!r}: {SIMULATOR_ONLY[policy.time_source]}; for real dispatch use sniper, "
                          "sniper-idle, sniper-static, mct-pred, mvsp, mvsp-free (the same as mvsp here: calibration is paid before the run), "
                          "edf, edf-jsq, jsq or polling")
    return policy


def check_hang_timeout(seconds: float) -> None:
    """nan would switch the hang watchdog off without a word (no time compares above it)."""
    if not (math.isfinite(seconds) and seconds > 0):
        raise SniperError(f"--hang-timeout {seconds}: give a finite number of seconds > 0, e.g. 30")


def dispatch(
    fleet: Fleet,
    tasks: Sequence[DispatchTask],
    policy: str = "sniper",
    db: "str | Path | None" = None,
    deadline_factor: float = 3.0,
    calibration_repeats: int = 5,
    kills: Sequence[Kill] = (),
    engine: Any = None,
    ready_timeout_s: float = 120.0,
    orphan_timeout_s: float = 30.0,
    progress: Optional[ProgressHook] = None,
    hang_floor_s: float = 30.0,
    warn: Optional[WarnHook] = None,
    idle_factor: Optional[float] = None,
) -> DispatchReport:
    """Run ``tasks`` on ``fleet``'s devices with ``policy``; returns measured and simulated metrics.

    ``engine`` overrides the fleet's (tests pass a Dask client's engine). A device still running
    one task after ``max(hang_floor_s, HANG_FACTOR x`` its calibrated time for that model) is
    treated as hung: its worker is killed and the task re-dispatched like any dead device's.
    ``warn`` is given each of the report's ``warnings`` before the run starts (the CLI says them
    at once: a run takes minutes), and later warnings (a device left out of the rotation) as they
    happen. A task that hangs on ``MAX_TASK_HANGS`` devices is failed, not sent again; a worker the
    watchdog killed is started again (embedded engine). Each model's warm-up on a device is given
    ``hang_floor_s`` per run (its session and ``calibration_repeats + 1`` runs). ``idle_factor``
    replaces Sniper's (as ``simulate --idle-factor``). SIGTERM and SIGHUP stop the run as Ctrl-C
    does (in the main thread): :class:`DispatchInterrupted`, with the signal in ``signum``; the
    caller's own handlers for them are replaced while the run lasts and restored after."""
    from sniper_onnx.dispatch.engines import refuse_unguarded_main
    from sniper_onnx.scheduling.api import check_deadline_factor
    from sniper_profiler.runner import Terminated, terminate_as_interrupt

    refuse_unguarded_main()
    policy_object = check_policy(policy, idle_factor)
    check_deadline_factor(deadline_factor)
    check_hang_timeout(hang_floor_s)
    if not tasks:
        raise SniperError("no tasks to dispatch; give a workload with at least one row")
    models = sorted({task.model for task in tasks})
    unknown = [m for m in models if m not in fleet.models]
    if unknown:
        raise SniperError(f"model(s) {', '.join(unknown)} not in fleet {fleet.source}; add them under 'models:'")
    for kill in kills:
        fleet.device(kill.device)
    for name in models:
        check_model_file(fleet, name)
    # SIGTERM, SIGHUP (systemd, `timeout`, a closed terminal) as Ctrl-C: records kept, agents
    # stopped, the scratch copies of the models removed (they were left in /tmp)
    with terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix="sniper-dispatch-") as scratch:
        blobs = {name: model_bytes(fleet.models[name]) for name in models}
        # a predictor or mapping that cannot answer fails here, before any worker starts or warms up
        predictions, notes = ((None, []) if fleet.predicted_times or not fleet.predictor_devices
                              else _predictor_times(fleet, blobs))
        if warn:
            for note in notes:
                warn(note)
        engine = engine or _make_engine(fleet, blobs, Path(scratch))
        run = _Run(fleet, models, list(tasks), policy_object, engine, db, blobs, kills, progress)
        run.predictions, run.warnings, run.warn = predictions, notes, warn
        run.copies = {str(_copy_path(Path(scratch), name)): fleet.models[name].file
                      for name in models if fleet.models[name].file}
        run.hang_floor_s = hang_floor_s
        try:
            return run.execute(deadline_factor, calibration_repeats, ready_timeout_s, orphan_timeout_s)
        except KeyboardInterrupt as interrupt:
            run.close()  # stores every time measured so far before saying how many
            signum = interrupt.signum if isinstance(interrupt, Terminated) else None
            raise DispatchInterrupted(run.outcomes, run.written, run.db, signum) from None
        except SniperError as error:
            run.close()
            if not (run.started or run.written):
                raise  # refused before anything was measured: the error alone says it
            raise DispatchStopped(str(error), run.outcomes, run.written, run.db) from error
        finally:
            run.close()


def _make_engine(fleet: Fleet, blobs: dict[str, bytes], scratch: Path) -> Any:
    from sniper_onnx.dispatch.engines import DaskEngine, EmbeddedEngine

    if fleet.engine == "dask":
        return DaskEngine(fleet.scheduler, blobs, {d.name: d.agent_settings() for d in fleet.devices})
    paths = {}
    for name, blob in blobs.items():
        path = _copy_path(scratch, name)
        path.write_bytes(blob)
        paths[name] = str(path)
    return EmbeddedEngine(paths)


def _copy_path(scratch: Path, name: str) -> Path:
    """Where the embedded engine's agents read ``name``: a copy, so a file edited mid-run does not
    change what the run measures."""
    return scratch / f"{name.replace('/', '_')}.onnx"


class _Run:
    def __init__(self, fleet: Fleet, models: list[str], tasks: list[DispatchTask], policy: Any, engine: Any,
                 db: "str | Path | None", blobs: dict[str, bytes], kills: Sequence[Kill],
                 progress: Optional[ProgressHook]) -> None:
        self.fleet, self.models, self.policy, self.engine = fleet, models, policy, engine
        self.tasks = sorted(tasks, key=lambda task: task.arrival)
        self.devices = {d.name: _Device(d) for d in fleet.devices}
        self.types = fleet.device_types
        self.kills = list(kills)
        self.progress = progress
        self.counts = Counts(tasks=len(self.tasks))
        self.failures: list[str] = []
        self.outcomes: list[TaskOutcome] = []
        self.executions = np.zeros(len(self.tasks), dtype=np.int64)
        self.overhead = np.zeros(len(self.tasks))
        self.queued: set[int] = set()
        self.held: list[int] = []  # arrived while no device was up
        self.order: list[str] = []  # state index -> device name
        self.state: Any = None
        self.platform: Any = None
        self.started = False
        self.t0 = 0.0
        self.late: list[FleetDevice] = []
        self.dead: set[str] = set()
        self.hang_floor_s = 30.0
        self.hung: set[str] = set()  # killed for hanging; their "died" event is on its way
        self.repeats = 5
        self.predicted: dict[str, dict[str, float]] = {}
        self.predicted_source = "calibration"
        self.predictions: Optional[dict[str, dict[str, float]]] = None  # predictor's, mapped types only
        self.warnings: list[str] = []
        self.writer = _writer(db, fleet, blobs) if db else None
        self.copies: dict[str, str] = {}  # the agents' copy of a file model -> the fleet file's path
        self.db = str(db) if db else None
        self.written = 0
        self._closed = False
        self.warn: Optional[WarnHook] = None
        # warm-ups run one at a time over the whole fleet: timed together on shared cores they
        # contended and came out inverted (the fast device slower than the slow one)
        self.calibration_queue: list[tuple[str, str]] = []  # (device, model)
        self.calibrating: Optional[tuple[str, str, float]] = None  # (device, model, sent at: monotonic)
        self.restarting: set[str] = set()
        self.hangs: dict[int, list[str]] = {}  # task index -> the devices it hung on

    # --- phases -------------------------------------------------------------------------------
    def execute(self, deadline_factor: float, repeats: int, ready_timeout: float, orphan_timeout: float) -> DispatchReport:
        self.repeats = repeats
        # a model's warm-up: its session and repeats + 1 runs, each given the hang timeout
        self.warmup_limit_s = self.hang_floor_s * (repeats + 2)
        first = [d for d in self.fleet.devices if d.join_at <= 0]
        if not first:
            raise SniperError(f"{self.fleet.source}: every device has join_at > 0; let at least one start with the run")
        # a Dask device joins whenever its worker shows up; an embedded one when the dispatcher starts it
        self.late = [] if self.engine.name == "dask" else [d for d in self.fleet.devices if d.join_at > 0]
        for device in self.fleet.devices if self.engine.name == "dask" else first:
            self.engine.start(device)
        self._wait_until_up([d.name for d in first], ready_timeout)
        for device in self.devices.values():  # warmed up before a device that could run a model
            if device.live and self._at_fault(device):
                self._leave_out(device)
        if not any(d.live for d in self.devices.values()):
            left = "; ".join(line for line in self.failures if "left out" in line or " died: " in line) or "no device is up"
            raise SniperError(f"no device can run the models: {left}")
        self.predicted, self.predicted_source = self._predicted_times()
        self._make_outcomes(deadline_factor)
        self.started = True
        self.t0 = time.monotonic()
        self._rebuild()
        self._loop(orphan_timeout)
        return self._report()

    def _waiting_for(self, names: list[str]) -> list[str]:
        return [n for n in names if not self.devices[n].live and n not in self.dead and not self.devices[n].left_out]

    def _wait_until_up(self, names: list[str], timeout: float) -> None:
        """Until every device in ``names`` is up and warm (or dead, or left out). ``timeout`` is for
        its agent to answer; each model's warm-up then has its own limit (``warmup_limit_s``)."""
        limit = time.monotonic() + timeout
        while self._waiting_for(names):
            self._check_warmup(time.monotonic())
            down = [n for n in self._waiting_for(names) if not self.devices[n].ready]
            if down and time.monotonic() > limit:
                if not any(d.ready or d.live for d in self.devices.values()):
                    raise SniperError(f"no device came up within {timeout:.0f} s (waiting for {', '.join(down)}); "
                                      "check the agents (for Dask: python -m sniper_profiler.agent --scheduler ... --name NAME)")
                self.failures.append(f"devices not up after {timeout:.0f} s, running without them: {', '.join(down)}")
                names = [n for n in names if n not in down]
                continue
            for event in self.engine.poll(0.2):
                self._handle(event)

    def _make_outcomes(self, factor: float) -> None:
        reference = {m: float(np.mean([self._calibrated(m, t) for t in self.types])) for m in self.models}
        for index, task in enumerate(self.tasks):
            deadline = task.deadline if task.deadline is not None else task.arrival + factor * reference[task.model]
            self.outcomes.append(TaskOutcome(index, task.model, task.arrival, deadline, row=task.row))

    # --- the loop -----------------------------------------------------------------------------
    def _loop(self, orphan_timeout: float) -> None:
        cursor, total = 0, len(self.tasks)
        finished_before = -1
        orphan_since: Optional[float] = None
        while True:
            now = self._now()
            self._join_late(now)
            self._apply_kills(now)
            self._kill_hung_devices(now)
            self._check_warmup(time.monotonic())
            while cursor < total and self.tasks[cursor].arrival <= now:
                self._arrive(cursor)
                cursor += 1
                # as in the simulator: an idle device takes work at each arrival, not after a batch
                # of them, so the replay comparison measures transport and not a different order
                self._start_free_devices()
            self._start_free_devices()
            finished = self.counts.completed + self.counts.failed
            if self.progress and finished != finished_before:
                self.progress(finished, total)
                finished_before = finished
            if finished == total:
                return
            if not any(d.live for d in self.devices.values()) and not self._joins_pending():
                orphan_since = orphan_since if orphan_since is not None else now
                if now - orphan_since > orphan_timeout:
                    self._fail_orphans(f"no live device for {orphan_timeout:.0f} s")
                    continue
            else:
                orphan_since = None
            wait = 0.05 if cursor >= total else min(max(self.tasks[cursor].arrival - now, 0.0), 0.05)
            for event in self._poll_until_arrival(wait):
                self._handle(event)

    def _poll_until_arrival(self, wait: float) -> list:
        """The engine's events within ``wait`` seconds, returning close to that time. A poll's timeout
        is whole milliseconds rounded up (``selectors``), so an arrival 0.2 ms away woke the loop up
        to 1 ms late (an idle fleet waited 1.1 ms a task); the last 2 ms go by short sleeps."""
        if wait >= FINE_WAIT_S:
            return self.engine.poll(wait - POLL_GRANULARITY_S)
        events = self.engine.poll(0.0)
        if not events and wait > 0:
            time.sleep(min(wait, FINE_SLEEP_S))
        return events

    def _now(self) -> float:
        return time.monotonic() - self.t0

    def _joins_pending(self) -> bool:
        return (bool(self.late) or bool(self.restarting)
                or any(d.calibration_pending for d in self.devices.values()))

    def _join_late(self, now: float) -> None:
        for device in [d for d in self.late if d.join_at <= now]:
            self.late.remove(device)
            self.engine.start(device)

    def _apply_kills(self, now: float) -> None:
        for kill in self.kills:
            if not kill.done and now >= kill.at and self.devices[kill.device].running is not None:
                kill.done = True
                self.engine.kill(kill.device)

    def _kill_hung_devices(self, now: float) -> None:
        """A device that stays alive but never answers would hold its task forever. Its worker is
        killed and (embedded) started again; the task is sent again unless it has now hung on
        ``MAX_TASK_HANGS`` devices, then it fails: it hangs wherever it runs."""
        for name, device in self.devices.items():
            if device.running is None or name in self.hung:
                continue
            outcome = self.outcomes[device.running[0]]
            limit = max(self.hang_floor_s, HANG_FACTOR * device.calibration.get(outcome.model, 0.0))
            if outcome.start is not None and now - outcome.start > limit:
                from sniper_onnx.dispatch.engines import Event

                self.hung.add(name)
                self.engine.kill(name)
                hung_on = self.hangs.setdefault(outcome.index, [])
                hung_on.append(name)
                what = "task re-dispatched"
                if len(hung_on) >= MAX_TASK_HANGS:
                    device.running = None  # failed here, not put back in the queue by _on_died
                    outcome.status, outcome.end = STATUS_FAILED, now
                    where = (f"on {len(hung_on)} devices ({', '.join(hung_on)})" if len(set(hung_on)) == len(hung_on)
                             else f"{len(hung_on)} times ({', '.join(hung_on)})")
                    outcome.error = (f"{outcome.model} hung {where}; over {limit:.1f} s each, --hang-timeout; "
                                     "not sent again")
                    self.counts.failed += 1
                    device.failed += 1
                    self.failures.append(f"task {outcome.index}: {outcome.error}")
                    what = "task failed"
                # A stopped process may never report its death: take it as dead now.
                self._on_died(Event("died", name, payload=f"hung: task {outcome.index} ran {now - outcome.start:.1f} s "
                                                          f"(limit {limit:.1f} s); killed, {what}"))
                self._restart(name)

    def _restart(self, name: str) -> None:
        """Start again a worker the dispatcher killed (embedded: a Dask agent is its host's to start)."""
        device = self.devices[name]
        if self.engine.name != "embedded" or device.restarts >= MAX_RESTARTS:
            if self.engine.name == "embedded":
                self.failures.append(f"device {name}: killed {device.restarts + 1} times; not started again")
            return
        device.restarts += 1
        self.counts.devices_restarted += 1
        self.dead.discard(name)  # its new process's death, if it comes, is a death again
        self.hung.discard(name)
        self.restarting.add(name)
        self.engine.start(device.spec)

    def _check_warmup(self, now: float) -> None:
        """A model whose warm-up never ends (a Loop that runs forever) held the run silently for the
        ready timeout, then "no device came up". Before the run: one error naming both; during it
        (a device joining or started again): that device is killed and left out."""
        if self.calibrating is None:
            return
        name, model, since = self.calibrating
        if now - since <= self.warmup_limit_s:
            return
        reason = (f"device {name}: warming up model {model} did not finish in {self.warmup_limit_s:g} s "
                  f"(--hang-timeout {self.hang_floor_s:g} s x {self.repeats + 2}: its session and "
                  f"{self.repeats + 1} runs)")
        if not self.started:
            raise SniperError(f"{reason}; check that model (a Loop that never ends?) or give a larger --hang-timeout")
        from sniper_onnx.dispatch.engines import Event

        self.hung.add(name)
        self.engine.kill(name)
        self._on_died(Event("died", name, payload=f"{reason}; killed, not started again"))

    def _arrive(self, index: int) -> None:
        if self.state is None:
            self.held.append(index)
            return
        began = time.perf_counter()
        self.state.now = self._now()
        self.state.submit(self._stask(index))
        self.queued.add(index)
        self.overhead[index] += time.perf_counter() - began

    def _start_free_devices(self) -> None:
        if self.state is None:
            return
        for position, name in enumerate(self.order):
            device = self.devices[name]
            if device.running is None and self.state.has_queued(position):
                self._send(position, device)

    def _send(self, position: int, device: _Device) -> None:
        began = time.perf_counter()
        self.state.now = self._now()
        index = self.state.start_next(position).task_id
        outcome = self.outcomes[index]
        outcome.attempts += 1
        outcome.tried.append(device.spec.name)
        device.sent += 1
        device.running = (index, outcome.attempts)
        # start is the hand-over, read before send returns: the device may run the task while send
        # is still returning (or the dispatcher is descheduled), so a later reading would cut that
        # out of end - start and count it as wait
        outcome.start = self._now()
        self.engine.send(device.spec.name, index, outcome.attempts, outcome.model, self.tasks[index].input)
        self.overhead[index] += time.perf_counter() - began
        self.queued.discard(index)
        outcome.device = device.spec.name
        self.counts.sent += 1

    # --- events -------------------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        handler = {"ready": self._on_ready, "calibrated": self._on_calibrated, "result": self._on_result,
                   "died": self._on_died}[event.kind]
        handler(event)

    def _on_ready(self, event: Any) -> None:
        device = self.devices[event.device]
        self.dead.discard(event.device)
        self.hung.discard(event.device)  # back (a Dask agent its host started again): watched for hangs again
        device.ready, device.left_out = True, False
        device.warmup_errors = []
        device.calibration_pending = set(self.models)
        self.calibration_queue.extend((device.spec.name, model) for model in self.models)
        self._next_warmup()

    def _next_warmup(self) -> None:
        """One model's warm-up at a time over the fleet (see ``calibration_queue``)."""
        while self.calibrating is None and self.calibration_queue:
            name, model = self.calibration_queue.pop(0)
            if model in self.devices[name].calibration_pending:
                self.calibrating = (name, model, time.monotonic())
                self.engine.calibrate(name, model, self.repeats)

    def _on_calibrated(self, event: Any) -> None:
        device = self.devices[event.device]
        device.calibration_pending.discard(event.model)
        if self.calibrating is not None and self.calibrating[:2] == (event.device, event.model):
            self.calibrating = None
        self._next_warmup()
        result = event.payload
        if result.get("status") == STATUS_OK:
            device.calibration[event.model] = float(result["median_s"])
            if self.writer:
                # the median of the timed runs (an agent that does not say how many ran the ones asked)
                count = int(result.get("count") or self.repeats)
                self.writer.put(("calibration", event.model, device.spec, float(result["median_s"]), None, count))
        else:
            error = self._user_paths(str(result.get('error')))
            device.warmup_errors.append(error)
            self.failures.append(f"{event.model} on {event.device}: {error}")
        if not device.calibration_pending:
            restarted = event.device in self.restarting
            self.restarting.discard(event.device)
            if self._at_fault(device):
                self._leave_out(device)
                return
            device.live = True
            if self.started:
                if not restarted:
                    self.counts.devices_joined += 1
                self._rebuild()

    def _at_fault(self, device: _Device) -> bool:
        """Every model failed its warm-up on ``device``, and the device is to blame: its provider
        did not load, or another device warmed some model up. Such a device failed every task at
        once and so looked free again at once: a policy sent it nearly all of them. A model that
        fails everywhere is the model's fault (generated inputs; a task's own may run): kept."""
        if device.calibration or not device.warmup_errors:
            return False
        provider = any("did not load" in error or "ProviderUnavailable" in error for error in device.warmup_errors)
        return provider or any(d.calibration for d in self.devices.values() if d is not device)

    def _leave_out(self, device: _Device) -> None:
        device.left_out, device.live = True, False
        self.counts.devices_left_out += 1
        self._warn(f"device {device.spec.name}: left out of the run, every model failed its warm-up "
                   f"({device.warmup_errors[0][:200]})")

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.failures.append(message)
        if self.warn:
            self.warn(message)

    def _on_result(self, event: Any) -> None:
        device = self.devices[event.device]
        result = event.payload
        index, attempt = int(result["task_id"]), int(result["attempt"])
        if device.running != (index, attempt) or self.outcomes[index].status != "pending":
            self.counts.stale_results_ignored += 1
            if result["status"] == STATUS_OK and self.outcomes[index].status == STATUS_OK:
                self.counts.duplicated += 1
            return
        device.running = None
        outcome = self.outcomes[index]
        outcome.end = self._now()
        self.state.now = outcome.end
        position = self.order.index(device.spec.name)
        if result["status"] == STATUS_OK:
            seconds = float(result["seconds"])
            self.state.finish(position, self._stask(index), seconds)
            outcome.status, outcome.seconds = STATUS_OK, seconds
            device.busy_s += seconds
            device.tasks += 1
            self.executions[index] += 1
            self.counts.completed += 1
            self.counts.sessions_remade += int(bool(result.get("session_created")))
            if self.writer:
                self.writer.put(("task", outcome.model, device.spec, seconds, f"{index}:{attempt}", 1))
        else:
            self.state.finish(position, None, 0.0)
            outcome.status = STATUS_FAILED
            outcome.error = f"{outcome.model} on {device.spec.name}: {self._user_paths(str(result['error']))}"
            self.counts.failed += 1
            device.failed += 1
            self.failures.append(f"task {index}: {outcome.error}")

    def _on_died(self, event: Any) -> None:
        if event.device in self.dead:
            return  # already taken as dead (hung, then its worker's exit arrived)
        device = self.devices[event.device]
        device.calibration_pending.clear()
        self.restarting.discard(event.device)
        if self.calibrating is not None and self.calibrating[0] == event.device:
            self.calibrating = None
        self.calibration_queue = [item for item in self.calibration_queue if item[0] != event.device]
        self._next_warmup()
        was_live = device.live
        device.live = device.ready = False
        self.dead.add(event.device)
        self.counts.devices_died += 1
        self.failures.append(f"device {event.device} died: {event.payload}")
        if device.running is not None:
            index, _ = device.running
            device.running = None
            self.queued.add(index)
            self.counts.redispatched += 1
        if was_live and self.started:
            self._rebuild()

    def _user_paths(self, error: str) -> str:
        """onnxruntime names the file it loaded, the agents' temporary copy: the user knows theirs."""
        for copy, original in self.copies.items():
            error = error.replace(copy, original)
        return error

    def _fail_orphans(self, reason: str) -> None:
        for index in sorted(self.queued) + self.held:
            outcome = self.outcomes[index]
            outcome.status, outcome.error = STATUS_FAILED, reason
            self.counts.failed += 1
        self.failures.append(f"{len(self.queued) + len(self.held)} task(s) failed: {reason}")
        self.queued.clear()
        self.held.clear()

    # --- state over the live devices ----------------------------------------------------------
    def _stask(self, index: int) -> Any:
        from sniper_onnx.scheduling.workload import Task

        outcome = self.outcomes[index]
        return Task(index, self.models.index(outcome.model), outcome.arrival, outcome.deadline, 1.0)

    def _rebuild(self) -> None:
        """A DispatchState over the live devices: running tasks stay, queued tasks are placed again."""
        from sniper_onnx.scheduling.state import FIRST, DispatchState

        live = [d for d in self.fleet.devices if self.devices[d.name].live]
        live.sort(key=lambda d: self.types.index(d.type))
        old = self.state
        if not live:
            self.state, self.order = None, []
            self.held.extend(sorted(self.queued))
            self.queued.clear()
            return
        counts = {t: sum(1 for d in live if d.type == t) for t in self.types}
        if self.predicted_source == "calibration":  # a device type that just joined brings its own times
            self.predicted = {m: {t: self._calibrated(m, t) for t in self.types} for m in self.models}
        self.platform = self._platform(counts)
        self.state = DispatchState(self.platform, self.policy)
        self.state.now = self._now() if self.started else 0.0
        if hasattr(self.state.time_source, "stale_decay"):
            self.state.time_source.stale_decay = STALE_DECAY
        _carry_learning(old, self.state)
        self._record_measurements()
        self.order = [d.name for d in live]
        for position, name in enumerate(self.order):
            running = self.devices[name].running
            if running is not None:
                estimate = float(self.state.estimates(self._stask(running[0]))[position])
                self.state.enqueue(position, FIRST, estimate, self._stask(running[0]))
                self.state.start_next(position)
        waiting = sorted(self.queued | set(self.held), key=lambda i: (self.outcomes[i].arrival, i))
        self.queued.clear()
        self.held.clear()
        for index in waiting:
            self.state.submit(self._stask(index))
            self.queued.add(index)

    def _record_measurements(self) -> None:
        """MVSP's measured times are the calibration runs."""
        for m, model in enumerate(self.models):
            for t, dtype in enumerate(self.types):
                if self.state.missing_types(m) and t in self.state.missing_types(m):
                    self.state.record_measurement(m, t, self._calibrated(model, dtype))

    def _calibrated(self, model: str, dtype: str) -> float:
        values = [d.calibration[model] for d in self.devices.values() if d.spec.type == dtype and model in d.calibration]
        if values:
            return float(np.median(values))
        known = [d.calibration[model] for d in self.devices.values() if model in d.calibration]
        return float(np.median(known)) if known else 1.0

    def _platform(self, counts: dict[str, int]) -> Any:
        from sniper_onnx.scheduling.platform import platform_from_dict

        true = {m: {t: self._calibrated(m, t) for t in self.types} for m in self.models}
        return platform_from_dict({"name": self.fleet.name, "devices": counts, "true_times": true,
                                   "predicted_times": self.predicted}, source=self.fleet.source)

    def _predicted_times(self) -> tuple[dict[str, dict[str, float]], str]:
        table = self.fleet.predicted_times
        if table:
            missing = [(m, t) for m in self.models for t in self.types if t not in table.get(m, {})]
            if missing:
                raise SniperError(f"{self.fleet.source}: predicted_times lacks {missing[0][0]} on {missing[0][1]}; "
                                  "give every model x device type, or drop the table to use the predictor")
            return {m: {t: table[m][t] for t in self.types} for m in self.models}, "fleet file"
        if self.predictions is not None:  # device types not mapped to the predictor get the calibration
            return {m: {t: self.predictions[m].get(t) or self._calibrated(m, t) for t in self.types}
                    for m in self.models}, "predictor"
        return {m: {t: self._calibrated(m, t) for t in self.types} for m in self.models}, "calibration"

    # --- the end ------------------------------------------------------------------------------
    def _report(self) -> DispatchReport:
        done = [o for o in self.outcomes if o.status == STATUS_OK]
        for o in done:
            o.wait, o.response = o.start - o.arrival, o.end - o.arrival
        self.counts.lost = sum(1 for o in self.outcomes if o.status == "pending")
        for kill in self.kills:
            if not kill.done:  # the run ended first, or the device never ran a task after that time
                self._warn(f"--kill {kill.device}@{kill.at:g} never fired: {kill.device} ran no task at or after "
                           f"{kill.at:g} s (the run's last result came at {self._now():.1f} s)")
        self.counts.duplicated += int((self.executions > 1).sum())
        measured = self._measured_metrics(done)
        first_up = {t: sum(1 for d in self.fleet.devices if d.type == t and d.join_at <= 0) for t in self.types}
        counts = first_up if sum(first_up.values()) else {t: 1 for t in self.types}
        simulated = self._simulate(done, counts, replay=True)
        simulated_calibration = self._simulate(done, counts, replay=False)
        gap = {key: _ratio(measured.get(key), simulated.get(key))
               for key in ("tps", "awt", "p95_wait", "p99_wait", "mean_response", "deadline_miss_rate")}
        sent = self.overhead[[o.index for o in self.outcomes if o.attempts > 0]] * 1e6
        overhead = {"median": float(np.median(sent)) if len(sent) else 0.0,
                    "p95": float(np.percentile(sent, 95)) if len(sent) else 0.0}
        written = self.written = self.writer.close() if self.writer else 0  # close() writes no more
        if self.writer:  # a time that could not be stored is said, not dropped silently
            self.failures += [f"not stored in {self.db}: {error}" for error in self.writer.errors]
            if self.writer.dropped:
                self.failures.append(f"{self.writer.dropped} measurement(s) not stored in {self.db}: "
                                     "the database writer stopped")
        self.writer = None
        per_device = {name: {"type": d.spec.type, "tasks": d.tasks, "sent": d.sent, "failed": d.failed,
                             "busy_s": d.busy_s, "left_out": d.left_out, "live_at_end": d.live,
                             "calibration_s": d.calibration, "pid": getattr(self.engine, "pids", {}).get(name)}
                      for name, d in self.devices.items()}
        calibration = {m: {t: self._calibrated(m, t) for t in self.types} for m in self.models}
        return DispatchReport(
            fleet=self.fleet.name, engine=getattr(self.engine, "name", "?"), policy=self.policy.name,
            counts=self.counts, measured=measured, simulated=simulated, simulated_calibration=simulated_calibration,
            gap=gap, overhead_us=overhead,
            calibration=calibration, predicted=self.predicted, predicted_source=self.predicted_source,
            per_device=per_device, failures=self.failures, outcomes=self.outcomes, db=self.db,
            measurements_written=written, warnings=self.warnings,
        )

    def _simulate(self, done: list[TaskOutcome], counts: dict[str, int], replay: bool) -> dict[str, Any]:
        """The simulator on the completed tasks. ``replay``: true times are this run's own medians
        per model x device type and each task carries its measured deviation from that median as
        its noise (what the simulator's oracle knows), so the gap left is scheduling, transport and
        interference; otherwise the warm-up calibration, as known before the run."""
        from sniper_onnx.scheduling.platform import platform_from_dict
        from sniper_onnx.scheduling.simulator import simulate

        if not done:
            return {}
        true = {m: {t: self._calibrated(m, t) for t in self.types} for m in self.models}
        noise = [1.0] * len(done)
        if replay:
            runs: dict[tuple[str, str], list[float]] = {}
            for outcome in done:
                runs.setdefault((outcome.model, self.devices[outcome.device].spec.type), []).append(outcome.seconds)
            for (model, dtype), values in runs.items():
                true[model][dtype] = max(float(np.median(values)), 1e-9)
            noise = [max(o.seconds, 1e-9) / true[o.model][self.devices[o.device].spec.type] for o in done]
        platform = platform_from_dict({"name": self.fleet.name, "devices": counts, "true_times": true,
                                       "predicted_times": self.predicted}, source=self.fleet.source)
        tasks = [replace(self._stask(o.index), task_id=i, noise=n) for i, (o, n) in enumerate(zip(done, noise))]
        return simulate(platform, self.policy.name, tasks).metrics.to_json_dict()

    def _measured_metrics(self, done: list[TaskOutcome]) -> dict[str, Any]:
        """Over the completed tasks (as the simulator's), plus ``failed`` and
        ``deadline_miss_rate_with_failed``: failed tasks counted as missed, over every finished task."""
        failed = sum(1 for o in self.outcomes if o.status == STATUS_FAILED)
        if not done:
            return {"tasks": 0, "failed": failed, "deadline_miss_rate_with_failed": 1.0 if failed else float("nan")}
        arrival = np.array([o.arrival for o in done])
        start = np.array([o.start for o in done])
        end = np.array([o.end for o in done])
        wait = start - arrival
        makespan = max(float(end.max() - arrival.min()), 1e-12)
        busy = np.array([d.busy_s for d in self.devices.values()])
        return {
            "tasks": len(done), "tps": len(done) / makespan, "awt": float(wait.mean()),
            "p95_wait": float(np.percentile(wait, 95)), "p99_wait": float(np.percentile(wait, 99)),
            "mean_response": float((end - arrival).mean()),
            "deadline_miss_rate": float(np.mean(end > np.array([o.deadline for o in done]))),
            "failed": failed,
            "deadline_miss_rate_with_failed": float((np.sum(end > np.array([o.deadline for o in done])) + failed)
                                                    / (len(done) + failed)),
            "utilization": [float(b / makespan) for b in busy], "makespan": makespan,
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:  # a second Ctrl-C while the writer drains must not leave the agents running
            if self.writer:
                self.written = self.writer.close()
        finally:
            self.engine.close()


def _ratio(measured: Any, simulated: Any) -> float:
    if not isinstance(measured, (int, float)) or not isinstance(simulated, (int, float)) or simulated == 0:
        return float("nan")
    return float(measured) / float(simulated)


def _carry_learning(old: Any, new: Any) -> None:
    """Keep what the time source learned from finished tasks when the device set changes (its
    corrections are per model x device type, so they do not depend on which nodes are up)."""
    if old is None:
        return
    source, target = old.time_source, new.time_source
    if hasattr(source, "_ratio") and hasattr(target, "_ratio"):
        target._ratio[:] = source._ratio
        target._count[:] = source._count
        for model in range(target._table.shape[0]):
            target._per_device[model] = (target._table[model] * target._ratio[model])[target._device_type]


def _predictor_times(fleet: Fleet, blobs: dict[str, bytes]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """model -> device type -> the predictor's seconds, for the types ``predictor_devices`` maps;
    and the predictor file's own warnings (a feature schema other than the analyzer's), once each."""
    import onnx

    from sniper_onnx.predictors.commands import FIX_THE_EXPORT, analyze_for_prediction
    from sniper_onnx.scheduling.predicted import choose_predictor

    predictor, names = choose_predictor(fleet.predictor, fleet.predictor_devices, fleet.source)
    models = list(blobs)
    networks = [analyze_for_prediction(onnx.load_from_string(blobs[m]), m, remedy=FIX_THE_EXPORT) for m in models]
    features, kernels = [n.features for n in networks], [n.kernel_table for n in networks]
    table: dict[str, dict[str, float]] = {m: {} for m in models}
    notes: dict[str, None] = {}  # every predict() repeats the file's warnings: kept once, in order
    for dtype, name in names.items():
        answer = predictor.predict(features, [name], models, kernel_tables=kernels)
        notes.update(dict.fromkeys(answer.predictor_warnings))
        for row in answer.rows:
            table[row.network][dtype] = float(row.seconds)
    return table, list(notes)


def _writer(db: "str | Path", fleet: Fleet, blobs: dict[str, bytes]) -> Any:
    from sniper_onnx.dispatch.feedback import MeasurementWriter

    return MeasurementWriter(db, fleet, blobs)
