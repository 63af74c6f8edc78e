"""The profiling farm: nets spread over a fleet's devices, each measured once per device type,
stored in the Network Characteristic Database as they finish. Same engines as dispatch.

Each measurement is a warm session timed ``repeats`` times (the median is stored, source
``fleet-profile``). A device that dies hands its net back to another device of its type; a net
that fails is reported and the farm goes on. For the profiler's full stopping rule (confidence
interval, quiet-machine wait) on one device use ``sniper-onnx profile`` on that device.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from sniper_onnx.dispatch.fleet import Fleet
from sniper_onnx.errors import SniperError

ProgressHook = Callable[[int, int], None]


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
    per_device: dict[str, int] = field(default_factory=dict)
    skipped: int = 0  # (net, device type) pairs the database already held from an earlier run
    failures: list[str] = field(default_factory=list)
    store_errors: list[str] = field(default_factory=list)


def profile_fleet(fleet: Fleet, jobs: Sequence[Any], db: "str | Path", repeats: int = 10,
                  ready_timeout_s: float = 120.0, progress: Optional[ProgressHook] = None) -> FleetProfileSummary:
    """Measure every job (``sniper_onnx.database.collect.CollectJob``: a file or a ``make()``) on
    one device of every device type of ``fleet``; store each median in ``db`` as it arrives.

    Resumable: each median is stored under a key made of the fleet, the device type, its settings
    and the net's bytes, so a rerun skips what ``db`` already holds and stores nothing twice."""
    from sniper_onnx.dispatch.dispatcher import _make_engine
    from sniper_onnx.dispatch.feedback import MeasurementWriter

    if not jobs:
        raise SniperError("nothing to profile; pass .onnx files, --generate N or --zoo")
    jobs = unique_names(jobs)
    blobs = {job.name: _blob(job) for job in jobs}
    sources = {job.name: dict(job.source) for job in jobs}
    types = fleet.device_types
    summary = FleetProfileSummary(fleet.name, str(db), len(jobs), types)
    writer = MeasurementWriter(db, fleet, blobs, sources)
    keys = {(net, dtype): profile_key(fleet, dtype, blob) for net, blob in blobs.items() for dtype in types}
    todo = _not_stored(db, keys, types, list(blobs), summary)
    with tempfile.TemporaryDirectory(prefix="sniper-farm-") as scratch:
        engine = _make_engine(fleet, blobs, Path(scratch))
        try:
            if any(todo.values()):
                _farm(fleet, engine, todo, repeats, ready_timeout_s, summary, writer, progress, keys)
        finally:
            engine.close()
            summary.stored = writer.close()
            summary.store_errors = list(writer.errors)
    return summary


def profile_key(fleet: Fleet, dtype: str, blob: bytes) -> str:
    """The record key of a net's median on a device type: the same fleet, type, settings and bytes
    give the same key, so the database keeps one (``INSERT OR IGNORE``) and a rerun can skip it."""
    settings = sorted({(d.provider, d.threads, d.opt_level) for d in fleet.devices if d.type == dtype})
    digest = hashlib.sha256(blob).hexdigest()
    text = ";".join(f"{p},{t},{o}" for p, t, o in settings)
    return f"fleet-profile:{fleet.name}:{dtype}:{text}:{digest}"


def _not_stored(db: "str | Path", keys: dict[tuple[str, str], str], types: list[str], nets: list[str],
                summary: FleetProfileSummary) -> dict[str, list[str]]:
    """Per device type, the nets ``db`` does not hold yet (what an interrupted run left)."""
    from sniper_onnx.database import Database

    with Database(db) as store:
        todo = {dtype: [net for net in nets if not store.has_measurement(keys[(net, dtype)])] for dtype in types}
    summary.skipped = len(nets) * len(types) - sum(len(left) for left in todo.values())
    return todo


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
        return Path(job.path).read_bytes()
    try:
        return job.make().SerializeToString()
    except Exception as error:  # noqa: BLE001
        raise SniperError(f"{job.name}: could not build it ({type(error).__name__}: {error})") from None


def _farm(fleet: Fleet, engine: Any, todo: dict[str, list[str]], repeats: int, ready_timeout: float,
          summary: FleetProfileSummary, writer: Any, progress: Optional[ProgressHook],
          keys: dict[tuple[str, str], str]) -> None:
    """``todo``: per device type, the nets to measure (emptied as they are handed out)."""
    busy: dict[str, Optional[str]] = {}  # live device -> net it measures (None: idle)
    seen: set[str] = set()  # device types that had a device up
    for device in fleet.devices:
        engine.start(device)
    total, done = sum(len(nets) for nets in todo.values()), 0
    limit = time.monotonic() + ready_timeout
    while done < total:
        _hand_out(fleet, engine, todo, busy, repeats)
        if time.monotonic() > limit:
            if not seen:
                raise SniperError(f"no device of fleet {fleet.name} came up within {ready_timeout:.0f} s; check the agents")
            done += _fail_types_never_up(todo, seen, summary, ready_timeout)
        for event in engine.poll(0.2):
            device = fleet.device(event.device)
            if event.kind == "ready":
                busy[event.device] = None
                seen.add(device.type)
            elif event.kind == "died":
                done += _on_died(fleet, event, device, todo, busy, summary)
            elif event.kind == "calibrated":
                busy[event.device] = None
                done += 1
                _on_calibrated(event, device, summary, writer, keys[(event.model, device.type)])
                if progress:
                    progress(done, total)


def _hand_out(fleet: Fleet, engine: Any, todo: dict[str, list[str]], busy: dict[str, Optional[str]],
              repeats: int) -> None:
    for name, net in busy.items():
        if net is None and todo[fleet.device(name).type]:
            busy[name] = todo[fleet.device(name).type].pop(0)
            engine.calibrate(name, busy[name], repeats)


def _fail_types_never_up(todo: dict[str, list[str]], seen: set[str], summary: FleetProfileSummary,
                         ready_timeout: float) -> int:
    """A type none of whose devices came up would hold the farm forever: fail its nets, go on."""
    failed = 0
    for dtype, left in todo.items():
        if dtype not in seen and left:
            summary.failures += [f"{net} on {dtype}: no device of type {dtype} came up within {ready_timeout:.0f} s"
                                 for net in left]
            failed += len(left)
            left.clear()
    summary.failed += failed
    return failed


def _on_died(fleet: Fleet, event: Any, device: Any, todo: dict[str, list[str]], busy: dict[str, Optional[str]],
             summary: FleetProfileSummary) -> int:
    """Hand the dead device's net back; fail its type's nets when no device of the type is left."""
    net = busy.pop(event.device, None)
    summary.failures.append(f"device {event.device} died: {event.payload}")
    if net is not None:
        todo[device.type].insert(0, net)
        summary.redispatched += 1
    if any(fleet.device(n).type == device.type for n in busy):
        return 0
    left = todo[device.type]
    summary.failures += [f"{n} on {device.type}: no live device of that type" for n in left]
    summary.failed += len(left)
    count = len(left)
    left.clear()
    return count


def _on_calibrated(event: Any, device: Any, summary: FleetProfileSummary, writer: Any, key: str) -> None:
    result = event.payload
    if result.get("status") == "ok":
        summary.measured += 1
        summary.per_device[event.device] = summary.per_device.get(event.device, 0) + 1
        writer.put(("profile", event.model, device, float(result["median_s"]), key))
    else:
        summary.failed += 1
        summary.failures.append(f"{event.model} on {event.device}: {result.get('error')}")
