"""Few-shot adaptation to a new device and the Time Trimmer: numpy and onnxruntime only.

Both write a *correction slot* into the predictor graph: a device-embedding offset and a linear
residual fit over the normalized network features, selected by ``correction_slot`` in the device
features. The result is still one framework-free ONNX file.

Few-shot adaptation keeps the network side F(Attn(x_n)) frozen and solves the device vector of eq. 3
(and its log-time bias) by ridge regression in log space, shrunk towards a prior: the device branch's
embedding of the spec, or the mean embedding of the training devices. The prior, the ridge strength
and the Time Trimmer's number of features are chosen by leave-one-out error on the samples alone, so
nothing is tuned to any particular device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.predictors import graph as G
from sniper_onnx.predictors.keyfeatures import pearson_columns
from sniper_onnx.predictors.runtime import Predictor, build_predictor, normalized_network, params_of

RIDGE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
BIAS_RIDGE = 1e-4  # the absolute scale of a new device is free: barely shrink its log-time bias
TRIMMER_GRID = (0, 1, 2)
DIRECT_GRID = (1, 2, 3)
DIRECT_RIDGE = 1e6  # pins the PCN directions at 0 for the "none" prior
Z90 = 1.6449
MIN_LOG_SPREAD = 0.05  # intervals from 10 samples are optimistic: never narrower than ±8% (90%)


@dataclass
class Trimmer:
    """Time Trimmer: a linear fit of log residuals on the top-k Pearson network features."""

    features: List[int]
    weights: np.ndarray
    bias: float

    def apply(self, z: np.ndarray) -> np.ndarray:
        return z[:, self.features] @ self.weights + self.bias if self.features else np.full(len(z), self.bias)


def fit_trimmer(z: np.ndarray, residual: np.ndarray, top_k: int, ridge: float = 0.1) -> Trimmer:
    """Pearson top-k features of the residual, then a ridge fit of the residual on them."""
    if top_k <= 0 or len(residual) < 3:
        return Trimmer([], np.zeros(0), float(np.mean(residual)) if top_k >= 0 and len(residual) else 0.0)
    order = np.argsort(-np.abs(pearson_columns(z, residual)))
    chosen = [int(i) for i in order[:top_k] if np.std(z[:, i]) > 1e-9]
    if not chosen:
        return Trimmer([], np.zeros(0), float(np.mean(residual)))
    x = z[:, chosen]
    mean_x, mean_r = x.mean(0), residual.mean()
    xc = x - mean_x
    weights = np.linalg.solve(xc.T @ xc + ridge * len(x) * np.eye(len(chosen)), xc.T @ (residual - mean_r))
    return Trimmer(chosen, weights, float(mean_r - mean_x @ weights))


def ridge_towards(design: np.ndarray, target: np.ndarray, prior: np.ndarray, strength: float) -> np.ndarray:
    penalty = np.full(design.shape[1], strength * len(target))
    penalty[-1] = BIAS_RIDGE
    lhs = design.T @ design + np.diag(penalty)
    return np.linalg.solve(lhs, design.T @ target + penalty * prior)


@dataclass
class AdaptReport:
    device: str
    samples: int
    prior: str
    ridge: Optional[float]  # None for the Time Trimmer alone (the device vector is kept)
    trimmer_features: List[str]
    loo_rmse_log: float  # leave-one-out RMS error in natural-log time on the samples
    sample_mape_before: float
    sample_mape_after: float
    slot: int

    def to_json_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _fit(design, z, log_t, prior, strength, top_k):
    embedding = ridge_towards(design, log_t, prior, strength)
    trimmer = fit_trimmer(z, log_t - design @ embedding, top_k) if top_k else Trimmer([], np.zeros(0), 0.0)
    return embedding, trimmer


def _loo_errors(design, z, log_t, prior, strength, top_k) -> np.ndarray:
    errors = np.empty(len(log_t))
    for i in range(len(log_t)):
        keep = np.arange(len(log_t)) != i
        embedding, trimmer = _fit(design[keep], z[keep], log_t[keep], prior, strength, top_k)
        errors[i] = log_t[i] - (design[i] @ embedding + trimmer.apply(z[i : i + 1])[0])
    return errors


def _base_vector(predictor: Predictor, device: str, spec_features: Optional[Sequence[float]]) -> np.ndarray:
    if spec_features is not None:
        return np.append(np.asarray(spec_features, dtype=np.float64), 0.0)
    if device in predictor.device_table:
        vector = predictor.device_vector(device).copy()
        vector[-1] = 0.0
        return vector
    from sniper_profiler.device import DeviceSpec  # numpy-free dataclass: fine on the prediction path

    return np.append(DeviceSpec(name=device, kind="other").features(), 0.0)


def adapt_predictor(
    predictor: Predictor,
    device: str,
    network_features: Sequence[Mapping[str, float]],
    seconds: Sequence[float],
    spec_features: Optional[Sequence[float]] = None,
    solve_embedding: bool = True,
    trimmer_top_k: Optional[int] = None,
    sample_names: Optional[Sequence[str]] = None,
) -> tuple[Predictor, AdaptReport]:
    """A copy of ``predictor`` that knows ``device`` from a few (network, measured seconds) samples.

    ``solve_embedding=False`` is the Time Trimmer alone (``sniper-onnx feedback``): the device keeps
    its embedding and only the residual fit is added; there ``trimmer_top_k`` is the most features
    the fit may use (leave-one-out picks 0..k). With ``solve_embedding`` it fixes k.
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    if len(seconds) == 0 or len(seconds) != len(network_features):
        raise SniperError(f"device {device!r}: need matching network and latency samples (got {len(network_features)} "
                          f"networks, {len(seconds)} latencies); give at least 3 measured pairs")
    if not np.all(np.isfinite(seconds)) or np.any(seconds <= 0):
        raise SniperError(f"device {device!r}: measured latencies must be positive seconds; fix the samples file")
    params = params_of(predictor)
    nets = predictor.network_matrix(network_features)
    base = _base_vector(predictor, device, spec_features)
    existing_slot = int(predictor.device_table.get(device, [0])[-1])
    current = predictor.device_vector(device) if device in predictor.device_table else base
    outputs = predictor.run(nets, np.tile(base, (len(nets), 1)))
    design = np.column_stack([outputs[G.NETWORK_EMBEDDING_OUTPUT], np.ones(len(nets))])
    log_t = np.log(seconds) - float(params["out_bias"])  # the graph adds out_bias after F·e + b
    z = normalized_network(params, nets)
    current_out = predictor.run(nets, np.tile(current, (len(nets), 1)))
    mape_before = float(np.mean(np.abs(current_out[G.SECONDS_OUTPUT] / seconds - 1)))

    ks = (trimmer_top_k,) if trimmer_top_k is not None else tuple(k for k in TRIMMER_GRID if k < len(seconds) - 2)
    if solve_embedding:
        branch = outputs[G.DEVICE_EMBEDDING_OUTPUT][0].astype(np.float64)
        spec_prior = "device_spec" if spec_features is not None or device in predictor.device_table else "device_branch"
        candidates = [(spec_prior, branch, s, k) for s in RIDGE_GRID for k in ks]
        candidates += [("train_mean", _train_mean_embedding(predictor, nets[:1]), s, k) for s in RIDGE_GRID for k in ks]
        # A device unlike every training device may follow none of the PCN's directions: the
        # "none" candidate drops them (a free scale plus the Time Trimmer's features alone).
        direct_ks = (trimmer_top_k,) if trimmer_top_k else tuple(k for k in DIRECT_GRID if k < len(seconds) - 2)
        candidates += [("none", np.zeros(design.shape[1]), DIRECT_RIDGE, k) for k in direct_ks]
    else:  # Time Trimmer alone: k = 0..top_k, so a few noisy samples cannot force a spurious fit
        most = trimmer_top_k if trimmer_top_k is not None else 3
        ks = tuple(k for k in range(most + 1) if k == 0 or k < len(seconds) - 2)
        candidates = [("current", current_out[G.DEVICE_EMBEDDING_OUTPUT][0].astype(np.float64), np.inf, k) for k in ks]
    best = None
    for prior_name, prior, strength, k in candidates:
        if np.isinf(strength):
            residual = np.log(seconds / current_out[G.SECONDS_OUTPUT])
            errors = np.array([residual[i] - fit_trimmer(np.delete(z, i, 0), np.delete(residual, i), k).apply(z[i:i + 1])[0]
                               for i in range(len(residual))]) if len(residual) > 2 else residual
        else:
            errors = _loo_errors(design, z, log_t, prior, strength, k) if len(log_t) > 2 else np.zeros(1)
        score = float(np.sqrt(np.mean(errors**2)))
        if best is None or score < best[0] - 1e-12:
            best = (score, prior_name, prior, strength, k, errors)
    score, prior_name, prior, strength, k, errors = best
    if np.isinf(strength):
        embedding = prior
        trimmer = fit_trimmer(z, np.log(seconds / current_out[G.SECONDS_OUTPUT]), k)
    else:
        embedding, trimmer = _fit(design, z, log_t, prior, strength, k)

    branch_now = outputs[G.DEVICE_EMBEDDING_OUTPUT][0].astype(np.float64)
    trim_w = np.zeros(z.shape[1])
    trim_w[trimmer.features] = trimmer.weights
    slot = existing_slot or params["slot_delta"].shape[0] + 1
    if existing_slot:
        i = existing_slot - 1
        if solve_embedding:  # a fresh fit from the uncorrected device: replaces the old correction
            params["slot_delta"][i] = embedding - branch_now
            params["slot_trim_w"][:, i] = trim_w
            params["slot_trim_b"][i] = trimmer.bias
        else:  # the Time Trimmer fits what the current correction still misses: it adds
            params["slot_trim_w"][:, i] += trim_w
            params["slot_trim_b"][i] += trimmer.bias
    else:
        params["slot_delta"] = np.vstack([params["slot_delta"], embedding - branch_now])
        params["slot_trim_w"] = np.column_stack([params["slot_trim_w"], trim_w])
        params["slot_trim_b"] = np.append(params["slot_trim_b"], trimmer.bias)
    meta = dict(predictor.meta)
    table = dict(meta["device_table"])
    table[device] = [*base[:-1].tolist(), float(slot)]
    meta["device_table"] = table
    if len(errors) >= 5:
        intervals = dict(meta.get("intervals", {}))
        spread = max(float(np.std(errors)), MIN_LOG_SPREAD)
        intervals[device] = [-Z90 * spread, Z90 * spread]
        meta["intervals"] = intervals
    names = predictor.network_feature_names
    report = AdaptReport(
        device=device, samples=len(seconds), prior=prior_name, ridge=None if np.isinf(strength) else float(strength),
        trimmer_features=[names[i] for i in trimmer.features], loo_rmse_log=score,
        sample_mape_before=mape_before, sample_mape_after=0.0, slot=slot,
    )
    corrections = list(meta.get("corrections", []))  # earlier entries keep their measurements
    corrections.append({"slot": slot, "device": device, "kind": "adapt" if solve_embedding else "feedback",
                        "samples": len(seconds), "prior": prior_name, "ridge": report.ridge,
                        "trimmer_features": report.trimmer_features,
                        # the measurements travel with the predictor, so a later retrain can use them
                        "measurements": [[str(n), float(t)] for n, t in zip(sample_names or range(len(seconds)), seconds)]})
    meta["corrections"] = corrections
    adapted = build_predictor(params, {k: v for k, v in meta.items() if k not in ("network_feature_units",)},
                              predictor.source)
    after = adapted.run(nets, np.tile(np.array(table[device]), (len(nets), 1)))[G.SECONDS_OUTPUT]
    report.sample_mape_after = float(np.mean(np.abs(after / seconds - 1)))
    return adapted, report



def _train_mean_embedding(predictor: Predictor, one_net: np.ndarray) -> np.ndarray:
    """Mean device vector of the devices the PCN was trained on (uncorrected rows of the table)."""
    base = [np.array(v) for v in predictor.device_table.values() if v[-1] == 0]
    if not base:
        base = [np.array(v) for v in predictor.device_table.values()]
    vectors = np.array([np.append(v[:-1], 0.0) for v in base])
    out = predictor.run(np.repeat(one_net, len(vectors), 0), vectors)
    return out[G.DEVICE_EMBEDDING_OUTPUT].astype(np.float64).mean(0)
