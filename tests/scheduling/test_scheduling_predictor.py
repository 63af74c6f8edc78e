"""Predictor in the loop: plumbing from a folder of ONNX models and a predictor to predicted times.

The predictor and analyzer are stand-ins here (their own areas test them) that answer with the real
PredictionTable/PredictionRow types; what is checked is that their answers land in the right cells
of the platform's predicted table, and the errors."""

import json
import types

import numpy as np
import pytest
from typer.testing import CliRunner

import sniper_onnx
import sniper_onnx.predictors
import sniper_onnx.predictors.commands
from sniper_onnx.cli import app
from sniper_onnx.errors import SniperError
from sniper_onnx.predictors.runtime import PredictionRow, PredictionTable
from sniper_onnx.scheduling import load_platform, platform_from_dict
from sniper_onnx.scheduling.predicted import seconds_matrix, with_predictor

SCALE = {"AGX": 1.0, "TX2": 2.0, "NX": 3.0}


def table(cells):
    """{(network, device): seconds} -> PredictionTable."""
    return PredictionTable("stand-in", [PredictionRow(n, d, s, s, s, "pcn") for (n, d), s in cells.items()])


class StandIn:
    """Answers total_macs * 1e-9 s on AGX, twice that on TX2, three times on NX."""

    devices = sorted(SCALE)

    def __init__(self):
        self.asked = []
        self.layer_ops = []

    def predict(self, features, devices, network_names, kernel_tables=None, layer_ops=None):
        self.asked.append(list(devices))
        self.layer_ops.append(layer_ops)
        return table({(name, d): f["total_macs"] * 1e-9 * SCALE.get(d, 1.0)
                      for d in devices for name, f in zip(network_names, features)})


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    macs = {"ResNet50": 4e8, "VGG16": 1.5e9}
    predictor = StandIn()
    monkeypatch.setattr(sniper_onnx.predictors, "load_predictor", lambda path, devices=None: predictor)
    monkeypatch.setattr(
        sniper_onnx.predictors.commands, "analyze_for_prediction",
        lambda path, name, remedy=None: types.SimpleNamespace(features={"total_macs": macs[path.rsplit("/", 1)[-1][:-5]]},
                                                 kernel_table=None, notes=[],
                                                 layer_ops={"Conv": int(macs[path.rsplit("/", 1)[-1][:-5]] // 1e8)}),
    )
    models = tmp_path / "models"
    models.mkdir()
    for name in macs:
        (models / f"{name}.onnx").write_bytes(b"stand-in")
    path = tmp_path / "pcn.onnx"
    path.write_bytes(b"stand-in")
    return path, models, predictor


def test_predictions_replace_the_table_rows(stand_in):
    path, models, _ = stand_in
    paper = load_platform("paper")
    swap = with_predictor(paper, path, models)
    assert swap.replaced == ("ResNet50", "VGG16")
    assert "DenseNet121" in swap.kept
    new = swap.platform.predicted_times
    assert list(new[paper.model_index("ResNet50")]) == pytest.approx([0.4, 0.8, 1.2])
    assert list(new[paper.model_index("VGG16")]) == pytest.approx([1.5, 3.0, 4.5])
    untouched = paper.model_index("DenseNet121")
    assert list(new[untouched]) == list(paper.predicted_times[untouched])
    assert np.array_equal(swap.platform.true_times, paper.true_times)


def test_cli_with_predictor(stand_in):
    path, models, _ = stand_in
    result = CliRunner().invoke(app, ["simulate", "--rates", "10", "--seeds", "1", "--duration", "5",
                                      "--policies", "sniper", "--predictor", str(path),
                                      "--models", str(models), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["predictor_models"] == ["ResNet50", "VGG16"]
    assert data["platform"]["predicted_times"]["VGG16"]["NX"] == pytest.approx(4.5)
    # the predictor's seconds, apart from the table's: only the models it replaced, per device type
    assert data["predicted_times_from_predictor"] == {
        "ResNet50": pytest.approx({"AGX": 0.4, "TX2": 0.8, "NX": 1.2}),
        "VGG16": pytest.approx({"AGX": 1.5, "TX2": 3.0, "NX": 4.5})}


def test_without_models_no_predicted_times_from_a_predictor():
    result = CliRunner().invoke(app, ["simulate", "--rates", "10", "--seeds", "1", "--duration", "5",
                                      "--policies", "sniper", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["predicted_times_from_predictor"] == {}


def test_extrapolated_networks_are_warned_about_once_each(stand_in, monkeypatch):
    # `predict` warns when a network's features lie outside the training range, when many of its
    # layers are of op types training never saw, and (an analyzer note) when it holds control flow;
    # the schedule rests on those seconds, so simulate says the same, once per line, on stderr.
    path, models, predictor = stand_in
    answer = predictor.predict

    def predict(*args, **kwargs):
        result = answer(*args, **kwargs)
        for row in result.rows:
            if row.network == "VGG16":
                row.outside_training_range = ["total_macs"]
                row.predictor = str(path)
            else:
                row.unseen_ops, row.unseen_layer_share = {"Loop": 3}, 0.5
        return result

    predictor.predict = predict
    analyze = sniper_onnx.predictors.commands.analyze_for_prediction

    def with_control_flow(path, name, remedy=None):
        network = analyze(path, name, remedy)
        if name.endswith("ResNet50.onnx"):
            network.notes = [f"{name}: control flow (If, Loop or Scan): ..."]
        return network

    monkeypatch.setattr(sniper_onnx.predictors.commands, "analyze_for_prediction", with_control_flow)
    result = CliRunner().invoke(app, ["simulate", "--rates", "10", "--seeds", "1", "--duration", "5",
                                      "--policies", "sniper", "--predictor", str(path),
                                      "--models", str(models), "--json"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert all(line.startswith("sniper-onnx: warning: ") for line in lines), result.stderr
    assert len(lines) == 3 == len(set(lines))  # 3 devices per network, one line each
    assert sum("ResNet50.onnx: control flow" in line for line in lines) == 1
    assert sum("VGG16: 1 feature(s) outside the training range of pcn.onnx" in line for line in lines) == 1
    assert sum("ResNet50: 50% of its layers (Loop x3)" in line and "extrapolations" in line for line in lines) == 1
    assert json.loads(result.stdout)["warnings"] == [line[len("sniper-onnx: warning: "):] for line in lines]
    assert predictor.layer_ops == [[{"Conv": 4}, {"Conv": 15}]]  # unseen ops can only be found with them


def test_the_predictors_warnings_are_shown_once(stand_in):
    # A predictor trained on another feature schema says so in its table (predict prints it); the
    # simulated schedule rests on those seconds, so simulate prints it too: once, on stderr.
    path, models, predictor = stand_in
    note = "pcn.onnx: trained on features of feature schema 2020-01-01.1, but this sniper-onnx computes ..."
    answer = predictor.predict

    def predict(*args, **kwargs):
        result = answer(*args, **kwargs)
        result.predictor_warnings = [note]
        return result

    predictor.predict = predict
    result = CliRunner().invoke(app, ["simulate", "--rates", "10", "--seeds", "2", "--duration", "5",
                                      "--policies", "sniper", "--predictor", str(path),
                                      "--models", str(models), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count(note) == 1 and result.stderr.startswith("sniper-onnx: warning: pcn.onnx")
    assert json.loads(result.stdout)["warnings"] == [note]


def test_unknown_model_file_is_named(stand_in):
    path, models, _ = stand_in
    (models / "AlexNet.onnx").write_bytes(b"stand-in")
    with pytest.raises(SniperError, match="AlexNet.onnx matches no model"):
        with_predictor(load_platform("paper"), path, models)


def test_predictor_device_names_from_platform(stand_in):
    path, models, predictor = stand_in
    predictor.devices = ["AGX", "TX2", "jetson-xavier-nx"]
    data = load_platform("paper").to_json_dict()
    data["predictor_devices"] = {"NX": "jetson-xavier-nx"}
    with_predictor(platform_from_dict(data), path, models)
    assert predictor.asked == [["AGX", "TX2", "jetson-xavier-nx"]]


def test_devices_the_predictor_does_not_know(stand_in):
    path, models, predictor = stand_in
    predictor.devices = ["1080ti_1", "pixel3"]
    with pytest.raises(SniperError, match="predictor_devices"):
        with_predictor(load_platform("paper"), path, models)


def test_seconds_matrix():
    answer = table({("a", "x"): 1.0, ("a", "y"): 2.0, ("b", "x"): 3.0, ("b", "y"): 4.0})
    assert seconds_matrix(answer, ["b", "a"], ["y", "x"]).tolist() == [[4.0, 3.0], [2.0, 1.0]]
    with pytest.raises(SniperError, match="no time for a on z"):
        seconds_matrix(answer, ["a"], ["z"])
    with pytest.raises(SniperError, match="non-positive"):
        seconds_matrix(table({("a", "x"): -1.0}), ["a"], ["x"])


def test_models_alone_use_the_shipped_predictor(stand_in, monkeypatch):
    _, models, predictor = stand_in
    asked_paths = []
    monkeypatch.setattr(sniper_onnx.predictors, "load_predictor", lambda path, devices=None: asked_paths.append(path) or predictor)
    monkeypatch.setattr(sniper_onnx.predictors.runtime, "load_shipped_predictors", lambda: [predictor])
    result = CliRunner().invoke(app, ["simulate", "--rates", "10", "--seeds", "1", "--duration", "5",
                                      "--policies", "sniper", "--models", str(models), "--json"])
    assert result.exit_code == 0, result.output
    assert asked_paths == []


def test_predictor_devices_take_a_part_of_a_name_only_one_device_holds(stand_in):
    path, models, predictor = stand_in
    predictor.devices = ["AGX", "TX2", "jetson-xavier-nx", "jetson-nano"]
    data = load_platform("paper").to_json_dict()
    data["predictor_devices"] = {"NX": "xavier-nx"}
    with_predictor(platform_from_dict(data), path, models)
    assert predictor.asked == [["AGX", "TX2", "jetson-xavier-nx"]]
    data["predictor_devices"] = {"NX": "jetson"}
    with pytest.raises(SniperError, match="matches 2 devices"):
        with_predictor(platform_from_dict(data), path, models)


def test_the_shipped_predictor_knowing_the_names_is_used_and_its_devices_listed(tmp_path):
    """Not the first shipped predictor: the one that knows the (partial) names; an unmapped type
    is named with what to do, and the devices listed are that predictor's."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "sq.onnx").write_bytes(b"never analysed: the mapping fails first")
    platform = platform_from_dict({"name": "half", "devices": {"A": 1, "B": 1}, "true_times": {"sq": {"A": 1, "B": 2}},
                                   "predictor_devices": {"A": "t1 opt-all"}})
    with pytest.raises(SniperError, match=r"device type 'B' is not in 'predictor_devices' \(add it there\).*"
                                          r"pcn_reference.onnx \(it knows: AMD EPYC \| cpu fp32 t1 opt-all"):
        with_predictor(platform, None, models)


def test_the_shipped_predictor_answers_a_platform_as_predict_does(tmp_path):
    """Same numbers as `sniper-onnx predict`, kernel-sum path included (it once got the PCN's)."""
    import onnx
    from sniper_generator.zoo import export_zoo_model

    from sniper_onnx.predictors.commands import predict_files

    models = tmp_path / "models"
    models.mkdir()
    onnx.save(export_zoo_model("resnet50", weights=False), str(models / "ResNet50.onnx"))
    data = load_platform("paper").to_json_dict()
    names = {"AGX": "AMD EPYC | cpu fp32 t1 opt-all", "TX2": "AMD EPYC | cpu fp32 t2 opt-all",
             "NX": "AMD EPYC | cpu fp32 t1 opt-disabled"}
    data["predictor_devices"] = names
    platform = platform_from_dict(data)
    swap = with_predictor(platform, None, models)
    expected = predict_files([str(models / "ResNet50.onnx")], list(names.values()))
    assert {row.path for row in expected.rows} == {"kernels"}
    by_device = {row.device: row.seconds for row in expected.rows}
    got = swap.platform.predicted_times[platform.model_index("ResNet50")]
    assert list(got) == pytest.approx([by_device[names[t]] for t in platform.device_types])


def test_a_model_file_with_open_input_dims_is_refused_with_a_fix_simulate_can_use(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "seq", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    models = tmp_path / "models"
    models.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(models / "ResNet50.onnx"))
    data = load_platform("paper").to_json_dict()
    data["predictor_devices"] = {t: "AMD EPYC | cpu fp32 t1 opt-all" for t in ("AGX", "TX2", "NX")}
    with pytest.raises(SniperError, match=r"unknown dims \(1x\?x8\).*export the model with fixed input dims"):
        with_predictor(platform_from_dict(data), None, models)
