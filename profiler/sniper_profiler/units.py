"""How times are written for people: the profiler's lines and `sniper-onnx predict`'s table alike."""

from __future__ import annotations

import math


def milliseconds(seconds: float) -> str:
    """Four significant digits in fixed notation: a column of times reads at a glance, and a
    microsecond net is 0.007581, not 7.581e-03 or 0.008. Rounded first: 9.9996 ms is 10.00."""
    value = float(f"{seconds * 1e3:.4g}")
    if not math.isfinite(value) or value <= 0:
        return f"{value:g}"
    return f"{value:.{max(0, 3 - math.floor(math.log10(value)))}f}"
