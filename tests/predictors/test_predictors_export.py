"""The exported ONNX graph computes what the torch PCN computes, normalization included."""

import numpy as np
import onnx

from sniper_onnx.predictors import graph as G
from sniper_onnx.predictors.pcn import PCNConfig, torch_forward, train_pcn
from sniper_onnx.predictors.runtime import build_predictor, params_of


def test_onnx_round_trip_equals_torch(trained):
    _, predictor, _, data = trained
    params = params_of(predictor)
    nets = data.network_matrix[:50]
    devices = np.repeat(data.device_matrix, 13, axis=0)[:50]
    expected = torch_forward(params, nets, devices)
    got = predictor.run(nets, np.column_stack([devices, np.zeros(50)]))[G.SECONDS_OUTPUT]
    assert np.allclose(got, expected, rtol=1e-4)


def test_untrained_export_round_trip_and_metadata():
    rng = np.random.default_rng(3)
    nets, devs = rng.uniform(0, 1e6, size=(12, 5)), rng.normal(size=(3, 4))
    params = train_pcn(nets, devs, np.arange(12), np.arange(12) % 3, rng.normal(size=12) - 5,
                       PCNConfig(attention_dim=3, hidden=(7, 5), embedding=2, epochs=1, min_steps=0))
    meta = {"network_feature_names": [f"n{i}" for i in range(5)], "device_feature_names": ["a", "b", "c", "d", "correction_slot"],
            "device_table": {"x": [0.0, 0, 0, 0, 0]}, "training_data_sha256": "abc"}
    predictor = build_predictor(params, meta)
    got = predictor.run(nets, np.column_stack([devs[np.arange(12) % 3], np.zeros(12)]))[G.SECONDS_OUTPUT]
    assert np.allclose(got, torch_forward(params, nets, devs[np.arange(12) % 3]), rtol=1e-4)
    keys = {p.key for p in predictor.model.metadata_props}
    assert {"sniper.network_feature_names", "sniper.network_feature_units", "sniper.version",
            "sniper.training_data_sha256", "sniper.device_table"} <= keys
    onnx.checker.check_model(predictor.model)
