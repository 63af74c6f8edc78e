"""Platforms: which devices exist, which models run, and how long each model takes on each device type.

A platform file (JSON or YAML) looks like::

    {"name": "lab",
     "devices": {"AGX": 4, "TX2": 3},                      # device type -> node count
     "true_times": {"ResNet50": {"AGX": 0.245, "TX2": 0.295}},   # seconds, what really happens
     "predicted_times": {"ResNet50": {"AGX": 0.236, "TX2": 0.281}},  # optional, Sniper's view
     "mix": {"ResNet50": 1.0},                              # optional task-mix weights
     "predictor_devices": {"AGX": "jetson-agx-xavier"}}     # optional: names a predictor knows

``predicted_times`` defaults to the true times (a perfect predictor), ``mix`` to uniform and
``predictor_devices`` to the device type names themselves. Any other top-level key, a device type
in a times row that ``devices`` does not list, a model in ``predicted_times`` that ``true_times``
does not list, and an empty ``predicted_times: {}`` are refused: each is more likely a typo
(``predicted_time:``) than intent, and would silently run Sniper on the true times.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sniper_onnx.errors import SniperError, files_in_folder, read_text

BUILTIN_DIR = Path(__file__).parent / "platforms"
PLATFORM_SUFFIXES = (".json", ".yaml", ".yml")
PLATFORM_KEYS = ("name", "description", "devices", "true_times", "predicted_times", "mix", "predictor_devices")


@dataclass(frozen=True)
class Platform:
    """Device types, node counts, models and their per-type times (seconds)."""

    name: str
    device_types: tuple[str, ...]
    node_counts: tuple[int, ...]
    models: tuple[str, ...]
    true_times: np.ndarray  # [model, device type]
    predicted_times: np.ndarray  # [model, device type]
    mix: np.ndarray  # [model], sums to 1
    description: str = ""
    predictor_devices: dict[str, str] = field(default_factory=dict)

    @property
    def num_devices(self) -> int:
        return int(sum(self.node_counts))

    def device_type_of(self) -> np.ndarray:
        """Type index of every node, nodes numbered type by type."""
        return np.repeat(np.arange(len(self.device_types)), self.node_counts)

    def device_names(self) -> list[str]:
        return [f"{t}-{i}" for t, n in zip(self.device_types, self.node_counts) for i in range(n)]

    def model_index(self, model: str) -> int:
        try:
            return self.models.index(model)
        except ValueError:
            raise SniperError(
                f"{model!r}: not a model of platform {self.name!r}; known models: {', '.join(self.models)}"
            ) from None

    def with_nodes(self, counts: dict[str, int]) -> Platform:
        """The same platform with other node counts (types not named keep theirs)."""
        unknown = set(counts) - set(self.device_types)
        if unknown:
            raise SniperError(
                f"--nodes: unknown device type(s) {', '.join(sorted(unknown))}; "
                f"platform {self.name!r} has {', '.join(self.device_types)}"
            )
        new_counts = tuple(int(counts.get(t, n)) for t, n in zip(self.device_types, self.node_counts))
        _check_counts(self.name, dict(zip(self.device_types, new_counts)))
        return replace(self, node_counts=new_counts)

    def predictor_device_names(self) -> list[str]:
        """Device type names as the predictor knows them."""
        return [self.predictor_devices.get(t, t) for t in self.device_types]

    def with_predicted_times(self, predicted: np.ndarray) -> Platform:
        return replace(self, predicted_times=np.asarray(predicted, dtype=float))

    def to_json_dict(self) -> dict:
        def table(values: np.ndarray) -> dict:
            return {
                m: {t: float(values[i, j]) for j, t in enumerate(self.device_types)}
                for i, m in enumerate(self.models)
            }

        return {
            "name": self.name,
            "description": self.description,
            "devices": dict(zip(self.device_types, map(int, self.node_counts))),
            "true_times": table(self.true_times),
            "predicted_times": table(self.predicted_times),
            "mix": {m: float(w) for m, w in zip(self.models, self.mix)},
            "predictor_devices": dict(self.predictor_devices),
        }


def builtin_platforms() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.json"))


def load_platform(name_or_path: str | Path) -> Platform:
    """A built-in platform by name (``paper``) or a JSON/YAML platform file."""
    text_name = str(name_or_path)
    builtin = BUILTIN_DIR / f"{text_name}.json"
    if builtin.is_file() and not Path(text_name).suffix:
        return platform_from_dict(json.loads(builtin.read_text()), source=f"built-in platform {text_name!r}")
    path = Path(text_name)
    if path.is_dir():
        raise SniperError(_directory_message(path))
    if not path.is_file():
        raise SniperError(
            f"{text_name}: no such platform file or built-in platform; give a built-in name "
            f"({', '.join(builtin_platforms())}) or a JSON/YAML platform file"
        )
    return platform_from_dict(_read_mapping(path), source=str(path))


def _directory_message(path: Path) -> str:
    """What to say when --platform names a folder (one holding platform.json and a models/ folder, say)."""
    files = files_in_folder(path, PLATFORM_SUFFIXES)
    where = f" (here: {files})" if files else ""
    return (f"{path}: is a directory; give the platform's JSON/YAML file{where} "
            f"or a built-in name ({', '.join(builtin_platforms())})")


def _read_mapping(path: Path) -> dict:
    if path.suffix.lower() in (".yaml", ".yml"):
        from sniper_onnx.scheduling.yamlfile import load_yaml

        data = load_yaml(path, "platform file")
    else:
        try:
            text = read_text(path, "a JSON or YAML platform file")
            data = json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(path, pairs))
        except json.JSONDecodeError as error:
            if path.suffix.lower() != ".json" and _reads_as_yaml(text):
                raise SniperError(f"{path}: not JSON, but it reads as YAML; name it with a .yaml or .yml suffix "
                                  "(a platform file is read as JSON unless its name ends in .yaml/.yml)") from None
            raise SniperError(f"{path}: cannot parse platform file ({error}); fix its JSON syntax "
                              "(or, for a YAML file, name it .yaml/.yml)") from None
    if not isinstance(data, dict):
        raise SniperError(f"{path}: a platform file must hold a mapping with 'devices' and 'true_times'")
    return data


def _reads_as_yaml(text: str) -> bool:
    """Whether ``text`` (not JSON) is a YAML mapping: a platform file named without its suffix."""
    try:
        import yaml

        return isinstance(yaml.safe_load(text), dict)
    except Exception:  # noqa: BLE001 - any failure just means "not YAML either"
        return False


def _unique_keys(path: Path, pairs: list[tuple[str, object]]) -> dict:
    """JSON, like YAML here: a repeated key would silently replace the first."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise SniperError(f"{path}: key {key!r} appears twice in one object; keep one")
        seen.add(key)
    return dict(pairs)


def platform_from_dict(data: dict, source: str = "platform") -> Platform:
    from sniper_onnx.scheduling.yamlfile import refuse_unknown_keys

    refuse_unknown_keys(data, PLATFORM_KEYS, source, "a platform")
    for key in ("devices", "true_times"):
        if not isinstance(data.get(key), dict) or not data[key]:
            raise SniperError(f"{source}: missing or empty {key!r}; see docs/scheduling.md for the format")
    devices = {str(k): v for k, v in data["devices"].items()}
    _check_counts(source, devices)
    device_types = tuple(devices)
    models = tuple(str(m) for m in data["true_times"])
    true_times = _time_table(source, "true_times", data["true_times"], models, device_types)
    predicted_raw = data.get("predicted_times")
    if predicted_raw is None:
        predicted_raw = data["true_times"]  # no predictor: Sniper knows the true times
    elif not isinstance(predicted_raw, dict) or not predicted_raw:
        raise SniperError(f"{source}: 'predicted_times' is {predicted_raw!r}; give every model's predicted times, "
                          "or drop the key to use the true times as predictions")
    predicted = _time_table(source, "predicted_times", predicted_raw, models, device_types)
    return Platform(
        name=str(data.get("name", Path(source).stem)),
        device_types=device_types,
        node_counts=tuple(int(devices[t]) for t in device_types),
        models=models,
        true_times=true_times,
        predicted_times=predicted,
        mix=_mix(source, data.get("mix"), models),
        description=str(data.get("description", "")),
        predictor_devices=_predictor_devices(source, data.get("predictor_devices"), device_types),
    )


def _predictor_devices(source: str, names: dict | None, device_types: tuple) -> dict[str, str]:
    if names is None:
        return {}
    if not isinstance(names, dict) or set(names) - set(device_types):
        raise SniperError(f"{source}: 'predictor_devices' must map this platform's device types "
                          f"({', '.join(device_types)}) to the names a predictor knows")
    return {str(k): str(v) for k, v in names.items()}


def _check_counts(source: str, devices: dict) -> None:
    for dtype, count in devices.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SniperError(f"{source}: device type {dtype!r} has count {count!r}; give a whole number >= 0")
    if sum(devices.values()) == 0:
        raise SniperError(f"{source}: the platform has no devices; give at least one node")


def _time_table(source: str, key: str, table: dict, models: tuple, device_types: tuple) -> np.ndarray:
    missing_models = [m for m in models if m not in table]
    if missing_models:
        raise SniperError(f"{source}: {key} lacks model(s) {', '.join(missing_models)}; give every model's times")
    extra_models = [str(m) for m in table if str(m) not in models]
    if extra_models:
        raise SniperError(f"{source}: {key} has model(s) {', '.join(extra_models)} that true_times lacks; "
                          f"true_times names the models: {', '.join(models)}")
    values = np.empty((len(models), len(device_types)))
    for i, model in enumerate(models):
        row = table[model]
        if not isinstance(row, dict):
            raise SniperError(f"{source}: {key}[{model!r}] must map device type -> seconds")
        extra_types = [str(t) for t in row if str(t) not in device_types]
        if extra_types:
            raise SniperError(f"{source}: {key}[{model!r}] has device type(s) {', '.join(extra_types)} that "
                              f"'devices' lacks; the platform's types are {', '.join(device_types)}")
        for j, dtype in enumerate(device_types):
            seconds = row.get(dtype)
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
                math.isfinite(seconds) and seconds > 0
            ):
                raise SniperError(
                    f"{source}: {key}[{model!r}][{dtype!r}] is {seconds!r}; give a positive number of seconds"
                )
            values[i, j] = float(seconds)
    return values


def _mix(source: str, mix: dict | None, models: tuple) -> np.ndarray:
    if mix is None:
        return np.full(len(models), 1.0 / len(models))
    if not isinstance(mix, dict):
        raise SniperError(f"{source}: 'mix' must map model -> weight")
    unknown = set(mix) - set(models)
    if unknown:
        raise SniperError(f"{source}: mix names unknown model(s) {', '.join(sorted(unknown))}")
    for model, weight in mix.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise SniperError(f"{source}: mix[{model!r}] is {weight!r}; give a number >= 0")
    weights = np.array([float(mix.get(m, 0.0)) for m in models])
    if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
        raise SniperError(f"{source}: mix weights must be >= 0 with a positive sum")
    return weights / weights.sum()
