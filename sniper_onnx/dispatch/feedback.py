"""Measured times into the Network Characteristic Database as they arrive (paper, Figure 3).

A background thread owns the SQLite connection, so a disk write never delays the next dispatch
decision; ``close()`` drains the queue, so nothing measured is lost when the run ends. Each task's
time is one measurement (``source="dispatch"``, key ``dispatch:<run>:<task>:<attempt>:<device>``,
``count`` 1); the warm-up medians are stored too (``source="dispatch-calibration"``, ``count`` the
runs timed, ``--calibration-repeats``). The profiling farm stores its own medians
(``profiling.FarmWriter``, ``source="fleet-profile"``). Devices are stored per fleet
device type (``fleet:<fleet>:<type>``): devices of one type run a model equally fast.
"""

from __future__ import annotations

import queue
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class BackgroundDbWriter:
    """A background thread owns the SQLite connection (a disk write never delays the run);
    ``close()`` drains the queue, so nothing measured is lost when the run ends. Subclasses store
    each queued item in ``_work(path, *args)``, reading items until ``None``.

    Should ``_work`` itself fail (the database cannot be opened in the thread: busy past its
    timeout), the error goes to ``errors`` and the items it did not store are counted in
    ``dropped`` (those queued then, and any put after), so the caller can say "N not stored"."""

    def __init__(self, db_path: "str | Path", thread_name: str, *args: Any) -> None:
        from sniper_onnx.database import Database

        Database(db_path).close()  # a bad path fails here, with its one-line error, before the run
        self.written = 0
        self.dropped = 0  # items not stored because the writer itself stopped (see errors)
        self.errors: list[str] = []
        self._queue: "queue.Queue[Any]" = queue.Queue()
        self._thread = threading.Thread(target=self._guarded, args=(Path(db_path), *args), daemon=True,
                                        name=thread_name)
        self._closed = False
        self._thread.start()

    def put(self, item: Any) -> None:
        self._queue.put(item)

    def close(self) -> int:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        return self.written

    def _guarded(self, path: Path, *args: Any) -> None:
        try:
            self._work(path, *args)
        except Exception as error:  # noqa: BLE001 - reported by the caller, with what was not stored
            self.errors.append(f"the database writer stopped: {type(error).__name__}: {' '.join(str(error).split())}")
            while self._queue.get() is not None:  # what was queued, and what comes until close()
                self.dropped += 1

    def _work(self, path: Path, *args: Any) -> None:  # pragma: no cover - subclasses define it
        raise NotImplementedError


class MeasurementWriter(BackgroundDbWriter):
    """Stores ``(kind, model, device, seconds, key, count)`` items: kind ``task`` (one run) or
    ``calibration`` (the median of ``count`` timed runs)."""

    def __init__(self, db_path: "str | Path", fleet: Fleet, blobs: dict[str, bytes]) -> None:
        self.run_id = uuid.uuid4().hex[:12]  # before the thread starts: its record keys use it
        super().__init__(db_path, "sniper-dispatch-db", fleet, blobs)

    def _work(self, path: Path, fleet: Fleet, blobs: dict[str, bytes]) -> None:
        from sniper_onnx.database import Database

        with Database(path) as db:
            networks: dict[str, int] = {}
            devices: dict[str, str] = {}
            while True:
                item = self._queue.get()
                if item is None:
                    return
                kind, model, device, seconds, key, count = item
                try:
                    if model not in networks:
                        networks[model] = _network(db, _fleet_source(fleet, model), model, blobs[model])
                    if device.type not in devices:
                        devices[device.type] = db.add_device(device_spec(fleet, device), device_id(fleet, device)).id
                    config = {"threads": device.threads, "graph_optimization": device.opt_level,
                              "provider": device.provider}
                    source = SOURCES[kind]
                    record_key = f"{source}:{self.run_id}:{key or model}:{device.name}"
                    db.add_measurement(networks[model], devices[device.type], seconds,
                                       stats={"count": int(count), "device": device.name},
                                       config=config, source=source, record_key=record_key)
                    self.written += 1
                except Exception as error:  # noqa: BLE001 - keep the run going; report at the end
                    self.errors.append(f"{model} on {device.name}: {type(error).__name__}: {error}")


SOURCES = {"task": "dispatch", "calibration": "dispatch-calibration"}


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


@dataclass
class TypeSamples:
    """One fleet device type's measured networks: id, name, features, source, median measured seconds."""

    ids: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    features: list[dict] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def fleet_samples(db_path: "str | Path", fleet: Fleet) -> dict[str, TypeSamples]:
    """Per device type, the networks the fleet measured, from the database."""
    import numpy as np

    from sniper_onnx.database import Database

    with Database(db_path, create=False) as db:  # only reads: never makes a database or writes over a file that is not one (an older database is migrated)
        networks = {n.id: n for n in db.networks()}
        times: dict[tuple[str, int], list[float]] = {}
        prefix = f"fleet:{fleet.name}:"
        for row in db.measurements():
            if row.status == "ok" and row.source in FLEET_SOURCES and row.device_id.startswith(prefix):
                times.setdefault((row.device_id[len(prefix):], row.network_id), []).append(float(row.median_s))
    samples: dict[str, TypeSamples] = {}
    for (dtype, network_id), values in sorted(times.items()):
        network = networks[network_id]
        if not network.features:
            continue
        sample = samples.setdefault(dtype, TypeSamples())
        sample.ids.append(network_id)
        sample.names.append(network.name)
        sample.features.append(network.features)
        sample.sources.append(network.source or {})
        sample.seconds.append(float(np.median(values)))
    return samples


def feedback_from_db(fleet: Fleet, db_path: "str | Path", output: "str | Path",
                     predictor: "str | Path | None" = None) -> FeedbackReport:
    """Run the Time Trimmer (``sniper-onnx feedback``'s fit) for every fleet device type mapped to a
    predictor device in ``predictor_devices``, on the medians the fleet measured; save the result to
    ``output`` and report prediction error before and after. The predictor is the one ``dispatch``
    predicts with for this fleet (same choice, same device names)."""
    from sniper_onnx.outputs import check_output_file
    from sniper_onnx.scheduling.predicted import choose_predictor

    if not fleet.predictor_devices:
        raise SniperError(f"{fleet.source}: no 'predictor_devices'; map each device type to a device the predictor "
                          "knows (sniper-onnx predict --list-devices) to correct its predictions")
    if not Path(db_path).is_file():  # opening a missing path would create an empty database
        raise SniperError(f"{db_path}: no such database; give the --db file dispatch or profile --fleet wrote")
    check_output_file(output, "--output")
    current, names = choose_predictor(predictor or fleet.predictor, fleet.predictor_devices, fleet.source)
    report = FeedbackReport(fleet.name, str(db_path), str(getattr(current, "source", predictor)), str(output))
    samples = fleet_samples(db_path, fleet)
    tables = _kernel_tables(current, samples)
    for dtype, pdevice in names.items():
        current = _trim_type(current, report, dtype, pdevice, samples.get(dtype, TypeSamples()), tables)
    if not report.types:
        raise SniperError(f"{db_path}: not enough measurements of fleet {fleet.name} to correct anything "
                          f"({'; '.join(report.skipped)}); dispatch or profile more networks with --db")
    from sniper_onnx.predictors import save_predictor

    save_predictor(current, output)
    return report


def _kernel_tables(predictor: Any, samples: dict[str, TypeSamples]) -> dict[int, Any]:
    """Network id -> kernel table, re-made from the source each network was stored with: on a
    device the predictor answers by the kernel sum, the Time Trimmer must correct that sum."""
    import json

    if not predictor.kernel_path:
        return {}
    from sniper_onnx.predictors.kernel_sources import kernel_tables_for

    sources = {i: source for sample in samples.values() for i, source in zip(sample.ids, sample.sources)}
    made, _ = kernel_tables_for([json.dumps(source) if source else "" for source in sources.values()],
                                control_flow_empty=True)  # set aside by the fit, not counted as not re-made
    return {i: table for i, table in zip(sources, made) if table is not None}


def _trim_type(current: Any, report: FeedbackReport, dtype: str, pdevice: str, sample: TypeSamples,
               tables: dict[int, Any]) -> Any:
    """The Time Trimmer for one device type; returns the corrected predictor (``current`` if skipped)."""
    import numpy as np

    from sniper_onnx.predictors.adapt import adapt_predictor
    from sniper_onnx.predictors.runtime import PATH_KERNELS

    keep = list(range(len(sample.names)))
    by_kernels = current.kernel_path.get("devices", {}).get(pdevice, {}).get("path") == PATH_KERNELS
    aside = ""
    if by_kernels:  # only what the kernel sum times can correct it
        keep, aside = _kernel_timed(sample, tables)
    if len(keep) < 3:
        report.skipped.append(f"{dtype}: {len(keep)} usable measured network(s){aside}; the Time Trimmer needs "
                              "at least 3")
        return current
    names = [sample.names[i] for i in keep]
    features = [sample.features[i] for i in keep]
    measured = np.array([sample.seconds[i] for i in keep])
    kernels = [tables[sample.ids[i]] for i in keep] if by_kernels else None
    if aside:
        report.skipped.append(f"{dtype}: {len(sample.ids) - len(keep)} of its {len(sample.ids)} measured networks{aside}")
    before = current.predict(features, [pdevice], names, kernel_tables=kernels).seconds()
    current, fitted = adapt_predictor(current, pdevice, features, list(measured), solve_embedding=False,
                                      sample_names=names, kernel_tables=kernels)
    after = current.predict(features, [pdevice], names, kernel_tables=kernels).seconds()
    report.types.append(TypeFeedback(dtype, pdevice, len(names), float(np.mean(np.abs(before / measured - 1))),
                                     float(np.mean(np.abs(after / measured - 1))), float(fitted.loo_rmse_log),
                                     list(fitted.trimmer_features)))
    return current


def _kernel_timed(sample: TypeSamples, tables: dict[int, Any]) -> tuple[list[int], str]:
    """The samples the kernel sum times, and a note on those left out: networks that cannot be
    re-made, and those it does not time (control flow, which the PCN answers, or no layer)."""
    timed = [i for i, net in enumerate(sample.ids) if net in tables and len(tables[net])]
    not_made = sum(net not in tables for net in sample.ids)
    untimed = len(sample.ids) - len(timed) - not_made
    reasons = []
    if not_made:
        reasons.append(f"{not_made} could not be re-made for the kernel sum")
    if untimed:
        reasons.append(f"{untimed} hold control flow or no layer, which the kernel sum does not time")
    return timed, f" ({'; '.join(reasons)})" if reasons else ""
