"""Shared helpers of the `simulate` CLI tests."""

from typer.testing import CliRunner

from sniper_onnx.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["simulate", *args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sniper-onnx: error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
