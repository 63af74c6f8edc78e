"""NAS-Bench-201 networks (Dong & Yang, ICLR 2020) as ONNX graphs, from their arch strings.

The network follows /work/shared/data/hw-nasbench201/README.md and the reference PyTorch code
(``InferCell``, ``ResNetBasicblock``, ``TinyNetwork`` of NAS-Bench-201):

- stem: Conv3x3(3->16, no bias) -> BN;
- 5 cells at 16 channels, a reduction block to 32 (stride 2), 5 cells at 32, a reduction block to
  64, 5 cells at 64;
- head: BN -> ReLU -> GlobalAveragePool -> Flatten -> Gemm (the only layer with a bias).

A cell is a DAG over nodes 0..3; node j is the sum over i < j of op(i->j)(node i) and node 3 is the
cell's output. Ops: ``none`` adds nothing to the graph; ``skip_connect`` is the tensor itself;
``nor_conv_kxk`` is ReLU -> Conv (no bias) -> BN; ``avg_pool_3x3`` is AveragePool 3x3, stride 1,
pad 1, padding excluded from the mean (``count_include_pad=False`` as in NAS-Bench-201).

A reduction block is NAS-Bench-201's ``ResNetBasicblock``: ReLU-Conv3x3(s2)-BN -> ReLU-Conv3x3-BN,
added to a shortcut AvgPool2x2(s2) -> Conv1x1 (no bias, and no BN: the README and the reference
code both put none there), with no activation after the sum.

Zero nodes. A node whose inputs are all ``none`` is zero. Where something reads it (a non-``none``
edge leaves it, or it is the cell output) it is one ``Mul(cell_input, 0)`` node, exactly
NAS-Bench-201's ``Zero`` op applied once; otherwise it does not appear at all. When the output node
is zero the cell collapses to that single ``Mul``, so its output is zeros of the input's shape and
the rest of the network (reduction blocks, head) still runs on them. Ops whose results never reach
the cell output are kept, dangling: the reference PyTorch network runs them, and the measured
latencies of HW-NAS-Bench rise with them (see docs/devices.md), so they belong in the cost model.
With these rules the all-``none`` net has 73,306 trainable parameters and the all-``nor_conv_3x3``
net 1,531,546 (CIFAR-10 head), the extremes NAS-Bench-201 itself reports.
"""

from __future__ import annotations

import csv
import functools
import gzip
import itertools
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
from onnx import TensorProto, helper

from sniper_onnx.errors import SniperError

ALL_OPS: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (target node, source node) of each op, in arch-string order: |1<-0|+|2<-0|2<-1|+|3<-0|3<-1|3<-2|
CELL_EDGES: Tuple[Tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_ARCHS = len(ALL_OPS) ** len(CELL_EDGES)  # 15,625
OPSET = 17
IR_VERSION = 8  # the IR that introduced opset 17: readable by older runtimes on phones and boards

STEM_CHANNELS = 16
CELLS_PER_STAGE = 5
NUM_STAGES = 3
BN_EPSILON = 1e-5

_CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


# ---------------------------------------------------------------------------------------------
# Arch strings
# ---------------------------------------------------------------------------------------------


def parse_arch(arch: str) -> Tuple[str, ...]:
    """The six ops of an arch string, in :data:`CELL_EDGES` order."""
    nodes = arch.strip().strip("|").split("|+|") if arch.strip() else []
    if len(nodes) != 3:
        raise SniperError(
            f"arch {arch!r}: expected 3 node groups separated by '+', like "
            "'|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|'"
        )
    ops: List[str] = []
    for target, group in enumerate(nodes, start=1):
        tokens = group.split("|")
        if len(tokens) != target:
            raise SniperError(f"arch {arch!r}: node {target} needs {target} inputs, got {len(tokens)}")
        for source, token in enumerate(tokens):
            op, _, index = token.partition("~")
            if op not in ALL_OPS:
                raise SniperError(f"arch {arch!r}: unknown op {op!r}; use one of {', '.join(ALL_OPS)}")
            if index != str(source):
                raise SniperError(f"arch {arch!r}: {token!r} must read node {source} (write '{op}~{source}')")
            ops.append(op)
    return tuple(ops)


def format_arch(ops: Sequence[str]) -> str:
    """The arch string of six ops given in :data:`CELL_EDGES` order."""
    if len(ops) != len(CELL_EDGES) or any(op not in ALL_OPS for op in ops):
        raise SniperError(f"ops {list(ops)!r}: need {len(CELL_EDGES)} ops, each one of {', '.join(ALL_OPS)}")
    groups: Dict[int, List[str]] = {}
    for (target, source), op in zip(CELL_EDGES, ops):
        groups.setdefault(target, []).append(f"{op}~{source}")
    return "+".join("|" + "|".join(groups[target]) + "|" for target in sorted(groups))


def arch_to_ordinal(arch: str) -> int:
    """Position of ``arch`` in :func:`all_archs` (base 5, first edge most significant).

    This is NOT NAS-Bench-201's own ``arch_index``, which follows no formula; that mapping ships with
    the benchmark tables (``arch_index`` column) and with the committed feature table.
    """
    ordinal = 0
    for op in parse_arch(arch):
        ordinal = ordinal * len(ALL_OPS) + ALL_OPS.index(op)
    return ordinal


def ordinal_to_arch(ordinal: int) -> str:
    if not 0 <= int(ordinal) < NUM_ARCHS:
        raise SniperError(f"arch ordinal {ordinal}: must be in 0..{NUM_ARCHS - 1}")
    digits = []
    for _ in CELL_EDGES:
        ordinal, digit = divmod(int(ordinal), len(ALL_OPS))
        digits.append(ALL_OPS[digit])
    return format_arch(digits[::-1])


def all_archs() -> Iterator[str]:
    """Every one of the 15,625 arch strings, in ordinal order."""
    for ops in itertools.product(ALL_OPS, repeat=len(CELL_EDGES)):
        yield format_arch(ops)


def random_arch(rng: Union[random.Random, np.random.Generator, None] = None) -> str:
    """A uniformly random arch string (``rng`` is a ``random.Random`` or a numpy ``Generator``)."""
    rng = rng if rng is not None else random.Random()
    if isinstance(rng, np.random.Generator):
        picks = rng.integers(0, len(ALL_OPS), size=len(CELL_EDGES))
    else:
        picks = [rng.randrange(len(ALL_OPS)) for _ in CELL_EDGES]
    return format_arch([ALL_OPS[int(pick)] for pick in picks])


def zero_nodes(ops: Sequence[str]) -> List[int]:
    """Cell nodes (1..3) that are structurally zero: every input is ``none``."""
    return [
        target
        for target in (1, 2, 3)
        if all(op == "none" for (t, _), op in zip(CELL_EDGES, ops) if t == target)
    ]


def output_depends_on_input(arch: str) -> bool:
    """Whether a path of non-``none`` ops leads from node 0 to node 3.

    When none does (341 of the 15,625 archs) the cell's output, and so the network's, is a constant:
    a runtime that folds constants (TFLite on the Pixel 3 does, for 202 of them) may skip all the
    work and report next to nothing, while PyTorch on the desktop devices runs it all.
    """
    ops = parse_arch(arch)
    reached = {0}
    for target in (1, 2, 3):
        if any(op != "none" and source in reached for (t, source), op in zip(CELL_EDGES, ops) if t == target):
            reached.add(target)
    return 3 in reached


# ---------------------------------------------------------------------------------------------
# ONNX graph construction
# ---------------------------------------------------------------------------------------------


@dataclass
class _Graph:
    """Accumulates nodes and initializers; ``weights=False`` leaves initializers as dims only."""

    weights: bool
    rng: np.random.Generator
    nodes: List[onnx.NodeProto] = field(default_factory=list)
    initializers: List[TensorProto] = field(default_factory=list)
    zero_scalar: Optional[str] = None

    def shaped(self, name: str, shape: Tuple[int, ...], fill: Optional[float] = None, fan_in: int = 1) -> str:
        if not self.weights:
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT)
            tensor.dims.extend(shape)
            self.initializers.append(tensor)
            return name
        if fill is not None:
            values = np.full(shape, fill, dtype=np.float32)
        else:
            # He (Kaiming normal): each conv keeps its input's scale, so nothing decays toward denormals
            values = self.rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape).astype(np.float32)
        self.initializers.append(onnx.numpy_helper.from_array(values, name))
        return name

    def node(self, op_type: str, inputs: List[str], name: str, **attributes) -> str:
        node = onnx.NodeProto(op_type=op_type, name=name, input=inputs, output=[name])
        node.attribute.extend(_attribute(key, tuple(v) if isinstance(v, list) else v) for key, v in sorted(attributes.items()))
        self.nodes.append(node)
        return name

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], f"{name}/relu")

    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int, pad: int, name: str) -> str:
        weight = self.shaped(f"{name}/conv.weight", (c_out, c_in, kernel, kernel), fan_in=c_in * kernel * kernel)
        return self.node(
            "Conv", [x, weight], f"{name}/conv",
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4,
        )

    def batchnorm(self, x: str, channels: int, name: str) -> str:
        # unit statistics (mean 0, var 1, gamma 1, beta 0): a freshly initialised, "trained-looking" BN
        params = [
            self.shaped(f"{name}/bn.{part}", (channels,), fill=fill)
            for part, fill in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0))
        ]
        return self.node("BatchNormalization", [x, *params], f"{name}/bn", epsilon=BN_EPSILON)

    def relu_conv_bn(self, x: str, c_in: int, c_out: int, kernel: int, stride: int, name: str) -> str:
        y = self.conv(self.relu(x, name), c_in, c_out, kernel, stride, kernel // 2, name)
        return self.batchnorm(y, c_out, name)

    def avgpool(self, x: str, kernel: int, stride: int, pad: int, name: str) -> str:
        return self.node(
            "AveragePool", [x], f"{name}/avgpool",
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4, count_include_pad=0,
        )

    def add(self, a: str, b: str, name: str) -> str:
        return self.node("Add", [a, b], name)

    def zeros_like(self, x: str, name: str) -> str:
        if self.zero_scalar is None:
            # a real value even in weightless skeletons: it is a tiny constant, not a weight
            self.zero_scalar = "zero"
            self.initializers.append(onnx.numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero"))
        return self.node("Mul", [x, self.zero_scalar], name)


@functools.lru_cache(maxsize=None)
def _attribute(key: str, value) -> onnx.AttributeProto:
    # a handful of distinct attributes recur thousands of times across the 15,625 builds
    return helper.make_attribute(key, list(value) if isinstance(value, tuple) else value)


def _cell(graph: _Graph, x: str, ops: Sequence[str], channels: int, name: str) -> str:
    """One NAS-Bench-201 cell on ``x``; returns the name of its output tensor."""
    zeros = set(zero_nodes(ops))
    node_tensors: Dict[int, str] = {0: x}
    for target in (1, 2, 3):
        if target in zeros:
            if target == 3 or any(op != "none" for (_, s), op in zip(CELL_EDGES, ops) if s == target):
                node_tensors[target] = graph.zeros_like(x, f"{name}/node{target}_zero")
            continue
        terms: List[str] = []
        for (edge_target, source), op in zip(CELL_EDGES, ops):
            if edge_target != target or op == "none":
                continue
            terms.append(_edge(graph, node_tensors[source], op, channels, f"{name}/edge{source}{target}"))
        total = terms[0]
        for index, term in enumerate(terms[1:], start=1):
            total = graph.add(total, term, f"{name}/node{target}_add{index}")
        node_tensors[target] = total
    return node_tensors[3]


def _edge(graph: _Graph, x: str, op: str, channels: int, name: str) -> str:
    if op == "skip_connect":
        return x
    if op == "avg_pool_3x3":
        return graph.avgpool(x, 3, 1, 1, name)
    return graph.relu_conv_bn(x, channels, channels, _CONV_KERNELS[op], 1, name)


def _reduction(graph: _Graph, x: str, c_in: int, c_out: int, name: str) -> str:
    residual = graph.relu_conv_bn(x, c_in, c_out, 3, 2, f"{name}/conv_a")
    residual = graph.relu_conv_bn(residual, c_out, c_out, 3, 1, f"{name}/conv_b")
    shortcut = graph.avgpool(x, 2, 2, 0, f"{name}/shortcut")
    shortcut = graph.conv(shortcut, c_in, c_out, 1, 1, 0, f"{name}/shortcut")
    return graph.add(shortcut, residual, f"{name}/add")


def build_nasbench201(
    arch: str,
    weights: bool = True,
    resolution: int = 32,
    batch: int = 1,
    num_classes: int = 10,
    seed: int = 0,
) -> onnx.ModelProto:
    """The NAS-Bench-201 network of ``arch`` as an opset-17 ONNX model.

    Input ``input`` is ``(batch, 3, resolution, resolution)``, output ``logits`` is
    ``(batch, num_classes)``. ``weights=False`` gives a weightless skeleton (initializers carry dims
    only) for the analyzer: it is much smaller and faster to build, but onnx.checker and onnxruntime
    need ``weights=True``. ``seed`` fixes the He-initialised weights.
    """
    ops = parse_arch(arch)
    for label, value, least in (("resolution", resolution, 4), ("batch", batch, 1), ("num_classes", num_classes, 1)):
        if int(value) < least:
            raise SniperError(f"{label} {value}: must be at least {least}")
    if resolution % 4:
        # two stride-2 reductions: on an odd size the shortcut pool and the strided conv disagree
        raise SniperError(f"resolution {resolution}: must be a multiple of 4 (e.g. 32, the CIFAR size)")
    graph = _Graph(weights=weights, rng=np.random.default_rng(seed))
    x = graph.batchnorm(graph.conv("input", 3, STEM_CHANNELS, 3, 1, 1, "stem"), STEM_CHANNELS, "stem")
    channels = STEM_CHANNELS
    for stage in range(NUM_STAGES):
        if stage > 0:
            x = _reduction(graph, x, channels, channels * 2, f"reduce{stage}")
            channels *= 2
        for index in range(CELLS_PER_STAGE):
            x = _cell(graph, x, ops, channels, f"stage{stage + 1}/cell{index + 1}")
    x = graph.relu(graph.batchnorm(x, channels, "head"), "head")
    x = graph.node("GlobalAveragePool", [x], "head/gap")
    x = graph.node("Flatten", [x], "head/flatten", axis=1)
    fc_weight = graph.shaped("head/fc.weight", (num_classes, channels), fan_in=channels)
    fc_bias = graph.shaped("head/fc.bias", (num_classes,), fill=0.0)
    graph.nodes.append(helper.make_node("Gemm", [x, fc_weight, fc_bias], ["logits"], name="head/fc", transB=1))
    onnx_graph = helper.make_graph(
        graph.nodes,
        "nasbench201",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, resolution, resolution])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, num_classes])],
        graph.initializers,
    )
    model = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="sniper_generator.nasbench201"
    )
    model.ir_version = IR_VERSION
    model.doc_string = arch
    helper.set_model_props(model, {"nasbench201_arch": arch})
    return model


# ---------------------------------------------------------------------------------------------
# The committed feature table
# ---------------------------------------------------------------------------------------------

FEATURE_TABLE = Path(__file__).resolve().parent / "data" / "nasbench201_features.csv.gz"
_TABLE_KEY_COLUMNS = ("arch_index", "arch")


def load_feature_table(path: "str | Path | None" = None) -> Tuple[List[str], np.ndarray, Tuple[str, ...]]:
    """``(archs, X, names)``: analyzer features of all 15,625 archs, one row of ``X`` per arch.

    Rows follow NAS-Bench-201's own ``arch_index`` (``archs[i]`` has index ``i``), the order of
    the HW-NAS-Bench latency table. ``names`` are the analyzer's feature names, the columns of X.
    Regenerate with ``benchmarks/bench_nasbench201_features.py``.
    """
    path = Path(path) if path else FEATURE_TABLE
    if not path.is_file():
        raise SniperError(
            f"{path}: no NAS-Bench-201 feature table; regenerate it with "
            "'python benchmarks/bench_nasbench201_features.py'"
        )
    archs, matrix, names = _read_feature_table(str(path.resolve()), path.stat().st_mtime_ns)
    return list(archs), matrix.copy(), names


@functools.lru_cache(maxsize=2)
def _read_feature_table(path: str, mtime_ns: int) -> Tuple[Tuple[str, ...], np.ndarray, Tuple[str, ...]]:
    with gzip.open(path, "rt", newline="") as handle:
        header = next(csv.reader([handle.readline()]))
        lines = handle.read().splitlines()
    if header[: len(_TABLE_KEY_COLUMNS)] != list(_TABLE_KEY_COLUMNS):
        raise SniperError(f"{path}: header must start with {', '.join(_TABLE_KEY_COLUMNS)}; regenerate the table")
    names = tuple(header[len(_TABLE_KEY_COLUMNS):])
    # arch strings hold no commas, so each line splits into index, arch and the numeric rest
    parts = [line.split(",", 2) for line in lines]
    archs = tuple(part[1] for part in parts)
    matrix = np.loadtxt([part[2] for part in parts], delimiter=",", dtype=np.float64, ndmin=2)
    return archs, matrix.reshape(len(parts), len(names)), names
