"""Device descriptions shared by profiled and imported devices.

A :class:`DeviceSpec` is what the predictors know about a device: a few public hardware facts,
stored as JSON. Profiled devices get one from their fingerprint; devices known only from an
external latency table (HW-NAS-Bench, ...) get one written by hand. Unknown facts stay ``None``:
:func:`DeviceSpec.features` encodes each as 0 with a ``*_known`` flag of 0, so a missing fact is
never confused with a small one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

DEVICE_KINDS = (
    "desktop_gpu",
    "desktop_cpu",
    "embedded_gpu",
    "embedded_cpu",
    "mobile",
    "fpga",
    "asic",
    "other",
)
PRECISION_BITS = {"fp32": 32, "tf32": 19, "fp16": 16, "bf16": 16, "int8": 8}
# onnxruntime graph optimization levels. A runtime setting rather than hardware, but it changes
# latency as much as a hardware fact does, so the PCN must see it (appended last to keep the
# earlier feature indices stable).
GRAPH_OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")

# Optional facts: (field, transform applied when known). log2 keeps scales comparable across
# a phone and a data-centre GPU.
_OPTIONAL_NUMERIC = (
    ("compute_units", math.log2),
    ("threads", math.log2),
    ("clock_ghz", float),
    ("memory_gb", math.log2),
    ("memory_bandwidth_gbs", math.log2),
    ("peak_gflops", math.log2),
    ("simd_width_bits", lambda bits: bits / 128.0),
)


@dataclass
class DeviceSpec:
    """Public hardware facts of one device configuration (one latency column)."""

    name: str
    kind: str = "other"
    batch_size: int = 1
    precision: str = "fp32"
    compute_units: Optional[float] = None  # CPU cores in use, or CUDA cores / shader units
    threads: Optional[float] = None  # intra-op threads the runtime uses (CPUs)
    clock_ghz: Optional[float] = None  # highest sustained clock
    memory_gb: Optional[float] = None
    memory_bandwidth_gbs: Optional[float] = None
    peak_gflops: Optional[float] = None  # fp32 peak
    simd_width_bits: Optional[float] = None  # 128 (NEON/SSE), 256 (AVX2), 512 (AVX-512)
    provider: Optional[str] = None  # onnxruntime execution provider, where measured with one
    graph_optimization: Optional[str] = None  # one of GRAPH_OPTIMIZATION_LEVELS, where known
    description: str = ""
    unknown: List[str] = field(default_factory=list)  # facts the source does not give

    def __post_init__(self) -> None:
        if self.kind not in DEVICE_KINDS:
            raise ValueError(f"device {self.name!r}: kind {self.kind!r} is not one of {', '.join(DEVICE_KINDS)}")
        if self.precision not in PRECISION_BITS:
            raise ValueError(f"device {self.name!r}: precision {self.precision!r} is not one of {', '.join(PRECISION_BITS)}")
        if self.graph_optimization is not None and self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise ValueError(
                f"device {self.name!r}: graph_optimization {self.graph_optimization!r} is not one of "
                f"{', '.join(GRAPH_OPTIMIZATION_LEVELS)}"
            )
        if int(self.batch_size) < 1:
            raise ValueError(f"device {self.name!r}: batch_size must be at least 1")
        optional = [name for name, _ in _OPTIONAL_NUMERIC] + ["graph_optimization"]
        self.unknown = sorted({name for name in optional if getattr(self, name) is None})

    def features(self) -> List[float]:
        """The numeric hardware-feature vector, in the order of :data:`DEVICE_FEATURE_NAMES`."""
        vector = [1.0 if self.kind == kind else 0.0 for kind in DEVICE_KINDS]
        vector.append(math.log2(int(self.batch_size)))
        vector.append(PRECISION_BITS[self.precision] / 32.0)
        for name, transform in _OPTIONAL_NUMERIC:
            value = getattr(self, name)
            known = value is not None and value > 0
            vector.append(float(transform(value)) if known else 0.0)
            vector.append(1.0 if known else 0.0)
        if self.graph_optimization is None:
            vector.extend([0.0, 0.0])
        else:
            level = GRAPH_OPTIMIZATION_LEVELS.index(self.graph_optimization)
            vector.extend([level / (len(GRAPH_OPTIMIZATION_LEVELS) - 1), 1.0])
        return vector

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "DeviceSpec":
        names = {f.name for f in fields(cls)}
        extra = sorted(set(data) - names)
        if extra:
            raise ValueError(f"device spec has unknown fields: {', '.join(extra)}")
        return cls(**{k: v for k, v in data.items() if k != "unknown"})


DEVICE_FEATURE_NAMES: List[str] = (
    [f"kind_{kind}" for kind in DEVICE_KINDS]
    + ["log2_batch_size", "precision_bits_over_32"]
    + [item for name, _ in _OPTIONAL_NUMERIC for item in (name, f"{name}_known")]
    + ["graph_optimization_level", "graph_optimization_level_known"]
)


def load_device_specs(path: "str | Path") -> List[DeviceSpec]:
    """Read a JSON file holding one spec object or a list of them."""
    data = json.loads(Path(path).read_text())
    items: Sequence[Dict[str, Any]] = data if isinstance(data, list) else [data]
    return [DeviceSpec.from_dict(item) for item in items]


def save_device_specs(specs: Sequence[DeviceSpec], path: "str | Path") -> None:
    Path(path).write_text(json.dumps([spec.to_dict() for spec in specs], indent=2) + "\n")
