"""A predictor records the analyzer feature schema it was trained on, and `predict` says when the
running analyzer computes features differently (same names, maybe other values)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from predictors_testkit import HELD_OUT, device_spec, latency, synthetic_networks, write_json_samples
from sniper_onnx.analysis.result import FEATURE_SCHEMA
from sniper_onnx.cli import app
from sniper_onnx.predictors import load_predictor
from sniper_onnx.predictors.commands import predict_files
from sniper_onnx.predictors.runtime import SHIPPED_PREDICTORS, shipped_predictor_path

runner = CliRunner()
SCHEMA_KEY = "sniper.feature_schema"


def _with_schema(source: Path, target: Path, schema: str | None) -> Path:
    """A copy of a trained predictor whose recorded schema is ``schema`` (None: no record at all,
    as in files written before training recorded it)."""
    model = onnx.load(str(source))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != SCHEMA_KEY]
    del model.metadata_props[:]
    for key, value in kept + ([(SCHEMA_KEY, json.dumps(schema))] if schema is not None else []):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(model, str(target))
    return target


def _analysis(tmp_path: Path, data, rows) -> list[str]:
    """`analyze --json`-like files of the current analyzer, so only the predictor can warn."""
    from sniper_onnx import __version__

    paths = []
    for i in rows:
        path = tmp_path / f"net{i}.json"
        path.write_text(json.dumps({"features": dict(zip(data.network_feature_names, data.network_matrix[i].tolist())),
                                    "sniper_onnx_version": __version__, "feature_schema": FEATURE_SCHEMA}))
        paths.append(str(path))
    return paths


def _schema_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "trained on features of feature schema" in line]


def test_training_records_the_running_feature_schema(trained):
    path, predictor, _, _ = trained
    assert predictor.feature_schema == FEATURE_SCHEMA
    stored = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(stored[SCHEMA_KEY]) == FEATURE_SCHEMA


def test_predict_warns_once_for_a_predictor_of_another_schema(tmp_path, trained):
    path, _, _, data = trained
    old = _with_schema(path, tmp_path / "old.onnx", "2026-01-01")
    nets = _analysis(tmp_path, data, [3, 4, 5])
    result = runner.invoke(app, ["predict", *nets, "-p", str(old), "--json"])  # 3 nets x every device
    assert result.exit_code == 0, result.output
    warned = _schema_lines(result.stderr)
    assert len(warned) == 1, result.stderr
    assert warned[0].startswith(f"sniper-onnx: warning: {old}: trained on features of feature schema 2026-01-01")
    assert f"computes feature schema {FEATURE_SCHEMA}" in warned[0] and "retrain" in warned[0]
    assert len(_schema_lines("\n".join(json.loads(result.stdout)["warnings"]))) == 1
    assert len(json.loads(result.stdout)["predictions"]) == 3 * len(load_predictor(old).devices)  # it still answers

    # the Python API: the table of Predictor.predict and predict_files carry the same one line
    features = [dict(zip(data.network_feature_names, data.network_matrix[i].tolist())) for i in (3, 4)]
    assert len(_schema_lines("\n".join(load_predictor(old).predict(features).warnings()))) == 1
    assert len(_schema_lines("\n".join(predict_files(nets, None, str(old)).warnings()))) == 1


@pytest.mark.parametrize("schema", [FEATURE_SCHEMA, None], ids=["current", "predates-recording"])
def test_predict_says_nothing_for_the_current_schema_or_a_file_that_predates_recording_it(tmp_path, trained, schema):
    path, _, _, data = trained
    file = _with_schema(path, tmp_path / "p.onnx", schema)
    assert load_predictor(file).feature_schema == schema
    result = runner.invoke(app, ["predict", *_analysis(tmp_path, data, [3]), "-p", str(file), "-d", "phone"])
    assert result.exit_code == 0, result.output
    assert _schema_lines(result.stderr) == [] and "warning" not in result.stderr, result.stderr


def test_the_shipped_predictors_carry_the_running_schema_and_do_not_warn(tmp_path):
    """Stamped, not retrained: their training features were checked against today's analyzer
    (docs/predictor.md, "The ONNX file")."""
    for name in SHIPPED_PREDICTORS:
        assert load_predictor(shipped_predictor_path(name)).feature_schema == FEATURE_SCHEMA, name
    shipped = load_predictor(shipped_predictor_path(SHIPPED_PREDICTORS[0]))
    net = tmp_path / "net.json"
    net.write_text(json.dumps({"features": {n: 1.0 for n in shipped.network_feature_names},
                               "feature_schema": FEATURE_SCHEMA}))
    table = predict_files([str(net)])  # every shipped predictor answers
    assert {row.predictor for row in table.rows} == {str(shipped_predictor_path(n)) for n in SHIPPED_PREDICTORS}
    assert table.predictor_warnings == []


def test_adapting_keeps_the_schema_the_file_was_trained_on(tmp_path, trained):
    """Adapt corrects a device; the PCN still holds what it learned from the old features."""
    path, _, _, data = trained
    old = _with_schema(path, tmp_path / "old.onnx", "2026-01-01")
    nets = synthetic_networks(10, 41)
    seconds = latency(nets, HELD_OUT, 3)
    samples = write_json_samples(tmp_path, data.network_feature_names, nets, seconds)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(device_spec("newboard", HELD_OUT).to_dict()))
    adapted = tmp_path / "adapted.onnx"
    result = runner.invoke(app, ["adapt", "-p", str(old), "--device-spec", str(spec), "--samples", str(samples),
                                 "-o", str(adapted)])
    assert result.exit_code == 0, result.output
    assert load_predictor(adapted).feature_schema == "2026-01-01"


def test_evaluate_warns_once_for_a_predictor_of_another_schema(tmp_path, trained, synthetic_csv):
    """Its metrics may show the schema's change, not the predictor's error: said once, not per device."""
    path = trained[0]
    old = _with_schema(path, tmp_path / "old.onnx", "2026-01-01")
    result = runner.invoke(app, ["evaluate", "-p", str(old), "--table", str(synthetic_csv)])
    assert result.exit_code == 0, result.output
    warned = _schema_lines(result.stderr)
    assert len(warned) == 1 and warned[0].startswith(f"sniper-onnx: warning: {old}: trained on features"), result.stderr
    current = runner.invoke(app, ["evaluate", "-p", str(path), "--table", str(synthetic_csv), "--json"])
    assert current.exit_code == 0 and _schema_lines(current.stderr) == [], current.output
    assert json.loads(current.stdout)["warnings"] == []


def test_reading_the_schema_never_imports_the_analyzer():
    """Every `Predictor.predict` compares schemas; importing the analysis package for a string cost ~70 ms."""
    import subprocess
    import sys

    from sniper_onnx.analysis.result import FEATURE_SCHEMA as OLD_HOME
    from sniper_onnx.feature_schema import FEATURE_SCHEMA as NEW_HOME

    assert OLD_HOME == NEW_HOME == FEATURE_SCHEMA
    code = ("import sys\nfrom sniper_onnx.predictors.runtime import load_predictor\n"
            "load_predictor().feature_schema_notes()\n"
            "print(sorted(m for m in sys.modules if m.startswith('sniper_onnx.analysis')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded
