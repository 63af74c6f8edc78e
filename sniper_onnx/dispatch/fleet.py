"""Fleet files: which devices exist, how each runs models, and which models a workload may name.

```yaml
name: local-2cpu
engine: embedded                 # or dask (then scheduler: tcp://HOST:8786)
models:                          # workload model name -> where it comes from
  resnet50-64: {zoo: resnet50, resolution: 64}
  mine: {file: models/mine.onnx}  # relative to this file
devices:
  - {name: fast-0, type: ort-all, threads: 1, opt_level: all}
  - {name: slow-0, type: ort-off, threads: 1, opt_level: disabled, join_at: 5}
predicted_times: {resnet50-64: {ort-all: 0.020, ort-off: 0.035}}   # optional, seconds
predictor: pcn.onnx              # optional (default: the shipped one), with per type:
predictor_devices: {ort-all: silver_4210r}
```

A device's ``type`` groups devices that run a model equally fast (the scheduler's device type);
``join_at`` (embedded only) starts that device's worker that many seconds into the run.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from sniper_onnx.errors import SniperError, files_in_folder

ENGINES = ("embedded", "dask")
OPT_LEVELS = ("disabled", "basic", "extended", "all")
FLEET_KEYS = ("name", "engine", "scheduler", "models", "devices", "predicted_times", "predictor", "predictor_devices")
DEVICE_KEYS = ("name", "type", "threads", "opt_level", "provider", "join_at")
ZOO_MODEL_KEYS, FILE_MODEL_KEYS = ("zoo", "resolution"), ("file",)
# onnxruntime's execution providers (its get_all_providers(), 1.16-1.20), known on every machine:
# the dispatcher's onnxruntime need not be the one a Dask device runs, nor hold the GPU builds
KNOWN_PROVIDERS = (
    "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider",
    "MIGraphXExecutionProvider", "OpenVINOExecutionProvider", "DnnlExecutionProvider", "DmlExecutionProvider",
    "CoreMLExecutionProvider", "NnapiExecutionProvider", "QNNExecutionProvider", "XnnpackExecutionProvider",
    "ACLExecutionProvider", "ArmNNExecutionProvider", "RknpuExecutionProvider", "VitisAIExecutionProvider",
    "CANNExecutionProvider", "AzureExecutionProvider", "JsExecutionProvider", "WebGpuExecutionProvider",
    "SNPEExecutionProvider", "TvmExecutionProvider", "VSINPUExecutionProvider",
)


@dataclass(frozen=True)
class FleetDevice:
    name: str
    type: str
    threads: int = 1
    opt_level: str = "all"
    provider: str = "CPUExecutionProvider"
    join_at: float = 0.0
    # new with every fleet loaded, so every dispatcher: a Dask agent that serves two at once maps
    # each one's model names to its own nets (sniper_profiler.agent.DeviceAgent)
    scope: str = field(default_factory=lambda: uuid.uuid4().hex, compare=False, repr=False)

    def agent_settings(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider, "threads": self.threads,
                "graph_optimization": self.opt_level, "scope": self.scope}


@dataclass(frozen=True)
class ModelSource:
    name: str
    zoo: Optional[str] = None
    resolution: int = 224
    file: Optional[str] = None


@dataclass
class Fleet:
    name: str
    devices: list[FleetDevice]
    models: dict[str, ModelSource]
    engine: str = "embedded"
    scheduler: Optional[str] = None
    predicted_times: dict[str, dict[str, float]] = field(default_factory=dict)
    predictor: Optional[str] = None
    predictor_devices: dict[str, str] = field(default_factory=dict)
    source: str = "<fleet>"

    @property
    def device_types(self) -> list[str]:
        return list(dict.fromkeys(device.type for device in self.devices))

    def device(self, name: str) -> FleetDevice:
        for device in self.devices:
            if device.name == name:
                return device
        raise SniperError(f"{self.source}: no device named {name!r}; devices: {', '.join(d.name for d in self.devices)}")


def load_fleet(path: "str | Path") -> Fleet:
    path = Path(path)
    if path.is_dir():
        raise SniperError(f"{path}: is a directory, not a fleet file; {_yaml_files_in(path)}")
    if not path.is_file():
        raise SniperError(f"{path}: no such fleet file; see examples/fleet.yaml for the format")
    from sniper_onnx.scheduling.yamlfile import load_yaml

    data = load_yaml(path, "fleet file")
    if not isinstance(data, dict):
        raise SniperError(f"{path}: a fleet file holds a mapping with 'devices' and 'models'")
    return fleet_from_dict(data, source=str(path), base=path.parent)


def _yaml_files_in(folder: Path) -> str:
    """What to give instead of a folder: the YAML files in it, if it holds any."""
    found = files_in_folder(folder, (".yaml", ".yml"))
    if not found:
        return "give the fleet YAML file (see examples/fleet.yaml for the format)"
    return f"give the fleet YAML file, e.g. one of {found}"


def fleet_from_dict(data: dict, source: str = "<fleet>", base: Optional[Path] = None) -> Fleet:
    from sniper_onnx.scheduling.yamlfile import refuse_unknown_keys

    base = base or Path.cwd()
    refuse_unknown_keys(data, FLEET_KEYS, source, "a fleet file")
    engine = str(data.get("engine", "embedded"))
    if engine not in ENGINES:
        raise SniperError(f"{source}: engine {engine!r} is unknown; use one of {', '.join(ENGINES)}")
    raw_devices = data.get("devices")
    if not isinstance(raw_devices, list) or not raw_devices:
        raise SniperError(f"{source}: 'devices' must be a non-empty list of {{name, type, threads, opt_level}}")
    devices = [_device(source, index, item) for index, item in enumerate(raw_devices)]
    names = [d.name for d in devices]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SniperError(f"{source}: device name(s) {', '.join(duplicates)} appear twice; names must be unique")
    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise SniperError(f"{source}: 'models' must map model names to {{zoo: NAME, resolution: N}} or {{file: PATH}}")
    models = {str(name): _model(source, str(name), spec, base) for name, spec in raw_models.items()}
    fleet = Fleet(
        name=_text(source, "name", data.get("name", Path(source).stem)), devices=devices, models=models, engine=engine,
        scheduler=_scheduler(source, data.get("scheduler")), predicted_times=_times(source, data.get("predicted_times") or {}),
        predictor=_relative(base, data.get("predictor")),
        predictor_devices=_predictor_devices(source, data.get("predictor_devices")),
        source=source,
    )
    if engine == "dask" and not fleet.scheduler:
        raise SniperError(f"{source}: engine dask needs 'scheduler: tcp://HOST:8786' (the address agents join)")
    unknown_types = sorted(set(fleet.predictor_devices) - set(fleet.device_types))
    if unknown_types:
        raise SniperError(f"{source}: predictor_devices names unknown device type(s) {', '.join(unknown_types)}")
    return fleet


def _scheduler(source: str, value: Any) -> Optional[str]:
    """Checked here: Dask reads a bad address as a ValueError or TypeError deep in its client."""
    if value is None:
        return None
    match = re.fullmatch(r"(?:tcp://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})", value) if isinstance(value, str) else None
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise SniperError(f"{source}: scheduler {value!r} must be an address tcp://HOST:PORT (or HOST:PORT), "
                          "e.g. tcp://10.0.0.5:8786")
    return value


def _predictor_devices(source: str, names: Any) -> dict[str, str]:
    if names is None:
        return {}
    if not isinstance(names, dict) or not all(isinstance(v, str) and v for v in names.values()):
        raise SniperError(f"{source}: predictor_devices must map device type -> a device name the predictor knows "
                          "(sniper-onnx predict --list-devices), e.g. {ort-all: silver_4210r}")
    return {str(k): v for k, v in names.items()}


def _relative(base: Path, value: Any) -> Optional[str]:
    if value is None:
        return None
    path = Path(str(value))
    return str(path if path.is_absolute() else base / path)


def _device(source: str, index: int, item: Any) -> FleetDevice:
    where = f"{source}: devices[{index}]"
    if not isinstance(item, dict) or "name" not in item:
        raise SniperError(f"{where}: give a mapping with at least 'name' (and type, threads, opt_level)")
    from sniper_onnx.scheduling.yamlfile import refuse_unknown_keys

    refuse_unknown_keys(item, DEVICE_KEYS, where, "a device")
    threads = item.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise SniperError(f"{where}: threads {threads!r} must be a whole number >= 0 (0 = onnxruntime's default)")
    opt_level = str(item.get("opt_level", "all"))
    if opt_level not in OPT_LEVELS:
        raise SniperError(f"{where}: opt_level {opt_level!r} must be one of {', '.join(OPT_LEVELS)}")
    join_at = item.get("join_at", 0.0)
    if isinstance(join_at, bool) or not isinstance(join_at, (int, float)) or join_at < 0:
        raise SniperError(f"{where}: join_at {join_at!r} must be seconds >= 0")
    name = _text(where, "name", item["name"])
    provider = _provider(where, item.get("provider", "CPUExecutionProvider"))
    return FleetDevice(name=name, type=_text(where, "type", item.get("type", name)), threads=threads,
                       opt_level=opt_level, provider=provider, join_at=float(join_at))


def _provider(where: str, value: Any) -> str:
    """An alias (cpu, cuda, tensorrt, ...) or an onnxruntime provider name; anything else (``tpu``)
    was sent to the device, whose onnxruntime fell back to the CPU with a banner on stdout and
    failed the device's warm-up."""
    from sniper_profiler.config import PROVIDER_ALIASES

    text = str(value)
    if text.lower() in PROVIDER_ALIASES or text in KNOWN_PROVIDERS:
        return text
    raise SniperError(f"{where}: provider {text!r} is unknown; use one of {', '.join(PROVIDER_ALIASES)} "
                      "or an onnxruntime provider name (e.g. CUDAExecutionProvider)")


def _text(where: str, key: str, value: Any) -> str:
    """Names are written into reports and the database: None or "" would become "None" or nothing."""
    if value is None or isinstance(value, (bool, dict, list)) or not str(value).strip():
        raise SniperError(f"{where}: {key} {value!r} must be a non-empty name")
    return str(value)


def _model(source: str, name: str, spec: Any, base: Path) -> ModelSource:
    where = f"{source}: models.{name}"
    if not isinstance(spec, dict) or not ({"zoo", "file"} & set(spec)):
        raise SniperError(f"{where}: give {{zoo: NAME, resolution: N}} or {{file: PATH}}")
    if "file" in spec and "zoo" in spec:
        raise SniperError(f"{where}: give either file or zoo, not both")
    from sniper_onnx.scheduling.yamlfile import refuse_unknown_keys

    refuse_unknown_keys(spec, FILE_MODEL_KEYS if "file" in spec else ZOO_MODEL_KEYS, where,
                        "a file model" if "file" in spec else "a zoo model")
    if "file" in spec:
        path = Path(_relative(base, spec["file"]))
        if path.is_dir():
            raise SniperError(f"{where}: {path} is a directory; give the .onnx file inside it")
        if not path.is_file():
            raise SniperError(f"{where}: {path} does not exist; give an existing .onnx file")
        return ModelSource(name=name, file=str(path))
    resolution = spec.get("resolution", 224)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 16:
        raise SniperError(f"{where}: resolution {resolution!r} must be a whole number >= 16")
    return ModelSource(name=name, zoo=str(spec["zoo"]), resolution=resolution)


def _times(source: str, table: Any) -> dict[str, dict[str, float]]:
    if not isinstance(table, dict):
        raise SniperError(f"{source}: predicted_times must map model -> device type -> seconds")
    out: dict[str, dict[str, float]] = {}
    for model, row in table.items():
        if not isinstance(row, dict):
            raise SniperError(f"{source}: predicted_times[{model!r}] must map device type -> seconds")
        for dtype, seconds in row.items():
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (math.isfinite(seconds) and seconds > 0):
                raise SniperError(f"{source}: predicted_times[{model!r}][{dtype!r}] = {seconds!r}; give positive seconds")
        out[str(model)] = {str(k): float(v) for k, v in row.items()}
    return out


def check_model_file(fleet: Fleet, name: str) -> None:
    """Refuse a ``file`` model that is not an ONNX model (empty, another format, truncated, gone
    since the fleet was read) as ``analyze`` does, before any worker starts: its devices would
    otherwise fail its warm-up and then each of its tasks, naming the dispatcher's temporary copy."""
    model = fleet.models[name]
    if not model.file:
        return
    from sniper_onnx.analysis.loading import read_model

    try:
        read_model(model.file)
    except SniperError as error:
        raise SniperError(f"{fleet.source}: models.{name}: {error}") from None


# protobuf's limit on one message: a model over it cannot travel as one file
_PROTOBUF_LIMIT = 2**31 - 1


def self_contained_bytes(path: "str | Path") -> bytes:
    """An ONNX file's bytes with the weights it keeps in external data files pulled in. The
    dispatcher's and the farm's agents read the model from a scratch folder or another machine,
    where the data files are not, and onnxruntime refused every task ("External data path does
    not exist")."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, load_external_data_for_model, uses_external_data

    path = Path(path)
    raw = path.read_bytes()
    try:
        model = onnx.load_model_from_string(raw)
    except Exception:  # noqa: BLE001 - not parseable here: the agent's own load says what is wrong
        return raw
    # subgraph (If/Loop) initializers and Constant values may live in the data files too
    if not any(uses_external_data(tensor) for tensor in _get_all_tensors(model)):
        return raw
    try:
        load_external_data_for_model(model, str(path.parent))
    except Exception as error:  # noqa: BLE001 - onnx raises its checker's ValidationError for a missing file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SniperError(f"{path}: its external data cannot be read ({reason}); copy the data file(s) next to it") from None
    if model.ByteSize() > _PROTOBUF_LIMIT:
        raise SniperError(f"{path}: with its external data it is over 2 GB, more than one ONNX file can hold; "
                          "dispatch and the profiling farm send one file, so run it with `sniper-onnx profile` on the device")
    return model.SerializeToString()


def model_bytes(model: ModelSource) -> bytes:
    """The model's ONNX bytes, external data included (zoo models exported with trained-looking
    random weights)."""
    if model.file:
        return self_contained_bytes(model.file)
    from sniper_generator.zoo import ZOO, export_zoo_model

    if model.zoo not in ZOO:
        raise SniperError(f"model {model.name!r}: zoo name {model.zoo!r} is unknown; choose from {', '.join(sorted(ZOO))}")
    return export_zoo_model(model.zoo, resolution=model.resolution, batch=1, weights=True).SerializeToString()
