"""A PNG in the shape of the paper's Figure 6: TPS, AWT and load std against the arrival rate T."""

from __future__ import annotations

from pathlib import Path

from sniper_onnx.errors import SniperError
from sniper_onnx.outputs import plot_path  # noqa: F401 - where the scheduling commands find it
from sniper_onnx.scheduling.experiment import SweepResult

PANELS = (("tps", "TPS (tasks/s)"), ("awt", "AWT (s)"), ("load_std", "load std (s of backlog)"))
# each policy its own marker and line style (and the earlier ones drawn larger), so policies with equal
# values (polling and edf place every task alike; sniper, mvsp-free and mct-oracle share a TPS) stay visible
MARKERS = ("o", "s", "^", "D", "v", "x", "P", "*", "<", ">", "h")
LINESTYLES = ("-", "--", "-.", ":")


def line_style(index: int, count: int) -> dict:
    """Marker, line style and sizes of the ``index``-th of ``count`` policies."""
    return {"marker": MARKERS[index % len(MARKERS)], "linestyle": LINESTYLES[index % len(LINESTYLES)],
            "markersize": 3 + 1.5 * (count - 1 - index) / max(count - 1, 1) * 2,
            "fillstyle": "none" if index % 2 else "full", "linewidth": 1.0 + 1.5 * (count - 1 - index) / max(count - 1, 1)}


def plot_sweep(result: SweepResult, path: str | Path) -> Path:
    """Median over seeds with min-max error bars, one line per policy, one panel per metric."""
    if not result.rates:
        raise SniperError("--plot needs a rate sweep (--rates); a replayed trace has a single point per policy")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    figure, axes = plt.subplots(1, len(PANELS), figsize=(4.2 * len(PANELS), 3.4), constrained_layout=True)
    for axis, (metric, label) in zip(axes, PANELS):
        for index, policy in enumerate(result.policies):
            spreads = [result.row(policy, rate).summary[metric] for rate in result.rates]
            medians = [s.median for s in spreads]
            errors = [[s.median - s.low for s in spreads], [s.high - s.median for s in spreads]]
            axis.errorbar(result.rates, medians, yerr=errors, capsize=2, label=policy,
                          **line_style(index, len(result.policies)))
        axis.set_xlabel("T (tasks/s)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(
        f"{result.platform.name}: median of {len(result.seeds)} seed(s), bars = min..max", fontsize=9
    )
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise SniperError(f"{path}: cannot write the plot ({error.strerror}); choose a writable path") from None
    finally:
        plt.close(figure)
    return path
