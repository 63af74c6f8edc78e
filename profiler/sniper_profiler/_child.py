"""Child process entry: ``python -m sniper_profiler._child JOB.json RESULT.json``.

Writes the result atomically (temp file + rename), so the parent sees a whole result or none.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the profiler dies, so a killed run leaves no model measuring alone."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _limit_memory(gigabytes: float) -> None:
    """Cap the address space so a model that wants too much fails with an allocation error we
    can record, instead of the kernel's OOM killer picking a victim (maybe not us)."""
    try:
        import resource

        limit = int(gigabytes * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass


# onnxruntime's own words -> what to do about them, appended to the failure reason
_HINTS = (
    ("Unsupported model IR version", "the model's IR version is newer than this onnxruntime reads: re-save it "
     "with an older one (onnx: set model.ir_version, then onnx.save) or upgrade onnxruntime"),
    ("No graph was found in the protobuf", "the file holds no ONNX graph (empty or cut short?): re-export the model"),
    ("Protobuf parsing failed", "the file is not an ONNX model: check the path, or re-export the model"),
)


# where in onnxruntime's C++ a failure was raised: "/onnxruntime_src/...cc:256 onnxruntime::Model::Model(...) "
_SOURCE_LOCATION = re.compile(r"\s*/\S*onnxruntime_src/\S+:\d+ (?:(?:[\w:<>*&,]+ )*[\w:~<>]+\([^()]*\)"
                              r"(?: const)?(?: \[with [^\]]*\])? )?")


def _with_hint(reason: str) -> str:
    """The reason without onnxruntime's source location (kept in the record's traceback), plus
    what to do where we know it."""
    reason = _SOURCE_LOCATION.sub(" ", reason).strip()
    hints = [hint for marker, hint in _HINTS if marker in reason]
    return reason if not hints else f"{reason} ({'; '.join(hints)})"


def main(job_path: str, result_path: str) -> int:
    _die_with_parent()
    from sniper_profiler.config import ProfileConfig, ProfilerError
    from sniper_profiler.measure import ProviderUnavailable, measure

    with open(job_path) as handle:
        job = json.load(handle)
    config = ProfileConfig.from_dict(job["config"])
    if config.memory_limit_gb:
        _limit_memory(config.memory_limit_gb)
    try:
        result = {"status": "ok", **measure(job["path"], config)}
        code = 0
    except ProviderUnavailable as error:
        result, code = {"status": "failed", "failure": {"kind": "provider_unavailable", "reason": str(error)}}, 4
    except ProfilerError as error:
        result, code = {"status": "failed", "failure": {"kind": "error", "reason": str(error)}}, 3
    except MemoryError:
        result, code = {"status": "failed", "failure": {"kind": "out_of_memory", "reason": "MemoryError while measuring"}}, 3
    except Exception as error:  # noqa: BLE001 - any model problem becomes a failure record
        reason = f"{type(error).__name__}: {error}".strip()
        kind = "out_of_memory" if "memory" in reason.lower() and "alloc" in reason.lower() else "error"
        result = {"status": "failed", "failure": {"kind": kind, "reason": _with_hint(reason[:2000]),
                                                  "traceback": traceback.format_exc()[-4000:]}}
        code = 3
    temporary = result_path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(result, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, result_path)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
