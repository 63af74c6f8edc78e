"""Measure one model in this process: build inputs, warm up, time until the median is known.

This runs inside the child process that :mod:`sniper_profiler.runner` starts for each model, so a
crash, hang or out-of-memory here never takes the run down.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sniper_profiler.config import ProfileConfig, ProfilerError
from sniper_profiler.quiet import OthersBusyMeter
from sniper_profiler.stats import relative_half_width, summarize

class ProviderUnavailable(ProfilerError):
    """The provider fails for every model, so the run stops instead of recording failures."""


_GRAPH_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _floats(dtype: Any) -> Callable[[np.random.Generator, Tuple[int, ...]], np.ndarray]:
    return lambda rng, shape: rng.standard_normal(shape).astype(dtype)


def _ints(dtype: Any) -> Callable[[np.random.Generator, Tuple[int, ...]], np.ndarray]:
    # 0 and 1 are valid rows of any table of two or more (BERT's token_type_ids has two: values up
    # to 7 made such a model fail), attention-mask values, and indices and counts.
    return lambda rng, shape: rng.integers(0, 2, size=shape).astype(dtype)


INPUT_MAKERS: Dict[str, Callable[[np.random.Generator, Tuple[int, ...]], np.ndarray]] = {
    "tensor(float)": _floats(np.float32),
    "tensor(float16)": _floats(np.float16),
    "tensor(double)": _floats(np.float64),
    "tensor(int64)": _ints(np.int64),
    "tensor(int32)": _ints(np.int32),
    "tensor(int16)": _ints(np.int16),
    "tensor(int8)": _ints(np.int8),
    "tensor(uint8)": _ints(np.uint8),
    "tensor(uint16)": _ints(np.uint16),
    "tensor(uint32)": _ints(np.uint32),
    "tensor(uint64)": _ints(np.uint64),
    "tensor(bool)": lambda rng, shape: rng.integers(0, 2, size=shape).astype(bool),
}


def resolve_shape(name: str, shape: Sequence[Any], config: ProfileConfig) -> Tuple[int, ...]:
    if name in config.input_shapes:
        given = tuple(config.input_shapes[name])
        if len(given) != len(shape):
            raise ProfilerError(f"--input-shape {name}: model input has rank {len(shape)}, got {len(given)} dims")
        for fixed, wanted in zip(shape, given):
            if isinstance(fixed, int) and fixed >= 0 and fixed != wanted:
                raise ProfilerError(f"--input-shape {name}: dims {given} conflict with the model's fixed shape {list(shape)}")
        return given
    # a fixed 0 is an empty tensor the model expects, not an unknown dim
    return tuple(dim if isinstance(dim, int) and dim >= 0 else config.default_dim for dim in shape)


def make_inputs(session: Any, config: ProfileConfig) -> Tuple[Dict[str, np.ndarray], List[Dict[str, Any]]]:
    rng = np.random.default_rng(config.seed)
    feeds: Dict[str, np.ndarray] = {}
    described: List[Dict[str, Any]] = []
    for spec in session.get_inputs():
        maker = INPUT_MAKERS.get(spec.type)
        if maker is None:
            raise ProfilerError(f"input {spec.name!r} has type {spec.type}, which the profiler cannot generate")
        shape = resolve_shape(spec.name, spec.shape, config)
        feeds[spec.name] = maker(rng, shape)
        described.append({"name": spec.name, "type": spec.type, "shape": list(shape), "model_shape": [str(d) if not isinstance(d, int) else d for d in spec.shape]})
    # a shape for an input this model lacks is another model's of the run: the parent refused names
    # no model has (runner.check_input_shape_names)
    return feeds, described


def dims_defaulted(inputs: Sequence[Dict[str, Any]], config: ProfileConfig) -> bool:
    """Whether --default-dim filled in a symbolic dim past the batch (the record's ``inputs`` say which).

    The batch (first dim) defaults to 1 as any user expects; an image's height or a sequence's
    length at 1 measures a different network than the one meant.
    """
    return any(position > 0 and not isinstance(dim, int)
               for described in inputs if described["name"] not in config.input_shapes
               for position, dim in enumerate(described["model_shape"]))


def check_outputs(outputs: Sequence[Any]) -> Dict[str, Any]:
    """NaN, Inf and denormal values in the outputs: signs of bad weights or inputs whose timings
    are not representative (denormals slow x86 down up to 50x)."""
    nan = inf = False
    denormal = total = 0
    for output in outputs:
        try:
            array = np.asarray(output)
        except ValueError:  # a sequence of tensors of different shapes: not one array to check
            continue
        if not np.issubdtype(array.dtype, np.floating):
            continue
        nan = nan or bool(np.isnan(array).any())
        inf = inf or bool(np.isinf(array).any())
        if array.dtype.itemsize < 4:
            # fp16/bf16 subnormals (below 6.1e-5 for fp16) are normal fp32 values to a CPU, which
            # computes in fp32, and cost a GPU nothing: legitimate outputs, such as a wide Softmax's
            continue
        magnitude = np.abs(array[np.isfinite(array)])
        denormal += int(((magnitude > 0) & (magnitude < np.finfo(array.dtype).tiny)).sum())
        total += array.size
    fraction = denormal / total if total else 0.0
    flags = [name for name, bad in (("nan_outputs", nan), ("inf_outputs", inf), ("denormal_outputs", fraction > 0)) if bad]
    return {"nan": nan, "inf": inf, "denormal_fraction": fraction, "flags": flags}


def create_session(path: str, config: ProfileConfig) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_LEVELS[config.graph_optimization])
    options.intra_op_num_threads = config.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    provider_options = dict(config.provider_options)
    if config.provider == "TensorrtExecutionProvider" and config.precision == "fp16":
        provider_options.setdefault("trt_fp16_enable", True)
    session = ort.InferenceSession(path, sess_options=options, providers=[(config.provider, provider_options)])
    used = session.get_providers()
    if not used or used[0] != config.provider:
        raise ProviderUnavailable(
            f"--provider {config.provider}: did not load (the session fell back to {', '.join(used)}); "
            "check its libraries (CUDA/cuDNN/TensorRT) and --provider-option values"
        )
    return session


def time_runs(
    runs: "Callable[[], Any] | Sequence[Callable[[], Any]]",
    config: ProfileConfig,
    replica_of: Optional[List[int]] = None,
) -> Tuple[List[float], str]:
    """Time ``runs`` (one callable, or several timed in turns of ``config.burst_s`` seconds) until
    the median's relative CI half-width reaches the target, or max_repeats, once ``min_time_s`` has
    passed; or max_time (once at least min(3, min_repeats) samples exist). ``replica_of``, if given,
    receives the index of the callable behind each sample.

    max_repeats waits for min_time_s too: a 5 us net reached 1,000 runs in 5 ms, before its second
    session's turn, and one slow moment of the host certified it 67 % slow with a tight interval."""
    callables = [runs] if callable(runs) else list(runs)
    samples: List[float] = []
    clock = time.perf_counter
    start = clock()
    earliest_ci_stop = start + min(config.min_time_s, config.max_time_s)
    next_check = config.min_repeats
    floor = min(3, config.min_repeats)
    current, burst_start = 0, start
    while True:
        began = clock()
        callables[current]()
        ended = clock()
        samples.append(ended - began)
        if replica_of is not None:
            replica_of.append(current)
        if ended - burst_start >= config.burst_s:
            current, burst_start = (current + 1) % len(callables), ended
        count = len(samples)
        if count >= config.max_repeats and ended >= earliest_ci_stop:
            return samples, "max_repeats"
        if count >= floor and ended - start >= config.max_time_s:
            return samples, "max_time"
        if count >= next_check and ended >= earliest_ci_stop:
            if relative_half_width(sorted(samples), config.confidence) <= config.target_relative_ci:
                return samples, "ci_target"
            # Checking at geometric intervals keeps the sorting cost out of the way (O(n log n) total).
            next_check = max(count + 1, int(count * 1.1))


def _per_session(samples: Sequence[float], replica_of: Sequence[int], sessions: int) -> Dict[str, List[float]]:
    grouped: List[List[float]] = [[] for _ in range(sessions)]
    for sample, replica in zip(samples, replica_of):
        grouped[replica].append(sample)
    return {
        "session_min_s": [min(g) if g else None for g in grouped],
        "session_median_s": [float(np.median(g)) if g else None for g in grouped],
    }


def measure(path: str, config: ProfileConfig) -> Dict[str, Any]:
    import onnxruntime as ort

    began = time.perf_counter()
    sessions = [create_session(path, config)]
    session_create_s = time.perf_counter() - began
    sessions += [create_session(path, config) for _ in range(config.session_count - 1)]
    feeds, inputs = make_inputs(sessions[0], config)
    outputs = sessions[0].run(None, feeds)
    output_check = check_outputs(outputs)
    del outputs
    _warm_up(sessions, feeds, config)
    runs = [lambda session=session: session.run(None, feeds) for session in sessions]
    replica_of: List[int] = []
    others = OthersBusyMeter()
    cpu_began = time.process_time()
    samples, stop_reason = time_runs(runs, config, replica_of)
    cpu_per_run = (time.process_time() - cpu_began) / len(samples)
    others_busy = others.share()
    stats = summarize(samples, config.confidence)
    # CPU time of all our threads per timed run (the loop's own bookkeeping, about a microsecond a
    # run, included). With 1 thread, a median well above it means the run waited for a core.
    stats.update(session_create_s=session_create_s, stop_reason=stop_reason, warmup=config.warmup,
                 cpu_time_per_run_s=cpu_per_run, sessions=len(sessions), others_busy_during=others_busy,
                 **_per_session(samples, replica_of, len(sessions)))
    flags = list(output_check["flags"]) + (["precision_mismatch"] if precision_mismatch(sessions[0], config) else [])
    if dims_defaulted(inputs, config):
        flags.append("symbolic_dims_defaulted")
    # A cap may end the loop after the interval has already narrowed enough: only a wide one counts.
    if stats["ci_relative_half_width"] > config.target_relative_ci:
        flags.append("ci_target_not_reached")
    return {
        "stats": stats,
        "inputs": inputs,
        "output_check": output_check,
        "flags": flags,
        "providers_used": sessions[0].get_providers(),
        "onnxruntime_version": ort.__version__,
    }


# The float type a model computes in, read from its graph inputs and outputs.
MODEL_PRECISION = {"tensor(float)": "fp32", "tensor(float16)": "fp16", "tensor(bfloat16)": "bf16"}


def model_precision(session: Any) -> Optional[str]:
    """fp32, fp16 or bf16 from the first float input (else output); None for models without one."""
    for spec in [*session.get_inputs(), *session.get_outputs()]:
        if spec.type in MODEL_PRECISION:
            return MODEL_PRECISION[spec.type]
    return None


def precision_mismatch(session: Any, config: ProfileConfig) -> bool:
    """A half-precision model timed under an fp32 label (or an fp32 model under fp16/bf16 where no
    provider converts it) would file its time under another device configuration's precision.
    TensorRT builds fp32 models in fp16 or int8 on request; tf32 and int8 (QDQ models keep fp32
    inputs) are labels fp32 models carry."""
    found = model_precision(session)
    if found is None or found == config.precision:
        return False
    if found == "fp32":
        converts = config.provider == "TensorrtExecutionProvider" and config.precision in ("fp16", "int8")
        return config.precision in ("fp16", "bf16") and not converts
    return True


def _warm_up(sessions: Sequence[Any], feeds: Dict[str, np.ndarray], config: ProfileConfig) -> None:
    """``warmup`` runs per session (the first already ran for session 0), within max_time / 4;
    but every session gets one, so none of them enters the timed runs cold."""
    warm_until = time.perf_counter() + config.max_time_s / 4
    for index, session in enumerate(sessions):
        wanted = config.warmup - 1 if index == 0 else max(1, config.warmup)
        for run in range(max(0, wanted)):
            if run and time.perf_counter() > warm_until:
                break
            session.run(None, feeds)
