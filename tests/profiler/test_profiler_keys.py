"""Record keys (resume), device names, and the graph inputs the parent reads without onnx."""

import gzip
import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from profiler_testkit import mixed_inputs_model, tiny_mlp

import numpy as np

from sniper_profiler import runner
from sniper_profiler.__main__ import main
from sniper_profiler.config import ProfileConfig
from sniper_profiler.fingerprint import Fingerprint, collect_fingerprint
from sniper_profiler.graph_inputs import probe_model, read_graph_inputs
from sniper_profiler.records import file_sha256, read_records, stable_hash

REFERENCE = Path(__file__).resolve().parents[2] / "data" / "reference"
FAST = dict(threads=1, warmup=1, min_repeats=3, max_time_s=0.05)


def _old_key(profiler, path, threads, input_shapes=None, default_dim=1):
    """The key every profiler before 2026-11-30 wrote: the settings hashed as given."""
    old_identity = {"provider": "CPUExecutionProvider", "provider_options": {}, "threads": threads,
                    "graph_optimization": "all", "precision": "fp32", "input_shapes": input_shapes or {},
                    "default_dim": default_dim}
    return f"sha256:{file_sha256(path)}|{stable_hash({'device': profiler.fingerprint.device_id, 'config': old_identity})}"


def test_the_common_case_keeps_the_key_earlier_versions_wrote(tmp_path):
    """Explicit --threads, a fixed-shape model, default settings: byte-identical to the old key, so
    existing results files (the reference dataset's) resume without measuring anything again."""
    model = tiny_mlp(tmp_path / "m.onnx")
    with runner.Profiler(tmp_path / "r.jsonl", ProfileConfig(**FAST)) as profiler:
        assert profiler.key_for(runner.ModelJob(str(model))) == _old_key(profiler, model, threads=1)


@pytest.mark.skipif(not list(REFERENCE.glob("cpu-*.jsonl.gz")), reason="reference dataset not checked out")
def test_the_reference_dataset_s_keys_are_still_recognized():
    """Its CPU records (explicit --threads) hash as they did; its GPU records (--threads 0, resolved to
    16) now key on the resolved count, and their old key is still honoured as done."""
    for path in sorted(REFERENCE.glob("*.jsonl.gz")):
        if path.name.startswith("node-profiles"):
            continue
        with gzip.open(path) as handle:
            record = json.loads(handle.readline())
        config = ProfileConfig.from_dict({k: v for k, v in record["config"].items() if k != "config_id"})
        device = record["device"]["device_id"]
        threads = record["device"]["fingerprint"]["threads"]
        legacy = stable_hash({"device": device, "config": config.identity()})
        assert record["key"].endswith(f"|{legacy}")
        if config.threads:
            assert stable_hash({"device": device, "config": config.model_identity(threads)}) == legacy, path.name


def test_threads_0_and_the_count_it_resolves_to_are_one_configuration(tmp_path):
    model = tiny_mlp(tmp_path / "m.onnx")
    job = runner.ModelJob(str(model))
    with runner.Profiler(tmp_path / "a.jsonl", ProfileConfig(threads=0)) as default:
        resolved = default.fingerprint.threads
        key = default.key_for(job)
    with runner.Profiler(tmp_path / "b.jsonl", ProfileConfig(threads=resolved)) as explicit:
        assert explicit.key_for(job) == key == _old_key(explicit, model, threads=resolved)


def test_shapes_a_model_does_not_use_leave_its_key_alone(tmp_path):
    fixed, dynamic = tiny_mlp(tmp_path / "fixed.onnx"), mixed_inputs_model(tmp_path / "dynamic.onnx")
    keys = {}
    for label, extra in (("plain", {}), ("dim4", {"default_dim": 4}), ("ids", {"input_shapes": {"ids": [2, 8]}})):
        with runner.Profiler(tmp_path / f"{label}.jsonl", ProfileConfig(**FAST, **extra)) as profiler:
            keys[label] = [profiler.key_for(runner.ModelJob(str(path))) for path in (fixed, dynamic)]
    assert keys["plain"][0] == keys["dim4"][0] == keys["ids"][0]  # the fixed model: one measurement
    assert len({keys["plain"][1], keys["dim4"][1], keys["ids"][1]}) == 3  # the dynamic one: three


def test_a_record_keyed_the_old_way_still_counts_as_done(tmp_path, capsys):
    """--threads 0 once hashed 0: such a record (as a results file of an earlier version holds) is not
    measured again, and neither is its later pass."""
    model = tiny_mlp(tmp_path / "m.onnx")
    out = tmp_path / "r.jsonl"
    args = ["run", str(model), "--out", str(out), "--json", "-q", "--warmup", "1", "--min-repeats", "3",
            "--max-time", "0.05", "--threads", "0"]
    assert main(args) == 0
    record = json.loads(out.read_text())
    with runner.Profiler(tmp_path / "probe.jsonl", ProfileConfig(threads=0)) as profiler:
        old = _old_key(profiler, model, threads=0)
    assert record["key"] != old  # the resolved count is hashed now
    record["key"] = old
    out.write_text(json.dumps(record) + "\n")
    capsys.readouterr()
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 1 and len(read_records(out).records) == 1


def test_provider_options_are_in_the_device_name_and_names_without_them_are_unchanged():
    plain = collect_fingerprint("1.0", "CPUExecutionProvider", {}, "fp32", 1, "all")
    typo = collect_fingerprint("1.0", "CPUExecutionProvider", {"foo": 1, "arena": True}, "fp32", 1, "all")
    assert plain.short_name().endswith("| cpu fp32 t1 opt-all")
    assert typo.short_name() == plain.short_name() + " arena=true foo=1"
    assert typo.device_spec().name == typo.short_name() and typo.device_id != plain.device_id


@pytest.mark.skipif(not list(REFERENCE.glob("cpu-*.jsonl.gz")), reason="reference dataset not checked out")
def test_the_reference_devices_keep_their_names():
    for path in sorted(REFERENCE.glob("[cg]*.jsonl.gz")):
        with gzip.open(path) as handle:
            device = json.loads(handle.readline())["device"]
        fingerprint = Fingerprint(**{k: v for k, v in device["fingerprint"].items() if k != "device_id"})
        assert (fingerprint.short_name(), fingerprint.device_id) == (device["spec"]["name"], device["device_id"])


def test_graph_inputs_are_read_as_onnxruntime_lists_them(tmp_path):
    assert read_graph_inputs(str(mixed_inputs_model(tmp_path / "mixed.onnx"))) == [
        ("x", [None, 8]), ("ids", [None, 8]), ("mask", [None, 8])]
    # IR 3 lists the initializers among the inputs: onnxruntime does not ask for them
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "old",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"]),
                               helper.make_tensor_value_info("W", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    onnx.save(model, str(tmp_path / "old.onnx"))
    assert read_graph_inputs(str(tmp_path / "old.onnx")) == [("x", [1, None])]
    (tmp_path / "empty.onnx").write_bytes(b"")
    (tmp_path / "text.onnx").write_text("a,b\n1,2\n")
    assert read_graph_inputs(str(tmp_path / "empty.onnx")) is None and read_graph_inputs(str(tmp_path / "text.onnx")) is None
    probe = onnx.load_from_string(probe_model())
    onnx.checker.check_model(probe)
    assert [i.name for i in probe.graph.input] == ["x"]


def test_a_failure_an_input_shape_caused_does_not_skip_the_model_in_a_run_without_it(tmp_path, capsys):
    """A dynamic and a fixed model share the input name x; --input-shape x=2x16 clashes with the
    fixed one, which fails: keyed on that shape, so a later run without it measures the model."""
    folder = tmp_path / "models"
    folder.mkdir()
    tiny_mlp(folder / "fixed.onnx", width=16)
    tiny_mlp(folder / "dynamic.onnx", width=16, batch="N")
    out = tmp_path / "r.jsonl"
    common = ["run", str(folder), "--out", str(out), "--json", "-q", "--warmup", "1", "--min-repeats", "3",
              "--max-time", "0.05", "--threads", "1"]
    main([*common, "--input-shape", "x=2x16"])
    capsys.readouterr()
    assert {Path(r["model"]["path"]).name: r["status"] for r in read_records(out).records} == {
        "fixed.onnx": "failed", "dynamic.onnx": "ok"}
    assert main(common) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["measured"], summary["skipped"]) == (2, 0)
