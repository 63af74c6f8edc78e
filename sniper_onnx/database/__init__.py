"""The Network Characteristic Database (paper, section 3.3): networks, devices, measurements and
predictions in one SQLite file. See docs/database.md.

    from sniper_onnx.database import Database
    with Database("ncd.sqlite") as db:
        net = db.add_network("nb201:|nor_conv_3x3~0|...", "nb201-123", {"kind": "nasbench201"}, features)
        dev = db.add_device(DeviceSpec(name="edgegpu", kind="embedded_gpu"))
        db.add_measurement(net.id, dev.id, 0.0123, source="hw-nas-bench")
"""

from __future__ import annotations

from sniper_onnx.database.store import (
    Database,
    DatabaseStats,
    DeviceCount,
    DeviceRecord,
    MeasurementRecord,
    NetworkRecord,
    PredictionRecord,
    PredictionResidual,
    default_device_id,
)

__all__ = [
    "Database",
    "DatabaseStats",
    "DeviceCount",
    "DeviceRecord",
    "MeasurementRecord",
    "NetworkRecord",
    "PredictionRecord",
    "PredictionResidual",
    "default_device_id",
    "import_results",
    "export_csv",
]


def __getattr__(name: str):
    # onnx is needed only to import profiler results; keep `Database` light for other callers.
    if name == "import_results":
        from sniper_onnx.database.importer import import_results

        return import_results
    if name == "export_csv":
        from sniper_onnx.database.export import export_csv

        return export_csv
    raise AttributeError(f"module 'sniper_onnx.database' has no attribute {name!r}")
