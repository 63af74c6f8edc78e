"""Measured samples for adapt/feedback: (network, latency) pairs from CSV or JSON lines.

A network is an ONNX path (analyzed here, relative to the samples file), an ``analyze --json``
output file, or a NAS-Bench-201 arch string (features from the committed table). Latency columns:
``latency_s``/``seconds`` or ``latency_ms``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from sniper_onnx.errors import SniperError

LATENCY_SCALE = {"latency_s": 1.0, "seconds": 1.0, "latency_ms": 1e-3}


@dataclass
class Samples:
    names: List[str]
    features: List[Dict[str, float]]
    seconds: List[float]


def _rows(path: Path) -> List[Dict[str, str]]:
    text = path.read_text()
    if path.suffix in (".jsonl", ".json"):
        try:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise SniperError(f"{path}: line {error.lineno} is not JSON; give one JSON object per line") from None
    return list(csv.DictReader(text.splitlines()))


def _latency(row: Dict[str, str], path: Path, line: int) -> float:
    for key, scale in LATENCY_SCALE.items():
        if row.get(key) not in (None, ""):
            try:
                value = float(row[key]) * scale
            except ValueError:
                break
            if value > 0:
                return value
            break
    raise SniperError(f"{path}:{line}: needs a positive latency_ms, latency_s or seconds value")


def _features(network: str, base: Path, cache: Dict[str, Dict[str, float]]) -> Dict[str, float]:
    if network.startswith("|") and network.endswith("|"):
        if "nb201" not in cache:
            from sniper_onnx.predictors.hwnas import network_features

            from sniper_generator.nasbench201 import all_archs

            archs = list(all_archs())
            matrix, names, _ = network_features(archs)
            cache["nb201"] = {a: dict(zip(names, row)) for a, row in zip(archs, matrix)}  # type: ignore[assignment]
        table = cache["nb201"]
        if network not in table:
            raise SniperError(f"{network!r}: not a NAS-Bench-201 arch string")
        return table[network]  # type: ignore[return-value]
    path = Path(network) if Path(network).is_absolute() else base / network
    if not path.is_file():
        raise SniperError(f"{path}: no such network file; give an .onnx path, an `analyze --json` file or an arch string")
    if path.suffix == ".json":
        return {k: float(v) for k, v in json.loads(path.read_text())["features"].items()}
    from sniper_onnx.analysis import analyze

    return {k: float(v) for k, v in analyze(str(path)).features.items()}


def load_samples(path: "str | Path", device: Optional[str] = None) -> Samples:
    """Rows with a ``network`` column and a latency; a ``device`` column, if present, filters to ``device``."""
    path = Path(path)
    if not path.is_file():
        raise SniperError(f"{path}: no such samples file; give a CSV with network,latency_ms columns")
    rows = _rows(path)
    if device is not None and rows and "device" in rows[0]:
        rows = [row for row in rows if row.get("device") == device]
    if not rows:
        raise SniperError(f"{path}: no samples{f' for device {device!r}' if device else ''}; add (network, latency) rows")
    cache: Dict[str, Dict[str, float]] = {}
    samples = Samples([], [], [])
    for line, row in enumerate(rows, start=2):
        network = str(row.get("network") or row.get("arch") or "")
        if not network:
            raise SniperError(f"{path}:{line}: no network column value (an .onnx path or arch string)")
        samples.names.append(network)
        samples.seconds.append(_latency(row, path, line))
        samples.features.append(_features(network, path.parent, cache))
    return samples
