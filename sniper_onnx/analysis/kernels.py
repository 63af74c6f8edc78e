"""Kernel table: one numeric row per layer node, the input of the predictors' kernel-sum path.

Whole-graph sums (Table 1) cannot say that a 7x7 convolution with 4 channels runs at a fraction of
the speed per MAC of one with 64, or that a 3x3 convolution on a 2x2 map with 628 channels is bound
by reading its weights. A row describes one node's kernel: its kind, its work and bytes, and the
GEMM it lowers to. The predictor learns a time per row and sums them (docs/predictor.md).

Rows are built from :class:`NodeCost` objects or from the node rows of ``analyze --json --nodes``,
so a scheduler that only has the JSON gets the same table. Names never change meaning; new columns
are appended (and then a predictor trained on the old layout refuses the new one by name).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, List, Mapping, Optional

import numpy as np

from sniper_onnx.analysis.runtime_bodies import runtime_nodes
from sniper_onnx.analysis.runtime_fusions import INNER_AXIS_SOFTMAX_TAG, SKIP_LAYER_NORM_TAG

KERNEL_GROUPS = (
    "conv", "depthwise_conv", "grouped_conv", "gemm", "matmul", "batch_norm", "layer_norm", "cheap_activation",
    "transcendental_activation", "binary_elementwise", "pool", "global_pool", "concat", "memory", "other",
)
_GROUP_OF_OP = {
    "Gemm": "gemm", "MatMul": "matmul", "BatchNormalization": "batch_norm", "LayerNormalization": "layer_norm",
    "Concat": "concat", "Transpose": "memory", "Gather": "memory",
    # Sqrt: one instruction per element, like a clamp (GroupNormalization's body runs one)
    **dict.fromkeys(("Relu", "Clip", "LeakyRelu", "PRelu", "Sqrt"), "cheap_activation"),
    **dict.fromkeys(("Gelu", "Sigmoid", "Softmax", "Tanh", "HardSwish", "HardSigmoid", "Erf", "Exp"),
                    "transcendental_activation"),
    **dict.fromkeys(("Add", "Mul", "Sub", "Div", "Sum"), "binary_elementwise"),
    **dict.fromkeys(("MaxPool", "AveragePool"), "pool"),
    **dict.fromkeys(("GlobalAveragePool", "GlobalMaxPool"), "global_pool"),
}
# onnxruntime's fused and blocked-layout kernels run the same arithmetic as the standard op they
# replace; their fused activation or residual add is in their MACs.
_STANDARD_OP_OF = {
    "com.microsoft::FusedConv": "Conv", "com.microsoft::FusedGemm": "Gemm", "com.microsoft::FusedMatMul": "MatMul",
    "com.microsoft::Gelu": "Gelu", "com.microsoft::FastGelu": "Gelu", "com.microsoft::BiasGelu": "Gelu",
    "com.microsoft::QuickGelu": "Gelu", "com.microsoft::SkipLayerNormalization": "LayerNormalization",
    **{f"com.microsoft.nchwc::{op}": op for op in ("Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")},
    "com.microsoft.nchwc::ReorderInput": "Transpose", "com.microsoft.nchwc::ReorderOutput": "Transpose",
    # quantized kernels: the float op's loop nest on narrower elements (its int8 weights are in
    # log2_param_bytes)
    "ConvInteger": "Conv", "QLinearConv": "Conv", "MatMulInteger": "MatMul", "QLinearMatMul": "MatMul",
    "com.microsoft::QGemm": "Gemm", "com.microsoft::DynamicQuantizeMatMul": "MatMul",
    "com.microsoft::MatMulIntegerToFloat": "MatMul", "com.microsoft::MatMulNBits": "MatMul",
    "com.microsoft::QLinearAdd": "Add", "com.microsoft::QLinearMul": "Mul",
    "com.microsoft::QLinearLeakyRelu": "LeakyRelu", "com.microsoft::QLinearSigmoid": "Sigmoid",
    "com.microsoft::QLinearSoftmax": "Softmax", "com.microsoft::QLinearAveragePool": "AveragePool",
    "com.microsoft::QLinearGlobalAveragePool": "GlobalAveragePool", "com.microsoft::QLinearConcat": "Concat",
}
# where the weight (B) of a quantized op sits: its operands are interleaved with scales and zero points
_WEIGHT_SLOT = {"QLinearConv": 3, "QLinearMatMul": 3, "com.microsoft::QGemm": 3}
# log2(1 + x) of each size, so a row stays O(10) whatever the network's scale.
KERNEL_SIZE_COLUMNS = (
    "log2_macs", "log2_output_elements", "log2_input_elements", "log2_param_bytes", "log2_kernel_h",
    "log2_kernel_w", "log2_in_channels", "log2_out_channels", "log2_output_pixels", "log2_stride",
    "in_channels_multiple_of_8", "out_channels_multiple_of_8", "log2_gemm_m", "log2_gemm_n", "log2_gemm_k",
    "log2_macs_per_byte",
)
# appended after the first layout (31 columns): a predictor trained on a shorter layout reads the
# first columns of a table and never sees these (runtime.Predictor.in_kernel_layout)
KERNEL_RUNTIME_COLUMNS = ("is_skip_layer_norm",)
KERNEL_FEATURE_NAMES = tuple(f"is_{group}" for group in KERNEL_GROUPS) + KERNEL_SIZE_COLUMNS + KERNEL_RUNTIME_COLUMNS


def _get(node: Any, name: str) -> Any:
    return node[name] if isinstance(node, Mapping) else getattr(node, name)


def _elements(shapes: Iterable) -> int:
    total = 0
    for shape in shapes or ():
        if shape is None or any(not isinstance(d, int) or d < 0 for d in shape):
            continue  # unknown dims count nothing rather than guess
        total += math.prod(shape)
    return total


def _log2(value: float) -> float:
    return math.log2(1.0 + max(float(value), 0.0))


def _known(shape: Any, rank: int) -> bool:
    return isinstance(shape, (list, tuple)) and len(shape) >= rank and all(isinstance(d, int) for d in shape)


def _data_and_weight(node: Any) -> tuple[Any, Any]:
    """The shapes of a node's data input and weight (slot 1, or 3 for the QLinear ops)."""
    shapes = _get(node, "input_shapes") or []
    slot = _WEIGHT_SLOT.get(_get(node, "op_type"), 1)
    return (shapes[0] if shapes else None), (shapes[slot] if len(shapes) > slot else None)


_POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")


def runtime_op_name(node: Any) -> str:
    """A layer's op type as `predict` compares it with the ones training saw, qualified where
    onnxruntime runs another kernel for it than for the same op type in the training networks: a
    convolution or pool over 1 or 3 spatial dims ("Conv (3-D)": not the 2-D one's blocked NCHWc
    kernels; 3-D convs were predicted at 0.38-0.82 of their time) and a Softmax over another axis
    than the last ("Softmax (inner axis)", ``softmax_inner_axis``)."""
    op_type = _get(node, "op_type")
    tags = node.get("tags") if isinstance(node, Mapping) else getattr(node, "tags", ())
    if INNER_AXIS_SOFTMAX_TAG in (tags or ()):
        return f"{op_type} (inner axis)"
    standard = _STANDARD_OP_OF.get(op_type, op_type)
    if standard == "Conv" or standard in _POOL_OPS:  # pools: the blocked kernels are 2-D only too
        data, weight = _data_and_weight(node)
        shape = weight if standard == "Conv" else data
        if isinstance(shape, (list, tuple)) and len(shape) >= 3 and len(shape) != 4:
            return f"{op_type} ({len(shape) - 2}-D)"
    return op_type


def layer_op_counts(nodes: Iterable[Any]) -> dict:
    """Layers per op type (``runtime_op_name``), of NodeCost objects or ``analyze --json --nodes``
    rows (sorted by op)."""
    counts: dict = {}
    for node in nodes:
        if _get(node, "is_layer"):
            name = runtime_op_name(node)
            counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


# integer kernels: the float op's loop nest for the rows, but other code at run time (a dynamically
# quantized net's ConvInteger ran 7x its float Conv here), which no fp32 training net taught
_INTEGER_KERNELS = frozenset(op for op in _STANDARD_OP_OF if "Integer" in op or "QLinear" in op) | {
    "com.microsoft::QGemm", "com.microsoft::DynamicQuantizeMatMul", "com.microsoft::MatMulNBits"}


def op_kind(op_type: str) -> str:
    """The kernel group of an op type, where a node's shapes do not decide it (every Conv is "conv",
    every MatMul "matmul"): whether training taught the kernel sum anything about such a node. An
    integer kernel (ConvInteger, QLinearConv, ...) is of the "other" kind: only itself in training
    teaches it."""
    if op_type in _INTEGER_KERNELS:
        return "other"
    op_type = _STANDARD_OP_OF.get(op_type, op_type)
    return "conv" if op_type == "Conv" else _GROUP_OF_OP.get(op_type, "other")


def kernel_group(node: Any) -> str:
    op_type = _get(node, "op_type")
    op_type = _STANDARD_OP_OF.get(op_type, op_type)
    if op_type == "Conv":
        data, weight = _data_and_weight(node)
        if _known(data, 2) and _known(weight, 2) and weight[1] > 0:
            groups = data[1] // weight[1]
            if groups > 1:
                return "depthwise_conv" if weight[1] == 1 else "grouped_conv"
        return "conv"
    if op_type == "MatMul" and _get(node, "category") == "fc":
        # a MatMul by a weight (torch writes Linear on [B, T, D] so) runs the GEMM a Gemm runs, and
        # the training nets write every linear layer as Gemm: filed as matmul, its rows were read
        # as attention's activation-by-activation products
        return "gemm"
    return _GROUP_OF_OP.get(op_type, "other")


def _gemm_geometry(node: Any, group: str) -> tuple[float, ...]:
    """kernel h, w, in/out channels, output pixels, stride and the lowered GEMM's M, N, K."""
    inputs, outputs = _get(node, "input_shapes"), _get(node, "output_shapes")
    x, w = _data_and_weight(node)
    if group.endswith("conv") and _known(x, 3) and _known(w, 3) and outputs and _known(outputs[0], 3):
        # 1-D and 3-D convs lower to the GEMM over all their spatial dims (kernel_h holds the
        # kernel dims before the last: 1 for 1-D, depth x height for 3-D)
        y, kernel = outputs[0], w[2:]
        pixels = math.prod(y[2:])
        stride = x[2] / max(y[2], 1)
        return (math.prod(kernel[:-1]), kernel[-1], x[1], w[0], pixels, stride, w[0], pixels,
                w[1] * math.prod(kernel))
    if group in ("gemm", "matmul") and len(inputs) > 1 and _known(inputs[0], 1) and outputs and _known(outputs[0], 1):
        y = outputs[0]
        return 0, 0, 0, 0, 0, 0, math.prod(y[:-1]), y[-1], inputs[0][-1]
    return (0,) * 9


def _is_lookup(node: Any, group: str) -> bool:
    """A Gather from a weight (an embedding): it reads only the rows it returns, not the table."""
    return group == "memory" and float(_get(node, "param_bytes") or 0) > 0


def _lookup_sizes(node: Any, out_elements: int) -> tuple[int, float]:
    """(input elements, weight bytes) a lookup reads: the indices and the rows it returns. Counted
    whole, a 30522 x 256 word embedding (31 MB) made a 128-row lookup "move 31 MB", and the kernel
    sum put 2-5 ms on a copy of 128 KB."""
    param_bytes, params = float(_get(node, "param_bytes")), float(_get(node, "params") or 0)
    element = param_bytes / params if params else 4.0
    indices = _elements((_get(node, "input_shapes") or [])[1:])
    return indices + out_elements, min(param_bytes, element * out_elements)


def kernel_row(node: Any) -> List[float]:
    group = kernel_group(node)
    kh, kw, cin, cout, pixels, stride, m, n, k = _gemm_geometry(node, group)
    macs = float(_get(node, "macs") or 0)
    out_elements = _elements(_get(node, "output_shapes"))
    in_elements = _elements(_get(node, "input_shapes"))
    param_bytes = float(_get(node, "param_bytes") or 0)
    if _is_lookup(node, group):
        in_elements, param_bytes = _lookup_sizes(node, out_elements)
    bytes_moved = param_bytes + 4.0 * (out_elements + in_elements)
    onehot = [1.0 if group == g else 0.0 for g in KERNEL_GROUPS]
    sizes = [
        _log2(macs), _log2(out_elements), _log2(in_elements), _log2(param_bytes), _log2(kh), _log2(kw),
        _log2(cin), _log2(cout), _log2(pixels), _log2(stride),
        float(cin > 0 and cin % 8 == 0), float(cout > 0 and cout % 8 == 0),
        _log2(m), _log2(n), _log2(k), _log2(macs) - _log2(bytes_moved),
    ]
    tags = node.get("tags") if isinstance(node, Mapping) else getattr(node, "tags", ())
    fused = [float(SKIP_LAYER_NORM_TAG in (tags or ()))]
    return onehot + sizes + fused


def holds_control_flow(nodes: Iterable[Any]) -> bool:
    """Whether a node runs subgraphs (If, Loop, Scan). A kernel table has no row for them: their
    bodies run a number of times, or a branch, that a sum of per-node times cannot know, so a
    network that holds one is no kernel-sum network (``kernel_table_for_prediction``)."""
    return any(_get(node, "subgraph") for node in nodes)


def kernel_table_for_prediction(nodes: Iterable[Any]) -> Optional[np.ndarray]:
    """The kernel table, or None where control flow leaves the sum short (then the PCN answers)."""
    nodes = list(nodes)
    return None if holds_control_flow(nodes) else kernel_table(nodes)


def empty_kernel_table() -> np.ndarray:
    """A table of no row: a network with no layer the kernel sum times. ``adapt`` and ``feedback`` set
    such a sample aside from the node-time fits instead of giving up the kernel sum for all."""
    return np.zeros((0, len(KERNEL_FEATURE_NAMES)), np.float32)


def kernel_table(nodes: Iterable[Any]) -> np.ndarray:
    """[rows, len(KERNEL_FEATURE_NAMES)] float32: one row per kernel onnxruntime runs for a layer node,
    one per node except for the ops it runs as their function body (runtime_bodies.py); plumbing and
    constants cost nothing at run time and get no row."""
    rows = [kernel_row(kernel) for node in nodes if _get(node, "is_layer") and not _get(node, "subgraph")
            for kernel in runtime_nodes(node)]
    return np.array(rows, dtype=np.float32).reshape(len(rows), len(KERNEL_FEATURE_NAMES))
