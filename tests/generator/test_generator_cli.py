"""`sniper-onnx generate` and `sniper-onnx zoo` through typer's CliRunner."""

from __future__ import annotations

import json
import re

import onnx
import pytest
from typer.testing import CliRunner

from sniper_generator import materialize
from sniper_generator.dataset import read_manifest
from sniper_onnx.cli import app

runner = CliRunner()
QUICK = ["--max-macs", "2e6"]


def _one_line_error(result, words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sniper-onnx: error:") and words in lines[0], result.output
    assert "Traceback" not in result.output


def test_generate_writes_onnx_and_a_manifest_that_rematerializes(tmp_path):
    out = tmp_path / "nets"
    result = runner.invoke(app, ["generate", "--count", "3", "--seed", "4", "--out", str(out), *QUICK])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 3
    for record in records:
        assert {"net_id", "seed", "config", "family", "generator_version", "features", "file"} <= set(record)
        assert record["features"]["total_macs"] > 0
    for spec, record in zip(read_manifest(out / "manifest.jsonl"), records):
        assert (out / record["file"]).read_bytes() == materialize(spec).SerializeToString()
        onnx.checker.check_model(str(out / record["file"]))


def test_generate_refuses_to_replace_a_manifest_unless_asked(tmp_path):
    arguments = ["generate", "-n", "1", "--out", str(tmp_path), "--manifest-only", *QUICK]
    assert runner.invoke(app, arguments).exit_code == 0
    before = (tmp_path / "manifest.jsonl").read_text()
    _one_line_error(runner.invoke(app, arguments), "--overwrite")
    assert (tmp_path / "manifest.jsonl").read_text() == before
    assert runner.invoke(app, [*arguments, "--overwrite", "--seed", "9"]).exit_code == 0
    assert (tmp_path / "manifest.jsonl").read_text() != before


def test_manifest_only_json_and_families(tmp_path):
    result = runner.invoke(app, ["generate", "-n", "4", "-f", "mixed", "--out", str(tmp_path / "m"), "--manifest-only",
                                 "--json", *QUICK])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["count"] == 4 and summary["onnx_files"] == 0
    assert not list((tmp_path / "m").glob("*.onnx"))
    records = [json.loads(line) for line in (tmp_path / "m" / "manifest.jsonl").read_text().splitlines()]
    assert all(r["file"] is None for r in records)
    nas = runner.invoke(app, ["generate", "-n", "2", "-f", "nasbench201", "--out", str(tmp_path / "n"), "--manifest-only"])
    assert nas.exit_code == 0, nas.output
    assert "arch" in json.loads((tmp_path / "n" / "manifest.jsonl").read_text().splitlines()[0])["config"]


def test_jobs_give_the_same_manifest(tmp_path):
    common = ["generate", "-n", "4", "--seed", "7", "--manifest-only", *QUICK]
    assert runner.invoke(app, [*common, "--out", str(tmp_path / "a")]).exit_code == 0
    assert runner.invoke(app, [*common, "--out", str(tmp_path / "b"), "--jobs", "2"]).exit_code == 0
    assert (tmp_path / "a" / "manifest.jsonl").read_bytes() == (tmp_path / "b" / "manifest.jsonl").read_bytes()


def test_coverage_json_and_plot(tmp_path):
    plot = tmp_path / "coverage.png"
    result = runner.invoke(app, ["generate", "--coverage", "-n", "6", "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["count"] == 6 and len(report["quantiles"]["total_macs"]) == len(report["quantile_levels"])
    assert {z["name"] for z in report["zoo"]} >= {"resnet50", "vgg16", "vit_b_16"}
    assert report["unknown_ops"] == {} and report["zoo_note"] is None
    assert plot.stat().st_size > 1000 and result.stderr.strip() == f"wrote {plot}"


@pytest.mark.parametrize("arguments, words", [
    (["generate", "-n", "2"], "--out"),
    (["generate", "-n", "0", "--out", "/tmp/sniper_gen_unused"], "--count"),
    (["generate", "-n", "2", "-f", "rnn", "--out", "/tmp/sniper_gen_unused"], "rnn"),
    (["zoo", "export", "resnet5", "-o", "/tmp/sniper_gen_x.onnx"], "unknown network"),
    (["zoo", "export", "vgg16", "-o", "/tmp/sniper_gen_x.onnx", "-r", "64"], "224"),
    (["zoo", "export", "resnet50", "-o", "/nonexistent_dir/x.onnx"], "no such directory"),
    (["generate", "-n", "2", "--max-macs", "1", "--out", "/tmp/sniper_gen_unused"], "1e6 or more"),
    (["generate", "-n", "2", "--out", "/proc/sniper_gen_unused"], "cannot create the folder"),
    (["profile", "--generate", "1", "--max-macs", "5"], "1e6 or more"),
    (["generate", "-n", "2", "-s", "-1", "--out", "/tmp/sniper_gen_unused"], "--seed -1: must be a non-negative"),
    (["generate", "--coverage", "-n", "2", "-s", "-1"], "--seed -1: must be a non-negative"),
    (["generate", "--coverage", "-n", "2", "--max-macs", "1"], "1e6 or more"),
    (["generate", "--coverage", "-n", "2", "-j", "0"], "--jobs 0: must be at least 1"),
    (["generate", "--coverage", "-n", "2", "--plot", "/tmp/sniper_cov.xyz"], "not an image format"),
    (["generate", "-n", "2", "--out", "/tmp/sniper_gen_unused", "--plot", "/tmp/p.png"], "add --coverage"),
    (["generate", "--coverage", "-n", "2", "--out", "/tmp/sniper_gen_unused"], "--out writes nets, which --coverage does not"),
    (["generate", "--coverage", "-n", "2", "--manifest-only"], "--manifest-only writes nets"),
    (["zoo", "export", "mobilenet_v2", "-o", "/tmp/sniper_gen_x.onnx", "-r", "32", "--seed", "-3"],
     "--seed -3: must be a non-negative"),
    (["generate", "-n", "2", "-f", "nasbench201", "--max-macs", "3e6", "--out", "/tmp/sniper_gen_unused"],
     "use --max-macs 7910016 or more"),
])
def test_bad_input_is_one_line_exit_2(arguments, words):
    _one_line_error(runner.invoke(app, arguments), words)


@pytest.mark.parametrize("cap", ["nan", "-5", "inf"])
@pytest.mark.parametrize("family, floor", [("cnn", "use 1e6 or more"), ("tiny", "use 1000 or more")])
def test_a_max_macs_that_is_no_count_of_macs_is_refused(cap, family, floor, tmp_path):
    out = tmp_path / "nets"
    result = runner.invoke(app, ["generate", "-n", "1", "-f", family, "--max-macs", cap, "--manifest-only",
                                 "--out", str(out)])
    _one_line_error(result, f"--max-macs {cap}: a cap must be a positive finite number of MACs; {floor}")
    assert not out.exists()


def test_tiny_coverage_says_once_that_the_zoo_is_not_its_target():
    result = runner.invoke(app, ["generate", "--coverage", "-n", "3", "-f", "tiny"])
    assert result.exit_code == 0, result.output
    assert "total_macs" in result.output and "OUTSIDE" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("zoo")] == [
        "zoo: not compared, the tiny family (1-8 layers under 1e6 MACs) is meant to measure the cost of a call, "
        "not to cover the zoo"]
    report = json.loads(runner.invoke(app, ["generate", "--coverage", "-n", "3", "-f", "tiny", "--json"]).stdout)
    assert report["zoo"] == [] and report["all_zoo_inside"] is None and "not to cover the zoo" in report["zoo_note"]


def test_zoo_list_and_export(tmp_path):
    listing = runner.invoke(app, ["zoo", "list", "--json"])
    assert listing.exit_code == 0, listing.output
    rows = {row["name"]: row for row in json.loads(listing.stdout)["networks"]}
    assert rows["resnet50"]["params"] == 25_557_032 and len(rows) == 12
    assert "densenet201" in runner.invoke(app, ["zoo", "list"]).output
    path = tmp_path / "sq.onnx"
    result = runner.invoke(app, ["zoo", "export", "squeezenet1_1", "-o", str(path), "-r", "96", "-b", "2", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["params"] == 1_235_496 and info["input_shape"] == [2, 3, 96, 96]
    onnx.checker.check_model(str(path), full_check=True)


@pytest.mark.parametrize("command", [["generate"], ["zoo"], ["zoo", "export"], ["zoo", "list"]])
def test_help(command):
    for flag in ("-h", "--help"):
        result = runner.invoke(app, [*command, flag])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_coverage_honours_max_macs_as_generate_does():
    capped = json.loads(runner.invoke(app, ["generate", "--coverage", "-n", "4", "-f", "cnn", "--max-macs", "1e7",
                                            "--json"]).stdout)
    assert capped["quantiles"]["total_macs"][-1] <= 2e7  # "may exceed the cap by up to 2x" (docs/generator.md)


def _onnx_names(folder) -> set[str]:
    return {path.name for path in folder.glob("*.onnx")}


def test_overwrite_deletes_the_replaced_manifests_onnx_files_and_nothing_else(tmp_path):
    out = tmp_path / "ow"
    assert runner.invoke(app, ["generate", "-f", "tiny", "-n", "3", "--seed", "5", "--out", str(out)]).exit_code == 0
    (out / "mine.onnx").write_bytes(b"the user's own model")
    (out / "notes.txt").write_text("kept")
    result = runner.invoke(app, ["generate", "-f", "tiny", "-n", "1", "--seed", "9", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    listed = {json.loads(line)["file"] for line in (out / "manifest.jsonl").read_text().splitlines()}
    assert _onnx_names(out) == listed | {"mine.onnx"} and (out / "notes.txt").read_text() == "kept"
    assert "(1 net, 1 ONNX file)" in result.stdout and "removed 3 ONNX files" in result.stdout
    assert result.stderr.strip() == (f"sniper-onnx: warning: {out} holds 1 .onnx file the manifest does not list "
                                     f"(e.g. mine.onnx); `sniper-onnx profile {out}` would measure it too")


def test_overwrite_keeps_files_the_new_manifest_lists_and_names_it_did_not_write(tmp_path):
    out = tmp_path / "ow"
    common = ["generate", "-f", "tiny", "--seed", "5", "--out", str(out)]
    assert runner.invoke(app, [*common, "-n", "2"]).exit_code == 0
    first = _onnx_names(out)
    manifest = out / "manifest.jsonl"
    # a hand-edited line naming a file the generator would not have written under that name
    manifest.write_text(manifest.read_text() + json.dumps({"net_id": "x", "file": "../outside.onnx"}) + "\nnot json\n")
    (tmp_path / "outside.onnx").write_text("keep")
    result = runner.invoke(app, [*common, "-n", "3", "--overwrite", "--json"])
    assert result.exit_code == 0, result.output
    assert first < _onnx_names(out) and len(_onnx_names(out)) == 3 and (tmp_path / "outside.onnx").exists()
    assert json.loads(result.stdout)["removed_onnx"] == 0 and result.stderr == ""


def test_overwrite_with_manifest_only_keeps_the_files_of_the_nets_it_still_lists(tmp_path):
    """--manifest-only writes no file, but the nets it lists are the same: their files stay (they
    were all deleted, a reviewer found)."""
    out = tmp_path / "g dir"
    common = ["generate", "-f", "tiny", "--seed", "5", "-n", "2", "--out", str(out)]
    assert runner.invoke(app, common).exit_code == 0
    before = _onnx_names(out)
    result = runner.invoke(app, [*common, "--overwrite", "--manifest-only", "--json"])
    assert result.exit_code == 0, result.output
    assert _onnx_names(out) == before and len(before) == 2
    assert json.loads(result.stdout)["removed_onnx"] == 0 and json.loads(result.stdout)["unlisted_onnx"] == 0


def test_out_is_said_to_be_required_unless_coverage():
    help_text = re.sub(r"[\s│]+", " ", runner.invoke(app, ["generate", "--help"]).output)  # rich wraps it in a box
    assert "Output directory (created); required unless --coverage." in help_text
    _one_line_error(runner.invoke(app, ["generate", "-n", "1"]), "--out DIR is required unless --coverage")
