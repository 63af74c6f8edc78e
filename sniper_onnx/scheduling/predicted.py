"""Predictor in the loop: Sniper's predicted times from real ONNX models and a predictor file.

``--predictor P.onnx --models DIR``: every ``DIR/<model>.onnx`` is analysed (structure only), the
predictor answers seconds per platform device type, and those numbers replace the platform's
``predicted_times`` for that model. True times still come from the platform (they are what
"really" happens in the simulation). Built on the predictors package contract
``load_predictor(path).predict(features, devices, network_names, kernel_tables, layer_ops)
-> PredictionTable``; imported
lazily. The platform file's ``predictor_devices`` maps its device types to the predictor's names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sniper_onnx.errors import SniperError
from sniper_onnx.scheduling.platform import Platform


@dataclass(frozen=True)
class PredictorSwap:
    platform: Platform
    replaced: tuple[str, ...]  # models whose predictions now come from the predictor
    kept: tuple[str, ...]  # platform models with no ONNX file: their table predictions stay
    # the predictor's own (a feature schema other than the analyzer's), then each network's: the
    # analyzer's notes (control flow, incomplete costs), features outside the training range, unseen ops
    warnings: tuple[str, ...] = ()
    # the predictor's seconds per replaced model and device type, as the simulation used them
    times: dict[str, dict[str, float]] = field(default_factory=dict)


def model_files(platform: Platform, models_dir: str | Path) -> dict[str, Path]:
    directory = Path(models_dir)
    if not directory.is_dir():
        raise SniperError(f"{directory}: not a directory; --models takes a folder of <model>.onnx files")
    files = {path.stem: path for path in sorted(directory.glob("*.onnx"))}
    if not files:
        raise SniperError(f"{directory}: no .onnx files; name them after the platform's models "
                          f"({', '.join(platform.models)})")
    strangers = sorted(set(files) - set(platform.models))
    if strangers:
        raise SniperError(
            f"{directory}: {', '.join(s + '.onnx' for s in strangers)} "
            f"{'matches' if len(strangers) == 1 else 'match'} no model of platform "
            f"{platform.name!r} (its models: {', '.join(platform.models)}); rename them or add their "
            "true times to a --platform file"
        )
    return files


def seconds_matrix(table: object, networks: list[str], devices: list[str]) -> np.ndarray:
    """[network, device] seconds from a ``PredictionTable`` (rows of network, device, seconds)."""
    rows = getattr(table, "rows", None)
    if rows is None:
        raise SniperError("the predictor answered no prediction rows; check the predictor file")
    cells = {(row.network, row.device): float(row.seconds) for row in rows}
    missing = [f"{n} on {d}" for n in networks for d in devices if (n, d) not in cells]
    if missing:
        raise SniperError(f"the predictor gave no time for {', '.join(missing[:3])}"
                          f"{' ...' if len(missing) > 3 else ''}; check the predictor file")
    matrix = np.array([[cells[(n, d)] for d in devices] for n in networks])
    if not (np.isfinite(matrix).all() and (matrix > 0).all()):
        raise SniperError("the predictor answered non-positive or non-finite seconds; check the predictor file")
    return matrix


def choose_predictor(path: str | Path | None, wanted: dict[str, str], where: str,
                     exact: Sequence[str] = ()) -> tuple[Any, dict[str, str]]:
    """The predictor that answers for ``wanted`` (device type -> a predictor device name, or the part
    of one only that device holds, as ``predict -d`` takes) and the full names per type.

    ``path``'s predictor, else the shipped one knowing the most of them. ``exact`` are types whose
    name is their own type name (not mapped by the user): those must match a device exactly."""
    from sniper_onnx import predictors
    from sniper_onnx.predictors.runtime import load_shipped_predictors, match_device

    candidates = [predictors.load_predictor(path)] if path else load_shipped_predictors()
    every = list(dict.fromkeys(d for candidate in candidates for d in candidate.devices))
    resolved = {t: name if t in exact else match_device(name, every) for t, name in wanted.items()}
    # max() keeps the first on a tie: with no name known anywhere the error lists the first one's devices
    chosen = max(candidates, key=lambda c: sum(name in c.devices for name in resolved.values()))
    for dtype, name in resolved.items():
        if name not in chosen.devices:
            raise SniperError(f"{where}: {_unknown(dtype, name, dtype in exact)} predictor "
                              f"{getattr(chosen, 'source', path)} (it knows: {', '.join(chosen.devices)}); "
                              "name one of these, or a part of a name only one holds, or adapt the predictor")
    return chosen, resolved


def _unknown(dtype: str, name: str, unmapped: bool) -> str:
    if unmapped:  # simulate needs a prediction for every type: the platform table has no fallback per type
        return f"device type {dtype!r} is not in 'predictor_devices' (add it there) and is not a device of"
    return f"'predictor_devices' maps {dtype!r} to {name!r}, not a device of"


def with_predictor(platform: Platform, predictor_path: str | Path | None, models_dir: str | Path) -> PredictorSwap:
    """``predictor_path=None`` uses the predictor shipped with the package."""
    files = model_files(platform, models_dir)
    from sniper_onnx.predictors.commands import FIX_THE_EXPORT, analyze_for_prediction

    unmapped = [t for t in platform.device_types if t not in platform.predictor_devices]
    wanted = dict(zip(platform.device_types, platform.predictor_device_names()))
    predictor, resolved = choose_predictor(predictor_path, wanted, f"platform {platform.name!r}", exact=unmapped)
    devices = [resolved[t] for t in platform.device_types]
    names = list(files)
    networks = [analyze_for_prediction(str(files[name]), str(files[name]), remedy=FIX_THE_EXPORT) for name in names]
    table = predictor.predict([n.features for n in networks], devices, network_names=names,
                              kernel_tables=[n.kernel_table for n in networks],
                              layer_ops=[n.layer_ops for n in networks])
    matrix = seconds_matrix(table, names, devices)
    predicted = platform.predicted_times.copy()
    for row, name in zip(matrix, names):
        predicted[platform.model_index(name)] = row
    kept = tuple(m for m in platform.models if m not in files)
    # every warning `predict` would print for these files says some of these seconds may be off
    # (another feature schema, an extrapolated network); the simulated schedule rests on them, so
    # they reach the user here too, once each: the predictor's own first, as `predict` orders them.
    # The analyzer's notes (control flow among them) are not in the predictor's table, so added here
    notes = [note for network in networks for note in network.notes]
    warnings = tuple(dict.fromkeys([*table.predictor_warnings, *notes, *table.warnings()]))
    times = {name: {dtype: float(seconds) for dtype, seconds in zip(platform.device_types, row)}
             for name, row in zip(names, matrix)}
    return PredictorSwap(platform.with_predicted_times(predicted), tuple(names), kept, warnings, times)
