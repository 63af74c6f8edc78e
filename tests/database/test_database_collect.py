"""`sniper-onnx profile`: generate -> materialize -> measure -> store, resumable."""

import csv
import json
import sys
import types
from dataclasses import dataclass, field

import onnx
import pytest
from database_testkit import conv_net
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.database import Database

runner = CliRunner()
FAST = ["--warmup", "1", "--min-repeats", "3", "--max-time", "0.03", "--threads", "1"]


@dataclass
class FakeNetSpec:
    net_id: str
    seed: int
    family: str
    config: dict = field(default_factory=dict)


def _fake_generator(tmp_path, calls):
    """Stands in for sniper_generator with the contract's API (sample_specs, materialize)."""
    module = types.ModuleType("sniper_generator")
    module.__version__ = "9.9"
    module.NetSpec = FakeNetSpec

    def sample_specs(count, seed, family="cnn"):
        return [FakeNetSpec(f"net-{seed}-{k}", seed * 100 + k, family, {"channels": 4 * (k + 1)}) for k in range(count)]

    def materialize(spec, weights=True):
        calls.append((spec.net_id, weights))
        return onnx.load(str(conv_net(tmp_path / "scratch.onnx", channels=spec.config["channels"])))

    module.sample_specs, module.materialize = sample_specs, materialize
    return module


def test_generate_measures_stores_and_resumes_without_remaking(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "sniper_generator", _fake_generator(tmp_path, calls))
    db_path = tmp_path / "ncd.sqlite"
    args = ["profile", "--generate", "2", "--seed", "7", "--family", "cnn", "--db", str(db_path), "--json", *FAST]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["measured"], summary["imported"], summary["skipped"]) == (2, 2, 0)
    with Database(db_path) as db:
        networks = db.networks()
        assert len(networks) == 2 and all(n.features for n in networks)
        assert networks[0].source["spec"]["net_id"] == "net-7-0" and networks[0].source["generator_version"] == "9.9"
    calls.clear()
    again = json.loads(runner.invoke(app, args).stdout)
    assert (again["measured"], again["skipped"]) == (0, 2) and calls == []  # nothing re-made
    bigger = json.loads(runner.invoke(app, [*args[:2], "3", *args[3:]]).stdout)
    assert (bigger["measured"], bigger["skipped"]) == (1, 2)


def test_import_remakes_a_generated_net_from_its_source(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "sniper_generator", _fake_generator(tmp_path, calls))
    out = tmp_path / "r.jsonl"
    assert runner.invoke(app, ["profile", "--generate", "1", "--out", str(out), *FAST]).exit_code == 0
    calls.clear()  # the scratch file is gone: import must re-make a weightless skeleton
    result = runner.invoke(app, ["db", "import", str(out), "--db", str(tmp_path / "ncd.sqlite"), "--json"])
    assert json.loads(result.stdout)["files"][0]["networks_without_features"] == []
    assert calls == [("net-0-0", False)]


def test_profile_files_into_a_database(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for k in range(2):
        conv_net(folder / f"c{k}.onnx", channels=4 + 4 * k)
    db_path = tmp_path / "ncd.sqlite"
    result = runner.invoke(app, ["profile", str(folder), "--db", str(db_path), "--json", *FAST])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 2
    assert (tmp_path / "ncd.sqlite.results.jsonl").exists()  # the JSONL is kept next to the database
    with Database(db_path) as db:
        assert db.stats().measurements == 2


def test_passes_are_separate_measurements_and_the_export_keeps_their_median(tmp_path):
    conv_net(tmp_path / "m.onnx")
    db_path = tmp_path / "ncd.sqlite"
    result = runner.invoke(app, ["profile", str(tmp_path / "m.onnx"), "--db", str(db_path), "--passes", "3", "--json", *FAST])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["imported"] == 3
    with Database(db_path) as db:
        minima = sorted(float(v) for v in next(iter(db.latency_rows(statistic="min")))["latencies"].split(","))
    exported = tmp_path / "train.csv"
    assert runner.invoke(app, ["db", "export", "--db", str(db_path), "-o", str(exported), "--statistic", "min"]).exit_code == 0
    row = next(csv.DictReader(exported.open()))
    assert len(minima) == 3 and float(row["latency_s"]) == minima[1] and row["measurements"] == "3"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["profile"], "nothing to measure"),
        (["profile", "{tmp}/missing.onnx"], "no such model file"),
        (["profile", "{tmp}/empty"], "empty: a folder with no .onnx file in it"),
        (["profile", "{tmp}/m.onnx", "--opt-level", "max"], "--opt-level"),
        (["profile", "{tmp}/m.onnx", "--provider", "NopeExecutionProvider", "--out", "{tmp}/r.jsonl"], "not available"),
        (["profile", "--generate", "-1"], "--generate"),
        (["profile", "{tmp}/m.onnx", "--passes", "0"], "--passes"),
        (["profile", "{tmp}/m.onnx", "--passes", "2", "--fleet", "{tmp}/fleet.yaml", "--db", "{tmp}/d.sqlite"], "--passes 2 with --fleet"),
    ],
)
def test_profile_bad_input_is_one_line(tmp_path, argv, message):
    conv_net(tmp_path / "m.onnx")
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in argv])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_refused_database_leaves_no_results_file_behind(tmp_path):
    conv_net(tmp_path / "m.onnx")
    (tmp_path / "notes.txt").write_text("hello")
    result = runner.invoke(app, ["profile", str(tmp_path / "m.onnx"), "--db", str(tmp_path / "notes.txt")])
    assert result.exit_code == 2 and "not a usable sniper-onnx database" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "notes.txt"]


def test_real_generator_end_to_end(tmp_path):
    result = runner.invoke(app, ["profile", "--generate", "2", "--seed", "1", "--max-macs", "5e6", "--db", str(tmp_path / "ncd.sqlite"), "--json", *FAST])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["measured"] + summary["failed"] == 2 and summary["imported"] == 2


@pytest.mark.parametrize("argv", [["profile", "--threads", "abc"], ["db", "import", "--bogus"]])
def test_usage_errors_are_exit_2_not_internal_errors(argv):
    result = runner.invoke(app, argv)
    assert result.exit_code == 2 and "internal error" not in result.output


def test_a_net_that_cannot_be_built_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    calls = []
    fake = _fake_generator(tmp_path, calls)
    good = fake.materialize

    def flaky(spec, weights=True):
        if spec.net_id.endswith("-0"):
            raise ValueError("no such block")
        return good(spec, weights)

    fake.materialize = flaky
    monkeypatch.setitem(sys.modules, "sniper_generator", fake)
    result = runner.invoke(app, ["profile", "--generate", "2", "--out", str(tmp_path / "r.jsonl"), "--json", *FAST])
    assert result.exit_code == 1, result.output  # one net failed; the other was measured
    summary = json.loads(result.stdout)
    assert (summary["measured"], summary["failed"]) == (1, 1) and "could not build" in summary["failures"][0]


def test_a_flagged_model_is_named_and_left_out_of_exports(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["wide"], to=TensorProto.FLOAT), helper.make_node("Relu", ["wide"], ["y"])],
        "half", [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "half.onnx"))
    db_path = tmp_path / "ncd.sqlite"
    profiled = runner.invoke(app, ["profile", str(tmp_path / "half.onnx"), "--db", str(db_path), *FAST])
    assert profiled.exit_code == 0, profiled.output
    assert "flagged precision_mismatch: half; the model's precision" in profiled.stderr
    exported = runner.invoke(app, ["db", "export", "--db", str(db_path), "-o", str(tmp_path / "t.csv")])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.startswith("0 rows")
    assert "measurements left out by their flags: 1 precision_mismatch" in exported.stderr
    with Database(db_path) as db:  # kept: nothing measured is lost
        assert db.flagged_counts(["precision_mismatch"]) == {"precision_mismatch": 1}
    for command in (["train", "--db", str(db_path), "-o", str(tmp_path / "p.onnx")], ["evaluate", "--db", str(db_path)]):
        refused = runner.invoke(app, command)
        assert refused.exit_code != 0 and "Traceback" not in refused.output
        assert f"{db_path}: no usable measurement: 1 measurement(s) flagged precision_mismatch left out" in refused.stderr


def test_retry_busy_measures_a_busy_model_again_and_the_export_takes_the_quiet_record(tmp_path):
    conv_net(tmp_path / "m.onnx")
    out, db_path = tmp_path / "r.jsonl", tmp_path / "ncd.sqlite"
    assert runner.invoke(app, ["profile", str(tmp_path / "m.onnx"), "--out", str(out), *FAST]).exit_code == 0
    record = json.loads(out.read_text())
    record["flags"].append("machine_busy")
    out.write_text(json.dumps(record) + "\n")
    assert runner.invoke(app, ["db", "import", str(out), "--db", str(db_path)]).exit_code == 0
    again = runner.invoke(app, ["profile", str(tmp_path / "m.onnx"), "--out", str(out), "--db", str(db_path), "--retry-busy", *FAST])
    assert again.exit_code == 0 and again.stdout.startswith("1 measured"), again.output
    assert len(out.read_text().splitlines()) == 2
    with Database(db_path) as db:  # both kept: nothing measured is lost
        assert db.flagged_counts(["machine_busy"]) == {"machine_busy": 1}
    exported = runner.invoke(app, ["db", "export", "--db", str(db_path), "-o", str(tmp_path / "t.csv"), "--exclude-flag", "machine_busy"])
    assert exported.exit_code == 0 and exported.stdout.startswith("1 rows"), exported.output
    assert "left out by their flags: 1 machine_busy" in exported.stderr


def test_every_model_failing_exits_1_and_a_rerun_says_why_it_skipped_them(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "newer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 99  # newer than any onnxruntime reads
    onnx.save(model, str(tmp_path / "newer.onnx"))
    conv_net(tmp_path / "good.onnx")
    out = str(tmp_path / "r.jsonl")
    first = runner.invoke(app, ["profile", str(tmp_path / "newer.onnx"), "--out", out, *FAST])
    assert first.exit_code == 1 and "failed: newer" in first.stderr
    again = runner.invoke(app, ["profile", str(tmp_path / "newer.onnx"), "--out", out, *FAST])
    assert again.exit_code == 1 and "skipped 1 that failed before (in an earlier run, or an earlier pass of this one); --retry-failed" in again.stderr
    mixed = runner.invoke(app, ["profile", str(tmp_path / "newer.onnx"), str(tmp_path / "good.onnx"), "--out", out, *FAST])
    assert mixed.exit_code == 0, mixed.output  # something was measured: partial failures are reported, not fatal


def test_a_zoo_model_asked_for_at_a_size_it_refuses_is_refused_before_any_run(tmp_path):
    out = tmp_path / "r.jsonl"
    refused = runner.invoke(app, ["profile", "--zoo-model", "vgg16", "--resolution", "100", "--out", str(out), *FAST])
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "vgg16: resolution 100 is refused" in refused.stderr and "nearest: --resolution 224" in refused.stderr
    assert not out.exists()  # no failed record that a resumed run would skip as done


def test_records_caught_up_from_the_results_file_count_as_stored(tmp_path):
    """A first run without --db, then the same with --db: the measured record is copied in and the
    summary says so (it said 0 stored while the database held it)."""
    model, out = conv_net(tmp_path / "net.onnx"), tmp_path / "r.jsonl"
    first = runner.invoke(app, ["profile", str(model), "--out", str(out), "--json", *FAST])
    assert first.exit_code == 0, first.output
    db = tmp_path / "ncd.sqlite"
    second = runner.invoke(app, ["profile", str(model), "--out", str(out), "--db", str(db), "--json", *FAST])
    assert second.exit_code == 0, second.output
    summary = json.loads(second.stdout)
    assert (summary["measured"], summary["skipped"], summary["imported"]) == (0, 1, 1)
    with Database(db) as store:
        assert len(store.measurements()) == 1


def test_a_rerun_that_skips_everything_says_why_and_what_measures_again(tmp_path):
    model, out = conv_net(tmp_path / "net.onnx"), tmp_path / "r.jsonl"
    assert runner.invoke(app, ["profile", str(model), "--out", str(out), *FAST]).exit_code == 0
    slower_rule = [*FAST[:4], "--max-time", "0.05", "--threads", "1"]  # only the stopping rule differs
    rerun = runner.invoke(app, ["profile", str(model), "--out", str(out), *slower_rule])
    assert rerun.exit_code == 0 and rerun.stdout.startswith("0 measured, 0 failed, 1 skipped"), rerun.output
    assert "skipped 1 measured in an earlier run on this device configuration (the stopping rule" in rerun.stderr


def test_models_timed_on_a_busy_machine_get_a_warning_without_max_busy(tmp_path, monkeypatch):
    """Another job held a core: a tester's t2 labels came out 2-5x slow and were trained on in silence."""
    from sniper_profiler import runner as profiler_runner

    real = profiler_runner.Profiler.profile

    def busy(self, job, pass_index=1):
        record = real(self, job, pass_index)
        record["stats"]["others_busy_during"] = 0.45
        return record

    monkeypatch.setattr(profiler_runner.Profiler, "profile", busy)
    model = conv_net(tmp_path / "net.onnx")
    result = runner.invoke(app, ["profile", str(model), "--out", str(tmp_path / "r.jsonl"), *FAST])
    assert result.exit_code == 0, result.output
    assert ("sniper-onnx: warning: 1 of 1 models were timed while other work used 45 % of the CPUs "
            "(stats.others_busy_during): their times may be slow") in result.stderr


def _relu_model(path) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_identical_models_of_one_run_are_not_said_to_be_measured_in_an_earlier_run(tmp_path):
    """Two byte-identical files on a fresh database: the second was reported as "measured in an
    earlier run", though there was none."""
    folder = tmp_path / "models"
    folder.mkdir()
    _relu_model(folder / "up_nearest.onnx")
    (folder / "up_upsample_mod.onnx").write_bytes((folder / "up_nearest.onnx").read_bytes())
    db_path = tmp_path / "new.sqlite"
    result = runner.invoke(app, ["profile", str(folder), "--db", str(db_path), *FAST])
    assert result.exit_code == 0 and result.stdout.startswith("1 measured, 0 failed, 1 skipped"), result.output
    assert "skipped 1 identical to another model of this run" in result.stderr
    assert "up_upsample_mod.onnx (as up_nearest.onnx)" in result.stderr
    assert "earlier run" not in result.stderr
    rerun = runner.invoke(app, ["profile", str(folder), "--db", str(db_path), "--json", *FAST])
    assert rerun.exit_code == 0, rerun.output
    summary = json.loads(rerun.stdout)  # now both were measured before: no duplicate of this run
    assert (summary["skipped"], summary["skipped_duplicates"]) == (2, [])


def test_an_out_that_is_no_results_file_is_refused_before_anything_is_measured(tmp_path):
    """`--out` named the model being measured: the record was appended to it, and the model was lost."""
    model = conv_net(tmp_path / "m.onnx")
    before = model.read_bytes()
    db_path = tmp_path / "ncd.sqlite"
    for argv in (["--out", str(model)], ["--out", str(model), "--db", str(db_path)]):
        result = runner.invoke(app, ["profile", str(model), *argv, *FAST])
        assert result.exit_code == 2, result.output
        assert "is not a sniper-profiler results file" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert model.read_bytes() == before and not db_path.exists()


def test_an_input_shape_applies_to_the_models_with_that_input_and_a_name_none_has_is_refused(tmp_path):
    dynamic = tmp_path / "dynamic.onnx"
    model = onnx.load(str(conv_net(tmp_path / "scratch.onnx", input_name="pixels")))
    for position, name in ((2, "h"), (3, "w")):
        model.graph.input[0].type.tensor_type.shape.dim[position].dim_param = name
    onnx.save(model, str(dynamic))
    fixed = conv_net(tmp_path / "fixed.onnx")
    out = tmp_path / "r.jsonl"
    result = runner.invoke(app, ["profile", str(dynamic), str(fixed), "--out", str(out), "--json",
                                 "--input-shape", "pixels=1x3x8x8", *FAST])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["measured"] == 2 and json.loads(result.stdout)["failed"] == 0
    refused = runner.invoke(app, ["profile", str(fixed), "--out", str(tmp_path / "s.jsonl"), "--input-shape", "pixel=1x3x8x8", *FAST])
    assert refused.exit_code == 2 and not (tmp_path / "s.jsonl").exists()
    assert refused.stderr.strip() == ("sniper-onnx: error: --input-shape pixel: no model of this run has an input of "
                                      "that name (their inputs: x)")


def test_an_input_shape_no_generated_net_had_is_said_after_the_run(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sniper_generator", _fake_generator(tmp_path, []))
    result = runner.invoke(app, ["profile", "--generate", "1", "--family", "cnn", "--out", str(tmp_path / "r.jsonl"),
                                 "--input-shape", "ids=1x8", *FAST])
    assert result.exit_code == 0, result.output  # the net lacks it: measured as it is
    assert ("sniper-onnx: warning: --input-shape ids: no model of this run has an input of that name, so it sized "
            "nothing (their inputs: x)") in result.stderr


def test_an_out_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, monkeypatch):
    import errno

    from sniper_profiler import runner as profiler_runner

    def refused(out):
        raise PermissionError(errno.EACCES, "Permission denied", str(out))

    monkeypatch.setattr(profiler_runner, "_lock_results", refused)
    result = runner.invoke(app, ["profile", str(conv_net(tmp_path / "m.onnx")), "--out", str(tmp_path / "r.jsonl"), *FAST])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"sniper-onnx: error: --out {tmp_path / 'r.jsonl'}: Permission denied; check the "
                                     "path exists and is writable")


def test_sigterm_stops_a_profile_run_as_ctrl_c_does(tmp_path, monkeypatch):
    import os
    import signal
    import time

    import sniper_onnx.database.collect as collect_module

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises at once; never reached

    def unhandled(signum, frame):  # without the command's own handler: a failure, not the test run killed
        raise RuntimeError("SIGTERM not handled by the command")

    monkeypatch.setattr(collect_module, "collect", terminated)
    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        result = runner.invoke(app, ["profile", str(conv_net(tmp_path / "m.onnx")), "--out", str(tmp_path / "r.jsonl"), *FAST])
        assert signal.getsignal(signal.SIGTERM) == unhandled  # restored after the command
    finally:
        signal.signal(signal.SIGTERM, before)
    assert result.exit_code == 130
    assert result.stderr.strip().startswith("sniper-onnx: interrupted; the models measured so far are kept in")
