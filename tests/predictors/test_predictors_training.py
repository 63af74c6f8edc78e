"""Training sources and the Structure Checker's threshold rule."""

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.predictors.training import choose_threshold


def test_threshold_sends_small_nets_to_the_regression_only_where_it_wins():
    macs = np.arange(100, dtype=float)
    pcn = np.where(macs < 20, 0.5, 0.05)  # the PCN is poor on the 20 smallest networks
    regression = np.full(100, 0.1)
    threshold = choose_threshold(macs, pcn, regression)
    assert 15 <= threshold <= 20
    assert choose_threshold(macs, np.full(100, 0.05), regression) == 0.0  # PCN better everywhere: no regression


def test_train_from_the_database(tmp_path):
    from sniper_generator.nasbench201 import ordinal_to_arch
    from sniper_onnx.database.external import import_latency_table

    rng = np.random.default_rng(0)
    rows = [["arch_index", "arch", "dev_a", "dev_b"]]
    for index in rng.choice(15625, 30, replace=False):
        rows.append([int(index), ordinal_to_arch(int(index)), *rng.uniform(1.0, 20.0, 2).round(3)])
    table = tmp_path / "t.csv"
    with open(table, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    db = tmp_path / "ncd.sqlite"
    import_latency_table(db, table, unit="ms")
    out = tmp_path / "p.onnx"
    result = CliRunner().invoke(app, ["train", "--db", str(db), "-o", str(out), "--epochs", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(report["devices"]) == sorted(rows[0][2:4]) and report["networks"] == 30 and out.is_file()


def test_an_interval_always_holds_the_prediction_itself():
    import numpy as np

    from sniper_onnx.predictors.training import interval_of

    assert interval_of(np.array([0.1, 0.2, 0.3, 0.4])) == [0.0, pytest.approx(0.385)]  # all measured above
    assert interval_of(np.array([-0.3, -0.1])) == [pytest.approx(-0.29), 0.0]


def test_rows_without_a_positive_finite_latency_are_left_out_and_counted(tmp_path):
    """An infinite latency was kept (only <= 0 and NaN were skipped, silently): log(inf) in the PCN's
    targets, inf in evaluate's MAPE."""
    from sniper_onnx.predictors.commands import _training_data
    from sniper_onnx.predictors.dataset import load_training_csv

    table = tmp_path / "t.csv"
    latencies = ["0.001", "inf", "-Infinity", "nan", "0", "-0.5", "2e-3", "1e309"]
    table.write_text("network_id,device_name,total_macs,device_cores,latency_s\n"
                     + "".join(f"n{i},d,{10 * i},4,{value}\n" for i, value in enumerate(latencies)))
    data = load_training_csv(table)
    assert data.seconds.tolist() == [0.001, 0.002]
    assert data.skipped_latencies == {"infinite": 3, "NaN": 1, "zero or negative": 2}
    said = []
    _training_data(None, str(table), warn=said.append)  # the CLI prints it as a warning line
    assert len(said) == 1 and said[0].startswith(f"{table}: 6 row(s) left out"), said
    assert "(3 infinite, 1 NaN, 2 zero or negative)" in said[0]
    with pytest.warns(UserWarning, match="6 row"):  # a library caller gets a Python warning
        _training_data(None, str(table))
