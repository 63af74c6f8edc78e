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

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.predictors import graph as G
from sniper_onnx.predictors.kernelnet import call_log_seconds_numpy, node_log_seconds_numpy, node_size, roofline_work
from sniper_onnx.predictors.keyfeatures import pearson_columns
from sniper_onnx.predictors.runtime import (DEFAULT_LOG_INTERVAL, PATH_KERNELS, Predictor, build_predictor,
                                             normalized_network, params_of)

RIDGE_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
BIAS_RIDGE = 1e-4  # the absolute scale of a new device is free: barely shrink its log-time bias
TRIMMER_GRID = (0, 1, 2)
DIRECT_GRID = (1, 2, 3)
DIRECT_RIDGE = 1e6  # pins the PCN directions at 0 for the "none" prior
Z90 = 1.6449
MIN_LOG_SPREAD = 0.05  # intervals from 10 samples are optimistic: never narrower than ±8% (90%)
POWER_RIDGE = 0.05  # shrinks the power of a kernel-sum transfer towards 0 (a plain rescaling)
# shrinks a node power towards 0 (every node rescaled alike); 0.01 and 0.001 gave the same
# left-out-device MAPE on the reference dataset (docs/predictor-measurements.md), and 0.001 shrinks less where
# the samples' sizes vary little
NODE_POWER_RIDGE = 0.001


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
    sample_mape_before: Optional[float]  # None: a new device without a spec, which nothing predicted before
    sample_mape_after: float
    slot: int
    power: float = 0.0  # kernel-sum transfers: log t = (1 + power) * log t_reference + trimmer
    predictor: str = ""  # the predictor file adapted
    node_power: float = 0.0  # kernel-sum transfers: each node scaled by exp(node_power * kernelnet.node_size)
    set_aside: List[str] = field(default_factory=list)  # samples whose network has no layer row: kept, not fitted
    warnings: List[str] = field(default_factory=list)  # about the samples themselves (an older analysis)

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


def _kernel_tables(predictor: Predictor, kernel_tables, count: int):
    """The samples' kernel tables, merged once (every fit below reuses them), when the predictor has a
    kernel-sum path and every sample has one."""
    if not predictor.kernel_path or kernel_tables is None or len(kernel_tables) != count:
        return None
    if any(table is None or len(table) == 0 for table in kernel_tables):
        return None  # a network with no layer row gives the node times nothing to fit
    return G.distinct_each([predictor.in_kernel_layout(table) for table in kernel_tables])


def _without_table(sample_names, kernel_tables) -> str:
    """Which samples lack a kernel table, for the error that asks for one: "a.json and 2 more have"."""
    count = len(kernel_tables) if kernel_tables is not None else 0
    lacking = [i for i in range(count) if kernel_tables[i] is None] if count else []
    if not lacking:
        return "the samples have"
    names = list(dict.fromkeys(str(sample_names[i]) if sample_names is not None else f"sample {i + 1}"
                               for i in lacking))  # a network measured twice is named once
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f"{names[0]}{more} {'have' if more else 'has'}"


def _no_layer_to_correct(device: str, kernel_tables) -> None:
    """Raise where every sample's table has no row: networks the kernel sum does not time."""
    if kernel_tables and all(table is not None and len(table) == 0 for table in kernel_tables):
        raise SniperError(f"device {device!r} is answered by the kernel sum, and none of the {len(kernel_tables)} "
                          "sample network(s) has a layer it times (each holds control flow, If, Loop or Scan, or no "
                          "layer): nothing for the Time Trimmer to correct; give networks without control flow")


def _answers_by_kernels(predictor: Predictor, device: str) -> bool:
    return predictor.kernel_path.get("devices", {}).get(device, {}).get("path") == PATH_KERNELS


def _trimmer_ks(trimmer_top_k: Optional[int], samples: int) -> tuple:
    """The Time Trimmer feature counts to try: the one asked for, or those the samples can support."""
    return (trimmer_top_k,) if trimmer_top_k is not None else tuple(k for k in TRIMMER_GRID if k < samples - 2)


def _trimmer_loo(z: np.ndarray, residual: np.ndarray, k: int) -> np.ndarray:
    if len(residual) <= 2:
        return residual
    return np.array([residual[i] - fit_trimmer(np.delete(z, i, 0), np.delete(residual, i), k).apply(z[i:i + 1])[0]
                     for i in range(len(residual))])


@dataclass
class _Choice:
    """One way to answer the new device, scored by leave-one-out RMS log error on the samples."""

    score: float
    prior: str
    errors: np.ndarray
    trimmer: Trimmer
    delta: Optional[np.ndarray] = None  # device-embedding offset (PCN choices)
    ridge: Optional[float] = None
    kernel_reference: Optional[str] = None  # kernel choices: the trained device whose kernel sum is rescaled
    power: float = 0.0  # log t = (1 + power) * log t_reference + trimmer
    node_power: float = 0.0  # each reference node's time times exp(node_power * node_size)
    roofline: Optional[np.ndarray] = None  # seconds per (1 + MAC), per (1 + byte), per node, per call: no reference

    @property
    def parameters(self) -> int:
        """Values fitted to the samples (a scale, the trimmer's features, the PCN's embedding
        offset, a power, the roofline's rates): how simple, for the one-standard-error rule."""
        count = 1 + len(self.trimmer.features) + int(bool(self.power)) + int(bool(self.node_power))
        count += len(self.delta) if self.delta is not None else 0
        return count + (int(np.count_nonzero(self.roofline)) if self.roofline is not None else 0)

    @property
    def by_kernels(self) -> bool:
        """Whether the kernel sum answers the device after this choice."""
        return self.kernel_reference is not None or self.roofline is not None


def _pcn_choice(predictor, nets, z, seconds, base, spec_prior: str, trimmer_top_k) -> _Choice:
    """The PCN's device vector solved by ridge towards a prior (the paper's path)."""
    params = params_of(predictor)
    outputs = predictor.run(nets, np.tile(base, (len(nets), 1)))
    design = np.column_stack([outputs[G.NETWORK_EMBEDDING_OUTPUT], np.ones(len(nets))])
    log_t = np.log(seconds) - float(params["out_bias"])  # the graph adds out_bias after F·e + b
    branch = outputs[G.DEVICE_EMBEDDING_OUTPUT][0].astype(np.float64)
    ks = _trimmer_ks(trimmer_top_k, len(seconds))
    candidates = [(spec_prior, branch, s, k) for s in RIDGE_GRID for k in ks]
    candidates += [("train_mean", _train_mean_embedding(predictor, nets[:1]), s, k) for s in RIDGE_GRID for k in ks]
    # A device unlike every training device may follow none of the PCN's directions: the
    # "none" candidate drops them (a free scale plus the Time Trimmer's features alone).
    direct_ks = (trimmer_top_k,) if trimmer_top_k else tuple(k for k in DIRECT_GRID if k < len(seconds) - 2)
    candidates += [("none", np.zeros(design.shape[1]), DIRECT_RIDGE, k) for k in direct_ks]
    best = None
    for prior_name, prior, strength, k in candidates:
        errors = _loo_errors(design, z, log_t, prior, strength, k) if len(log_t) > 2 else np.zeros(1)
        score = float(np.sqrt(np.mean(errors**2)))
        if best is None or score < best[0] - 1e-12:
            best = (score, prior_name, prior, strength, k, errors)
    score, prior_name, prior, strength, k, errors = best
    embedding, trimmer = _fit(design, z, log_t, prior, strength, k)
    return _Choice(score, prior_name, errors, trimmer, delta=embedding - branch, ridge=float(strength))


def simplest_within_one_se(choices: Sequence["_Choice"]) -> "_Choice":
    """Of ``choices`` ordered simplest first, the first whose leave-one-out mean squared error is
    within one standard error of the best's (the one-standard-error rule): on 10 noisy samples a
    trimmer feature that lowers the error by less than its noise fits the noise (a tester's
    feedback picked num_atrous_conv3x3 and doubled the error on 32 other nets)."""
    squared = [np.asarray(c.errors, dtype=np.float64) ** 2 for c in choices]
    best = int(np.argmin([e.mean() for e in squared]))
    bound = squared[best].mean() + squared[best].std(ddof=1) / np.sqrt(len(squared[best])) if len(squared[best]) > 1 \
        else squared[best].mean()
    return next(c for c, e in zip(choices, squared) if e.mean() <= bound)


def _trimmer_choice(z, residual, k, prior: str, reference: Optional[str] = None) -> _Choice:
    errors = _trimmer_loo(z, residual, k)
    return _Choice(float(np.sqrt(np.mean(errors**2))), prior, errors, fit_trimmer(z, residual, k),
                   kernel_reference=reference)


def _fit_power(log_reference: np.ndarray, residual: np.ndarray, z: np.ndarray, k: int) -> tuple[float, Trimmer]:
    """residual = power * log t_reference + trimmer(z): the power by ridge towards 0, then the trimmer."""
    centered = log_reference - log_reference.mean()
    power = float(centered @ (residual - residual.mean()) / (centered @ centered + POWER_RIDGE * len(residual)))
    return power, fit_trimmer(z, residual - power * log_reference, k)


def _power_choice(z, residual, log_reference, k, reference: str) -> _Choice:
    errors = np.empty(len(residual))
    for i in range(len(residual)):
        keep = np.arange(len(residual)) != i
        power, trimmer = _fit_power(log_reference[keep], residual[keep], z[keep], k)
        errors[i] = residual[i] - power * log_reference[i] - trimmer.apply(z[i:i + 1])[0]
    power, trimmer = _fit_power(log_reference, residual, z, k)
    return _Choice(float(np.sqrt(np.mean(errors**2))), f"kernels:{reference} (power {power:+.2f})", errors, trimmer,
                   kernel_reference=reference, power=power)


@dataclass
class _NodeSums:
    """The samples' kernel sums on a reference device, node by node: each distinct row's
    log-seconds (its count folded in) and its size term; a call's cost, where the kernel net has
    one, is one more term of size 0 (the node power leaves it as it is, as the graph does)."""

    logs: List[np.ndarray]
    sizes: List[np.ndarray]

    @classmethod
    def of(cls, params, tables, device_vector: np.ndarray, nets: np.ndarray) -> "_NodeSums":
        """``nets``: the samples' raw network features (for kernel nets trained with network context)."""
        distinct = G.distinct_each(tables)
        call = call_log_seconds_numpy(params, device_vector)
        extra = [call] if np.isfinite(call) else []
        return cls([np.append(node_log_seconds_numpy(params, d.rows.astype(np.float64), device_vector, net)
                              + np.log(d.counts), extra) for d, net in zip(distinct, nets)],
                   [np.append(node_size(d.rows.astype(np.float64)), np.zeros(len(extra))) for d in distinct])

    def log_seconds_and_slope(self, node_power: float, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log t of the chosen samples with every node scaled by its node power, and d log t / d power."""
        log_t, slope = np.empty(len(rows)), np.empty(len(rows))
        for j, i in enumerate(rows):
            scaled = self.logs[i] + node_power * self.sizes[i]
            log_t[j] = np.logaddexp.reduce(scaled)
            slope[j] = np.exp(scaled - log_t[j]) @ self.sizes[i]
        return log_t, slope


def _fit_node_power(sums: _NodeSums, log_t: np.ndarray, rows: np.ndarray, z: np.ndarray, k: int) -> tuple[float, Trimmer]:
    """log t = log sum_nodes t_node * exp(node_power * size) + trimmer(z): the node power by
    Gauss-Newton with ridge towards 0 (the bias profiled out), then the trimmer on what is left."""
    node_power, n = 0.0, len(rows)
    for _ in range(30):
        predicted, slope = sums.log_seconds_and_slope(node_power, rows)
        residual, slope = log_t - predicted, slope - slope.mean()
        step = (slope @ (residual - residual.mean()) - NODE_POWER_RIDGE * n * node_power) / (
            slope @ slope + NODE_POWER_RIDGE * n)
        node_power += float(np.clip(step, -0.5, 0.5))
        if abs(step) < 1e-6:
            break
    predicted, _ = sums.log_seconds_and_slope(node_power, rows)
    return node_power, fit_trimmer(z, log_t - predicted, k)


def _node_choice(sums: _NodeSums, z, seconds, k, reference: str) -> _Choice:
    log_t, everyone = np.log(seconds), np.arange(len(seconds))
    errors = np.empty(len(seconds))
    for i in everyone:
        keep = everyone[everyone != i]
        node_power, trimmer = _fit_node_power(sums, log_t[keep], keep, z[keep], k)
        predicted, _ = sums.log_seconds_and_slope(node_power, np.array([i]))
        errors[i] = log_t[i] - predicted[0] - trimmer.apply(z[i:i + 1])[0]
    node_power, trimmer = _fit_node_power(sums, log_t, everyone, z, k)
    return _Choice(float(np.sqrt(np.mean(errors**2))), f"kernels:{reference} (node power {node_power:+.2f})", errors,
                   trimmer, kernel_reference=reference, node_power=node_power)


def nonnegative_rates(work: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Rates >= 0 minimizing the squared relative error of work @ rates: exact, by solving every set
    of free rates and keeping the best one that stays non-negative (fine for a handful of columns)."""
    design = work / seconds[:, None]
    scale = np.maximum(design.max(0), 1e-300)
    best, best_loss = np.zeros(work.shape[1]), np.inf
    columns = range(work.shape[1])
    for free in (list(s) for r in range(1, work.shape[1] + 1) for s in itertools.combinations(columns, r)):
        solution = np.linalg.lstsq(design[:, free] / scale[free], np.ones(len(seconds)), rcond=None)[0]
        if np.any(solution < 0):
            continue
        rates = np.zeros(work.shape[1])
        rates[free] = solution / scale[free]
        loss = float(np.sum((design @ rates - 1.0) ** 2))
        if loss < best_loss:
            best, best_loss = rates, loss
    return best


def _roofline_choice(tables, seconds) -> _Choice:
    """Every node costs c + a (1 + MACs) + b (1 + bytes moved), and the network d more for the call,
    with a, b, c, d >= 0 fitted to the samples alone: a device of a kind no trained device has (a GPU
    among CPUs) borrows no per-layer times, only the shape of a roofline with a fixed cost per kernel
    launch and per call."""
    merged = G.distinct_each(tables)
    work = np.array([np.append(m.counts.astype(np.float64) @ roofline_work(m.rows), 1.0) for m in merged])
    errors = np.empty(len(seconds))
    for i in range(len(seconds)):
        keep = np.arange(len(seconds)) != i
        errors[i] = np.log(seconds[i] / max(float(work[i] @ nonnegative_rates(work[keep], seconds[keep])), 1e-30))
    rates = nonnegative_rates(work, seconds)
    prior = (f"roofline ({rates[3] * 1e6:.3g} us a call, {rates[2] * 1e6:.3g} us a node, {rates[0] * 1e12:.3g} ps a MAC, "
             f"{rates[1] * 1e12:.3g} ps a byte)")
    return _Choice(float(np.sqrt(np.mean(errors**2))), prior, errors, Trimmer([], np.zeros(0), 0.0), roofline=rates)


def _kernel_choices(predictor, nets, z, seconds, tables, trimmer_top_k) -> List[_Choice]:
    """A trained device's kernel sum, rescaled (and trimmed) to the samples: for a new device
    close to a known one, per-layer times transfer better than the PCN's whole-network embedding.
    With a power, the rescaling may grow with the network's time (a wider or threaded machine
    gains more on big networks); with a node power, it grows with each node's size instead (a
    second thread splits a large convolution, not an Add)."""
    ks = _trimmer_ks(trimmer_top_k, len(seconds))
    params = params_of(predictor)
    choices = []
    for reference, vector in predictor.device_table.items():
        if vector[-1] != 0 or not _answers_by_kernels(predictor, reference):
            continue  # only trained devices on which the kernel sum won
        kernel_seconds = predictor.run(nets, np.tile(np.asarray(vector), (len(nets), 1)), tables)[G.KERNEL_SECONDS_OUTPUT]
        log_reference = np.log(kernel_seconds.astype(np.float64))
        residual = np.log(seconds) - log_reference
        choices += [_trimmer_choice(z, residual, k, f"kernels:{reference}", reference) for k in ks]
        if len(seconds) >= 5:
            choices += [_power_choice(z, residual, log_reference, k, reference) for k in ks if k < len(seconds) - 3]
            sums = _NodeSums.of(params, tables, np.asarray(vector[:-1], dtype=np.float64), nets)
            choices += [_node_choice(sums, z, seconds, k, reference) for k in ks if k < len(seconds) - 3]
    return choices


# a network's inference outside this range is a unit mistake (a latency in ns read as ms, say)
PLAUSIBLE_SECONDS = (1e-7, 1e5)
MIN_ADAPT_NETWORKS = 3  # leave-one-out needs two networks left to fit after one is taken out


def _checked_seconds(device: str, network_features: Sequence[Mapping[str, float]], seconds: Sequence[float]) -> np.ndarray:
    seconds = np.asarray(seconds, dtype=np.float64)
    if len(seconds) == 0 or len(seconds) != len(network_features):
        raise SniperError(f"device {device!r}: need matching network and latency samples (got {len(network_features)} "
                          f"networks, {len(seconds)} latencies); give at least 3 measured pairs")
    if not np.all(np.isfinite(seconds)) or np.any(seconds <= 0):
        raise SniperError(f"device {device!r}: measured latencies must be positive seconds; fix the samples file")
    low, high = PLAUSIBLE_SECONDS
    odd = seconds[(seconds < low) | (seconds > high)]
    if len(odd):
        raise SniperError(f"device {device!r}: a latency of {odd[0]:.3g} s is outside {low:g}..{high:g} s; "
                          "check the samples' unit (latency_ms or latency_s)")
    return seconds


@dataclass
class _Samples:
    """The samples a fit sees: one per network (repeats averaged), and every measurement as given."""

    features: List[Mapping[str, float]]
    seconds: np.ndarray
    kernel_tables: Optional[List[Optional[np.ndarray]]]
    measurements: List[List[Any]]
    set_aside: List[str] = field(default_factory=list)


def _merged_samples(device: str, network_features, seconds, sample_names, kernel_tables) -> _Samples:
    """A network measured several times is one sample at the geometric mean of its times: left in
    twice, leave-one-out would score a fit on a network it still holds."""
    seconds = _checked_seconds(device, network_features, seconds)
    names = [str(n) for n in sample_names] if sample_names is not None else None
    measurements = [[n, float(t)] for n, t in zip(names or range(len(seconds)), seconds)]
    keys = names or [tuple(sorted((k, float(v)) for k, v in f.items())) for f in network_features]
    groups: Dict[Any, List[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    first = [rows[0] for rows in groups.values()]
    merged = np.array([float(np.exp(np.mean(np.log(seconds[rows])))) for rows in groups.values()])
    if kernel_tables is not None:
        # a network with no layer row (control flow only, or no layer at all) gives the node times
        # nothing to fit: set it aside rather than give up the kernel sum for every sample
        empty = [i for i in first if kernel_tables[i] is not None and len(kernel_tables[i]) == 0]
        if empty and len(empty) < len(first):
            aside = [str(names[i]) if names else f"sample {i + 1}" for i in empty]
            keep = [k for k, i in enumerate(first) if i not in empty]
            return _Samples([network_features[first[k]] for k in keep], merged[keep],
                            [kernel_tables[first[k]] for k in keep], measurements, aside)
    tables = None if kernel_tables is None else [kernel_tables[i] for i in first]
    return _Samples([network_features[i] for i in first], merged, tables, measurements)


def adapt_predictor(
    predictor: Predictor,
    device: str,
    network_features: Sequence[Mapping[str, float]],
    seconds: Sequence[float],
    spec_features: Optional[Sequence[float]] = None,
    solve_embedding: bool = True,
    trimmer_top_k: Optional[int] = None,
    sample_names: Optional[Sequence[str]] = None,
    kernel_tables: Optional[Sequence[Optional[np.ndarray]]] = None,
) -> tuple[Predictor, AdaptReport]:
    """A copy of ``predictor`` that knows ``device`` from a few (network, measured seconds) samples.

    ``solve_embedding=False`` is the Time Trimmer alone (``sniper-onnx feedback``): the device keeps
    its embedding and only the residual fit is added; there ``trimmer_top_k`` is the most features
    the fit may use (leave-one-out picks 0..k). With ``solve_embedding`` it fixes k.

    ``kernel_tables`` (one per sample) let the fit see what `predict` answers: on a device answered
    by the kernel sum the Time Trimmer corrects the kernel sum, and a new device may be answered by
    a trained device's kernel sum, rescaled, when that fits the samples better than the PCN.
    """
    samples = _merged_samples(device, network_features, seconds, sample_names, kernel_tables)
    seconds = samples.seconds
    if solve_embedding and len(seconds) < MIN_ADAPT_NETWORKS:
        raise SniperError(f"device {device!r}: {len(seconds)} distinct network(s) measured; adapting needs at least "
                          f"{MIN_ADAPT_NETWORKS} (about 10 fit best)")
    nets = predictor.network_matrix(samples.features)
    tables = _kernel_tables(predictor, samples.kernel_tables, len(seconds))
    known_by_kernels = device in predictor.device_table and _answers_by_kernels(predictor, device)
    if not solve_embedding and known_by_kernels and tables is None:
        _no_layer_to_correct(device, samples.kernel_tables)
        raise SniperError(f"device {device!r} is answered by the kernel sum, and {_without_table(sample_names, kernel_tables)} "
                          "no kernel table: give the samples' networks as .onnx files or `analyze --json --kernels` "
                          "(or --nodes) files, so that the Time Trimmer corrects what `predict` answers")
    base = _base_vector(predictor, device, spec_features)
    existing_slot = int(predictor.device_table.get(device, [0])[-1])
    current = predictor.device_vector(device) if device in predictor.device_table else base
    z = normalized_network(params_of(predictor), nets)
    before_by_kernels = known_by_kernels and tables is not None  # else the PCN answers, as in predict
    current_out = predictor.run(nets, np.tile(current, (len(nets), 1)), tables if before_by_kernels else None)
    current_seconds = current_out[G.KERNEL_SECONDS_OUTPUT if before_by_kernels else G.SECONDS_OUTPUT]
    mape_before = float(np.mean(np.abs(current_seconds / seconds - 1)))
    # a new device without a spec was "predicted" from a placeholder vector: no figure to compare with
    reported_before = mape_before if device in predictor.device_table or spec_features is not None else None

    if not solve_embedding:
        residual = np.log(seconds / current_seconds.astype(np.float64))
        most = trimmer_top_k if trimmer_top_k is not None else 3
        ks = tuple(k for k in range(most + 1) if k == 0 or k < len(seconds) - 2)
        reference = device if known_by_kernels else None
        choice = simplest_within_one_se([_trimmer_choice(z, residual, k, "current", reference) for k in ks])
    else:
        choices = _adapt_choices(predictor, device, nets, z, seconds, base, spec_features, tables, trimmer_top_k)
        # the simplest within one standard error of the best; equals keep their order (the PCN first)
        choice = simplest_within_one_se(sorted(choices, key=lambda c: c.parameters))
    adapted, slot = _write_choice(predictor, device, base, existing_slot, choice, z, solve_embedding, samples.measurements)
    names = predictor.network_feature_names
    report = AdaptReport(
        device=device, samples=len(seconds), prior=choice.prior, ridge=choice.ridge,
        trimmer_features=[names[i] for i in choice.trimmer.features], loo_rmse_log=choice.score,
        sample_mape_before=reported_before, sample_mape_after=0.0, slot=slot, power=choice.power, predictor=predictor.source,
        node_power=choice.node_power, set_aside=samples.set_aside,
    )
    answers_by_kernels = _answers_by_kernels(adapted, device) and tables is not None
    after = adapted.run(nets, np.tile(adapted.device_vector(device), (len(nets), 1)), tables if answers_by_kernels else None)
    report.sample_mape_after = float(np.mean(np.abs(
        after[G.KERNEL_SECONDS_OUTPUT if answers_by_kernels else G.SECONDS_OUTPUT] / seconds - 1)))
    return adapted, report


def _adapt_choices(predictor, device, nets, z, seconds, base, spec_features, tables, trimmer_top_k) -> List[_Choice]:
    """Every way ``adapt`` weighs to answer a new device: the PCN's best fit, then kernel-sum transfers.

    Kernel-sum transfers come only from trained devices of the new device's kind, and among those
    only from the nearest: per-layer times carry over between devices of one kind (a CPU on two
    threads from the same CPU on one), while another kind's per-layer times (a CPU's for a GPU)
    are only a MACs-shaped guess. With 10 noisy samples, leave-one-out among more candidates picks
    the lucky rather than the right. A device of a kind no trained device shares gets the PCN's
    candidates; one of no stated kind (no spec) is weighed against every candidate."""
    kernel = _kernel_choices(predictor, nets, z, seconds, tables, trimmer_top_k) if tables is not None else []
    kind = _device_kind(predictor, base)
    same_kind = [c for c in kernel if kind and _device_kind(predictor, predictor.device_vector(c.kernel_reference)) == kind]
    if same_kind:
        return _nearest_references(predictor, base, same_kind)
    if kind not in (None, "other"):
        kernel = []  # another kind's per-layer times would only be a MACs-shaped guess
    if tables is not None and len(seconds) >= 5:
        kernel.append(_roofline_choice(tables, seconds))
    spec_prior = "device_spec" if spec_features is not None or device in predictor.device_table else "device_branch"
    return [_pcn_choice(predictor, nets, z, seconds, base, spec_prior, trimmer_top_k), *kernel]


def _nearest_references(predictor: Predictor, base: np.ndarray, choices: List[_Choice]) -> List[_Choice]:
    """The transfers from the reference device(s) nearest to the new one in the device features its
    spec knows (raw, log-scaled by DeviceSpec): a CPU on two threads learns from the same CPU on one
    thread, not from it on one thread with graph optimizations off. A fact the spec leaves unknown
    (0, with its ``_known`` flag 0) says nothing about nearness."""
    names = predictor.device_feature_names[:len(base) - 1]  # the last column is the correction slot
    flag = {name: i for i, name in enumerate(names) if name.endswith("_known")}
    known = np.array([not name.endswith("_known") and base[flag[f"{name}_known"]] > 0.5 if f"{name}_known" in flag
                      else not name.endswith("_known") for name in names])
    distance = {c.kernel_reference: float(np.linalg.norm((predictor.device_vector(c.kernel_reference)[:-1] - base[:-1])[known]))
                for c in choices}
    nearest = min(distance.values())
    return [c for c in choices if distance[c.kernel_reference] <= nearest + 1e-9]


def _device_kind(predictor: Predictor, vector: Sequence[float]) -> Optional[str]:
    """The ``kind_*`` device feature set in ``vector``, or None when there is not exactly one."""
    kinds = [name[len("kind_"):] for name, value in zip(predictor.device_feature_names, vector)
             if name.startswith("kind_") and value > 0.5]
    return kinds[0] if len(kinds) == 1 else None


def adaptation_candidates(
    predictor: Predictor,
    device: str,
    network_features: Sequence[Mapping[str, float]],
    seconds: Sequence[float],
    spec_features: Optional[Sequence[float]] = None,
    kernel_tables: Optional[Sequence[Optional[np.ndarray]]] = None,
) -> List[tuple[str, float, Predictor]]:
    """(prior, leave-one-out RMS log error, adapted predictor) for every candidate ``adapt`` weighs.

    ``adapt_predictor`` keeps the one with the lowest leave-one-out error; benchmarks use the rest
    to ask how good the best candidate in hindsight would have been (a ceiling, not a result)."""
    samples = _merged_samples(device, network_features, seconds, None, kernel_tables)
    seconds = samples.seconds
    nets = predictor.network_matrix(samples.features)
    tables = _kernel_tables(predictor, samples.kernel_tables, len(seconds))
    base = _base_vector(predictor, device, spec_features)
    z = normalized_network(params_of(predictor), nets)
    existing_slot = int(predictor.device_table.get(device, [0])[-1])
    choices = _adapt_choices(predictor, device, nets, z, seconds, base, spec_features, tables, None)
    return [(c.prior, c.score, _write_choice(predictor, device, base, existing_slot, c, z, True, samples.measurements)[0])
            for c in choices]


def _write_choice(predictor, device, base, existing_slot, choice: _Choice, z, solve_embedding, measurements):
    """The adapted predictor: the choice written into the device's correction slot and metadata."""
    params = params_of(predictor)
    trim_w = np.zeros(z.shape[1])
    trim_w[choice.trimmer.features] = choice.trimmer.weights
    slot = existing_slot or params["slot_delta"].shape[0] + 1
    vector = base
    if choice.kernel_reference is not None and solve_embedding:
        # The device is answered as the reference device, rescaled: its features, no embedding offset.
        vector = predictor.device_vector(choice.kernel_reference)
        vector[-1] = 0.0
    delta = choice.delta if choice.delta is not None else np.zeros(params["slot_delta"].shape[1])
    if existing_slot:
        i = existing_slot - 1
        if solve_embedding:  # a fresh fit from the uncorrected device: replaces the old correction
            params["slot_delta"][i] = delta
            params["slot_trim_w"][:, i] = trim_w
            params["slot_trim_b"][i] = choice.trimmer.bias
            params["slot_power"][i] = choice.power
            params["slot_node_power"][i] = choice.node_power
            params["slot_roofline_only"][i] = float(choice.roofline is not None)
            params["slot_roofline"][i] = choice.roofline[:3] if choice.roofline is not None else 0.0
            params["slot_roofline_call"][i] = choice.roofline[3] if choice.roofline is not None else 0.0
        else:  # the Time Trimmer fits what the current correction still misses: it adds
            params["slot_trim_w"][:, i] += trim_w
            params["slot_trim_b"][i] += choice.trimmer.bias
    else:
        params["slot_delta"] = np.vstack([params["slot_delta"], delta])
        params["slot_trim_w"] = np.column_stack([params["slot_trim_w"], trim_w])
        params["slot_trim_b"] = np.append(params["slot_trim_b"], choice.trimmer.bias)
        params["slot_power"] = np.append(params["slot_power"], choice.power)
        params["slot_node_power"] = np.append(params["slot_node_power"], choice.node_power)
        params["slot_roofline_only"] = np.append(params["slot_roofline_only"], float(choice.roofline is not None))
        params["slot_roofline"] = np.vstack([params["slot_roofline"],
                                             choice.roofline[:3] if choice.roofline is not None else np.zeros(3)])
        params["slot_roofline_call"] = np.append(params["slot_roofline_call"],
                                                 choice.roofline[3] if choice.roofline is not None else 0.0)
    meta = dict(predictor.meta)
    table = dict(meta["device_table"])
    if solve_embedding or device not in table:
        table[device] = [*vector[:-1].tolist(), float(slot)]
    else:
        table[device] = [*table[device][:-1], float(slot)]
    meta["device_table"] = table
    spread = max(float(np.std(choice.errors)), MIN_LOG_SPREAD) if len(choice.errors) >= 5 else None
    if spread is not None:
        meta["intervals"] = {**meta.get("intervals", {}), device: [-Z90 * spread, Z90 * spread]}
    meta["kernel_path"] = _kernel_path_after(predictor, device, choice, solve_embedding, spread, len(measurements))
    corrections = list(meta.get("corrections", []))  # earlier entries keep their measurements
    corrections.append({"slot": slot, "device": device, "kind": "adapt" if solve_embedding else "feedback",
                        "samples": len(measurements), "prior": choice.prior, "ridge": choice.ridge, "power": choice.power,
                        "node_power": choice.node_power,
                        "roofline": None if choice.roofline is None else choice.roofline.tolist(),
                        "trimmer_features": [predictor.network_feature_names[i] for i in choice.trimmer.features],
                        # the measurements travel with the predictor, so a later retrain can use them
                        "measurements": measurements})
    meta["corrections"] = corrections
    adapted = build_predictor(params, {k: v for k, v in meta.items() if k not in ("network_feature_units",)},
                              predictor.source)
    return adapted, slot


def _kernel_path_after(predictor, device, choice: _Choice, solve_embedding, spread, samples) -> Dict[str, Any]:
    """The device answers by the kernel sum exactly when its correction was fitted to the kernel sum."""
    kernel_path = dict(predictor.kernel_path)
    if not kernel_path:
        return kernel_path
    devices = dict(kernel_path.get("devices", {}))
    entry = dict(devices.get(device, {}))
    if not choice.by_kernels:
        if entry.get("path") == PATH_KERNELS:  # a fresh PCN fit: the PCN answers what it was fitted to
            devices.pop(device)
    else:
        if solve_embedding:
            entry = {"path": PATH_KERNELS, "reference_device": choice.kernel_reference or "roofline", "samples": samples,
                     "interval": list(entry.get("interval", DEFAULT_LOG_INTERVAL))}
        if spread is not None:
            entry["interval"] = [-Z90 * spread, Z90 * spread]
        devices[device] = entry
    kernel_path["devices"] = devices
    return kernel_path


def _train_mean_embedding(predictor: Predictor, one_net: np.ndarray) -> np.ndarray:
    """Mean device vector of the devices the PCN was trained on (uncorrected rows of the table)."""
    base = [np.array(v) for v in predictor.device_table.values() if v[-1] == 0]
    if not base:
        base = [np.array(v) for v in predictor.device_table.values()]
    vectors = np.array([np.append(v[:-1], 0.0) for v in base])
    out = predictor.run(np.repeat(one_net, len(vectors), 0), vectors)
    return out[G.DEVICE_EMBEDDING_OUTPUT].astype(np.float64).mean(0)
