"""Key Feature Extraction (Sniper, Algorithm 1): greedy Pearson selection with residual refits.

numpy only, so the key-feature report can be recomputed anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np


@dataclass
class KeyFeatures:
    """The features Algorithm 1 chose for one target, in selection order, with their linear fit."""

    names: List[str]
    coefficients: List[float]  # of the final least-squares fit of the target on ``names``
    intercept: float
    pearson: List[float] = field(default_factory=list)  # |r| of each feature with the residual it was picked on

    def to_json_dict(self) -> Dict[str, object]:
        return {
            "features": [
                {"name": n, "coefficient": c, "pearson_at_selection": p}
                for n, c, p in zip(self.names, self.coefficients, self.pearson)
            ],
            "intercept": self.intercept,
        }


def pearson_columns(matrix: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson r of every column with ``target``; a constant column scores 0, not NaN."""
    centred = matrix - matrix.mean(axis=0)
    target_centred = target - target.mean()
    norms = np.sqrt((centred**2).sum(axis=0) * (target_centred**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = centred.T @ target_centred / norms
    return np.where(norms > 0, r, 0.0)


def linear_fit(matrix: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
    design = np.column_stack([matrix, np.ones(len(matrix))])
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return solution[:-1], float(solution[-1])


def extract_key_features(
    features: np.ndarray, times: np.ndarray, names: Sequence[str], max_features: int = 6
) -> KeyFeatures:
    """Algorithm 1: pick the feature most correlated with the current residual, refit, repeat to K.

    The first residual is the time itself; after each pick the time is refit linearly on every key
    feature so far and the next pick is judged against what that fit still misses. "Largest Pearson
    coefficient" is read as largest |r|: a feature that slows a device down is as informative as one
    that speeds it up.
    """
    features = np.asarray(features, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    remaining = list(range(features.shape[1]))
    chosen: List[int] = []
    picked_r: List[float] = []
    residual = times - times.mean()
    while len(chosen) < min(max_features, features.shape[1]):
        scores = np.abs(pearson_columns(features[:, remaining], residual))
        if scores.max(initial=0.0) <= 1e-12:
            break  # nothing left explains the residual
        best = int(np.argmax(scores))
        chosen.append(remaining.pop(best))
        picked_r.append(float(scores[best]))
        coefficients, intercept = linear_fit(features[:, chosen], times)
        residual = times - (features[:, chosen] @ coefficients + intercept)
    coefficients, intercept = linear_fit(features[:, chosen], times) if chosen else (np.zeros(0), float(times.mean()))
    return KeyFeatures(
        names=[names[i] for i in chosen],
        coefficients=[float(c) for c in coefficients],
        intercept=intercept,
        pearson=picked_r,
    )
