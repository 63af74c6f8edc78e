"""The predictor commands through the CLI: JSON output, files written, one-line errors."""

import csv
import gzip
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from predictors_testkit import HELD_OUT, device_spec, latency, synthetic_networks, write_json_samples
from sniper_onnx.cli import app

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _fails(args, fragment):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("sniper-onnx: error:") and fragment in lines[0], result.output
    assert "Traceback" not in result.output


def _analysis_json(tmp_path, names, row, stem="net"):
    path = tmp_path / f"{stem}.json"
    path.write_text(json.dumps({"features": dict(zip(names, row.tolist()))}))
    return path


def test_train_from_table_writes_one_onnx(tmp_path, synthetic_csv):
    out = tmp_path / "p.onnx"
    result = _ok(["train", "--table", str(synthetic_csv), "-o", str(out), "--epochs", "2", "--json"])
    report = json.loads(result.stdout)
    assert out.is_file() and sorted(report["devices"]) == ["board", "fast_gpu", "phone", "slow_cpu"]
    _fails(["train", "--table", str(synthetic_csv), "-o", str(tmp_path / "q.onnx"), "--epochs", "0"], "--epochs 0: train")
    assert all(report["key_features"][d]["features"] for d in report["devices"])


def test_predict_json_one_row_per_device(tmp_path, trained):
    path, predictor, _, data = trained
    net = _analysis_json(tmp_path, data.network_feature_names, data.network_matrix[3])
    rows = json.loads(_ok(["predict", str(net), "--predictor", str(path), "--json"]).stdout)["predictions"]
    assert sorted(r["device"] for r in rows) == predictor.devices
    one = json.loads(_ok(["predict", str(net), "-p", str(path), "--device", "phone", "--json"]).stdout)["predictions"]
    assert len(one) == 1 and one[0]["low"] <= one[0]["seconds"] <= one[0]["high"]


def test_predict_table_marks_extrapolated_rows(tmp_path, trained):
    path, predictor, _, data = trained
    row = data.network_matrix[3].copy()
    row[data.network_feature_names.index("total_macs")] = data.network_matrix[:, 0].max() * 100
    far = _analysis_json(tmp_path, data.network_feature_names, row, stem="far")
    result = _ok(["predict", str(far), "-p", str(path), "-d", "phone"])
    assert "extrapolated" in result.stdout
    assert f"training range of {path.name}" in result.stderr and "1 row(s)" in result.stderr
    near = _analysis_json(tmp_path, data.network_feature_names, data.network_matrix[3], stem="near")
    assert "extrapolated" not in _ok(["predict", str(near), "-p", str(path), "-d", "phone"]).stdout


def test_evaluate_reports_per_device_and_plots(tmp_path, trained, synthetic_csv):
    path = trained[0]
    plot = tmp_path / "pvm.png"
    report = json.loads(_ok(["evaluate", "--table", str(synthetic_csv), "-p", str(path), "--plot", str(plot), "--json"]).stdout)
    assert set(report["devices"]) == {"board", "fast_gpu", "phone", "slow_cpu"}
    assert {"mape_pct", "rmspe_pct", "acc5", "acc10", "spearman"} <= set(report["overall"])
    assert plot.stat().st_size > 1000


def test_adapt_and_feedback_commands(tmp_path, trained):
    path, _, _, data = trained
    nets = synthetic_networks(10, 41)
    seconds = latency(nets, HELD_OUT, 3)
    samples = write_json_samples(tmp_path, data.network_feature_names, nets, seconds)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(device_spec("newboard", HELD_OUT).to_dict()))
    adapted = tmp_path / "adapted.onnx"
    report = json.loads(_ok(["adapt", "-p", str(path), "--device-spec", str(spec), "--samples", str(samples),
                             "-o", str(adapted), "--json"]).stdout)
    assert report["device"] == "newboard" and report["sample_mape_after"] < report["sample_mape_before"]
    from sniper_onnx.predictors import load_predictor

    stored = load_predictor(adapted).meta["corrections"][0]["measurements"]
    assert [round(t * 1e3, 9) for _, t in stored] == [round(s * 1e3, 9) for s in seconds]
    rows = json.loads(_ok(["predict", str(tmp_path / "s0.json"), "-p", str(adapted), "-d", "newboard", "--json"]).stdout)
    assert rows["predictions"][0]["path"] == "pcn"
    trimmed = tmp_path / "trimmed.onnx"
    _ok(["feedback", "-p", str(adapted), "-d", "newboard", "--samples", str(samples), "-o", str(trimmed)])
    assert trimmed.is_file()


def test_user_errors_are_one_line(tmp_path, trained):
    path, _, _, data = trained
    net = _analysis_json(tmp_path, data.network_feature_names, data.network_matrix[0])
    _fails(["predict", str(net), "-p", str(tmp_path / "missing.onnx")], "no such predictor")
    _fails(["predict", str(net), "-p", str(path), "-d", "toaster"], "unknown to predictor")
    _fails(["predict", str(tmp_path / "nope.onnx"), "-p", str(path)], "no such model")
    _fails(["train", "-o", str(tmp_path / "x.onnx")], "exactly one of --db")
    _fails(["train", "--table", str(tmp_path / "none.csv"), "-o", str(tmp_path / "x.onnx")], "no such training table")
    _fails(["adapt", "-p", str(path), "--samples", str(tmp_path / "none.csv"), "-o", str(tmp_path / "y.onnx"),
            "-d", "x"], "no such samples file")


def _tiny_hw_table(tmp_path):
    from sniper_generator.nasbench201 import load_feature_table

    archs, matrix, names = load_feature_table()
    rows = np.random.default_rng(0).choice(len(archs), 60, replace=False)
    macs, layers = matrix[rows, names.index("total_macs")], matrix[rows, names.index("num_layers")]
    devices = {"gpu_a": (1e-12, 2e-5), "cpu_a": (2e-10, 1e-6), "phone_a": (5e-10, 5e-6), "never_seen": (1e-10, 3e-5)}
    path = tmp_path / "table.csv.gz"
    with gzip.open(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch_index", "arch", *devices])
        for i, r in enumerate(rows):
            writer.writerow([int(r), archs[r], *(1e3 * (a * macs[i] + b * layers[i]) for a, b in devices.values())])
    (tmp_path / "ref.txt").write_text("\n".join(str(int(r)) for r in rows[:10]))
    return path


def test_bench_hw_nasbench201_on_a_never_seen_column(tmp_path):
    table = _tiny_hw_table(tmp_path)
    result = _ok(["bench", "hw-nasbench201", "--table", str(table), "--train", "gpu_a,cpu_a,phone_a",
                  "--test", "never_seen", "--samples", "10", "--reference-archs", str(tmp_path / "ref.txt"),
                  "--epochs", "3", "--json"])
    report = json.loads(result.stdout)
    device = report["devices"][0]
    assert device["device"] == "never_seen" and device["samples"] == 10
    assert {"spearman", "kendall", "mape_pct", "acc10"} <= set(device["sniper"]) and "spearman" in device["flops"]
    _fails(["bench", "hw-nasbench201", "--table", str(table), "--train", "gpu_a", "--test", "gpu_a"], "both --train")
    _fails(["bench", "hw-nasbench201", "--table", str(table), "--train", "gpu_a", "--test", "tpu"], "not a column")
    _fails(["bench", "hw-nasbench201", "--table", str(table), "--train", "gpu_a", "--test", "cpu_a", "--samples", "99999"],
           "--samples 99999: the table has")
    _fails(["bench", "hw-nasbench201", "--table", str(table), "--train", "gpu_a", "--test", "cpu_a", "--epochs", "0"],
           "--epochs 0: train the PCN for at least 1 epoch")


def test_adapt_without_a_predictor_keeps_the_shipped_one_that_fits_the_samples(tmp_path):
    from sniper_onnx.predictors.runtime import load_predictor, shipped_predictor_path

    _ok(["generate", "--count", "6", "--seed", "3", "--max-macs", "2e7", "--out", str(tmp_path / "nets")])
    nets = sorted((tmp_path / "nets").glob("*.onnx"))
    reference = load_predictor(shipped_predictor_path("pcn_reference.onnx"))
    from sniper_onnx.predictors.commands import predict_files

    t2 = predict_files([str(n) for n in nets], ["AMD EPYC | cpu fp32 t2 opt-all"], str(shipped_predictor_path("pcn_reference.onnx")))
    samples = tmp_path / "box.csv"  # a box 1.3x slower than the reference 2-thread CPU
    samples.write_text("network,latency_s\n" + "".join(f"{n},{1.3 * row.seconds}\n" for n, row in zip(nets, t2.rows)))
    spec = tmp_path / "box.json"
    spec.write_text(json.dumps({"name": "box", "kind": "desktop_cpu", "threads": 2}))
    report = json.loads(_ok(["adapt", "--device-spec", str(spec), "--samples", str(samples), "-o", str(tmp_path / "box.onnx"),
                             "--json"]).stdout)
    assert report["predictor"].endswith("pcn_reference.onnx") and report["loo_rmse_log"] < 0.2
    assert "box" in load_predictor(tmp_path / "box.onnx").devices and "box" not in reference.devices


def test_held_out_archs_are_never_trained_on_and_every_device_is_reported(tmp_path, monkeypatch):
    import pytest

    from sniper_onnx.errors import SniperError
    from sniper_onnx.predictors import hwnas

    table = _tiny_hw_table(tmp_path)
    trained_on = []

    class Recording(hwnas.TrainingData):  # the pairs of every table built: the full one, then the training one
        def __init__(self, **fields):
            super().__init__(**fields)
            trained_on.append(set(fields["pair_network"].tolist()))

    monkeypatch.setattr(hwnas, "TrainingData", Recording)
    report = hwnas.held_out_archs_accuracy(table, None, devices=["gpu_a", "cpu_a"], test_share=0.25, epochs=3)
    assert (report.train_archs, report.test_archs) == (45, 15) and set(report.results) == {"gpu_a", "cpu_a"}
    for device in report.results.values():
        assert device["sniper"]["n"] == 15 and device["flops_loglog"]["n"] == 15
    assert len(trained_on[-1]) == 45  # the predictor's pairs: the 45 training archs only
    # latency is linear in MACs and layers here, so the FLOPs fit is close but not exact
    assert 0 < report.results["gpu_a"]["flops_loglog"]["mape_pct"] < 100
    with pytest.raises(SniperError, match="test share"):
        hwnas.held_out_archs_accuracy(table, None, test_share=1.0)


def _symbolic_matmul(path, with_nonzero=False):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if with_nonzero:
        nodes.append(helper.make_node("NonZero", ["x"], ["nz"], name="nz"))
        outputs.append(helper.make_tensor_value_info("nz", TensorProto.INT64, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "seq", 8])], outputs,
                              [helper.make_tensor("W", TensorProto.FLOAT, [8, 4], [0.5] * 32)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


REFERENCE_CPU = "AMD EPYC | cpu fp32 t1 opt-all"


def test_predict_refuses_an_input_with_unknown_dims_and_says_how_to_fix_it(tmp_path):
    model = _symbolic_matmul(tmp_path / "seq.onnx")
    _fails(["predict", str(model), "-d", REFERENCE_CPU], "input 'x' has unknown dims (1x?x8)")
    _fails(["predict", str(model), "-d", REFERENCE_CPU], "--input-shape x=DIMS")
    rows = json.loads(_ok(["predict", str(model), "-d", REFERENCE_CPU, "-s", "x=1x16x8", "--json"]).stdout)["predictions"]
    assert len(rows) == 1 and rows[0]["seconds"] > 0
    analysis = tmp_path / "seq.json"
    analysis.write_text(_ok(["analyze", str(model), "--json"]).stdout)
    _fails(["predict", str(analysis), "-d", REFERENCE_CPU], "re-run `sniper-onnx analyze --json` with --input-shape")


def test_predict_and_analyze_answer_a_graph_of_no_nodes(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    model = tmp_path / "passthrough.onnx"
    onnx.save(helper.make_model(helper.make_graph([], "g", [x], [x]), opset_imports=[helper.make_opsetid("", 17)]),
              str(model))
    assert "warning: the graph has no nodes" in _ok(["analyze", str(model)]).output
    result = json.loads(_ok(["predict", str(model), "-d", REFERENCE_CPU, "--json"]).stdout)
    [row] = result["predictions"]
    assert row["path"] == "kernels" and 1e-6 < row["seconds"] < 2e-5  # one call: onnxruntime takes a few us
    assert sum("the graph has no nodes" in warning for warning in result["warnings"]) == 1


def test_without_d_a_shipped_predictor_the_model_lies_far_outside_answers_last_with_one_note(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])
    model = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), str(model))
    result = json.loads(_ok(["predict", str(model), "--json"]).stdout)
    rows = result["predictions"]
    assert len(rows) == 23 and rows[0]["device"] == REFERENCE_CPU  # every device still has its row
    assert all(row["outside_training_range"] for row in rows[4:]) and not any(row["outside_training_range"] for row in rows[:4])
    [note] = [w for w in result["warnings"] if "come last" in w]
    assert note.startswith("pcn_hw_nasbench201.onnx: its 19 row(s) come last: the model(s) lie outside its training "
                           "range in ") and note.endswith("features, so they are far extrapolations")
    inside = json.loads(_ok(["predict", str(_nasbench_cell(tmp_path)), "--json"]).stdout)
    hw_nas = [row for row in inside["predictions"] if row["predictor"].endswith("pcn_hw_nasbench201.onnx")]
    assert len(hw_nas) == 19 and not any(row["outside_training_range"] for row in hw_nas)
    assert not [w for w in inside["warnings"] if "come last" in w]


def _nasbench_cell(tmp_path):
    import onnx
    from sniper_generator.nasbench201 import build_nasbench201

    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    path = tmp_path / "cell.onnx"
    onnx.save(build_nasbench201(cell, weights=True), str(path))
    return path


def _relu_then_loop(path):
    """A Relu, then a Loop of 10 MatMul steps: the kernel sum would time the Relu alone."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def floats(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("MatMul", ["h", "W"], ["h_next"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []), floats("h", [1, 64])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), floats("h_next", [1, 64])])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Loop", ["trips", "", "r"], ["y"], name="loop", body=body)]
    inits = [helper.make_tensor("trips", TensorProto.INT64, [], [10]),
             numpy_helper.from_array(np.full((64, 64), 0.01, np.float32), "W")]
    graph = helper.make_graph(nodes, "g", [floats("x", [1, 64])], [floats("y", [1, 64])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_control_flow_goes_to_the_pcn_with_a_note_not_to_a_kernel_sum_that_skips_it(tmp_path):
    model = _relu_then_loop(tmp_path / "loop.onnx")
    kernels, nodes, plain = tmp_path / "kernels.json", tmp_path / "nodes.json", tmp_path / "plain.json"
    kernels.write_text(_ok(["analyze", str(model), "--json", "--kernels"]).stdout)
    nodes.write_text(_ok(["analyze", str(model), "--json", "--nodes"]).stdout)
    plain.write_text(_ok(["analyze", str(model), "--json"]).stdout)
    assert json.loads(kernels.read_text())["kernel_table"] is None
    files = [str(model), str(kernels), str(nodes), str(plain)]
    result = json.loads(_ok(["predict", *files, "-d", REFERENCE_CPU, "--json"]).stdout)
    assert [row["path"] for row in result["predictions"]] == ["pcn"] * 4
    assert all(row["control_flow"] for row in result["predictions"])
    assert not [w for w in result["warnings"] if "feature(s) outside" in w]  # its features are in range
    noted = [w for w in result["warnings"] if "control flow (If, Loop or Scan)" in w]
    assert sorted(w.split(":")[0] for w in noted) == sorted(files)
    assert not [w for w in result["warnings"] if "no kernel table in this JSON" in w]


def test_a_control_flow_sample_has_a_table_of_no_row(tmp_path):
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES
    from sniper_onnx.predictors.samples import _sample_table

    analysis = analyze(str(_relu_then_loop(tmp_path / "loop.onnx")))
    assert _sample_table(analysis.nodes).shape == (0, len(KERNEL_FEATURE_NAMES))
    assert len(_sample_table([n for n in analysis.nodes if not n.subgraph])) == 1  # the Relu alone


def test_predict_on_json_without_a_kernel_table_says_the_pcn_answered(tmp_path):
    model = _symbolic_matmul(tmp_path / "seq.onnx")
    plain, with_kernels = tmp_path / "plain.json", tmp_path / "kernels.json"
    plain.write_text(_ok(["analyze", str(model), "-s", "x=1x16x8", "--json"]).stdout)
    with_kernels.write_text(_ok(["analyze", str(model), "-s", "x=1x16x8", "--json", "--kernels"]).stdout)
    result = json.loads(_ok(["predict", str(plain), str(with_kernels), "-d", REFERENCE_CPU, "--json"]).stdout)
    assert [row["path"] for row in result["predictions"]] == ["pcn", "kernels"]
    assert [w for w in result["warnings"] if "no kernel table" in w] == [
        f"{plain}: no kernel table in this JSON, so the PCN answers where the kernel sum would (more accurate); "
        "write it with `sniper-onnx analyze --json --kernels`"]


def test_predict_passes_on_the_analyzers_warning_when_costs_are_incomplete(tmp_path):
    model = _symbolic_matmul(tmp_path / "nz.onnx", with_nonzero=True)
    result = json.loads(_ok(["predict", str(model), "-d", REFERENCE_CPU, "-s", "x=1x16x8", "--json"]).stdout)
    assert any(w.startswith(f"{model}: 1 node whose cost depends on the input values") for w in result["warnings"])
    assert any(w.endswith("read them as lower bounds") for w in result["warnings"])


def test_predict_on_a_model_with_an_unknown_op_says_its_time_is_left_out(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MyOp", ["x"], ["y"], domain="acme", name="mine"),
         helper.make_node("MatMul", ["y", "W"], ["z"], name="mm")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [helper.make_tensor("W", TensorProto.FLOAT, [8, 4], [0.5] * 32)])
    model = tmp_path / "custom.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("acme", 1)]),
              str(model))
    warnings = json.loads(_ok(["predict", str(model), "-d", REFERENCE_CPU, "--json"]).stdout)["warnings"]
    assert f"{model}: unknown ops counted with 0 MACs: acme::MyOp x1" in warnings
    assert f"{model}: the predictions count those 2 nodes as doing no work: read them as lower bounds" in warnings


def test_predict_says_when_a_model_is_of_another_precision_than_the_devices(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def model(path, input_type, weight):
        """x (input_type) -> Cast to the weight's float type -> MatMul with the weight (dequantized if int8)."""
        compute = TensorProto.FLOAT16 if weight.dtype == np.float16 else TensorProto.FLOAT
        nodes = [helper.make_node("Cast", ["x"], ["xc"], to=compute)]
        initializers = [numpy_helper.from_array(weight, "W")]
        if weight.dtype == np.int8:
            initializers.append(numpy_helper.from_array(np.array(0.01, np.float32), "scale"))
            nodes.append(helper.make_node("DequantizeLinear", ["W", "scale"], ["Wf"]))
        nodes.append(helper.make_node("MatMul", ["xc", "Wf" if weight.dtype == np.int8 else "W"], ["y"]))
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", input_type, [1, 16, 8])],
                                  [helper.make_tensor_value_info("y", compute, None)], initializers)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
        return path

    weights = np.full((8, 4), 0.5, np.float32)
    half = model(tmp_path / "half.onnx", TensorProto.FLOAT16, weights.astype(np.float16))
    half_weights = model(tmp_path / "half_weights.onnx", TensorProto.FLOAT, weights.astype(np.float16))
    int8 = model(tmp_path / "int8.onnx", TensorProto.FLOAT, np.full((8, 4), 50, np.int8))
    full = model(tmp_path / "full.onnx", TensorProto.FLOAT, weights)
    cast_in = model(tmp_path / "cast_in.onnx", TensorProto.FLOAT16, weights)  # fp16 inputs, computes in fp32
    result = json.loads(_ok(["predict", str(half), str(half_weights), str(int8), str(full), str(cast_in),
                             "-d", REFERENCE_CPU, "--json"]).stdout)
    tail = f", but {REFERENCE_CPU} measured networks of another precision: the prediction is for that precision, not the model's"
    assert f"{half}: its weights are float16{tail}" in result["warnings"]
    assert f"{half_weights}: its weights are float16{tail}" in result["warnings"]
    assert f"{int8}: its weights are int8 (quantized){tail}" in result["warnings"]
    assert not any(w.startswith((f"{full}: its", f"{cast_in}: its")) for w in result["warnings"])
    analysis = tmp_path / "int8.json"  # the analyzer's JSON carries the weights' types too
    analysis.write_text(_ok(["analyze", str(int8), "--json"]).stdout)
    warnings = json.loads(_ok(["predict", str(analysis), "-d", REFERENCE_CPU, "--json"]).stdout)["warnings"]
    assert any(w.startswith(f"{analysis}: its weights are int8 (quantized)") for w in warnings)


def test_a_model_without_stored_weights_is_judged_by_its_float_inputs():
    from sniper_onnx.predictors.commands import model_precision

    assert model_precision({"input_types": {"x": "float16"}, "weight_types": {"int64": 4}}) == ("float16", "inputs")
    assert model_precision({"input_types": {"ids": "int64"}, "weight_types": {}}) is None
    assert model_precision({"input_types": {"x": "float32"}, "weight_types": {"float32": 10, "int8": 900}}) == ("int8", "weights")


def test_predict_reads_a_folder_of_models_as_profile_does(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    folder = tmp_path / "models"
    folder.mkdir()
    for name, width in (("b", 8), ("a", 16)):
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                                  [helper.make_tensor("W", TensorProto.FLOAT, [width, 4], [0.5] * width * 4)])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(folder / f"{name}.onnx"))
    rows = json.loads(_ok(["predict", str(folder), "-d", REFERENCE_CPU, "--json"]).stdout)["predictions"]
    assert [row["network"] for row in rows] == [str(folder / "a.onnx"), str(folder / "b.onnx")]
    (tmp_path / "empty").mkdir()
    _fails(["predict", str(tmp_path / "empty")], "a folder with no .onnx file in it")
    (folder / "c_broken.onnx").write_bytes(b"not onnx")  # one bad model among good ones
    mixed = runner.invoke(app, ["predict", str(folder), "-d", REFERENCE_CPU, "--json"])
    assert mixed.exit_code == 1 and "Traceback" not in mixed.output
    answer = json.loads(mixed.stdout)
    assert [row["network"] for row in answer["predictions"]] == [str(folder / "a.onnx"), str(folder / "b.onnx")]
    assert len(answer["failures"]) == 1 and answer["failures"][0].startswith(f"{folder / 'c_broken.onnx'}: not a readable ONNX")
    assert f"sniper-onnx: error: {folder / 'c_broken.onnx'}: not a readable ONNX" in mixed.stderr
    table = runner.invoke(app, ["predict", str(folder), "-d", REFERENCE_CPU])
    assert table.exit_code == 1 and "a.onnx" in table.stdout and "b.onnx" in table.stdout
    _fails(["predict", str(folder / "c_broken.onnx"), str(tmp_path / "missing.onnx")], "none of the 2 models could be predicted")
    old = tmp_path / "old.json"  # an analysis another version wrote: a feature the predictor takes is missing
    old.write_text(json.dumps({"features": {"total_macs": 1e6}}))
    with_old = runner.invoke(app, ["predict", str(folder / "a.onnx"), str(old), "-d", REFERENCE_CPU, "--json"])
    assert with_old.exit_code == 1 and len(json.loads(with_old.stdout)["predictions"]) == 1
    assert f"sniper-onnx: error: {old}" in with_old.stderr


def test_a_profiler_results_file_is_read_as_samples_with_its_device(tmp_path):
    """What the profiler wrote goes to adapt/feedback as it is: nets re-made from their generator
    source (the files were temporary), the device's spec from the records."""
    from sniper_onnx.predictors.runtime import load_predictor

    results = tmp_path / "r.jsonl"
    _ok(["profile", "--generate", "3", "--seed", "4", "--max-macs", "2e7", "--out", str(results), "--warmup", "1",
         "--min-repeats", "3", "--max-time", "0.05", "--threads", "1"])
    report = json.loads(_ok(["adapt", "--samples", str(results), "-d", "this box", "-o", str(tmp_path / "box.onnx"),
                             "--json"]).stdout)
    assert report["samples"] == 3 and report["device"] == "this box"
    assert "this box" in load_predictor(tmp_path / "box.onnx").devices
    unnamed = json.loads(_ok(["adapt", "--samples", str(results), "-o", str(tmp_path / "own.onnx"), "--json"]).stdout)
    assert unnamed["device"].endswith("cpu fp32 t1 opt-all")  # the name the records carry


def test_profiler_samples_keep_ok_records_of_one_device_at_their_median(tmp_path):
    import numpy as np
    import onnx
    import pytest
    from onnx import TensorProto, helper, numpy_helper

    from sniper_onnx.errors import SniperError
    from sniper_onnx.predictors.samples import load_samples
    from sniper_profiler.records import RECORD_SCHEMA, file_sha256

    weight = numpy_helper.from_array(np.full((8, 3, 3, 3), 0.1, np.float32), "W")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1])], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [weight])
    model = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)

    def record(device, median, status="ok", flags=(), key="k"):
        return {"schema": RECORD_SCHEMA, "key": key, "status": status, "flags": list(flags),
                "model": {"name": "m", "path": str(model), "sha256": file_sha256(model)},
                "device": {"spec": {"name": device, "kind": "desktop_cpu"}}, "stats": {"median_s": median}}

    lines = [record("a", 1.0), record("a", 3.0, key="k2"), record("a", 2.0, key="k3"), record("a", 9.0, status="failed"),
             record("a", 9.0, flags=["precision_mismatch"]), record("b", 5.0)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    samples = load_samples(tmp_path / "r.jsonl", "a")
    assert samples.seconds == [2.0] and samples.names == ["m"] and samples.device_spec["name"] == "a"
    assert load_samples(tmp_path / "r.jsonl", "b").seconds == [5.0]
    with pytest.raises(SniperError, match="it holds a, b: pick one with --device"):
        load_samples(tmp_path / "r.jsonl", "c")
    from sniper_onnx.predictors.commands import adapt_command

    with pytest.raises(SniperError, match=r"come from several devices \(a, b\); pick one with --device NAME"):
        adapt_command(None, str(tmp_path / "r.jsonl"), str(tmp_path / "x.onnx"))
    model.unlink()  # gone, and no generator or zoo source to re-make it from
    with pytest.raises(SniperError, match="put the file back, or drop its records"):
        load_samples(tmp_path / "r.jsonl", "a")


def _samples_csv(tmp_path, data, count, seed=41, repeat=1, name="samples.csv"):
    nets = synthetic_networks(count, seed)
    seconds = latency(nets, HELD_OUT, 3)
    samples = tmp_path / name
    with open(samples, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["network", "latency_ms"])
        for i, row in enumerate(nets):
            for _ in range(repeat):
                writer.writerow([_analysis_json(tmp_path, data.network_feature_names, row, f"s{i}").name, seconds[i] * 1e3])
    return samples


def test_outputs_that_would_destroy_an_input_or_a_shipped_predictor_are_refused(tmp_path, trained, synthetic_csv,
                                                                                 monkeypatch):
    from sniper_onnx.predictors.runtime import shipped_predictor_path

    path, _, _, data = trained
    samples = _samples_csv(tmp_path, data, 5)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    table = tmp_path / "table.csv"
    table.write_bytes(synthetic_csv.read_bytes())
    _fails(["train", "--table", str(table), "-o", str(table), "--epochs", "1"], "is this command's input")
    _fails(["train", "--table", str(table), "-o", str(notes), "--epochs", "1"], "exists and is not a sniper-onnx predictor")
    _fails(["adapt", "-p", str(path), "-d", "box", "--samples", str(samples), "-o", str(samples)], "is this command's input")
    shipped = shipped_predictor_path("pcn_reference.onnx")
    before = shipped.read_bytes()
    _fails(["adapt", "-p", str(path), "-d", "box", "--samples", str(samples), "-o", str(shipped)], "shipped with sniper-onnx")
    monkeypatch.chdir(shipped.parent.parent.parent)  # the natural spelling from the repository root
    _fails(["feedback", "-p", "sniper_onnx/data/pcn_reference.onnx", "-d", "t1 opt-all", "--samples", str(samples)],
           "refusing to overwrite the shipped predictor")
    assert shipped.read_bytes() == before and notes.read_text() == "mine" and table.read_bytes() == synthetic_csv.read_bytes()


def test_a_failed_write_leaves_the_predictor_whole(tmp_path, trained, monkeypatch):
    import onnx

    from sniper_onnx.predictors import load_predictor

    path, _, _, data = trained
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(path.read_bytes())
    samples = _samples_csv(tmp_path, data, 5)
    real_save = onnx.save

    def full_disk(model, target, *args, **kwargs):
        real_save(model, target, *args, **kwargs)
        with open(target, "r+b") as handle:
            handle.truncate(100)  # the write got this far
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save", full_disk)
    _fails(["feedback", "-p", str(mine), "-d", "slow_cpu", "--samples", str(samples)], "No space left on device")
    assert mine.read_bytes() == path.read_bytes() and load_predictor(str(mine)).devices
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp") == []


def test_repeated_networks_are_one_sample_and_adapting_needs_three(tmp_path, trained):
    from sniper_onnx.predictors import load_predictor

    path, _, _, data = trained
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(device_spec("newboard", HELD_OUT).to_dict()))
    one_net = _samples_csv(tmp_path, data, 1, repeat=10, name="one.csv")
    _fails(["adapt", "-p", str(path), "--device-spec", str(spec), "--samples", str(one_net), "-o", str(tmp_path / "a.onnx")],
           "1 distinct network(s) measured; adapting needs at least 3")
    two = _samples_csv(tmp_path, data, 2, name="two.csv")
    _fails(["adapt", "-p", str(path), "--device-spec", str(spec), "--samples", str(two), "-o", str(tmp_path / "a.onnx")],
           "2 distinct network(s)")
    repeated = _samples_csv(tmp_path, data, 4, repeat=3, name="rep.csv")
    report = json.loads(_ok(["adapt", "-p", str(path), "--device-spec", str(spec), "--samples", str(repeated),
                             "-o", str(tmp_path / "a.onnx"), "--json"]).stdout)
    assert report["samples"] == 4
    assert len(load_predictor(str(tmp_path / "a.onnx")).meta["corrections"][0]["measurements"]) == 12  # all kept


@pytest.mark.parametrize("content, message", [
    ('[1, 2]\n', "line 1 is not a JSON object"),
    ('{"network": "s0.json", "latency_ms": true}\n', "needs a positive latency_ms"),
    ('{"network": "s0.json", "latency_ms": [3]}\n', "needs a positive latency_ms"),
    (b'\xff\xfe junk', "not UTF-8 text"),
])
def test_odd_samples_files_are_one_line(tmp_path, trained, content, message):
    path, _, _, data = trained
    _analysis_json(tmp_path, data.network_feature_names, data.network_matrix[0], "s0")
    samples = tmp_path / "s.jsonl"
    samples.write_bytes(content if isinstance(content, bytes) else content.encode())
    _fails(["feedback", "-p", str(path), "-d", "slow_cpu", "--samples", str(samples), "-o", str(tmp_path / "f.onnx")],
           message)


def test_feedback_and_adapt_refuse_odd_numbers(tmp_path, trained):
    path, _, _, data = trained
    samples = _samples_csv(tmp_path, data, 5)
    for top_k in ("-1", "1000000"):
        _fails(["feedback", "-p", str(path), "-d", "slow_cpu", "--samples", str(samples), "-o", str(tmp_path / "f.onnx"),
                "--top-k", top_k], f"--top-k {top_k}: give 0")
    tiny = tmp_path / "tiny.csv"  # a unit mistake, say
    rows = samples.read_text().splitlines()
    tiny.write_text("\n".join([rows[0]] + [r.rsplit(",", 1)[0] + ",1e-300" for r in rows[1:]]) + "\n")
    _fails(["feedback", "-p", str(path), "-d", "slow_cpu", "--samples", str(tiny), "-o", str(tmp_path / "f.onnx")],
           "check the samples' unit")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**device_spec("box", HELD_OUT).to_dict(), "threads": "two"}))
    _fails(["adapt", "-p", str(path), "--device-spec", str(spec), "--samples", str(samples), "-o", str(tmp_path / "a.onnx")],
           "spec")


def test_evaluate_names_the_devices_it_left_out_and_checks_the_plot_first(tmp_path, trained, synthetic_csv):
    path = trained[0]
    lines = synthetic_csv.read_text().splitlines()
    header = lines[0].split(",")
    device_column = header.index("device_name")
    renamed = [lines[0]] + [",".join(c if i != device_column or c != "phone" else "mystery box"
                                     for i, c in enumerate(line.split(","))) for line in lines[1:]]
    table = tmp_path / "t.csv"
    table.write_text("\n".join(renamed) + "\n")
    _fails(["evaluate", "-p", str(path), "--table", str(table), "--plot", str(tmp_path / "p.xyz")], "not an image format")
    result = runner.invoke(app, ["evaluate", "-p", str(path), "--table", str(table), "--plot", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "mystery box: " in result.stderr and "measured pairs left out" in result.stderr
    assert f"plot: {tmp_path / 'p.png'}" in result.stdout and (tmp_path / "p.png").is_file()


def test_predict_lists_the_devices_it_knows(trained):
    path = trained[0]
    listed = json.loads(_ok(["predict", "--list-devices", "-p", str(path), "--json"]).stdout)["devices"]
    assert sorted(d["device"] for d in listed) == ["board", "fast_gpu", "phone", "slow_cpu"]
    shipped = json.loads(_ok(["predict", "--list-devices", "--json"]).stdout)["devices"]
    kernels = {d["device"] for d in shipped if d["path"] == "kernels"}
    assert "AMD EPYC | cpu fp32 t1 opt-all" in kernels and "pixel3" in {d["device"] for d in shipped}
    _fails(["predict"], "give one or more models to predict (or --list-devices")


def test_predict_answers_a_device_named_twice_once(tmp_path, trained):
    """Two rows for one (network, device) pair count twice for whoever sums or counts the output."""
    path, _, _, data = trained
    net = _analysis_json(tmp_path, data.network_feature_names, data.network_matrix[3])
    rows = json.loads(_ok(["predict", str(net), "-p", str(path), "-d", "phone", "-d", "phone", "-d", "board",
                           "--json"]).stdout)["predictions"]
    assert [r["device"] for r in rows] == ["phone", "board"]


@pytest.mark.parametrize("change, message", [
    (lambda a: a["features"].pop("total_macs"), "features missing for this predictor: total_macs"),
    (lambda a: a["features"].update(total_macs=None), "feature total_macs is null; analyzer features are finite numbers >= 0"),
    (lambda a: a["features"].update(total_macs=-1e6), "feature total_macs is -1000000.0; analyzer features are finite"),
    (lambda a: a.update(kernel_table={"columns": ["macs"], "rows": [[1.0]]}), "kernel_table columns differ"),
])
def test_predict_names_the_analysis_file_that_it_cannot_use(tmp_path, trained, change, message):
    """An analysis of another sniper-onnx version (a feature or kernel column missing) or with a value
    no analyzer writes: one line naming the file. A negative total_macs went to the Structure
    Checker's ridge and came back as negative seconds; a null one was an internal error."""
    path, _, _, data = trained
    analysis = {"features": dict(zip(data.network_feature_names, data.network_matrix[3].tolist()))}
    change(analysis)
    net = tmp_path / "odd.json"
    net.write_text(json.dumps(analysis))
    _fails(["predict", str(net), "-p", str(path), "-d", "phone"], f"{net}: ")
    _fails(["predict", str(net), "-p", str(path), "-d", "phone"], message)


def test_a_kernel_table_with_short_rows_is_named_as_such(tmp_path):
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES

    net = tmp_path / "short.json"
    net.write_text(json.dumps({"features": {}, "kernel_table": {"columns": list(KERNEL_FEATURE_NAMES),
                                                                "rows": [[0.0] * (len(KERNEL_FEATURE_NAMES) - 1)]}}))
    _fails(["predict", str(net), "-d", "t1 opt-all"],
           f"{net}: kernel_table has rows of {len(KERNEL_FEATURE_NAMES) - 1} values for its {len(KERNEL_FEATURE_NAMES)} columns")


def test_a_negative_feature_never_reaches_the_ridge(trained):
    _, predictor, _, data = trained
    threshold = predictor.meta["structure_checker"]["threshold"]
    assert threshold > 0, "the fixture's ridge answers nothing: the test would prove nothing"
    features = dict(zip(data.network_feature_names, data.network_matrix[3].tolist()), total_macs=-threshold)
    from sniper_onnx.errors import SniperError

    with pytest.raises(SniperError, match=r"^network 0: feature total_macs is -"):
        predictor.predict([features], ["phone"])


def test_predict_answers_a_file_named_twice_once(tmp_path, trained):
    """A folder and a file in it, a file twice or spelled another way: one row per file, where it
    first appears (each mention got its own rows)."""
    import os

    path, _, _, data = trained
    folder = tmp_path / "nets"
    folder.mkdir()
    a = _analysis_json(folder, data.network_feature_names, data.network_matrix[3], stem="a")
    b = _analysis_json(folder, data.network_feature_names, data.network_matrix[4], stem="b")
    os.symlink(a, tmp_path / "link.json")
    args = [str(b), str(a), str(b), str(folder / ".." / "nets" / "b.json"), str(tmp_path / "link.json")]
    rows = json.loads(_ok(["predict", *args, "-p", str(path), "-d", "phone", "--json"]).stdout)["predictions"]
    assert [r["network"] for r in rows] == [str(b), str(a)]


def test_predict_warns_on_an_analysis_of_another_analyzer_and_still_answers(tmp_path, trained):
    """Features of the same names computed by an older analyzer (before 2026-11-29's fixes) were
    taken as they were, with nothing to tell them apart."""
    from sniper_onnx import __version__
    from sniper_onnx.analysis.result import FEATURE_SCHEMA

    path, _, _, data = trained
    features = dict(zip(data.network_feature_names, data.network_matrix[3].tolist()))
    cases = {"current": {"sniper_onnx_version": __version__, "feature_schema": FEATURE_SCHEMA},
             "unversioned": {},
             "older": {"sniper_onnx_version": "0.0.1", "feature_schema": "2026-01-01"},
             "schema": {"sniper_onnx_version": __version__, "feature_schema": "2026-01-01"}}
    for name, stamp in cases.items():
        net = tmp_path / f"{name}.json"
        net.write_text(json.dumps({"features": features, **stamp}))
        result = _ok(["predict", str(net), "-p", str(path), "-d", "phone", "--json"])
        assert len(json.loads(result.stdout)["predictions"]) == 1
        warned = [line for line in result.stderr.splitlines() if "re-run `sniper-onnx analyze --json`" in line]
        if name == "current":
            assert warned == [], result.stderr
            continue
        assert len(warned) == 1 and warned[0].startswith(f"sniper-onnx: warning: {net}: analysis written by"), result.stderr
        assert f"not by this sniper-onnx {__version__} (feature schema {FEATURE_SCHEMA})" in warned[0]
        assert "recorded no version" in warned[0] if name == "unversioned" else stamp["feature_schema"] in warned[0]


def test_an_analysis_json_says_which_sniper_onnx_wrote_it_and_predicts_without_warning(tmp_path):
    from sniper_onnx import __version__
    from sniper_onnx.analysis.result import FEATURE_SCHEMA

    model = tmp_path / "m.onnx"
    _symbolic_matmul(model)
    written = _ok(["analyze", str(model), "--json", "--kernels", "-s", "x=1x16x8"]).stdout
    analysis = json.loads(written)
    assert (analysis["sniper_onnx_version"], analysis["feature_schema"]) == (__version__, FEATURE_SCHEMA)
    (tmp_path / "m.json").write_text(written)
    result = _ok(["predict", str(tmp_path / "m.json"), "-d", "t1 opt-all", "--json"])
    assert "analysis written by" not in result.stderr


def test_evaluate_leaves_out_and_counts_rows_without_a_usable_latency(tmp_path, trained, synthetic_csv):
    """An infinite latency was kept (inf in the metrics); a device whose every row was left out got a
    row of NaN metrics, and a table with no usable row a whole table of them, exit 0."""
    path = trained[0]
    lines = synthetic_csv.read_text().splitlines()
    header = lines[0].split(",")

    def table(name, latency_of):
        rows = [line.split(",") for line in lines[1:]]
        for row in rows:
            row[-1] = latency_of(row[header.index("device_name")], row[-1])
        target = tmp_path / name
        target.write_text("\n".join([lines[0], *(",".join(row) for row in rows)]) + "\n")
        return target

    phone_inf = table("phone_inf.csv", lambda device, value: "inf" if device == "phone" else value)
    result = runner.invoke(app, ["evaluate", "-p", str(path), "--table", str(phone_inf), "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)["devices"]) == {"board", "fast_gpu", "slow_cpu"}
    warned = [line for line in result.stderr.splitlines() if "left out, their latency" in line]
    assert warned == [f"sniper-onnx: warning: {phone_inf}: 160 row(s) left out, their latency is not a positive "
                      "finite number (160 infinite); a failed or broken measurement teaches nothing about time"]
    none = table("none.csv", lambda device, value: "inf" if device == "phone" else "0")
    result = runner.invoke(app, ["evaluate", "-p", str(path), "--table", str(none)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1] == (f"sniper-onnx: error: {none}: no usable measurement to evaluate against; "
                                              "measure models with `sniper-onnx profile --db DB` first")


def _model(path, nodes, x_shape, initializers):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _fixed_reshape(path):
    """x [S, 64] -> MatMul -> Reshape to the constant 16x4x16 a tracing export writes -> MatMul: fits S=16 only."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("MatMul", ["x", "Wq"], ["q"], name="proj"),
             helper.make_node("Reshape", ["q", "heads"], ["h"], name="split_heads"),
             helper.make_node("MatMul", ["h", "Wo"], ["y"], name="after")]
    return _model(path, nodes, ["S", 64], [helper.make_tensor("Wq", TensorProto.FLOAT, [64, 64], [0.5] * 4096),
                                           helper.make_tensor("heads", TensorProto.INT64, [3], [16, 4, 16]),
                                           helper.make_tensor("Wo", TensorProto.FLOAT, [16, 8], [0.5] * 128)])


def test_predict_says_when_the_given_shape_breaks_a_reshape_the_export_fixed(tmp_path):
    model = _fixed_reshape(tmp_path / "fixed.onnx")
    warnings = json.loads(_ok(["predict", str(model), "-d", REFERENCE_CPU, "-s", "x=128x64", "--json"]).stdout)["warnings"]
    fixed = [w for w in warnings if "'split_heads'" in w and "element count" in w]
    assert len(fixed) == 1 and fixed[0].startswith(f"{model}: ") and "dynamic axes on every Reshape" in fixed[0], warnings
    assert any(w.endswith("read them as lower bounds") for w in warnings)
    fits = json.loads(_ok(["predict", str(model), "-d", REFERENCE_CPU, "-s", "x=16x64", "--json"]).stdout)["warnings"]
    assert not [w for w in fits if "Reshape" in w], fits


def test_predict_warns_as_analyze_does_when_it_sets_a_dynamic_batch_to_1(tmp_path):
    from onnx import TensorProto, helper

    model = _model(tmp_path / "dyn.onnx", [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], ["batch", 8],
                   [helper.make_tensor("W", TensorProto.FLOAT, [8, 4], [0.5] * 32)])
    expected = f"{model}: input 'x' is declared [batch, 8], analysed as [1, 8]"
    result = runner.invoke(app, ["predict", str(model), "-d", REFERENCE_CPU])
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if expected in line], result.stderr
    sized = json.loads(_ok(["predict", str(model), "-d", REFERENCE_CPU, "-s", "x=1x8", "--json"]).stdout)["warnings"]
    assert not [w for w in sized if "analysed as" in w], sized


def test_predict_says_input_shape_does_not_apply_to_an_analysis_json(tmp_path):
    model = _symbolic_matmul(tmp_path / "seq.onnx")
    analysis = tmp_path / "seq.json"
    analysis.write_text(_ok(["analyze", str(model), "-s", "x=1x16x8", "--json"]).stdout)
    _fails(["predict", str(analysis), "-d", REFERENCE_CPU, "-s", "x=1x32x8"],
           "--input-shape applies to .onnx models, not to `analyze --json` outputs")
    mixed = json.loads(_ok(["predict", str(analysis), str(model), "-d", REFERENCE_CPU, "-s", "x=1x32x8",
                            "--json"]).stdout)["warnings"]
    assert [w for w in mixed if w.startswith("--input-shape applies to the .onnx models only") and str(analysis) in w]
    plain = json.loads(_ok(["predict", str(analysis), "-d", REFERENCE_CPU, "--json"]).stdout)["warnings"]
    assert not [w for w in plain if "--input-shape" in w], plain


def test_a_predictor_folder_and_a_blank_device_are_one_line(tmp_path, trained):
    path, _, _, data = trained
    net = _analysis_json(tmp_path, data.network_feature_names, data.network_matrix[0])
    _fails(["predict", str(net), "-p", str(tmp_path)], "is a directory, not a predictor file")
    for blank in ("", " "):
        _fails(["predict", str(net), "-p", str(path), "-d", blank], "an empty device name")
        _fails(["predict", str(net), "-d", blank], "an empty device name")


def test_an_empty_predictor_file_is_named_as_empty(tmp_path):
    empty = tmp_path / "p.onnx"
    empty.write_bytes(b"")
    _fails(["predict", str(tmp_path / "m.json"), "-p", str(empty)], f"{empty}: an empty file, not a predictor")


def test_feedback_from_an_analysis_of_another_analyzer_says_so(tmp_path):
    from sniper_generator.zoo import export_zoo_model
    from sniper_onnx.analysis import analyze

    rows = ["network,latency_ms"]
    for resolution, ms in ((32, 0.4), (48, 0.8), (64, 1.3)):
        data = analyze(export_zoo_model("squeezenet1_1", resolution=resolution, weights=False)).to_json_dict(include_nodes=True)
        data["feature_schema"] = "2000-01-01"  # written by an older analyzer
        (tmp_path / f"sq{resolution}.json").write_text(json.dumps(data))
        rows.append(f"sq{resolution}.json,{ms}")
    (tmp_path / "s.csv").write_text("\n".join(rows) + "\n")
    result = runner.invoke(app, ["feedback", "-d", REFERENCE_CPU, "--samples", str(tmp_path / "s.csv"),
                                 "-o", str(tmp_path / "fed.onnx")])
    assert result.exit_code == 0, result.output
    warned = [line for line in result.stderr.splitlines() if "feature schema 2000-01-01" in line]
    assert len(warned) == 3 and all(line.startswith("sniper-onnx: warning: ") for line in warned)


def test_feedback_on_control_flow_samples_alone_says_so(tmp_path):
    for i in range(3):
        _relu_then_loop(tmp_path / f"loop{i}.onnx")
    samples = tmp_path / "samples.csv"
    samples.write_text("network,latency_ms\n" + "".join(f"loop{i}.onnx,{0.05 * (i + 2)}\n" for i in range(3)))
    _fails(["feedback", "-d", REFERENCE_CPU, "--samples", str(samples), "-o", str(tmp_path / "fb.onnx")],
           "none of the 3 sample network(s) has a layer it times (each holds control flow")
    assert not (tmp_path / "fb.onnx").exists()


def test_stored_control_flow_networks_get_a_table_of_no_row_where_asked(tmp_path):
    from sniper_onnx.predictors.kernel_sources import kernel_tables_for

    source = json.dumps({"kind": "file", "path": str(_relu_then_loop(tmp_path / "loop.onnx"))})
    assert kernel_tables_for([source])[0] == [None]  # training: no table, the kernel sum never answers it
    table = kernel_tables_for([source], control_flow_empty=True)[0][0]
    assert table is not None and len(table) == 0  # dispatch feedback: set aside by the fit


def test_without_d_the_predictor_a_model_lies_least_outside_answers_first(tmp_path):
    """ResNet-50 lies outside HW-NAS-Bench's range in 17 of 47 features, not more than half: its
    19 extrapolated rows still come after the reference predictor's 4 (they came first)."""
    from sniper_generator.zoo import export_zoo_to_file

    model = tmp_path / "resnet50.onnx"
    export_zoo_to_file("resnet50", model, weights=False)
    result = json.loads(_ok(["predict", str(model), "--json"]).stdout)
    rows = result["predictions"]
    assert [p.rsplit("/", 1)[-1] for p in result["predictors"]] == ["pcn_reference.onnx", "pcn_hw_nasbench201.onnx"]
    assert [bool(row["outside_training_range"]) for row in rows] == [False] * 4 + [True] * 19
    assert rows[0]["device"] == REFERENCE_CPU


@pytest.mark.parametrize("command", ["feedback", "adapt"])
def test_a_sample_with_an_input_of_unknown_dims_is_refused_as_predict_refuses_it(tmp_path, command):
    """It was read as 0 MACs and fitted (a corrected CPU came out 10x slow); a sized analysis passes."""
    model = _symbolic_matmul(tmp_path / "seq.onnx")
    samples = tmp_path / "samples.csv"
    samples.write_text("network,latency_ms\nseq.onnx,0.02\n")
    device = REFERENCE_CPU if command == "feedback" else "new-cpu"
    _fails([command, "-d", device, "--samples", str(samples), "-o", str(tmp_path / "out.onnx")],
           "seq.onnx: input 'x' has unknown dims (1x?x8), so 1 nodes have no cost")
    sized = tmp_path / "seq.json"
    sized.write_text(_ok(["analyze", str(model), "-s", "x=1x16x8", "--json", "--kernels"]).stdout)
    from sniper_onnx.predictors.samples import load_samples

    samples.write_text("network,latency_ms\nseq.json,0.02\n")
    assert load_samples(samples).features[0]["total_macs"] == 16 * 8 * 4


def test_feedback_names_the_samples_without_a_kernel_table(tmp_path):
    model = _symbolic_matmul(tmp_path / "seq.onnx")
    for name, extra in (("plain.json", []), ("kernels.json", ["--kernels"])):
        (tmp_path / name).write_text(_ok(["analyze", str(model), "-s", "x=1x16x8", "--json", *extra]).stdout)
    samples = tmp_path / "samples.csv"
    samples.write_text("network,latency_ms\nplain.json,0.02\nkernels.json,0.02\nplain.json,0.021\n")
    _fails(["feedback", "-d", REFERENCE_CPU, "--samples", str(samples), "-o", str(tmp_path / "out.onnx")],
           "plain.json has no kernel table: give the samples' networks as .onnx files or "
           "`analyze --json --kernels`")


def test_a_named_input_shape_sizes_the_models_that_have_that_input_and_leaves_the_others(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    sized = _symbolic_matmul(tmp_path / "seq.onnx")  # input x of unknown length
    other = tmp_path / "relu.onnx"
    graph = helper.make_graph([helper.make_node("Relu", ["features"], ["out"])], "g",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 64])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(other))
    result = json.loads(_ok(["predict", str(sized), str(other), "-d", REFERENCE_CPU, "-s", "x=1x16x8",
                             "--json"]).stdout)
    assert [row["network"] for row in result["predictions"]] == [str(sized), str(other)] and not result["failures"]
    _fails(["predict", str(sized), str(other), "-d", REFERENCE_CPU, "-s", "nosuch=1x2"],
           "--input-shape names no input of any model given: nosuch")


def test_train_says_why_the_kernel_sum_kept_a_device_the_pcn_scored_better_on():
    from sniper_onnx.cli.predict_cmd import _few_pairs

    few = {"path": "kernels", "pcn_mape": 0.238, "kernel_mape": 0.925, "held_out_pairs": 7}
    assert _few_pairs(few) == (" (the PCN takes a device from it on 10 held-out pairs or more; measure more "
                               "networks on this device)")
    assert _few_pairs({**few, "held_out_pairs": 40, "path": "pcn"}) == ""
    assert _few_pairs({**few, "pcn_mape": 0.95}) == ""  # the kernel sum won outright


def _relu_matmul(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(np.full((64, 64), 0.01, np.float32), "W")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_training_records_its_networks_layer_op_types(tmp_path):
    from sniper_onnx.predictors.dataset import TrainingData
    from sniper_onnx.predictors.training import _training_layer_ops

    first = _relu_matmul(tmp_path / "a.onnx")
    second = _relu_then_loop(tmp_path / "b.onnx")
    sources = [json.dumps({"kind": "file", "path": str(p)}) for p in (first, second)]
    data = TrainingData(["a", "b"], np.ones((2, 1)), ["num_layers"], ["d"], np.ones((1, 1)), ["threads"],
                        np.array([0, 1]), np.array([0, 0]), np.array([1e-3, 2e-3]), network_sources=sources)
    assert _training_layer_ops(data, np.array([True, False])) == ["MatMul", "Relu"]  # held-out b's Loop is not
    assert _training_layer_ops(data, np.array([True, True])) == ["Loop", "MatMul", "Relu"]
    said = []
    data.network_sources[1] = json.dumps({"kind": "file", "path": str(tmp_path / "gone.onnx")})
    assert _training_layer_ops(data, np.array([True, True]), said.append) == []  # a part would call trained ops unseen
    assert said == ["1 of 2 training networks cannot be re-made: their op types are unknown, so the file records none "
                    "and `predict` cannot name ops training never saw"]


def test_a_layer_op_no_training_network_had_makes_its_rows_extrapolations(tmp_path, trained):
    from sniper_onnx.predictors.runtime import Predictor, save_predictor, set_metadata

    path, predictor, _, _ = trained
    meta = dict(predictor.meta, training_layer_ops=["Relu"])
    model = predictor.model.__class__()
    model.CopyFrom(predictor.model)
    set_metadata(model, meta)
    stamped = save_predictor(Predictor(model), tmp_path / "stamped.onnx")
    net = _relu_matmul(tmp_path / "mm.onnx")
    result = json.loads(_ok(["predict", str(net), "--predictor", str(stamped), "--json"]).stdout)
    assert all(row["unseen_ops"] == {"MatMul": 1} and row["unseen_layer_share"] == 0.5 for row in result["predictions"])
    [note] = [w for w in result["warnings"] if "was trained on no network with" in w]
    assert note.startswith(f"{net}: 50% of its layers (MatMul x1) are of op types stamped.onnx was trained on no "
                           "network with: training never showed the predictor their time, so its rows are "
                           "extrapolations")
    table = _ok(["predict", str(net), "--predictor", str(stamped)]).stdout
    assert "extrapolated" in table
    plain = json.loads(_ok(["predict", str(net), "--predictor", str(path), "--json"]).stdout)  # records no ops
    assert not any(row["unseen_ops"] for row in plain["predictions"])


def test_a_few_layers_of_unseen_ops_are_noted_without_marking_the_rows(trained):
    """One Slice among a CNN's 50 layers is a guess at a small part of the sum, not an extrapolation."""
    from sniper_onnx.errors import SniperError
    from sniper_onnx.predictors.runtime import Predictor

    _, predictor, _, data = trained
    stamped = Predictor(predictor.model)
    stamped.meta = dict(predictor.meta, training_layer_ops=["Conv", "Relu"])
    features = [dict(zip(data.network_feature_names, data.network_matrix[0]))] * 2
    table = stamped.predict(features, [stamped.devices[0]], ["cnn", "attn"],
                            layer_ops=[{"Conv": 25, "Relu": 24, "Slice": 1}, {"Attention": 1, "Relu": 1}])
    few, many = table.rows
    assert few.unseen_ops == {"Slice": 1} and few.unseen_layer_share == 0.02 and not few.extrapolated
    assert many.unseen_ops == {"Attention": 1} and many.extrapolated
    notes = [w for w in table.warnings() if "trained on no network with" in w]
    assert notes[0].startswith("cnn: 2% of its layers (Slice x1)") and notes[0].endswith("too few to mark its rows as "
                                                                                          "extrapolations, but their time is a guess")
    assert notes[1].startswith("attn: 50% of its layers (Attention x1)")
    with pytest.raises(SniperError, match="1 layer_ops for 2 networks"):
        stamped.predict(features, [stamped.devices[0]], layer_ops=[None])


def test_an_op_of_a_trained_kind_is_not_unseen_but_one_of_the_catch_all_kind_is(trained):
    from sniper_onnx.predictors.runtime import Predictor

    _, predictor, _, _ = trained
    stamped = Predictor(predictor.model)
    stamped.meta = dict(predictor.meta, training_layer_ops=["Add", "Conv", "Mul", "Resize"])
    ops = {"Div": 2, "com.microsoft::FusedConv": 1, "Slice": 1, "Resize": 1, "Softmax": 1}
    assert stamped.unseen_ops(ops) == ["Slice", "Softmax"]  # Div and FusedConv are kinds training had
    assert Predictor(predictor.model).unseen_ops(ops) == []  # a file that records no ops says nothing


def test_an_op_run_as_its_function_body_is_judged_by_the_body_ops(trained):
    from sniper_onnx.predictors.runtime import Predictor

    _, predictor, _, _ = trained
    stamped = Predictor(predictor.model)
    stamped.meta = dict(predictor.meta, training_layer_ops=["Add", "Conv", "GlobalAveragePool", "Mul", "Relu",
                                                            "Sigmoid"])
    # GroupNormalization runs pooling, elementwise ops and a Sqrt (a cheap activation); Mish a Softplus
    ops = {"GroupNormalization": 1, "HardSwish": 1, "Mish": 1, "Swish": 1}
    assert stamped.unseen_ops(ops) == ["Mish"]
    # integer kernels run other code than the float op they mirror: a dynamically quantized CNN's
    # ConvInteger took 7x its float Conv and was predicted as one (0.13-0.20 of measured)
    assert stamped.unseen_ops({"Conv": 1, "ConvInteger": 1, "QLinearConv": 1, "com.microsoft::FusedConv": 1}) == [
        "ConvInteger", "QLinearConv"]
    # a form onnxruntime runs with another kernel than the training networks' (kernels.runtime_op_name)
    assert stamped.unseen_ops({"Conv": 2, "Conv (3-D)": 1, "Softmax (inner axis)": 1}) == ["Conv (3-D)",
                                                                                           "Softmax (inner axis)"]
    features = [dict(zip(predictor.network_feature_names, [1.0] * len(predictor.network_feature_names)))]
    table = stamped.predict(features, [stamped.devices[0]], ["yolo"], layer_ops=[{"Conv": 1, "Mish": 1}])
    assert any("(Mish x1, run as Softplus + Tanh + Mul)" in note for note in table.warnings())
    assert table.to_json_dict()["predictions"][0]["extrapolated"] is True  # a property, written out too
    # 4 of 41 layers is 9.8 %: printed so, not as the "10 %" it falls short of
    near = stamped.predict(features, [stamped.devices[0]], ["tf"], layer_ops=[{"Conv": 37, "Mish": 4}])
    assert any(note.startswith("tf: 9.8% of its layers") and "too few to mark" in note for note in near.warnings())


def test_evaluate_on_devices_no_shipped_predictor_knows_says_every_one_was_asked(synthetic_csv):
    result = runner.invoke(app, ["evaluate", "--table", str(synthetic_csv)])
    assert result.exit_code == 2, result.output
    assert "is known to any shipped predictor; adapt a predictor to them first" in result.output, result.output


def test_evaluate_scores_against_the_statistic_the_predictor_was_trained_on(trained, tmp_path, monkeypatch):
    """The shipped reference predictor learnt minima: against medians it read 20.6 % MAPE, 13.2 % against minima."""
    from sniper_onnx.predictors import commands
    from sniper_onnx.predictors.runtime import Predictor, save_predictor, set_metadata

    path, predictor, _, data = trained
    model = predictor.model.__class__()
    model.CopyFrom(predictor.model)
    set_metadata(model, dict(predictor.meta, latency_statistic="min"))
    of_minima = save_predictor(Predictor(model), tmp_path / "minima.onnx")
    asked = []

    def fake_data(db, table, statistic, warn):
        asked.append(statistic)
        warn(f"read with {statistic}")
        return data

    monkeypatch.setattr(commands, "_training_data", fake_data)
    said = []
    report = commands.evaluate_command(str(of_minima), db="ncd.sqlite", warn=said.append)
    assert asked == ["median", "min"] and report.statistic == "min" and said == ["read with min"]
    asked.clear()
    assert commands.evaluate_command(str(of_minima), db="ncd.sqlite", statistic="median").statistic == "median"
    assert commands.evaluate_command(str(path), db="ncd.sqlite").statistic == "median"  # records none
    assert asked == ["median", "median"]


def test_an_output_in_a_missing_folder_is_refused_before_any_work(tmp_path, synthetic_csv):
    """As every other output: `train -o /nonexistent/dir/x.onnx` made the folders after 94 s of training."""
    missing = tmp_path / "no" / "such" / "p.onnx"
    _fails(["train", "--table", str(synthetic_csv), "-o", str(missing)], "does not exist; create it first")
    _fails(["adapt", "--samples", str(synthetic_csv), "-d", "x", "-o", str(missing)], "does not exist; create it first")
    assert not (tmp_path / "no").exists()
    _fails(["adapt", "--samples", str(tmp_path / "nothere.jsonl"), "-o", str(tmp_path / "a.onnx")],
           "nothere.jsonl: no such samples file")  # it asked for --device first


def test_train_on_some_devices_only(tmp_path, synthetic_csv, monkeypatch):
    """To leave a device out and adapt to it, `train -d` (a tester exported and re-imported a table for it)."""
    from sniper_onnx.predictors import commands
    from sniper_onnx.predictors.dataset import load_training_csv

    data = load_training_csv(synthetic_csv)
    kept = data.with_devices([data.device_names.index("phone"), data.device_names.index("slow_cpu")])
    assert kept.device_names == ["phone", "slow_cpu"] and set(kept.pair_device) == {0, 1}
    for d, name in enumerate(kept.device_names):
        original = data.device_names.index(name)
        assert np.array_equal(kept.seconds[kept.pair_device == d], data.seconds[data.pair_device == original])
    class Stop(Exception):
        pass

    trained_on = []

    def record_devices(data, *args, **kwargs):
        trained_on.append(data.device_names)
        raise Stop  # what it would train is all this test asks

    monkeypatch.setattr("sniper_onnx.predictors.training.train_predictor", record_devices)
    with pytest.raises(Stop):
        commands.train_command(str(tmp_path / "p.onnx"), table=str(synthetic_csv), devices=["phone", "slow"])
    assert trained_on == [["phone", "slow_cpu"]]
    _fails(["train", "--table", str(synthetic_csv), "-o", str(tmp_path / "q.onnx"), "-d", "nosuch"],
           "--device 'nosuch': no device of the measurements holds it (they have: ")


def test_kernel_rows_are_not_extrapolations_for_table_1_features_the_kernel_sum_does_not_read(tmp_path):
    """A plain 4 x (conv3x3 + Relu) CNN has prop_conv3x3 beyond the training nets'; the kernel sum
    reads its nodes and its size only, so its rows were wrongly marked extrapolations."""
    import onnx
    from onnx import helper, numpy_helper

    from sniper_onnx.analysis import analyze
    from sniper_onnx.predictors.runtime import load_predictor

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(4):
        inits.append(numpy_helper.from_array((rng.standard_normal((32, 32, 3, 3)) * 0.08).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "plain", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 32, 32, 32])],
                              [helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None)], initializer=inits)
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    predictor = load_predictor()
    beyond = predictor.outside_training_range(predictor.network_matrix([analyze(str(path)).features]))[0]
    assert beyond and not set(beyond) & {"param_bytes", "activation_bytes_read", "num_layers", "total_macs"}
    rows = json.loads(_ok(["predict", str(path), "-d", "t1 opt-all", "--json"]).stdout)["predictions"]
    assert rows[0]["path"] == "kernels" and rows[0]["outside_training_range"] == []


def test_the_kernel_sum_reads_network_sizes_only_on_the_devices_its_context_gate_lets_through():
    from sniper_onnx.predictors.runtime import load_predictor

    predictor = load_predictor()
    sizes = {"param_bytes", "activation_bytes_read", "num_layers", "total_macs"}
    assert predictor.kernel_reads("AMD EPYC | cpu fp32 t1 opt-all") == sizes
    assert predictor.kernel_reads("NVIDIA H200 | cuda fp32 t16 opt-all") == set()  # the gate is the CPU kinds
