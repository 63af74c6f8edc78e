"""The HW-NAS-Bench few-shot benchmark (issue 7): train on some device columns, adapt to others.

For each test device: adapt the trained predictor with ``samples`` measured architectures (HELP's
reference archs by default), predict all architectures, and report Spearman rho, Kendall tau, MAPE
and Acc(±10%), beside a FLOPs-only baseline fitted on the same samples (log-latency linear in
log-MACs). Works for any device column; a device without a spec falls back to the devices CSV's
kind and batch, then to kind ``other``, and adaptation then rests on the samples.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.predictors.dataset import TrainingData
from sniper_onnx.predictors.metrics import accuracy_metrics, spearman

FLOPS_FEATURE = "total_macs"
HELP_PUBLISHED = {  # HELP (Lee et al., NeurIPS 2021): means over its six meta-test devices, 10 samples each
    "mean_spearman": 0.932, "flops_mean_spearman": 0.787, "brp_nas_900_samples": 0.789}


@dataclass
class LatencyTable:
    archs: List[str]
    arch_index: np.ndarray
    devices: List[str]
    milliseconds: np.ndarray  # [archs, devices]

    def column(self, device: str) -> np.ndarray:
        if device not in self.devices:
            raise SniperError(f"device {device!r}: not a column of the latency table (columns: {', '.join(self.devices)})")
        return self.milliseconds[:, self.devices.index(device)]


def load_latency_table(path: "str | Path") -> LatencyTable:
    path = Path(path)
    if not path.is_file():
        raise SniperError(f"{path}: no such latency table; pass --table with the HW-NAS-Bench latency_ms.csv.gz")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [row for row in reader if row]
    if header[:2] != ["arch_index", "arch"]:
        raise SniperError(f"{path}: header must start with arch_index,arch then one column per device")
    values = np.array([[float(v) if v else np.nan for v in row[2:]] for row in rows])
    return LatencyTable([r[1] for r in rows], np.array([int(r[0]) for r in rows]), header[2:], values)


def device_features(names: Sequence[str], devices_csv: Optional["str | Path"]) -> Dict[str, List[float]]:
    """Raw DeviceSpec features per device: shipped specs, else the devices CSV's kind/batch, else ``other``."""
    from sniper_profiler.device import DEVICE_KINDS, DeviceSpec, load_device_specs

    shipped = {s.name: s for s in load_device_specs(str(resources.files("sniper_onnx") / "data" / "hw_nasbench201_devices.json"))}
    listed: Dict[str, Dict[str, str]] = {}
    if devices_csv:
        path = Path(devices_csv)
        if not path.is_file():
            raise SniperError(f"{path}: no such devices file; pass the devices.csv beside the latency table")
        with open(path, newline="") as handle:
            listed = {row["device"]: row for row in csv.DictReader(handle)}
    out = {}
    for name in names:
        if name in shipped:
            spec = shipped[name]
        else:
            row = listed.get(name, {})
            kind = row.get("kind", "other")
            spec = DeviceSpec(name=name, kind=kind if kind in DEVICE_KINDS else "other",
                              batch_size=int(float(row.get("batch") or 1)))
        out[name] = [float(v) for v in spec.features()]
    return out


def network_features(archs: Sequence[str]) -> Tuple[np.ndarray, List[str], str]:
    """Analyzer features of each arch from the committed table (``source`` says where they came from)."""
    from sniper_generator import nasbench201

    if not nasbench201.FEATURE_TABLE.is_file():
        return arch_string_features(archs)
    table_archs, matrix, names = nasbench201.load_feature_table()
    row = {arch: i for i, arch in enumerate(table_archs)}
    missing = [a for a in archs if a not in row]
    if missing:
        raise SniperError(f"arch {missing[0]!r}: not in the NAS-Bench-201 feature table; regenerate it")
    return matrix[[row[a] for a in archs]], list(names), "analyzer feature table (sniper_generator.nasbench201)"


def arch_string_features(archs: Sequence[str]) -> Tuple[np.ndarray, List[str], str]:
    """Fallback while the analyzer table is missing: op counts of the 15 cells and analytic conv MACs."""
    from sniper_generator.nasbench201 import parse_arch

    per_cell_macs = {"nor_conv_1x1": 1, "nor_conv_3x3": 9}  # x 16^2 * 32^2 = 262,144 MACs, same in every stage
    names = ["num_skip", "num_conv1x1", "num_conv3x3", "num_avgpool", "num_ops", FLOPS_FEATURE]
    rows = []
    for arch in archs:
        ops = parse_arch(arch)
        counts = [15 * ops.count(op) for op in ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")]
        macs = 15 * sum(per_cell_macs.get(op, 0) for op in ops) * 262144
        rows.append([*counts, 15 * sum(op != "none" for op in ops), macs])
    return np.array(rows, dtype=np.float64), names, "arch-string op counts (analyzer table missing)"


def training_data(table: LatencyTable, devices: Sequence[str], features: np.ndarray, names: List[str],
                  device_vectors: Dict[str, List[float]]) -> TrainingData:
    from sniper_profiler.device import DEVICE_FEATURE_NAMES

    pair_net, pair_dev, seconds = [], [], []
    for d, device in enumerate(devices):
        ms = table.column(device)
        ok = np.flatnonzero(np.isfinite(ms) & (ms > 0))
        pair_net.append(ok)
        pair_dev.append(np.full(len(ok), d))
        seconds.append(ms[ok] / 1000.0)
    return TrainingData(
        network_names=list(table.archs), network_matrix=features, network_feature_names=names,
        device_names=list(devices), device_matrix=np.array([device_vectors[d] for d in devices]),
        device_feature_names=list(DEVICE_FEATURE_NAMES), pair_network=np.concatenate(pair_net),
        pair_device=np.concatenate(pair_dev), seconds=np.concatenate(seconds))


@dataclass
class DeviceResult:
    device: str
    samples: int
    sniper: Dict[str, float]
    flops: Dict[str, float]
    adaptation: Dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchReport:
    train: List[str]
    test: List[str]
    samples: int
    feature_source: str
    results: List[DeviceResult]
    published: Dict[str, float] = field(default_factory=lambda: dict(HELP_PUBLISHED))

    def mean(self, model: str, metric: str) -> float:
        return float(np.mean([getattr(r, model)[metric] for r in self.results]))

    def to_json_dict(self) -> Dict[str, Any]:
        summary = {f"{m}_mean_{k}": self.mean(m, k) for m in ("sniper", "flops")
                   for k in ("spearman", "kendall", "mape_pct", "acc10")}
        return {"train": self.train, "test": self.test, "samples": self.samples, "feature_source": self.feature_source,
                "summary": summary, "published": self.published,
                "devices": [r.__dict__ for r in self.results]}


def _sample_rows(table: LatencyTable, samples: int, reference_archs: Optional["str | Path"], seed: int) -> np.ndarray:
    if reference_archs:
        path = Path(reference_archs)
        if not path.is_file():
            raise SniperError(f"{path}: no such reference-archs file; give one arch index per line")
        try:
            indices = [int(tok) for tok in path.read_text().split()]
        except ValueError:
            raise SniperError(f"{path}: reference archs must be integer arch indices, one per line") from None
        where = {int(i): r for r, i in enumerate(table.arch_index)}
        unknown = [i for i in indices if i not in where]
        if unknown:
            raise SniperError(f"{path}: arch index {unknown[0]} is not in the latency table")
        if len(indices) < samples:
            raise SniperError(f"{path}: holds {len(indices)} archs but --samples is {samples}; lower --samples")
        return np.array([where[i] for i in indices[:samples]])
    return np.random.default_rng(seed).choice(len(table.archs), size=samples, replace=False)


def flops_baseline(macs: np.ndarray, seconds: np.ndarray, sample_rows: np.ndarray) -> np.ndarray:
    """log t = a log MACs + b, least squares on the samples."""
    x = np.log(np.maximum(macs, 1.0))
    a, b = np.polyfit(x[sample_rows], np.log(seconds[sample_rows]), 1)
    return np.exp(a * x + b)


def run_benchmark(
    table_path: "str | Path",
    devices_csv: Optional["str | Path"],
    train: Sequence[str],
    test: Sequence[str],
    samples: int = 10,
    reference_archs: Optional["str | Path"] = None,
    epochs: int = 15,
    seed: int = 0,
    progress: Optional[Callable[[str], None]] = None,
    pcn_linear: Optional[int] = None,
) -> BenchReport:
    """``pcn_linear`` overrides PCNConfig.linear (0: the paper's PCN, which the shipped
    HW-NAS-Bench predictor holds); None keeps the default."""
    from sniper_onnx.predictors.adapt import adapt_predictor
    from sniper_onnx.predictors.training import train_predictor

    say = progress or (lambda message: None)
    table = load_latency_table(table_path)
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise SniperError(f"device {overlap[0]!r} is in both --train and --test; a test device must be unseen")
    if samples < 3:
        raise SniperError(f"--samples {samples}: need at least 3 samples to adapt")
    if samples >= len(table.archs):
        raise SniperError(f"--samples {samples}: the table has {len(table.archs)} archs, and some must be left to "
                          "score the adaptation on; give fewer")
    if epochs < 1:
        raise SniperError(f"--epochs {epochs}: train the PCN for at least 1 epoch")
    for device in [*train, *test]:
        table.column(device)
    features, names, source = network_features(table.archs)
    vectors = device_features([*train, *test], devices_csv)
    data = training_data(table, train, features, names, vectors)
    say(f"training the PCN on {len(train)} devices, {len(data.seconds)} pairs")
    predictor, _ = train_predictor(data, _pcn_config(epochs, seed, pcn_linear),
                                   progress=lambda e, loss: say(f"epoch {e + 1}/{epochs}: log-MSE {loss:.4f}"), seed=seed)
    rows = _sample_rows(table, samples, reference_archs, seed)
    macs = features[:, names.index(FLOPS_FEATURE)]
    feature_dicts = [dict(zip(names, row)) for row in features]
    results = []
    for device in test:
        seconds = table.column(device) / 1000.0
        ok = np.isfinite(seconds) & (seconds > 0)
        usable = np.array([r for r in rows if ok[r]])
        adapted, report = adapt_predictor(predictor, device, [feature_dicts[r] for r in usable], seconds[usable],
                                          spec_features=vectors[device])
        vector = np.tile(adapted.device_vector(device), (len(features), 1))
        predicted = adapted.run(features, vector)["seconds"].astype(np.float64)
        baseline = flops_baseline(macs, np.where(ok, seconds, 1.0), usable)
        results.append(DeviceResult(device, len(usable), accuracy_metrics(predicted[ok], seconds[ok], True),
                                    accuracy_metrics(baseline[ok], seconds[ok], True), report.to_json_dict()))
        say(f"{device}: rho {results[-1].sniper['spearman']:.3f}")
    return BenchReport(list(train), list(test), samples, source, results)


def _pcn_config(epochs: int, seed: int, linear: Optional[int]):
    from sniper_onnx.predictors.pcn import PCNConfig

    config = PCNConfig(epochs=epochs, seed=seed)
    return config if linear is None else replace(config, linear=linear)


def train_shipped_predictor(table_path: "str | Path", devices_csv: Optional["str | Path"], output: "str | Path",
                            devices: Optional[Sequence[str]] = None, epochs: int = 15, seed: int = 0,
                            progress: Optional[Callable[[int, float], None]] = None, pcn_linear: Optional[int] = None):
    """The predictor that ships in the package: the PCN trained on every device column of the table."""
    from sniper_onnx.predictors.runtime import save_predictor
    from sniper_onnx.predictors.training import train_predictor

    table = load_latency_table(table_path)
    devices = list(devices or table.devices)
    features, names, _ = network_features(table.archs)
    data = training_data(table, devices, features, names, device_features(devices, devices_csv))
    predictor, report = train_predictor(data, _pcn_config(epochs, seed, pcn_linear), progress, seed=seed)
    save_predictor(predictor, output)
    return report


@dataclass
class HeldOutReport:
    """Issue 5 point 8's held-out random nets, on real hardware: every device trained on, a share
    of the architectures never seen."""

    devices: List[str]
    train_archs: int
    test_archs: int
    seed: int
    feature_source: str
    results: Dict[str, Dict[str, Dict[str, float]]]  # device -> "sniper" / "flops_loglog" -> metrics

    def count_at_least(self, metric: str, level: float) -> int:
        return sum(r["sniper"][metric] >= level for r in self.results.values())

    def to_json_dict(self) -> Dict[str, Any]:
        summary = {f"median_{k}": float(np.median([r["sniper"][k] for r in self.results.values()]))
                   for k in ("mape_pct", "acc5", "acc10", "spearman")}
        summary["devices_acc10_at_least_0.95"] = self.count_at_least("acc10", 0.95)
        return {"devices": self.devices, "train_archs": self.train_archs, "test_archs": self.test_archs, "seed": self.seed,
                "feature_source": self.feature_source, "summary": summary, "results": self.results}


def held_out_archs_accuracy(
    table_path: "str | Path",
    devices_csv: Optional["str | Path"],
    devices: Optional[Sequence[str]] = None,
    test_share: float = 0.2,
    epochs: int = 15,
    seed: int = 0,
    split_seed: int = 1234,
) -> HeldOutReport:
    """Train on ``1 - test_share`` of the architectures on every device, then predict the rest.

    ``split_seed`` fixes which architectures are held out, ``seed`` the training, so seeds compare on
    the same test set. Beside it, a FLOPs log-log fit per device on the same training architectures."""
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.training import train_predictor

    if not 0.0 < test_share < 1.0:
        raise SniperError(f"test share {test_share}: must lie strictly between 0 and 1")
    table = load_latency_table(table_path)
    devices = list(devices or table.devices)
    features, names, source = network_features(table.archs)
    data = training_data(table, devices, features, names, device_features(devices, devices_csv))
    test_archs = np.random.default_rng(split_seed).choice(len(table.archs), int(round(test_share * len(table.archs))),
                                                         replace=False)
    is_test = np.isin(data.pair_network, test_archs)
    train = TrainingData(**{**data.__dict__, "pair_network": data.pair_network[~is_test],
                            "pair_device": data.pair_device[~is_test], "seconds": data.seconds[~is_test]})
    predictor, _ = train_predictor(train, PCNConfig(epochs=epochs, seed=seed), seed=seed)
    log_macs = np.log(np.maximum(features[:, names.index(FLOPS_FEATURE)], 1.0))
    results = {}
    for d, device in enumerate(devices):
        rows = np.flatnonzero(is_test & (data.pair_device == d))
        train_rows = np.flatnonzero(~is_test & (data.pair_device == d))
        nets = data.pair_network[rows]
        predicted = predictor.predict([dict(zip(names, features[n])) for n in nets], [device]).seconds()
        measured = data.seconds[rows]
        slope, intercept = np.polyfit(log_macs[data.pair_network[train_rows]], np.log(data.seconds[train_rows]), 1)
        results[device] = {"sniper": accuracy_metrics(predicted, measured),
                           "flops_loglog": accuracy_metrics(np.exp(slope * log_macs[nets] + intercept), measured)}
    return HeldOutReport(devices, len(table.archs) - len(test_archs), len(test_archs), seed, source, results)
