"""The Python API behind each predictor command; the CLI only parses, calls these and prints."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from sniper_onnx.precision import FLOAT_BITS, WEIGHT_BITS, model_precision
from sniper_onnx.errors import SniperError
from sniper_onnx.predictors.runtime import (PredictionTable, check_predictor_output, is_shipped_predictor, load_predictor,
                                            load_shipped_predictors, match_device, save_predictor)


def predict_files(
    models: Sequence[str],
    devices: Optional[Sequence[str]] = None,
    predictor: Optional[str] = None,
    input_shapes: Optional[Dict[str, tuple]] = None,
) -> PredictionTable:
    """Analyze each ONNX model (or read an ``analyze --json`` file) and predict it on the devices.

    Without ``predictor`` and ``devices``: every device of every shipped predictor. Of several
    models, one that cannot be predicted is named in ``failures`` and the others are predicted."""
    if predictor:
        loaded = load_predictor(predictor)
        plan = [(loaded, _once([match_device(d, loaded.devices) for d in devices]) if devices else devices)]
    else:
        plan = _shipped_plan(devices)
    from sniper_onnx.database.collect import expand_model_folders

    models = expand_model_folders(models)
    notes = input_shape_notes(models, input_shapes)
    read = [(_read_model(Path(models[0]), input_shapes, plan), "")] if len(models) == 1 else \
        [_read_or_fail(Path(model), shapes, plan) for model, shapes in _shapes_per_model(models, input_shapes)]
    failures = [problem for network, problem in read if network is None]
    if len(failures) == len(models) > 1:
        raise SniperError(f"none of the {len(models)} models could be predicted; the first: {failures[0]}")
    networks = [(str(model), network) for model, (network, _) in zip(models, read) if network is not None]
    names = [name for name, _ in networks]
    features = [network.features for _, network in networks]
    kernels = [network.kernel_table for _, network in networks]
    precisions = [network.precision for _, network in networks]
    notes += [note for _, network in networks for note in network.notes]
    layer_ops = [network.layer_ops for _, network in networks]
    tables = [loaded.predict(features, wanted, network_names=names, kernel_tables=kernels, layer_ops=layer_ops)
              for loaded, wanted in plan]
    _mark_control_flow(tables, [name for name, network in networks if network.control_flow])
    if not predictor and not devices:  # every shipped device: a predictor the models lie far outside goes last
        plan, tables, ordering = _far_outside_last(plan, tables)
        notes += ordering
    notes += precision_notes(names, precisions, plan, tables)
    merged = PredictionTable(predictor=", ".join(table.predictor for table in tables), analysis_warnings=notes,
                             predictor_warnings=[line for table in tables for line in table.predictor_warnings],
                             failures=failures, predictors=[table.predictor for table in tables])
    for table in tables:
        merged.rows.extend(table.rows)
    return merged


def _mark_control_flow(tables: List[PredictionTable], names: List[str]) -> None:
    """Rows of networks with control flow are extrapolations whatever their features say."""
    for row in (row for table in tables for row in table.rows if row.network in names):
        row.control_flow = True


def _far_outside_last(plan: List[tuple], tables: List[PredictionTable]) -> Tuple[List[tuple], List[PredictionTable], List[str]]:
    """Without -d every shipped predictor answers, one row per device it knows, the predictor the
    models lie least outside of first: HW-NAS-Bench's 32x32 cells would put 19 extrapolated rows
    above the useful ones for ResNet-50 (outside in 17 of 47 features). One that every model lies
    outside in more than half of its network features (a single Relu: 28 of 47) is named in a note."""
    ranked, notes = [], []
    for (loaded, wanted), table in zip(plan, tables):
        features = len(loaded.network_feature_names)
        outside = [len(row.network_outside_range) for row in table.rows]
        if outside and min(outside) > features / 2:
            span = str(min(outside)) if min(outside) == max(outside) else f"{min(outside)}-{max(outside)}"
            notes.append(f"{Path(loaded.source).name}: its {len(table.rows)} row(s) come last: the model(s) lie "
                         f"outside its training range in {span} of its {features} features, so they are far "
                         "extrapolations")
        share = sum(outside) / (len(outside) * features) if outside and features else 0.0
        ranked.append((share, len(ranked), (loaded, wanted), table))
    ranked.sort(key=lambda item: item[:2])  # the given order among equals
    return [step for _, _, step, _ in ranked], [table for _, _, _, table in ranked], notes


def _shapes_per_model(models: Sequence[str], input_shapes: Optional[Dict[str, tuple]]) -> List[tuple]:
    """(model, the --input-shape entries naming its inputs) for several models: `-s input=...` sizes
    the models that have an input so named and leaves the others alone (it failed every model
    without one). A name no model has is still an error; a shape without a name goes to every model."""
    if not input_shapes:
        return [(model, input_shapes) for model in models]
    from sniper_profiler.config import UNNAMED_INPUT

    inputs = {model: _graph_inputs(Path(model)) for model in models if Path(model).suffix != ".json"}
    named = set(input_shapes) - {UNNAMED_INPUT}
    unused = sorted(name for name in named if all(found is not None and name not in found for found in inputs.values()))
    if unused and inputs:
        raise SniperError(f"--input-shape names no input of any model given: {', '.join(unused)}; "
                          "`sniper-onnx analyze MODEL` names each model's inputs")
    return [(model, input_shapes if inputs.get(model) is None else
             {name: dims for name, dims in input_shapes.items() if name == UNNAMED_INPUT or name in inputs[model]})
            for model in models]


def _graph_inputs(path: Path) -> Optional[set]:
    """The names of a model's graph inputs (not initializers), or None where it cannot be read here
    (its own error comes when it is analysed)."""
    from sniper_onnx.analysis.weightless import load_weightless

    try:
        graph = load_weightless(path).graph
    except Exception:  # noqa: BLE001 - any unreadable file: the analyzer says why, for that model alone
        return None
    initializers = {tensor.name for tensor in graph.initializer}
    return {vi.name for vi in graph.input if vi.name not in initializers}


def _read_or_fail(path: Path, input_shapes, plan) -> Tuple[Optional["AnalyzedNetwork"], str]:
    """(the model read, "") or (None, why not): one model of several fails beside the others'
    predictions, not instead of them."""
    try:
        network = _read_model(path, input_shapes, plan)
        for loaded, _ in plan:  # features a predictor refuses (missing, negative) fail this model alone
            loaded.network_matrix([network.features], [str(path)])
        return network, ""
    except SniperError as error:
        message = str(error)
        return None, message if message.startswith(str(path)) else f"{path}: {message}"


def _read_model(path: Path, input_shapes, plan) -> "AnalyzedNetwork":
    """The features, kernel table, notes and precision of an .onnx model or an `analyze --json` output."""
    import json

    if not path.is_file():
        raise SniperError(f"{path}: no such model file; give an .onnx path (or an `analyze --json` output)")
    if path.suffix != ".json":
        return analyze_for_prediction(str(path), str(path), input_shapes)
    try:
        data = json.loads(path.read_text())
        network = AnalyzedNetwork(data["features"], kernel_table_of_json(data), [], {},
                                  model_precision(data.get("model") or {}), layer_ops=_layer_ops_of_json(data))
    except (json.JSONDecodeError, KeyError, TypeError, IndexError, ValueError, AttributeError):  # UnicodeDecodeError too
        raise SniperError(f"{path}: not the JSON of `sniper-onnx analyze --json`") from None
    except SniperError as error:  # a kernel table of another version: say which file
        raise SniperError(f"{path}: {error}") from None
    network.notes += analyzer_version_notes(str(path), data)
    network.notes += analysis_notes(str(path), data, remedy="re-run `sniper-onnx analyze --json` with --input-shape")
    if network.kernel_table is None and analysis_holds_control_flow(data):
        network.notes.append(f"{path}: {CONTROL_FLOW_NOTE}")
        network.control_flow = True
    elif network.kernel_table is None and any(loaded.kernel_path for loaded, _ in plan):
        network.notes.append(f"{path}: no kernel table in this JSON, so the PCN answers where the kernel sum would "
                             "(more accurate); write it with `sniper-onnx analyze --json --kernels`")
    return network


def _layer_ops_of_json(data: Dict[str, Any]) -> Optional[Dict[str, int]]:
    """``layer_ops`` of an analysis (since 2026-11-30), else counted from its ``nodes`` if it has them."""
    ops = data.get("layer_ops")
    if isinstance(ops, dict):
        return {str(op): int(count) for op, count in ops.items()}
    if isinstance(data.get("nodes"), list):
        from sniper_onnx.analysis.kernels import layer_op_counts

        return layer_op_counts(data["nodes"])
    return None


def input_shape_notes(models: Sequence[str], input_shapes: Optional[Dict[str, tuple]]) -> List[str]:
    """--input-shape sizes the inputs of the .onnx models analysed here; an `analyze --json` output
    was analysed at the shapes it records. Only JSON given: an error (the option would do nothing);
    a mix: one warning saying which files it left as they were."""
    if not input_shapes:
        return []
    analysed = [str(m) for m in models if Path(m).suffix == ".json"]
    if not analysed:
        return []
    rerun = "re-run `sniper-onnx analyze MODEL -s ... --json`"
    if len(analysed) == len(models):
        raise SniperError(f"--input-shape applies to .onnx models, not to `analyze --json` outputs ({analysed[0]}); "
                          f"{rerun}")
    shown = ", ".join(analysed[:3]) + (f" and {len(analysed) - 3} more" if len(analysed) > 3 else "")
    return [f"--input-shape applies to the .onnx models only, not to the `analyze --json` outputs ({shown}), "
            f"predicted at the shapes they were analysed at; {rerun} for them"]


DEVICE_PRECISION_FEATURE = "precision_bits_over_32"


def precision_notes(names: Sequence[str], precisions: Sequence[Optional[Tuple[str, str]]], plan: Sequence[tuple],
                    tables: Sequence[PredictionTable]) -> List[str]:
    """A model that computes in another precision than its device configurations were measured
    at (an int8 or fp16 model on an fp32 configuration): the prediction is for the configuration's
    precision, not the model's."""
    notes = []
    for (loaded, _), table in zip(plan, tables):
        feature_names = list(loaded.meta.get("device_feature_names", []))
        if DEVICE_PRECISION_FEATURE not in feature_names:
            continue
        column = feature_names.index(DEVICE_PRECISION_FEATURE)
        for name, precision in zip(names, precisions):
            if precision is None:
                continue
            kind, what = precision
            devices = sorted({row.device for row in table.rows if row.network == name
                              and round(loaded.device_table[row.device][column] * 32) != WEIGHT_BITS[kind]})
            if devices:
                shown = ", ".join(devices[:3]) + (f" and {len(devices) - 3} more" if len(devices) > 3 else "")
                quantized = " (quantized)" if kind not in FLOAT_BITS else ""
                notes.append(f"{name}: its {what} are {kind}{quantized}, but {shown} measured networks of another "
                             f"precision: the prediction is for that precision, not the model's")
    return notes


@dataclass
class AnalyzedNetwork:
    """What a predictor needs of one model: whole-graph features, the kernel table, the analyzer's
    warnings (``analysis_notes``), and its inputs' element types."""

    features: Dict[str, float]
    kernel_table: Any
    notes: List[str]
    input_types: Dict[str, Any] = field(default_factory=dict)
    precision: Optional[Tuple[str, str]] = None  # model_precision: (type, "weights" or "inputs")
    control_flow: bool = False  # If/Loop/Scan: no training network had any, so every row extrapolates
    layer_ops: Optional[Dict[str, int]] = None  # op type -> layer count; None where the input does not say


SUBGRAPH_WARNING = "holds subgraphs, counted as"  # analysis.costs._cost_control_flow's warning
# no training net holds control flow, and the PCN sees only the costlier branch or body x trips
CONTROL_FLOW_NOTE = ("control flow (If, Loop or Scan): the kernel sum cannot time its subgraphs, so the PCN "
                     "answers, an extrapolation (no training network has control flow); measure it if it matters")
# for callers without an --input-shape option (simulate --models, dispatch)
FIX_THE_EXPORT = "export the model with fixed input dims (e.g. onnxsim --overwrite-input-shape), giving"


def analyze_for_prediction(model: Any, name: str, input_shapes: Optional[Dict[str, tuple]] = None,
                           remedy: str = "pass --input-shape") -> AnalyzedNetwork:
    """Analyze a model (path or ModelProto) for ``Predictor.predict``; every caller that predicts
    from an ONNX file goes through here, so all get the kernel-sum path and the same checks.
    ``remedy`` starts the advice for an input with unknown dims."""
    from sniper_onnx.analysis import analyze
    from sniper_onnx.analysis.kernels import kernel_table_for_prediction

    result = analyze(model, input_shapes=input_shapes)
    notes = analysis_notes(name, result.to_json_dict(), remedy)
    table = kernel_table_for_prediction(result.nodes)
    if table is None:
        notes.append(f"{name}: {CONTROL_FLOW_NOTE}")
    return AnalyzedNetwork(dict(result.features), table, notes,
                           dict(result.model_info.get("input_types") or {}), model_precision(result.model_info),
                           control_flow=table is None, layer_ops=result.layer_ops)


def analysis_notes(name: str, analysis: Dict[str, Any], remedy: str = "pass --input-shape") -> List[str]:
    """Every analyzer warning of a network, as `analyze` prints them (an input's batch set to 1, a
    Reshape the export fixed), whether or not its costs are complete; with the lower-bound note
    and the open-input error of ``incomplete_cost_notes``."""
    incomplete = incomplete_cost_notes(name, analysis, remedy)
    return incomplete or [f"{name}: {warning}" for warning in analysis.get("warnings", [])]


def incomplete_cost_notes(name: str, analysis: Dict[str, Any], remedy: str = "pass --input-shape") -> List[str]:
    """The analyzer's warnings when a network's costs are incomplete (unknown ops, unknown shapes).

    Inputs with unknown dims are an error: every node after them has no cost, and the number would
    describe a network that is not the one asked about."""
    inputs = (analysis.get("model") or {}).get("inputs") or {}
    open_inputs = {input_name: dims for input_name, dims in inputs.items() if dims is not None and None in dims}
    if open_inputs and analysis.get("unknown_shape_nodes"):
        input_name, dims = next(iter(open_inputs.items()))
        shown = "x".join("?" if d is None else str(d) for d in dims)
        raise SniperError(
            f"{name}: input '{input_name}' has unknown dims ({shown}), so {len(analysis['unknown_shape_nodes'])} nodes "
            f"have no cost and a prediction would be meaningless; {remedy} {input_name}=DIMS "
            f"(e.g. {shown.replace('?', 'N')} with your N)")
    if not analysis.get("unknown_ops") and not analysis.get("unknown_shape_nodes"):
        return []
    notes = [f"{name}: {warning}" for warning in analysis.get("warnings", [])]
    missing = sum((analysis.get("unknown_ops") or {}).values()) + len(analysis.get("unknown_shape_nodes") or [])
    which = "that node" if missing == 1 else f"those {missing} nodes"
    return notes + [f"{name}: the predictions count {which} as doing no work: read them as lower bounds"]


def analyzer_version_notes(name: str, analysis: Dict[str, Any]) -> List[str]:
    """A warning when an ``analyze --json`` output was written by another sniper-onnx or feature
    schema than the running one (or before they were recorded, until 2026-11-29): its features may
    share their names but not how they were computed. It still predicts."""
    from sniper_onnx import __version__
    from sniper_onnx.feature_schema import FEATURE_SCHEMA

    version, schema = analysis.get("sniper_onnx_version"), analysis.get("feature_schema")
    if version == __version__ and schema == FEATURE_SCHEMA:
        return []
    if version is None and schema is None:
        written = "an analyzer that recorded no version (sniper-onnx before 2026-11-29)"
    else:
        written = f"sniper-onnx {version or '(no version)'}, feature schema {schema or '(none)'}"
    return [f"{name}: analysis written by {written}, not by this sniper-onnx {__version__} (feature schema "
            f"{FEATURE_SCHEMA}); its features may have been computed differently: re-run `sniper-onnx analyze "
            "--json` on the model for a prediction you can trust"]


def analysis_holds_control_flow(analysis: Dict[str, Any]) -> bool:
    """From `analyze --json`: its node rows say so, or its kernel table was left out for it (null),
    or, in a plain `--json`, the analyzer's warning about a node that holds subgraphs."""
    from sniper_onnx.analysis.kernels import holds_control_flow

    if analysis.get("nodes") is not None:
        return holds_control_flow(analysis["nodes"])
    if "kernel_table" in analysis:
        return analysis["kernel_table"] is None
    return any(SUBGRAPH_WARNING in str(warning) for warning in analysis.get("warnings") or [])


def kernel_table_of_json(data: Dict[str, Any]):
    """The kernel table `analyze --json --kernels` wrote, or one made from `--nodes`; None without
    either (then the PCN answers)."""
    import numpy as np

    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES, kernel_table_for_prediction

    if data.get("kernel_table"):
        written = data["kernel_table"]
        if list(written.get("columns", [])) != list(KERNEL_FEATURE_NAMES):
            raise SniperError("kernel_table columns differ from this sniper-onnx's; re-run `sniper-onnx analyze --json --kernels`")
        widths = {len(row) for row in written["rows"]} - {len(KERNEL_FEATURE_NAMES)}
        if widths:
            raise SniperError(f"kernel_table has rows of {min(widths)} values for its {len(KERNEL_FEATURE_NAMES)} columns; "
                              "re-run `sniper-onnx analyze --json --kernels`")
        return np.array(written["rows"], dtype=np.float32).reshape(len(written["rows"]), len(KERNEL_FEATURE_NAMES))
    return kernel_table_for_prediction(data["nodes"]) if data.get("nodes") is not None else None  # [] is a graph of no nodes


@dataclass
class KnownDevice:
    predictor: str
    device: str
    path: str  # what answers networks with a kernel table: kernels or pcn
    corrected: bool  # adapted or fed back


def list_devices(predictor: Optional[str] = None) -> List[KnownDevice]:
    """Every device the predictor (default: each shipped one) knows, with the path that answers it."""
    loaded_all = [load_predictor(predictor)] if predictor else load_shipped_predictors()
    return [KnownDevice(loaded.source, device,
                        loaded.kernel_path.get("devices", {}).get(device, {}).get("path", "pcn"),
                        loaded.device_table[device][-1] != 0)
            for loaded in loaded_all for device in loaded.devices]


def _once(devices: List[str]) -> List[str]:
    """Each device once, in the order given: `-d t1 -d "AMD EPYC | cpu fp32 t1"` name one device, and
    a repeated row would count twice for whoever sums or counts the output."""
    return list(dict.fromkeys(devices))


def _shipped_plan(devices: Optional[Sequence[str]]) -> List[tuple]:
    """(shipped predictor, its devices to answer): each device goes to the first shipped predictor
    that knows it; without devices, every shipped predictor answers for all of its own."""
    shipped = load_shipped_predictors()
    if not devices:
        return [(loaded, None) for loaded in shipped]
    plan: Dict[int, List[str]] = {}
    every_device = [d for loaded in shipped for d in loaded.devices]
    for device in _once([match_device(d, every_device) for d in devices]):
        owner = next((i for i, loaded in enumerate(shipped) if device in loaded.device_table), None)
        if owner is None:
            raise SniperError(f"device {device!r}: unknown to every shipped predictor (they know: {', '.join(every_device)}); "
                              "pass --predictor, or adapt one with `sniper-onnx adapt`")
        plan.setdefault(owner, []).append(device)
    return [(shipped[i], wanted) for i, wanted in plan.items()]


def _training_data(db: Optional[str], table: Optional[str], statistic: str = "median",
                   warn: Optional[Callable[[str], None]] = None):
    from sniper_onnx.predictors.dataset import load_training_csv, training_data_from_db

    if bool(db) == bool(table):
        raise SniperError("give exactly one of --db DB or --table CSV: the measurements to train on or score against")
    if table:
        data = load_training_csv(table)
    else:
        with tempfile.TemporaryDirectory(prefix="sniper-train-") as scratch:
            data = training_data_from_db(db, scratch, statistic)
    note = data.skipped_note(table or db)
    if note:  # the CLI prints it as a warning line; a library caller gets a Python warning
        (warn or _python_warning)(note)
    return data


def _python_warning(message: str) -> None:
    import warnings

    warnings.warn(message, stacklevel=3)


def train_command(output: str, db: Optional[str] = None, table: Optional[str] = None, epochs: int = 40,
                  seed: int = 0, progress: Optional[Callable[[int, float], None]] = None, statistic: str = "median",
                  status: Optional[Callable[[str], None]] = None, warn: Optional[Callable[[str], None]] = None,
                  devices: Optional[Sequence[str]] = None):
    """Offline (re)training from the database or its CSV export, in one call; writes ``output``.
    ``devices`` (names or the parts of them -d takes): train on those only, e.g. to leave one out
    and `adapt` to it."""
    from sniper_onnx.predictors.pcn import PCNConfig
    from sniper_onnx.predictors.training import train_predictor

    if epochs < 1:
        raise SniperError(f"--epochs {epochs}: train the PCN for at least 1 epoch")
    check_predictor_output(output, [db, table])
    data = _training_data(db, table, statistic, warn)
    if devices:
        data = data.with_devices([_device_of(data.device_names, wanted) for wanted in devices])
    # Which per-measurement statistic the latencies are; a --table says so itself (db export --statistic).
    extra = {"latency_statistic": statistic} if db else {}
    predictor, report = train_predictor(data, PCNConfig(epochs=epochs, seed=seed), progress, seed=seed, extra_meta=extra,
                                        status=status, warn=warn)
    save_predictor(predictor, output)
    return report


def _device_of(names: Sequence[str], wanted: str) -> int:
    found = match_device(wanted, list(names))
    if found not in names:
        raise SniperError(f"--device {wanted!r}: no device of the measurements holds it (they have: {', '.join(names)})")
    return list(names).index(found)


@dataclass
class EvaluationReport:
    predictor: str
    devices: Dict[str, Dict[str, float]]
    overall: Dict[str, float]
    plot: Optional[str] = None
    unknown_devices: Dict[str, int] = field(default_factory=dict)  # device -> measured pairs left out
    # about the predictor file (trained on another feature schema): the metrics may show its error
    warnings: List[str] = field(default_factory=list)
    statistic: Optional[str] = None  # with --db: which statistic of each measurement was scored against

    def to_json_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def evaluate_command(predictor: Optional[str], db: Optional[str] = None, table: Optional[str] = None,
                     plot: Optional[str] = None, statistic: Optional[str] = None,
                     warn: Optional[Callable[[str], None]] = None) -> EvaluationReport:
    """Per-device MAPE, RMSPE, Acc(±5%), Acc(±10%) and Spearman of a predictor on measured pairs.
    ``statistic`` (with ``db``): of each measurement; by default the one the predictor was trained
    on (the shipped reference predictor: the minimum), else the median."""
    import numpy as np

    from sniper_onnx.predictors.metrics import accuracy_metrics

    if plot:
        from sniper_onnx.outputs import plot_path

        plot = str(plot_path(plot))  # before any work: a bad path must not cost the evaluation
    said: List[str] = []
    data = _training_data(db, table, statistic or "median", said.append)
    if len(data.seconds) == 0:  # every row left out (_training_data said why): nothing to score
        _replay(said, warn)
        raise SniperError(f"{table or db}: no usable measurement to evaluate against; measure models with "
                          "`sniper-onnx profile --db DB` first")
    loaded = load_predictor(predictor, data.device_names)
    trained_on = loaded.meta.get("latency_statistic")
    if db and statistic is None and trained_on and trained_on != "median":
        # a predictor of minima scored against medians reads as 1.5x worse than it is (20.6 against 13.2 %)
        said = []
        data = _training_data(db, table, trained_on, said.append)
    _replay(said, warn)
    statistic = (statistic or trained_on or "median") if db else None
    if not any(device in loaded.device_table for device in data.device_names):  # before its features: moot then
        known_to = f"{loaded.source}" if predictor else "any shipped predictor"  # without -p every one was asked
        raise SniperError(f"none of the table's devices ({', '.join(data.device_names)}) is known to {known_to}; "
                          "adapt a predictor to them first (`sniper-onnx adapt`), or pass --predictor")
    index = [data.network_feature_names.index(n) if n in data.network_feature_names else -1
             for n in loaded.network_feature_names]
    if -1 in index:
        missing = loaded.network_feature_names[index.index(-1)]
        raise SniperError(f"training table lacks feature {missing!r} that the predictor needs; re-export the database")
    feature_dicts = [dict(zip(loaded.network_feature_names, row[index])) for row in data.network_matrix]
    kernels = [None] * len(feature_dicts)
    if loaded.kernel_path and any(data.network_sources):
        from sniper_onnx.predictors.kernel_sources import kernel_tables_for

        kernels, _ = kernel_tables_for(data.network_sources)
    per_device, predicted_all, measured_all, labels, unknown = {}, [], [], [], {}
    warnings: List[str] = []
    for d, device in enumerate(data.device_names):
        if device not in loaded.device_table:
            unknown[device] = len(data.device_rows(d))
            continue
        rows = data.device_rows(d)
        if len(rows) == 0:  # its every row was left out for its latency: no metric, not a row of NaN
            continue
        networks = data.pair_network[rows]
        table_ = loaded.predict([feature_dicts[i] for i in networks], [device],
                                kernel_tables=[kernels[i] for i in networks])
        predicted = table_.seconds()
        warnings += [line for line in table_.predictor_warnings if line not in warnings]  # once, not per device
        per_device[device] = accuracy_metrics(predicted, data.seconds[rows])
        predicted_all.append(predicted)
        measured_all.append(data.seconds[rows])
        labels.append(device)
    if not per_device:  # the known devices' every row was left out for its latency
        raise SniperError(f"{table or db}: no usable measurement of a device {loaded.source} knows")
    overall = accuracy_metrics(np.concatenate(predicted_all), np.concatenate(measured_all))
    if plot:
        plot_predicted_vs_measured(labels, predicted_all, measured_all, plot)
    return EvaluationReport(loaded.source, per_device, overall, plot, unknown, warnings, statistic)


def _replay(said: List[str], warn: Optional[Callable[[str], None]]) -> None:
    for line in said if warn else ():
        warn(line)


def plot_predicted_vs_measured(labels: List[str], predicted: List[Any], measured: List[Any], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(figsize=(6, 6))
    points = sum(len(m) for m in measured)
    size = float(np.clip(4000 / max(points, 1), 4, 36))  # a dozen pairs must not vanish, thousands must not blot
    for label, p, m in zip(labels, predicted, measured):
        axes.scatter(np.asarray(m) * 1e3, np.asarray(p) * 1e3, s=size, alpha=0.6, label=label)
    low = min(float(np.min(m)) for m in measured) * 1e3
    high = max(float(np.max(m)) for m in measured) * 1e3
    axes.plot([low, high], [low, high], "k--", linewidth=1)
    axes.fill_between([low, high], [low * 0.9, high * 0.9], [low * 1.1, high * 1.1], color="grey", alpha=0.2, label="±10%")
    axes.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)", title="sniper-onnx predictor")
    axes.legend(fontsize=7, markerscale=max(1.0, 12 / size))
    figure.tight_layout()
    figure.savefig(out, dpi=120)
    plt.close(figure)


def _spec_features(device_spec: Optional[str], device: Optional[str]):
    if not device_spec:
        return None, device
    from sniper_profiler.device import load_device_specs

    path = Path(device_spec)
    if not path.is_file():
        raise SniperError(f"{path}: no such device spec; write one as JSON (see docs/devices.md)")
    try:
        specs = load_device_specs(path)
    except (ValueError, TypeError, KeyError) as error:
        raise SniperError(f"{path}: not a valid device spec ({error})") from None
    if device:
        specs = [s for s in specs if s.name == device] or specs
    if len(specs) != 1:
        raise SniperError(f"{path}: holds {len(specs)} specs; pick one with --device NAME")
    return _features_of(specs[0], path), device or specs[0].name


def _features_of(spec: Any, where: Any) -> List[float]:
    """The spec's feature vector; a fact of the wrong type (threads "two") or size (1e400) is the
    spec's mistake, said in one line."""
    import math

    try:
        features = spec.features()
    except (TypeError, ValueError, AttributeError) as error:
        raise SniperError(f"{where}: a device spec fact has the wrong type ({error}); see docs/devices.md") from None
    if not all(math.isfinite(value) for value in features) or not isinstance(spec.name, str) or not spec.name:
        raise SniperError(f"{where}: the device spec needs a name and finite numbers; see docs/devices.md")
    return features


def _recorded_spec_features(spec: Dict[str, Any], device: Optional[str]):
    from sniper_profiler.device import DeviceSpec

    try:
        recorded = DeviceSpec.from_dict(spec)
    except (ValueError, TypeError) as error:
        raise SniperError(f"the samples' device spec is not valid ({error}); give --device-spec") from None
    return _features_of(recorded, "the samples' device spec"), device or recorded.name


def adapt_command(predictor: Optional[str], samples: str, output: str, device_spec: Optional[str] = None,
                  device: Optional[str] = None):
    """Few-shot adaptation to a new device from a few measured networks; writes ``output``."""
    from sniper_onnx.predictors.adapt import adapt_predictor
    from sniper_onnx.predictors.samples import is_profiler_results, load_samples

    check_predictor_output(output, [samples, device_spec])
    if not Path(samples).is_file():  # before asking for a device name a results file would have given
        raise SniperError(f"{samples}: no such samples file; give a CSV with network,latency_ms columns or a "
                          "profiler results file")
    features, name = _spec_features(device_spec, device)
    if not name and not is_profiler_results(samples):
        raise SniperError("give --device NAME or a --device-spec that names the device")
    measured = load_samples(samples, name)
    if not device_spec and measured.device_spec:  # a profiler results file names its device and spec
        features, name = _recorded_spec_features(measured.device_spec, device)
    if not name:  # a results file whose records name no device
        raise SniperError("give --device NAME or a --device-spec that names the device")
    # Without --predictor every shipped one is adapted and the one that fits the samples best (by
    # leave-one-out) is kept: a CPU box is closer to the reference CPUs than to HW-NAS-Bench's devices.
    candidates = [load_predictor(predictor)] if predictor else load_shipped_predictors()
    if not device_spec:  # a part of a known device's name re-adapts that device, as -d does elsewhere
        name = match_device(name, [d for p in candidates for d in p.devices])
    fits = [adapt_predictor(loaded, name, measured.features, measured.seconds, spec_features=features,
                            sample_names=measured.names, kernel_tables=measured.kernel_tables) for loaded in candidates]
    adapted, report = min(fits, key=lambda fit: fit[1].loo_rmse_log)
    report.predictor, report.warnings = adapted.source, measured.notes
    save_predictor(adapted, output)
    return report


MAX_TOP_K = 10  # each feature costs a sample of its own; more than a handful would fit the noise


def feedback_command(predictor: Optional[str], device: str, samples: str, output: Optional[str] = None,
                     top_k: int = 3):
    """Time Trimmer: fit the residuals of new measurements on a known device; writes ``output`` (or in place)."""
    from sniper_onnx.predictors.adapt import adapt_predictor
    from sniper_onnx.predictors.samples import load_samples

    candidates = [load_predictor(predictor)] if predictor else load_shipped_predictors()  # each file read once
    device = match_device(device, [d for p in candidates for d in p.devices])
    loaded = next((p for p in candidates if device in p.device_table), candidates[0])
    loaded.device_vector(device)
    if not 0 <= top_k <= MAX_TOP_K:
        raise SniperError(f"--top-k {top_k}: give 0 (a scale correction only) to {MAX_TOP_K} features")
    if output is None and (predictor is None or is_shipped_predictor(predictor)):
        raise SniperError("refusing to overwrite the shipped predictor; give -o OUT.onnx")
    if output is not None:
        check_predictor_output(output, [samples])
    measured = load_samples(samples, device)
    adapted, report = adapt_predictor(loaded, device, measured.features, measured.seconds,
                                      solve_embedding=False, trimmer_top_k=top_k, sample_names=measured.names,
                                      kernel_tables=measured.kernel_tables)
    report.warnings = measured.notes
    save_predictor(adapted, output or predictor)
    return report
