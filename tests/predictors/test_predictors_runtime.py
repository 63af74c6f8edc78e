"""Prediction runs on onnxruntime + numpy alone; the regression path matches scikit-learn."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sniper_onnx.errors import SniperError
from sniper_onnx.predictors import load_predictor
from sniper_onnx.predictors.runtime import regression_predict


def test_predict_imports_no_torch_or_sklearn(trained, tmp_path):
    path, predictor, _, data = trained
    features = dict(zip(data.network_feature_names, data.network_matrix[0].tolist()))
    script = (
        "import json, sys\n"
        "from sniper_onnx.predictors import load_predictor\n"
        f"table = load_predictor({str(path)!r}).predict([{features!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn'))\n"
        "print(json.dumps({'rows': len(table.rows), 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result == {"rows": len(predictor.devices), "heavy": []}


def test_prediction_table_has_interval_and_path(trained):
    _, predictor, _, data = trained
    features = [dict(zip(data.network_feature_names, row)) for row in data.network_matrix[:20]]
    table = predictor.predict(features, ["slow_cpu"])
    assert len(table.rows) == 20
    for row in table.rows:
        assert 0 < row.low <= row.seconds <= row.high
        assert row.path in ("pcn", "regression")
    threshold = predictor.meta["structure_checker"]["threshold"]
    macs = np.array([f["total_macs"] for f in features])
    assert [r.path == "regression" for r in table.rows] == list(macs < threshold)


def test_regression_matches_sklearn():
    from sklearn.linear_model import BayesianRidge

    from sniper_onnx.predictors.training import fit_bayesian_ridge

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, size=(60, 3))
    y = x @ [0.01, 0.002, 0.0] + rng.normal(scale=0.01, size=60)
    stored = fit_bayesian_ridge(x, y, ["a", "b", "c"])
    mean, std = regression_predict(stored, x[:5], ["a", "b", "c"])
    z = (x - x.mean(0)) / x.std(0)
    ref_mean, ref_std = BayesianRidge().fit(z, y).predict(z[:5], return_std=True)
    assert np.allclose(mean, ref_mean) and np.allclose(std, ref_std)


def test_unknown_device_and_missing_features_are_user_errors(trained):
    _, predictor, _, data = trained
    features = dict(zip(data.network_feature_names, data.network_matrix[0]))
    with pytest.raises(SniperError, match="unknown to predictor"):
        predictor.predict([features], ["toaster"])
    with pytest.raises(SniperError, match="features missing"):
        predictor.predict([{"total_macs": 1.0}])


def test_missing_predictor_file_is_a_user_error(tmp_path):
    with pytest.raises(SniperError, match="no such predictor"):
        load_predictor(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(SniperError):
        load_predictor(bad)


def test_extrapolation_is_flagged(trained):
    _, predictor, _, data = trained
    inside = dict(zip(data.network_feature_names, data.network_matrix[0]))
    outside = dict(inside, total_macs=float(data.network_matrix[:, 0].max() * 100))
    table = predictor.predict([inside, outside], ["phone"], network_names=["in", "out"])
    assert table.rows[0].outside_training_range == []
    assert table.rows[1].outside_training_range == ["total_macs"]
    assert len(table.warnings()) == 1 and table.warnings()[0].startswith("out:")
    assert table.rows[1].predictor == predictor.source and Path(predictor.source).name in table.warnings()[0]


def test_a_net_ten_times_smaller_than_any_trained_one_is_flagged(trained):
    """On a linear scale the margin (5 % of a range spanning decades) would swallow the whole low end."""
    _, predictor, _, data = trained
    column = data.network_feature_names.index("total_macs")
    inside = dict(zip(data.network_feature_names, data.network_matrix[0]))
    tiny = dict(inside, total_macs=float(data.network_matrix[:, column].min() / 10))
    table = predictor.predict([inside, tiny], ["phone"], network_names=["in", "tiny"])
    assert table.rows[0].outside_training_range == [] and "total_macs" in table.rows[1].outside_training_range


def test_shipped_predictor_predicts_an_onnx_file_without_torch(tmp_path):
    import onnx

    from sniper_generator.nasbench201 import build_nasbench201

    model = tmp_path / "nb201.onnx"
    onnx.save(build_nasbench201("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
                                weights=False), str(model))
    script = (
        "import json, sys\n"
        "from sniper_onnx.predictors.commands import predict_files\n"
        f"table = predict_files([{str(model)!r}], ['titanx_1', 'pixel3'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn'))\n"
        "print(json.dumps({'ms': [r.seconds * 1e3 for r in table.rows], 'heavy': heavy, 'warnings': table.warnings()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["heavy"] == [] and result["warnings"] == []
    # NAS-Bench-201 nets take milliseconds on these devices (titanx_1 ~10 ms, pixel3 ~17 ms measured)
    assert all(1.0 < ms < 100.0 for ms in result["ms"])


def test_shipped_cpu_predictor_answers_from_the_kernel_sum_without_torch(tmp_path):
    from sniper_generator.zoo import export_zoo_model

    model = tmp_path / "squeezenet.onnx"
    import onnx

    onnx.save(export_zoo_model("squeezenet1_1", 224, 1, weights=False), str(model))
    script = (
        "import json, sys\n"
        "from sniper_onnx.predictors.commands import predict_files\n"
        f"table = predict_files([{str(model)!r}], ['AMD EPYC | cpu fp32 t1 opt-all'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn'))\n"
        "print(json.dumps({'rows': [[r.seconds * 1e3, r.path] for r in table.rows], 'heavy': heavy}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["heavy"] == []
    [(ms, path)] = result["rows"]
    # SqueezeNet 1.1 at 224 measured 7.2 ms on this configuration (data/reference/train.csv.gz)
    assert path == "kernels" and 5.0 < ms < 10.0


def test_the_shipped_reference_predictor_knows_the_gpu_configuration(tmp_path):
    from sniper_generator.zoo import export_zoo_model
    from sniper_onnx.predictors.commands import predict_files

    import onnx

    model = tmp_path / "squeezenet.onnx"
    onnx.save(export_zoo_model("squeezenet1_1", 224, 1, weights=False), str(model))
    [row] = predict_files([str(model)], ["NVIDIA H200 | cuda fp32 t16 opt-all"]).rows
    # measured 0.65 ms (minimum) on the H200 with onnxruntime's CUDA provider, 7.2 ms on 1 CPU thread
    assert 0.3e-3 < row.seconds < 1.5e-3 and row.low < row.seconds < row.high


def test_a_network_of_no_layer_costs_one_call_where_the_call_was_measured():
    from sniper_onnx.predictors.runtime import shipped_predictor_path

    predictor = load_predictor(shipped_predictor_path("pcn_reference.onnx"))
    cpu = "AMD EPYC | cpu fp32 t1 opt-all"
    empty = dict.fromkeys(predictor.network_feature_names, 0.0)
    table = np.zeros((0, predictor.kernel_width), np.float32)
    [row] = predictor.predict([empty], [cpu], kernel_tables=[table]).rows
    assert row.path == "kernels" and row.low < row.seconds < row.high
    assert row.seconds == pytest.approx(predictor.kernel_path["devices"][cpu]["call_seconds"], rel=1e-4)
    # no row for layers it has (control flow): the kernel sum cannot time them, the PCN answers
    [row] = predictor.predict([{**empty, "num_layers": 1.0}], [cpu], kernel_tables=[table]).rows
    assert row.path == "pcn"
    # a device whose training nets all had many layers never showed its call: no answer
    facts = predictor.kernel_path["devices"][cpu]
    assert facts["fewest_layers"] <= 3
    facts["fewest_layers"] = 15
    assert predictor.predict([empty], [cpu], kernel_tables=[table]).rows[0].path == "pcn"
    # files before 2026-11-30 record no fewest_layers: a call far below the fastest net is refused
    del facts["fewest_layers"]
    assert predictor.predict([empty], [cpu], kernel_tables=[table]).rows[0].path == "kernels"
    facts["call_seconds"] = 1e-9
    assert predictor.predict([empty], [cpu], kernel_tables=[table]).rows[0].path == "pcn"


def test_the_pcn_never_answers_less_than_a_call_where_the_call_was_seen():
    """An If-only model went to the PCN at 1.8 us on t1, a third of a call (measured 5.9 us)."""
    from sniper_onnx.predictors.runtime import shipped_predictor_path

    predictor = load_predictor(shipped_predictor_path("pcn_reference.onnx"))
    cpu = "AMD EPYC | cpu fp32 t1 opt-all"
    tiny = {**dict.fromkeys(predictor.network_feature_names, 0.0), "num_layers": 1.0, "total_macs": 1.0}
    [plain] = predictor.predict([tiny], [cpu]).rows  # no kernel table: the PCN answers, above this call
    facts = predictor.kernel_path["devices"][cpu]
    assert plain.path == "pcn" and plain.seconds > facts["call_seconds"]
    facts["call_seconds"] = 4 * plain.seconds  # a call dearer than the PCN's answer
    [row] = predictor.predict([tiny], [cpu]).rows
    assert row.seconds == pytest.approx(4 * plain.seconds) and row.low == pytest.approx(4 * plain.seconds)
    assert row.high == pytest.approx(4 * plain.high)  # the interval keeps its upper width
    facts["fewest_layers"] = 15  # a call no small net showed is no floor
    assert predictor.predict([tiny], [cpu]).rows[0].seconds == pytest.approx(plain.seconds)


def test_without_predictor_each_device_is_answered_by_the_shipped_predictor_that_knows_it(trained, monkeypatch, tmp_path):
    import shutil

    from sniper_onnx.predictors import commands, runtime

    path, predictor, _, data = trained
    second = tmp_path / "second.onnx"
    shutil.copy(path, second)
    hw = runtime.shipped_predictor_path(runtime.HW_NAS_PREDICTOR)
    monkeypatch.setattr(runtime, "shipped_predictor_paths", lambda: [hw, second])
    assert runtime.load_predictor(None, ["titanx_1"]).source == str(hw)
    assert runtime.load_predictor(None, ["slow_cpu"]).source == str(second)
    assert runtime.load_predictor(None).source == str(hw)  # no device named: the first shipped one

    from sniper_generator.nasbench201 import build_nasbench201
    from sniper_onnx.analysis import analyze

    analyzed = tmp_path / "net.json"
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    analyzed.write_text(json.dumps({"features": analyze(build_nasbench201(cell, weights=False)).features}))
    everything = commands.predict_files([str(analyzed)])
    assert {r.device for r in everything.rows} == set(runtime.load_predictor(hw).devices) | set(predictor.devices)
    assert everything.predictor == f"{hw}, {second}"
    only = commands.predict_files([str(analyzed)], ["slow_cpu"])
    assert [r.device for r in only.rows] == ["slow_cpu"] and only.predictor == str(second)
    both = commands.predict_files([str(analyzed)], ["slow_cpu", "titanx_1"])
    assert [r.device for r in both.rows] == ["slow_cpu", "titanx_1"]  # in the order asked
    with pytest.raises(SniperError, match="unknown to every shipped predictor"):
        commands.predict_files([str(analyzed)], ["toaster"])
    # part of a name finds the one device holding it; a part several hold is an error naming them
    assert [r.device for r in commands.predict_files([str(analyzed)], ["SLOW_"]).rows] == ["slow_cpu"]
    assert [r.device for r in commands.predict_files([str(analyzed)], ["cpu"], predictor=str(second)).rows] == ["slow_cpu"]
    with pytest.raises(SniperError, match=r"'titanx': matches 6 devices \(titanx_1, titanx_256"):
        commands.predict_files([str(analyzed)], ["titanx"])


def test_match_device_prefers_whole_words_and_names_an_ambiguous_part():
    from sniper_onnx.predictors.runtime import match_device

    known = ["AMD EPYC | cpu fp32 t1 opt-all", "AMD EPYC | cpu fp32 t1 opt-disabled", "NVIDIA H200 | cuda fp32 t16 opt-all"]
    assert match_device("h200", known) == known[2] and match_device("t1 opt-all", known) == known[0]
    assert match_device("t1 opt-dis", known) == known[1]  # part of a word still finds the one holder
    assert match_device("toaster", known) == "toaster"  # the caller's own error names it
    with pytest.raises(SniperError, match=r"'t1': matches 2 devices \(AMD EPYC \| cpu fp32 t1 opt-all, AMD EPYC"):
        match_device("t1", known)  # not the t16 of the H200


def _two_corrections(trained):
    from predictors_testkit import fed_back_twice

    _, predictor, _, data = trained
    return fed_back_twice(predictor, data.network_feature_names), data


def test_run_refuses_rows_that_do_not_line_up_in_one_line(trained):
    """onnxruntime's own error for these comes from inside a fused Gemm."""
    _, predictor, _, data = trained
    nets = data.network_matrix[:3]
    device = predictor.device_vector("phone")
    with pytest.raises(SniperError, match=r"^3 network rows, 2 device rows: give one of each per network-device pair"):
        predictor.run(nets, np.tile(device, (2, 1)))
    with pytest.raises(SniperError, match=rf"^network_features has shape \[3, 2\]; this predictor takes \[N, {nets.shape[1]}\]"):
        predictor.run(nets[:, :2], np.tile(device, (3, 1)))
    with pytest.raises(SniperError, match=rf"^device_features has shape \[3, {len(device) - 1}\]; this predictor takes"):
        predictor.run(nets, np.tile(device[:-1], (3, 1)))
    with pytest.raises(SniperError, match="^device_features has shape"):
        predictor.run(nets, device)  # one vector, not one row per network


def test_a_correction_slot_the_file_does_not_hold_is_refused(trained):
    predictor, data = _two_corrections(trained)
    nets = data.network_matrix[:2]
    rows = np.tile(predictor.device_vector("phone"), (2, 1))
    for slot in (0, 1, 2):
        rows[1, -1] = slot
        predictor.run(nets, rows)
    for slot in (3, 7, -1, 0.5, np.nan):
        rows[1, -1] = slot
        with pytest.raises(SniperError, match=r"^device_features row 1: correction_slot \S+ is not 0 \(none\) or a "
                                              r"correction the file holds \(slots 1\.\.2\)"):
            predictor.run(nets, rows)
    # what the graph itself does (docs/predictor.md): an unknown slot applies no correction, as slot 0
    feeds = {"network_features": nets.astype(np.float32), "device_features": rows.astype(np.float32)}
    rows[1, -1] = 7
    seven = predictor.session.run(["seconds"], {**feeds, "device_features": rows.astype(np.float32)})[0]
    rows[1, -1] = 0
    none = predictor.session.run(["seconds"], {**feeds, "device_features": rows.astype(np.float32)})[0]
    assert seven[1] == none[1]


def test_a_device_table_with_a_slot_the_graph_lacks_is_refused_on_load(trained, tmp_path):
    """Such a file answered the device uncorrected, and adapting it wrote to another device's slot
    (slot -1) or failed with an IndexError (slot 7)."""
    from typer.testing import CliRunner

    from sniper_onnx.cli import app
    from sniper_onnx.predictors.runtime import Predictor, save_predictor, set_metadata

    predictor, data = _two_corrections(trained)
    for slot, width in ((7, 0), (-1, 0), (1.5, 0), (1, -1)):
        meta = dict(predictor.meta)
        row = predictor.device_table["phone"]
        meta["device_table"] = {**predictor.device_table, "phone": [*row[:-1 + width], slot]}
        model = type(predictor.model)()
        model.CopyFrom(predictor.model)
        set_metadata(model, meta)
        with pytest.raises(SniperError, match=r"^<memory>: device 'phone' (in sniper.device_table: correction_slot|has \d+ values)"):
            Predictor(model)
    path = save_predictor(predictor, tmp_path / "ok.onnx")
    model = type(predictor.model)()
    model.CopyFrom(predictor.model)
    meta = {**predictor.meta, "device_table": {**predictor.device_table, "phone": [*predictor.device_table["phone"][:-1], 7]}}
    set_metadata(model, meta)
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(model.SerializeToString())
    net = tmp_path / "net.json"
    net.write_text(json.dumps({"features": dict(zip(data.network_feature_names, data.network_matrix[0].tolist()))}))
    result = CliRunner().invoke(app, ["predict", str(net), "-p", str(damaged), "-d", "phone"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("sniper-onnx: error:"), result.output
    assert "correction_slot 7 is not 0 (none) or a correction the file holds (slots 1..2)" in lines[0]
    assert CliRunner().invoke(app, ["predict", str(net), "-p", str(path), "-d", "phone"]).exit_code == 0


def test_a_ridge_that_goes_below_zero_answers_its_floor(trained):
    """A Bayesian ridge is linear in seconds: below the networks it was fitted to, it answered
    negative seconds (only its interval's low end was clipped, at 0)."""
    from predictors_testkit import ridge_answering

    from sniper_onnx.predictors.runtime import REGRESSION_FLOOR_S, regression_predict

    _, predictor, _, data = trained
    ridge = predictor.meta["regression"]["phone"]
    fastest = data.seconds[data.pair_device == data.device_names.index("phone")].min()
    assert 0 < ridge["floor_seconds"] <= fastest, "training stores half the fastest measurement the ridge saw"
    features = [dict(zip(data.network_feature_names, row.tolist())) for row in data.network_matrix[:3]]
    # an intercept far below zero: every answer of the plain ridge is negative
    for floor, changed in ((ridge["floor_seconds"], ridge_answering(predictor, "phone", intercept=-1.0)),
                           (REGRESSION_FLOOR_S, ridge_answering(predictor, "phone", intercept=-1.0, floor_seconds=None))):
        nets = changed.network_matrix(features)
        assert (regression_predict(changed.meta["regression"]["phone"], nets, changed.network_feature_names)[0] < 0).all()
        rows = changed.predict(features, ["phone"]).rows
        assert [row.path for row in rows] == ["regression"] * 3
        for row in rows:
            assert row.seconds == pytest.approx(floor) and 0 < row.low <= row.seconds < row.high
    # an answer above the floor is the ridge's own mean, as scikit-learn computes it
    plain = ridge_answering(predictor, "phone")
    mean, _ = regression_predict(ridge, plain.network_matrix(features), plain.network_feature_names)
    kept = mean > ridge["floor_seconds"]
    assert kept.any()
    assert np.allclose(plain.predict(features, ["phone"]).seconds()[kept], mean[kept])


def test_the_api_default_is_the_reference_predictor_and_takes_parts_of_names_as_d_does(tmp_path):
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import kernel_table_for_prediction
    from sniper_onnx.predictors.commands import predict_files
    from sniper_generator.zoo import export_zoo_to_file

    assert Path(load_predictor().source).name == "pcn_reference.onnx"  # it was HW-NAS-Bench's
    chosen = load_predictor(devices=["h200"])
    assert Path(chosen.source).name == "pcn_reference.onnx"
    model = tmp_path / "sq.onnx"
    export_zoo_to_file("squeezenet1_1", model, resolution=64, weights=False)
    analysis = analyze(str(model))
    plain = chosen.predict([analysis.features], devices=["t1 opt-all"])
    assert plain.rows[0].device == "AMD EPYC | cpu fp32 t1 opt-all" and plain.rows[0].path == "pcn"
    assert [w for w in plain.warnings() if "no kernel tables given" in w]
    with_tables = chosen.predict([analysis.features], devices=["t1 opt-all"],
                                 kernel_tables=[kernel_table_for_prediction(analysis.nodes)])
    assert with_tables.rows[0].path == "kernels" and not with_tables.warnings()
    assert with_tables.rows[0].seconds == predict_files([str(model)], devices=["t1 opt-all"]).rows[0].seconds
