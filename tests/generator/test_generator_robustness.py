"""`generate` under stress: huge counts, signals, interrupted runs, bad paths, edited manifests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sniper_generator.dataset import generate_dataset, read_manifest
from sniper_onnx.cli import app

runner = CliRunner()
QUICK = ["--max-macs", "2e6"]
SNIPER = Path(sys.executable).with_name("sniper-onnx")


def _one_line_error(result, words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("sniper-onnx: error:") and words in lines[0], result.output
    assert "Traceback" not in result.output


def test_a_huge_count_is_streamed_not_listed_first():
    """-n 1e20 once built every task before the first net (7 GB in 25 s); with 2 GB of address space
    to spare, listing them fails at once, streaming them gives the first nets."""
    script = (
        "import itertools, resource\n"
        "from sniper_generator.dataset import iter_records\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
        "import psutil; limit = psutil.Process().memory_info().vms + (2 << 30)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, hard))\n"
        "for jobs in (1, 2):\n"
        "    print(len(list(itertools.islice(iter_records(10**20, 0, 'tiny', None, None, jobs), 3))))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.split() == ["3", "3"], done.stderr[-2000:]


def _children(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


@pytest.mark.skipif(not SNIPER.exists() or os.name != "posix", reason="needs the console script and POSIX signals")
def test_sigterm_stops_the_workers_and_says_what_was_kept(tmp_path):
    import psutil

    out = tmp_path / "nets"
    process = subprocess.Popen([str(SNIPER), "generate", "-n", "100000", "-f", "tiny", "-j", "2", "-o", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    workers: list[int] = []
    try:
        partial = out / "manifest.jsonl.partial"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (partial.exists() and partial.read_text().count("\n") >= 3):
            time.sleep(0.1)
        workers = _children(process.pid)
        assert workers, "no worker process started"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        assert "sniper-onnx: interrupted; the " in err and "Traceback" not in err, err
        time.sleep(0.5)
        alive = [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
        assert not alive, f"workers left running: {alive}"
        listed = {json.loads(line)["file"] for line in partial.read_text().splitlines()}
        assert {path.name for path in out.glob("*.onnx")} == listed
    finally:
        for pid in [process.pid, *workers]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        process.communicate()


class _Stop(KeyboardInterrupt):
    pass


def test_an_interrupted_run_leaves_only_files_its_partial_lists_and_overwrite_cleans_them(tmp_path):
    """-j 2 once left files of nets under way that no manifest listed, and a new run replaced the
    .partial silently, so nothing could find those files again."""
    seen = []

    def progress(done: int) -> None:
        if done == 3:
            time.sleep(1.0)  # let the workers write ahead, as they do in a real run
            raise _Stop()

    with pytest.raises(_Stop):
        generate_dataset(40, 5, tmp_path, "cnn", max_macs=2e6, jobs=2, progress=progress, interrupted=seen.append)
    partial = tmp_path / "manifest.jsonl.partial"
    listed = {json.loads(line)["file"] for line in partial.read_text().splitlines()}
    assert len(listed) == 3 and {path.name for path in tmp_path.iterdir()} == listed | {partial.name}
    assert [(left.nets, left.onnx_files) for left in seen] == [(3, 3)]
    assert "3 ONNX files" in seen[0].hint() and "--overwrite" in seen[0].hint()

    arguments = ["generate", "-n", "1", "--seed", "5", "--out", str(tmp_path), *QUICK]
    _one_line_error(runner.invoke(app, arguments), "manifest.jsonl.partial: left by an interrupted run, with 3")
    result = runner.invoke(app, [*arguments, "--overwrite", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["removed_partial_onnx"] == 3
    new = {json.loads(line)["file"] for line in (tmp_path / "manifest.jsonl").read_text().splitlines()}
    assert {path.name for path in tmp_path.glob("*.onnx")} == new and not partial.exists()


def test_interrupted_is_said_by_the_cli(tmp_path, monkeypatch):
    import sniper_generator.dataset as dataset

    real = dataset.spec_features
    calls = []

    def stop_at_the_third(spec):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(spec)

    monkeypatch.setattr(dataset, "spec_features", stop_at_the_third)
    result = runner.invoke(app, ["generate", "-n", "5", "--out", str(tmp_path), *QUICK])
    assert result.exit_code == 130, result.output
    assert ("interrupted; the 2 nets made so far are listed in " in result.output
            and "with the 2 ONNX files written" in result.output), result.output
    assert len(list(tmp_path.glob("*.onnx"))) == 2 and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("plot", [".", "..", "folder", "folder/"])
def test_a_plot_path_that_is_a_folder_is_refused(plot, tmp_path, monkeypatch):
    (tmp_path / "sub" / "folder").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "sub")
    result = runner.invoke(app, ["generate", "--coverage", "-n", "2", "--plot", plot])
    _one_line_error(result, "is a folder; give a file path")
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["folder", "sub"]


def test_a_manifest_path_that_is_a_folder_is_named_before_anything_is_written(tmp_path):
    (tmp_path / "manifest.jsonl").mkdir()
    result = runner.invoke(app, ["generate", "-n", "1", "--out", str(tmp_path), "--overwrite", *QUICK])
    _one_line_error(result, f"{tmp_path / 'manifest.jsonl'}: is a directory")
    assert [path.name for path in tmp_path.iterdir()] == ["manifest.jsonl"]


def test_read_manifest_refuses_a_line_whose_config_was_edited(tmp_path):
    assert runner.invoke(app, ["generate", "-n", "2", "--out", str(tmp_path), "--manifest-only", *QUICK]).exit_code == 0
    manifest = tmp_path / "manifest.jsonl"
    assert len(read_manifest(manifest)) == 2
    lines = manifest.read_text().splitlines()
    record = json.loads(lines[1])
    record["config"]["batch"] = record["config"]["batch"] + 1
    manifest.write_text("\n".join([lines[0], json.dumps(record)]) + "\n")
    from sniper_onnx.errors import SniperError

    with pytest.raises(SniperError, match=rf"manifest.jsonl:2: net_id {record['net_id']} does not match"):
        read_manifest(manifest)


def test_zoo_export_help_says_it_replaces_a_file():
    result = runner.invoke(app, ["zoo", "export", "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "replaced without asking" in result.output
