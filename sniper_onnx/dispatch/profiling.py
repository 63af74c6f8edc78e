"""The profiling farm: nets spread over a fleet's devices, each measured once per device type,
stored in the Network Characteristic Database as they finish. Same engines as dispatch.

Each measurement is a warm session timed ``repeats`` times (the median is stored, source
``fleet-profile``). A device that dies hands its net back to another device of its type; a net
that fails is reported and the farm goes on. For the profiler's full stopping rule (confidence
interval, quiet-machine wait) on one device use ``sniper-onnx profile`` on that device.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
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
    failures: list[str] = field(default_factory=list)


def profile_fleet(fleet: Fleet, jobs: Sequence[Any], db: "str | Path", repeats: int = 10,
                  ready_timeout_s: float = 120.0, progress: Optional[ProgressHook] = None) -> FleetProfileSummary:
    """Measure every job (``sniper_onnx.database.collect.CollectJob``: a file or a ``make()``) on
    one device of every device type of ``fleet``; store each median in ``db`` as it arrives."""
    from sniper_onnx.dispatch.dispatcher import _make_engine
    from sniper_onnx.dispatch.feedback import MeasurementWriter

    if not jobs:
        raise SniperError("nothing to profile; pass .onnx files, --generate N or --zoo")
    blobs = {job.name: _blob(job) for job in jobs}
    sources = {job.name: dict(job.source) for job in jobs}
    types = fleet.device_types
    summary = FleetProfileSummary(fleet.name, str(db), len(jobs), types)
    writer = MeasurementWriter(db, fleet, blobs, sources)
    with tempfile.TemporaryDirectory(prefix="sniper-farm-") as scratch:
        engine = _make_engine(fleet, blobs, Path(scratch))
        try:
            _farm(fleet, engine, list(blobs), repeats, ready_timeout_s, summary, writer, progress)
        finally:
            engine.close()
            summary.stored = writer.close()
    return summary


def _blob(job: Any) -> bytes:
    if job.path:
        return Path(job.path).read_bytes()
    try:
        return job.make().SerializeToString()
    except Exception as error:  # noqa: BLE001
        raise SniperError(f"{job.name}: could not build it ({type(error).__name__}: {error})") from None


def _farm(fleet: Fleet, engine: Any, nets: list[str], repeats: int, ready_timeout: float,
          summary: FleetProfileSummary, writer: Any, progress: Optional[ProgressHook]) -> None:
    todo = {t: list(nets) for t in fleet.device_types}  # per device type, nets not yet measured
    busy: dict[str, Optional[str]] = {}  # live device -> net it measures (None: idle)
    for device in fleet.devices:
        engine.start(device)
    total, done = len(nets) * len(todo), 0
    limit = time.monotonic() + ready_timeout
    while done < total:
        for name, net in busy.items():
            if net is None and todo[fleet.device(name).type]:
                busy[name] = todo[fleet.device(name).type].pop(0)
                engine.calibrate(name, busy[name], repeats)
        if not busy and time.monotonic() > limit:
            raise SniperError(f"no device of fleet {fleet.name} came up within {ready_timeout:.0f} s; check the agents")
        for event in engine.poll(0.2):
            device = fleet.device(event.device)
            if event.kind == "ready":
                busy[event.device] = None
            elif event.kind == "died":
                net = busy.pop(event.device, None)
                summary.failures.append(f"device {event.device} died: {event.payload}")
                if net is not None:
                    todo[device.type].insert(0, net)
                    summary.redispatched += 1
                if not any(fleet.device(n).type == device.type for n in busy):
                    left = todo[device.type]
                    summary.failures += [f"{n} on {device.type}: no live device of that type" for n in left]
                    summary.failed += len(left)
                    done += len(left)
                    left.clear()
            elif event.kind == "calibrated":
                busy[event.device] = None
                done += 1
                result = event.payload
                if result.get("status") == "ok":
                    summary.measured += 1
                    summary.per_device[event.device] = summary.per_device.get(event.device, 0) + 1
                    writer.put(("profile", event.model, device, float(result["median_s"]), None))
                else:
                    summary.failed += 1
                    summary.failures.append(f"{event.model} on {event.device}: {result.get('error')}")
                if progress:
                    progress(done, total)
