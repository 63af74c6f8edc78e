"""The whole predictor as one ONNX graph, built from numpy parameters (no torch needed).

Inputs (float32):
- ``network_features`` [N, F_n]: raw analyzer features, in the order of metadata
  ``sniper.network_feature_names``;
- ``device_features`` [N, F_d + 1]: raw device features (``DeviceSpec.features()``, order of
  ``sniper.device_feature_names``) followed by ``correction_slot`` (0 = none; k = the k-th Time
  Trimmer / few-shot correction, recorded in ``sniper.corrections``). Slot k applies only where the
  value equals k, so any other value (beyond the slots held, negative, fractional) applies none and
  the graph cannot say so: ``runtime.Predictor.check_inputs`` refuses such rows (docs/predictor.md).

- ``kernel_features`` [N, K, 1 + D], only in predictors with a kernel-sum path: each network's
  kernel table (``sniper_onnx.analysis.kernels``), padded to K rows; column 0 is how many of the
  network's layer nodes the row stands for (1 per node, or the count of identical rows merged into
  one; 0 for padding) (:func:`pad_tables`).

Outputs: ``seconds`` [N] (the PCN); ``kernel_seconds`` [N] (the kernel-sum path, when present); ``network_embedding`` [N, H] (the PCN's F(Attention(x_n)) in [-1, 1],
then, if the predictor has them, the linear skip columns z_n · W_lin) and
``device_embedding`` [N, H + 1] (Attention(x_d) through its FC layer, last column the device's log-time
bias), so few-shot adaptation can run with onnxruntime and numpy alone.

The PCN predicts natural-log seconds: log t = F(Attn(x_n)) · e(x_d) + b(x_d) + b_0 (eq. 3, with the
device side's extra column as a per-device scale), then Time Trimmer corrections, then Exp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
NETWORK_INPUT = "network_features"
DEVICE_INPUT = "device_features"
SECONDS_OUTPUT = "seconds"
NETWORK_EMBEDDING_OUTPUT = "network_embedding"
DEVICE_EMBEDDING_OUTPUT = "device_embedding"
KERNEL_INPUT = "kernel_features"
KERNEL_SECONDS_OUTPUT = "kernel_seconds"
# A correction slot's node power scales each node of the kernel sum by
# exp(node_power * (log2 MACs - NODE_MACS_PIVOT) / NODE_MACS_SCALE): a device fitted from another
# may gain more on big nodes than on small ones (a second thread splits a large convolution, not an Add).
# A slot may also carry a roofline (seconds per node, per MAC and per byte moved) that replaces the
# learned node times (slot_roofline_only 1): a device of a kind no trained device has, fitted to its
# samples alone.
NODE_MACS_PIVOT = 20.0
NODE_MACS_SCALE = 10.0

Params = Dict[str, np.ndarray]


class _Builder:
    def __init__(self, params: Params) -> None:
        self.params = params
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def param(self, name: str) -> str:
        return self.const(name, self.params[name].astype(np.float32))

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        self._count += 1
        out = f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def attention(self, prefix: str, z: str, width: int, dim: int) -> str:
        """Scaled dot-product self-attention over feature tokens (eq. 1), with a residual, flattened."""
        tokens = self.op(
            "Add",
            self.op("Mul", self.op("Unsqueeze", z, self.const(f"{prefix}_axis2", np.array([2], np.int64))),
                    self.param(f"{prefix}_embed_w")),
            self.param(f"{prefix}_embed_b"),
        )
        query = self.op("MatMul", tokens, self.param(f"{prefix}_wq"))
        key = self.op("MatMul", tokens, self.param(f"{prefix}_wk"))
        value = self.op("MatMul", tokens, self.param(f"{prefix}_wv"))
        scores = self.op("MatMul", query, self.op("Transpose", key, perm=[0, 2, 1]))
        scale = self.const(f"{prefix}_scale", np.array(1.0 / np.sqrt(dim), np.float32))
        weights = self.op("Softmax", self.op("Mul", scores, scale), axis=-1)
        attended = self.op("Add", self.op("MatMul", weights, value), tokens)
        shape = self.const(f"{prefix}_flat", np.array([-1, width * dim], np.int64))
        return self.op("Reshape", attended, shape)

    def output(self, x: str, name: str) -> str:
        """Expose ``x`` as the graph output ``name``."""
        self.nodes.append(helper.make_node("Identity", [x], [name]))
        return name

    def dense(self, x: str, name: str) -> str:
        return self.op("Add", self.op("MatMul", x, self.param(f"{name}_w")), self.param(f"{name}_b"))


def mlp_layer_names(params: Params) -> List[str]:
    count = sum(1 for key in params if key.startswith("net_fc") and key.endswith("_w"))
    return [f"net_fc{i}" for i in range(count)]


def has_kernel_path(params: Params) -> bool:
    return "kern_fc0_w" in params


@dataclass(frozen=True, eq=False)  # arrays: compare rows and counts, not the objects
class DistinctRows:
    """A kernel table with identical rows merged. Identical nodes (a network's repeated blocks)
    take the same time, so the graph evaluates each distinct row once and multiplies by its count:
    about a quarter of the rows of the reference dataset's nets are distinct."""

    rows: np.ndarray  # [U, width] float32
    counts: np.ndarray  # [U] float32, each >= 1

    def __len__(self) -> int:
        return len(self.rows)


def distinct_rows(table: Union[np.ndarray, DistinctRows]) -> DistinctRows:
    """Merge identical rows of a kernel table (a no-op on a DistinctRows). A scheduler that predicts
    one network many times can merge once and pass the result as its kernel table."""
    if isinstance(table, DistinctRows):
        return table
    table = np.ascontiguousarray(table, dtype=np.float32)
    if len(table) == 0:
        return DistinctRows(table, np.zeros(0, np.float32))
    _, first, counts = np.unique(row_keys(table), return_index=True, return_counts=True)
    return DistinctRows(table[first], counts.astype(np.float32))


def row_keys(table: np.ndarray) -> np.ndarray:
    """One hashable key per row of a float32 table; np.unique over them orders rows as distinct_rows does."""
    table = np.ascontiguousarray(table, dtype=np.float32)
    # rows compared as raw bytes: np.unique(axis=0) costs 7x more on a 200-row table
    return table.view(np.dtype((np.void, table.itemsize * table.shape[1]))).ravel()


def distinct_each(tables: Sequence[Union[np.ndarray, DistinctRows]]) -> List[DistinctRows]:
    """distinct_rows of every table; the same table object given for several rows is merged once."""
    merged: Dict[int, DistinctRows] = {}
    for table in tables:
        if id(table) not in merged:
            merged[id(table)] = distinct_rows(table)
    return [merged[id(table)] for table in tables]


def pad_tables(tables: Sequence[Union[np.ndarray, DistinctRows]], width: int) -> np.ndarray:
    """[N, K_max, 1 + width] float32: each table's distinct rows, column 0 their counts (0 marks
    padding)."""
    distinct = distinct_each(tables)
    longest = max((len(d) for d in distinct), default=0)
    padded = np.zeros((len(distinct), max(longest, 1), 1 + width), dtype=np.float32)
    for i, table in enumerate(distinct):
        padded[i, : len(table), 0] = table.counts
        padded[i, : len(table), 1:] = table.rows
    return padded


@dataclass(frozen=True)
class _SlotNodeTerms:
    """A correction slot's node-level terms, as graph tensors picked by each row's slot."""

    node_power: str  # [N, 1]: each node's time times exp(node_power * size)
    roofline_only: str  # [N, 1]: 1 where the slot's roofline replaces the learned node times, else 0
    roofline: str  # [N, 1, 3]: seconds per (1 + MAC), per (1 + byte moved) and per node
    roofline_call: str  # [N, 1]: the slot's roofline's seconds per call (with roofline_only)


def _kernel_sum(b: _Builder, raw_dev: str, axis1: str, slot_terms: Optional[_SlotNodeTerms] = None) -> str:
    """log of the sum over real rows of each node's time (kernelnet), plus a call's cost where the
    kernel net has one, as [N], with each network's correction slot's node terms (see
    NODE_MACS_PIVOT and ``slot_roofline``).

    Node log-times lie far inside float32's exp range (seconds between 1e-30 and 1e30), so the sums
    need no max-subtraction; that keeps the batched cost per pair low (docs/predictor.md)."""
    from sniper_onnx.predictors.kernelnet import INTENSITY_COLUMN, MACS_COLUMN

    axis2 = b.const("axis2", np.array([2], np.int64))

    def column(index: int) -> str:
        return b.op("Slice", KERNEL_INPUT, b.const(f"kern_cs{index}", np.array([index], np.int64)),
                    b.const(f"kern_ce{index}", np.array([index + 1], np.int64)), axis2)

    counts = b.op("Squeeze", column(0), axis2)  # [N, K]: nodes per row, 0 for padding
    ln2 = b.const("kern_ln2", np.array(np.log(2.0), np.float32))
    log2_macs = column(1 + MACS_COLUMN)
    log_macs = b.op("Mul", log2_macs, ln2)
    log_bytes = b.op("Sub", log_macs, b.op("Mul", column(1 + INTENSITY_COLUMN), ln2))
    work = b.op("Concat", log_macs, log_bytes, b.op("Mul", log_macs, b.const("kern_zero", np.array(0.0, np.float32))), axis=2)
    first = b.op("MatMul", raw_dev, b.param("kern_fc0_dev_w"))  # [N, H]
    if "kern_fc0_net_w" in b.params:  # the network's size, log2(1 + x), the same for all its nodes
        columns = b.const("kern_net_columns", b.params["kern_net_columns"].astype(np.int64))
        sizes = b.op("Gather", NETWORK_INPUT, columns, axis=1)
        logged = b.op("Div", b.op("Log", b.op("Add", b.op("Relu", sizes), "one")), ln2)  # "one": build_graph's
        term = b.op("MatMul", logged, b.param("kern_fc0_net_w"))
        if "kern_fc0_net_b" in b.params:
            term = b.op("Add", term, b.param("kern_fc0_net_b"))
        if "kern_gate_columns" in b.params:  # e.g. CPUs only: the sum of their one-hot kind columns
            gate_columns = b.const("kern_gate_columns", b.params["kern_gate_columns"].astype(np.int64))
            gate = b.op("ReduceSum", b.op("Gather", raw_dev, gate_columns, axis=1),
                        b.const("kern_c_gate_axis", np.array([1], np.int64)), keepdims=1)  # [N, 1]
            term = b.op("Mul", term, gate)
        first = b.op("Add", first, term)
    device_term = b.op("Unsqueeze", first, axis1)  # [N, 1, H]
    # kern_fc0_w's first row is zero: the whole input, count column included, goes in without a copy
    hidden = b.op("Relu", b.op("Add", b.dense(KERNEL_INPUT, "kern_fc0"), device_term))
    hidden = b.op("Relu", b.dense(hidden, "kern_fc1"))
    terms = b.op("Add", b.dense(hidden, "kern_out"), work)  # [N, K, 3]: per-MAC, per-byte, fixed
    node_seconds = b.op("ReduceSum", b.op("Exp", terms), axis2, keepdims=0)  # [N, K]
    call_seconds = None
    if "kern_percall_w" in b.params:  # [N, 1]: a call's own cost on the device (kernelnet.call_cost)
        call_seconds = b.op("Exp", b.op("Add", b.op("MatMul", raw_dev, b.param("kern_percall_w")), b.param("kern_percall_b")))
    if slot_terms is not None:
        size = b.op("Div", b.op("Sub", b.op("Squeeze", log2_macs, axis2),
                                b.const("kern_node_pivot", np.array(NODE_MACS_PIVOT, np.float32))),
                    b.const("kern_node_scale", np.array(NODE_MACS_SCALE, np.float32)))
        node_seconds = b.op("Mul", node_seconds, b.op("Exp", b.op("Mul", size, slot_terms.node_power)))
        roofline = b.op("ReduceSum", b.op("Mul", b.op("Exp", work), slot_terms.roofline), axis2, keepdims=0)
        learned = b.op("Sub", b.const("kern_roofline_one", np.array(1.0, np.float32)), slot_terms.roofline_only)
        node_seconds = b.op("Add", b.op("Mul", node_seconds, learned), roofline)
        if call_seconds is not None:  # not scaled by the node power; a roofline replaces it as well
            call_seconds = b.op("Add", b.op("Mul", call_seconds, learned), slot_terms.roofline_call)
        else:
            call_seconds = slot_terms.roofline_call
    total = b.op("ReduceSum", b.op("Mul", node_seconds, counts), axis1, keepdims=0)
    if call_seconds is not None:
        total = b.op("Add", total, b.op("Squeeze", call_seconds, axis1))
    return b.op("Log", total)


def _slot_node_terms(b: _Builder, params: Params, onehot: str, slots: int) -> _SlotNodeTerms:
    def per_slot(name: str, default: np.ndarray) -> np.ndarray:
        return np.asarray(params.get(name, default), np.float32).reshape(slots, -1)

    node_power = per_slot("slot_node_power", np.zeros(slots))
    roofline_only = per_slot("slot_roofline_only", np.zeros(slots))  # files written before it: 0
    roofline = per_slot("slot_roofline", np.zeros((slots, 3)))
    roofline_call = per_slot("slot_roofline_call", np.zeros(slots))  # files written before it: 0
    rates = b.op("Unsqueeze", b.op("MatMul", onehot, b.const("slot_roofline", roofline)),
                 b.const("kern_roofline_axis", np.array([1], np.int64)))
    return _SlotNodeTerms(b.op("MatMul", onehot, b.const("slot_node_power", node_power)),
                          b.op("MatMul", onehot, b.const("slot_roofline_only", roofline_only)), rates,
                          b.op("MatMul", onehot, b.const("slot_roofline_call", roofline_call)))


def build_graph(params: Params) -> onnx.ModelProto:
    """The ONNX model for ``params`` (layout documented in :mod:`sniper_onnx.predictors.pcn`)."""
    b = _Builder(params)
    n_net = params["net_mean"].shape[0]
    n_dev = params["dev_mean"].shape[0]
    dim = params["net_wq"].shape[0]
    slots = params["slot_delta"].shape[0]

    # Normalization: network counts and MACs span decades, so log1p first; device features are
    # already log-scaled by DeviceSpec.
    raw_net = NETWORK_INPUT
    logged = b.op("Log", b.op("Add", b.op("Relu", raw_net), b.const("one", np.array(1.0, np.float32))))
    z_net = b.op("Div", b.op("Sub", logged, b.param("net_mean")), b.param("net_std"))
    dev_all = DEVICE_INPUT
    starts, ends, axis1 = (b.const(n, np.array(v, np.int64)) for n, v in (("zero1", [0]), ("ndev", [n_dev]), ("axis1", [1])))
    raw_dev = b.op("Slice", dev_all, starts, ends, axis1)
    z_dev = b.op("Div", b.op("Sub", raw_dev, b.param("dev_mean")), b.param("dev_std"))

    hidden = b.attention("net", z_net, n_net, dim)
    layers = mlp_layer_names(params)
    for i, layer in enumerate(layers):
        hidden = b.dense(hidden, layer)
        if i < len(layers) - 1:
            hidden = b.op("Relu", hidden)
    two = b.const("two", np.array(2.0, np.float32))
    net_embedding = b.op("Sub", b.op("Mul", b.op("Sigmoid", hidden), two), "one")  # sigmoid scaled to [-1, 1]
    if "net_linear_w" in params:  # the unbounded linear skip columns (PCNConfig.linear)
        net_embedding = b.op("Concat", net_embedding, b.op("MatMul", z_net, b.param("net_linear_w")), axis=1)

    device_embedding = b.dense(b.attention("dev", z_dev, n_dev, dim), "dev_fc")
    embed_width = params["dev_fc_w"].shape[1]
    correction = slot_terms = None
    if slots:
        slot = b.op("Slice", dev_all, b.const("slot_start", np.array([n_dev], np.int64)),
                    b.const("slot_end", np.array([n_dev + 1], np.int64)), axis1)
        ids = b.const("slot_ids", np.arange(1, slots + 1, dtype=np.float32)[None, :])
        onehot = b.op("Cast", b.op("Equal", slot, ids), to=TensorProto.FLOAT)  # [N, K]
        device_embedding = b.op("Add", device_embedding, b.op("MatMul", onehot, b.param("slot_delta")))
        trim = b.op("Add", b.op("MatMul", z_net, b.param("slot_trim_w")), b.param("slot_trim_b"))
        correction = b.op("ReduceSum", b.op("Mul", trim, onehot), axis1, keepdims=0)
        # log t = (1 + power) * log t_path + correction: a device whose speed-up over the one it is
        # fitted from grows with the network's size (more threads, a wider machine)
        power = np.asarray(params.get("slot_power", np.zeros(slots)), np.float32).reshape(-1, 1)
        growth = b.op("Add", b.op("Squeeze", b.op("MatMul", onehot, b.const("slot_power", power)), axis1), "one")
        slot_terms = _slot_node_terms(b, params, onehot, slots)
    device_embedding = b.output(device_embedding, DEVICE_EMBEDDING_OUTPUT)

    scale_cols = b.op("Slice", device_embedding, "zero1", b.const("h", np.array([embed_width - 1], np.int64)), axis1)
    bias_col = b.op("Slice", device_embedding, b.const("h0", np.array([embed_width - 1], np.int64)),
                    b.const("h1", np.array([embed_width], np.int64)), axis1)
    log_seconds = b.op("Add", b.op("ReduceSum", b.op("Mul", net_embedding, scale_cols), axis1, keepdims=0),
                       b.op("Squeeze", bias_col, axis1))
    log_seconds = b.op("Add", log_seconds, b.param("out_bias"))
    if correction is not None:
        log_seconds = b.op("Add", b.op("Mul", log_seconds, growth), correction)
    b.nodes.append(helper.make_node("Exp", [log_seconds], [SECONDS_OUTPUT]))
    b.output(net_embedding, NETWORK_EMBEDDING_OUTPUT)
    inputs = [
        helper.make_tensor_value_info(NETWORK_INPUT, TensorProto.FLOAT, ["N", n_net]),
        helper.make_tensor_value_info(DEVICE_INPUT, TensorProto.FLOAT, ["N", n_dev + 1]),
    ]
    outputs = [
        helper.make_tensor_value_info(SECONDS_OUTPUT, TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info(NETWORK_EMBEDDING_OUTPUT, TensorProto.FLOAT, ["N", embed_width - 1]),
        helper.make_tensor_value_info(DEVICE_EMBEDDING_OUTPUT, TensorProto.FLOAT, ["N", embed_width]),
    ]
    if has_kernel_path(params):
        kernel_log_seconds = _kernel_sum(b, raw_dev, axis1, slot_terms)
        if correction is not None:  # a device's correction slot applies to whichever path answers it
            kernel_log_seconds = b.op("Add", b.op("Mul", kernel_log_seconds, growth), correction)
        b.nodes.append(helper.make_node("Exp", [kernel_log_seconds], [KERNEL_SECONDS_OUTPUT]))
        width = params["kern_fc0_w"].shape[0] - 1
        inputs.append(helper.make_tensor_value_info(KERNEL_INPUT, TensorProto.FLOAT, ["N", "K", width + 1]))
        outputs.append(helper.make_tensor_value_info(KERNEL_SECONDS_OUTPUT, TensorProto.FLOAT, ["N"]))

    graph = helper.make_graph(b.nodes, "sniper_pcn", inputs, outputs, initializer=b.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sniper-onnx")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def params_from_model(model: onnx.ModelProto) -> Params:
    """Every named parameter back out of a predictor graph (constants of the layout are skipped)."""
    keys = ("net_", "dev_", "slot_delta", "slot_trim_", "slot_power", "slot_node_power", "slot_roofline",
            "out_bias", "kern_")
    return {
        init.name: numpy_helper.to_array(init).astype(np.float64)
        for init in model.graph.initializer
        if init.name.startswith(keys) and not init.name.endswith(("_axis2", "_scale", "_flat"))
        and not init.name.startswith(("kern_c", "kern_ln2", "kern_zero", "kern_far", "kern_node_", "kern_roofline_"))
    }
