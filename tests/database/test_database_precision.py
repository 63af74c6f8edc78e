"""A measurement's precision label judged by its model's weights at import: an int8 or fp16 model
with fp32 inputs passes the profiler's input check under fp32 and fails it under its own label."""

import json
import sqlite3

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from sniper_onnx.precision import judged_flags, weights_mismatch
from sniper_onnx.cli import app
from sniper_onnx.database import Database

runner = CliRunner()
FAST = ["--warmup", "1", "--min-repeats", "3", "--max-time", "0.03", "--threads", "1"]


def _save(tmp_path, name, nodes, weights):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def int8_weights_net(tmp_path):
    """A weight-only int8 matmul: fp32 input and output, int8 weights."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.integers(-100, 100, (64, 64), dtype=np.int8), "w_q"),
               numpy_helper.from_array(np.array(0.01, np.float32), "scale")]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "scale"], ["w"]), helper.make_node("MatMul", ["x", "w"], ["y"])]
    return _save(tmp_path, "int8_weights", nodes, weights)


def fp16_keep_io_net(tmp_path):
    """An fp16 model converted with its fp32 inputs and outputs kept (onnxconverter's keep_io_types)."""
    weights = [numpy_helper.from_array(np.full((64, 64), 0.01, np.float16), "w")]
    nodes = [helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16), helper.make_node("MatMul", ["x16", "w"], ["y16"]),
             helper.make_node("Cast", ["y16"], ["y"], to=TensorProto.FLOAT)]
    return _save(tmp_path, "fp16_keep_io", nodes, weights)


def _flags(db_path):
    with Database(db_path) as db:
        return {m.config.get("precision"): m.flags for m in db.measurements()}


def test_the_weights_decide_the_label_an_int8_model_belongs_to():
    assert weights_mismatch("int8", {"precision": "fp32"}) and not weights_mismatch("int8", {"precision": "int8"})
    assert weights_mismatch("float16", {}) and not weights_mismatch("float16", {"precision": "fp16"})
    assert not weights_mismatch("float32", {"precision": "tf32"}) and not weights_mismatch("", {"precision": "fp16"})
    # fp32 weights, or none: the profiler's judgement by the inputs stands either way
    assert judged_flags(["precision_mismatch"], "float32", {"precision": "fp16"}) == ["precision_mismatch"]
    assert judged_flags(["precision_mismatch", "machine_busy"], "float16", {"precision": "fp16"}) == ["machine_busy"]
    assert judged_flags([], "uint8", {"precision": "fp32"}) == ["precision_mismatch"]


def test_an_int8_model_timed_under_fp32_is_flagged_at_import_and_left_out(tmp_path):
    model, out, db_path = int8_weights_net(tmp_path), tmp_path / "r.jsonl", tmp_path / "ncd.sqlite"
    for precision in ("fp32", "int8"):
        assert runner.invoke(app, ["profile", str(model), "--out", str(out), "--precision", precision, *FAST]).exit_code == 0
    assert all("precision_mismatch" not in json.loads(line)["flags"] for line in out.read_text().splitlines())
    imported = runner.invoke(app, ["db", "import", str(out), "--db", str(db_path)])
    assert imported.exit_code == 0, imported.output
    assert "flagged precision_mismatch: int8_weights (weights int8, measured under fp32)" in imported.stderr
    flags = _flags(db_path)
    assert "precision_mismatch" in flags["fp32"] and "precision_mismatch" not in flags["int8"]
    with Database(db_path) as db:
        assert [n.weight_type for n in db.networks()] == ["int8"]


def test_profile_db_names_the_flag_the_weights_set_and_clears_the_profilers_on_an_fp16_model(tmp_path):
    model, db_path = fp16_keep_io_net(tmp_path), tmp_path / "ncd.sqlite"
    as_fp32 = runner.invoke(app, ["profile", str(model), "--db", str(db_path), "--out", str(tmp_path / "a.jsonl"), *FAST])
    assert as_fp32.exit_code == 0, as_fp32.output
    assert "flagged precision_mismatch: fp16_keep_io" in as_fp32.stderr
    # the profiler, which sees fp32 inputs, flags the right label; the weights clear it
    as_fp16 = runner.invoke(app, ["profile", str(model), "--db", str(db_path), "--out", str(tmp_path / "b.jsonl"),
                                  "--precision", "fp16", *FAST])
    assert as_fp16.exit_code == 0, as_fp16.output
    assert "precision_mismatch" in json.loads((tmp_path / "b.jsonl").read_text())["flags"]
    assert "flagged precision_mismatch" not in as_fp16.stderr
    flags = _flags(db_path)
    assert "precision_mismatch" in flags["fp32"] and "precision_mismatch" not in flags["fp16"]


def test_a_database_of_an_older_sniper_onnx_is_judged_when_its_results_are_imported_again(tmp_path):
    model, out, db_path = int8_weights_net(tmp_path), tmp_path / "r.jsonl", tmp_path / "ncd.sqlite"
    assert runner.invoke(app, ["profile", str(model), "--out", str(out), *FAST]).exit_code == 0
    assert runner.invoke(app, ["db", "import", str(out), "--db", str(db_path)]).exit_code == 0
    with sqlite3.connect(db_path) as conn:  # as stored before the weights' type was kept
        conn.execute("UPDATE networks SET weight_type = NULL")
        conn.execute("UPDATE measurements SET flags = '[]'")
    again = runner.invoke(app, ["db", "import", str(out), "--db", str(db_path)])
    assert again.exit_code == 0 and "1 already present" in again.stdout, again.output
    assert "precision_mismatch" in _flags(db_path)["fp32"]


def test_a_measurement_stored_before_its_model_was_found_is_judged_when_it_is(tmp_path):
    model, out, db_path = int8_weights_net(tmp_path), tmp_path / "r.jsonl", tmp_path / "ncd.sqlite"
    assert runner.invoke(app, ["profile", str(model), "--out", str(out), *FAST]).exit_code == 0
    stash = tmp_path / "elsewhere"
    stash.mkdir()
    model.rename(stash / model.name)
    assert runner.invoke(app, ["db", "import", str(out), "--db", str(db_path)]).exit_code == 0
    assert "precision_mismatch" not in _flags(db_path)["fp32"]
    found = runner.invoke(app, ["db", "import", str(out), "--db", str(db_path), "--models", str(stash)])
    assert found.exit_code == 0, found.output
    assert "precision_mismatch" in _flags(db_path)["fp32"]


def test_adapt_and_feedback_samples_leave_out_a_model_measured_under_another_precision(tmp_path):
    import pytest

    from sniper_onnx.errors import SniperError
    from sniper_onnx.predictors.samples import load_samples

    out = tmp_path / "r.jsonl"
    assert runner.invoke(app, ["profile", str(int8_weights_net(tmp_path)), "--out", str(out), *FAST]).exit_code == 0
    with pytest.raises(SniperError, match="every measurement is flagged precision_mismatch"):
        load_samples(out)
    assert runner.invoke(app, ["profile", str(fp16_keep_io_net(tmp_path)), "--out", str(out), "--precision", "fp16", *FAST]).exit_code == 0
    half = tmp_path / "half.jsonl"
    half.write_text(out.read_text().splitlines()[-1] + "\n")
    assert load_samples(half).names == ["fp16_keep_io"]  # the profiler's flag cleared by the weights


def test_profile_db_blames_only_the_record_it_measured_for_a_precision_flag(tmp_path):
    """Storing a record re-judges the network's older measurements too; the summary of the run must
    name the flag this record was stored with, not one an older record got."""
    model, db_path = fp16_keep_io_net(tmp_path), tmp_path / "ncd.sqlite"
    assert runner.invoke(app, ["profile", str(model), "--db", str(db_path), "--out", str(tmp_path / "a.jsonl"), *FAST]).exit_code == 0
    with sqlite3.connect(db_path) as conn:  # as an older sniper-onnx stored it
        conn.execute("UPDATE networks SET weight_type = NULL")
        conn.execute("UPDATE measurements SET flags = '[]'")
    right = runner.invoke(app, ["profile", str(model), "--db", str(db_path), "--out", str(tmp_path / "b.jsonl"),
                                "--precision", "fp16", *FAST])
    assert right.exit_code == 0, right.output
    assert "flagged precision_mismatch" not in right.stderr
    flags = _flags(db_path)
    assert "precision_mismatch" in flags["fp32"] and "precision_mismatch" not in flags["fp16"]


def test_samples_do_not_need_the_model_of_records_that_are_left_out_anyway(tmp_path):
    from sniper_onnx.predictors.samples import load_samples

    out = tmp_path / "r.jsonl"
    half = tmp_path / "half_in.onnx"
    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)], "half_in",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(half))
    plain = _save(tmp_path, "plain", [helper.make_node("MatMul", ["x", "w"], ["y"])],
                  [numpy_helper.from_array(np.full((64, 64), 0.01, np.float32), "w")])
    for model in (half, plain):
        assert runner.invoke(app, ["profile", str(model), "--out", str(out), *FAST]).exit_code == 0
    half.unlink()  # its fp32-labelled record of fp16 inputs is flagged by the profiler
    assert load_samples(out).names == ["plain"]
