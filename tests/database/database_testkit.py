"""Profiler results files for the database tests (one real profiling run, shared per module)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_net(path: Path, channels: int = 4, kernel: int = 3, seed: int = 0, input_name: str = "x") -> Path:
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((channels, 3, kernel, kernel)) * np.sqrt(2 / (3 * kernel * kernel))).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", [input_name, "w"], ["c"], kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["y"]),
        ],
        "convnet",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def synthetic_results(path: Path, count: int, device: str = "dev-synthetic", prefix: str = "s") -> Path:
    """Records shaped like the profiler's, for models that no longer exist (no analysis needed)."""
    from sniper_profiler.device import DeviceSpec

    spec = DeviceSpec(name=f"synthetic {device}", kind="desktop_cpu", threads=1).to_dict()
    with open(path, "w") as handle:
        for index in range(count):
            record = {
                "schema": "sniper-profiler/1",
                "record_id": uuid.uuid4().hex,
                "key": f"{prefix}{index}|cfg",
                "status": "ok",
                "model": {"path": f"/nonexistent/{prefix}{index}.onnx", "name": f"{prefix}{index}", "sha256": f"{prefix}-{index}", "source": {"kind": "file"}},
                "device": {"device_id": device, "fingerprint": {}, "spec": spec},
                "config": {"threads": 1},
                "stats": {"median_s": 0.001 * (index + 1), "count": 10},
                "flags": [],
                "measured_at": "2026-11-27T10:00:00+00:00",
            }
            handle.write(json.dumps(record) + "\n")
    return path


def as_older_version(current: Path, old: Path, version: int) -> Path:
    """A copy of database ``current`` at schema ``version``: the tables of the first ``version``
    migrations (never edited, so exactly what that sniper-onnx wrote) holding ``current``'s rows in
    the columns they had then. Setting user_version back alone would leave the newer columns there,
    which no real old database has."""
    import sqlite3

    from sniper_onnx.database.schema import MIGRATIONS

    conn = sqlite3.connect(str(old), isolation_level=None)
    for migration in MIGRATIONS[:version]:
        for statement in migration.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("ATTACH DATABASE ? AS current", (str(current),))
    tables = [row[0] for row in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")]
    for table in tables:
        columns = ", ".join(row[1] for row in conn.execute(f"PRAGMA main.table_info({table})"))
        conn.execute(f"INSERT INTO main.{table}({columns}) SELECT {columns} FROM current.{table}")
    conn.execute("DETACH DATABASE current")
    conn.close()
    return old
