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
"""

from __future__ import annotations

import json
import sys

import numpy as np

import onnxruntime


def load(path: str):
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = {k[len("sniper."):]: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()
            if k.startswith("sniper.")}
    return session, meta


def predict_seconds(session, meta, features: dict, kernel_rows: list | None = None) -> dict:
    """Seconds on every device the predictor knows, for one network's analyzer features (and its
    kernel table rows, when the JSON has them)."""
    devices = sorted(meta["device_table"])
    network = np.array([[features[name] for name in meta["network_feature_names"]]] * len(devices), np.float32)
    device = np.array([meta["device_table"][d] for d in devices], np.float32)
    feeds = {"network_features": network, "device_features": device}
    kernel_path = meta.get("kernel_path") or {}
    if not kernel_path:
        return dict(zip(devices, session.run(["seconds"], feeds)[0].tolist()))
    width = len(kernel_path["feature_names"])
    rows = np.array(kernel_rows or [], np.float32).reshape(-1, width)
    if len(rows):  # identical layers cost the same: one row each, with its count in column 0
        rows, counts = np.unique(rows, axis=0, return_counts=True)
    table = np.zeros((len(devices), max(len(rows), 1), 1 + width), np.float32)
    table[:, : len(rows), 0] = counts if len(rows) else 0.0  # padding rows count 0
    table[:, : len(rows), 1:] = rows
    feeds["kernel_features"] = table
    pcn, kernel_sum = session.run(["seconds", "kernel_seconds"], feeds)
    # the kernel sum answers, given a table, where kernel_path says so: where it won in training, and
    # on a device whose correction (adapt, feedback) was fitted to it (the graph applies that correction)
    use = [len(rows) > 0 and kernel_path["devices"].get(d, {}).get("path") == "kernels" for d in devices]
    return {d: float(k if u else p) for d, p, k, u in zip(devices, pcn, kernel_sum, use)}


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
            answered[device] = float(z @ np.array(ridge["coef"]) + ridge["intercept"])
    return answered


def schedule(predictor: str, analyses: list) -> list:
    session, meta = load(predictor)
    busy_until = {device: 0.0 for device in meta["device_table"]}
    plan = []
    for path in analyses:
        with open(path) as handle:
            analysis = json.load(handle)
        seconds = predict_seconds(session, meta, analysis["features"], (analysis.get("kernel_table") or {}).get("rows"))
        seconds = structure_checked(meta, analysis["features"], seconds)
        device = min(busy_until, key=lambda d: busy_until[d] + seconds[d])
        busy_until[device] += seconds[device]
        plan.append({"task": path, "device": device, "predicted_ms": 1e3 * seconds[device],
                     "finishes_at_ms": 1e3 * busy_until[device]})
    return plan


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    for step in schedule(sys.argv[1], sys.argv[2:]):
        print(json.dumps(step))
