"""Engines move tasks to device agents and bring results back; the dispatcher decides.

Both engines speak the same small protocol to the dispatcher:

- ``start(device)``: bring a device up (embedded: spawn its worker process; Dask: wait for the
  named worker to join, and check the protocol its agent reported, see :func:`_agent_refusal`);
  ``ready`` follows when it answers;
- ``calibrate(device, model, repeats)``: warm a session up and time it (``calibrated`` follows);
- ``send(device, task_id, attempt, model, input)``: run one task (``result`` follows);
- ``poll(timeout)``: the events since the last poll, including ``died`` when a device is gone;
- ``kill(device)``: SIGKILL the device's process (fault runs and tests);
- ``forget(device, model)``: drop what the engine keeps of a model for a device (Dask: its bytes
  scattered to the worker), when no later task of that model will go there;
- ``close()``.

The dispatcher sends one task at a time per device, so neither engine ever holds a queue of its
own: in Dask, work stealing and placement have nothing to move (every task is pinned to its
device's worker name and is the only task that worker has).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Optional

from sniper_onnx.dispatch.fleet import FleetDevice
from sniper_onnx.errors import SniperError


# a worker exits with this when starting it ran the caller's script again and that called
# dispatch() or profile_fleet() (no ``if __name__ == "__main__":`` guard): see refuse_unguarded_main
UNGUARDED_MAIN_EXIT = 87
WORKER_PREFIX = "sniper-agent-"
UNGUARDED_MAIN = ("a device worker could not start: the script that calls {api}() has no "
                  "'if __name__ == \"__main__\":' guard, so each worker process (started with spawn) ran the "
                  "script again; put the call under that guard")


def refuse_unguarded_main() -> None:
    """In a worker process still importing the caller's script (spawn runs it again before the
    worker's own code): end it quietly with a code the dispatcher turns into one clear error.
    Without this the worker dies of multiprocessing's RuntimeError, its traceback printed once
    per device, and dispatch() waited for devices that never came."""
    import multiprocessing

    process = multiprocessing.current_process()
    if getattr(process, "_inheriting", False) and process.name.startswith(WORKER_PREFIX):
        raise SystemExit(UNGUARDED_MAIN_EXIT)


@dataclass
class Event:
    kind: str  # ready | calibrated | result | died
    device: str
    model: str = ""
    payload: Any = None


class EmbeddedEngine:
    """One local process per device (``multiprocessing`` spawn), talking over a pipe."""

    name = "embedded"

    def __init__(self, model_paths: dict[str, str], api: str = "dispatch") -> None:
        import multiprocessing

        self._api = api  # the call named when a worker finds the caller's script unguarded
        self._context = multiprocessing.get_context("spawn")
        self._model_paths = model_paths
        self._processes: dict[str, Any] = {}
        self._connections: dict[str, Any] = {}
        self.pids: dict[str, int] = {}
        self._gone: dict[str, Any] = {}

    def start(self, device: FleetDevice) -> None:
        """Start ``device``'s worker; one that is still there (killed for hanging, started again)
        is ended and reaped first, so its pipe and process are not left behind."""
        from sniper_profiler.agent import AgentSettings

        old = self._processes.pop(device.name, None)
        if old is not None:
            if old.is_alive():
                old.kill()
            old.join(timeout=1.0)
            self._connections.pop(device.name).close()
        parent, child = self._context.Pipe()
        settings = AgentSettings(**device.agent_settings())
        process = self._context.Process(target=serve_quietly, args=(settings, child),
                                        name=f"{WORKER_PREFIX}{device.name}", daemon=True)
        process.start()
        child.close()
        self._processes[device.name] = process
        self._connections[device.name] = parent
        self.pids[device.name] = process.pid

    def calibrate(self, device: str, model: str, repeats: int) -> None:
        self._send(device, ("calibrate", model, self._model_paths[model], repeats))

    def send(self, device: str, task_id: int, attempt: int, model: str, input_path: Optional[str]) -> None:
        self._send(device, ("run", task_id, attempt, model, self._model_paths[model], input_path))

    def _send(self, device: str, message: tuple) -> None:
        try:
            self._connections[device].send(message)
        except (OSError, ValueError, KeyError):
            pass  # the device is dying; poll() reports it

    def poll(self, timeout: float) -> list[Event]:
        from multiprocessing.connection import wait

        if not self._connections:
            time.sleep(max(timeout, 0.0))
            return []
        by_handle: dict[Any, str] = {}
        for name, connection in self._connections.items():
            by_handle[connection] = name
            by_handle[self._processes[name].sentinel] = name
        events: list[Event] = []
        dead: set[str] = set()
        for handle in wait(list(by_handle), timeout=max(timeout, 0.0)):
            name = by_handle[handle]
            if name in dead:
                continue
            if self._drain(name, events):
                dead.add(name)
        for name in dead:
            self._forget(name)
            if self._exitcode(name) == UNGUARDED_MAIN_EXIT:
                raise SniperError(UNGUARDED_MAIN.format(api=self._api))
            events.append(Event("died", name, payload=f"worker process exited (code {self._exitcode(name)})"))
        return events

    def _drain(self, name: str, events: list[Event]) -> bool:
        """Read every message waiting from ``name``; True when its process is gone."""
        connection = self._connections[name]
        try:
            while connection.poll():
                events.append(_event(name, connection.recv()))
        except (EOFError, OSError):
            return True
        return not self._processes[name].is_alive()

    def _exitcode(self, name: str) -> Any:
        process = self._gone.get(name)
        return process.exitcode if process is not None else None

    def _forget(self, name: str) -> None:
        process = self._processes.pop(name)
        process.join(timeout=1.0)
        self._gone[name] = process
        self._connections.pop(name).close()

    def forget(self, device: str, model: str) -> None:
        pass  # the agent reads the model's file; nothing is kept here

    def kill(self, device: str) -> None:
        pid = self.pids.get(device)
        if pid is not None and device in self._processes:
            os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        for name in list(self._processes):
            self._send(name, ("stop",))
        deadline = time.monotonic() + 5.0
        for name, process in list(self._processes.items()):
            process.join(timeout=max(deadline - time.monotonic(), 0.1))
            if process.is_alive():
                process.kill()
                process.join(timeout=1.0)
            self._connections[name].close()
        self._processes.clear()
        self._connections.clear()


def serve_quietly(settings: Any, connection: Any) -> None:
    """A worker's entry: the agent with its stdout sent to stderr. onnxruntime prints its banners
    (``*** EP Error ***`` when a provider falls back) on stdout, which is the dispatcher's too, and
    ``--json`` must stay one object there."""
    import sys

    from sniper_profiler.agent import serve_pipe

    try:
        sys.stdout.flush()
        os.dup2(2, 1)  # the C++ side writes to the descriptor, Python's print to sys.stdout
    except OSError:
        pass
    sys.stdout = sys.stderr
    serve_pipe(settings, connection)


def _event(device: str, message: tuple) -> Event:
    if message[0] == "ready":
        return Event("ready", device, payload=message[1])
    if message[0] == "calibrated":
        return Event("calibrated", device, model=message[1], payload=message[2])
    return Event("result", device, payload=message[1])


class DaskEngine:
    """Devices are named Dask workers (``python -m sniper_profiler.agent --name NAME``)."""

    name = "dask"
    MEMBERSHIP_EVERY_S = 0.2
    # an older agent's refusal, held until the answers that came with it are handed over (a class
    # default: set per engine only once an agent refuses)
    _refusal: Optional[SniperError] = None

    def __init__(self, scheduler: Any, model_bytes: dict[str, bytes], settings: dict[str, dict]) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise SniperError('engine dask: Dask is not installed; pip install "dask[distributed]"') from None
        try:
            self.client = scheduler if isinstance(scheduler, Client) else Client(scheduler, timeout=30)
        except OSError as error:
            raise SniperError(f"engine dask: cannot reach the scheduler at {scheduler} ({error}); start it with "
                              "`dask scheduler` and check the fleet's 'scheduler' address") from None
        self._owns_client = not isinstance(scheduler, Client)
        self._settings = settings
        self._model_bytes = model_bytes
        self._device_data: dict[tuple[str, str], Any] = {}
        self._wanted: set[str] = set()
        self._present: set[str] = set()
        self._pending: dict[Any, tuple[str, str, str]] = {}  # future -> (kind, device, model)
        self._tasks: dict[Any, tuple[int, int]] = {}  # a task's future -> (task_id, attempt)
        self._checked = 0.0
        self.pids: dict[str, int] = {}
        self._addresses: dict[str, str] = {}

    def start(self, device: FleetDevice) -> None:
        self._wanted.add(device.name)
        self._checked = 0.0  # look now

    def calibrate(self, device: str, model: str, repeats: int) -> None:
        from sniper_profiler.agent import dask_calibrate

        # the bytes go straight to this device's worker (not through the scheduler, not to a worker
        # that may die with the only copy); the warm session then serves every task of the model
        data = self.client.scatter(self._model_bytes[model], workers=[self._addresses[device]], hash=False)
        self._device_data[(device, model)] = data
        future = self.client.submit(dask_calibrate, self._settings[device], model, data, repeats,
                                    workers=[device], allow_other_workers=False, pure=False)
        self._pending[future] = ("calibrated", device, model)

    def send(self, device: str, task_id: int, attempt: int, model: str, input_path: Optional[str]) -> None:
        from sniper_profiler.agent import dask_run_task

        # no bytes with the task: the warm session serves it; ``reload`` (the bytes already scattered
        # to this worker) makes the session again only if the agent dropped it (its session bound)
        future = self.client.submit(dask_run_task, self._settings[device], task_id, attempt, model, None, input_path,
                                    reload=self._device_data.get((device, model)),
                                    workers=[device], allow_other_workers=False, pure=False,
                                    key=f"sniper-task-{task_id}-{attempt}-{device}-{time.monotonic_ns()}")
        self._pending[future] = ("result", device, model)
        self._tasks[future] = (task_id, attempt)

    def poll(self, timeout: float) -> list[Event]:
        from distributed import wait

        if self._refusal is not None:  # the answers that came with it were returned by the last poll
            raise self._refusal
        events: list[Event] = []
        if time.monotonic() - self._checked >= self.MEMBERSHIP_EVERY_S:
            events.extend(self._membership())
        if self._pending:
            try:
                wait(list(self._pending), timeout=max(min(timeout, self.MEMBERSHIP_EVERY_S), 0.001),
                     return_when="FIRST_COMPLETED")
            except Exception:  # noqa: BLE001 - a timeout; done futures are read below
                pass
        else:
            time.sleep(max(min(timeout, self.MEMBERSHIP_EVERY_S), 0.0))
        events.extend(self._finished())
        if self._refusal is not None and not events:
            raise self._refusal
        return events

    def _finished(self) -> list[Event]:
        """The answers of the futures done now. An older agent's refusal is held, not raised here:
        the answers popped before it would be lost with this list."""
        events = []
        for future in [f for f in self._pending if f.done()]:
            kind, device, model = self._pending.pop(future)
            task = self._tasks.pop(future, (-1, 0))
            if future.status == "error":
                refusal = _older_agent(device, future.exception())
                if refusal is not None:
                    # no answer for it: its task stays open, so the caller polls again and meets it
                    self._refusal = self._refusal or refusal
                    continue
                # the task raised outside the agent's own try (or the worker could not run it): the
                # device is alive, so answer for it, or the dispatcher waits on it forever
                events.append(Event(kind, device, model=model, payload=_failed(kind, device, task, future)))
            elif future.status == "finished":
                try:
                    events.append(Event(kind, device, model=model, payload=future.result()))
                except (asyncio.CancelledError, concurrent.futures.CancelledError):
                    # the answer lived on a worker that died since: gone with it, and the
                    # membership check reports the device (its task is sent again)
                    pass
            # cancelled: its worker left, and the membership check reports the device
        return events

    def _membership(self) -> list[Event]:
        self._checked = time.monotonic()
        workers = self.client.run_on_scheduler(_worker_names)
        names = {str(name) for name in workers}
        events = []
        # a worker started again under the same name between two looks (a new address): the old one died
        restarted = {name for name in names & self._present if workers[name][1] != self._addresses.get(name)}
        events.extend(self._left(restarted, "Dask worker was replaced by a new one of the same name"))
        joined = sorted((names & self._wanted) - self._present)
        agents = self._agent_info() if joined else {}
        for name in joined:
            if workers[name][1] not in agents:
                continue  # replaced between the two looks at the scheduler: joins at the next check
            self._present.add(name)
            self.pids[name], self._addresses[name] = workers[name]
            # its agent's protocol, checked before the device is "ready" (so before any calibration
            # or task reaches it): at the start, and for a worker that joins or is restarted mid-run
            refusal = _agent_refusal(name, agents.get(workers[name][1]))
            if refusal is not None:
                self._refusal = self._refusal or refusal  # raised once these events are handed over
                continue
            events.append(Event("ready", name, payload=workers[name][0]))
        events.extend(self._left(self._present - names, "Dask worker left the scheduler"))
        return events

    def _agent_info(self) -> dict[str, Any]:
        """Worker address -> what its agent reported when it registered (None: nothing, an older
        agent). Read from the scheduler's identity of its workers: no code of ours runs there."""
        workers = self.client.scheduler_info(n_workers=-1).get("workers", {})
        return {str(address): identity.get(AGENT_INFO_KEY) for address, identity in workers.items()}

    def _left(self, gone: "set[str]", why: str) -> list[Event]:
        events = []
        for name in sorted(gone):
            self._present.discard(name)
            self._device_data = {key: data for key, data in self._device_data.items() if key[0] != name}
            for future, (_, device, _) in list(self._pending.items()):
                if device == name:
                    future.cancel()
                    del self._pending[future]
                    self._tasks.pop(future, None)
            events.append(Event("died", name, payload=why))
        return events

    def forget(self, device: str, model: str) -> None:
        self._device_data.pop((device, model), None)

    def kill(self, device: str) -> None:
        if device in self._addresses:
            try:  # the worker dies before it can answer
                self.client.run(_kill_self, workers=[self._addresses[device]], on_error="return")
            except Exception:  # noqa: BLE001
                pass

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        if self._owns_client:
            self.client.close()


# The dispatcher-agent protocol these calls speak: sniper_profiler.agent.AGENT_PROTOCOL of the same
# checkout (its comment lists what each number changed). A Dask agent reports its own when its
# worker registers, under AGENT_INFO_KEY; an agent from before the number reports none (protocol 1).
AGENT_PROTOCOL = 2
AGENT_INFO_KEY = "sniper_agent"
NO_PROTOCOL = 1  # what an agent that reports none speaks: the protocol of before 2026-11-29

# Keywords this dispatcher passes to a Dask agent's functions that an older sniper-profiler does
# not take (each with the change that added it): such an agent fails every task and calibration
# alike with a TypeError, so it is one error for the device, not a failure per net. The protocol
# check at join refuses such an agent first; this stays for an agent that reports a protocol it
# does not speak (a sniper-profiler edited on the device).
NEWER_AGENT_KEYWORDS = {
    "reload": "dask_run_task's reload (2026-11-29: a task remakes a session its agent dropped)",
    "scope": "AgentSettings.scope (2026-11-29: two dispatchers sharing one agent)",
}
# docs/dispatch.md, "A device joins a fleet": the command that installs the agent on a device
AGENT_INSTALL = "pip install --no-deps ./profiler"
OLDER_AGENT_FIX = (f"upgrade sniper-profiler on that device (`{AGENT_INSTALL}` from this sniper-onnx's checkout), "
                   "start its agent again and run this again")


def _agent_protocol(info: Any) -> tuple[int, int, str]:
    """(protocol, oldest dispatcher protocol it answers, sniper-profiler version) from what an agent
    reported at registration; an agent that reported nothing usable speaks :data:`NO_PROTOCOL`."""
    if not isinstance(info, dict) or not isinstance(info.get("protocol"), int):
        return NO_PROTOCOL, NO_PROTOCOL, ""
    protocol = int(info["protocol"])
    oldest = info.get("oldest_dispatcher")
    return protocol, int(oldest) if isinstance(oldest, int) else protocol, str(info.get("version") or "")


def _agent_refusal(device: str, info: Any) -> Optional[SniperError]:
    """One line naming the device, both protocols and the fix when this dispatcher cannot talk to
    the device's agent; None when it can.

    An older agent is refused, not called the old way (see :func:`_older_agent`). A newer agent is
    accepted when it still answers this dispatcher's protocol (``oldest_dispatcher``: a change
    that only adds a keyword with a default keeps it), else refused: upgrade this sniper-onnx."""
    protocol, oldest, version = _agent_protocol(info)
    installed = f", sniper-profiler {version}" if version else ""
    if protocol < AGENT_PROTOCOL:
        reported = isinstance(info, dict) and isinstance(info.get("protocol"), int)
        said = (f"agent protocol {protocol}{installed}" if reported else
                f"it reports no agent protocol, so protocol {NO_PROTOCOL}: an agent from before 2026-11-29, "
                "or a Dask worker not started with `python -m sniper_profiler.agent`")
        return SniperError(f"device {device}: its agent runs an older sniper-profiler than this sniper-onnx "
                           f"({said}; this sniper-onnx speaks protocol {AGENT_PROTOCOL}); {OLDER_AGENT_FIX}")
    if oldest > AGENT_PROTOCOL:
        return SniperError(
            f"device {device}: its agent runs a newer sniper-profiler than this sniper-onnx (agent protocol "
            f"{protocol}{installed}, answering dispatchers of protocol {oldest} and later; this sniper-onnx speaks "
            f"protocol {AGENT_PROTOCOL}); upgrade sniper-onnx here from the checkout the agent came from "
            f"(`pip install -e ./profiler -e .` there), or install this checkout's sniper-profiler on that device "
            f"(`{AGENT_INSTALL}`) and start its agent again; then run this again")
    return None


def _older_agent(device: str, error: Optional[BaseException]) -> Optional[SniperError]:
    """One line naming the device and the fix when its agent is an older sniper-profiler, else None.

    Refused (the run stops) rather than worked around (calling it without the keyword): agents of
    several ages differ in several ways (scope, reload, the farm's measurement settings), and a run
    half served by an agent that times nets another way is worse than no run. Agents since protocol 2
    are checked when they join (:func:`_agent_refusal`); this catches one that reports a protocol
    its task functions do not speak, from the TypeError of its first task."""
    if not isinstance(error, TypeError):
        return None
    text = " ".join(str(error).split())
    for keyword, change in NEWER_AGENT_KEYWORDS.items():
        if f"unexpected keyword argument '{keyword}'" in text:
            return SniperError(
                f"device {device}: its agent runs an older sniper-profiler than this sniper-onnx, without {change} "
                f"({type(error).__name__}: {text}); {OLDER_AGENT_FIX}")
    return None


def _refuse_older_agent(device: str, error: Optional[BaseException]) -> None:
    """Raise :func:`_older_agent`'s error, if any: for a caller holding no answers it could lose
    (the tests' engines stand in for DaskEngine with it)."""
    refusal = _older_agent(device, error)
    if refusal is not None:
        raise refusal


def _failed(kind: str, device: str, task: tuple[int, int], future: Any) -> dict[str, Any]:
    """A failure answer shaped like the agent's own: a calibration's or a task's."""
    from sniper_profiler.agent import RESULT_FAILED, TaskResult

    error = future.exception()
    text = f"{type(error).__name__}: {' '.join(str(error).split())}"[:400]
    if kind == "calibrated":
        return {"status": RESULT_FAILED, "error": text}
    return TaskResult(task[0], task[1], device, RESULT_FAILED, error=text).to_dict()


def _worker_names(dask_scheduler: Any) -> dict[str, tuple[int, str]]:
    return {str(ws.name): (int(ws.pid or 0), str(ws.address)) for ws in dask_scheduler.workers.values()}


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
