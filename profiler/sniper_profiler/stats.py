"""Summary statistics and the stopping rule's confidence interval of the median.

The interval is distribution-free: for n sorted samples, the median lies between the order
statistics x_(j) and x_(k), j = floor((n - z*sqrt(n)) / 2) and k = ceil(1 + (n + z*sqrt(n)) / 2)
(1-based), with probability about ``confidence`` (normal approximation to Binomial(n, 1/2)).
Latency samples are skewed and have outliers; this interval needs no assumption about them.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Dict, Sequence, Tuple

import numpy as np


def median_interval(sorted_samples: Sequence[float], confidence: float = 0.95) -> Tuple[float, float]:
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("no samples")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    j = max(1, math.floor((n - z * math.sqrt(n)) / 2.0))
    k = min(n, math.ceil(1 + (n + z * math.sqrt(n)) / 2.0))
    return float(sorted_samples[j - 1]), float(sorted_samples[k - 1])


def relative_half_width(sorted_samples: Sequence[float], confidence: float = 0.95) -> float:
    """Half the interval's width over the median: 0.01 means "median known to +-1%"."""
    low, high = median_interval(sorted_samples, confidence)
    n = len(sorted_samples)
    middle = n // 2
    median = float(sorted_samples[middle]) if n % 2 else (sorted_samples[middle - 1] + sorted_samples[middle]) / 2.0
    return (high - low) / (2.0 * median) if median > 0 else math.inf


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Dict[str, float]:
    values = np.sort(np.asarray(samples, dtype=np.float64))
    low, high = median_interval(values, confidence)
    median = float(np.median(values))
    return {
        "median_s": median,
        "mean_s": float(values.mean()),
        "std_s": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "p10_s": float(np.percentile(values, 10)),
        "p90_s": float(np.percentile(values, 90)),
        "min_s": float(values[0]),
        "max_s": float(values[-1]),
        "count": int(len(values)),
        "ci_low_s": low,
        "ci_high_s": high,
        "ci_relative_half_width": (high - low) / (2.0 * median) if median > 0 else math.inf,
        "confidence": confidence,
    }
