"""What to measure with, and when to stop: one :class:`ProfileConfig` per device configuration."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from sniper_profiler.device import GRAPH_OPTIMIZATION_LEVELS, PRECISION_BITS


class ProfilerError(Exception):
    """Bad input or environment; the command line prints it as one line and exits 2."""


DEFAULT_DIM = 1
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider", "MIGraphXExecutionProvider")
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


@dataclass
class ProfileConfig:
    provider: str = "CPUExecutionProvider"
    provider_options: Dict[str, Any] = field(default_factory=dict)
    threads: int = 0  # intra-op threads; 0 lets onnxruntime choose (one per physical core)
    graph_optimization: str = "all"
    precision: str = "fp32"
    input_shapes: Dict[str, List[int]] = field(default_factory=dict)
    default_dim: int = DEFAULT_DIM  # value for symbolic dims not set in input_shapes
    warmup: int = 5
    min_repeats: int = 10
    max_repeats: int = 1000
    max_time_s: float = 10.0
    # The stopping rule may not end a measurement before this many seconds: on a shared host the
    # speed drifts over seconds, and a tight burst of samples would certify one moment of it.
    min_time_s: float = 1.0
    # Sessions of the same model timed in turns (bursts of burst_s), so that one session's memory
    # layout cannot bias the record; each session's min and median are recorded. 0 = auto: 3 on
    # CPU providers with one thread (the minimum over 3 repeats about twice as closely,
    # docs/profiler.md), else 1. With intra-op threads every session keeps its own worker threads,
    # and the idle sessions' spinning workers slowed the timed one up to 2x; GPU providers get 1
    # because device memory is scarce on a Jetson.
    sessions: int = 0
    burst_s: float = 0.02
    target_relative_ci: float = 0.01
    confidence: float = 0.95
    timeout_s: float = 300.0
    seed: int = 0
    max_busy: Optional[float] = None  # wait before each model until others use at most this CPU share
    quiet_timeout_s: float = 900.0  # then measure anyway, flagged "machine_busy"
    memory_limit_gb: Optional[float] = None  # address-space cap for the child (CPU providers only)
    # Passes over the whole model list, each measuring every model once more. A host whose speed
    # drifts in episodes of seconds to minutes can slow one whole measurement; passes minutes apart
    # rarely all fall in one, and the database keeps the median of a model's passes.
    passes: int = 1

    def __post_init__(self) -> None:
        self.provider = PROVIDER_ALIASES.get(self.provider.lower(), self.provider)
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise ProfilerError(
                f"--opt-level {self.graph_optimization!r}: use one of {', '.join(GRAPH_OPTIMIZATION_LEVELS)}"
            )
        if self.precision not in PRECISION_BITS:
            raise ProfilerError(f"--precision {self.precision!r}: use one of {', '.join(PRECISION_BITS)}")
        checks = (
            (self.threads >= 0, "--threads must be 0 (runtime default) or more"),
            (self.default_dim >= 1, "--default-dim must be at least 1"),
            (self.warmup >= 0, "--warmup must be 0 or more"),
            (1 <= self.min_repeats <= self.max_repeats, "--min-repeats must be between 1 and --max-repeats"),
            (self.max_time_s > 0, "--max-time must be positive"),
            (self.min_time_s >= 0, "--min-time must be 0 or more seconds"),
            (0 <= self.sessions <= 16, "--sessions must be between 1 and 16, or 0 for auto (3 on CPU with --threads 1, else 1)"),
            (self.sessions <= 1 or not self.has_worker_threads,
             f"--sessions {self.sessions} with --threads {self.threads}: every session keeps its own intra-op worker threads, "
             "and idle ones spin and slow the timed session (up to 2x, docs/profiler.md); use --sessions 1, or --threads 1"),
            (self.burst_s > 0, "burst_s must be a positive number of seconds"),
            (0 < self.target_relative_ci < 1, "--target-ci must be between 0 and 1 (0.01 is +-1%)"),
            (0.5 <= self.confidence < 1, "--confidence must be in [0.5, 1)"),
            (self.timeout_s > 0, "--timeout must be positive"),
            (1 <= self.passes <= 20, "--passes must be between 1 and 20 (3 is enough for a median)"),
            (self.max_busy is None or 0 <= self.max_busy < 1, "--max-busy must be in [0, 1), e.g. 0.1 for 10% of the CPUs"),
            (self.quiet_timeout_s >= 0, "--quiet-timeout must be a non-negative number of seconds"),
            (self.memory_limit_gb is None or self.memory_limit_gb > 0, "--memory-limit must be a positive number of GB"),
            (self.memory_limit_gb is None or self.provider not in GPU_PROVIDERS,
             "--memory-limit works with CPU providers only (GPU runtimes reserve far more address space than they use)"),
        )
        if UNNAMED_INPUT in self.input_shapes:
            # a run measures models whose inputs differ, so a shape must say which input it sizes
            shown = "x".join(str(d) for d in self.input_shapes[UNNAMED_INPUT])
            raise ProfilerError(f"--input-shape {shown}: write NAME={shown}, naming the input it sizes; the models "
                                "measured may have other inputs, so the profiler cannot guess which")
        for ok, message in checks:
            if not ok:
                raise ProfilerError(message)

    @property
    def has_worker_threads(self) -> bool:
        """Whether a CPU session runs intra-op worker threads beside the caller's (threads 0 lets
        onnxruntime use every core)."""
        return self.provider not in GPU_PROVIDERS and self.threads != 1

    @property
    def session_count(self) -> int:
        if self.sessions:
            return self.sessions
        return 3 if self.provider not in GPU_PROVIDERS and self.threads == 1 else 1

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ProfileConfig":
        return cls(**data)

    def identity(self) -> Dict[str, Any]:
        """The settings that change the latency (stopping-rule knobs do not), as given: the record
        keys of profiler versions before 2026-11-30 hash this (``legacy`` config ids, still honoured)."""
        return {
            "provider": self.provider,
            "provider_options": self.provider_options,
            "threads": self.threads,
            "graph_optimization": self.graph_optimization,
            "precision": self.precision,
            "input_shapes": self.input_shapes,
            "default_dim": self.default_dim,
        }

    def model_identity(self, resolved_threads: int, inputs: "Optional[Sequence[Tuple[str, Any]]]" = None) -> Dict[str, Any]:
        """:meth:`identity` as the measurement sees it: the thread count onnxruntime runs (0 resolved),
        and, given the model's inputs (name, dims with None for a symbolic dim, or None for no shape),
        only the shapes it uses: --input-shape of its inputs, and --default-dim only where a symbolic
        dim is left to it; otherwise their defaults. So a fixed-shape model has one key
        whatever --default-dim or another model's --input-shape say, and the common case (explicit
        --threads, defaults) hashes exactly as :meth:`identity` does."""
        identity = dict(self.identity(), threads=resolved_threads)
        if inputs is None:  # not known (a generated net before it is built, an unreadable file): all of them
            return identity
        from sniper_profiler.graph_inputs import has_open_dims

        open_inputs = {name for name, dims in inputs if has_open_dims(dims)}
        # every input of the model that --input-shape names, fixed ones too: a shape that clashes
        # with a fixed input fails the measurement, and that failure must be keyed on the shape,
        # or a later run without it would skip the model as "failed before"
        named = {name for name, _ in inputs}
        identity["input_shapes"] = {name: dims for name, dims in self.input_shapes.items() if name in named}
        defaulted = any(name not in self.input_shapes for name in open_inputs)
        identity["default_dim"] = self.default_dim if defaulted else DEFAULT_DIM
        return identity


# dims separated by x or , and optionally in brackets: 1x3x224x224, 1,3,224,224, [1,3,224,224]
_DIMS = r"(?:\[\s*(?P<bracketed>\d+(?:\s*[x,]\s*\d+)*)\s*\]|(?P<plain>\d+(?:\s*[x,]\s*\d+)*))"
_SHAPE_TEXT = re.compile(r"^\s*(?P<name>.+?)\s*[=:]\s*" + _DIMS + r"\s*$")
_BARE_SHAPE = re.compile(r"^\s*" + _DIMS + r"\s*$")
# the name parse_input_shape gives a shape written without one ("1x3x224x224"); ONNX graph inputs
# always have a name, so it cannot clash with one
UNNAMED_INPUT = ""
SHAPE_SYNTAX = "NAME=DIMS such as input=1x3x224x224, input:1,3,224,224 or input:[1,3,224,224]"


def parse_input_shape(text: str) -> Tuple[str, List[int]]:
    """``NAME=1x3x224x224``, onnxsim's ``NAME:1,3,224,224`` or Polygraphy's ``NAME:[1,3,224,224]``
    -> ``("NAME", [1, 3, 224, 224])``; a bare ``1x3x224x224`` -> ``(UNNAMED_INPUT, [1, 3, 224, 224])``,
    for the caller to give to a model's only input.

    With ``=`` the last one separates, so TensorFlow names such as ``input_1:0`` keep their colon.
    """
    name, sep, dims_text = text.rpartition("=")
    match = _SHAPE_TEXT.match(f"{name}={dims_text}" if sep else text)
    bare = None if match or sep else _BARE_SHAPE.match(text)
    if not match and not bare:
        raise ProfilerError(f"--input-shape {text!r}: write {SHAPE_SYNTAX} "
                            "(positive integers separated by x or ,)")
    found = match or bare
    dims_found = found["bracketed"] or found["plain"]
    dims = [int(d) for d in re.split(r"\s*[x,]\s*", dims_found.strip())]
    if any(d < 1 for d in dims):
        raise ProfilerError(f"--input-shape {text!r}: every dimension must be at least 1")
    return (match["name"] if match else UNNAMED_INPUT), dims


def parse_provider_option(text: str) -> Tuple[str, Any]:
    """``KEY=VALUE``; numbers and true/false become JSON values, the rest stays a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ProfilerError(f"--provider-option {text!r}: write KEY=VALUE, e.g. device_id=0")
    lowered = value.strip().lower()
    parsed: Any = value.strip()
    if lowered in ("true", "false"):
        parsed = lowered == "true"
    elif re.fullmatch(r"-?\d+", lowered):
        parsed = int(lowered)
    elif re.fullmatch(r"-?\d*\.\d+(e-?\d+)?", lowered):
        parsed = float(lowered)
    return key.strip(), parsed

