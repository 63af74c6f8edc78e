"""Session fixtures: a small synthetic latency table and a predictor trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from predictors_testkit import DEVICES, synthetic_networks, write_table  # noqa: F401


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory) -> Path:
    return write_table(tmp_path_factory.mktemp("pred") / "train.csv", synthetic_networks(160, 1), DEVICES)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synthetic_csv):
    """A small predictor trained once for the whole session (a few seconds)."""
    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.runtime import save_predictor
    from sniper_onnx.predictors.training import train_predictor

    data = load_training_csv(synthetic_csv)
    config = PCNConfig(attention_dim=4, hidden=(32,), embedding=4, epochs=20, batch_size=64, learning_rate=1e-2, min_steps=800)
    predictor, report = train_predictor(data, config)
    path = save_predictor(predictor, tmp_path_factory.mktemp("pred") / "predictor.onnx")
    return path, predictor, report, data
