"""Measured times into the Network Characteristic Database as they arrive (paper, Figure 3).

A background thread owns the SQLite connection, so a disk write never delays the next dispatch
decision; ``close()`` drains the queue, so nothing measured is lost when the run ends. Each task's
time is one measurement (``source="dispatch"``, key ``dispatch:<run>:<task>:<attempt>:<device>``); the
warm-up medians are stored too (``source="dispatch-calibration"``). Devices are stored per fleet
device type (``fleet:<fleet>:<type>``): devices of one type run a model equally fast.
"""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sniper_onnx.dispatch.fleet import Fleet, FleetDevice
from sniper_onnx.errors import SniperError

KIND_BY_PROVIDER = {"CPUExecutionProvider": "desktop_cpu", "CUDAExecutionProvider": "desktop_gpu",
                    "TensorrtExecutionProvider": "embedded_gpu"}


def device_id(fleet: Fleet, device: FleetDevice) -> str:
    return f"fleet:{fleet.name}:{device.type}"


def device_spec(fleet: Fleet, device: FleetDevice) -> Any:
    from sniper_profiler.device import DeviceSpec

    return DeviceSpec(name=f"{fleet.name}/{device.type}", kind=KIND_BY_PROVIDER.get(device.provider, "other"),
                      threads=device.threads or None, provider=device.provider,
                      graph_optimization=device.opt_level, description=f"sniper-onnx dispatch fleet {fleet.name}")


class MeasurementWriter:
    def __init__(self, db_path: "str | Path", fleet: Fleet, blobs: dict[str, bytes],
                 sources: Optional[dict[str, dict]] = None) -> None:
        from sniper_onnx.database import Database

        Database(db_path).close()  # a bad path fails here, with its one-line error, before the run
        self.run_id = uuid.uuid4().hex[:12]
        self.written = 0
        self.errors: list[str] = []
        self._queue: "queue.Queue[Optional[tuple]]" = queue.Queue()
        self._thread = threading.Thread(target=self._work, args=(Path(db_path), fleet, blobs, sources or {}), daemon=True,
                                        name="sniper-dispatch-db")
        self._thread.start()
        self._closed = False

    def put(self, item: tuple) -> None:
        self._queue.put(item)

    def close(self) -> int:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        return self.written

    def _work(self, path: Path, fleet: Fleet, blobs: dict[str, bytes], sources: dict[str, dict]) -> None:
        from sniper_onnx.database import Database

        with Database(path) as db:
            networks: dict[str, int] = {}
            devices: dict[str, str] = {}
            while True:
                item = self._queue.get()
                if item is None:
                    return
                kind, model, device, seconds, key = item
                try:
                    if model not in networks:
                        networks[model] = _network(db, sources.get(model) or _fleet_source(fleet, model), model,
                                                   blobs[model])
                    if device.type not in devices:
                        devices[device.type] = db.add_device(device_spec(fleet, device), device_id(fleet, device)).id
                    config = {"threads": device.threads, "graph_optimization": device.opt_level,
                              "provider": device.provider}
                    source = SOURCES[kind]
                    record_key = f"{source}:{self.run_id}:{key or model}:{device.name}"
                    db.add_measurement(networks[model], devices[device.type], seconds, stats={"count": 1, "device": device.name},
                                       config=config, source=source, record_key=record_key)
                    self.written += 1
                except Exception as error:  # noqa: BLE001 - keep the run going; report at the end
                    self.errors.append(f"{model} on {device.name}: {type(error).__name__}: {error}")


SOURCES = {"task": "dispatch", "calibration": "dispatch-calibration", "profile": "fleet-profile"}


def _fleet_source(fleet: Fleet, model: str) -> dict:
    source_model = fleet.models[model]
    if source_model.zoo:
        return {"kind": "zoo", "name": source_model.zoo, "resolution": source_model.resolution, "batch": 1}
    return {"kind": "file", "path": source_model.file}


def _network(db: Any, source: dict, model: str, blob: bytes) -> int:
    import onnx

    from sniper_onnx import analyze
    from sniper_onnx.database.hashing import structure_hash

    proto = onnx.load_from_string(blob)
    try:
        features = dict(analyze(proto).features)
    except Exception:  # noqa: BLE001 - the measurement counts even if the analyzer cannot read the net
        features = None
    return db.add_network(structure_hash(proto), model, source, features).id


# --- the Time Trimmer on what the fleet measured ----------------------------------------------
FLEET_SOURCES = ("dispatch", "dispatch-calibration", "fleet-profile")


@dataclass
class TypeFeedback:
    device_type: str
    predictor_device: str
    networks: int
    mape_before: float  # mean |predicted / measured - 1| over the fleet's networks, before
    mape_after: float  # the same after the Time Trimmer (in-sample: the networks it was fitted on)
    loo_rmse_log: float  # leave-one-out error of the fitted correction (out-of-sample check)
    trimmer_features: list[str] = field(default_factory=list)


@dataclass
class FeedbackReport:
    fleet: str
    db: str
    predictor: str
    output: str
    types: list[TypeFeedback] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def fleet_samples(db_path: "str | Path", fleet: Fleet) -> dict[str, tuple[list[str], list[dict], list[float]]]:
    """Per device type: (network names, features, median measured seconds) from the database."""
    import numpy as np

    from sniper_onnx.database import Database

    with Database(db_path) as db:
        networks = {n.id: n for n in db.networks()}
        times: dict[tuple[str, int], list[float]] = {}
        prefix = f"fleet:{fleet.name}:"
        for row in db.measurements():
            if row.status == "ok" and row.source in FLEET_SOURCES and row.device_id.startswith(prefix):
                times.setdefault((row.device_id[len(prefix):], row.network_id), []).append(float(row.median_s))
    samples: dict[str, tuple[list[str], list[dict], list[float]]] = {}
    for (dtype, network_id), values in sorted(times.items()):
        network = networks[network_id]
        if not network.features:
            continue
        names, features, seconds = samples.setdefault(dtype, ([], [], []))
        names.append(network.name)
        features.append(network.features)
        seconds.append(float(np.median(values)))
    return samples


def feedback_from_db(fleet: Fleet, db_path: "str | Path", output: "str | Path",
                     predictor: "str | Path | None" = None) -> FeedbackReport:
    """Run the Time Trimmer (``sniper-onnx feedback``'s fit) for every fleet device type mapped to a
    predictor device in ``predictor_devices``, on the medians the fleet measured; save the result to
    ``output`` and report prediction error before and after."""
    import numpy as np

    from sniper_onnx.predictors import load_predictor, save_predictor
    from sniper_onnx.predictors.adapt import adapt_predictor

    if not fleet.predictor_devices:
        raise SniperError(f"{fleet.source}: no 'predictor_devices'; map each device type to a device the predictor "
                          "knows (sniper-onnx predict --list-devices) to correct its predictions")
    current = load_predictor(predictor or fleet.predictor)
    report = FeedbackReport(fleet.name, str(db_path), str(predictor or fleet.predictor or "shipped"), str(output))
    samples = fleet_samples(db_path, fleet)
    for dtype, pdevice in fleet.predictor_devices.items():
        names, features, seconds = samples.get(dtype, ([], [], []))
        if len(names) < 3:
            report.skipped.append(f"{dtype}: {len(names)} measured network(s); the Time Trimmer needs at least 3")
            continue
        measured = np.array(seconds)
        before = current.predict(features, [pdevice], names).seconds()
        current, fitted = adapt_predictor(current, pdevice, features, seconds, solve_embedding=False)
        after = current.predict(features, [pdevice], names).seconds()
        report.types.append(TypeFeedback(dtype, pdevice, len(names), float(np.mean(np.abs(before / measured - 1))),
                                         float(np.mean(np.abs(after / measured - 1))), float(fitted.loo_rmse_log),
                                         list(fitted.trimmer_features)))
    if not report.types:
        raise SniperError(f"{db_path}: not enough measurements of fleet {fleet.name} to correct anything "
                          f"({'; '.join(report.skipped)}); dispatch or profile more networks with --db")
    save_predictor(current, output)
    return report
