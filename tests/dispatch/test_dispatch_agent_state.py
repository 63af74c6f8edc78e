"""A long-lived agent (a Dask worker) serves run after run: state must follow the bytes and settings."""

from __future__ import annotations

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
