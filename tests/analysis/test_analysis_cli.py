"""`sniper-onnx analyze`: summary table, --json (golden), --nodes, --csv, one-line errors, light imports."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from analysis_graphs import model, weight
from onnx import helper
from typer.testing import CliRunner

from sniper_onnx import __version__
from sniper_onnx.analysis import FEATURE_NAMES
from sniper_onnx.cli import app

GOLDEN = Path(__file__).parent / "golden" / "analyze_branchy.json"
runner = CliRunner()


def branchy_model() -> onnx.ModelProto:
    """Conv stem, then a 1x1 and a dilated 3x3 branch joined by Add, then pool and an FC."""
    nodes = [
        helper.make_node("Conv", ["input", "W0", "B0"], ["stem"], name="stem", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["stem", "g", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "W1"], ["p1"], name="branch_1x1"),
        helper.make_node("Conv", ["r", "W2"], ["p2"], name="branch_atrous", pads=[2, 2, 2, 2], dilations=[2, 2]),
        helper.make_node("Add", ["p1", "p2"], ["s"], name="join"),
        helper.make_node("GlobalAveragePool", ["s"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "Wfc", "Bfc"], ["logits"], name="fc", transB=1),
    ]
    inits = [weight("W0", 8, 3, 3, 3), weight("B0", 8)] + [weight(n, 8) for n in "gbmv"]
    inits += [weight("W1", 8, 8, 1, 1), weight("W2", 8, 8, 3, 3), weight("Wfc", 10, 8), weight("Bfc", 10)]
    return model(nodes, {"input": ["N", 3, 16, 16]}, ["logits"], inits, name="branchy")


@pytest.fixture()
def branchy(tmp_path) -> Path:
    path = tmp_path / "branchy.onnx"
    onnx.save(branchy_model(), path)
    return path


def test_json_matches_golden(branchy):
    result = runner.invoke(app, ["analyze", str(branchy), "--json", "--nodes"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    data["source"] = "branchy.onnx"
    # the producing sniper-onnx, so `predict` can tell an older analysis; a release must not break the golden
    assert data["sniper_onnx_version"] == __version__
    data["sniper_onnx_version"] = "<sniper_onnx.__version__>"
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(data, indent=1) + "\n")
    assert data == json.loads(GOLDEN.read_text())


def test_json_has_every_feature_and_no_nodes_unless_asked(branchy):
    result = runner.invoke(app, ["analyze", str(branchy), "--json", "--input-shape", "input=2x3x16x16"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["features"]) == list(FEATURE_NAMES) and "nodes" not in data
    assert data["unknown_ops"] == {} and data["model"]["inputs"] == {"input": [2, 3, 16, 16]}
    assert data["features"]["num_atrous_conv3x3"] == 1 and data["features"]["max_branches"] == 2


def test_default_output_is_a_table_grouped_by_table_1(branchy):
    result = runner.invoke(app, ["analyze", str(branchy)])
    assert result.exit_code == 0, result.output
    for heading in ("Network structure", "Calculation times", "Number of parameters", "Proportion of network layers"):
        assert heading in result.output
    assert "total_macs" in result.output and "num_atrous_conv3x3" in result.output


def test_nodes_table_and_csv(branchy, tmp_path):
    target = tmp_path / "nodes.csv"
    result = runner.invoke(app, ["analyze", str(branchy), "--nodes", "--csv", str(target)])
    assert result.exit_code == 0, result.output
    assert "branch_atrous" in result.output and "Per-node costs" in result.output
    rows = list(csv.DictReader(target.open()))
    assert [r["name"] for r in rows][:3] == ["stem", "bn", "relu"] and len(rows) == 9
    stem = rows[0]
    assert int(stem["macs"]) == 8 * 16 * 16 * 27 and stem["output_shapes"] == "1x8x16x16"


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "no such file"), (b"", "empty file"), (b"plain text, not protobuf", "not a readable ONNX model")],
)
def test_bad_files_give_one_line_and_exit_2(tmp_path, content, expected):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sniper-onnx: error: ") and expected in lines[0]
    assert str(path) in lines[0] and "Traceback" not in result.output


def _broken_graphs():
    cycle = [helper.make_node("Add", ["input", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second"), helper.make_node("Relu", ["a"], ["y"])]
    dangling = [helper.make_node("Add", ["input", "ghost"], ["y"], name="add")]
    return {"cycle": model(cycle, {"input": [2]}, ["y"]), "dangling": model(dangling, {"input": [2]}, ["y"])}


@pytest.mark.parametrize("kind", ["cycle", "dangling", "truncated"])
def test_broken_graphs_give_one_line_and_exit_2(tmp_path, kind):
    path = tmp_path / f"{kind}.onnx"
    if kind == "truncated":
        data = branchy_model().SerializeToString()
        path.write_bytes(data[: len(data) * 2 // 3])
    else:
        onnx.save(_broken_graphs()[kind], path)
    result = runner.invoke(app, ["analyze", str(path), "--json"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and str(path) in lines[0], result.output
    assert "Traceback" not in result.output and (kind in lines[0] or kind == "dangling" and "ghost" in lines[0])


def test_bad_input_shape_option(branchy):
    result = runner.invoke(app, ["analyze", str(branchy), "--input-shape", "input=1xAx16"])
    assert result.exit_code == 2 and "--input-shape" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["analyze", str(branchy), "-s", "image=1x3x16x16"])
    assert result.exit_code == 2 and "the inputs are: input" in result.output


def test_unwritable_csv_is_a_one_line_error(branchy, tmp_path):
    result = runner.invoke(app, ["analyze", str(branchy), "--csv", str(tmp_path / "no" / "such" / "dir.csv")])
    assert result.exit_code == 2 and "cannot write" in result.output


def test_csv_path_that_is_the_model_is_refused(branchy, tmp_path):
    before = branchy.read_bytes()
    for target in (str(branchy), str(branchy.parent / "." / branchy.name)):
        result = runner.invoke(app, ["analyze", str(branchy), "--json", "--csv", target])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and "is the model being analysed" in lines[0], result.output
    linked = tmp_path / "link.onnx"
    os.link(branchy, linked)
    assert runner.invoke(app, ["analyze", str(branchy), "--csv", str(linked)]).exit_code == 2
    assert branchy.read_bytes() == before


def test_kernels_without_json_is_an_error(branchy):
    result = runner.invoke(app, ["analyze", str(branchy), "--kernels"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "add --json" in lines[0]


def test_help():
    for flag in ("-h", "--help"):
        result = runner.invoke(app, ["analyze", flag])
        assert result.exit_code == 0 and "--input-shape" in result.output


def test_unknown_option_is_a_usage_error(branchy):
    result = runner.invoke(app, ["analyze", str(branchy), "--bogus"])
    assert result.exit_code == 2 and "internal error" not in result.output


def test_analyze_never_imports_heavy_modules(branchy):
    code = (
        "import sys\n"
        "from sniper_onnx import analyze\n"
        f"analyze({str(branchy)!r})\n"
        "from sniper_onnx.cli import app\n"
        f"app(['analyze', {str(branchy)!r}, '--json'], standalone_mode=False)\n"
        # networkx (the lazy result.graph) and rich (the table) cost a quarter second each to import
        "heavy = [m for m in ('torch', 'sklearn', 'onnxruntime', 'networkx', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_bracketed_names_are_printed_as_text_not_rich_markup(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="act[b]")], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    path = tmp_path / "net[b].onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    output = " ".join(runner.invoke(app, ["analyze", str(path), "--nodes"], env={"COLUMNS": "300"}).output.split())
    assert "net[b].onnx" in output and "act[b]" in output and "declared [batch, 3, h, w]" in output


def _long_named_model(tmp_path: Path) -> tuple[Path, str]:
    name = "/backbone/stage4/pool/GlobalAveragePool_after_the_last_bottleneck_block_of_the_network"
    graph = helper.make_graph([helper.make_node("GlobalAveragePool", ["x"], ["y"], name=name)], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    path = tmp_path / "a_model_file_whose_name_alone_is_longer_than_the_summary_table_is_wide.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path, name


def test_piped_tables_keep_one_row_per_line(tmp_path):
    """A real pipe with no COLUMNS: rich would fold the node name and the title line at 80 columns."""
    path, name = _long_named_model(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}
    entry = "import sys; from sniper_onnx.cli import main; sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", entry, "analyze", str(path), "--nodes"], capture_output=True,
                         text=True, env=env, stdin=subprocess.DEVNULL, check=True).stdout
    lines = out.splitlines()
    assert any(f"* {name} " in line and "GlobalAveragePool │" in line and "1x3x1x1" in line for line in lines), out
    assert f"{path}  (1 node; x=1x3x8x8)" in lines, out  # one node, not "1 nodes"


def test_a_set_width_is_kept(tmp_path):
    """COLUMNS (and a terminal's own width) still decides: a long node name folds inside its column."""
    path, name = _long_named_model(tmp_path)
    output = runner.invoke(app, ["analyze", str(path), "--nodes"], env={"COLUMNS": "60"}).stdout  # warnings: stderr
    assert name not in output and max(len(line) for line in output.splitlines()) <= 60
    assert name in "".join(line.split("│")[1].strip().lstrip("* ") for line in output.splitlines() if "│" in line)


def test_input_shape_forms_of_polygraphy_onnxsim_and_a_bare_shape(tmp_path):
    path, _ = _long_named_model(tmp_path)
    for form in ("x=2x3x8x8", "x:2,3,8,8", "x:[2,3,8,8]", "2x3x8x8", "[2,3,8,8]"):
        result = runner.invoke(app, ["analyze", str(path), "-s", form, "--json"])
        assert result.exit_code == 0, (form, result.output)
        assert json.loads(result.stdout)["model"]["inputs"] == {"x": [2, 3, 8, 8]}, form


def test_a_scalar_input_is_shown_as_scalar_in_the_header(tmp_path):
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])]
    graph = helper.make_graph([helper.make_node("Mul", ["x", "s"], ["y"])], "g", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    path = tmp_path / "scaled.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 0, result.output
    assert "(1 node; s=scalar, x=1x8)" in result.output


def test_warnings_go_to_stderr_with_the_common_prefix(tmp_path):
    """`analyze model.onnx > report.txt` keeps the report clean, as predict does."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 0
    assert "declared" not in result.stdout and "total_macs" in result.stdout
    warned = [line for line in result.stderr.splitlines() if "declared [N, 3]" in line]
    assert len(warned) == 1 and warned[0].startswith("sniper-onnx: warning: input 'x'"), result.stderr
    as_json = runner.invoke(app, ["analyze", str(path), "--json"])
    assert json.loads(as_json.stdout)["warnings"] == [line.removeprefix("sniper-onnx: warning: ")
                                                      for line in as_json.stderr.splitlines()]


def test_csv_dash_writes_the_node_table_to_stdout(branchy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["analyze", str(branchy), "--csv", "-"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(result.stdout.splitlines()))
    assert [r["name"] for r in rows][:3] == ["stem", "bn", "relu"] and not (tmp_path / "-").exists()
    both = runner.invoke(app, ["analyze", str(branchy), "--csv", "-", "--json"])
    assert both.exit_code == 2 and "both write to stdout" in both.output
