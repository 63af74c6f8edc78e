"""examples/foreign_scheduler.py agrees with the library while using only onnxruntime and numpy."""

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "foreign_scheduler.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("foreign_scheduler", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_foreign_scheduler_matches_library_predictions(tmp_path, trained):
    path, predictor, _, data = trained
    analyses = []
    for i in range(3):
        features = dict(zip(data.network_feature_names, data.network_matrix[i].tolist()))
        file = tmp_path / f"task{i}.json"
        file.write_text(json.dumps({"features": features}))
        analyses.append(str(file))
    example = _load_example()
    session, meta = example.load(str(path))
    seconds = example.predict_seconds(session, meta, json.loads(Path(analyses[0]).read_text())["features"])
    table = predictor.predict([json.loads(Path(analyses[0]).read_text())["features"]])
    pcn_rows = {r.device: r.seconds for r in table.rows if r.path == "pcn"}
    for device, value in pcn_rows.items():
        assert seconds[device] == pytest.approx(value, rel=1e-5)
    out = subprocess.run([sys.executable, str(EXAMPLE), str(path), *analyses], capture_output=True, text=True, check=True)
    plan = [json.loads(line) for line in out.stdout.splitlines()]
    assert [p["task"] for p in plan] == analyses and all(p["device"] in predictor.devices for p in plan)


def test_foreign_scheduler_applies_the_structure_checker_as_the_library_does(trained):
    path, predictor, _, data = trained
    example = _load_example()
    session, meta = example.load(str(path))
    threshold = meta["structure_checker"]["threshold"]
    column = data.network_feature_names.index(meta["structure_checker"]["feature"])
    small = [i for i in range(len(data.network_matrix)) if data.network_matrix[i, column] < threshold]
    assert small, "the fixture's predictor sends no network to the regression; the test would prove nothing"
    features = dict(zip(data.network_feature_names, data.network_matrix[small[0]].tolist()))
    table = predictor.predict([features])
    assert "regression" in {r.path for r in table.rows}
    seconds = example.structure_checked(meta, features, example.predict_seconds(session, meta, features))
    for row in table.rows:
        assert seconds[row.device] == pytest.approx(row.seconds, rel=1e-5), (row.device, row.path)



def test_foreign_scheduler_clips_a_ridge_below_zero_as_the_library_does(trained, tmp_path):
    from sniper_onnx.predictors.runtime import save_predictor
    from predictors_testkit import ridge_answering

    _, predictor, _, data = trained
    example = _load_example()
    for changes in ({"intercept": -1.0}, {"intercept": -1.0, "floor_seconds": None}):
        changed = ridge_answering(predictor, "phone", **changes)
        path = tmp_path / "below.onnx"
        save_predictor(changed, path)
        session, meta = example.load(str(path))
        features = dict(zip(data.network_feature_names, data.network_matrix[0].tolist()))
        seconds = example.structure_checked(meta, features, example.predict_seconds(session, meta, features))
        row = changed.predict([features], ["phone"]).rows[0]
        assert row.path == "regression" and seconds["phone"] > 0
        assert seconds["phone"] == pytest.approx(row.seconds, rel=1e-6)


def test_foreign_scheduler_matches_the_library_on_a_corrected_kernel_sum_device():
    from sniper_generator.zoo import export_zoo_model
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, kernel_table
    from sniper_onnx.predictors import load_predictor
    from sniper_onnx.predictors.adapt import adapt_predictor
    from sniper_onnx.predictors.runtime import shipped_predictor_path

    device = "AMD EPYC | cpu fp32 t1 opt-all"
    reference = load_predictor(str(shipped_predictor_path("pcn_reference.onnx")))
    results = [analyze(export_zoo_model("squeezenet1_1", resolution=r, weights=False)) for r in (32, 48, 64, 96)]
    features = [dict(r.features) for r in results]
    tables = [kernel_table(r.nodes) for r in results]
    fed_back, _ = adapt_predictor(reference, device, features[:3], [0.002, 0.004, 0.006], solve_embedding=False,
                                  kernel_tables=tables[:3])
    assert fed_back.device_table[device][-1] != 0  # corrected: the case the example got wrong
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fed.onnx"
        path.write_bytes(fed_back.model.SerializeToString())
        example = _load_example()
        session, meta = example.load(str(path))
        written = {"columns": list(KERNEL_FEATURE_NAMES), "rows": tables[3].tolist()}  # as `analyze --json --kernels` writes it
        seconds = example.predict_seconds(session, meta, features[3], written)
    row = fed_back.predict([features[3]], [device], kernel_tables=[tables[3]]).rows[0]
    assert row.path == "kernels" and seconds[device] == pytest.approx(row.seconds, rel=1e-5)


def _run_example(*args):
    return subprocess.run([sys.executable, str(EXAMPLE), *map(str, args)], capture_output=True, text=True)


def _one_line_error(out, fragment):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert lines[0].startswith("foreign_scheduler.py: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in out.stderr and not out.stdout


def test_foreign_scheduler_checks_the_input_contract_before_onnxruntime(trained):
    """onnxruntime's own error for rows that do not line up comes from inside a fused Gemm."""
    path, predictor, _, data = trained
    example = _load_example()
    session, meta = example.load(str(path))
    nets = data.network_matrix[:3].astype(np.float32)
    devices = np.array([meta["device_table"][d] for d in sorted(meta["device_table"])[:2]], np.float32)
    width = devices.shape[1]
    with pytest.raises(example.InputError, match=rf"^device_features has shape \[2, {width}\]; the predictor takes "
                                                 rf"\['N', {width}\] \(N=3 from the inputs before it; one row per"):
        example.check_feeds(session, meta, {"network_features": nets, "device_features": devices})
    with pytest.raises(example.InputError, match=rf"^network_features has shape \[3, 2\]; the predictor takes \['N', {nets.shape[1]}\]"):
        example.check_feeds(session, meta, {"network_features": nets[:, :2], "device_features": devices[:1].repeat(3, 0)})
    with pytest.raises(example.InputError, match="^missing input device_features"):
        example.check_feeds(session, meta, {"network_features": nets})
    example.check_feeds(session, meta, {"network_features": nets, "device_features": devices[:1].repeat(3, 0)})


def test_foreign_scheduler_refuses_a_correction_slot_the_file_does_not_hold(trained, tmp_path):
    """The graph applies no correction for such a slot (docs/predictor.md): the example checks it
    against the file's corrections."""
    from predictors_testkit import fed_back_twice
    from sniper_onnx.predictors.runtime import save_predictor

    _, predictor, _, data = trained
    fed = fed_back_twice(predictor, data.network_feature_names)
    path = save_predictor(fed, tmp_path / "fed.onnx")
    example = _load_example()
    session, meta = example.load(str(path))
    assert example.correction_slots(meta) == 2
    nets = data.network_matrix[:1].astype(np.float32)
    device = np.array([meta["device_table"]["phone"]], np.float32)
    for slot in (0, 1, 2):
        device[0, -1] = slot
        example.check_feeds(session, meta, {"network_features": nets, "device_features": device})
    for slot in (3, -1, 0.5):
        device[0, -1] = slot
        with pytest.raises(example.InputError, match=r"^device_features row 0: correction_slot \S+ is not 0 \(none\) "
                                                     r"or one of the file's 2 correction\(s\) \(1\.\.2\)"):
            example.check_feeds(session, meta, {"network_features": nets, "device_features": device})
    # a device table naming a slot the file lacks: one line, not a silently uncorrected answer
    from sniper_onnx.predictors.runtime import set_metadata

    model = type(fed.model)()
    model.CopyFrom(fed.model)
    set_metadata(model, {**fed.meta, "device_table": {**fed.device_table, "phone": [*fed.device_table["phone"][:-1], 7]}})
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(model.SerializeToString())
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"features": dict(zip(data.network_feature_names, data.network_matrix[0].tolist()))}))
    _one_line_error(_run_example(damaged, task), "correction_slot 7 is not 0 (none) or one of the file's 2 correction(s)")
    assert _run_example(path, task).returncode == 0


def test_foreign_scheduler_says_in_one_line_what_is_wrong_with_a_task(trained, tmp_path):
    path, _, _, data = trained
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"predictions": []}))  # the JSON of another command
    _one_line_error(_run_example(path, other), "not the JSON of `sniper-onnx analyze --json` (no 'features')")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"features": {data.network_feature_names[0]: 1.0}}))
    _one_line_error(_run_example(path, partial), "feature(s) this predictor takes are missing")
    _one_line_error(_run_example(path, tmp_path / "absent.json"), "absent.json: cannot read it")
    _one_line_error(_run_example(other, other), "other.json: not a readable ONNX file")


def test_foreign_scheduler_imports_only_onnxruntime_numpy_and_the_stdlib():
    import ast

    tree = ast.parse(EXAMPLE.read_text())
    modules = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert modules - set(sys.stdlib_module_names) == {"numpy", "onnxruntime"}


def _analysis(names, **more):
    return {"features": {name: 1.0 for name in names}, **more}


def test_foreign_scheduler_warns_where_predict_would_use_the_kernel_sum_it_cannot_build(tmp_path):
    """`--nodes` JSON: predict builds the kernel table from the nodes, the example cannot (it would
    need sniper-onnx) and answers with the PCN; it says so, as predict does for JSON with neither."""
    from sniper_onnx.predictors.runtime import shipped_predictor_path

    path = shipped_predictor_path("pcn_reference.onnx")
    session, meta = _load_example().load(str(path))
    assert meta.get("kernel_path")
    names = meta["network_feature_names"]
    layer = {"name": "conv", "op_type": "Conv", "is_layer": True, "subgraph": False}
    expected = {"nodes.json": _analysis(names, nodes=[layer]), "plain.json": _analysis(names)}
    quiet = {"kernels.json": _analysis(names, kernel_table={"columns": meta["kernel_path"]["feature_names"], "rows": []}),
             "control_flow.json": _analysis(names, nodes=[{**layer, "op_type": "Loop", "subgraph": True}])}
    for name, analysis in {**expected, **quiet}.items():
        (tmp_path / name).write_text(json.dumps(analysis))
        out = _run_example(path, tmp_path / name)
        assert out.returncode == 0 and len(out.stdout.splitlines()) == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        if name in quiet:
            assert not lines, lines
            continue
        assert len(lines) == 1 and lines[0].startswith(f"foreign_scheduler.py: warning: {tmp_path / name}: no kernel table "
                                                       "in this JSON, so the PCN answers where the kernel sum would"), lines
        assert "`sniper-onnx analyze --json --kernels`" in lines[0]
        assert ("`sniper-onnx predict` builds one from the nodes" in lines[0]) == (name == "nodes.json"), lines[0]


def test_foreign_scheduler_refuses_unknown_input_dims_as_predict_does_and_passes_on_warnings(trained, tmp_path):
    from sniper_onnx.errors import SniperError
    from sniper_onnx.predictors.commands import incomplete_cost_notes

    path, _, _, data = trained
    names = data.network_feature_names
    dynamic = tmp_path / "dynamic.json"
    analysis = _analysis(names, model={"inputs": {"x": [1, None, 256]}}, unknown_shape_nodes=["a", "b", "c"],
                         warnings=["input 'x' ... unknown dims [1]"])
    dynamic.write_text(json.dumps(analysis))
    out = _run_example(path, dynamic)
    _one_line_error(out, f"{dynamic}: input 'x' has unknown dims (1x?x256), so 3 nodes have no cost")
    with pytest.raises(SniperError) as refused:  # the same words as `sniper-onnx predict`
        incomplete_cost_notes(str(dynamic), analysis, remedy="re-run `sniper-onnx analyze --json` with --input-shape")
    assert out.stderr.strip() == f"foreign_scheduler.py: error: {refused.value}"
    # costs incomplete but the inputs known: it answers, with the analyzer's warnings and the lower-bound note
    unknown_op = tmp_path / "unknown_op.json"
    analysis = _analysis(names, model={"inputs": {"x": [1, 8]}}, unknown_ops={"Foo": 2}, warnings=["2 Foo nodes cost nothing"])
    unknown_op.write_text(json.dumps(analysis))
    out = _run_example(path, unknown_op)
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 1, out.stderr
    library = incomplete_cost_notes(str(unknown_op), analysis)
    assert out.stderr.strip().splitlines() == [f"foreign_scheduler.py: warning: {note}" for note in library]


def test_foreign_scheduler_says_in_one_line_what_is_wrong_with_a_feature_or_a_model_given_as_json(trained, tmp_path):
    path, _, _, data = trained
    name = data.network_feature_names[0]
    for value, shown in ((None, "null"), (-1.0, "-1.0"), (float("nan"), "NaN"), (float("inf"), "Infinity"), ("fast", '"fast"')):
        task = tmp_path / "task.json"
        task.write_text(json.dumps({"features": {**_analysis(data.network_feature_names)["features"], name: value}}))
        _one_line_error(_run_example(path, task), f"task.json: feature {name} is {shown}; analyzer features are finite numbers >= 0")
    model = tmp_path / "model.onnx"
    model.write_bytes(Path(path).read_bytes())  # the model instead of its analysis
    _one_line_error(_run_example(path, model), "run `sniper-onnx analyze MODEL --json --kernels > MODEL.json` first")
    renamed = tmp_path / "model.json"  # a binary file, whatever its name
    renamed.write_bytes(model.read_bytes())
    _one_line_error(_run_example(path, renamed), "model.json: not JSON but a binary file (an .onnx model?)")
