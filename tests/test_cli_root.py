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


def test_every_command_help_exits_zero():
    """typer raises its own Exit after printing help: the error wrapper must let it through."""
    group = typer_main_group()
    for name, command in group.commands.items():
        result = runner.invoke(app, [name, "-h"])
        assert result.exit_code == 0, (name, result.output)
        if hasattr(command, "commands"):
            for sub in command.commands:
                result = runner.invoke(app, [name, sub, "-h"])
                assert result.exit_code == 0, (name, sub, result.output)


def typer_main_group():
    import typer.main

    return typer.main.get_command(app)


def test_a_reader_that_goes_away_ends_the_command_quietly(monkeypatch, tmp_path):
    """`sniper-onnx ... | head`: the closed pipe is the reader's choice, not an internal error."""
    import sniper_onnx.analysis as analysis

    def closed_pipe(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(analysis, "analyze", closed_pipe)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    result = CliRunner().invoke(app, ["analyze", str(model)])
    assert result.exit_code == 141
    assert "internal error" not in result.output
