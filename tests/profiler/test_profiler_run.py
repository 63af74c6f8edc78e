"""The device command end to end: child processes, failures, resume, and a SIGKILL mid-run."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from profiler_testkit import FAST, PROFILER_BIN, child_env, tiny_mlp

from sniper_profiler import runner
from sniper_profiler.__main__ import main
from sniper_profiler.config import ProfileConfig
from sniper_profiler.records import append_record, read_records

FAST_CONFIG = ProfileConfig(threads=1, warmup=1, min_repeats=3, max_time_s=0.05)


def _broken_and_good_models(tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "a_broken.onnx").write_bytes(b"not an onnx model")
    tiny_mlp(model_dir / "b_good.onnx")
    return model_dir


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_measures_each_model_once_and_resumes(model_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", *FAST]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["measured"], first["failed"], first["skipped"]) == (3, 0, 0)
    records = _lines(out)
    assert len({r["key"] for r in records}) == 3
    record = records[0]
    assert record["status"] == "ok" and record["device"]["device_id"] == first["device_id"]
    assert record["model"]["sha256"] and record["config"]["threads"] == 1 and record["stats"]["count"] >= 3
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 3
    assert len(_lines(out)) == 3


def test_another_configuration_is_measured_again(model_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    model = str(model_dir / "m0.onnx")
    main(["run", model, "--out", str(out), "-q", *FAST])
    main(["run", model, "--out", str(out), "-q", *FAST, "--opt-level", "disabled"])
    records = _lines(out)
    assert len(records) == 2 and records[0]["device"]["device_id"] != records[1]["device"]["device_id"]
    assert records[1]["device"]["spec"]["graph_optimization"] == "disabled"


def test_a_record_timed_in_contended_sessions_is_measured_again_and_kept(model_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    model = str(model_dir / "m0.onnx")
    two_threads = [*FAST, "--threads", "2"]  # the last --threads wins
    assert main(["run", model, "--out", str(out), "--json", "-q", *two_threads]) == 0
    capsys.readouterr()
    old = _lines(out)[0]
    old["stats"]["sessions"] = 3  # as the earlier protocol timed a 2-thread configuration
    out.write_text(json.dumps(old) + "\n")
    assert main(["run", model, "--out", str(out), "--json", "-q", *two_threads]) == 0
    assert json.loads(capsys.readouterr().out)["measured"] == 1
    records = _lines(out)
    assert len(records) == 2 and records[0] == old and records[1]["stats"]["sessions"] == 1
    assert main(["run", model, "--out", str(out), "--json", "-q", *two_threads]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 1


def test_passes_measure_every_model_again_and_a_finished_run_takes_more(model_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", *FAST]) == 0
    capsys.readouterr()
    one_pass_keys = {r["key"] for r in _lines(out)}
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", "--passes", "3", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["measured"], summary["skipped"]) == (6, 3)  # pass 1 was done before
    records = _lines(out)
    assert [r["pass"] for r in records[3:]] == [2, 2, 2, 3, 3, 3]  # one whole pass after another
    by_model = {}
    for record in records:
        by_model.setdefault(record["model"]["sha256"], []).append(record["key"])
    assert all(len(set(keys)) == 3 for keys in by_model.values()) and len(by_model) == 3
    assert one_pass_keys <= {r["key"] for r in records}  # pass 1 keeps the plain key
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", "--passes", "3", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 9


def test_a_model_failing_its_first_pass_is_not_measured_in_later_ones(tmp_path, capsys):
    model_dir, out = _broken_and_good_models(tmp_path), tmp_path / "r.jsonl"
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", "--passes", "2", *FAST]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["measured"], summary["failed"], summary["skipped"]) == (2, 1, 1)


def test_broken_model_is_a_failure_record_and_the_run_goes_on(tmp_path, capsys):
    model_dir, out = _broken_and_good_models(tmp_path), tmp_path / "r.jsonl"
    # 1: a model failed, though the run went on and the good one was measured and kept
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", *FAST]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert (summary["measured"], summary["failed"]) == (1, 1)
    failure = [r for r in _lines(out) if r["status"] == "failed"][0]
    assert failure["failure"]["kind"] == "error" and "a_broken.onnx" in failure["model"]["path"]
    assert failure["failure"]["reason"].endswith("(the file is not an ONNX model: check the path, or re-export the model)")
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", *FAST]) == 0  # nothing failed now
    assert json.loads(capsys.readouterr().out)["skipped"] == 2  # failures count as done ...
    main(["run", str(model_dir), "--out", str(out), "--json", "-q", "--retry-failed", *FAST])
    assert json.loads(capsys.readouterr().out)["failed"] == 1  # ... unless retried



def test_a_rerun_where_every_model_failed_before_exits_1_and_says_why(tmp_path, capsys):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not an onnx model")
    out = tmp_path / "r.jsonl"
    assert main(["run", str(model), "--out", str(out), *FAST]) == 1
    capsys.readouterr()
    assert main(["run", str(model), "--out", str(out), "--json", *FAST]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["skipped_failed"] == 1
    assert "failed before (in an earlier run, or an earlier pass of this one), skipped" in captured.err


def test_a_retried_failure_that_succeeds_is_measured_in_every_pass(tmp_path, capsys):
    model, out = tiny_mlp(tmp_path / "m.onnx"), tmp_path / "r.jsonl"
    assert main(["run", str(model), "--out", str(out), "-q", *FAST, "--timeout", "0.001"]) == 1
    capsys.readouterr()
    assert main(["run", str(model), "--out", str(out), "--json", "-q", *FAST, "--retry-failed", "--passes", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["measured"], summary["failed"], summary["skipped"]) == (3, 0, 0)
    assert [r["pass"] for r in _lines(out) if r["status"] == "ok"] == [1, 2, 3]


def test_a_model_too_new_for_onnxruntime_fails_with_what_to_do(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 99
    onnx.save(model, str(tmp_path / "new.onnx"))
    result = runner.run_child(str(tmp_path / "new.onnx"), FAST_CONFIG)
    reason = result["failure"]["reason"]
    assert result["status"] == "failed" and "set model.ir_version" in reason
    # one readable line: onnxruntime's C++ source location and signature stay in the traceback
    assert "onnxruntime_src" not in reason and "onnxruntime::" not in reason and "failed: Unsupported model IR" in reason


def test_hang_becomes_a_timeout_failure(tmp_path):
    config = ProfileConfig(threads=1, warmup=1, min_repeats=3, max_time_s=0.05, timeout_s=0.01)
    result = runner.run_child(str(tiny_mlp(tmp_path / "m.onnx")), config)
    assert result["status"] == "failed" and result["failure"]["kind"] == "timeout"


@pytest.mark.parametrize("sig, kind", [("SEGV", "crash"), ("KILL", "out_of_memory")])
def test_child_death_becomes_a_failure_with_its_reason(tmp_path, monkeypatch, sig, kind):
    fake_python = tmp_path / "python"
    fake_python.write_text(f"#!/bin/sh\necho dying >&2\nkill -{sig} $$\n")
    fake_python.chmod(0o755)
    monkeypatch.setattr(runner.sys, "executable", str(fake_python))
    result = runner.run_child(str(tiny_mlp(tmp_path / "m.onnx")), FAST_CONFIG)
    assert result["failure"]["kind"] == kind
    assert f"SIG{sig}" in result["failure"]["reason"] and "dying" in result["failure"]["reason"]


def test_sigkill_mid_run_loses_at_most_the_model_in_flight(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    for index in range(4):
        tiny_mlp(folder / f"n{index}.onnx", width=8 + index)
    out = tmp_path / "r.jsonl"
    # a SIGKILLed profiler cannot remove its scratch folder: it is made here, not in /tmp, and removed
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**child_env(), "TMPDIR": str(scratch)}
    command = [PROFILER_BIN, "run", str(folder), "--out", str(out), "-q", *FAST]
    try:
        process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 1):
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
        before = out.read_bytes()
        kept = read_records(out)
        assert 1 <= len(kept.records) < 4 and not kept.unreadable_lines
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    after = out.read_bytes()
    assert after.startswith(before)  # nothing measured before the kill was rewritten or lost
    records = read_records(out).records
    assert len(records) == 4 and len({r["key"] for r in records}) == 4


def test_truncated_last_line_is_skipped_and_kept(tmp_path):
    out = tmp_path / "r.jsonl"
    append_record(out, {"schema": "sniper-profiler/1", "key": "a", "status": "ok"})
    with open(out, "ab") as handle:
        handle.write(b'{"schema": "sniper-profiler/1", "key": "b", "sta')  # killed mid-write
    append_record(out, {"schema": "sniper-profiler/1", "key": "c", "status": "ok"})
    result = read_records(out)
    assert [r["key"] for r in result.records] == ["a", "c"] and result.unreadable_lines == [2]
    assert b'"key": "b", "sta\n' in out.read_bytes()


def test_the_profiler_never_imports_cloud_side_packages(tmp_path):
    model = tiny_mlp(tmp_path / "m.onnx")
    code = (
        "import sys\n"
        "from sniper_profiler.__main__ import main\n"
        "from sniper_profiler.measure import measure\n"
        "from sniper_profiler.config import ProfileConfig\n"
        f"main(['run', {str(model)!r}, '--out', {str(tmp_path / 'r.jsonl')!r}, '-q', '--max-time', '0.02'])\n"
        f"measure({str(model)!r}, ProfileConfig(max_time_s=0.02))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'torch', 'sklearn', 'sniper_onnx', 'typer', 'sniper_generator'))\n"
        "print('IMPORTED:' + ','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), check=True)
    assert result.stdout.strip().splitlines()[-1] == "IMPORTED:"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "missing.onnx", "--out", "{tmp}/r.jsonl"], "no such model file"),
        (["run", "{model}", "--out", "{tmp}/r.jsonl", "--input-shape", "x=1xq"], "--input-shape"),
        (["run", "{model}", "--out", "{tmp}/nofolder/r.jsonl"], "does not exist"),
        (["run", "{model}", "--out", "{tmp}/r.jsonl", "--provider", "NopeExecutionProvider"], "not available"),
        (["run", "{model}", "--out", "{tmp}/r.jsonl", "--target-ci", "2"], "--target-ci"),
        (["run", "{model}", "--out", "{tmp}/r.jsonl", "--passes", "0"], "--passes"),
        (["run", "{model}", "--out", "/dev/null"], "not a regular file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    model = tiny_mlp(tmp_path / "m.onnx")
    argv = [a.format(tmp=tmp_path, model=model) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("sniper-profiler: error:")


def test_device_command_prints_the_feature_vector(capsys):
    assert main(["device", "--json", "--threads", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["fingerprint"]["device_id"].startswith("dev-") and data["features"]["threads"] == 0.0  # log2(1)
    assert data["features"]["kind_desktop_cpu"] + data["features"]["kind_embedded_cpu"] == 1.0


def test_a_second_profiler_on_the_same_file_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    with runner.Profiler(out, FAST_CONFIG):
        with pytest.raises(runner.ProfilerError, match="another sniper-profiler"):
            runner.Profiler(out, FAST_CONFIG)
    runner.Profiler(out, FAST_CONFIG).close()  # released


def _greedy_model(path):
    """Asks for an 8 GiB intermediate tensor."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1 << 16, 1 << 15], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["big"]), helper.make_node("ReduceSum", ["big"], ["y"], keepdims=0)],
        "greedy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_memory_limit_turns_a_greedy_model_into_an_out_of_memory_record(tmp_path, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    _greedy_model(folder / "a_greedy.onnx")
    tiny_mlp(folder / "b_fine.onnx")
    out = tmp_path / "r.jsonl"
    assert main(["run", str(folder), "--out", str(out), "--json", "-q", "--memory-limit", "3", *FAST]) == 1  # the greedy model failed
    assert json.loads(capsys.readouterr().out)["measured"] == 1
    greedy = _lines(out)[0]
    assert greedy["status"] == "failed" and greedy["failure"]["kind"] == "out_of_memory"


def test_memory_limit_is_refused_for_gpu_providers():
    with pytest.raises(runner.ProfilerError, match="CPU providers only"):
        ProfileConfig(provider="cuda", memory_limit_gb=4)


@pytest.mark.parametrize("option", [["--max-time", "3"], ["--min-repeats=3"], ["--timeout", "5"]])
def test_device_command_refuses_stopping_rule_options(capsys, option):
    """`device` measures nothing: a stopping rule given to it would be silently ignored."""
    assert main(["device", "--json", *option]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a stopping-rule option of `run`" in err


def test_ctrl_c_promises_a_resume_only_where_there_is_one(tmp_path, capsys, monkeypatch):
    import sniper_profiler.runner as runner_module

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "run_profile", ctrl_c)
    monkeypatch.setattr(runner_module, "device_fingerprint", ctrl_c)
    model = tiny_mlp(tmp_path / "m.onnx")
    assert main(["run", str(model), "--out", str(tmp_path / "r.jsonl")]) == 130
    assert capsys.readouterr().err.strip() == ("sniper-profiler: interrupted; the models measured so far are kept in "
                                               "--out, rerun the same command to resume")
    assert main(["device"]) == 130
    assert capsys.readouterr().err.strip() == "sniper-profiler: interrupted"


def _flag_first_record_busy(out):
    records = _lines(out)
    records[0]["flags"] = [*records[0]["flags"], "machine_busy"]
    out.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records[0]["key"]


def test_retry_busy_measures_again_only_models_whose_records_are_all_busy(model_dir, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", *FAST]) == 0
    busy_key = _flag_first_record_busy(out)
    capsys.readouterr()
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 3  # a busy record counts as done ...
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", "--retry-busy", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["measured"], summary["skipped"]) == (1, 2)  # ... unless retried
    records = _lines(out)
    assert len(records) == 4 and [r["key"] for r in records].count(busy_key) == 2  # the busy one stays
    assert main(["run", str(model_dir), "--out", str(out), "--json", "-q", "--retry-busy", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 3  # one quiet record is enough


def test_a_failure_reason_keeps_onnxruntime_s_words_without_its_cpp_signature():
    from sniper_profiler._child import _with_hint

    raw = ("/onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 void* onnxruntime::BFCArena::AllocateRawInternal("
           "size_t, bool, onnxruntime::Stream*, bool, onnxruntime::WaitNotificationFn) Failed to allocate memory for "
           "requested buffer of size 123")
    assert _with_hint(raw) == "Failed to allocate memory for requested buffer of size 123"
    assert _with_hint("no location here") == "no location here"
    assert _with_hint("Load model from e.onnx failed:No graph was found in the protobuf.").endswith(
        "(the file holds no ONNX graph (empty or cut short?): re-export the model)")


def test_more_threads_than_cores_is_refused_before_any_record(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "usable_cores", lambda: 2)
    out = tmp_path / "r.jsonl"
    assert main(["run", str(tiny_mlp(tmp_path / "m.onnx")), "--out", str(out), "--threads", "3"]) == 2
    assert "--threads 3: more than the 2 cores" in capsys.readouterr().err and not out.exists()


def test_an_internal_error_is_one_line_and_exit_70_not_1(tmp_path, capsys, monkeypatch):
    """1 says "a model failed, the others were measured": scripts go on after it; a crash must stop them."""
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "run_profile", broken)
    assert main(["run", str(tiny_mlp(tmp_path / "m.onnx")), "--out", str(tmp_path / "r.jsonl")]) == 70
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["sniper-profiler: internal error: RuntimeError: boom (set SNIPER_PROFILER_DEBUG=1 "
                                        "for the traceback, and please report it)"]


def test_a_copy_of_a_model_measured_in_this_run_is_not_said_to_have_failed_before(tmp_path, capsys):
    """Two byte-identical files: the second is skipped as the first's duplicate, not as "failed in an
    earlier run" when the first failed now, nor as measured before."""
    model_dir, out = tmp_path / "models", tmp_path / "r.jsonl"
    model_dir.mkdir()
    for name in ("a.onnx", "b_copy.onnx"):
        (model_dir / name).write_bytes(b"not an onnx model")
    assert main(["run", str(model_dir), "--out", str(out), "--json", *FAST]) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["failed"], summary["skipped"], summary["skipped_failed"]) == (1, 1, 0)
    assert "b_copy.onnx: the same model as one this run already ran (measured or failed), skipped" in captured.err
    assert "earlier run" not in captured.err


def _sqlite_file(path):
    import sqlite3

    with sqlite3.connect(str(path)) as db:
        db.execute("CREATE TABLE t (x)")
    return path


@pytest.mark.parametrize("make_out", [
    lambda tmp, model: model,  # the model being measured: appending destroyed it
    lambda tmp, model: (tmp / "notes.csv", (tmp / "notes.csv").write_text("a,b\n1,2\n"))[0],
    lambda tmp, model: _sqlite_file(tmp / "ncd.sqlite"),
    lambda tmp, model: (tmp / "other.jsonl", (tmp / "other.jsonl").write_text('{"id": 1}\n'))[0],
])
def test_an_existing_out_that_is_no_results_file_is_refused_untouched(tmp_path, capsys, make_out):
    model = tiny_mlp(tmp_path / "m.onnx")
    out = make_out(tmp_path, model)
    before = out.read_bytes()
    assert main(["run", str(model), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a sniper-profiler results file" in err
    assert out.read_bytes() == before


def test_an_empty_out_and_one_whose_first_record_was_cut_short_are_results_files(tmp_path):
    from sniper_profiler.records import is_results_file

    empty, cut = tmp_path / "empty.jsonl", tmp_path / "cut.jsonl"
    empty.write_bytes(b"")
    cut.write_bytes(b'{"config": {"provider": "CPU')
    assert is_results_file(empty) and is_results_file(cut)
    append_record(cut, {"schema": "sniper-profiler/1", "key": "a", "status": "ok"})
    assert is_results_file(cut)


def test_an_input_shape_sizes_only_the_models_that_have_that_input(tmp_path, capsys):
    """A run mixing a model with symbolic dims and fixed-shape ones: the fixed ones lack the input
    and are measured as they are (they were recorded as failures)."""
    from profiler_testkit import mixed_inputs_model

    folder = tmp_path / "models"
    folder.mkdir()
    mixed_inputs_model(folder / "a_dynamic.onnx")
    tiny_mlp(folder / "b_fixed.onnx")
    out = tmp_path / "r.jsonl"
    assert main(["run", str(folder), "--out", str(out), "--json", "-q", "--input-shape", "ids=2x8", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["measured"] == 2
    dynamic, fixed = _lines(out)
    assert [i["shape"] for i in dynamic["inputs"]] == [[1, 8], [2, 8], [1, 8]] and fixed["status"] == "ok"


def test_an_input_shape_no_model_has_is_refused_before_any_record(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    assert main(["run", str(tiny_mlp(tmp_path / "m.onnx")), "--out", str(out), "--input-shape", "nope=1x8", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sniper-profiler: error: --input-shape nope: no model of this run has an input of that name (their inputs: x)"
    assert not out.exists()


def test_an_out_that_cannot_be_written_is_a_set_up_error_not_an_internal_one(tmp_path, capsys, monkeypatch):
    import errno

    def refused(out):
        raise PermissionError(errno.EACCES, "Permission denied", str(out))

    monkeypatch.setattr(runner, "_lock_results", refused)  # as open() answers a read-only folder or file
    assert main(["run", str(tiny_mlp(tmp_path / "m.onnx")), "--out", str(tmp_path / "r.jsonl"), *FAST]) == 2
    assert capsys.readouterr().err.strip() == (f"sniper-profiler: error: --out {tmp_path / 'r.jsonl'}: Permission denied; "
                                               "check the path exists and is writable")


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root writes read-only folders")
def test_a_read_only_folder_for_out_is_a_set_up_error(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["run", str(tiny_mlp(tmp_path / "m.onnx")), "--out", str(folder / "r.jsonl"), *FAST]) == 2
    finally:
        folder.chmod(0o755)
    assert "Permission denied; check the path exists and is writable" in capsys.readouterr().err


def test_device_makes_the_checks_run_makes(capsys, monkeypatch):
    """No device id or feature vector for a configuration `run` would refuse."""
    monkeypatch.setattr(runner, "usable_cores", lambda: 2)
    assert main(["device", "--threads", "3"]) == 2
    assert "--threads 3: more than the 2 cores" in capsys.readouterr().err
    import sniper_profiler.measure as measure_module

    def falls_back(path, config):
        raise measure_module.ProviderUnavailable(f"--provider {config.provider}: did not load (the session fell back "
                                                 "to CPUExecutionProvider)")

    monkeypatch.setattr(measure_module, "create_session", falls_back)
    assert main(["device", "--threads", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().splitlines() == [
        "sniper-profiler: error: --provider CPUExecutionProvider: did not load (the session fell back to CPUExecutionProvider)"]


def test_device_opens_a_real_session_with_the_provider(capsys, monkeypatch):
    import sniper_profiler.measure as measure_module

    opened = []
    real = measure_module.create_session
    monkeypatch.setattr(measure_module, "create_session", lambda path, config: opened.append(real(path, config)))
    assert main(["device", "--json", "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["spec"]["provider"] == "CPUExecutionProvider"
    assert opened[0].get_providers()[0] == "CPUExecutionProvider"


_HANGING_CHILD = """
import sys
import sniper_profiler.runner as runner
runner.sys = type("FakeSys", (), {"executable": sys.argv[1]})
from sniper_profiler.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up_and_say_so_as_ctrl_c_does(tmp_path, sig):
    """systemd, docker stop and batch schedulers send SIGTERM: the child is killed, its scratch folder
    removed, the records kept, and the exit status is the shell's 128 + signal."""
    scratch, pid_file = tmp_path / "scratch", tmp_path / "child.pid"
    scratch.mkdir()
    child = tmp_path / "python"  # stands in for the child: it measures forever
    child.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 600\n")
    child.chmod(0o755)
    out = tmp_path / "r.jsonl"
    env = {**child_env(), "TMPDIR": str(scratch)}
    process = subprocess.Popen([sys.executable, "-c", _HANGING_CHILD, str(child), "run", str(tiny_mlp(tmp_path / "m.onnx")),
                                "--out", str(out), *FAST], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (pid_file.exists() and pid_file.read_text().strip()):
        time.sleep(0.02)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + sig
    assert err.strip().splitlines()[-1] == (f"sniper-profiler: interrupted by {signal.Signals(sig).name}; the models "
                                            "measured so far are kept in --out, rerun the same command to resume")
    assert list(scratch.glob("sniper-profiler-*")) == []  # no scratch folder left behind
    child_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(child_pid):
        time.sleep(0.02)
    assert not _alive(child_pid)


def _alive(pid):
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for init to reap it is dead
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True
