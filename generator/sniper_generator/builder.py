"""A small ONNX graph builder shared by the random families and the model zoo.

It tracks static shapes as it goes (so callers can size layers and estimate MACs without shape
inference) and makes weights that look trained: He-normal conv/linear weights, BatchNorm at unit
statistics, LayerNorm gamma 1 beta 0, biases 0. Random draws happen in build order from one
``numpy.random.Generator``, so the same seed gives a byte-identical model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BASE_OPSET = 17
GELU_OPSET = 20  # Gelu became a standard op in opset 20; nets without it stay at 17
# the oldest IR that allows the opset, so older runtimes on boards can read the files
IR_VERSIONS = {BASE_OPSET: 8, GELU_OPSET: 9}


@dataclass(frozen=True)
class Tensor:
    """A named value of the graph with its static shape."""

    name: str
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        return self.shape[1]


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _pool_out(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1, ceil: bool = False) -> int:
    span = size + pad_total - dilation * (kernel - 1) - 1
    steps = -(-span // stride) if ceil else span // stride
    out = steps + 1
    if ceil and (out - 1) * stride >= size + pad_total // 2:
        out -= 1  # the last window must start inside the input or left padding (PyTorch/ONNX rule)
    if span < 0 or out < 1:
        raise ValueError(f"a {kernel}-wide window (dilation {dilation}) does not fit a map of size {size}")
    return out


def _attribute(name: str, value) -> onnx.AttributeProto:
    """``helper.make_attribute`` for the int, float and int-list attributes used here, 5x faster."""
    if isinstance(value, bool | int):
        return onnx.AttributeProto(name=name, type=onnx.AttributeProto.INT, i=int(value))
    if isinstance(value, float):
        return onnx.AttributeProto(name=name, type=onnx.AttributeProto.FLOAT, f=value)
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return onnx.AttributeProto(name=name, type=onnx.AttributeProto.INTS, ints=value)
    return helper.make_attribute(name, value)


@dataclass
class GraphBuilder:
    """Appends nodes and initializers; ``weights=False`` gives a weightless skeleton."""

    name: str
    rng: np.random.Generator | None = None
    weights: bool = True
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[TensorProto] = field(default_factory=list)
    inputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    outputs: list[onnx.ValueInfoProto] = field(default_factory=list)
    dry: bool = False  # track shapes, MACs and parameters only (fast sizing while sampling)
    macs: int = 0
    params: int = 0  # learnable elements, by the rule of ``count_parameters``
    node_count: int = 0
    opset: int = BASE_OPSET
    _counts: dict[str, int] = field(default_factory=dict)

    # ---------------------------------------------------------------- naming and tensors
    def _unique(self, prefix: str) -> str:
        index = self._counts.get(prefix, 0)
        self._counts[prefix] = index + 1
        return f"{prefix}_{index}"

    def _emit(self, op: str, inputs: list[str], outputs: list[str], name: str, **attrs) -> None:
        self.node_count += 1
        if not self.dry:
            node = onnx.NodeProto(op_type=op, name=name, input=inputs, output=outputs)
            node.attribute.extend(_attribute(key, value) for key, value in sorted(attrs.items()))
            self.nodes.append(node)

    def _node(self, op: str, inputs: list[str], out_shape: tuple[int, ...], prefix: str | None = None,
              **attrs) -> Tensor:
        node_name = self._unique(prefix or op.lower())
        out = f"{node_name}.out"
        self._emit(op, inputs, [out], name=node_name, **attrs)
        return Tensor(out, tuple(int(d) for d in out_shape))

    def _float_init(self, name: str, shape: tuple[int, ...], kind: str, std: float = 0.0,
                    learnable: bool = True) -> str:
        """A float32 initializer: ``kind`` is 'normal' (std), 'zeros' or 'ones'."""
        if learnable:
            self.params += math.prod(shape)
        if self.dry:
            return name
        if not self.weights:
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT)
            tensor.dims.extend(shape)
        else:
            if kind == "normal":
                assert self.rng is not None, "a Generator is needed to draw weights"
                data = self.rng.standard_normal(shape, dtype=np.float32)
                data *= np.float32(std)
            elif kind == "ones":
                data = np.ones(shape, dtype=np.float32)
            else:
                data = np.zeros(shape, dtype=np.float32)
            tensor = numpy_helper.from_array(data, name)
        self.initializers.append(tensor)
        return name

    def constant(self, prefix: str, values, dtype=np.int64) -> str:
        """A small real constant (shapes, indices, scales): kept even in skeletons."""
        name = self._unique(prefix)
        if not self.dry:
            self.initializers.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    # ---------------------------------------------------------------- graph ends
    def input(self, name: str, shape: tuple[int, ...]) -> Tensor:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return Tensor(name, tuple(shape))

    def output(self, x: Tensor, name: str) -> None:
        """Renames ``x`` to ``name`` (no Identity node, so layer counts stay those of the network)."""
        for node in self.nodes:
            for slot, value in enumerate(node.output):
                if value == x.name:
                    node.output[slot] = name
            for slot, value in enumerate(node.input):
                if value == x.name:
                    node.input[slot] = name
        self.outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(x.shape)))

    def build(self, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            producer_name="sniper_generator",
            doc_string=doc,
        )
        model.ir_version = IR_VERSIONS[self.opset]
        return model

    # ---------------------------------------------------------------- CNN layers
    def conv(self, x: Tensor, out_channels: int, kernel: int | tuple[int, int] = 3, stride: int = 1,
             padding: int | tuple[int, int] | None = None, dilation: int = 1, groups: int = 1,
             bias: bool = False, prefix: str = "conv") -> Tensor:
        kh, kw = _pair(kernel)
        if padding is None:  # "same"-style padding for odd kernels, as in the reference networks
            padding = (dilation * (kh - 1) // 2, dilation * (kw - 1) // 2)
        ph, pw = _pair(padding)
        in_channels = x.channels
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"conv: channels {in_channels}->{out_channels} not divisible by groups={groups}")
        name = self._unique(prefix)
        fan_in = in_channels // groups * kh * kw
        weight = self._float_init(f"{name}.weight", (out_channels, in_channels // groups, kh, kw), "normal",
                                  math.sqrt(2.0 / fan_in))
        inputs = [x.name, weight]
        if bias:
            inputs.append(self._float_init(f"{name}.bias", (out_channels,), "zeros"))
        h = _pool_out(x.shape[2], kh, stride, 2 * ph, dilation)
        w = _pool_out(x.shape[3], kw, stride, 2 * pw, dilation)
        out = f"{name}.out"
        self._emit(
            "Conv", inputs, [out], name=name, kernel_shape=[kh, kw], strides=[stride, stride],
            pads=[ph, pw, ph, pw], dilations=[dilation, dilation], group=groups)
        self.macs += x.shape[0] * out_channels * h * w * fan_in
        return Tensor(out, (x.shape[0], out_channels, h, w))

    def batchnorm(self, x: Tensor, eps: float = 1e-5) -> Tensor:
        name = self._unique("bn")
        c = (x.channels,)
        inputs = [x.name,
                  self._float_init(f"{name}.weight", c, "ones"),
                  self._float_init(f"{name}.bias", c, "zeros"),
                  self._float_init(f"{name}.running_mean", c, "zeros", learnable=False),
                  self._float_init(f"{name}.running_var", c, "ones", learnable=False)]
        out = f"{name}.out"
        self._emit("BatchNormalization", inputs, [out], name=name, epsilon=eps)
        return Tensor(out, x.shape)

    def activation(self, x: Tensor, kind: str) -> Tensor:
        try:
            handler = _ACTIVATIONS[kind]
        except KeyError:
            raise ValueError(f"unknown activation {kind!r}; use one of {sorted(_ACTIVATIONS)}") from None
        return handler(self, x)

    def _relu(self, x: Tensor) -> Tensor:
        return self._node("Relu", [x.name], x.shape)

    def _relu6(self, x: Tensor) -> Tensor:
        low = self.constant("clip_min", 0.0, np.float32)
        high = self.constant("clip_max", 6.0, np.float32)
        return self._node("Clip", [x.name, low, high], x.shape)

    def _silu(self, x: Tensor) -> Tensor:
        gate = self._node("Sigmoid", [x.name], x.shape)
        return self._node("Mul", [x.name, gate.name], x.shape, prefix="silu_mul")

    def _gelu(self, x: Tensor) -> Tensor:
        self.opset = max(self.opset, GELU_OPSET)
        return self._node("Gelu", [x.name], x.shape)

    def maxpool(self, x: Tensor, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False) -> Tensor:
        return self._pool("MaxPool", x, kernel, stride, padding, ceil_mode)

    def avgpool(self, x: Tensor, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False,
                count_include_pad: bool = True) -> Tensor:
        # PyTorch's avg_pool2d counts padding by default; torchvision relies on it
        return self._pool("AveragePool", x, kernel, stride, padding, ceil_mode,
                          count_include_pad=int(count_include_pad))

    def _pool(self, op: str, x: Tensor, kernel: int, stride: int, padding: int, ceil_mode: bool, **extra) -> Tensor:
        h = _pool_out(x.shape[2], kernel, stride, 2 * padding, ceil=ceil_mode)
        w = _pool_out(x.shape[3], kernel, stride, 2 * padding, ceil=ceil_mode)
        return self._node(op, [x.name], (x.shape[0], x.channels, h, w), kernel_shape=[kernel, kernel],
                          strides=[stride, stride], pads=[padding] * 4, ceil_mode=int(ceil_mode), **extra)

    def global_pool(self, x: Tensor, kind: str = "avg") -> Tensor:
        op = {"avg": "GlobalAveragePool", "max": "GlobalMaxPool"}[kind]
        return self._node(op, [x.name], (x.shape[0], x.channels, 1, 1))

    def flatten(self, x: Tensor) -> Tensor:
        return self._node("Flatten", [x.name], (x.shape[0], math.prod(x.shape[1:])), axis=1)

    def gemm(self, x: Tensor, out_features: int, bias: bool = True, prefix: str = "fc") -> Tensor:
        rows, in_features = x.shape
        name = self._unique(prefix)
        inputs = [x.name, self._float_init(f"{name}.weight", (out_features, in_features), "normal",
                                           math.sqrt(2.0 / in_features))]
        if bias:
            inputs.append(self._float_init(f"{name}.bias", (out_features,), "zeros"))
        out = f"{name}.out"
        self._emit("Gemm", inputs, [out], name=name, transB=1)
        self.macs += rows * in_features * out_features
        return Tensor(out, (rows, out_features))

    def concat(self, xs: list[Tensor], axis: int = 1) -> Tensor:
        shape = list(xs[0].shape)
        shape[axis] = sum(t.shape[axis] for t in xs)
        return self._node("Concat", [t.name for t in xs], tuple(shape), axis=axis)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return self._node("Add", [a.name, b.name], tuple(np.broadcast_shapes(a.shape, b.shape)))

    # ---------------------------------------------------------------- transformer layers
    def parameter(self, prefix: str, shape: tuple[int, ...], std: float = 0.02) -> Tensor:
        """A learnable tensor used as a value (class token, position embedding)."""
        name = self._unique(prefix)
        return Tensor(self._float_init(name, shape, "normal", std), shape)

    def layernorm(self, x: Tensor, eps: float = 1e-6) -> Tensor:
        name = self._unique("ln")
        d = (x.shape[-1],)
        inputs = [x.name, self._float_init(f"{name}.weight", d, "ones"), self._float_init(f"{name}.bias", d, "zeros")]
        out = f"{name}.out"
        self._emit("LayerNormalization", inputs, [out], name=name, axis=-1, epsilon=eps)
        return Tensor(out, x.shape)

    def reshape(self, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        if math.prod(shape) != math.prod(x.shape):
            raise ValueError(f"reshape {x.shape} -> {shape} changes the element count")
        return self._node("Reshape", [x.name, self.constant("shape", list(shape))], shape)

    def transpose(self, x: Tensor, perm: tuple[int, ...]) -> Tensor:
        return self._node("Transpose", [x.name], tuple(x.shape[p] for p in perm), perm=list(perm))

    def matmul(self, a: Tensor, b: Tensor) -> Tensor:
        out_shape = tuple(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])) + (a.shape[-2], b.shape[-1])
        self.macs += math.prod(out_shape) * a.shape[-1]
        return self._node("MatMul", [a.name, b.name], out_shape)

    def scale(self, x: Tensor, factor: float) -> Tensor:
        return self._node("Mul", [x.name, self.constant("scale", factor, np.float32)], x.shape)

    def softmax(self, x: Tensor) -> Tensor:
        return self._node("Softmax", [x.name], x.shape, axis=-1)

    def expand(self, x: Tensor, shape: tuple[int, ...]) -> Tensor:
        return self._node("Expand", [x.name, self.constant("expand_shape", list(shape))], shape)

    def gather(self, x: Tensor, index: int, axis: int) -> Tensor:
        shape = x.shape[:axis] + x.shape[axis + 1:]
        return self._node("Gather", [x.name, self.constant("index", index)], shape, axis=axis)


_ACTIVATIONS = {
    "relu": GraphBuilder._relu,
    "clip": GraphBuilder._relu6,
    "relu6": GraphBuilder._relu6,
    "silu": GraphBuilder._silu,
    "gelu": GraphBuilder._gelu,
}
ACTIVATIONS = ("relu", "clip", "silu", "gelu")


def count_parameters(model: onnx.ModelProto) -> int:
    """Learnable parameters, counted like ``sum(p.numel() for p in torch_model.parameters())``.

    The rule: every floating-point initializer of rank >= 1, except BatchNormalization's running mean
    and variance (inputs 3 and 4: buffers in PyTorch, not parameters). Integer initializers (shapes,
    indices) and rank-0 floats (Clip bounds, attention scale) are constants, not parameters. Works on
    weightless skeletons too, since it reads dims only.
    """
    running_stats = {name for node in model.graph.node if node.op_type == "BatchNormalization"
                     for name in node.input[3:5]}
    float_types = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE}
    total = 0
    for tensor in model.graph.initializer:
        if tensor.data_type in float_types and len(tensor.dims) > 0 and tensor.name not in running_stats:
            total += math.prod(tensor.dims)
    return total
