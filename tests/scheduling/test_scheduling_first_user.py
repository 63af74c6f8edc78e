"""What a first-time user of `sniper-onnx simulate` ran into (2026-11-30): --list-policies --json,
malformed trace rows and --rates lists, the trace's noise column, deadlines before arrivals, and
--platform naming a folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.experiment import parse_rates
from sniper_onnx.scheduling.policies import POLICIES
from sniper_onnx.scheduling.workload import read_task_rows

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["simulate", *args])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sniper-onnx: error: "), result.output
    return lines[0]


def trace_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "trace.csv"
    path.write_text(text)
    return str(path)


def test_list_policies_json_is_one_object_of_names_and_descriptions():
    result = run("--list-policies", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [entry["name"] for entry in data["policies"]] == list(POLICIES)
    assert all(set(entry) == {"name", "description"} and entry["description"] for entry in data["policies"])


def test_a_trace_row_with_more_fields_than_the_header_is_refused_with_its_line(tmp_path):
    trace = trace_file(tmp_path, "arrival,model\n0.0,VGG16\n0.1,ResNet50,extra\n")
    line = one_line_error(run("--trace", trace))
    assert f"{trace}:3:" in line and "3 fields" in line and "header has 2 (arrival,model)" in line


def test_the_line_named_is_the_file_line_after_a_blank_one(tmp_path):
    path = tmp_path / "w.csv"
    path.write_text("arrival,model\n\n0.1,m,x,y\n")
    with pytest.raises(SniperError, match=r"w\.csv:3: 4 fields"):
        read_task_rows(path, "workload", "arrival,model")
    path.write_text("arrival,model\n0.0,a\n\n\n0.1,b\n")
    assert read_task_rows(path, "workload", "arrival,model") == [(2, {"arrival": "0.0", "model": "a"}),
                                                                  (5, {"arrival": "0.1", "model": "b"})]


def test_a_bad_row_after_blank_lines_is_named_by_its_file_line(tmp_path):
    """Row messages counted rows, not lines: after two blank lines they named line 3 for line 5."""
    trace = trace_file(tmp_path, "arrival,model\n0.0,VGG16\n\n\n0.1,NoSuchModel\n")
    assert f"{trace}:5:" in one_line_error(run("--trace", trace))


@pytest.mark.parametrize(
    "text, item", [("18,,24", "item 2 is"), ("18,24,", "item 3 is"), (",18,,", "items 1, 3, 4 are")]
)
def test_an_empty_item_in_a_rates_list_is_refused(text, item):
    with pytest.raises(SniperError, match=f"{item} empty"):
        parse_rates(text)


def test_an_empty_rates_item_is_one_line_from_the_cli():
    assert "--rates '18,,24': item 2 is empty" in one_line_error(run("--rates", "18,,24", "--seeds", "1"))


@pytest.mark.parametrize("value", ["-1", "0", "nan", "abc"])
def test_a_bad_noise_value_says_the_column_is_a_multiplier(tmp_path, value):
    trace = trace_file(tmp_path, f"arrival,model,noise\n0.1,ResNet50,{value}\n")
    line = one_line_error(run("--trace", trace))
    assert f"{trace}:2: noise" in line and "the noise column is a multiplier of the task's true time" in line
    assert "not a coefficient of variation like --noise" in line


@pytest.mark.parametrize("deadline, shown", [("4", "4.0"), ("-1", "-1.0")])
def test_a_deadline_before_its_arrival_says_so(tmp_path, deadline, shown):
    trace = trace_file(tmp_path, f"arrival,model,deadline\n5,ResNet50,{deadline}\n")
    line = one_line_error(run("--trace", trace))
    assert f"{trace}:2: deadline {shown} is before its arrival 5.0" in line
    assert "finite number" not in line


def test_a_platform_directory_is_named_as_one(tmp_path):
    folder = tmp_path / "lab"
    folder.mkdir()
    line = one_line_error(run("--platform", str(folder)))
    assert f"{folder}: is a directory" in line and "no such platform" not in line


def test_a_platform_directory_names_the_platform_files_in_it(tmp_path):
    folder = tmp_path / "lab"
    (folder / "models").mkdir(parents=True)
    (folder / "platform.json").write_text("{}")
    assert f"(here: {folder / 'platform.json'})" in one_line_error(run("--platform", str(folder)))
