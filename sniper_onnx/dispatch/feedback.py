"""Measured times into the Network Characteristic Database as they arrive (paper, Figure 3).

A background thread owns the SQLite connection, so a disk write never delays the next dispatch
decision; ``close()`` drains the queue, so nothing measured is lost when the run ends. Each task's
time is one measurement (``source="dispatch"``, key ``dispatch:<run>:<task>:<attempt>``); the
warm-up medians are stored too (``source="dispatch-calibration"``). Devices are stored per fleet
device type (``fleet:<fleet>:<type>``): devices of one type run a model equally fast.
"""

from __future__ import annotations

import queue
import threading
import uuid
from pathlib import Path
from typing import Any, Optional

from sniper_onnx.dispatch.fleet import Fleet, FleetDevice

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
    def __init__(self, db_path: "str | Path", fleet: Fleet, blobs: dict[str, bytes]) -> None:
        from sniper_onnx.database import Database

        Database(db_path).close()  # a bad path fails here, with its one-line error, before the run
        self.run_id = uuid.uuid4().hex[:12]
        self.written = 0
        self.errors: list[str] = []
        self._queue: "queue.Queue[Optional[tuple]]" = queue.Queue()
        self._thread = threading.Thread(target=self._work, args=(Path(db_path), fleet, blobs), daemon=True,
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

    def _work(self, path: Path, fleet: Fleet, blobs: dict[str, bytes]) -> None:
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
                        networks[model] = _network(db, fleet, model, blobs[model])
                    if device.type not in devices:
                        devices[device.type] = db.add_device(device_spec(fleet, device), device_id(fleet, device)).id
                    config = {"threads": device.threads, "graph_optimization": device.opt_level,
                              "provider": device.provider}
                    source = "dispatch" if kind == "task" else "dispatch-calibration"
                    record_key = f"dispatch:{self.run_id}:{key}" if key else f"dispatch-cal:{self.run_id}:{model}:{device.name}"
                    db.add_measurement(networks[model], devices[device.type], seconds, stats={"count": 1, "device": device.name},
                                       config=config, source=source, record_key=record_key)
                    self.written += 1
                except Exception as error:  # noqa: BLE001 - keep the run going; report at the end
                    self.errors.append(f"{model} on {device.name}: {type(error).__name__}: {error}")


def _network(db: Any, fleet: Fleet, model: str, blob: bytes) -> int:
    import onnx

    from sniper_onnx import analyze
    from sniper_onnx.database.hashing import structure_hash

    proto = onnx.load_from_string(blob)
    try:
        features = dict(analyze(proto).features)
    except Exception:  # noqa: BLE001 - the measurement counts even if the analyzer cannot read the net
        features = None
    source_model = fleet.models[model]
    source = ({"kind": "zoo", "name": source_model.zoo, "resolution": source_model.resolution, "batch": 1}
              if source_model.zoo else {"kind": "file", "path": source_model.file})
    return db.add_network(structure_hash(proto), model, source, features).id
