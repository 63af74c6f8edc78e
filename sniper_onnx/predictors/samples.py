"""Measured samples for adapt/feedback: (network, latency) pairs from CSV or JSON lines.

A network is an ONNX path (analyzed here, relative to the samples file), an ``analyze --json``
output file, or a NAS-Bench-201 arch string (features from the committed table). Latency columns:
``latency_s``/``seconds`` or ``latency_ms``.

A results file of the profiler (``sniper-profiler run --out`` or ``sniper-onnx profile``) is read as
it is: each model measured once is one sample at its median time (the median of its passes'
medians), re-made from its generator or zoo source when the file has gone, with the device's spec
the records carry.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from sniper_onnx.errors import SniperError

LATENCY_SCALE = {"latency_s": 1.0, "seconds": 1.0, "latency_ms": 1e-3}


@dataclass
class Samples:
    names: List[str]
    features: List[Dict[str, float]]
    seconds: List[float]
    # Each network's kernel table (None for an arch string or a JSON without nodes): adapt and
    # feedback compare the measurements with what `predict` answers, the kernel sum included.
    kernel_tables: List[Optional[Any]] = field(default_factory=list)
    # The DeviceSpec (as a dict) of the device a profiler results file was measured on, else None.
    device_spec: Optional[Dict[str, Any]] = None
    # `analyze --json` samples written by another analyzer: their features (and kernel rows: an older
    # one tags no SkipLayerNormalization) may differ from what this one computes
    notes: List[str] = field(default_factory=list)


def _rows(path: Path) -> List[Dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SniperError(f"{path}: not UTF-8 text; give a CSV or JSON-lines samples file") from None
    if path.suffix in (".jsonl", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise SniperError(f"{path}: line {number} is not JSON; give one JSON object per line") from None
            if not isinstance(row, dict):
                raise SniperError(f"{path}: line {number} is not a JSON object; give one object per line")
            rows.append(row)
        return rows
    return list(csv.DictReader(text.splitlines()))


def _latency(row: Dict[str, str], path: Path, line: int) -> float:
    for key, scale in LATENCY_SCALE.items():
        if row.get(key) not in (None, ""):
            value = row[key]
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                break  # true would read as 1 ms, a list as nothing sensible
            try:
                value = float(value) * scale
            except ValueError:
                break
            if value > 0:
                return value
            break
    raise SniperError(f"{path}:{line}: needs a positive latency_ms, latency_s or seconds value")


def _network(network: str, base: Path, cache: Dict[str, Any]) -> Tuple[Dict[str, float], Optional[Any]]:
    """Features and kernel table of one samples row's network."""
    if network.startswith("|") and network.endswith("|"):
        if "nb201" not in cache:
            from sniper_onnx.predictors.hwnas import network_features

            from sniper_generator.nasbench201 import all_archs

            archs = list(all_archs())
            matrix, names, _ = network_features(archs)
            cache["nb201"] = {a: dict(zip(names, row)) for a, row in zip(archs, matrix)}
        table = cache["nb201"]
        if network not in table:
            raise SniperError(f"{network!r}: not a NAS-Bench-201 arch string")
        return table[network], None
    path = Path(network) if Path(network).is_absolute() else base / network
    if not path.is_file():
        raise SniperError(f"{path}: no such network file; give an .onnx path, an `analyze --json` file or an arch string")
    if path.suffix == ".json":
        from sniper_onnx.predictors.commands import analysis_holds_control_flow, analyzer_version_notes, kernel_table_of_json

        try:
            data = json.loads(path.read_text())
            _check_costs(path, data, cache)
            features, table = {k: float(v) for k, v in data["features"].items()}, kernel_table_of_json(data)
            if table is None and analysis_holds_control_flow(data):  # set aside, as from an .onnx file
                from sniper_onnx.analysis.kernels import empty_kernel_table

                table = empty_kernel_table()
            notes = cache.setdefault("notes", [])
            notes += [note for note in analyzer_version_notes(str(path), data) if note not in notes]
            return features, table
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise SniperError(f"{path}: not the JSON of `sniper-onnx analyze --json`") from None
        except SniperError as error:  # a kernel table of another version: say which file
            raise SniperError(f"{path}: {error}") from None
    from sniper_onnx.analysis import analyze

    result = analyze(str(path))
    _check_costs(path, result.to_json_dict(), cache)
    return {k: float(v) for k, v in result.features.items()}, _sample_table(result.nodes)


# what a sample with an input of unknown dims should be listed as instead
_SIZED_SAMPLE = "list the output of `sniper-onnx analyze MODEL --json --kernels` in the samples file instead, with -s"


def _check_costs(path: Path, analysis: Dict[str, Any], cache: Dict[str, Any]) -> None:
    """As `predict`: an input of unknown dims leaves the nodes after it without cost, and a fit to
    that sample's time would learn from a network that is not the one measured (a transformer of
    unset sequence length read as 0 MACs put a corrected CPU 10x off); incomplete costs are noted."""
    from sniper_onnx.predictors.commands import incomplete_cost_notes

    notes = cache.setdefault("notes", [])
    notes += [note for note in incomplete_cost_notes(str(path), analysis, _SIZED_SAMPLE) if note not in notes]


def _sample_table(nodes):
    """A sample's kernel table; for control flow, which no row can time, one of no row, so that
    adapt and feedback set the sample aside from the node-time fits (as a network of no layer)
    instead of fitting the layers outside its subgraphs."""
    from sniper_onnx.analysis.kernels import empty_kernel_table, kernel_table_for_prediction

    table = kernel_table_for_prediction(nodes)
    return empty_kernel_table() if table is None else table


def load_samples(path: "str | Path", device: Optional[str] = None) -> Samples:
    """Rows with a ``network`` column and a latency; a ``device`` column, if present, filters to
    ``device``. A profiler results file is read as the module docstring says."""
    path = Path(path)
    if not path.is_file():
        raise SniperError(f"{path}: no such samples file; give a CSV with network,latency_ms columns")
    if is_profiler_results(path):
        return _profiler_samples(path, device)
    rows = _rows(path)
    if device is not None and rows and "device" in rows[0]:
        rows = [row for row in rows if row.get("device") == device]
    if not rows:
        raise SniperError(f"{path}: no samples{f' for device {device!r}' if device else ''}; add (network, latency) rows")
    cache: Dict[str, Any] = {}
    samples = Samples([], [], [], [])
    for line, row in enumerate(rows, start=2):
        network = str(row.get("network") or row.get("arch") or "")
        if not network:
            raise SniperError(f"{path}:{line}: no network column value (an .onnx path or arch string)")
        samples.names.append(network)
        samples.seconds.append(_latency(row, path, line))
        features, kernels = _network(network, path.parent, cache)
        samples.features.append(features)
        samples.kernel_tables.append(kernels)
    samples.notes = cache.get("notes", [])
    return samples


def is_profiler_results(path: "str | Path") -> bool:
    """Whether ``path`` is a profiler results file (its first record says so)."""
    try:
        with open(path) as handle:
            first = next((line for line in handle if line.strip()), "")
        return str(json.loads(first).get("schema", "")).startswith("sniper-profiler/")
    except (OSError, ValueError, AttributeError):
        return False


def _measured_device(record: Dict[str, Any]) -> str:
    return str(((record.get("device") or {}).get("spec") or {}).get("name") or "")


def _usable_records(path: Path, device: Optional[str]) -> List[Dict[str, Any]]:
    """Successful records, of ``device`` when the file holds several devices; one device's file is
    taken whole, since the caller names the device its records are for. (Those of another
    precision are left out once their models' weights are read: ``_profiler_samples``.)"""
    from sniper_profiler.records import read_records

    records = [r for r in read_records(path).records if r.get("status") == "ok"]
    measured_on = sorted({_measured_device(r) for r in records})
    if device is None and len(measured_on) > 1:
        raise SniperError(f"{path}: its measurements come from several devices ({', '.join(measured_on)}); "
                          "pick one with --device NAME")
    if device is not None and len(measured_on) > 1:
        records = [r for r in records if _measured_device(r) == device]
    if not records:
        held = f"; it holds {', '.join(measured_on)}: pick one with --device" if len(measured_on) > 1 else ""
        raise SniperError(f"{path}: no successful measurement{f' of device {device!r}' if device else ''}{held}")
    return records


def _profiler_samples(path: Path, device: Optional[str]) -> Samples:
    import statistics

    from sniper_onnx.analysis import analyze
    from sniper_onnx.precision import PRECISION_MISMATCH, judged_flags, model_weight_type
    from sniper_onnx.database.importer import load_model_for, network_key

    records = _usable_records(path, device)
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for record in records:
        model = record.get("model") or {}
        groups.setdefault(network_key(model.get("sha256") or model.get("name") or "", record.get("inputs") or []), []).append(record)
    samples = Samples([], [], [], [])
    for group in groups.values():
        first = group[0]
        model = first.get("model") or {}
        proto, _ = load_model_for(model)
        if proto is None and all(PRECISION_MISMATCH in (r.get("flags") or []) for r in group):
            continue  # flagged records of a model that is gone: not used whichever its weights
        if proto is None:
            raise SniperError(f"{path}: {model.get('path')} is missing or changed since it was measured, and it has no "
                              "generator or zoo source to re-make it from; put the file back, or drop its records")
        # analysed at the shape it was timed at (a symbolic dim may have taken --input-shape)
        result = analyze(proto, input_shapes={i["name"]: tuple(i["shape"]) for i in first.get("inputs") or []} or None)
        weight_type = model_weight_type(result.model_info)
        usable = [r for r in group if PRECISION_MISMATCH not in judged_flags(r.get("flags") or [], weight_type, r.get("config") or {})]
        if not usable:  # the time of another precision than the device's
            continue
        samples.names.append(str(model.get("name")))
        samples.features.append({k: float(v) for k, v in result.features.items()})
        samples.kernel_tables.append(_sample_table(result.nodes))
        samples.seconds.append(float(statistics.median(r["stats"]["median_s"] for r in usable)))
    if not samples.names:
        raise SniperError(f"{path}: every measurement is flagged precision_mismatch (the models' precision is not the "
                          "one they were measured under); measure them again with --precision set to the models'")
    specs = {_measured_device(r): ((r.get("device") or {}).get("spec")) for r in records}
    samples.device_spec = next(iter(specs.values())) if len(specs) == 1 else None
    return samples
