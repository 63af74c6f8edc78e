"""The profiling farm: nets spread over a fleet's devices, each measured once per device type,
stored in the Network Characteristic Database as they finish. Same engines as dispatch.

Each measurement is the profiler's own (``sniper_profiler.measure``: warm-up, sessions timed in
turns, the confidence-interval stopping rule of a :class:`ProfileConfig`), run by the device's
agent on sessions made for that net alone; the median and its statistics are stored, source
``fleet-profile``. Threads, graph optimization and provider are the fleet file's, per device.
A device that dies hands its net back to another device of its type; a net that fails or runs
past the timeout is reported and the farm goes on.

Nets are read (or generated) only when a device is about to need them, a few at a time, and
dropped once every device type has measured them: a farm of thousands of nets holds a handful.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from sniper_onnx.dispatch.feedback import BackgroundDbWriter
from sniper_onnx.dispatch.fleet import Fleet, FleetDevice, self_contained_bytes
from sniper_onnx.errors import SniperError

ProgressHook = Callable[[int, int], None]

# a farm device's states (_Farm.state)
STARTING, UP, KILLED, RESTARTING, GONE = "starting", "up", "killed", "restarting", "gone"

# ProfileConfig fields the agents measure with (the stopping rule and the inputs); the device's
# provider, threads and graph optimization come from the fleet file instead
MEASUREMENT_FIELDS = ("input_shapes", "default_dim", "warmup", "min_repeats", "max_repeats", "max_time_s",
                      "min_time_s", "sessions", "burst_s", "target_relative_ci", "confidence", "seed")


@dataclass
class FleetProfileSummary:
    fleet: str
    db: str
    nets: int
    device_types: list[str]
    measured: int = 0
    failed: int = 0
    stored: int = 0
    redispatched: int = 0
    timed_out: int = 0
    per_device: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # (net, device type) pairs the database already held from an earlier run
    # "b: same bytes as a": nets whose bytes an earlier net of this run has (one record key per
    # bytes and device type): measured once, stored once, under the first net's name
    same_bytes: list[str] = field(default_factory=list)
    already_stored: int = 0  # medians the database held by the time they were written (another run)
    failures: list[str] = field(default_factory=list)
    store_errors: list[str] = field(default_factory=list)
    flagged: dict[str, list[str]] = field(default_factory=dict)  # flag -> "net on type" it marks


def profile_fleet(fleet: Fleet, jobs: Sequence[Any], db: "str | Path", config: Any = None,
                  ready_timeout_s: float = 120.0, progress: Optional[ProgressHook] = None,
                  in_flight: int = 0) -> FleetProfileSummary:
    """Measure every job (``sniper_onnx.database.collect.CollectJob``: a file or a ``make()``) on
    one device of every device type of ``fleet`` with ``config`` (a ``ProfileConfig``; its
    stopping rule, inputs and ``timeout_s``); store each median in ``db`` as it arrives.

    At most ``in_flight`` nets (default: twice the devices, at least 4) are held at once.
    Resumable: each median is stored under :func:`profile_key`, so a rerun with the same settings
    skips what ``db`` already holds and stores nothing twice."""
    from sniper_onnx.dispatch.engines import refuse_unguarded_main
    from sniper_profiler.config import ProfileConfig

    refuse_unguarded_main()
    config = config or ProfileConfig()
    check_farm_config(fleet, config)  # the one check: the CLI leaves it here (nets open lazily, after it)
    if not jobs:
        raise SniperError("nothing to profile; pass .onnx files, --generate N or --zoo")
    jobs = unique_names(jobs)
    summary = FleetProfileSummary(fleet.name, str(db), len(jobs), fleet.device_types)
    writer = FarmWriter(db, fleet)
    window = in_flight or max(4, 2 * len(fleet.devices))
    from sniper_profiler.runner import terminate_as_interrupt

    # SIGTERM, SIGHUP (systemd, `timeout`, a closed terminal) as Ctrl-C: the agents stopped, the
    # scratch folder removed, the medians kept (it was left in /tmp, ~100 MB with a ResNet50)
    try:  # the writer is closed (and its records counted) whatever fails, the engine's start included
        with terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix="sniper-farm-") as scratch:
            farm = _Farm(fleet, jobs, db, measurement_settings(config), float(config.timeout_s), Path(scratch),
                         summary, writer, progress, window)
            try:
                farm.run(ready_timeout_s)
            finally:
                farm.engine.close()
    except SniperError as error:
        _close_writer(writer, summary)
        if not summary.measured:
            raise  # refused before anything was measured: the error alone says it
        raise FarmStopped(str(error), summary) from error
    finally:
        _close_writer(writer, summary)
    return summary


class FarmStopped(SniperError):
    """An error stopped the farm partway (an agent older than the dispatcher, met mid-run):
    ``summary`` is what it measured and stored by then; the message adds how many medians were
    stored, and that a rerun resumes."""

    def __init__(self, reason: str, summary: FleetProfileSummary) -> None:
        super().__init__(f"{reason}; {_stored(summary)}; running the same command again resumes (it skips them)")
        self.reason, self.summary = reason, summary


def _stored(summary: FleetProfileSummary) -> str:
    errors = summary.store_errors
    first = " ".join(errors[0].split()) if errors else ""  # a database's error text may span lines
    not_stored = f", {len(errors)} not stored (first: {first})" if errors else ""
    return f"{summary.stored} median(s) stored in {summary.db}{not_stored}"


def _close_writer(writer: "FarmWriter", summary: FleetProfileSummary) -> None:
    """Wait for the writer to store what it was given, and count it. Called on an error before its
    message counts the medians, and again in ``finally``: close() is idempotent."""
    summary.stored = writer.close()
    summary.already_stored = writer.already
    summary.store_errors = list(writer.errors)
    if writer.dropped:
        summary.store_errors.append(f"{writer.dropped} median(s) not stored: the database writer stopped")


def measurement_settings(config: Any) -> dict[str, Any]:
    """What the agents measure with: ``config``'s stopping rule and inputs."""
    data = config.to_dict()
    return {name: data[name] for name in MEASUREMENT_FIELDS}


def check_farm_config(fleet: Fleet, config: Any) -> None:
    """Refuse what the farm cannot honour, and settings a device type's own would make invalid."""
    from sniper_profiler.config import ProfileConfig, ProfilerError

    refuse_unsupported(config)
    measurement = measurement_settings(config)
    for device in _one_device_per_type(fleet):
        try:
            ProfileConfig(provider=device.provider, threads=device.threads, graph_optimization=device.opt_level,
                          **measurement)
        except ProfilerError as error:
            raise SniperError(f"{fleet.source}: device type {device.type} (threads {device.threads}): {error}") from None


def refuse_unsupported(config: Any) -> None:
    """The profiler's options the farm cannot honour, each refused with what to do instead."""
    refused = (
        (config.passes != 1, f"--passes {config.passes} with --fleet: the farm measures each net once per device "
                             "type; run it again into another --db, or profile on each device with --passes"),
        (config.max_busy is not None, "--max-busy with --fleet: a fleet's devices may share a host and would wait on "
                                      "each other; profile on each device with sniper-onnx profile --max-busy"),
        (config.memory_limit_gb is not None, "--memory-limit with --fleet: an agent is one long-lived process for "
                                             "every net; profile on the device with sniper-onnx profile --memory-limit"),
        (config.precision != "fp32", f"--precision {config.precision} with --fleet: fleet devices have no "
                                     "precision setting; profile on the device with sniper-onnx profile --precision"),
        (bool(config.provider_options), "--provider-option with --fleet: fleet devices have no provider options; "
                                        "profile on the device with sniper-onnx profile --provider-option"),
    )
    for bad, message in refused:
        if bad:
            raise SniperError(message)


def check_device_options(fleet: Fleet, provider: Optional[str] = None, threads: Optional[int] = None,
                         opt_level: Optional[str] = None) -> None:
    """``--provider``, ``--threads``, ``--opt-level`` with ``--fleet``: the fleet file sets them per
    device, so a value given on the command line must be every device's, or it is refused."""
    from sniper_profiler.config import PROVIDER_ALIASES

    given = (("--provider", "provider", provider, PROVIDER_ALIASES.get((provider or "").lower(), provider)),
             ("--threads", "threads", threads, threads), ("--opt-level", "opt_level", opt_level, opt_level))
    for option, key, text, value in given:
        differ = [d for d in fleet.devices if value is not None and getattr(d, key) != value]
        if differ:
            shown = ", ".join(f"{d.name}: {getattr(d, key)}" for d in differ[:4]) + (" ..." if len(differ) > 4 else "")
            raise SniperError(f"{option} {text} with --fleet: the fleet file sets {key} per device ({shown}); "
                              f"set it there, or drop {option}")


def _one_device_per_type(fleet: Fleet) -> list[FleetDevice]:
    return [next(d for d in fleet.devices if d.type == dtype) for dtype in fleet.device_types]


def profile_key(fleet: Fleet, dtype: str, blob: bytes, measurement: Optional[dict[str, Any]] = None) -> str:
    """The record key of a net's median on a device type: the same fleet, type, device settings,
    measurement settings and bytes give the same key, so the database keeps one (``INSERT OR
    IGNORE``) and a rerun can skip it; other settings measure again."""
    settings = sorted({(d.provider, d.threads, d.opt_level) for d in fleet.devices if d.type == dtype})
    digest = hashlib.sha256(blob).hexdigest()
    text = ";".join(f"{p},{t},{o}" for p, t, o in settings)
    rule = hashlib.sha256(json.dumps(measurement or {}, sort_keys=True).encode()).hexdigest()[:16]
    return f"fleet-profile:{fleet.name}:{dtype}:{text}:{rule}:{digest}"


def unique_names(jobs: Sequence[Any]) -> list[Any]:
    """Jobs are keyed by name, and files from different folders share stems (a/net.onnx,
    b/net.onnx): name those by their parent folder too, then by a counter, so none is dropped."""
    counts = Counter(job.name for job in jobs)
    taken: set[str] = set()
    out = []
    for job in jobs:
        name = job.name
        if counts[name] > 1 and job.path:
            name = f"{Path(job.path).parent.name}/{name}"
        base, index = name, 2
        while name in taken:
            name, index = f"{base}~{index}", index + 1
        taken.add(name)
        out.append(job if name == job.name else replace(job, name=name))
    return out


def _blob(job: Any) -> bytes:
    if job.path:
        try:
            return self_contained_bytes(job.path)
        except OSError as error:
            raise SniperError(f"{job.name}: could not read {job.path} ({error.strerror or error})") from None
    try:
        return job.make().SerializeToString()
    except Exception as error:  # noqa: BLE001
        raise SniperError(f"{job.name}: could not build it ({type(error).__name__}: {error})") from None


@dataclass
class _Net:
    """A net held while some device type still has to measure it."""

    name: str
    source: dict[str, Any]
    path: Path  # the scratch copy the agents load (embedded) and the database reads
    keys: dict[str, str]  # device type -> record key
    left: list[str]  # device types not yet handed it
    running: set[str] = field(default_factory=set)  # device types measuring it now


@dataclass
class _Assignment:
    net: str
    started: float


class _Farm:
    """One farm run: hands nets out as devices free up, opening nets only as they are needed."""

    def __init__(self, fleet: Fleet, jobs: list[Any], db: "str | Path", measurement: dict[str, Any],
                 timeout_s: float, scratch: Path, summary: FleetProfileSummary, writer: "FarmWriter",
                 progress: Optional[ProgressHook], window: int) -> None:
        self.fleet, self.db, self.measurement, self.timeout_s = fleet, db, measurement, timeout_s
        self.scratch, self.summary, self.writer, self.progress, self.window = scratch, summary, writer, progress, window
        self.pending = deque(jobs)
        self.open: dict[str, _Net] = {}
        self.types = fleet.device_types
        self.busy: dict[str, Optional[_Assignment]] = {}  # device up -> what it measures (None: idle)
        # device -> STARTING, UP, KILLED (for a timeout, its "died" still to come), RESTARTING (a fresh
        # process after a kill, its "ready" still to come) or GONE; every event moves it, "ready" to UP
        self.state: dict[str, str] = {d.name: STARTING for d in fleet.devices}
        self.dead_types: dict[str, str] = {}  # device type -> why none of its devices can measure
        self.seen: set[str] = set()  # device types that had a device up
        self.total, self.done = len(jobs) * len(self.types), 0
        self.numbers = itertools.count()  # scratch file names
        self.claimed: dict[str, str] = {}  # record key -> the net of this run measuring it
        # the engines read these as nets are handed out: a path per net (embedded), bytes (Dask)
        self.paths: dict[str, str] = {}
        self.blobs: dict[str, bytes] = {}
        self.store: Any = None  # one read connection for the run: which records the database holds
        self.engine = _make_farm_engine(fleet, self.paths, self.blobs)

    def run(self, ready_timeout: float) -> None:
        from sniper_onnx.database import Database

        with Database(self.db) as self.store:
            for device in self.fleet.devices:
                self.engine.start(device)
            limit = time.monotonic() + ready_timeout
            self._fill()
            while self.done < self.total:
                if time.monotonic() > limit and len(self.seen) < len(self.types):
                    self._give_up_on_types_never_up(ready_timeout)
                self._hand_out()
                self._kill_overdue()
                for event in self.engine.poll(0.2):
                    self._on_event(event)

    # --- nets in and out -------------------------------------------------------------------
    def _fill(self) -> None:
        """Open nets until the window is full or none is left (nets every type already holds close at once)."""
        while self.pending and len(self.open) < self.window:
            self._open(self.pending.popleft())

    def _open(self, job: Any) -> None:
        try:
            blob = _blob(job)
        except SniperError as error:
            self._fail_pairs(job.name, self.types, str(error))
            return
        keys = {dtype: profile_key(self.fleet, dtype, blob, self.measurement) for dtype in self.types}
        first = next((self.claimed[key] for key in keys.values() if key in self.claimed), None)
        if first is not None:  # the same bytes as a net of this run: its record is this one's
            self.summary.same_bytes.append(f"{job.name}: same bytes as {first}")
            self._advance(len(self.types))
            return
        self.claimed.update((key, job.name) for key in keys.values())
        left = [dtype for dtype in self.types if not self.store.has_measurement(keys[dtype])]
        self.summary.skipped += len(self.types) - len(left)
        self._advance(len(self.types) - len(left))
        dead = [dtype for dtype in left if dtype in self.dead_types]
        for dtype in dead:
            self._fail_pairs(job.name, [dtype], self.dead_types[dtype])
        left = [dtype for dtype in left if dtype not in dead]
        if not left:
            return
        path = self.scratch / f"{next(self.numbers)}-{job.name.replace('/', '_')}.onnx"
        path.write_bytes(blob)
        self.paths[job.name] = str(path)
        if self.fleet.engine == "dask":  # scattered from memory to the device as it is handed out
            self.blobs[job.name] = blob
        self.open[job.name] = _Net(job.name, dict(job.source), path, keys, left)

    def _close_if_done(self, net: _Net) -> None:
        if net.left or net.running:
            return
        del self.open[net.name]
        self.blobs.pop(net.name, None)
        path = self.paths.pop(net.name, None)
        if path:
            Path(path).unlink(missing_ok=True)
        self._fill()

    # --- devices ---------------------------------------------------------------------------
    def _hand_out(self) -> None:
        for name, assignment in self.busy.items():
            if assignment is None:
                net = self._next_for(self.fleet.device(name).type)
                if net is not None:
                    self.busy[name] = _Assignment(net.name, time.monotonic())
                    self.engine.calibrate(name, net.name, self.measurement)

    def _next_for(self, dtype: str) -> Optional[_Net]:
        self._fill()
        for net in self.open.values():
            if dtype in net.left:
                net.left.remove(dtype)
                net.running.add(dtype)
                return net
        return None

    def _kill_overdue(self) -> None:
        """A net past the timeout fails on its type; its device is killed (a hung session never
        answers) and, where the engine can, started again."""
        now = time.monotonic()
        for name, assignment in list(self.busy.items()):
            if assignment is not None and self.state[name] == UP and now - assignment.started > self.timeout_s:
                device = self.fleet.device(name)
                self.state[name] = KILLED
                self.summary.timed_out += 1
                self._finish(assignment.net, device.type,
                             f"{assignment.net} on {name}: timed out after {self.timeout_s:g} s (--timeout); "
                             "its agent was killed")
                self.engine.kill(name)

    def _on_event(self, event: Any) -> None:
        device = self.fleet.device(event.device)
        if event.kind == "ready":
            # also a device killed for a timeout whose agent its host started again under the same
            # name (Dask) before its "died" was seen: the net it had failed at the kill
            self.state[event.device] = UP
            self.busy[event.device] = None
            self.seen.add(device.type)
        elif event.kind == "died":
            self._on_died(event, device)
        elif event.kind == "calibrated":
            assignment = self.busy.get(event.device)
            if self.state[event.device] != UP or assignment is None or assignment.net != event.model:
                return  # the answer of a net that failed at a kill, come late
            self.busy[event.device] = None
            # the Dask engine keeps a net's bytes scattered to the device for later tasks; the farm
            # has none, and a worker holding every net it measured would run out of memory
            self.engine.forget(event.device, event.model)
            self._on_measured(event, device)

    def _on_died(self, event: Any, device: FleetDevice) -> None:
        assignment = self.busy.pop(event.device, None)
        if self.state[event.device] == KILLED and self.engine.name == "embedded":
            # its net failed when it was killed for the timeout; a fresh process (a Dask agent
            # must be started again by its host, and says "ready" when it is)
            self.state[event.device] = RESTARTING
            self.engine.start(device)
        elif self.state[event.device] == KILLED:
            self.state[event.device] = GONE
        else:  # up, or a fresh process that died before it was ready
            self.state[event.device] = GONE
            self.summary.failures.append(f"device {event.device} died: {event.payload}")
            if assignment is not None:
                net = self.open[assignment.net]
                net.running.discard(device.type)
                net.left.insert(0, device.type)
                self.summary.redispatched += 1
        alive = [name for name, state in self.state.items() if state != GONE]
        if not any(self.fleet.device(n).type == device.type for n in alive):
            self._type_is_dead(device.type, "no live device of that type")

    def _give_up_on_types_never_up(self, ready_timeout: float) -> None:
        """A type none of whose devices came up would hold the farm forever: fail its nets, go on."""
        if not self.seen:
            raise SniperError(f"no device of fleet {self.fleet.name} came up within {ready_timeout:.0f} s; "
                              "check the agents")
        for dtype in self.types:
            if dtype not in self.seen and dtype not in self.dead_types:
                self._type_is_dead(dtype, f"no device of type {dtype} came up within {ready_timeout:.0f} s")

    def _type_is_dead(self, dtype: str, reason: str) -> None:
        """Fail the type's open nets now and its later ones as they open."""
        self.dead_types[dtype] = reason
        for net in list(self.open.values()):
            if dtype in net.left:
                net.left.remove(dtype)
                self._fail_pairs(net.name, [dtype], reason)
                self._close_if_done(net)

    # --- results ---------------------------------------------------------------------------
    def _on_measured(self, event: Any, device: FleetDevice) -> None:
        result, net = event.payload, self.open.get(event.model)
        if net is None:
            return
        if result.get("status") == "ok":
            self.summary.measured += 1
            self.summary.per_device[event.device] = self.summary.per_device.get(event.device, 0) + 1
            for flag in result.get("flags") or []:
                self.summary.flagged.setdefault(flag, []).append(f"{net.name} on {device.type}")
            # the bytes Dask holds, or read again from the scratch copy: held until the writer stored them
            blob = self.blobs.get(net.name) or net.path.read_bytes()
            self.writer.put(_Record(net.name, net.source, blob, device, result,
                                    net.keys[device.type], self.measurement))
            self._finish(net.name, device.type, None)
        else:
            self._finish(net.name, device.type, f"{net.name} on {event.device}: {result.get('error')}")

    def _finish(self, name: str, dtype: str, failure: Optional[str]) -> None:
        net = self.open[name]
        net.running.discard(dtype)
        if failure:
            self.summary.failed += 1
            self.summary.failures.append(failure)
        self._advance(1)
        self._close_if_done(net)

    def _fail_pairs(self, name: str, types: Sequence[str], reason: str) -> None:
        self.summary.failed += len(types)
        self.summary.failures += [f"{name} on {dtype}: {reason}" for dtype in types]
        self._advance(len(types))

    def _advance(self, count: int) -> None:
        if count:
            self.done += count
            if self.progress:
                self.progress(self.done, self.total)


def _make_farm_engine(fleet: Fleet, paths: dict[str, str], blobs: dict[str, bytes]) -> Any:
    """The dispatch engines, reading nets from the farm's own maps, filled as nets open."""
    from sniper_onnx.dispatch.engines import DaskEngine, EmbeddedEngine

    if fleet.engine == "dask":
        return DaskEngine(fleet.scheduler, blobs, {d.name: d.agent_settings() for d in fleet.devices})
    return EmbeddedEngine(paths, api="profile_fleet")


# --- into the database ------------------------------------------------------------------------
@dataclass
class _Record:
    net: str
    source: dict[str, Any]
    blob: bytes
    device: FleetDevice
    result: dict[str, Any]
    key: str
    measurement: dict[str, Any]


class FarmWriter(BackgroundDbWriter):
    """The farm's records, stored off the thread that hands out nets; ``written`` counts the
    records stored, ``already`` those the database held (INSERT OR IGNORE: not stored again)."""

    def __init__(self, db_path: "str | Path", fleet: Fleet) -> None:
        self.already = 0
        super().__init__(db_path, "sniper-farm-db", fleet)

    def _work(self, path: Path, fleet: Fleet) -> None:
        from sniper_onnx.database import Database

        with Database(path) as db:
            networks: dict[str, int] = {}
            devices: dict[str, str] = {}
            while (record := self._queue.get()) is not None:
                try:
                    if self._store(db, fleet, record, networks, devices):
                        self.written += 1
                    else:
                        self.already += 1
                except Exception as error:  # noqa: BLE001 - keep the run going; report at the end
                    self.errors.append(f"{record.net} on {record.device.name}: {type(error).__name__}: {error}")

    @staticmethod
    def _store(db: Any, fleet: Fleet, record: _Record, networks: dict[str, int], devices: dict[str, str]) -> bool:
        """True when stored; False when the database held the record key already."""
        from sniper_onnx.dispatch.feedback import _network, device_id, device_spec

        device = record.device
        if record.net not in networks:
            networks[record.net] = _network(db, record.source, record.net, record.blob)
        if device.type not in devices:
            devices[device.type] = db.add_device(device_spec(fleet, device), device_id(fleet, device)).id
        config = {"threads": device.threads, "graph_optimization": device.opt_level, "provider": device.provider,
                  **record.measurement}
        # stats["count"] is the number of timed runs the agent's stopping rule took
        stats = {**record.result["stats"], "device": device.name}
        return db.add_measurement(networks[record.net], devices[device.type], float(record.result["median_s"]),
                                  stats=stats, config=config, flags=record.result.get("flags") or (),
                                  source="fleet-profile", record_key=record.key).added
