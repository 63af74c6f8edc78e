"""A scheduler outside sniper-onnx that uses only onnxruntime, numpy and `sniper-onnx analyze --json`.

    sniper-onnx analyze model_a.onnx --json --kernels > a.json
    sniper-onnx analyze model_b.onnx --json --kernels > b.json
    python examples/foreign_scheduler.py PREDICTOR.onnx a.json b.json

Everything the predictor needs is inside its ONNX file: the input order is in its metadata
(``sniper.network_feature_names``, ``sniper.device_feature_names``) and so is the device table
(name -> raw device features, last value the correction slot). A predictor with a kernel-sum path
also takes each network's kernel table (``--kernels``), and its metadata ``sniper.kernel_path``
says on which devices that path answers. Networks below the Structure Checker's threshold
(``sniper.structure_checker``) take the device's Bayesian ridge, whose numbers are in
``sniper.regression``. This script assigns each task to the device that would finish it earliest,
given what is already queued there.

The graph's input contract (docs/predictor.md, "The ONNX file") is checked before onnxruntime runs:
its own error for a wrong shape comes from inside a fused Gemm, and a ``correction_slot`` that is
not 0 or one of the file's corrections silently applies none. A bad input (a feature that is missing,
null, negative or not finite; a file that is not JSON; an input of unknown dims, where the analysis
costs nothing after it and `sniper-onnx predict` refuses) ends the script with one line on stderr,
``foreign_scheduler.py: error: ...``, and exit status 1. As `predict` does, it passes on the
analysis's warnings, and says so where the JSON has no kernel table: this script cannot build one from
``--nodes`` rows (that takes sniper-onnx), so the PCN answers there where `predict` uses the kernel sum.
"""

from __future__ import annotations

import json
import sys

import numpy as np

import onnxruntime


class InputError(ValueError):
    """An input the predictor cannot take; its message is one line saying what is expected."""


def load(path: str):
    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types, several lines long
        raise InputError(f"{path}: not a readable ONNX file ({type(error).__name__})") from None
    meta = {k[len("sniper."):]: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()
            if k.startswith("sniper.")}
    if "device_table" not in meta:
        raise InputError(f"{path}: not a sniper-onnx predictor (no sniper.device_table in its metadata)")
    return session, meta


def correction_slots(meta: dict) -> int:
    """The corrections (adapt, feedback) the file holds: ``correction_slot`` k in 1..this selects the
    k-th, 0 none. Several entries of ``sniper.corrections`` may share a slot (feedback adds to one)."""
    return max((int(entry["slot"]) for entry in meta.get("corrections") or []), default=0)


def check_feeds(session, meta: dict, feeds: dict) -> None:
    """Every input has the shape the graph declares, with one N (and one K) across them, and every
    ``correction_slot`` names a correction the file holds (the graph would apply none: see
    docs/predictor.md)."""
    sizes: dict = {}  # symbolic dims ("N", "K") -> the size the first input gave them
    for spec in session.get_inputs():
        if spec.name not in feeds:
            raise InputError(f"missing input {spec.name}, shape {spec.shape}")
        shape = list(np.shape(feeds[spec.name]))
        wrong = len(shape) != len(spec.shape) or any(
            (isinstance(want, int) and got != want) or (isinstance(want, str) and sizes.setdefault(want, got) != got)
            for got, want in zip(shape, spec.shape))
        if wrong:
            given = ", ".join(f"{k}={v}" for k, v in sizes.items())
            raise InputError(f"{spec.name} has shape {shape}; the predictor takes {spec.shape} "
                             f"({given + ' from the inputs before it; ' if given else ''}one row per network-device pair)")
    slots, held = np.asarray(feeds["device_features"], np.float64)[:, -1], correction_slots(meta)
    valid = np.isfinite(slots) & (slots == np.round(slots)) & (slots >= 0) & (slots <= held)
    if not valid.all():
        row = int(np.argmin(valid))
        raise InputError(f"device_features row {row}: correction_slot {slots[row]:g} is not 0 (none) or one of the "
                         f"file's {held} correction(s) (1..{held}); take device rows from sniper.device_table")


def kernel_rows(meta, kernel_table: dict | None) -> list:
    """The rows of the JSON's ``kernel_table``, its columns picked by the names the predictor was
    trained on (sniper.kernel_path.feature_names): newer analyzers append columns that an older
    predictor never saw."""
    if not kernel_table:
        return []
    names, columns = meta["kernel_path"]["feature_names"], list(kernel_table.get("columns") or [])
    missing = [name for name in names if name not in columns]
    if missing:
        raise InputError(f"kernel_table lacks the column(s) {', '.join(missing[:3])} this predictor takes; re-run "
                         "`sniper-onnx analyze --json --kernels` with the sniper-onnx that wrote the predictor or a newer one")
    picked = [columns.index(name) for name in names]
    return [[row[i] for i in picked] for row in kernel_table.get("rows") or []]


def predict_seconds(session, meta, features: dict, kernel_table: dict | None = None) -> dict:
    """Seconds on every device the predictor knows, for one network's analyzer features (and its
    kernel table, when the JSON has one)."""
    devices = sorted(meta["device_table"])
    network = np.array([[features[name] for name in meta["network_feature_names"]]] * len(devices), np.float32)
    device = np.array([meta["device_table"][d] for d in devices], np.float32)
    feeds = {"network_features": network, "device_features": device}
    kernel_path = meta.get("kernel_path") or {}
    if not kernel_path:
        check_feeds(session, meta, feeds)
        return dict(zip(devices, session.run(["seconds"], feeds)[0].tolist()))
    width = len(kernel_path["feature_names"])
    rows = np.array(kernel_rows(meta, kernel_table), np.float32)
    if rows.size and (rows.ndim != 2 or rows.shape[1] != width):
        raise InputError(f"kernel_table rows have shape {list(rows.shape)}; the predictor takes [layers, {width}] "
                         "(sniper.kernel_path.feature_names)")
    rows = rows.reshape(-1, width)
    if len(rows):  # identical layers cost the same: one row each, with its count in column 0
        rows, counts = np.unique(rows, axis=0, return_counts=True)
    table = np.zeros((len(devices), max(len(rows), 1), 1 + width), np.float32)
    table[:, : len(rows), 0] = counts if len(rows) else 0.0  # padding rows count 0
    table[:, : len(rows), 1:] = rows
    feeds["kernel_features"] = table
    check_feeds(session, meta, feeds)
    pcn, kernel_sum = session.run(["seconds", "kernel_seconds"], feeds)
    # the kernel sum answers, given a table, where kernel_path says so: where it won in training, and
    # on a device whose correction (adapt, feedback) was fitted to it (the graph applies that correction)
    # A network of no layer (a table of no row, num_layers 0) costs one call, which the kernel sum
    # answers where the device's call was seen in training; control flow comes with no table at all.
    no_layer = kernel_table is not None and len(rows) == 0 and features.get("num_layers") == 0
    use = [kernel_path["devices"].get(d, {}).get("path") == "kernels" and (len(rows) > 0 or (no_layer and call_seen(meta, d)))
           for d in devices]
    # no network runs in less than a call: the PCN, which never learnt one, is floored at it
    return {d: float(k if u else max(p, call_floor(meta, d))) for d, p, k, u in zip(devices, pcn, kernel_sum, use)}


def call_floor(meta, device: str) -> float:
    """The device's cost of a call where training showed it and no correction slot changed it."""
    facts = meta["kernel_path"]["devices"].get(device, {})
    uncorrected = meta["device_table"][device][-1] == 0
    return float(facts["call_seconds"]) if "call_seconds" in facts and uncorrected and call_seen(meta, device) else 0.0


def call_seen(meta, device: str) -> bool:
    """Whether a training net of at most 3 layers showed the device's cost of a call (the library's
    kernelnet.SMALL_NET_LAYERS); files before 2026-11-30 record no fewest_layers, and there the
    fastest net (twice the ridge's floor) must have taken at most 10 calls (runtime.CALL_EVIDENCE)."""
    facts = meta["kernel_path"]["devices"].get(device, {})
    if "fewest_layers" in facts:  # null or NaN in a file written by hand: not seen
        return isinstance(facts["fewest_layers"], (int, float)) and 0 < facts["fewest_layers"] <= 3
    floor = ((meta.get("regression") or {}).get(device) or {}).get("floor_seconds")
    return "call_seconds" in facts and floor is not None and 10 * facts["call_seconds"] >= 2 * floor


def structure_checked(meta, features: dict, seconds: dict) -> dict:
    """The Structure Checker: networks below its threshold get the device's Bayesian ridge (stored
    as numbers in the metadata) on uncorrected devices, as `sniper-onnx predict` does."""
    checker = meta.get("structure_checker")
    if not checker or features[checker["feature"]] >= checker["threshold"]:
        return seconds
    answered = dict(seconds)
    for device, ridge in (meta.get("regression") or {}).items():
        if device in answered and meta["device_table"][device][-1] == 0:
            z = (np.array([features[n] for n in ridge["features"]]) - np.array(ridge["mean"])) / np.array(ridge["scale"])
            # linear in seconds, so below the networks it was fitted to it can answer 0 or less:
            # the library clips at the ridge's floor (1 µs in files that store none)
            answered[device] = max(float(z @ np.array(ridge["coef"]) + ridge["intercept"]),
                                   float(ridge.get("floor_seconds", 1e-6)))
    return answered


def read_analysis(path: str, meta: dict) -> dict:
    """The JSON of `sniper-onnx analyze --json`, with every feature the predictor takes, each a finite
    number >= 0, and no input of unknown dims (as `sniper-onnx predict` checks)."""
    try:
        with open(path, encoding="utf-8") as handle:
            analysis = json.load(handle)
    except OSError as error:
        raise InputError(f"{path}: cannot read it ({error.strerror})") from None
    except ValueError as error:  # UnicodeDecodeError too: a model given instead of its analysis
        if isinstance(error, UnicodeDecodeError) or path.endswith(".onnx"):
            raise InputError(f"{path}: not JSON but a binary file (an .onnx model?); run `sniper-onnx analyze MODEL "
                             "--json --kernels > MODEL.json` first and give MODEL.json") from None
        raise InputError(f"{path}: not JSON ({error})") from None
    if not isinstance(analysis, dict) or not isinstance(analysis.get("features"), dict):
        raise InputError(f"{path}: not the JSON of `sniper-onnx analyze --json` (no 'features')")
    missing = [name for name in meta["network_feature_names"] if name not in analysis["features"]]
    if missing:
        raise InputError(f"{path}: {len(missing)} feature(s) this predictor takes are missing ({', '.join(missing[:3])}"
                         f"{' ...' if len(missing) > 3 else ''}); re-run `sniper-onnx analyze --json` with the "
                         "sniper-onnx that wrote the predictor")
    for name in meta["network_feature_names"]:
        value = analysis["features"][name]
        try:
            good = np.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError):
            good = False
        if not good:
            raise InputError(f"{path}: feature {name} is {json.dumps(value)}; analyzer features are finite numbers "
                             ">= 0: use the features of `sniper-onnx analyze --json`")
    # an input of unknown dims leaves every node after it without a cost: predict refuses the file
    inputs = (analysis.get("model") or {}).get("inputs") or {}
    open_inputs = [(name, dims) for name, dims in inputs.items() if dims is not None and None in dims]
    if open_inputs and analysis.get("unknown_shape_nodes"):
        name, dims = open_inputs[0]
        shown = "x".join("?" if d is None else str(d) for d in dims)
        raise InputError(f"{path}: input '{name}' has unknown dims ({shown}), so {len(analysis['unknown_shape_nodes'])} "
                         "nodes have no cost and a prediction would be meaningless; re-run `sniper-onnx analyze --json` "
                         f"with --input-shape {name}=DIMS (e.g. {shown.replace('?', 'N')} with your N)")
    return analysis


def analysis_warnings(path: str, analysis: dict, meta: dict) -> list:
    """What `sniper-onnx predict` warns of for this JSON: the analyzer's warnings, that costs it could
    not count make the predictions lower bounds, and a missing kernel table."""
    notes = [f"{path}: {warning}" for warning in analysis.get("warnings") or []]
    missing = sum((analysis.get("unknown_ops") or {}).values()) + len(analysis.get("unknown_shape_nodes") or [])
    if missing:
        which = "that node" if missing == 1 else f"those {missing} nodes"
        notes.append(f"{path}: the predictions count {which} as doing no work: read them as lower bounds")
    nodes = analysis.get("nodes") or []
    if meta.get("kernel_path") and "kernel_table" not in analysis and not any(n.get("subgraph") for n in nodes):
        # (a null kernel_table, or a node with subgraphs, is control flow: predict takes the PCN too)
        why = "`sniper-onnx predict` builds one from the nodes, this script cannot" if nodes else "more accurate"
        notes.append(f"{path}: no kernel table in this JSON, so the PCN answers where the kernel sum would ({why}); "
                     "write it with `sniper-onnx analyze --json --kernels`")
    return notes


def schedule(predictor: str, analyses: list) -> list:
    session, meta = load(predictor)
    busy_until = {device: 0.0 for device in meta["device_table"]}
    plan = []
    for path in analyses:
        analysis = read_analysis(path, meta)
        for note in analysis_warnings(path, analysis, meta):
            print(f"foreign_scheduler.py: warning: {note}", file=sys.stderr)
        seconds = predict_seconds(session, meta, analysis["features"], analysis.get("kernel_table"))
        seconds = structure_checked(meta, analysis["features"], seconds)
        device = min(busy_until, key=lambda d: busy_until[d] + seconds[d])
        busy_until[device] += seconds[device]
        plan.append({"task": path, "device": device, "predicted_ms": 1e3 * seconds[device],
                     "finishes_at_ms": 1e3 * busy_until[device]})
    return plan


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        plan = schedule(sys.argv[1], sys.argv[2:])
    except InputError as error:
        sys.exit(f"foreign_scheduler.py: error: {error}")
    for step in plan:
        print(json.dumps(step))
