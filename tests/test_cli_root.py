import subprocess
import sys

from typer.testing import CliRunner

from sniper_onnx.cli import app

runner = CliRunner()


def test_help_short_and_long():
    for flag in ("-h", "--help"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("sniper-onnx ")


def test_cli_import_is_light():
    code = "import sys, sniper_onnx.cli; bad=[m for m in ('torch','sklearn') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
