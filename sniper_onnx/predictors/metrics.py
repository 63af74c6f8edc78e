"""Accuracy metrics shared by evaluate and the benchmarks (numpy; Kendall's tau uses scipy lazily)."""

from __future__ import annotations

from typing import Dict

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks, ties shared, as Spearman's rho needs."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x))
    boundaries = np.flatnonzero(np.diff(sorted_x)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(x)]])
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end - 1) / 2.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra**2).sum() * (rb**2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else 0.0


def kendall(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau  # installed with scikit-learn; only benchmarks call this

    return float(kendalltau(a, b).statistic)


def accuracy_metrics(predicted: np.ndarray, measured: np.ndarray, with_kendall: bool = False) -> Dict[str, float]:
    """MAPE and RMSPE in percent, Acc(±5%) and Acc(±10%) as fractions, Spearman (and Kendall) rank correlations."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    relative = predicted / measured - 1.0
    result = {
        "n": int(len(measured)),
        "mape_pct": float(100 * np.mean(np.abs(relative))),
        "rmspe_pct": float(100 * np.sqrt(np.mean(relative**2))),
        "acc5": float(np.mean(np.abs(relative) <= 0.05)),
        "acc10": float(np.mean(np.abs(relative) <= 0.10)),
        "spearman": spearman(predicted, measured),
    }
    if with_kendall:
        result["kendall"] = kendall(predicted, measured)
    return result
