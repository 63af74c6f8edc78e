"""`sniper-onnx simulate` driven through typer's runner: outputs, files, and one-line errors."""

import json
import subprocess
import sys

import pytest

from scheduling_testkit import assert_one_line_error, run

SMALL = ["--seeds", "1", "--duration", "8"]



def test_json_sweep_is_one_object():
    result = run("--rates", "20,24", "--seeds", "2", "--duration", "8", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["policies"] == ["polling", "edf", "mvsp-free", "sniper", "mct-oracle"]
    assert data["rates"] == [20.0, 24.0] and data["seeds"] == [0, 1]
    assert len(data["rows"]) == 10
    row = data["rows"][0]
    assert set(row["summary"]) >= {"tps", "awt", "p95_wait", "p99_wait", "deadline_miss_rate", "load_std"}
    assert len(row["runs"]) == 2 and len(row["runs"][0]["utilization"]) == 10
    assert data["platform"]["devices"] == {"AGX": 4, "TX2": 3, "NX": 3}


def test_table_and_plot(tmp_path):
    png = tmp_path / "fig6.png"
    result = run("--rates", "18,24", *SMALL, "--policies", "polling,sniper", "--plot", str(png))
    assert result.exit_code == 0, result.output
    assert "polling" in result.output and "sniper" in result.output and "AWT" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_per_device_utilization():
    result = run("--rates", "20", *SMALL, "--policies", "polling", "--per-device")
    assert result.exit_code == 0, result.output
    assert "utilization per device" in result.output and "TX2-2" in result.output


def test_nodes_override():
    result = run("--rates", "10", *SMALL, "--policies", "jsq", "--nodes", "AGX=1,TX2=0,NX=1", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["rows"][0]["runs"][0]["utilization"]) == 2


def test_trace_replay(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival,model\n" + "".join(f"{i * 0.05},ResNet50\n" for i in range(40)))
    result = run("--trace", str(trace), "--policies", "polling,mct-oracle", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [row["rate"] for row in data["rows"]] == [None, None]
    assert data["rows"][0]["runs"][0]["tasks"] == 40


@pytest.mark.parametrize("option", [["--seeds", "3"], ["--rates", "24"], ["--duration", "60"]])
def test_trace_replay_refuses_sweep_options_it_would_ignore(tmp_path, option):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival,model\n0,ResNet50\n")
    assert_one_line_error(run("--trace", str(trace), *option), option[0], "--trace")


@pytest.mark.parametrize("column, row", [("arrival", "1e308,ResNet50"), ("deadline", "0,ResNet50,1e308")])
def test_trace_times_beyond_float_precision_are_refused(tmp_path, column, row):
    # 1e308 s used to run, round the whole run to no time and report TPS ~2e12
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival,model,deadline\n0,ResNet50,\n" + row + ("\n" if column == "deadline" else ",\n"))
    assert_one_line_error(run("--trace", str(trace)), "trace.csv:3", column, "relative")


def test_a_seed_without_tasks_is_an_empty_run_not_an_abort():
    # at 0.5 tasks/s over 2 s some of seeds 0..5 draw no task; the sweep still reports every rate
    from sniper_onnx.scheduling import load_platform, poisson_tasks

    empty_seeds = [s for s in range(6) if not poisson_tasks(load_platform("paper"), 0.5, 2, s)]
    assert empty_seeds, "no seed drew an empty run; pick another rate"
    result = run("--rates", "0.5,20", "--duration", "2", "--seeds", "6", "--policies", "sniper,mvsp", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    low = [row for row in data["rows"] if row["rate"] == 0.5]
    for row in low:
        assert row["empty_runs"] == len(empty_seeds)
        for seed in empty_seeds:
            run_ = row["runs"][seed]
            assert run_["tasks"] == 0 and run_["tps"] is None and run_["awt"] is None
        if row["empty_runs"] < row["seeds"]:
            assert row["summary"]["awt"]["median"] is not None  # medians over the seeds that had tasks
    table = run("--rates", "0.5,20", "--duration", "2", "--seeds", "6", "--policies", "sniper")
    assert table.exit_code == 0, table.output
    assert "drew no task" in table.output and "T=0.5" in table.output
    per_device = run("--rates", "0.1", "--duration", "1", "--seeds", "2", "--policies", "sniper", "--per-device")
    assert per_device.exit_code == 0, per_device.output  # every seed empty: '-' cells, no crash


def test_yaml_platform_file(tmp_path):
    platform = tmp_path / "lab.yaml"
    platform.write_text(
        "name: lab\ndevices: {big: 1, small: 2}\n"
        "true_times: {net: {big: 0.1, small: 0.3}}\n"
        "predicted_times: {net: {big: 0.12, small: 0.25}}\n"
    )
    result = run("--platform", str(platform), "--rates", "5", *SMALL, "--policies", "sniper", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["platform"]["name"] == "lab"


def test_idle_factor_option_reaches_sniper_but_not_sniper_idle():
    # On the paper platform no device is 4x slower than another for any model, so the default
    # factor 4 never overrides idle-first and sniper == sniper-idle; factor 1 (least completion
    # time) does change sniper's schedule, and sniper-idle keeps its idle-first rule.
    base = ["--rates", "20", "--seeds", "1", "--duration", "20", "--policies", "sniper,sniper-idle", "--json"]

    def awt(*extra):
        result = run(*base, *extra)
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        return data["idle_factor"], {row["policy"]: row["runs"][0]["awt"] for row in data["rows"]}

    factor, default = awt()
    assert factor == 4.0 and default["sniper"] == default["sniper-idle"]
    factor, one = awt("--idle-factor", "1")
    assert factor == 1.0 and one["sniper"] != one["sniper-idle"] and one["sniper-idle"] == default["sniper-idle"]


def test_json_records_the_idle_factor_each_policy_used():
    # The default (4) is written as 4.0, not null; inf as the string "inf" (JSON has no infinity,
    # and null would read as "unset"); sniper-idle is always inf whatever --idle-factor says, so
    # each row carries its own factor and policies without one (edf) carry null.
    base = ["--rates", "20", "--seeds", "1", "--duration", "5", "--policies", "edf,sniper,sniper-idle", "--json"]

    def factors(*extra):
        result = run(*base, *extra)
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        return data["idle_factor"], data["idle_factors"], {row["policy"]: row["idle_factor"] for row in data["rows"]}

    assert factors() == (4.0, {"sniper": 4.0, "sniper-idle": "inf"},
                         {"edf": None, "sniper": 4.0, "sniper-idle": "inf"})
    assert factors("--idle-factor", "inf") == ("inf", {"sniper": "inf", "sniper-idle": "inf"},
                                               {"edf": None, "sniper": "inf", "sniper-idle": "inf"})
    assert factors("--idle-factor", "2.5")[2]["sniper"] == 2.5


@pytest.mark.parametrize("policies", ["edf", "sniper-idle", "edf,sniper-idle"])
def test_idle_factor_no_policy_uses_is_one_warning(policies):
    result = run("--rates", "20", "--seeds", "1", "--duration", "5", "--policies", policies,
                 "--idle-factor", "2", "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [f"sniper-onnx: warning: --idle-factor 2 has no effect on {policies.replace(',', ', ')}: "
                        "only sniper and sniper-static take it (sniper-idle is always inf)"]
    json.loads(result.stdout)  # the warning stays off stdout


def test_idle_factor_a_policy_uses_gives_no_warning():
    result = run("--rates", "20", "--seeds", "1", "--duration", "5", "--policies", "edf,sniper-static",
                 "--idle-factor", "2", "--json")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_list_policies():
    result = run("--list-policies")
    assert result.exit_code == 0
    for name in ("polling", "edf", "mvsp-free", "mvsp", "sniper", "sniper-idle", "mct-oracle", "mct-pred", "jsq"):
        assert name in result.output


def test_help():
    result = run("-h")
    assert result.exit_code == 0, result.output
    assert "--platform" in result.output


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--platform", "nowhere.json"], ["nowhere.json", "paper"]),
        (["--rates", "fast"], ["--rates", "START:STOP"]),
        (["--rates", "0"], ["positive"]),
        (["--rates", "25:18"], ["STOP 18 is below START 25", "25:18", "18:25"]),
        (["--rates", "25:18:0.5"], ["STOP 18 is below START 25"]),
        (["--policies", "sniper,magic"], ["magic", "choose from"]),
        (["--nodes", "AGX"], ["TYPE=COUNT"]),
        (["--nodes", "GPU=3"], ["GPU"]),
        (["--seeds", "0"], ["--seeds"]),
        (["--duration", "-1"], ["duration"]),
        (["--predictor", "p.onnx"], ["--models"]),
        (["--trace", "missing.csv"], ["missing.csv"]),
        (["--idle-factor", "0.5"], ["--idle-factor", ">= 1"]),
        (["--idle-factor", "nan"], ["--idle-factor", ">= 1"]),
    ],
)
def test_bad_input_is_one_line(args, fragments):
    assert_one_line_error(run(*args), *fragments)


def test_bad_files_are_one_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert_one_line_error(run("--platform", str(broken)), "broken.json", "JSON")
    negative = tmp_path / "neg.json"
    negative.write_text(json.dumps({"devices": {"x": 1}, "true_times": {"m": {"x": -1}}}))
    assert_one_line_error(run("--platform", str(negative)), "neg.json", "positive")
    trace = tmp_path / "t.csv"
    trace.write_text("arrival,model\n0.1,AlexNet\n")
    assert_one_line_error(run("--trace", str(trace)), "t.csv:2", "AlexNet")
    trace.write_text("time,net\n0.1,VGG16\n")
    assert_one_line_error(run("--trace", str(trace)), "arrival")
    trace.write_text("arrival,model\n0.1,VGG16\n")
    assert_one_line_error(run("--trace", str(trace), "--plot", str(tmp_path / "x.png")), "--plot")


def test_import_stays_light():
    code = (
        "import sys, sniper_onnx.scheduling; "
        "print([m for m in ('torch', 'sklearn', 'matplotlib', 'onnxruntime') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--noise", "nan"], ["--noise nan"]),
        (["--noise", "inf"], ["--noise inf"]),
        (["--deadline-factor", "nan"], ["--deadline-factor nan"]),
        (["--deadline-factor", "inf"], ["--deadline-factor inf"]),
        (["--deadline-factor", "-5"], ["--deadline-factor -5"]),
        (["--seed", "-1"], ["--seed -1"]),
        (["--rates", "1e12"], ["expected tasks", "lower the rate"]),
        (["--rates", "18,1e12", "--duration", "100"], ["1e+12/s", "expected tasks"]),
        (["--duration", "inf"], ["--duration inf"]),
        (["--rates", "1:2:1e-8"], ["at most 1000"]),
        (["--plot", "out.unknownext"], ["--plot", ".unknownext", ".png"]),
        (["--plot", "no-such-folder/fig.png"], ["folder no-such-folder does not exist"]),
    ],
)
def test_numbers_and_outputs_a_run_cannot_use_are_refused_first(args, fragments):
    assert_one_line_error(run("--rates", "18", *SMALL, *args), *fragments)


@pytest.mark.parametrize("option", [["--noise", "nan"], ["--deadline-factor", "inf"], ["--deadline-factor", "-5"]])
def test_trace_replay_checks_noise_and_deadline_factor(tmp_path, option):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival,model\n0,ResNet50\n")
    assert_one_line_error(run("--trace", str(trace), *option), option[0])


def test_json_never_holds_nan():
    from sniper_onnx.scheduling.api import finite

    assert finite({"a": [float("nan"), 1.0], "b": float("inf")}) == {"a": [None, 1.0], "b": None}


def test_plot_without_suffix_is_written_as_png_and_named_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("--rates", "18", *SMALL, "--policies", "polling", "--plot", "fig6")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fig6.png").is_file()
    assert "plot written to fig6.png" in result.output


def test_the_documented_paper_trace_replays_on_the_paper_platform():
    # docs/scheduling.md's trace command; examples/trace.csv is the dispatch fleet's (other models)
    from pathlib import Path

    trace = Path(__file__).resolve().parents[2] / "examples" / "paper_trace.csv"
    result = run("--platform", "paper", "--trace", str(trace), "--json")
    assert result.exit_code == 0, result.output
    assert [row["runs"][0]["tasks"] for row in json.loads(result.output)["rows"]] == [30] * 5


def test_plot_into_an_existing_directory_is_refused(tmp_path, monkeypatch):
    # --plot figs (a directory) would otherwise be written as figs.png beside it
    monkeypatch.chdir(tmp_path)
    (tmp_path / "figs").mkdir()
    assert_one_line_error(run("--rates", "18", *SMALL, "--policies", "polling", "--plot", "figs"),
                          "--plot figs: is a directory", "figs/fig.png")
    assert not (tmp_path / "figs.png").exists()


def test_a_rate_or_policy_given_twice_is_one_row():
    result = run("--rates", "18,18", *SMALL, "--policies", "edf,edf", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["rates"] == [18.0] and data["policies"] == ["edf"]
    assert [row["seeds"] for row in data["rows"]] == [1]


@pytest.mark.parametrize(
    "name, text, fragments",
    [
        ("dup.yaml", "devices: {A: 1, A: 3}\ntrue_times: {m1: {A: 1}}\n", ["key 'A' appears twice"]),
        ("dup.json", '{"devices": {"A": 1, "A": 3}, "true_times": {"m1": {"A": 1}}}', ["key 'A' appears twice"]),
        ("syntax.yaml", "devices: {A: 1\ntrue_times: [\n", ["cannot parse", "line 2"]),
        ("mix.yaml", "devices: {A: 1}\ntrue_times: {m1: {A: 1}}\nmix: {m1: abc}\n", ["mix['m1'] is 'abc'"]),
        ("mixnull.yaml", "devices: {A: 1}\ntrue_times: {m1: {A: 1}}\nmix: {m1: null}\n", ["mix['m1'] is None"]),
    ],
)
def test_platform_file_mistakes_are_one_line(tmp_path, name, text, fragments):
    path = tmp_path / name
    path.write_text(text)
    assert_one_line_error(run("--platform", str(path), "--rates", "1", *SMALL), name, *fragments)


MS_PLATFORM = """name: msbox
devices: {T1: 2, T2: 1}
true_times:
  small: {T1: 0.0022, T2: 0.0013}
  large: {T1: 0.0032, T2: 0.0022}
"""


def test_a_millisecond_workload_reads_in_ms_while_json_keeps_seconds(tmp_path):
    # A first user's 1-3 ms models at 400-800 tasks/s: in seconds to 3 decimals AWT, p95 and p99
    # all read 0.000. The table now picks ms and shows significant digits; --json stays in seconds.
    platform = tmp_path / "ms.yaml"
    platform.write_text(MS_PLATFORM)
    args = ["--platform", str(platform), "--rates", "800", "--seeds", "2", "--duration", "4", "--policies", "edf"]
    table = run(*args)
    assert table.exit_code == 0, table.output
    assert "times in ms" in table.output and "times in seconds" not in table.output
    row = next(line for line in table.output.splitlines() if line.strip().startswith("edf"))
    awt, p95, p99 = row.split()[3:6]
    assert float(p99) > 1 and not awt.startswith("0.000") and float(awt.split("\u00b1")[0]) > 0
    summary = json.loads(run(*args, "--json").output)["rows"][0]["summary"]
    assert 0 < summary["awt"]["median"] < 0.01 and summary["p99_wait"]["median"] < 0.05  # seconds
    assert float(p99) == pytest.approx(1000 * summary["p99_wait"]["median"], rel=0.01)


@pytest.mark.parametrize("largest, unit", [(0.0, "\u00b5s"), (3e-7, "\u00b5s"), (2e-3, "ms"), (0.5, "ms"),
                                           (1.0, "s"), (800.0, "s"), (float("nan"), "\u00b5s")])
def test_the_time_unit_is_the_largest_the_largest_value_fills(largest, unit):
    from sniper_onnx.cli.simulate_cmd import time_unit

    assert time_unit([largest, 1e-9, float("nan")])[0] == unit


@pytest.mark.parametrize("median, low, high, seeds, size, text", [
    (0.000105, 0.0001, 0.00011, 2, 1e-3, "0.105\u00b10.005"),
    (0.004, 0.004, 0.004, 1, 1e-3, "4.00"),
    (219.57, 218.0, 220.7, 3, 1.0, "220\u00b11"),  # a large value keeps its integer digits
    (0.00312, 0.003, 0.0032, 3, 1.0, "0.00312\u00b10.00010"),  # beside it in seconds: not 0.003
    (0.0, 0.0, 0.002, 2, 1e-3, "0\u00b11.00"),  # no wait at all: 0, as documented; the range keeps its digits
    (float("nan"), float("nan"), float("nan"), 2, 1.0, "-"),
])
def test_time_cells_keep_three_significant_digits(median, low, high, seeds, size, text):
    from sniper_onnx.cli.simulate_cmd import time_cell
    from sniper_onnx.scheduling.experiment import Spread

    assert time_cell(Spread(median, low, high), size, seeds) == text
