"""Device-side latency profiler for sniper-onnx. Depends on numpy and onnxruntime only.

    from sniper_profiler import ModelJob, ProfileConfig, run_profile
    summary = run_profile([ModelJob("net.onnx")], "results.jsonl", ProfileConfig(threads=1))

Command line: ``sniper-profiler run MODELS... --out results.jsonl`` (see docs/profiler.md).
"""

__version__ = "0.1.0"

from sniper_profiler.config import ProfileConfig, ProfilerError  # noqa: E402
from sniper_profiler.device import DEVICE_FEATURE_NAMES, DeviceSpec  # noqa: E402
from sniper_profiler.runner import ModelJob, RunSummary, run_profile  # noqa: E402

__all__ = [
    "DEVICE_FEATURE_NAMES",
    "DeviceSpec",
    "ModelJob",
    "ProfileConfig",
    "ProfilerError",
    "RunSummary",
    "__version__",
    "run_profile",
]
