"""The device agent: runs the inference tasks a dispatcher sends, on warm onnxruntime sessions.

One agent is one device (one configuration of threads, provider and graph optimization level).
It keeps a session per model, so only the first task of a model pays for session creation (a
Dask agent, which outlives runs, keeps at most 16 sessions / 2048 MB of models by default, least
recently used dropped first), and times ``session.run`` alone: that is the execution time the
dispatcher feeds back to the database and to the predictor.

Two ways to reach it, both thin over :class:`DeviceAgent`:

- embedded (``sniper_onnx.dispatch``): a local process per device, :func:`serve_pipe` on one end
  of a ``multiprocessing`` pipe;
- Dask distributed (``pip install "sniper-profiler[agent]"``): the device runs a named Dask worker,
  ``python -m sniper_profiler.agent --scheduler tcp://HOST:8786 --name jetson-0`` (threads,
  provider and graph optimization come from the fleet file with each task), and the dispatcher
  submits :func:`dask_run_task` pinned to that worker. Dask is imported only there, so a device
  without the extra keeps numpy + onnxruntime only.

Python 3.8 compatible on purpose: it runs on JetPack images.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from sniper_profiler.config import ProfileConfig
from sniper_profiler.measure import create_session, make_inputs, measure

RESULT_OK = "ok"
RESULT_FAILED = "failed"

# The dispatcher-agent protocol: bumped whenever the calls a dispatcher makes to an agent change
# (a function, an argument, the fields of an answer), with a line below and the same number in
# sniper_onnx.dispatch.engines.AGENT_PROTOCOL. A Dask agent reports it to the scheduler when its
# worker registers (:func:`dask_agent_protocol`, under AGENT_INFO_KEY), and the dispatcher refuses
# a device whose agent it cannot talk to before sending it anything (docs/dispatch.md).
#   1: before 2026-11-29; reports no protocol
#   2 (2026-11-29): dask_run_task's ``reload``, AgentSettings' ``scope``; the protocol reported
AGENT_PROTOCOL = 2
# The oldest dispatcher protocol this agent still answers: AGENT_PROTOCOL when a change drops the
# old calls; left lower when a newer agent still takes them (a keyword added with a default).
OLDEST_DISPATCHER_PROTOCOL = 2
# the key of the Dask worker's startup information (the scheduler's WorkerState.extra) holding it
AGENT_INFO_KEY = "sniper_agent"


@dataclass
class AgentSettings:
    """How this device runs models: the settings that make it a different device."""

    name: str
    provider: str = "CPUExecutionProvider"
    threads: int = 1
    graph_optimization: str = "all"
    # one dispatcher's fleet (a fresh one per fleet load): a long-lived Dask agent serves several
    # dispatchers at once, and each one's model names must map to its own bytes (DeviceAgent)
    scope: str = ""

    def profile_config(self, **measurement: Any) -> ProfileConfig:
        return ProfileConfig(provider=self.provider, threads=self.threads, graph_optimization=self.graph_optimization,
                             **measurement)


@dataclass
class TaskResult:
    """What comes back for one task; ``seconds`` is ``session.run`` alone."""

    task_id: int
    attempt: int
    device: str
    status: str
    seconds: float = 0.0
    session_created: bool = False
    output_shapes: Optional[List[List[int]]] = None
    error: str = ""
    pid: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class DeviceAgent:
    """Warm sessions keyed by the model's bytes (sha256); one task at a time.

    A long-lived agent (a Dask worker) serves run after run, and two runs may give one model name
    to different nets: keying on the name would time the old net under the new name. A task that
    sends no source runs the bytes last sent under its name by the same ``scope`` (one dispatcher's
    fleet): two dispatchers sharing this agent at once each get their own nets.

    ``max_sessions`` and ``max_bytes`` (the models' sizes, summed) bound the warm sessions: past
    either, the least recently used session is dropped, never one that is running. ``None``: no
    bound (an embedded agent, which lives for one run and holds that fleet's models only). A task
    whose session was dropped makes it again from ``reload`` (the bytes its dispatcher left on this
    device), reported as ``session_created``."""

    def __init__(self, settings: AgentSettings, max_sessions: Optional[int] = None,
                 max_bytes: Optional[int] = None) -> None:
        if max_sessions is not None and max_sessions < 1:
            raise ValueError(f"max_sessions {max_sessions}: must be at least 1")
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes {max_bytes}: must be more than 0")
        self.settings = settings
        self.max_sessions = max_sessions
        self.max_bytes = max_bytes
        self.evicted = 0  # sessions dropped to stay within the bounds
        self._config = settings.profile_config()
        # sha256 of the bytes -> session, least recently used first
        self._sessions: "OrderedDict[str, Any]" = OrderedDict()
        self._feeds: Dict[str, Dict[str, np.ndarray]] = {}
        self._sizes: Dict[str, int] = {}  # sha256 -> the model's size in bytes
        self._running: Dict[str, int] = {}  # sha256 -> tasks running on that session now
        self._latest: Dict[Tuple[str, str], str] = {}  # (scope, model name) -> sha256 of the bytes last sent
        self._lock = threading.RLock()  # a worker with several threads must not drop a running session

    def has_model(self, model: str, scope: str = "") -> bool:
        return self._latest.get((scope, model)) in self._sessions

    def load(self, model: str, source: Any, scope: str = "") -> bool:
        """``source``: a path or the model's bytes; True when a session was created."""
        with self._lock:
            return self._load(model, source, scope)[1]

    def _load(self, model: str, source: Any, scope: str) -> Tuple[str, bool]:
        digest = _digest(source)
        self._latest[(scope, model)] = digest
        if digest in self._sessions:
            self._sessions.move_to_end(digest)
            return digest, False
        size = _size(source)
        self._evict(room_for=size)  # before the new session exists: the peak stays within the bounds
        session = create_session(source, self._config)
        self._feeds[digest] = make_inputs(session, self._config)[0]
        self._sessions[digest] = session
        self._sizes[digest] = size
        return digest, True

    def _evict(self, room_for: int) -> None:
        """Drop least recently used sessions, none running, until one more of ``room_for`` bytes fits."""
        def over() -> bool:
            return ((self.max_sessions is not None and len(self._sessions) + 1 > self.max_sessions)
                    or (self.max_bytes is not None and sum(self._sizes.values()) + room_for > self.max_bytes))

        while over():
            idle = next((d for d in self._sessions if not self._running.get(d)), None)
            if idle is None:
                return  # every session is running: the new one is made anyway
            del self._sessions[idle]
            self._feeds.pop(idle, None)
            self._sizes.pop(idle, None)
            self._latest = {key: digest for key, digest in self._latest.items() if digest != idle}
            self.evicted += 1

    def _acquire(self, model: str, source: Any, scope: str, reload: Any) -> Tuple[str, bool]:
        """The session this task runs on, marked running; loaded from ``source`` if sent, else
        the scope's last bytes for ``model``, made again from ``reload`` if it was dropped."""
        with self._lock:
            created = False
            if source is not None:
                digest, created = self._load(model, source, scope)
            else:
                digest = self._latest.get((scope, model), "")
                if digest in self._sessions:
                    self._sessions.move_to_end(digest)
                elif reload is not None:
                    digest, created = self._load(model, reload, scope)
                else:
                    raise RuntimeError(f"model {model!r} is not loaded here and no source was sent")
            self._running[digest] = self._running.get(digest, 0) + 1
            return digest, created

    def _release(self, digest: str) -> None:
        with self._lock:
            left = self._running.get(digest, 0) - 1
            if left > 0:
                self._running[digest] = left
            else:
                self._running.pop(digest, None)

    def run(self, task_id: int, attempt: int, model: str, source: Any = None,
            input_path: Optional[str] = None, scope: Optional[str] = None, reload: Any = None) -> TaskResult:
        scope = self.settings.scope if scope is None else scope
        result = TaskResult(task_id, attempt, self.settings.name, RESULT_FAILED, pid=os.getpid())
        try:
            key, result.session_created = self._acquire(model, source, scope, reload)
            try:
                session = self._sessions[key]
                feeds = self._feeds[key] if input_path is None else _load_inputs(input_path, session)
                began = time.perf_counter()
                outputs = session.run(None, feeds)
                result.seconds = time.perf_counter() - began
            finally:
                self._release(key)
            result.output_shapes = [list(np.shape(output)) for output in outputs]
            result.status = RESULT_OK
        except Exception as error:  # noqa: BLE001 - a failing model is reported, the agent lives on
            result.error = _short(f"{type(error).__name__}: {' '.join(str(error).split())}")
        return result


def _size(source: Any) -> int:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return len(source)
    return Path(source).stat().st_size


def _digest(source: Any) -> str:
    """What identifies a model: the sha256 of its bytes; a path (sent with every embedded task) by
    its stat instead, so a task does not re-read the file, yet a file rewritten in place is new."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest()
    stat = Path(source).stat()
    return f"path:{os.path.abspath(source)}:{stat.st_mtime_ns}:{stat.st_size}"


def _short(text: str, limit: int = 400) -> str:
    """onnxruntime puts the cause at the end of long messages: keep both ends."""
    return text if len(text) <= limit else f"{text[:150]} ... {text[-(limit - 155):]}"


def _load_inputs(path: str, session: Any) -> Dict[str, np.ndarray]:
    """A ``.npy`` file (the model's single input) or ``.npz`` (one array per input name)."""
    loaded = np.load(path)
    names = [spec.name for spec in session.get_inputs()]
    if isinstance(loaded, np.ndarray):
        if len(names) != 1:
            raise ValueError(f"{path}: the model has inputs {names}; give an .npz with one array per name")
        return {names[0]: loaded}
    return {name: loaded[name] for name in names}


# --- embedded engine: a local process per device --------------------------------------------
def serve_pipe(settings: AgentSettings, connection: Any) -> None:
    """Answer ``("run", task_id, attempt, model, source, input_path)`` messages until ``("stop",)``.

    The first message sent back is ``("ready", pid)``; each task answers ``("result", dict)``.
    Ctrl-C reaches every process of the terminal's group: the dispatcher reports the interrupt
    once, so the agent just ends, without a traceback of its own."""
    try:
        _serve(settings, connection)
    except KeyboardInterrupt:
        pass


def _serve(settings: AgentSettings, connection: Any) -> None:
    agent = DeviceAgent(settings)
    connection.send(("ready", os.getpid()))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return  # the dispatcher is gone
        if message[0] == "stop":
            return
        if message[0] == "run":
            _, task_id, attempt, model, source, input_path = message
            connection.send(("result", agent.run(task_id, attempt, model, source, input_path).to_dict()))
        elif message[0] == "calibrate":
            _, model, source, repeats = message
            connection.send(("calibrated", model, _calibrate(agent, model, source, repeats)))


def _calibrate(agent: DeviceAgent, model: str, source: Any, repeats: "int | Dict[str, Any]",
               scope: Optional[str] = None) -> Dict[str, Any]:
    """Warm a session up and return the median of ``repeats`` runs and their ``count`` (or the error).

    ``repeats`` a dict instead: the profiling farm's measurement settings, see :func:`profile_model`."""
    if isinstance(repeats, dict):
        return profile_model(agent.settings, source, repeats)
    samples = []
    for index in range(repeats + 1):
        # the bytes hashed once; after that ``reload``: another task of a multi-threaded worker may
        # have dropped the idle session between two runs, and it is made again from them
        first = index == 0
        result = agent.run(-1, 0, model, source if first else None, scope=scope, reload=None if first else source)
        if result.status != RESULT_OK:
            return {"status": RESULT_FAILED, "error": result.error}
        if index:  # the first run warms caches up
            samples.append(result.seconds)
    return {"status": RESULT_OK, "median_s": float(np.median(samples)), "count": len(samples)}


def profile_model(settings: AgentSettings, source: Any, measurement: Dict[str, Any]) -> Dict[str, Any]:
    """The profiling farm's measurement: the profiler's own (warm-up, sessions timed in turns, the
    CI stopping rule of ``measurement``, a ProfileConfig's fields), on sessions made for this
    net alone and dropped after, so an agent that measures thousands of nets keeps none of them.

    Returns ``{"status": "ok", "median_s", "stats", "flags"}`` (``stats["count"]``: the timed
    runs) or ``{"status": "failed", "error"}``."""
    try:
        config = settings.profile_config(**measurement)
        result = measure(source, config)
    except Exception as error:  # noqa: BLE001 - a failing net is reported, the agent lives on
        return {"status": RESULT_FAILED, "error": _short(f"{type(error).__name__}: {' '.join(str(error).split())}")}
    stats = result["stats"]
    return {"status": RESULT_OK, "median_s": float(stats["median_s"]), "stats": stats, "flags": result["flags"]}


# --- Dask: a named worker per device ----------------------------------------------------------
# keyed on every setting, not the name alone: a fleet file edited between runs (threads,
# opt_level) must get sessions made with the new settings, not the worker's first ones
_DASK_AGENTS: Dict[Tuple[Tuple[str, Any], ...], DeviceAgent] = {}
# a Dask agent outlives runs: its warm sessions are bounded (python -m sniper_profiler.agent
# --max-sessions / --max-session-mb); a fleet's models beyond the bound are made again as needed
DEFAULT_MAX_SESSIONS = 16
DEFAULT_MAX_SESSION_MB = 2048.0
DASK_LIMITS: Dict[str, Optional[int]] = {"max_sessions": DEFAULT_MAX_SESSIONS,
                                         "max_bytes": int(DEFAULT_MAX_SESSION_MB * 2**20)}


def _dask_agent(settings: Dict[str, Any]) -> Tuple[DeviceAgent, str]:
    """The agent of these settings and the caller's scope: dispatchers with one fleet file share
    the agent's warm sessions (keyed by bytes), not its map of model names (keyed by scope)."""
    settings = dict(settings)
    scope = str(settings.pop("scope", ""))
    key = tuple(sorted(settings.items()))
    agent = _DASK_AGENTS.get(key)
    if agent is None:
        agent = _DASK_AGENTS[key] = DeviceAgent(AgentSettings(**settings), **DASK_LIMITS)
    return agent, scope


def dask_run_task(settings: Dict[str, Any], task_id: int, attempt: int, model: str, source: Any,
                  input_path: Optional[str] = None, reload: Any = None) -> Dict[str, Any]:
    """Runs on the device's Dask worker; sessions stay warm in the worker process between tasks.
    ``reload``: the model's bytes already on this worker, made into a session again only if the
    warm one was dropped (``DASK_LIMITS``)."""
    agent, scope = _dask_agent(settings)
    return agent.run(task_id, attempt, model, source, input_path, scope=scope, reload=reload).to_dict()


def dask_calibrate(settings: Dict[str, Any], model: str, source: Any, repeats: "int | Dict[str, Any]") -> Dict[str, Any]:
    agent, scope = _dask_agent(settings)
    return _calibrate(agent, model, source, repeats, scope=scope)


def dask_agent_protocol(worker: Any = None) -> Dict[str, Any]:
    """This agent's ``protocol``, the ``oldest_dispatcher`` protocol it still answers and the
    sniper-profiler ``version`` installed. Cheap: no session, no model.

    Run by the device's Dask worker as it registers (its startup information, so the scheduler
    holds it before any task can reach the worker), not asked by a task: a task naming a function
    an older agent lacks fails to unpickle on that worker, and Dask then drops the worker's
    connection to the scheduler instead of failing the task. Any Dask worker may also run it as a
    task once it is known to have it."""
    from sniper_profiler import __version__

    return {"protocol": AGENT_PROTOCOL, "oldest_dispatcher": OLDEST_DISPATCHER_PROTOCOL, "version": __version__}


def run_dask_worker(scheduler: str, name: str, host: Optional[str] = None) -> None:
    """Join a fleet: a single-threaded Dask worker named after the device (the dispatcher pins
    each device's tasks to its name, one at a time)."""
    try:
        import asyncio

        from distributed import Worker
    except ImportError:
        sys.exit('sniper-profiler agent: error: Dask is not installed; pip install "sniper-profiler[agent]"')

    async def main() -> None:
        # Dask logs a failed start with tracebacks of its own; main() prints the cause in one line
        quiet = _QuietStart()
        logging.getLogger("distributed").addFilter(quiet)
        try:
            # the agent's protocol goes with its registration: the dispatcher reads it when the
            # worker joins, before it sends anything (an older agent has none)
            worker = await Worker(scheduler, name=name, nthreads=1, host=host,
                                  startup_information={AGENT_INFO_KEY: dask_agent_protocol})
        finally:
            logging.getLogger("distributed").removeFilter(quiet)
        async with worker:
            await worker.finished()

    asyncio.run(main())


class _QuietStart(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


_ADDRESS = re.compile(r"(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sniper_profiler.agent",
                                     description="Join a sniper-onnx fleet as a named Dask worker (one device).")
    parser.add_argument("--scheduler", required=True, help="the dispatcher's Dask scheduler, tcp://HOST:8786")
    parser.add_argument("--name", required=True, help="this device's name, as in the fleet file")
    parser.add_argument("--host", default=None, help="address to listen on (default: Dask's choice)")
    parser.add_argument("--max-sessions", type=int, default=DEFAULT_MAX_SESSIONS,
                        help="warm sessions kept between tasks and runs; past it the least recently used one "
                             "is dropped and made again when needed (default: %(default)s)")
    parser.add_argument("--max-session-mb", type=float, default=DEFAULT_MAX_SESSION_MB,
                        help="the same bound on the kept models' sizes, in MB (default: %(default)g)")
    args = parser.parse_args(argv)
    if args.max_sessions < 1:
        sys.exit(f"sniper-profiler agent: error: --max-sessions {args.max_sessions}: must be at least 1")
    unbounded = args.max_session_mb == float("inf")
    max_bytes = None if unbounded else int(args.max_session_mb * 2**20) if args.max_session_mb > 0 else 0
    if max_bytes is not None and max_bytes < 1:  # after the conversion: 1e-7 MB is 0 bytes, no model fits
        sys.exit(f"sniper-profiler agent: error: --max-session-mb {args.max_session_mb:g}: must be more than 0 "
                 "(at least one byte)")
    if not _ADDRESS.fullmatch(args.scheduler):
        sys.exit(f"sniper-profiler agent: error: --scheduler {args.scheduler!r} must be tcp://HOST:PORT, "
                 "the address the dispatcher's scheduler listens on (e.g. tcp://10.0.0.5:8786)")
    # the module the worker's tasks run in (under `python -m` this one is __main__, not that)
    from sniper_profiler import agent as tasks_module

    tasks_module.DASK_LIMITS.update(max_sessions=args.max_sessions, max_bytes=max_bytes)
    try:
        run_dask_worker(args.scheduler, args.name, args.host)
    except KeyboardInterrupt:
        pass
    except Exception as error:  # noqa: BLE001 - one line: Dask wraps the cause in "failed to start"
        sys.exit(f"sniper-profiler agent: error: {_cause(error, args.name)}")


def _cause(error: BaseException, name: str) -> str:
    """The innermost exception of Dask's chain is the one that says what went wrong."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    text = " ".join(str(error).split())
    if "name taken" in text:
        return f"the name {name!r} is taken by another worker of this scheduler; give each device its own --name"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


if __name__ == "__main__":
    main()
