"""Draws shared by the random families: weighted choices and the MACs/size budget of a net."""

from __future__ import annotations

import math

import numpy as np


def choice(rng: np.random.Generator, options, weights=None):
    """One of ``options`` (with relative ``weights``), drawn from ``rng`` (deterministic per seed)."""
    if weights is not None:
        weights = np.asarray(weights, dtype=float)
        weights = weights / weights.sum()
    return options[int(rng.choice(len(options), p=weights))]


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


MIN_LOG_MACS, BULK_LOG_MACS, MAX_LOG_MACS = 6.0, 9.3, 10.7
MAX_PARAMS = 2.0e8  # above VGG-19 (1.44e8); keeps every file far from protobuf's 2 GB limit
MAX_NODES = 3000  # about 4x DenseNet-201 (707 nodes): deeper graphs only slow profiling down


def sample_target_macs(rng: np.random.Generator, max_macs: float | None = None, tail_share: float = 0.15) -> float:
    """Bulk in 1e6..2e9 MACs, a tail to 5e10, so most nets time quickly on a small CPU.

    ``max_macs`` truncates the distribution (quick datasets, tests) without piling nets at the cap.
    """
    top = MAX_LOG_MACS if max_macs is None else min(MAX_LOG_MACS, math.log10(max_macs))
    top = max(top, MIN_LOG_MACS + 0.1)
    while True:
        if rng.random() >= tail_share:
            log_macs = rng.uniform(MIN_LOG_MACS, BULK_LOG_MACS)
        else:
            log_macs = rng.uniform(BULK_LOG_MACS, MAX_LOG_MACS)
        if log_macs <= top:
            return 10 ** log_macs


MAX_MACS = 6e10  # redraw above this: a little over the 5e10 the issue asks for
