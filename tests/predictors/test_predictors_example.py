"""examples/foreign_scheduler.py agrees with the library while using only onnxruntime and numpy."""

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

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



def test_foreign_scheduler_matches_the_library_on_a_corrected_kernel_sum_device():
    from sniper_generator.zoo import export_zoo_model
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import kernel_table
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
        seconds = example.predict_seconds(session, meta, features[3], tables[3].tolist())
    row = fed_back.predict([features[3]], [device], kernel_tables=[tables[3]]).rows[0]
    assert row.path == "kernels" and seconds[device] == pytest.approx(row.seconds, rel=1e-5)
