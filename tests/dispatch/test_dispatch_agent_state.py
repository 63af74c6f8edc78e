"""A long-lived agent (a Dask worker) serves run after run: state must follow the bytes and settings."""

from __future__ import annotations

import pytest
from dispatch_testkit import matmul_chain

from sniper_profiler import agent as agent_module
from sniper_profiler.agent import AgentSettings, DeviceAgent, dask_run_task


def test_same_model_name_with_other_bytes_gets_a_fresh_session(tmp_path):
    small = matmul_chain(tmp_path / "a.onnx", rows=4, width=8).read_bytes()
    large = matmul_chain(tmp_path / "b.onnx", rows=16, width=32).read_bytes()
    agent = DeviceAgent(AgentSettings("d"))
    first = agent.run(1, 0, "net", small)
    second = agent.run(2, 0, "net", large)
    assert (first.output_shapes, second.output_shapes) == ([[4, 8]], [[16, 32]])
    assert second.session_created
    assert agent.run(3, 0, "net", None).output_shapes == [[16, 32]]  # no source: the bytes last sent
    assert not agent.run(4, 0, "net", large).session_created  # same bytes: the warm session


def test_dask_agents_are_keyed_on_every_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_module, "_DASK_AGENTS", {})
    blob = matmul_chain(tmp_path / "a.onnx", rows=4, width=8).read_bytes()
    base = {"name": "d", "provider": "CPUExecutionProvider", "threads": 1, "graph_optimization": "all"}
    dask_run_task(base, 1, 0, "net", blob)
    dask_run_task({**base, "threads": 2, "graph_optimization": "disabled"}, 2, 0, "net", blob)
    settings = sorted((a.settings.threads, a.settings.graph_optimization) for a in agent_module._DASK_AGENTS.values())
    assert settings == [(1, "all"), (2, "disabled")]


def test_embedded_agent_ends_quietly_on_ctrl_c():
    import subprocess
    import sys

    code = ("import os, signal, threading\n"
            "from multiprocessing import Pipe\n"
            "from sniper_profiler.agent import AgentSettings, serve_pipe\n"
            "ours, theirs = Pipe()\n"
            "threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
            "serve_pipe(AgentSettings('d'), theirs)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_two_dispatchers_on_one_dask_agent_keep_their_own_nets(tmp_path, monkeypatch):
    """Both send model name "net" with other bytes, then tasks without bytes: each must run its own."""
    from sniper_onnx.dispatch import fleet_from_dict
    from dispatch_testkit import fleet_dict

    monkeypatch.setattr(agent_module, "_DASK_AGENTS", {})
    small = matmul_chain(tmp_path / "a.onnx", rows=4, width=8)
    large = matmul_chain(tmp_path / "b.onnx", rows=16, width=32).read_bytes()
    devices = [{"name": "d", "type": "all"}]
    first, second = (fleet_from_dict(fleet_dict({"net": small}, devices)).devices[0].agent_settings() for _ in range(2))
    dask_run_task(first, 1, 0, "net", small.read_bytes())
    dask_run_task(second, 1, 0, "net", large)
    assert dask_run_task(first, 2, 0, "net", None)["output_shapes"] == [[4, 8]]
    assert dask_run_task(second, 2, 0, "net", None)["output_shapes"] == [[16, 32]]
    assert len(agent_module._DASK_AGENTS) == 1  # one agent: the warm sessions stay shared


def _three_nets(tmp_path):
    return [matmul_chain(tmp_path / f"{name}.onnx", rows=4, width=8 * (i + 1)).read_bytes()
            for i, name in enumerate("abc")]


def test_a_bounded_agent_drops_the_least_recently_used_session_and_makes_it_again_from_reload(tmp_path):
    a, b, c = _three_nets(tmp_path)
    agent = DeviceAgent(AgentSettings("d"), max_sessions=2)
    for index, (name, blob) in enumerate(zip("abc", (a, b, c))):
        assert agent.run(index, 0, name, blob).status == "ok"
    assert (len(agent._sessions), agent.evicted) == (2, 1)  # a, the least recently used, was dropped
    assert not agent.has_model("a") and agent.has_model("b") and agent.has_model("c")
    gone = agent.run(3, 0, "a", None)
    assert gone.status == "failed" and "not loaded here" in gone.error
    assert agent.run(4, 0, "b", None).status == "ok"  # b is now more recent than c
    again = agent.run(5, 0, "a", None, reload=a)
    assert again.status == "ok" and again.session_created and again.output_shapes == [[4, 8]]
    assert agent.has_model("b") and not agent.has_model("c")  # c, not b, made room
    assert not agent.run(6, 0, "a", None, reload=a).session_created  # warm again: reload is not used


def test_the_session_bound_in_bytes_keeps_what_fits(tmp_path):
    a, b, c = _three_nets(tmp_path)
    agent = DeviceAgent(AgentSettings("d"), max_bytes=len(c) + len(b))
    for index, (name, blob) in enumerate(zip("abc", (a, b, c))):
        agent.run(index, 0, name, blob)
    assert sum(agent._sizes.values()) <= len(b) + len(c)
    assert [agent.has_model(name) for name in "abc"] == [False, True, True]


def test_a_running_session_is_never_dropped(tmp_path):
    a, b, c = _three_nets(tmp_path)
    agent = DeviceAgent(AgentSettings("d"), max_sessions=1)
    running, _ = agent._acquire("a", a, "", None)  # a task of another thread runs on it now
    assert agent.run(1, 0, "b", b).status == "ok"
    assert agent.run(2, 0, "c", c).status == "ok"
    assert agent.has_model("a")  # over the bound while it runs, rather than pulled from under the task
    agent._release(running)
    agent.run(3, 0, "b", b)
    assert not agent.has_model("a")


def test_dask_agents_are_bounded_by_the_worker_options(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_module, "_DASK_AGENTS", {})
    monkeypatch.setattr(agent_module, "DASK_LIMITS", dict(agent_module.DASK_LIMITS))
    monkeypatch.setattr(agent_module, "run_dask_worker", lambda *args: None)
    agent_module.main(["--scheduler", "tcp://127.0.0.1:8786", "--name", "d", "--max-sessions", "1",
                       "--max-session-mb", "64"])
    assert agent_module.DASK_LIMITS == {"max_sessions": 1, "max_bytes": 64 * 2**20}
    a, b, _ = _three_nets(tmp_path)
    settings = {"name": "d", "provider": "CPUExecutionProvider", "threads": 1, "graph_optimization": "all"}
    dask_run_task(settings, 1, 0, "a", a)
    dask_run_task(settings, 2, 0, "b", b)
    assert dask_run_task(settings, 3, 0, "a", None)["status"] == "failed"
    assert dask_run_task(settings, 4, 0, "a", None, reload=a)["output_shapes"] == [[4, 8]]


@pytest.mark.parametrize("option, value", [("--max-sessions", "0"), ("--max-session-mb", "0"),
                                           ("--max-session-mb", "nan"), ("--max-session-mb", "1e-7")])
def test_bad_session_bounds_are_one_line(option, value, monkeypatch):
    monkeypatch.setattr(agent_module, "run_dask_worker", lambda *args: pytest.fail("the worker started"))
    with pytest.raises(SystemExit) as stop:
        agent_module.main(["--scheduler", "tcp://127.0.0.1:8786", "--name", "d", option, value])
    assert str(stop.value.code).startswith(f"sniper-profiler agent: error: {option} ")
    assert "\n" not in str(stop.value.code)


def test_calibration_says_how_many_runs_its_median_took(tmp_path):
    from sniper_profiler.agent import _calibrate

    blob = matmul_chain(tmp_path / "a.onnx", rows=4, width=8).read_bytes()
    result = _calibrate(DeviceAgent(AgentSettings("d")), "a", blob, 6)
    assert result["status"] == "ok" and result["count"] == 6


def test_calibration_makes_the_session_again_when_another_task_dropped_it(tmp_path):
    from sniper_profiler.agent import _calibrate

    blob = matmul_chain(tmp_path / "a.onnx", rows=4, width=8).read_bytes()
    agent = DeviceAgent(AgentSettings("d"))
    real_run, calls = agent.run, []

    def run_then_evict(*args, **kwargs):  # another task of the worker evicts the idle session between runs
        calls.append(kwargs.get("reload"))
        result = real_run(*args, **kwargs)
        agent._sessions.clear()
        return result

    agent.run = run_then_evict
    result = _calibrate(agent, "a", blob, 3)
    assert result["status"] == "ok" and result["count"] == 3, result
    assert calls[0] is None and all(reload is blob for reload in calls[1:])
