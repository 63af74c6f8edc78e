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


def test_no_option_help_holds_square_brackets_that_rich_would_eat():
    """Rich reads "[default: x]" in a help string as markup and prints nothing of it."""
    import re

    def commands(group):
        for command in group.commands.values():
            yield command
            if hasattr(command, "commands"):
                yield from commands(command)

    for command in commands(typer_main_group()):
        for param in command.params:
            assert not re.search(r"\[[a-z/]", getattr(param, "help", None) or ""), (command.name, param.name, param.help)


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


def test_a_path_that_cannot_be_written_is_a_user_error_not_an_internal_one(monkeypatch, tmp_path):
    import sniper_onnx.analysis as analysis

    def unwritable(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "out.csv"))

    monkeypatch.setattr(analysis, "analyze", unwritable)
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "internal error" not in result.output
    assert result.stderr.strip() == f"sniper-onnx: error: {tmp_path / 'out.csv'}: Permission denied; check the path exists and is writable"


def _sniper(*args, cwd):
    entry = "import sys; from sniper_onnx.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", entry, *args], capture_output=True, text=True, cwd=cwd)


def test_an_error_inside_a_progress_bar_is_still_exactly_one_line(tmp_path):
    """A real process with pipes (not CliRunner): rich used to leave a blank line before the error."""
    for args in (["simulate", "--platform", "nope.json"], ["generate", "--count", "0", "--out", "g"]):
        result = _sniper(*args, cwd=tmp_path)
        assert result.returncode == 2 and result.stdout == "", args
        assert result.stderr.startswith("sniper-onnx: error:") and result.stderr.count("\n") == 1, (args, result.stderr)


def test_piped_stdout_holds_the_summary_and_no_bar_frames(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(tmp_path / "m.onnx"))
    result = _sniper("profile", "m.onnx", "--out", "r.jsonl", "--threads", "1", "--max-time", "0.05", "--min-time", "0",
                     "--warmup", "1", "--min-repeats", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("1 measured, 0 failed"), result.stdout


def _ctrl_c(*args, **kwargs):
    raise KeyboardInterrupt


def test_ctrl_c_says_that_running_a_resumable_command_again_resumes(monkeypatch, tmp_path):
    import sniper_onnx.database.collect as collect

    monkeypatch.setattr(collect, "collect", _ctrl_c)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    result = CliRunner().invoke(app, ["profile", str(model), "--db", str(tmp_path / "ncd.sqlite")])
    assert result.exit_code == 130
    assert result.output.strip() == (f"sniper-onnx: interrupted; the models measured so far are kept in "
                                      f"{tmp_path / 'ncd.sqlite'}.results.jsonl and {tmp_path / 'ncd.sqlite'}; "
                                      "running the same command again resumes (it skips them)")


def test_ctrl_c_in_db_import_says_a_rerun_imports_the_rest(monkeypatch, tmp_path):
    import sniper_onnx.database as database
    import sniper_onnx.database.importer as importer

    monkeypatch.setattr(importer, "read_results", lambda path: None)  # db import reads each file before it opens the db
    monkeypatch.setattr(database, "import_results", _ctrl_c)
    results = tmp_path / "r.jsonl"
    results.write_text("")
    result = CliRunner().invoke(app, ["db", "import", str(results), "--db", str(tmp_path / "ncd.sqlite")])
    assert result.exit_code == 130
    assert "interrupted; the records imported so far are kept; running the same command again imports the rest" \
        in result.output


def test_ctrl_c_in_a_command_that_does_not_resume_promises_nothing(monkeypatch, tmp_path):
    import sniper_onnx.analysis as analysis
    import sniper_onnx.database.collect as collect

    monkeypatch.setattr(collect, "collect", _ctrl_c)
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert CliRunner().invoke(app, ["profile", str(model)]).exit_code == 130  # leaves its hint behind
    monkeypatch.setattr(analysis, "analyze", _ctrl_c)
    result = CliRunner().invoke(app, ["analyze", str(model)])
    assert result.exit_code == 130
    assert result.output.strip() == "sniper-onnx: interrupted"


def test_a_command_line_the_parser_refuses_is_one_line_naming_the_help():
    cases = {
        ("simulate", "--idle-factor", "abc"): "'abc' is not a valid float; see 'sniper-onnx simulate -h'",
        ("analyz", "m.onnx"): "No such command 'analyz'. Did you mean 'analyze'?; see 'sniper-onnx -h'",
        ("analyze", "a.onnx", "b.onnx"): "unexpected extra argument (b.onnx); see 'sniper-onnx analyze -h'",
        ("predict", "--bogus"): "No such option '--bogus'; see 'sniper-onnx predict -h'",
        ("simulate", "--rates"): "'--rates' requires an argument; see 'sniper-onnx simulate -h'",
    }
    for args, expected in cases.items():
        result = runner.invoke(app, list(args), prog_name="sniper-onnx")
        assert result.exit_code == 2, args
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sniper-onnx: error: "), (args, result.output)
        assert expected in lines[0], (args, lines[0])


def _plumbing_only_model(path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="id")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    return path


def test_a_model_without_layers_is_one_warning_line_in_analyze_and_predict(tmp_path):
    model = _plumbing_only_model(tmp_path / "m.onnx")
    analysed = runner.invoke(app, ["analyze", str(model)])
    assert analysed.exit_code == 0 and analysed.output.count("warning: no layer does work: the graph's 1 node") == 1
    predicted = runner.invoke(app, ["predict", str(model), "-d", "pixel3", "--json"])
    assert predicted.exit_code == 0, predicted.output
    warned = [line for line in predicted.stderr.splitlines() if "no layer does work" in line]
    assert len(warned) == 1 and warned[0].startswith("sniper-onnx: warning: "), predicted.stderr


def test_profile_refuses_a_shape_without_an_input_name_in_one_line(tmp_path):
    model = _plumbing_only_model(tmp_path / "m.onnx")
    result = runner.invoke(app, ["profile", str(model), "--input-shape", "1x8", "--out", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 2 and not (tmp_path / "r.jsonl").exists()
    assert result.stderr == ("sniper-onnx: error: --input-shape 1x8: write NAME=1x8, naming the input it sizes; the "
                             "models measured may have other inputs, so the profiler cannot guess which\n")


def test_every_positional_argument_is_described_in_its_help():
    """typer 0.24 with click 8.5 dropped every argument's help: `analyze -h` showed `MODEL PATH` only."""
    import click

    def commands(group, path=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from commands(command, path + (name,))
            else:
                yield path + (name,), command

    for path, command in commands(typer_main_group()):
        for param in command.params:
            if isinstance(param, click.Argument):
                help_text = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "200"}).output
                assert param.help and " ".join(param.help.split()[:4]) in " ".join(help_text.split()), (path, param.name)


def test_every_command_missing_its_argument_says_so_in_one_line():
    """`analyze` with no MODEL printed its help on stdout, exit 2 and nothing on stderr, where every
    other command names the missing argument on stderr."""
    cases = {("analyze",): "Missing argument 'MODEL'", ("import-latencies",): "Missing argument 'TABLE'",
             ("zoo", "export"): "Missing argument 'NAME'"}
    for args, expected in cases.items():
        result = runner.invoke(app, list(args), prog_name="sniper-onnx")
        assert result.exit_code == 2 and result.stdout == "", (args, result.output)
        assert result.stderr.strip() == f"sniper-onnx: error: {expected}; see 'sniper-onnx {' '.join(args)} -h'"


def test_generate_refuses_bad_jobs_before_it_makes_the_out_folder(tmp_path):
    out = tmp_path / "gj"
    result = runner.invoke(app, ["generate", "--count", "2", "-j", "0", "--out", str(out)])
    assert result.exit_code == 2 and result.stderr.strip() == "sniper-onnx: error: --jobs 0: must be at least 1"
    assert not out.exists()
