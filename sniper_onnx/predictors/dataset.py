"""Training tables: (network features, device features, seconds) rows, from the DB's CSV export.

The CSV layout is ``sniper-onnx db export``'s: ``network_id``/``network_name``, ``device_name``,
the network feature columns, ``device_<name>`` hardware-feature columns and ``latency_s``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from sniper_onnx.errors import SniperError, read_text

DEVICE_PREFIX = "device_"
NETWORK_KEYS = ("network_id", "network_name", "network", "structure_hash")
DEVICE_KEYS = ("device_name", "device", "device_id")
SOURCE_COLUMN = "network_source"  # JSON: how to re-make the network (for its kernel table)
# The analyzer feature schema that computed the row's network features (db export, since
# 2026-11-29): not a feature, so neither a network column nor part of the data hash.
SCHEMA_COLUMN = "feature_schema"
SKIP_COLUMNS = set(NETWORK_KEYS) | set(DEVICE_KEYS) | {"measurements", "runs", "arch", "arch_index", SOURCE_COLUMN,
                                                        SCHEMA_COLUMN}
LATENCY_COLUMNS = {"latency_s": 1.0, "seconds": 1.0, "latency_ms": 1e-3}


@dataclass
class TrainingData:
    """Networks and devices once each; ``pairs`` index them with the measured seconds."""

    network_names: List[str]
    network_matrix: np.ndarray  # [networks, F_n] raw analyzer features
    network_feature_names: List[str]
    device_names: List[str]
    device_matrix: np.ndarray  # [devices, F_d] raw DeviceSpec features
    device_feature_names: List[str]
    pair_network: np.ndarray
    pair_device: np.ndarray
    seconds: np.ndarray
    network_sources: List[str] = field(default_factory=list)  # JSON per network, "" when unknown
    # Per network, the feature schema that computed its features ("" when unknown); None when the
    # data did not come from a table (its builder knows which analyzer computed them).
    network_feature_schemas: Optional[List[str]] = None
    # rows left out for their latency, by why: "zero or negative", "NaN", "infinite"
    skipped_latencies: Dict[str, int] = field(default_factory=dict)

    def skipped_note(self, source: "str | Path") -> str:
        """One line on the rows left out for their latency ('' when none)."""
        if not self.skipped_latencies:
            return ""
        total = sum(self.skipped_latencies.values())
        why = ", ".join(f"{count} {reason}" for reason, count in self.skipped_latencies.items())
        return (f"{source}: {total} row(s) left out, their latency is not a positive finite number ({why}); "
                "a failed or broken measurement teaches nothing about time")

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for array in (self.network_matrix, self.device_matrix, self.pair_network, self.pair_device, self.seconds):
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        digest.update("\n".join(self.network_feature_names + self.device_names).encode())
        return digest.hexdigest()

    def device_rows(self, device: int) -> np.ndarray:
        return np.flatnonzero(self.pair_device == device)

    def with_devices(self, keep: Sequence[int]) -> "TrainingData":
        """The table with only the devices at ``keep`` (their pairs, renumbered); every network stays."""
        keep = list(dict.fromkeys(keep))
        remap = np.full(len(self.device_names), -1)
        remap[keep] = np.arange(len(keep))
        rows = np.isin(self.pair_device, keep)
        return replace(self, device_names=[self.device_names[d] for d in keep], device_matrix=self.device_matrix[keep],
                       pair_network=self.pair_network[rows], pair_device=remap[self.pair_device[rows]],
                       seconds=self.seconds[rows])


TABLE_HINT = "a .csv or .csv.gz training table written by `sniper-onnx db export`"


def _open(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise SniperError(f"{path}: no such training table; export one with `sniper-onnx db export` or pass --db")
    return io.StringIO(read_text(path, TABLE_HINT, gzip_ok=True), newline="")


def _first(header: Sequence[str], candidates: Sequence[str], path: Path, role: str) -> str:
    for name in candidates:
        if name in header:
            return name
    raise SniperError(f"{path}: no {role} column (expected one of {', '.join(candidates)}); "
                      "use the CSV of `sniper-onnx db export`")


def load_training_csv(path: "str | Path") -> TrainingData:
    path = Path(path)
    with _open(path) as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise SniperError(f"{path}: empty training table; profile some networks first") from None
        rows = [row for row in reader if row]
    net_key = _first(header, NETWORK_KEYS, path, "network")
    dev_key = _first(header, DEVICE_KEYS, path, "device")
    latency_key = _first(header, tuple(LATENCY_COLUMNS), path, "latency")
    device_columns = [h for h in header if h.startswith(DEVICE_PREFIX) and h not in DEVICE_KEYS]
    network_columns = [h for h in header if h not in SKIP_COLUMNS and h not in device_columns
                       and h not in LATENCY_COLUMNS and h not in ("measurements", "runs")]
    if not rows or not network_columns:
        raise SniperError(f"{path}: no rows or no network feature columns; use the CSV of `sniper-onnx db export`")
    col = {h: i for i, h in enumerate(header)}
    nets: Dict[str, int] = {}
    devs: Dict[str, int] = {}
    net_rows: List[List[float]] = []
    sources: List[str] = []
    schemas: List[str] = []
    dev_rows: List[List[float]] = []
    pair_net, pair_dev, seconds = [], [], []
    skipped: Dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        try:
            latency = float(row[col[latency_key]]) * LATENCY_COLUMNS[latency_key]
            if row[col[net_key]] not in nets:
                nets[row[col[net_key]]] = len(nets)
                net_rows.append([float(row[col[h]] or 0.0) for h in network_columns])
                sources.append(row[col[SOURCE_COLUMN]] if SOURCE_COLUMN in col else "")
                schemas.append(row[col[SCHEMA_COLUMN]].strip() if SCHEMA_COLUMN in col else "")
            if row[col[dev_key]] not in devs:
                devs[row[col[dev_key]]] = len(devs)
                dev_rows.append([float(row[col[h]] or 0.0) for h in device_columns])
        except (ValueError, IndexError):
            raise SniperError(f"{path}:{line}: a value is not a number; fix or drop that row") from None
        if not 0 < latency < math.inf:  # failed, zero or broken measurements teach nothing about time
            reason = "NaN" if math.isnan(latency) else "infinite" if math.isinf(latency) else "zero or negative"
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        pair_net.append(nets[row[col[net_key]]])
        pair_dev.append(devs[row[col[dev_key]]])
        seconds.append(latency)
    return TrainingData(
        network_names=list(nets), network_matrix=np.array(net_rows), network_feature_names=network_columns,
        device_names=list(devs), device_matrix=np.array(dev_rows).reshape(len(devs), len(device_columns)),
        device_feature_names=[h[len(DEVICE_PREFIX):] for h in device_columns],
        pair_network=np.array(pair_net), pair_device=np.array(pair_dev), seconds=np.array(seconds),
        network_sources=sources, skipped_latencies=skipped, network_feature_schemas=schemas,
    )


def training_data_from_db(db_path: "str | Path", scratch: "str | Path", statistic: str = "median") -> TrainingData:
    """Export the database's training table to ``scratch`` and load it."""
    db_path = Path(db_path)
    if not db_path.is_file():
        raise SniperError(f"{db_path}: no such database; fill one with `sniper-onnx profile --db DB` or `sniper-onnx db import results.jsonl --db DB`, or pass --table")
    from sniper_onnx.database import export_csv
    from sniper_onnx.database.store import Database

    out = Path(scratch) / "training.csv"
    with Database(db_path, create=False) as database:
        summary = export_csv(database, out, statistic=statistic)
    if summary.rows == 0:
        raise SniperError(f"{db_path}: no usable measurement{_why_none(summary)}; "
                          "measure models with `sniper-onnx profile --db DB` first")
    return load_training_csv(out)


def _why_none(summary: Any) -> str:
    """Why a database export has no rows, in a clause: flags that left measurements out, networks
    without features."""
    reasons = [f"{count} measurement(s) flagged {flag} left out (docs/profiler.md, Flags)"
               for flag, count in summary.left_out_by_flag.items()]
    if summary.skipped_without_features:
        reasons.append(f"{summary.skipped_without_features} pair(s) left out whose networks have no features")
    return f": {'; '.join(reasons)}" if reasons else ": it holds no successful measurement"
