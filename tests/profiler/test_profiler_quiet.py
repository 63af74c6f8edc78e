import json

import pytest

from profiler_testkit import tiny_mlp

from sniper_profiler import quiet
from sniper_profiler.__main__ import main


def _busy_sequence(monkeypatch, values):
    values = list(values)
    monkeypatch.setattr(quiet, "cpu_busy_fraction", lambda window_s=1.0: values.pop(0) if values else 0.0)
    monkeypatch.setattr(quiet.time, "sleep", lambda seconds: None)


def test_waits_until_the_machine_is_quiet(monkeypatch):
    _busy_sequence(monkeypatch, [0.9, 0.5, 0.05])
    check = quiet.wait_until_quiet(0.1, timeout_s=60)
    assert check.quiet and check.busy == 0.05


def test_gives_up_after_the_timeout(monkeypatch):
    _busy_sequence(monkeypatch, [0.9] * 3)
    check = quiet.wait_until_quiet(0.1, timeout_s=0)
    assert not check.quiet and check.busy == 0.9


def test_busy_machine_is_flagged_in_the_record(tmp_path, monkeypatch):
    monkeypatch.setattr("sniper_profiler.runner.wait_until_quiet", lambda max_busy, timeout: quiet.QuietCheck(0.8, 0.0, False))
    out = tmp_path / "r.jsonl"
    main(["run", str(tiny_mlp(tmp_path / "m.onnx")), "--out", str(out), "-q", "--max-time", "0.02", "--max-busy", "0.1"])
    record = json.loads(out.read_text())
    assert "machine_busy" in record["flags"] and record["machine_check"]["cpu_busy_before"] == 0.8


def test_busy_fraction_is_a_share_or_none():
    busy = quiet.cpu_busy_fraction(0.05)
    assert busy is None or 0.0 <= busy <= 1.0


def test_work_that_starts_during_a_measurement_flags_it(tmp_path, monkeypatch):
    monkeypatch.setattr("sniper_profiler.runner.wait_until_quiet", lambda max_busy, timeout: quiet.QuietCheck(0.0, 0.0, True))
    monkeypatch.setattr("sniper_profiler.runner.run_child", lambda path, config: {
        "status": "ok", "stats": {"median_s": 1e-3, "others_busy_during": 0.45}, "flags": []})
    out = tmp_path / "r.jsonl"
    main(["run", str(tiny_mlp(tmp_path / "m.onnx")), "--out", str(out), "-q", "--max-busy", "0.1"])
    assert "machine_busy" in json.loads(out.read_text())["flags"]


def test_others_busy_meter_sees_another_process_spinning():
    import subprocess
    import sys
    import time

    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.2)
        meter = quiet.OthersBusyMeter()
        time.sleep(0.6)
        share = meter.share()
    finally:
        spinner.kill()
        spinner.wait()
    # One spinning process is at least a core's worth of the machine's CPUs (from /proc/stat).
    import os

    assert share is None or share >= 0.8 / (os.cpu_count() or 1)


def test_a_tick_of_counting_error_on_a_short_window_is_not_other_work():
    # 20 ms timed on 2 CPUs, ours 21 ms of it (2 ticks): 2 ticks more are the counters' error, one a CPU
    assert quiet.others_share(busy_ticks=4, own_s=0.021, wall_s=0.02, cpus=2, ticks_per_s=100) == 0.0
    # a second timed, another process spinning one of the two CPUs throughout
    assert quiet.others_share(busy_ticks=200, own_s=1.0, wall_s=1.0, cpus=2, ticks_per_s=100) == pytest.approx(0.49)
    assert quiet.others_share(busy_ticks=900, own_s=1.0, wall_s=1.0, cpus=2, ticks_per_s=100) == 1.0
