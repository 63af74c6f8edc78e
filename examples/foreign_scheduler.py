"""A scheduler outside sniper-onnx that uses only onnxruntime, numpy and `sniper-onnx analyze --json`.

    sniper-onnx analyze model_a.onnx --json > a.json
    sniper-onnx analyze model_b.onnx --json > b.json
    python examples/foreign_scheduler.py PREDICTOR.onnx a.json b.json

Everything the predictor needs is inside its ONNX file: the input order is in its metadata
(``sniper.network_feature_names``, ``sniper.device_feature_names``) and so is the device table
(name -> raw device features, last value the correction slot). This script assigns each task to
the device that would finish it earliest, given what is already queued there.
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


def predict_seconds(session, meta, features: dict) -> dict:
    """Seconds on every device the predictor knows, for one network's analyzer features."""
    devices = sorted(meta["device_table"])
    network = np.array([[features[name] for name in meta["network_feature_names"]]] * len(devices), np.float32)
    device = np.array([meta["device_table"][d] for d in devices], np.float32)
    seconds = session.run(["seconds"], {"network_features": network, "device_features": device})[0]
    return dict(zip(devices, seconds.tolist()))


def schedule(predictor: str, analyses: list) -> list:
    session, meta = load(predictor)
    busy_until = {device: 0.0 for device in meta["device_table"]}
    plan = []
    for path in analyses:
        with open(path) as handle:
            features = json.load(handle)["features"]
        seconds = predict_seconds(session, meta, features)
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
