"""Loading and running a predictor file: onnxruntime and numpy only (never torch or scikit-learn)."""

from __future__ import annotations

import json
import os
import math
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
import onnx

from sniper_onnx.errors import SniperError
from sniper_onnx.predictors import graph as G
from sniper_onnx.predictors.graph import DistinctRows, distinct_rows  # noqa: F401 - public: schedulers merge once

KernelTable = Union[np.ndarray, DistinctRows]  # a network's kernel table, per node or with identical rows merged

FORMAT_VERSION = "1"
META = "sniper."
HW_NAS_PREDICTOR = "pcn_hw_nasbench201.onnx"  # 19 devices of HW-NAS-Bench, trained at NAS-Bench-201 scale
# Every predictor that ships, in order of preference: a device is answered by the first that knows it.
# the first is load_predictor()'s default: the reference dataset's predictor, trained on networks of
# every size (HW-NAS-Bench's knows 32x32 cells only)
SHIPPED_PREDICTORS = ("pcn_reference.onnx", HW_NAS_PREDICTOR)
PATH_PCN = "pcn"
PATH_REGRESSION = "regression"
PATH_KERNELS = "kernels"  # the kernel-sum path: a time per layer node, summed
# A 90% interval: 5th and 95th percentiles of log(measured / predicted) on held-out data.
DEFAULT_LOG_INTERVAL = (-0.25, 0.25)
Z_90 = 1.6449
# The per-device Bayesian ridge is linear in seconds: for a network smaller than those it was fitted to
# it can answer 0 or less. Its answers are clipped at the ridge's ``floor_seconds`` (half the fastest
# measurement it was fitted to), or at this for files written before that (until 2026-11-29).
REGRESSION_FLOOR_S = 1e-6
# a network of no layer is answered by the kernel sum's cost of a call only on a device whose fastest
# training net took at most this many calls (Predictor._call_was_measured)
CALL_EVIDENCE = 10.0
KERNEL_CHUNK = 64  # networks per graph call on the kernel-sum path (each call pads to its longest)


def feature_unit(name: str) -> str:
    """Units of an analyzer feature, from its name (documented in docs/predictor.md)."""
    rules = (("_macs", "multiply-accumulates"), ("_params", "parameters"), ("prop_", "ratio"),
             ("_ratio", "ratio"), ("_fraction", "ratio"), ("_bytes", "bytes"))
    for token, unit in rules:
        if token in name:
            return unit
    return "count"


@dataclass
class PredictionRow:
    network: str
    device: str
    seconds: float
    low: float  # 90% interval
    high: float
    path: str  # "pcn", "kernels" or "regression": which model the Structure Checker sent it to
    outside_training_range: List[str] = field(default_factory=list)  # features beyond what training saw
    predictor: str = ""  # the file that answered: `predict` without --predictor asks every shipped one
    control_flow: bool = False  # If/Loop/Scan, which no training network had: an extrapolation too
    unseen_ops: Dict[str, int] = field(default_factory=dict)  # layers of op types training taught nothing about
    unseen_layer_share: float = 0.0  # their share of the network's layers
    # every network feature beyond training's, whatever the path reads (outside_training_range
    # keeps those the answering path reads): `predict` ranks shipped predictors by it
    network_outside_range: List[str] = field(default_factory=list)

    @property
    def extrapolated(self) -> bool:
        return bool(self.outside_training_range) or self.control_flow or \
            self.unseen_layer_share >= UNSEEN_SHARE_EXTRAPOLATED


# layers of op types training never saw, as a share of a network's layers, from which its rows are
# extrapolations: one Slice among a CNN's 50 layers is a guess at 2 % of the sum, not the sum's
UNSEEN_SHARE_EXTRAPOLATED = 0.1


def _unseen_op(op: str, count: int) -> str:
    from sniper_onnx.analysis.runtime_bodies import runtime_op_types  # only for a model with ops training lacked

    body = runtime_op_types(op)
    return f"{op} x{count}" if body == (op,) else f"{op} x{count}, run as {' + '.join(body)}"


def _unseen_note(row: "PredictionRow") -> str:
    ops = "; ".join(_unseen_op(op, count) for op, count in row.unseen_ops.items())
    source = Path(row.predictor).name if row.predictor else "the predictor"
    # 4 of 41 layers is 9.8 %: "10 %" would read as the threshold it falls short of
    percent = f"{row.unseen_layer_share:.0%}" if abs(row.unseen_layer_share - UNSEEN_SHARE_EXTRAPOLATED) >= 0.005 \
        else f"{row.unseen_layer_share:.1%}"
    share = f"{percent} of its layers ({ops}) are of op types {source} was trained on no network with"
    if row.unseen_layer_share >= UNSEEN_SHARE_EXTRAPOLATED:
        return (f"{row.network}: {share}: training never showed the predictor their time, so its rows are "
                "extrapolations; measure a few such models and correct the device with `sniper-onnx feedback` "
                "(the rows stay marked: a correction fits those models, it does not teach the op)")
    return f"{row.network}: {share}: too few to mark its rows as extrapolations, but their time is a guess"


@dataclass
class PredictionTable:
    predictor: str
    rows: List[PredictionRow] = field(default_factory=list)
    analysis_warnings: List[str] = field(default_factory=list)  # the analyzer's, per network (commands.analysis_notes)
    # about the predictor file itself (trained on features of another analyzer): once per file, not per row
    predictor_warnings: List[str] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)  # of several models, those that could not be predicted
    predictors: List[str] = field(default_factory=list)  # every file that answered, when several did

    def to_json_dict(self) -> Dict[str, Any]:
        return {"predictor": self.predictor, "predictors": self.predictors or [self.predictor],
                "unit": "seconds", "interval": "90%",
                # `extrapolated` is derived (a property), so a JSON reader need not re-derive the rules
                "predictions": [{**asdict(row), "extrapolated": row.extrapolated} for row in self.rows], "warnings": self.warnings(), "failures": self.failures}

    def warnings(self) -> List[str]:
        """The predictors' own warnings (features of another schema), the analyzer's warnings of
        each network (incomplete costs, a batch set to 1, ...), then one line per network and
        predictor where the network's features lie outside that predictor's training data."""
        seen: Dict[tuple, List[str]] = {}
        devices: Dict[tuple, int] = {}
        for row in self.rows:
            if row.outside_training_range:  # paths read different features: name all of them once
                key = (row.network, Path(row.predictor).name if row.predictor else "the predictor")
                named = seen.setdefault(key, [])
                named += [feature for feature in row.outside_training_range if feature not in named]
                devices[key] = devices.get(key, 0) + 1
        outside = [f"{network}: {len(features)} feature(s) outside the training range of {source} "
                f"({', '.join(features[:4])}{' ...' if len(features) > 4 else ''}); its {devices[network, source]} "
                "row(s) are extrapolations, marked as such; adapt the predictor with measured samples of "
                "similar networks (`sniper-onnx adapt`/`feedback`)"
                for (network, source), features in seen.items()]
        unseen = list(dict.fromkeys(_unseen_note(row) for row in self.rows if row.unseen_ops))
        return self.predictor_warnings + self.analysis_warnings + outside + unseen

    def seconds(self) -> np.ndarray:
        return np.array([row.seconds for row in self.rows])


def _json_meta(model: onnx.ModelProto) -> Dict[str, Any]:
    meta = {}
    for prop in model.metadata_props:
        if prop.key.startswith(META):
            meta[prop.key[len(META):]] = json.loads(prop.value)
    return meta


def set_metadata(model: onnx.ModelProto, meta: Mapping[str, Any]) -> None:
    del model.metadata_props[:]
    for key in sorted(meta):
        prop = model.metadata_props.add()
        prop.key, prop.value = META + key, json.dumps(meta[key], sort_keys=True)


def shipped_predictor_path(name: str) -> Path:
    return Path(str(resources.files("sniper_onnx") / "data" / name))


def shipped_predictor_paths() -> List[Path]:
    return [path for path in map(shipped_predictor_path, SHIPPED_PREDICTORS) if path.is_file()]


class Predictor:
    """A predictor file: the PCN graph plus, in metadata, the per-device regressions and device table."""

    def __init__(self, model: onnx.ModelProto, source: str = "<memory>") -> None:
        self.model = model
        self.source = source
        self.meta = _json_meta(model)
        missing = [k for k in ("network_feature_names", "device_feature_names", "device_table") if k not in self.meta]
        if missing:
            raise SniperError(f"{source}: not a sniper-onnx predictor (metadata lacks {', '.join(missing)}); "
                              "train one with `sniper-onnx train` or use the shipped one")
        self.network_feature_names: List[str] = self.meta["network_feature_names"]
        self.device_feature_names: List[str] = self.meta["device_feature_names"]
        self.device_table: Dict[str, List[float]] = self.meta["device_table"]
        self._session = None
        # fixed by the graph, read once: Predictor.run checks every call against them
        self._widths = {name: self._input_width(name) for name in (G.NETWORK_INPUT, G.DEVICE_INPUT)}
        self._slots = next((int(init.dims[0]) for init in model.graph.initializer if init.name == "slot_delta"), 0)
        self._kernel_width = next((value.type.tensor_type.shape.dim[2].dim_value - 1
                                   for value in model.graph.input if value.name == G.KERNEL_INPUT), 0)
        self._kernel_reads = self._kernel_network_features()
        self._check_device_table()

    def _kernel_network_features(self) -> tuple[set, list]:
        """The whole-network features the kernel sum reads (its network context; none without it),
        and the device feature columns that gate it (none: every device reads them)."""
        arrays = {init.name: onnx.numpy_helper.to_array(init) for init in self.model.graph.initializer
                  if init.name in ("kern_net_columns", "kern_gate_columns")}
        reads = {self.network_feature_names[int(c)] for c in arrays.get("kern_net_columns", ())}
        return reads, [int(c) for c in arrays.get("kern_gate_columns", ())]

    def kernel_reads(self, device: str) -> set:
        """The whole-network features the kernel sum reads for ``device``: the network context,
        where the device's gate columns (e.g. the CPU kinds) let it through."""
        reads, gate = self._kernel_reads
        if not reads or not gate:
            return reads
        return reads if float(np.sum(self.device_vector(device)[gate])) != 0.0 else set()

    # -- running the graph -------------------------------------------------------------------
    @property
    def session(self):
        if self._session is None:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # tiny graph: threads cost more than they save
            self._session = onnxruntime.InferenceSession(
                self.model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return self._session

    @property
    def kernel_path(self) -> Dict[str, Any]:
        """Metadata of the kernel-sum path ({} when the predictor has none)."""
        return self.meta.get("kernel_path") or {}

    def _input_width(self, name: str) -> int:
        """Columns of a graph input (the graph decides, not a copy of it in metadata)."""
        for value in self.model.graph.input:
            if value.name == name:
                return value.type.tensor_type.shape.dim[-1].dim_value
        return 0

    @property
    def correction_slots(self) -> int:
        """How many corrections (adapt, feedback) the graph holds: valid slots are 0 (none) to this."""
        return self._slots

    def _check_device_table(self) -> None:
        """Every device row must fit the graph: a wrong width would fail inside onnxruntime, and a slot
        the graph does not hold would silently apply no correction (and adapt would write to a wrong one)."""
        width, slots = self._widths[G.DEVICE_INPUT], self.correction_slots
        for device, row in self.device_table.items():
            if len(row) != width:
                raise SniperError(f"{self.source}: device {device!r} has {len(row)} values in sniper.device_table, "
                                  f"the graph takes {width}; the file is damaged: retrain or re-adapt it")
            problem = slot_problem(row[-1], slots)
            if problem:
                raise SniperError(f"{self.source}: device {device!r} in sniper.device_table: {problem}; "
                                  "the file is damaged: re-adapt that device")

    def check_inputs(self, network_matrix: np.ndarray, device_matrix: np.ndarray, tables: Optional[Sequence] = None) -> None:
        """Refuse raw matrices the graph cannot take, in one line naming what it expects; onnxruntime
        would fail in a fused Gemm, or (an unknown correction slot) answer as if uncorrected."""
        widths = self._widths
        shapes = {G.NETWORK_INPUT: np.shape(network_matrix), G.DEVICE_INPUT: np.shape(device_matrix)}
        for name, shape in shapes.items():
            if len(shape) != 2 or shape[1] != widths[name]:
                raise SniperError(f"{name} has shape {list(shape)}; this predictor takes [N, {widths[name]}] "
                                  f"(one row per network-device pair, columns in sniper.{name[:-len('_features')]}_feature_names)")
        rows = {len(network_matrix), len(device_matrix)} | ({len(tables)} if tables is not None else set())
        if len(rows) > 1:
            counts = f"{len(network_matrix)} network rows, {len(device_matrix)} device rows"
            counts += f", {len(tables)} kernel tables" if tables is not None else ""
            raise SniperError(f"{counts}: give one of each per network-device pair (row i of each belongs together)")
        for i, table in enumerate(tables if tables is not None and self.kernel_width else []):
            _check_kernel_table(i, self.in_kernel_layout(table), self.kernel_width)
        slots, held = np.asarray(device_matrix, dtype=np.float64)[:, -1], self.correction_slots
        valid = np.isfinite(slots) & (slots == np.round(slots)) & (slots >= 0) & (slots <= held)
        if not valid.all():
            row = int(np.argmin(valid))
            raise SniperError(f"{G.DEVICE_INPUT} row {row}: {slot_problem(slots[row], held)}; "
                              "take device rows from sniper.device_table")

    @property
    def kernel_width(self) -> int:
        """Columns of a kernel table the graph takes (0: the graph has no kernel-sum path)."""
        return self._kernel_width

    def in_kernel_layout(self, table: Optional[KernelTable]) -> Optional[KernelTable]:
        """``table`` (today's kernel columns) cut to the layout this predictor was trained on: columns
        are only ever appended, so an older predictor takes the first ``kernel_width``."""
        return _earlier_layout(table, self.kernel_width, self.kernel_path.get("feature_names"))

    def run(self, network_matrix: np.ndarray, device_matrix: np.ndarray,
            kernel_tables: Optional[Sequence[Optional[KernelTable]]] = None) -> Dict[str, np.ndarray]:
        """Raw graph outputs for aligned rows of raw network and device features (and, for a
        predictor with a kernel-sum path, each row's kernel table; without them its
        ``kernel_seconds`` are meaningless)."""
        width = self.kernel_width
        if kernel_tables is not None:
            kernel_tables = [self.in_kernel_layout(table) for table in kernel_tables]
        self.check_inputs(network_matrix, device_matrix, kernel_tables)
        if not width:
            return self._run_once(network_matrix, device_matrix, None, 0)
        empty = np.zeros((0, width))
        if kernel_tables is None:  # one padding row each: the kernel sum costs next to nothing
            return self._run_once(network_matrix, device_matrix, [empty] * len(network_matrix), width)
        tables = G.distinct_each([empty if t is None else t for t in kernel_tables])
        if len(tables) <= KERNEL_CHUNK:
            return self._run_once(network_matrix, device_matrix, tables, width)
        # Tables are padded to the longest in a call: run networks with similar counts of distinct rows together.
        order = np.argsort([len(t) for t in tables], kind="stable")
        parts = [(chunk, self._run_once(network_matrix[chunk], device_matrix[chunk], [tables[i] for i in chunk], width))
                 for chunk in np.array_split(order, -(-len(order) // KERNEL_CHUNK))]
        merged = {}
        for name, first in parts[0][1].items():
            merged[name] = np.empty((len(order), *first.shape[1:]), dtype=first.dtype)
            for chunk, outputs in parts:
                merged[name][chunk] = outputs[name]
        return merged

    def _run_once(self, network_matrix: np.ndarray, device_matrix: np.ndarray, tables, width: int) -> Dict[str, np.ndarray]:
        feeds = {
            G.NETWORK_INPUT: np.ascontiguousarray(network_matrix, dtype=np.float32),
            G.DEVICE_INPUT: np.ascontiguousarray(device_matrix, dtype=np.float32),
        }
        names = [G.SECONDS_OUTPUT, G.NETWORK_EMBEDDING_OUTPUT, G.DEVICE_EMBEDDING_OUTPUT]
        if width:
            feeds[G.KERNEL_INPUT] = G.pad_tables(tables, width)
            names.append(G.KERNEL_SECONDS_OUTPUT)
        return dict(zip(names, self.session.run(names, feeds)))

    # -- inputs --------------------------------------------------------------------------------
    def network_matrix(self, network_features: Sequence[Mapping[str, float]],
                       names: Optional[Sequence[str]] = None) -> np.ndarray:
        """Rows of raw features in the predictor's order; ``names`` name the networks in errors."""
        rows = []
        for i, features in enumerate(network_features):
            name = names[i] if names else f"network {i}"
            missing = [n for n in self.network_feature_names if n not in features]
            if missing:
                raise SniperError(
                    f"{name}: features missing for this predictor: {', '.join(missing[:5])}"
                    f"{' ...' if len(missing) > 5 else ''}; use the features of `sniper-onnx analyze --json` "
                    "(an analysis by another sniper-onnx version may lack some: re-run it)")
            try:
                rows.append([float(features[n]) for n in self.network_feature_names])
            except (TypeError, ValueError):
                rows.append([_as_number(features[n]) for n in self.network_feature_names])
        matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(self.network_feature_names))
        # Analyzer features are finite counts, sizes and ratios >= 0. A negative total_macs went to the
        # Structure Checker's ridge, below its threshold, and came back as negative seconds.
        bad = ~np.isfinite(matrix) | (matrix < 0)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            feature = self.network_feature_names[j]
            raise SniperError(f"{names[i] if names else f'network {i}'}: feature {feature} is "
                              f"{json.dumps(network_features[i][feature], default=str)}; analyzer features are finite "
                              f"numbers >= 0 ({feature_unit(feature)}): use the features of `sniper-onnx analyze --json`")
        return matrix

    def device_vector(self, device: str) -> np.ndarray:
        if device not in self.device_table:
            known = ", ".join(sorted(self.device_table))
            raise SniperError(f"device {device!r}: unknown to predictor {self.source} (knows: {known}); "
                              "adapt it with `sniper-onnx adapt` or pick a known device")
        return np.array(self.device_table[device], dtype=np.float64)

    @property
    def devices(self) -> List[str]:
        return sorted(self.device_table)

    def unseen_ops(self, layer_ops: Optional[Mapping[str, int]]) -> List[str]:
        """The op types of ``layer_ops`` (``AnalysisResult.layer_ops``) that training taught nothing
        about: of a kind (kernel group) no training network had, or of the catch-all "other" kind
        and not itself in training (Slice and Attention share nothing but that column). Div is
        not one where Add and Mul were trained. An op onnxruntime runs as its function body is judged
        by the body's op types (Mish by Softplus, Tanh and Mul). Empty where either side is unknown (files trained
        before 2026-11-30 do not record their op types)."""
        seen = self.meta.get("training_layer_ops")
        new = set(layer_ops or ()) - set(seen or ())
        if not seen or not new:
            return []
        from sniper_onnx.analysis.kernels import op_kind  # only for a model with ops training lacked
        from sniper_onnx.analysis.runtime_bodies import runtime_op_types

        kinds = {op_kind(op) for op in seen}

        def untaught(op: str) -> bool:  # an op run as its function body is taught by its body's ops
            return any(op_kind(inner) == "other" and inner not in seen or op_kind(inner) not in kinds
                       for inner in runtime_op_types(op))

        return sorted(op for op in new if untaught(op))

    @property
    def feature_schema(self) -> Optional[str]:
        """The analyzer's FEATURE_SCHEMA its network features were computed with; None for a file
        written before training recorded it (until 2026-11-29)."""
        schema = self.meta.get("feature_schema")
        return str(schema) if schema is not None else None

    def feature_schema_notes(self) -> List[str]:
        """One warning when the file was trained on features of another schema than the running
        analyzer computes: same names, maybe other values, so its answers may be off by the change.
        A file without a recorded schema says nothing: it predates recording it, and warning on
        every prediction of every older file would be noise (the shipped ones carry theirs)."""
        from sniper_onnx.feature_schema import FEATURE_SCHEMA  # not the analysis package: predict needs no analyzer

        schema = self.feature_schema
        if schema is None or schema == FEATURE_SCHEMA:
            return []
        return [f"{self.source}: trained on features of feature schema {schema}, but this sniper-onnx computes "
                f"feature schema {FEATURE_SCHEMA}; features may share names but not values, so its predictions "
                "may be off: retrain it on features this analyzer computes (`sniper-onnx db import` its profiler "
                "records into a fresh database, `db export`, `train`)"]

    # -- prediction ----------------------------------------------------------------------------
    def predict(
        self,
        network_features: Sequence[Mapping[str, float]],
        devices: Optional[Sequence[str]] = None,
        network_names: Optional[Sequence[str]] = None,
        kernel_tables: Optional[Sequence[Optional[KernelTable]]] = None,
        layer_ops: Optional[Sequence[Optional[Mapping[str, int]]]] = None,
    ) -> PredictionTable:
        """Seconds, a 90% interval and the answering path for every (network, device) pair.

        ``kernel_tables`` (``analysis.kernels.kernel_table_for_prediction`` of each network's
        nodes, None where unknown or where control flow leaves the sum short) let the kernel-sum
        path answer on the devices where it beat the PCN in training. ``layer_ops``
        (``AnalysisResult.layer_ops`` of each network) mark the layers of op types training taught
        nothing about (``unseen_ops``; rows extrapolated from UNSEEN_SHARE_EXTRAPOLATED of them).
        A scheduler that asks about one network many times can pass ``distinct_rows(table)``, made
        once, to skip merging its identical rows on every call."""
        devices = [match_device(d, self.devices) for d in devices] if devices else self.devices
        names = list(network_names) if network_names else [str(i) for i in range(len(network_features))]
        nets = self.network_matrix(network_features, list(network_names) if network_names else None)
        outside = self.outside_training_range(nets)
        tables = self._usable_tables(kernel_tables, network_features)
        if layer_ops is not None and len(layer_ops) != len(network_features):
            raise SniperError(f"{len(layer_ops)} layer_ops for {len(network_features)} networks; give one per network "
                              "(None where unknown)")
        unseen = [self._unseen_layers(ops) for ops in (layer_ops or [None] * len(network_features))]
        table = PredictionTable(predictor=self.source, predictor_warnings=self.feature_schema_notes())
        if kernel_tables is None:
            table.predictor_warnings += self._kernel_tables_wanted(devices)
        for device in devices:
            vector = self.device_vector(device)
            kernel = self._kernel_answers(device, tables)
            outputs = self.run(nets, np.tile(vector, (len(nets), 1)), tables if kernel.any() else None)
            seconds = outputs[G.SECONDS_OUTPUT].astype(np.float64)
            low, high = self._pcn_interval(device, seconds)
            path = np.full(len(nets), PATH_PCN, dtype=object)
            if kernel.any():
                kernel_seconds = outputs[G.KERNEL_SECONDS_OUTPUT].astype(np.float64)
                lo, hi = self.kernel_path["devices"][device]["interval"]
                seconds = np.where(kernel, kernel_seconds, seconds)
                low = np.where(kernel, kernel_seconds * math.exp(lo), low)
                high = np.where(kernel, kernel_seconds * math.exp(hi), high)
                path[kernel] = PATH_KERNELS
            floor = self._call_floor(device)
            if floor > 0:  # no network runs in less than a call: the PCN, which never learnt one, can answer less
                lift = np.where(path == PATH_PCN, np.maximum(1.0, floor / seconds), 1.0)
                low = np.where(path == PATH_PCN, np.maximum(low, floor), low)  # the interval keeps its upper width
                seconds, high = seconds * lift, high * lift
            regression = self._regression(device, nets)
            if regression is not None:
                small, answer, answer_low, answer_high = regression
                seconds = np.where(small, answer, seconds)
                low = np.where(small, answer_low, low)
                high = np.where(small, answer_high, high)
                path[small] = PATH_REGRESSION
            reads = self.kernel_reads(device)
            for i in range(len(nets)):
                # the kernel sum reads a network's nodes and its size, not the rest of Table 1: a
                # plain conv3x3 CNN's prop_conv3x3 beyond training's made its kernel rows
                # "extrapolations" (and buried the warnings that mattered)
                beyond = outside[i] if path[i] != PATH_KERNELS else [f for f in outside[i] if f in reads]
                table.rows.append(PredictionRow(names[i], device, float(seconds[i]), float(low[i]),
                                                float(high[i]), str(path[i]), beyond, self.source,
                                                unseen_ops=unseen[i][0], unseen_layer_share=unseen[i][1],
                                                network_outside_range=outside[i]))
        return table

    def _unseen_layers(self, layer_ops: Optional[Mapping[str, int]]) -> tuple:
        """({op: layers} of op types training taught nothing about, their share of the layers)."""
        ops = self.unseen_ops(layer_ops)
        if not ops:
            return {}, 0.0
        counts = {op: int(layer_ops[op]) for op in ops}
        return counts, sum(counts.values()) / max(sum(int(n) for n in layer_ops.values()), 1)

    def _kernel_tables_wanted(self, devices: Sequence[str]) -> List[str]:
        """A note for an API call without kernel tables where the kernel sum would answer: the
        PCN answers instead, less accurately, and the caller may not know the argument exists."""
        by_kernels = [d for d in devices if self.kernel_path.get("devices", {}).get(d, {}).get("path") == PATH_KERNELS]
        if not by_kernels:
            return []
        return [f"{Path(self.source).name}: no kernel tables given, so the PCN answers {len(by_kernels)} device(s) the "
                "kernel sum answers more accurately (as `sniper-onnx predict` does); pass kernel_tables="
                "[sniper_onnx.analysis.kernels.kernel_table_for_prediction(analysis.nodes), ...], one per network"]

    def _usable_tables(self, kernel_tables, network_features: Sequence[Mapping[str, float]]) -> List[Optional[DistinctRows]]:
        count = len(network_features)
        if not self.kernel_path or kernel_tables is None:
            return [None] * count
        if len(kernel_tables) != count:
            raise SniperError(f"{len(kernel_tables)} kernel tables for {count} networks; give one per network (None where unknown)")
        width = self.kernel_width  # the graph's input decides, not a copy of it in metadata
        tables = []
        for i, table in enumerate(kernel_tables):
            table = self.in_kernel_layout(table)
            _check_kernel_table(i, table, width)
            # merged once here, not once per device in predict's loop
            tables.append(distinct_rows(table) if _kernel_sum_can_time(table, network_features[i]) else None)
        return tables

    def _kernel_answers(self, device: str, tables: Sequence[Optional[np.ndarray]]) -> np.ndarray:
        """Networks the kernel sum answers on ``device``: those with a table, if it won there in
        training, or if the device's correction (adapt, feedback) was fitted to the kernel sum; one
        of no layer (an empty table) only where its answer, a call, was learnt (``_call_was_measured``)."""
        chosen = self.kernel_path.get("devices", {}).get(device, {}).get("path") == PATH_KERNELS
        if not chosen:
            return np.zeros(len(tables), dtype=bool)
        call = self._call_was_measured(device)
        return np.array([t is not None and (len(t) > 0 or call) for t in tables], dtype=bool)

    def _call_floor(self, device: str) -> float:
        """The device's cost of a call, where training nets showed it and no correction slot (adapt,
        feedback) changed what a call costs; else 0."""
        facts = (self.kernel_path or {}).get("devices", {}).get(device)
        if not facts or "call_seconds" not in facts or self.device_table[device][-1] != 0:
            return 0.0
        call = _as_number(facts["call_seconds"])
        return call if math.isfinite(call) and self._call_was_measured(device) else 0.0

    def _call_was_measured(self, device: str) -> bool:
        """Whether the device's cost of a call was shown by its training nets: one of at most
        SMALL_NET_LAYERS layers (recorded as ``fewest_layers`` since 2026-11-30). Files before that
        say only the call and the ridge's floor (half the fastest net): there the fastest net must
        have taken at most CALL_EVIDENCE calls. Without small nets the call is whatever the nodes
        left over (0.02 us on the H200 of the file shipped until 2026-11-30, whose fastest net then
        took 135 us), no answer for a network that is only a call."""
        from sniper_onnx.predictors.kernelnet import SMALL_NET_LAYERS

        facts = self.kernel_path["devices"][device]
        if "fewest_layers" in facts:  # NaN (a file written by hand) compares False: not seen
            return 0 < _as_number(facts["fewest_layers"]) <= SMALL_NET_LAYERS
        call = _as_number(facts.get("call_seconds"))
        floor = _as_number((self.meta.get("regression", {}).get(device) or {}).get("floor_seconds"))
        return CALL_EVIDENCE * call >= 2 * floor

    def outside_training_range(self, nets: np.ndarray) -> List[List[str]]:
        bounds = self.meta.get("network_feature_range")
        if not bounds:
            return [[] for _ in range(len(nets))]
        # Sizes span decades: a margin of 5 % of the linear range (up to 79 GMACs) would pass a net 10x
        # smaller than any trained one, so the range and its margin are taken on a log scale.
        low, high, values = (_log_scale(np.asarray(v, dtype=np.float64)) for v in (bounds["min"], bounds["max"], nets))
        slack = 0.05 * np.maximum(high - low, 1e-12)
        beyond = (values < low - slack) | (values > high + slack)
        return [[self.network_feature_names[j] for j in np.flatnonzero(row)] for row in beyond]

    def _pcn_interval(self, device: str, seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        intervals = self.meta.get("intervals", {})
        lo, hi = intervals.get(device, intervals.get("default", DEFAULT_LOG_INTERVAL))
        return seconds * math.exp(lo), seconds * math.exp(hi)

    def _regression(self, device: str, nets: np.ndarray):
        """Structure Checker: small networks on a device with a regression go to the Bayesian ridge."""
        checker = self.meta.get("structure_checker")
        regression = self.meta.get("regression", {}).get(device)
        if not checker or not regression or self.device_table[device][-1] != 0:
            return None  # corrected devices answer from the PCN, which the correction was fit against
        column = self.network_feature_names.index(checker["feature"])
        small = nets[:, column] < checker["threshold"]
        if not small.any():
            return None
        return (small, *regression_answer(regression, nets, self.network_feature_names))


def _kernel_sum_can_time(table: Optional[KernelTable], features: Mapping[str, float]) -> bool:
    """Whether the kernel sum can answer for a network. A table of no row can mean layers it cannot
    time (control flow, left out of tables), answered by the PCN; but a network of no layer at all
    (an empty graph, plumbing only) costs one call, which the sum of no node plus a call is."""
    if table is None:
        return False
    return len(table) > 0 or _as_number(features.get("num_layers")) == 0


def _as_number(value: Any) -> float:
    """A feature value as a float, NaN (refused by the caller) where it is none."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _earlier_layout(table: Optional[KernelTable], width: int, names: Optional[Sequence[str]] = None) -> Optional[KernelTable]:
    """A table of this sniper-onnx's layout cut to a predictor trained on an earlier one: kernel
    columns are only ever appended, so its first ``width`` columns are the layout it learned, when
    the predictor's column names (``names``) are exactly those; otherwise the table is left whole
    and refused by its width."""
    rows = table.rows if isinstance(table, DistinctRows) else table
    shape = np.shape(rows) if table is not None else ()
    if len(shape) != 2 or not 0 < width < shape[1]:
        return table
    from sniper_onnx.analysis.kernels import KERNEL_FEATURE_NAMES  # only here: it loads the analyzer

    if shape[1] != len(KERNEL_FEATURE_NAMES) or (names is not None and list(names) != list(KERNEL_FEATURE_NAMES[:width])):
        return table
    if isinstance(table, DistinctRows):
        return DistinctRows(np.ascontiguousarray(table.rows[:, :width]), table.counts)
    return np.asarray(rows)[:, :width]


def _check_kernel_table(index: int, table: Optional[KernelTable], width: int) -> None:
    shape = np.shape(table.rows if isinstance(table, DistinctRows) else table)
    if table is not None and (len(shape) != 2 or shape[1] != width):
        raise SniperError(f"network {index}: kernel table has shape {list(shape)}, this predictor wants [layers, {width}]; "
                          "build it with sniper_onnx.analysis.kernels.kernel_table")


def slot_problem(slot: float, slots: int) -> str:
    """What is wrong with a ``correction_slot`` value ('' when nothing): the graph applies slot k
    (1..slots) only on an exact match, so any other value silently means no correction."""
    slot = _as_number(slot)
    if math.isfinite(slot) and slot == int(slot) and 0 <= slot <= slots:
        return ""
    held = f"slots 1..{slots}" if slots else "no corrections"
    return f"correction_slot {slot:g} is not 0 (none) or a correction the file holds ({held})"


def _log_scale(values: np.ndarray) -> np.ndarray:
    """log(1 + |x|) with x's sign: monotonic, so ranges keep their order, and 0 stays 0."""
    return np.sign(values) * np.log1p(np.abs(values))


def regression_predict(regression: Mapping[str, Any], nets: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A Bayesian ridge stored as numbers: mean and predictive std, exactly as scikit-learn computes them."""
    columns = [names.index(n) for n in regression["features"]]
    z = (nets[:, columns] - np.array(regression["mean"])) / np.array(regression["scale"])
    mean = z @ np.array(regression["coef"]) + regression["intercept"]
    sigma = np.array(regression["sigma"]).reshape(len(columns), len(columns))
    std = np.sqrt(np.einsum("ij,jk,ik->i", z, sigma, z) + 1.0 / regression["alpha"])
    return mean, std


def regression_floor(regression: Mapping[str, Any]) -> float:
    """The least seconds a device's ridge answers (see REGRESSION_FLOOR_S)."""
    floor = _as_number(regression.get("floor_seconds", REGRESSION_FLOOR_S))
    return floor if math.isfinite(floor) and floor > 0 else REGRESSION_FLOOR_S


def regression_answer(regression: Mapping[str, Any], nets: np.ndarray,
                      names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seconds and 90% interval of the Structure Checker's ridge: its mean, clipped at the ridge's
    floor (a linear model in seconds can answer 0 or less), and the answer -/+ 1.645 std, the low end
    clipped at the floor too: 0 < low <= seconds < high, as wide above a clipped answer as the ridge is
    unsure."""
    mean, std = regression_predict(regression, nets, names)
    floor = regression_floor(regression)
    seconds = np.maximum(mean, floor)
    return seconds, np.maximum(mean - Z_90 * std, floor), seconds + Z_90 * std


def match_device(wanted: str, known: Sequence[str]) -> str:
    """The known device ``wanted`` names: itself, or the only known name holding it (case-insensitive),
    so "t1 opt-all" finds "AMD EPYC | cpu fp32 t1 opt-all". A name no device holds comes back as given,
    for the caller's own error; one that several hold is an error naming them."""
    if wanted in known:
        return wanted
    if not wanted.strip():  # "" is in every name: it would match them all
        raise SniperError(f"device {wanted!r}: an empty device name; give a device name or the part of it only one "
                          "device holds (`sniper-onnx predict --list-devices` lists them)")
    from sniper_onnx.matching import names_holding

    holders = names_holding(wanted, known)
    if len(holders) > 1:
        raise SniperError(f"device {wanted!r}: matches {len(holders)} devices ({', '.join(sorted(holders))}); "
                          "give more of the name")
    return holders[0] if holders else wanted


def load_predictor(path: Union[str, Path, None] = None, devices: Optional[Sequence[str]] = None) -> Predictor:
    """The predictor at ``path``; without one, the shipped predictor that knows the most of
    ``devices`` (names or the parts of them ``predict -d`` takes; the reference predictor on a tie,
    or when no devices are named)."""
    if not path:
        shipped = load_shipped_predictors()
        wanted = list(devices or [])
        return max(shipped, key=lambda p: sum(_knows(p, d) for d in wanted)) if wanted else shipped[0]
    return _load_file(Path(path))


def _knows(predictor: Predictor, device: str) -> bool:
    try:
        return match_device(device, predictor.devices) in predictor.device_table
    except SniperError:  # a part several of its devices hold
        return False


def load_shipped_predictors() -> List[Predictor]:
    shipped = [_load_file(p) for p in shipped_predictor_paths()]
    if not shipped:
        raise SniperError("no predictor ships with this installation; train one with `sniper-onnx train` and pass --predictor")
    return shipped


def _load_file(path: Path) -> Predictor:
    if path.is_dir():
        raise SniperError(f"{path}: is a directory, not a predictor file; pass the predictor .onnx inside it")
    if not path.is_file():
        raise SniperError(f"{path}: no such predictor file; train one with `sniper-onnx train` or omit --predictor "
                          "to use the shipped one")
    if path.stat().st_size == 0:
        raise SniperError(f"{path}: an empty file, not a predictor; train one with `sniper-onnx train` or omit "
                          "--predictor to use the shipped one")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # noqa: BLE001 - onnx raises several unrelated types on bad files
        raise SniperError(f"{path}: not a readable ONNX file ({type(error).__name__}); pass a predictor .onnx") from None
    return Predictor(model, str(path))


def params_of(predictor: Predictor) -> G.Params:
    params = G.params_from_model(predictor.model)
    width = params["dev_fc_w"].shape[1]
    params.setdefault("slot_delta", np.zeros((0, width)))
    params.setdefault("slot_trim_w", np.zeros((params["net_mean"].shape[0], 0)))
    params.setdefault("slot_trim_b", np.zeros(0))
    params.setdefault("slot_power", np.zeros(params["slot_delta"].shape[0]))  # files written before the power
    params["slot_power"] = params["slot_power"].reshape(-1)
    slots = params["slot_delta"].shape[0]
    params.setdefault("slot_node_power", np.zeros(slots))  # files written before them: no node terms
    params["slot_node_power"] = params["slot_node_power"].reshape(-1)
    params.setdefault("slot_roofline_only", np.zeros(slots))
    params["slot_roofline_only"] = params["slot_roofline_only"].reshape(-1)
    params.setdefault("slot_roofline", np.zeros((slots, 3)))
    params["slot_roofline"] = params["slot_roofline"].reshape(slots, 3)
    params.setdefault("slot_roofline_call", np.zeros(slots))  # files written before it: no call of their own
    params["slot_roofline_call"] = params["slot_roofline_call"].reshape(-1)
    return params


def normalized_network(params: G.Params, nets: np.ndarray) -> np.ndarray:
    """The graph's network-feature normalization, in numpy (the Time Trimmer fits on it)."""
    return (np.log1p(np.maximum(nets, 0)) - params["net_mean"]) / params["net_std"]


def build_predictor(params: G.Params, meta: Mapping[str, Any], source: str = "<memory>") -> Predictor:
    from sniper_onnx import __version__

    model = G.build_graph(params)
    meta = dict(meta)
    meta.update({"format_version": FORMAT_VERSION, "version": __version__, "output": "seconds",
                 "network_feature_units": {n: feature_unit(n) for n in meta["network_feature_names"]},
                 "inputs": {G.NETWORK_INPUT: "raw network features, order network_feature_names; row i of every input "
                                             "is one network-device pair, so all share N",
                            G.DEVICE_INPUT: "raw device features, order device_feature_names (last: correction_slot, "
                                            "0 or a slot of corrections; the graph applies no correction for any "
                                            "other value, so check it)",
                            **({G.KERNEL_INPUT: "kernel table per network (identical rows may be merged), padded: column 0 = the row's count "
                                                "(nodes it stands for; 0 = padding), "
                                                "then kernel_path.feature_names"} if G.has_kernel_path(params) else {})}})
    set_metadata(model, meta)
    return Predictor(model, source)


def save_predictor(predictor: Predictor, path: Union[str, Path]) -> Path:
    """Written beside ``path`` and moved over it: a full disk or an interrupt leaves the old file
    (and every measurement in its corrections) whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        onnx.save(predictor.model, str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def is_shipped_predictor(path: Union[str, Path]) -> bool:
    """Whatever the spelling: relative, absolute or through a link."""
    path = Path(path)
    from sniper_onnx.outputs import is_same_file

    return any(is_same_file(path, shipped) for shipped in shipped_predictor_paths())


def check_predictor_output(output: Union[str, Path], inputs: Sequence[Union[str, Path, None]] = ()) -> None:
    """Refuse an output that would destroy something: an input of the command, a shipped predictor,
    or an existing file that is not a predictor (a database, a model, a results file)."""
    from sniper_onnx.outputs import check_output_file, is_same_file

    output = Path(output)
    check_output_file(output, "-o")  # a missing folder too, as every other output: a typo must not make folders
    if not output.exists():
        return
    for given in inputs:
        if is_same_file(output, given):
            raise SniperError(f"-o {output}: is this command's input {given}; give another path")
    if is_shipped_predictor(output):
        raise SniperError(f"-o {output}: is a predictor shipped with sniper-onnx; give another path")
    try:
        meta = onnx.load(str(output), load_external_data=False).metadata_props
    except Exception:  # noqa: BLE001 - not ONNX at all
        meta = []
    if not any(entry.key.startswith(META) for entry in meta):
        raise SniperError(f"-o {output}: exists and is not a sniper-onnx predictor; give another path "
                          "(nothing is overwritten that may hold measurements)")
