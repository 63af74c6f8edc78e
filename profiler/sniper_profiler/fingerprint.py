"""What machine and runtime configuration a measurement was taken on.

The fingerprint is read from /proc, /sys, ``os`` and ``nvidia-smi`` (or the Jetson device tree)
without third-party packages. Only the fields that change latency go into the device id, so the
id stays the same across reboots, kernel updates and clock jitter, and differs between thread
counts, providers or optimization levels (each is one latency column for the predictors).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from sniper_profiler.config import GPU_PROVIDERS
from sniper_profiler.device import DeviceSpec

# Fields hashed into the device id; everything else in the fingerprint is informative only.
DEVICE_ID_FIELDS = (
    "machine",
    "cpu_model",
    "logical_cores",
    "memory_gb",
    "gpu_name",
    "gpu_memory_gb",
    "gpu_compute_capability",
    "jetson_model",
    "onnxruntime_version",
    "provider",
    "precision",
    "threads",
    "graph_optimization",
)



@dataclass
class Fingerprint:
    """Hardware and runtime facts of one device configuration."""

    machine: str
    cpu_model: str
    logical_cores: int
    physical_cores: Optional[int]
    cpu_max_ghz: Optional[float]
    memory_gb: float
    simd_width_bits: Optional[int]
    gpu_name: Optional[str]
    gpu_memory_gb: Optional[float]
    gpu_compute_capability: Optional[str]
    jetson_model: Optional[str]
    os: str
    onnxruntime_version: str
    provider: str
    provider_options: Dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    threads: int = 0  # intra-op threads actually used (0 is resolved to onnxruntime's default)
    graph_optimization: str = "all"
    gpu_max_clock_ghz: Optional[float] = None  # nvidia-smi's clocks.max.sm; not in the device id

    @property
    def device_id(self) -> str:
        stable = {name: getattr(self, name) for name in DEVICE_ID_FIELDS}
        stable["provider_options"] = self.provider_options
        digest = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()
        return f"dev-{digest[:16]}"

    @property
    def uses_gpu(self) -> bool:
        return self.provider in GPU_PROVIDERS

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["device_id"] = self.device_id
        return data

    def device_spec(self) -> DeviceSpec:
        """The PCN's view of this configuration (see docs/profiler.md for the vector)."""
        if self.uses_gpu:
            kind = "embedded_gpu" if self.jetson_model else "desktop_gpu"
            memory = self.gpu_memory_gb or (self.memory_gb if self.jetson_model else None)
            compute_units = None  # SM/CUDA-core counts are not exposed by nvidia-smi
        else:
            kind = "embedded_cpu" if self.jetson_model or self.machine.startswith(("aarch64", "arm")) else "desktop_cpu"
            memory = self.memory_gb
            compute_units = float(min(self.threads, self.logical_cores)) if self.threads else None
        return DeviceSpec(
            name=self.short_name(),
            kind=kind,
            precision=self.precision,
            compute_units=compute_units,
            threads=float(self.threads) if self.threads else None,
            clock_ghz=self.gpu_max_clock_ghz if self.uses_gpu else self.cpu_max_ghz,
            memory_gb=memory,
            simd_width_bits=float(self.simd_width_bits) if self.simd_width_bits and not self.uses_gpu else None,
            provider=self.provider,
            graph_optimization=self.graph_optimization,
            description=f"{self.gpu_name or self.cpu_model}; {self.os}; onnxruntime {self.onnxruntime_version}",
        )

    def short_name(self) -> str:
        hardware = self.gpu_name if self.uses_gpu else self.cpu_model
        hardware = re.sub(r"\s+", " ", hardware or "unknown").strip()
        provider = self.provider.replace("ExecutionProvider", "").lower()
        # provider options are part of the device id, so they are part of its name: a configuration
        # with a typo'd option (which onnxruntime's CPU provider ignores) must not share a name with
        # the one without; names of configurations without options are as they always were
        options = "".join(f" {key}={_option_text(value)}" for key, value in sorted(self.provider_options.items()))
        return f"{hardware} | {provider} {self.precision} t{self.threads} opt-{self.graph_optimization}{options}"


def _option_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, bool) or value is None else str(value)


def collect_fingerprint(
    onnxruntime_version: str,
    provider: str,
    provider_options: Optional[Dict[str, Any]] = None,
    precision: str = "fp32",
    threads: int = 0,
    graph_optimization: str = "all",
) -> Fingerprint:
    cpu = _cpu_info()
    gpu = _gpu_info() if provider in GPU_PROVIDERS else {}
    physical = cpu.get("physical_cores")
    logical = os.cpu_count() or 1
    resolved_threads = threads if threads > 0 else int(physical or logical)
    return Fingerprint(
        machine=platform.machine(),
        cpu_model=cpu.get("model", platform.processor() or "unknown"),
        logical_cores=logical,
        physical_cores=physical,
        cpu_max_ghz=_cpu_max_ghz(cpu),
        memory_gb=round(_memory_bytes() / 2**30, 1),
        simd_width_bits=_simd_width(cpu.get("flags", "")),
        gpu_name=gpu.get("name"),
        gpu_memory_gb=gpu.get("memory_gb"),
        gpu_compute_capability=gpu.get("compute_capability"),
        jetson_model=_jetson_model(),
        os=f"{platform.system()} {platform.release()}",
        onnxruntime_version=onnxruntime_version,
        provider=provider,
        provider_options=dict(provider_options or {}),
        precision=precision,
        threads=resolved_threads,
        graph_optimization=graph_optimization,
        gpu_max_clock_ghz=gpu.get("max_clock_ghz"),
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _cpu_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {}
    cores = set()
    physical_id = "0"
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key in ("model name", "Model", "Hardware") and "model" not in info:
            info["model"] = value
        elif key in ("flags", "Features") and "flags" not in info:
            info["flags"] = value
        elif key == "cpu MHz" and "mhz" not in info:
            info["mhz"] = float(value)
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    if cores:
        info["physical_cores"] = len(cores)
    return info


def _cpu_max_ghz(cpu: Dict[str, Any]) -> Optional[float]:
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    if khz.isdigit():
        return round(int(khz) / 1e6, 2)
    # Virtual machines hide cpufreq; the nominal clock in the model name is stable, "cpu MHz" is not.
    match = re.search(r"@\s*([\d.]+)\s*GHz", cpu.get("model", ""))
    if match:
        return float(match.group(1))
    return round(cpu["mhz"] / 1000.0, 1) if "mhz" in cpu else None


def _memory_bytes() -> int:
    match = re.search(r"MemTotal:\s+(\d+) kB", _read("/proc/meminfo"))
    if match:
        return int(match.group(1)) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _simd_width(flags: str) -> Optional[int]:
    words = set(flags.split())
    for width, names in ((512, {"avx512f"}), (256, {"avx2", "avx", "sve"}), (128, {"sse2", "neon", "asimd"})):
        if words & names:
            return width
    return None


def _nvidia_smi_first_gpu(fields: str) -> List[str]:
    """The first visible GPU's values of ``fields`` (the one onnxruntime uses by default, device_id
    0), or [] when nvidia-smi is missing, fails or does not know a field."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    lines = [line for line in out.splitlines() if line.strip()]
    return [part.strip() for part in lines[0].split(",")] if lines else []


def _gpu_info() -> Dict[str, Any]:
    parts = _nvidia_smi_first_gpu("name,memory.total,compute_cap")
    if not parts:
        return {}
    info: Dict[str, Any] = {"name": parts[0]}
    if len(parts) > 1 and re.fullmatch(r"[\d.]+", parts[1]):
        info["memory_gb"] = round(float(parts[1]) / 1024, 1)
    if len(parts) > 2 and re.fullmatch(r"[\d.]+", parts[2]):
        info["compute_capability"] = parts[2]
    # Asked apart: a driver that cannot report clocks must not cost the name and memory.
    clock = _nvidia_smi_first_gpu("clocks.max.sm")
    if clock and re.fullmatch(r"[\d.]+", clock[0]):
        info["max_clock_ghz"] = round(float(clock[0]) / 1000, 3)
    return info


def _jetson_model() -> Optional[str]:
    model = _read("/proc/device-tree/model").strip("\x00 \n")
    if model and ("jetson" in model.lower() or Path("/etc/nv_tegra_release").exists()):
        return model
    return None

