import csv
import json
import shutil
import subprocess
import sys

import pytest
from database_testkit import as_older_version, synthetic_results
from typer.testing import CliRunner

from sniper_onnx.cli import app
from sniper_onnx.database import Database, export_csv, import_results
from sniper_onnx.database.schema import SCHEMA_VERSION
from sniper_onnx.errors import SniperError
from sniper_profiler.device import DEVICE_FEATURE_NAMES, DeviceSpec

runner = CliRunner()


def test_import_is_idempotent_and_computes_features(profiled, tmp_path):
    results, _ = profiled
    with Database(tmp_path / "ncd.sqlite") as db:
        first = import_results(db, results)
        second = import_results(db, results)
        assert (first.added, first.networks_added, first.devices_added) == (3, 3, 1)
        assert (second.added, second.already_present) == (0, 3)
        networks = db.networks()
        assert all(n.features and n.features["total_macs"] > 0 for n in networks)
        assert all(n.structure_hash.startswith("sha256:") for n in networks)
        assert len(db.measurements()) == 3


def test_export_writes_network_and_device_features_and_latency(profiled, tmp_path):
    results, _ = profiled
    with Database(tmp_path / "ncd.sqlite") as db:
        import_results(db, results)
        summary = export_csv(db, tmp_path / "train.csv")
    rows = list(csv.DictReader(open(tmp_path / "train.csv")))
    assert summary.rows == len(rows) == 3
    recorded = {json.loads(line)["model"]["name"]: json.loads(line)["stats"]["median_s"] for line in open(results)}
    for row in rows:
        assert float(row["latency_s"]) == pytest.approx(recorded[row["network_name"]])
        assert float(row["num_conv"]) == 1 and float(row["total_macs"]) > 0
        assert all(f"device_{name}" in row for name in DEVICE_FEATURE_NAMES)
        assert row["device_threads_known"] == "1.0"
        source = json.loads(row["network_source"])  # how the trainer re-makes it for its kernel table
        assert source["kind"] == "file" and source["path"].endswith(".onnx")


def test_kernel_tables_are_remade_from_the_exported_sources(profiled, tmp_path):
    from sniper_onnx.predictors.dataset import load_training_csv
    from sniper_onnx.predictors.kernel_sources import kernel_tables_for

    results, _ = profiled
    export_csv_path = tmp_path / "train.csv"
    with Database(tmp_path / "ncd.sqlite") as db:
        import_results(db, results)
        export_csv(db, export_csv_path)
    data = load_training_csv(export_csv_path)
    assert len(data.network_sources) == len(data.network_names) == 3
    tables, missing = kernel_tables_for(data.network_sources + ['{"kind": "zoo", "name": "squeezenet1_1", "resolution": 32}',
                                                                '{"kind": "file", "path": "/nowhere.onnx"}', ""])
    assert all(t is not None and len(t) >= 1 for t in tables[:4])  # 3 measured files, then a zoo net
    assert len(tables[3]) > 20 and tables[4] is None and tables[5] is None
    assert sum(missing.values()) == 2


def test_missing_model_keeps_the_measurement_without_features(tmp_path):
    results = synthetic_results(tmp_path / "r.jsonl", 3)
    with Database(tmp_path / "ncd.sqlite") as db:
        summary = import_results(db, results)
        assert summary.added == 3 and len(summary.networks_without_features) == 3
        assert all(n.structure_hash.startswith("file:sha256:") and n.features is None for n in db.networks())
        exported = export_csv(db, tmp_path / "train.csv")
        assert exported.rows == 0 and exported.skipped_without_features == 3


def test_an_unreadable_model_keeps_its_record_and_the_rest_import(tmp_path):
    from sniper_profiler.records import file_sha256

    results = synthetic_results(tmp_path / "r.jsonl", 3)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_text("not an onnx model")
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    lines[0]["model"].update(path=str(garbage), sha256=file_sha256(garbage))
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with Database(tmp_path / "ncd.sqlite") as db:
        summary = import_results(db, results)
        assert summary.added == 3
        assert f"{garbage}: not a readable ONNX model (DecodeError)" in summary.networks_without_features


def test_a_bad_record_is_left_out_and_the_rest_import(tmp_path):
    results = synthetic_results(tmp_path / "r.jsonl", 4)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    lines[0]["stats"]["median_s"] = 0
    lines[1]["stats"]["median_s"] = "fast"
    lines[2]["schema"] = "sniper-profiler/2"
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with Database(tmp_path / "ncd.sqlite") as db:
        summary = import_results(db, results)
    assert summary.added == 1 and summary.newer_schema_lines == [3]
    assert [p.split(": ", 1)[1] for p in summary.invalid_records] == [
        "median_s 0 is not a positive number of seconds", "median_s 'fast' is not a positive number of seconds"]


@pytest.mark.parametrize("content, message", [
    ("", "holds no records; measure models into it with `sniper-profiler run --out r.jsonl` first"),
    ('{"schema": "sniper-profiler/2", "key": "k"}\n', "of a newer sniper-profiler than this sniper-onnx reads; upgrade"),
])
def test_a_results_file_without_records_it_can_read_is_refused(tmp_path, content, message):
    (tmp_path / "r.jsonl").write_text(content)
    with Database(tmp_path / "ncd.sqlite") as db, pytest.raises(SniperError, match=message):
        import_results(db, tmp_path / "r.jsonl")


def test_moved_model_gets_its_features_on_a_later_import(profiled, tmp_path):
    results, folder = profiled
    moved = tmp_path / "moved"
    shutil.move(str(folder), moved)
    try:
        with Database(tmp_path / "ncd.sqlite") as db:
            assert len(import_results(db, moved / "results.jsonl").networks_without_features) == 3
        shutil.move(str(moved), folder)
        with Database(tmp_path / "ncd.sqlite") as db:
            import_results(db, results)
            assert all(n.features for n in db.networks())
    finally:
        if moved.exists():
            shutil.move(str(moved), folder)


IMPORT_WORKER = (
    "import sys\n"
    "from sniper_onnx.database import Database, import_results\n"
    "with Database(sys.argv[1]) as db:\n"
    "    import_results(db, sys.argv[2])\n"
)


def test_concurrent_imports_lose_nothing_and_duplicate_nothing(tmp_path):
    files = [synthetic_results(tmp_path / f"r{k}.jsonl", 40, device=f"dev-{k % 2}", prefix=f"p{k}-") for k in range(3)]
    db_path = tmp_path / "ncd.sqlite"
    workers = [subprocess.Popen([sys.executable, "-c", IMPORT_WORKER, str(db_path), str(path)]) for path in files + [files[0]]]
    assert [worker.wait(120) for worker in workers] == [0, 0, 0, 0]
    with Database(db_path) as db:
        stats = db.stats()
    assert (stats.measurements, stats.networks, stats.devices) == (120, 120, 2)


def test_cli_import_stats_export(profiled, tmp_path):
    results, _ = profiled
    db_path = str(tmp_path / "ncd.sqlite")
    first = runner.invoke(app, ["db", "import", str(results), "--db", db_path, "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["files"][0]["added"] == 3
    again = runner.invoke(app, ["db", "import", str(results), "--db", db_path])
    assert again.exit_code == 0 and "0 measurements and 0 failures added, 3 already present" in again.stdout
    stats = runner.invoke(app, ["db", "stats", "--db", db_path, "--json"])
    assert json.loads(stats.stdout)["measurements"] == 3
    assert "3 networks" in runner.invoke(app, ["db", "stats", "--db", db_path]).stdout
    export = runner.invoke(app, ["db", "export", "--db", db_path, "-o", str(tmp_path / "t.csv"), "--json"])
    assert json.loads(export.stdout)["rows"] == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["db", "import", "{tmp}/missing.jsonl", "--db", "{tmp}/ncd.sqlite"], "no such results file"),
        (["db", "import", "{tmp}/junk.jsonl", "--db", "{tmp}/ncd.sqlite"], "no profiler records"),
        (["db", "stats", "--db", "{tmp}/absent.sqlite"], "no such database"),
        (["db", "export", "--db", "{tmp}/absent.sqlite"], "no such database"),
        (["db", "import", "{tmp}/junk.jsonl", "--db", "{tmp}/no/ncd.sqlite"], "does not exist"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, argv, message):
    (tmp_path / "junk.jsonl").write_text("not json\n")
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in argv])
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_export_unknown_device_is_refused(profiled, tmp_path):
    with Database(tmp_path / "ncd.sqlite") as db:
        import_results(db, profiled[0])
        with pytest.raises(SniperError, match="no such device"):
            export_csv(db, tmp_path / "t.csv", ["dev-nope"])


def test_export_can_leave_out_flagged_measurements(tmp_path):
    with Database(tmp_path / "ncd.sqlite") as db:
        dev = db.add_device(DeviceSpec(name="d"))
        for index, flags in enumerate([[], ["denormal_outputs"], ["machine_busy", "ci_target_not_reached"]]):
            net = db.add_network(f"h{index}", f"n{index}", features={"total_macs": 1.0 + index})
            db.add_measurement(net.id, dev.id, 0.01, flags=flags)
        assert export_csv(db, tmp_path / "all.csv").rows == 3
        assert export_csv(db, tmp_path / "clean.csv", exclude_flags=["denormal_outputs", "machine_busy"]).rows == 1
    result = runner.invoke(app, ["db", "export", "--db", str(tmp_path / "ncd.sqlite"), "--exclude-flag", "bogus", "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "not a profiler flag" in result.stderr


def test_one_file_measured_at_two_shapes_is_two_networks(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "dyn.onnx"))
    out = tmp_path / "r.jsonl"
    fast = ["--warmup", "1", "--min-repeats", "3", "--max-time", "0.02", "--threads", "1"]
    for batch in (1, 4):
        result = runner.invoke(app, ["profile", str(tmp_path / "dyn.onnx"), "--out", str(out), "--input-shape", f"x={batch}x8", *fast])
        assert result.exit_code == 0, result.output
    with Database(tmp_path / "ncd.sqlite") as db:
        import_results(db, out)
        networks = sorted(db.networks(), key=lambda n: n.structure_hash)
        assert [n.structure_hash.rsplit("@", 1)[1] for n in networks] == ["x=1x8", "x=4x8"]
        assert len({m.network_id for m in db.measurements()}) == 2


def test_models_measured_elsewhere_are_found_by_hash_in_models_folder(profiled, tmp_path):
    results, folder = profiled
    copy = tmp_path / "copies"
    shutil.copytree(folder, copy)
    moved = tmp_path / "moved"
    shutil.move(str(folder), moved)  # the recorded paths no longer exist: as on the cloud side
    try:
        result = runner.invoke(app, ["db", "import", str(moved / "results.jsonl"), "--db", str(tmp_path / "ncd.sqlite"), "--models", str(copy), "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["files"][0]["networks_without_features"] == []
    finally:
        shutil.move(str(moved), folder)


def test_generate_manifest_gives_device_records_their_generator_source(tmp_path):
    from sniper_generator import sample_specs
    from sniper_profiler.__main__ import main as profiler_main

    generated = tmp_path / "gen"
    result = runner.invoke(app, ["generate", "-n", "1", "-s", "3", "--max-macs", "5e6", "--out", str(generated)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "r.jsonl"
    assert profiler_main(["run", str(generated), "--out", str(out), "-q", "--max-time", "0.02", "--threads", "1"]) == 0
    record = json.loads(out.read_text())
    assert record["model"]["source"]["kind"] == "generator"
    assert record["model"]["source"]["spec"]["net_id"] == sample_specs(1, 3, max_macs=5e6)[0].net_id
    shutil.rmtree(generated)  # the cloud side re-makes it from the spec
    with Database(tmp_path / "ncd.sqlite") as db:
        assert import_results(db, out).networks_without_features == []


def test_export_statistic_picks_each_measurements_min_or_median(tmp_path):
    with Database(tmp_path / "ncd.sqlite") as db:
        dev = db.add_device(DeviceSpec(name="d"))
        timed = db.add_network("h0", "timed", features={"total_macs": 1.0})
        db.add_measurement(timed.id, dev.id, 0.010, stats={"min_s": 0.004}, record_key="run-1")
        db.add_measurement(timed.id, dev.id, 0.012, stats={"min_s": 0.006}, record_key="run-2")
        bare = db.add_network("h1", "external", features={"total_macs": 2.0})
        db.add_measurement(bare.id, dev.id, 0.020)  # an external latency has no min: left out of a min table
        by_median = {r["network_name"]: float(r["latency_s"]) for r in csv.DictReader(open(export_csv(db, tmp_path / "m.csv").path))}
        by_min = {r["network_name"]: float(r["latency_s"]) for r in csv.DictReader(open(export_csv(db, tmp_path / "n.csv", statistic="min").path))}
        assert by_median == {"timed": 0.011, "external": 0.020} and by_min == {"timed": 0.005}
        assert export_csv(db, tmp_path / "n.csv", statistic="min").left_out_without_statistic == 1
        assert export_csv(db, tmp_path / "m.csv").left_out_without_statistic == 0
        with pytest.raises(SniperError, match="--statistic 'fastest'"):
            export_csv(db, tmp_path / "x.csv", statistic="fastest")
    result = runner.invoke(app, ["db", "export", "--db", str(tmp_path / "ncd.sqlite"), "--statistic", "bogus", "-o", str(tmp_path / "y.csv")])
    assert result.exit_code == 2 and "use one of median, min, p10, mean" in result.stderr and "Traceback" not in result.output


def test_export_keeps_every_digit_of_a_stored_latency(tmp_path):
    with Database(tmp_path / "ncd.sqlite") as db:
        dev = db.add_device(DeviceSpec(name="d"))
        net = db.add_network("h0", "n", features={"total_macs": 1.0})
        db.add_measurement(net.id, dev.id, 4.667000212066341e-06)
        rows = list(csv.DictReader(open(export_csv(db, tmp_path / "t.csv").path)))
    assert float(rows[0]["latency_s"]) == 4.667000212066341e-06


def test_export_never_overwrites_the_database_or_a_results_file(profiled, tmp_path):
    results, _ = profiled
    db_path = tmp_path / "ncd.sqlite"
    assert runner.invoke(app, ["db", "import", str(results), "--db", str(db_path)]).exit_code == 0
    kept = results.read_bytes()
    for out, message in ((db_path, "is the database being exported"), (results, "is not an earlier `db export` CSV"),
                         (tmp_path, "is a folder")):
        result = runner.invoke(app, ["db", "export", "--db", str(db_path), "-o", str(out)])
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output
    assert results.read_bytes() == kept and not (tmp_path.parent / f"{tmp_path.name}.tmp").exists()
    for _ in range(2):  # an earlier export is replaced
        assert runner.invoke(app, ["db", "export", "--db", str(db_path), "-o", str(tmp_path / "t.csv")]).exit_code == 0
    assert runner.invoke(app, ["db", "stats", "--db", str(db_path)]).exit_code == 0


def _contended_and_clean(path):
    """Two records of one network: 2 threads timed in 3 sessions (biased), and in 1."""
    synthetic_results(path, 2)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for record, sessions in zip(records, (3, 1)):
        record["model"] = records[0]["model"]
        record["config"] = {"provider": "CPUExecutionProvider", "threads": 2}
        record["stats"]["sessions"] = sessions
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_records_timed_in_contended_sessions_are_imported_flagged(tmp_path):
    _contended_and_clean(tmp_path / "r.jsonl")
    with Database(tmp_path / "ncd.sqlite") as db:
        import_results(db, tmp_path / "r.jsonl")
        flags = sorted(m.flags for m in db.measurements())
        assert flags == [[], ["contended_sessions"]]
        network = db.networks()[0]
        db.set_network_features(network.id, {"total_macs": 1.0})
        table = export_csv(db, tmp_path / "t.csv")  # no --exclude-flag: contended ones are left out anyway
        rows = list(csv.DictReader(open(table.path)))
        assert table.rows == 1 and rows[0]["measurements"] == "1"


def test_an_older_database_gets_its_contended_measurements_flagged(tmp_path):
    current, path = tmp_path / "current.sqlite", tmp_path / "ncd.sqlite"
    with Database(current) as db:
        dev = db.add_device(DeviceSpec(name="d"))
        net = db.add_network("h0", "n0")
        for key, threads, sessions in (("t2s3", 2, 3), ("t1s3", 1, 3), ("t2s1", 2, 1), ("gpu", 0, 3)):
            provider = "CUDAExecutionProvider" if key == "gpu" else "CPUExecutionProvider"
            db.add_measurement(net.id, dev.id, 0.01, record_key=key, stats={"sessions": sessions},
                               config={"provider": provider, "threads": threads}, flags=["machine_busy"] if key == "t2s3" else [])
    as_older_version(current, path, 1)  # as a sniper-onnx of schema 1 left it
    with Database(path) as db:
        assert db.schema_version == SCHEMA_VERSION
        flagged = {m.record_key: m.flags for m in db.measurements()}
        assert flagged == {"t2s3": ["machine_busy", "contended_sessions"], "t1s3": [], "t2s1": [], "gpu": []}


def test_symbolic_dims_defaulted_can_be_left_out_of_an_export(tmp_path):
    with Database(tmp_path / "ncd.sqlite") as db:
        dev = db.add_device(DeviceSpec(name="d"))
        for index, flags in enumerate([[], ["symbolic_dims_defaulted"]]):
            net = db.add_network(f"h{index}", f"n{index}", features={"total_macs": 1.0 + index})
            db.add_measurement(net.id, dev.id, 0.01, flags=flags)
    result = runner.invoke(app, ["db", "export", "--db", str(tmp_path / "ncd.sqlite"), "--exclude-flag", "symbolic_dims_defaulted",
                                 "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1 row")


def test_exported_latencies_are_the_stored_floats_to_the_last_bit(tmp_path):
    import csv
    import random

    rng = random.Random(3)
    medians = [rng.uniform(0, 1) * 10 ** rng.randint(-7, 1) for _ in range(300)]
    with Database(tmp_path / "ncd.sqlite") as db:
        dev = db.add_device(DeviceSpec(name="d"))
        for index, median in enumerate(medians):
            net = db.add_network(f"h{index}", f"n{index}", features={"total_macs": 1.0})
            db.add_measurement(net.id, dev.id, median)
        export_csv(db, tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as handle:
        exported = [float(row["latency_s"]) for row in csv.DictReader(handle)]
    assert exported == medians  # SQLite's printf('%.17g') changed about half of them by an ulp


def test_a_record_without_a_device_is_left_out_and_the_rest_of_the_file_imports(tmp_path):
    results = synthetic_results(tmp_path / "r.jsonl", 3)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    del lines[1]["device"]
    lines[2]["device"]["spec"] = "not a spec"
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with Database(tmp_path / "ncd.sqlite") as db:
        summary = import_results(db, results)
    assert summary.added == 1 and len(summary.invalid_records) == 2
    assert summary.invalid_records[0].endswith("has no device; was it written by sniper-profiler?")
    result = runner.invoke(app, ["db", "import", str(results), "--db", str(tmp_path / "again.sqlite")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "2 records left out (listed above); the other 1 imported" in result.stderr


@pytest.mark.parametrize("field, value", [("config", [1]), ("model", "m"), ("inputs", "x"), ("stats", "x"),
                                          ("status", None), ("flags", "machine_busy"), ("flags", [1])])
def test_a_record_with_a_field_of_the_wrong_type_is_left_out_and_the_rest_imports(tmp_path, field, value):
    results = synthetic_results(tmp_path / "r.jsonl", 2)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    lines[0][field] = value
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = runner.invoke(app, ["db", "import", str(results), "--db", str(tmp_path / "ncd.sqlite")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "1 record left out (listed above); the other 1 imported" in result.stderr
    with Database(tmp_path / "ncd.sqlite") as db:
        assert [m.flags for m in db.measurements()] == [[]]


def test_a_record_whose_device_fingerprint_is_not_an_object_is_left_out(tmp_path):
    results = synthetic_results(tmp_path / "r.jsonl", 2)
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    lines[0]["device"]["fingerprint"] = "x"
    results.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with Database(tmp_path / "ncd.sqlite") as db:
        summary = import_results(db, results)
    assert summary.added == 1 and "device fingerprint is str" in summary.invalid_records[0]
