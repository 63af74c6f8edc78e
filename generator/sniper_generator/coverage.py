"""Coverage of the generator: quantiles of key features over generated nets, and whether every zoo
network falls inside the generated range (a predictor trained on the generator should not have to
extrapolate to the reference networks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

KEY_FEATURES = (
    "total_macs", "total_params", "num_layers", "critical_path_layers", "max_branches", "critical_path_macs",
    "critical_path_params", "prop_critical_path_params", "conv_macs", "fc_macs", "matmul_macs", "conv_params",
    "fc_params", "num_norm", "num_conv1x1", "num_conv3x3", "num_conv5x5", "num_conv7x7", "num_atrous_conv3x3",
    "num_depthwise_conv", "num_fc", "num_matmul", "num_concat", "num_add", "num_avgpool", "num_maxpool",
)
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
# families whose nets are not meant to span the zoo: listing every zoo network as outside their range
# would read as a failure of the generator, so the report says this once instead
NOT_FOR_THE_ZOO = {
    "tiny": "the tiny family (1-8 layers under 1e6 MACs) is meant to measure the cost of a call, not to cover the zoo",
    "nasbench201": "the nasbench201 family (NAS-Bench-201 cells at 32x32) spans that search space, not the zoo",
}


@dataclass
class ZooCoverage:
    name: str
    features: dict[str, float]
    outside: list[str]  # key features outside the generated [min, max]


@dataclass
class CoverageReport:
    count: int
    seed: int
    family: str
    quantiles: dict[str, list[float]]  # feature -> values at QUANTILES
    zoo: list[ZooCoverage] = field(default_factory=list)
    families: dict[str, int] = field(default_factory=dict)
    unknown_ops: dict[str, int] = field(default_factory=dict)  # op -> nets where the analyzer missed it
    zoo_note: str | None = None  # why the zoo was not compared (NOT_FOR_THE_ZOO); None when it was

    @property
    def all_zoo_inside(self) -> bool | None:
        """None when the zoo was not compared: an empty list would read as every zoo net inside."""
        return None if self.zoo_note else all(not entry.outside for entry in self.zoo)

    def to_json_dict(self) -> dict:
        return {"count": self.count, "seed": self.seed, "family": self.family, "families": self.families,
                "quantile_levels": list(QUANTILES), "quantiles": self.quantiles,
                "zoo": [{"name": z.name, "outside": z.outside, "features": {k: z.features[k] for k in KEY_FEATURES}}
                        for z in self.zoo],
                "all_zoo_inside": self.all_zoo_inside, "zoo_note": self.zoo_note, "unknown_ops": self.unknown_ops}


def zoo_features(names: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Analyzer features of zoo networks at their reference resolution, batch 1 (skeletons)."""
    from sniper_generator.zoo import ZOO, export_zoo_model
    from sniper_onnx import analyze

    return {name: dict(analyze(export_zoo_model(name, weights=False)).features) for name in (names or list(ZOO))}


def coverage_report(count: int = 1000, seed: int = 0, family: str = "mixed", jobs: int = 1,
                    progress: Callable[[int], None] | None = None, max_macs: float | None = None) -> CoverageReport:
    """Samples ``count`` nets, takes their analyzer features and checks the zoo against their range."""
    from sniper_generator.dataset import iter_records
    from sniper_onnx.errors import SniperError

    if count < 2:
        raise SniperError(f"--count {count}: a coverage report needs at least 2 nets (1000 is the reference)")
    if jobs < 1:
        raise SniperError(f"--jobs {jobs}: must be at least 1")
    rows: list[dict[str, float]] = []
    families: dict[str, int] = {}
    unknown: dict[str, int] = {}
    # the same cap as `generate`, so the coverage shown is that of the dataset it would write
    for index, record in enumerate(iter_records(count, seed, family, max_macs, jobs=jobs)):
        rows.append(record["features"])
        families[record["family"]] = families.get(record["family"], 0) + 1
        for op in record.get("unknown_ops", {}):
            unknown[op] = unknown.get(op, 0) + 1
        if progress is not None:
            progress(index + 1)
    table = {name: np.array([row.get(name, 0.0) for row in rows], dtype=float) for name in KEY_FEATURES}
    quantiles = {name: [float(v) for v in np.quantile(values, QUANTILES)] for name, values in table.items()}
    note = NOT_FOR_THE_ZOO.get(family)
    zoo = [] if note else zoo_coverage(quantiles)
    return CoverageReport(count, seed, family, quantiles, zoo, dict(sorted(families.items())),
                          dict(sorted(unknown.items())), note)


def zoo_coverage(quantiles: dict[str, list[float]]) -> list[ZooCoverage]:
    """Each zoo network with the key features where it lies outside the generated [min, max]."""
    zoo = []
    for name, features in zoo_features().items():
        outside = [key for key in KEY_FEATURES
                   if not quantiles[key][0] <= features.get(key, 0.0) <= quantiles[key][-1]]
        zoo.append(ZooCoverage(name, features, outside))
    return zoo


def plot_coverage(report: CoverageReport, path: str) -> None:
    """Quantile bars of each key feature (log scale) with the zoo networks as dots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in KEY_FEATURES if report.quantiles[n][-1] > 0]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.5))
    for y, name in enumerate(names):
        q = np.maximum(np.array(report.quantiles[name]), 1e-3)
        ax.plot([q[0], q[-1]], [y, y], color="0.7", lw=1)
        ax.plot([q[1], q[5]], [y, y], color="tab:blue", lw=3)
        ax.plot([q[2], q[4]], [y, y], color="tab:blue", lw=7)
        ax.plot(q[3], y, "|", color="white", ms=8)
        for entry in report.zoo:
            value = max(entry.features.get(name, 0.0), 1e-3)
            ax.plot(value, y, "o", ms=3, color="tab:red" if name in entry.outside else "tab:orange", alpha=0.7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xscale("log")
    ax.set_title(f"{report.count} generated nets ({report.family}, seed {report.seed}): "
                 f"min-max, 5-95%, 25-75%{'; dots: zoo' if report.zoo else ''}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
