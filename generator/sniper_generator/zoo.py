"""Reference networks written with the shared builder, in torchvision's layouts.

torchvision cannot be imported here and nothing is downloaded, so each network is re-written layer
by layer; ``count_parameters`` of every export at its reference resolution equals torchvision's
``sum(p.numel() for p in model.parameters())`` (tested). Weights are random (He-normal, BN at unit
statistics): the zoo is for timing and structure, not accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from dataclasses import dataclass

import numpy as np
import onnx

from sniper_generator.builder import GraphBuilder, Tensor, count_parameters
from sniper_generator.spec import check_seed
from sniper_onnx.errors import SniperError

NUM_CLASSES = 1000
MAX_RESOLUTION = 2048


@dataclass(frozen=True)
class ResolutionRule:
    """Input sides a network refuses inside its range, and why: checked before building, so the
    first error states the whole constraint (until 2026-11-29 VGG's said 224..2048, then refused 300)."""

    accepts: Callable[[int], bool]
    text: str  # what is accepted and why, a clause: "resolution is a multiple of the 16-pixel patch"


@dataclass(frozen=True)
class ZooEntry:
    """One reference network: how to build it and what torchvision says about it."""

    name: str
    family: str
    build: Callable[[GraphBuilder, Tensor, dict], Tensor]
    reference_params: int
    default_resolution: int
    min_resolution: int
    description: str
    options: tuple[tuple[str, object], ...] = ()
    off_graph_params: int = 0  # counted by torchvision but not in the default inference export
    rule: ResolutionRule | None = None  # a constraint beyond min_resolution..MAX_RESOLUTION

    @property
    def export_params(self) -> int:
        """Parameters of the default export (``count_parameters``)."""
        return self.reference_params - self.off_graph_params

    def accepts(self, resolution: int) -> bool:
        return self.min_resolution <= resolution <= MAX_RESOLUTION and (self.rule is None or self.rule.accepts(resolution))

    def resolutions(self) -> str:
        """The accepted input sides, in words: the real range (the rule may trim its ends), then the rule."""
        low, high = self.nearest(self.min_resolution, +1), self.nearest(MAX_RESOLUTION, -1)
        return f"{low}..{high}" + (f" where {self.rule.text}" if self.rule else "")

    def nearest(self, resolution: int, step: int) -> int | None:
        """The first accepted resolution from ``resolution`` in direction ``step`` (None: none that way)."""
        candidate = min(max(resolution, self.min_resolution), MAX_RESOLUTION)
        while self.min_resolution <= candidate <= MAX_RESOLUTION:
            if self.accepts(candidate):
                return candidate
            candidate += step
        return None


# ------------------------------------------------------------------------------------ ResNet
def _conv_bn(b: GraphBuilder, x: Tensor, out: int, kernel, stride=1, padding=None, relu=True,
             eps: float = 1e-5) -> Tensor:
    x = b.batchnorm(b.conv(x, out, kernel, stride, padding), eps)
    return b.activation(x, "relu") if relu else x


def _bottleneck(b: GraphBuilder, x: Tensor, width: int, stride: int) -> Tensor:
    out_channels = width * 4
    y = _conv_bn(b, x, width, 1)
    y = _conv_bn(b, y, width, 3, stride)  # stride on the 3x3 (ResNet v1.5, as torchvision)
    y = _conv_bn(b, y, out_channels, 1, relu=False)
    shortcut = x
    if stride != 1 or x.channels != out_channels:
        shortcut = _conv_bn(b, x, out_channels, 1, stride, relu=False)
    return b.activation(b.add(y, shortcut), "relu")


def _resnet(layers: tuple[int, ...]) -> Callable:
    def build(b: GraphBuilder, x: Tensor, _: dict) -> Tensor:
        x = _conv_bn(b, x, 64, 7, 2, 3)
        x = b.maxpool(x, 3, 2, 1)
        for stage, blocks in enumerate(layers):
            for index in range(blocks):
                x = _bottleneck(b, x, 64 * 2 ** stage, 2 if stage > 0 and index == 0 else 1)
        x = b.flatten(b.global_pool(x))
        return b.gemm(x, NUM_CLASSES)
    return build


# ------------------------------------------------------------------------------------ DenseNet
def _bn_relu_conv(b: GraphBuilder, x: Tensor, out: int, kernel: int) -> Tensor:
    return b.conv(b.activation(b.batchnorm(x), "relu"), out, kernel)


def _densenet(init: int, growth: int, blocks: tuple[int, ...]) -> Callable:
    def build(b: GraphBuilder, x: Tensor, _: dict) -> Tensor:
        x = _conv_bn(b, x, init, 7, 2, 3)
        x = b.maxpool(x, 3, 2, 1)
        for index, layers in enumerate(blocks):
            # torchvision's layout: every dense layer reads torch.cat(all earlier features).
            features = [x]
            for _layer in range(layers):
                joined = b.concat(features) if len(features) > 1 else x
                features.append(_bn_relu_conv(b, _bn_relu_conv(b, joined, 4 * growth, 1), growth, 3))
            x = b.concat(features)
            if index != len(blocks) - 1:
                x = b.avgpool(_bn_relu_conv(b, x, x.channels // 2, 1), 2, 2)
        x = b.activation(b.batchnorm(x), "relu")
        return b.gemm(b.flatten(b.global_pool(x)), NUM_CLASSES)
    return build


# ------------------------------------------------------------------------------------ VGG
_VGG_CFG = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


# Five 2x2 max pools floor the side to resolution // 32, and torchvision's AdaptiveAvgPool2d((7, 7))
# is written as one AveragePool, which needs that side to be a multiple of 7.
_VGG_RULE = ResolutionRule(
    lambda resolution: (resolution // 32) % 7 == 0,
    "resolution // 32 is a multiple of 7 (224..255, 448..479, 672..703, ..., 2016..2047): the last map "
    "must be 7k x 7k for AdaptiveAvgPool2d((7, 7)) as one AveragePool")


def _vgg(depth: int) -> Callable:
    def build(b: GraphBuilder, x: Tensor, _: dict) -> Tensor:
        for item in _VGG_CFG[depth]:
            if item == "M":
                x = b.maxpool(x, 2, 2)
            else:
                x = b.activation(b.conv(x, item, 3, bias=True), "relu")
        side = x.shape[2]
        if side % 7:  # _VGG_RULE refuses these before building
            raise SniperError(f"vgg{depth}: this resolution leaves a {side}x{side} map; it takes those where {_VGG_RULE.text}")
        if side != 7:
            x = b.avgpool(x, side // 7, side // 7)
        x = b.flatten(x)
        x = b.activation(b.gemm(x, 4096), "relu")
        x = b.activation(b.gemm(x, 4096), "relu")
        return b.gemm(x, NUM_CLASSES)
    return build


# ------------------------------------------------------------------------------------ Inception-v3
def _basic(b: GraphBuilder, x: Tensor, out: int, kernel, stride: int = 1, padding=0) -> Tensor:
    return _conv_bn(b, x, out, kernel, stride, padding, eps=0.001)


def _inception_a(b: GraphBuilder, x: Tensor, pool_features: int) -> Tensor:
    b1 = _basic(b, x, 64, 1)
    b5 = _basic(b, _basic(b, x, 48, 1), 64, 5, padding=2)
    b3 = _basic(b, _basic(b, _basic(b, x, 64, 1), 96, 3, padding=1), 96, 3, padding=1)
    bp = _basic(b, b.avgpool(x, 3, 1, 1), pool_features, 1)
    return b.concat([b1, b5, b3, bp])


def _inception_b(b: GraphBuilder, x: Tensor) -> Tensor:
    b3 = _basic(b, x, 384, 3, 2)
    bd = _basic(b, _basic(b, _basic(b, x, 64, 1), 96, 3, padding=1), 96, 3, 2)
    return b.concat([b3, bd, b.maxpool(x, 3, 2)])


def _inception_c(b: GraphBuilder, x: Tensor, c7: int) -> Tensor:
    b1 = _basic(b, x, 192, 1)
    b7 = _basic(b, x, c7, 1)
    b7 = _basic(b, b7, c7, (1, 7), padding=(0, 3))
    b7 = _basic(b, b7, 192, (7, 1), padding=(3, 0))
    bd = _basic(b, x, c7, 1)
    for out, kernel, pad in ((c7, (7, 1), (3, 0)), (c7, (1, 7), (0, 3)), (c7, (7, 1), (3, 0)), (192, (1, 7), (0, 3))):
        bd = _basic(b, bd, out, kernel, padding=pad)
    bp = _basic(b, b.avgpool(x, 3, 1, 1), 192, 1)
    return b.concat([b1, b7, bd, bp])


def _inception_d(b: GraphBuilder, x: Tensor) -> Tensor:
    b3 = _basic(b, _basic(b, x, 192, 1), 320, 3, 2)
    b7 = _basic(b, x, 192, 1)
    b7 = _basic(b, b7, 192, (1, 7), padding=(0, 3))
    b7 = _basic(b, b7, 192, (7, 1), padding=(3, 0))
    b7 = _basic(b, b7, 192, 3, 2)
    return b.concat([b3, b7, b.maxpool(x, 3, 2)])


def _split_1x3_3x1(b: GraphBuilder, x: Tensor) -> Tensor:
    return b.concat([_basic(b, x, 384, (1, 3), padding=(0, 1)), _basic(b, x, 384, (3, 1), padding=(1, 0))])


def _inception_e(b: GraphBuilder, x: Tensor) -> Tensor:
    b1 = _basic(b, x, 320, 1)
    b3 = _split_1x3_3x1(b, _basic(b, x, 384, 1))
    bd = _split_1x3_3x1(b, _basic(b, _basic(b, x, 448, 1), 384, 3, padding=1))
    bp = _basic(b, b.avgpool(x, 3, 1, 1), 192, 1)
    return b.concat([b1, b3, bd, bp])


def _inception_aux(b: GraphBuilder, x: Tensor) -> Tensor:
    y = _basic(b, b.avgpool(x, 5, 3), 128, 1)
    y = _basic(b, y, 768, 5)
    return b.gemm(b.flatten(b.global_pool(y)), NUM_CLASSES)


def _inception_v3(b: GraphBuilder, x: Tensor, options: dict) -> Tensor:
    x = _basic(b, x, 32, 3, 2)
    x = _basic(b, x, 32, 3)
    x = _basic(b, x, 64, 3, padding=1)
    x = b.maxpool(x, 3, 2)
    x = _basic(b, x, 80, 1)
    x = _basic(b, x, 192, 3)
    x = b.maxpool(x, 3, 2)
    for pool_features in (32, 64, 64):
        x = _inception_a(b, x, pool_features)
    x = _inception_b(b, x)
    for c7 in (128, 160, 160, 192):
        x = _inception_c(b, x, c7)
    if options.get("aux_head"):
        if (x.shape[2] - 5) // 3 + 1 < 5:
            raise SniperError("inception_v3: the auxiliary head needs a 17x17 Mixed_6e map (resolution 299 or more) "
                              "for its 5x5 conv; use --resolution 299 or drop --aux-head")
        b.output(_inception_aux(b, x), "aux_logits")
    x = _inception_d(b, x)
    x = _inception_e(b, x)
    x = _inception_e(b, x)
    return b.gemm(b.flatten(b.global_pool(x)), NUM_CLASSES)


# ------------------------------------------------------------------------------------ MobileNetV2
_MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                 (6, 320, 1, 1))


def _conv_bn_relu6(b: GraphBuilder, x: Tensor, out: int, kernel: int, stride: int = 1, groups: int = 1) -> Tensor:
    return b.activation(b.batchnorm(b.conv(x, out, kernel, stride, groups=groups)), "clip")


def _mobilenet_v2(b: GraphBuilder, x: Tensor, _: dict) -> Tensor:
    x = _conv_bn_relu6(b, x, 32, 3, 2)
    for expand, channels, repeats, first_stride in _MOBILENET_V2:
        for index in range(repeats):
            stride = first_stride if index == 0 else 1
            hidden = x.channels * expand
            y = _conv_bn_relu6(b, x, hidden, 1) if expand != 1 else x
            y = _conv_bn_relu6(b, y, hidden, 3, stride, groups=hidden)
            y = b.batchnorm(b.conv(y, channels, 1))
            x = b.add(x, y) if stride == 1 and x.channels == channels else y
    x = _conv_bn_relu6(b, x, 1280, 1)
    return b.gemm(b.flatten(b.global_pool(x)), NUM_CLASSES)


# ------------------------------------------------------------------------------------ SqueezeNet 1.1
def _fire(b: GraphBuilder, x: Tensor, squeeze: int, expand: int) -> Tensor:
    s = b.activation(b.conv(x, squeeze, 1, bias=True), "relu")
    e1 = b.activation(b.conv(s, expand, 1, bias=True), "relu")
    e3 = b.activation(b.conv(s, expand, 3, bias=True), "relu")
    return b.concat([e1, e3])


def _squeezenet_1_1(b: GraphBuilder, x: Tensor, _: dict) -> Tensor:
    x = b.activation(b.conv(x, 64, 3, 2, padding=0, bias=True), "relu")
    for fires in (((16, 64), (16, 64)), ((32, 128), (32, 128)), ((48, 192), (48, 192), (64, 256), (64, 256))):
        x = b.maxpool(x, 3, 2, ceil_mode=True)
        for squeeze, expand in fires:
            x = _fire(b, x, squeeze, expand)
    x = b.activation(b.conv(x, NUM_CLASSES, 1, bias=True), "relu")
    return b.flatten(b.global_pool(x))


# ------------------------------------------------------------------------------------ ViT
def vit_encoder_block(b: GraphBuilder, x: Tensor, batch: int, tokens: int, heads: int, mlp_dim: int,
                      activation: str = "gelu", eps: float = 1e-6) -> Tensor:
    """Pre-norm encoder block on a (batch*tokens, dim) token matrix; shared with the random family."""
    dim = x.shape[1]
    head_dim = dim // heads
    y = b.layernorm(x, eps)
    q, k, v = (b.gemm(y, dim, prefix=name) for name in ("q_proj", "k_proj", "v_proj"))

    def split_heads(t: Tensor, perm: tuple[int, ...]) -> Tensor:
        return b.transpose(b.reshape(t, (batch, tokens, heads, head_dim)), perm)

    scores = b.matmul(split_heads(q, (0, 2, 1, 3)), split_heads(k, (0, 2, 3, 1)))
    attention = b.softmax(b.scale(scores, 1.0 / float(np.sqrt(head_dim))))
    context = b.matmul(attention, split_heads(v, (0, 2, 1, 3)))
    context = b.reshape(b.transpose(context, (0, 2, 1, 3)), (batch * tokens, dim))
    x = b.add(x, b.gemm(context, dim, prefix="out_proj"))
    y = b.gemm(b.activation(b.gemm(b.layernorm(x, eps), mlp_dim, prefix="mlp_fc1"), activation), dim,
               prefix="mlp_fc2")
    return b.add(x, y)


def patch_embedding(b: GraphBuilder, x: Tensor, dim: int, patch: int, class_token: bool = True) -> tuple[Tensor, int]:
    """Conv patchify, class token, learned positions; returns the (batch*tokens, dim) matrix."""
    batch = x.shape[0]
    x = b.conv(x, dim, patch, patch, padding=0, bias=True, prefix="conv_proj")
    patches = x.shape[2] * x.shape[3]
    x = b.transpose(b.reshape(x, (batch, dim, patches)), (0, 2, 1))
    tokens = patches
    if class_token:
        token = b.parameter("class_token", (1, 1, dim))
        if batch != 1:
            token = b.expand(token, (batch, 1, dim))
        x = b.concat([token, x], axis=1)
        tokens += 1
    x = b.add(x, b.parameter("pos_embedding", (1, tokens, dim)))
    return b.reshape(x, (batch * tokens, dim)), tokens


_VIT_RULE = ResolutionRule(lambda resolution: resolution % 16 == 0, "resolution is a multiple of the 16-pixel patch")


def _vit_b16(b: GraphBuilder, x: Tensor, _: dict) -> Tensor:
    batch = x.shape[0]
    if x.shape[2] % 16:  # _VIT_RULE refuses these before building
        raise SniperError(f"vit_b_16: resolution {x.shape[2]} is refused; it takes those where {_VIT_RULE.text}")
    x, tokens = patch_embedding(b, x, 768, 16)
    for _layer in range(12):
        x = vit_encoder_block(b, x, batch, tokens, 12, 3072)
    x = b.reshape(b.layernorm(x), (batch, tokens, 768))
    return b.gemm(b.gather(x, 0, axis=1), NUM_CLASSES, prefix="head")


# ------------------------------------------------------------------------------------ registry
ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in (
    ZooEntry("resnet50", "resnet", _resnet((3, 4, 6, 3)), 25_557_032, 224, 32, "ResNet-50 v1.5 (bottleneck)"),
    ZooEntry("resnet101", "resnet", _resnet((3, 4, 23, 3)), 44_549_160, 224, 32, "ResNet-101 v1.5"),
    ZooEntry("resnet152", "resnet", _resnet((3, 8, 36, 3)), 60_192_808, 224, 32, "ResNet-152 v1.5"),
    ZooEntry("densenet121", "densenet", _densenet(64, 32, (6, 12, 24, 16)), 7_978_856, 224, 32, "DenseNet-121"),
    ZooEntry("densenet169", "densenet", _densenet(64, 32, (6, 12, 32, 32)), 14_149_480, 224, 32, "DenseNet-169"),
    ZooEntry("densenet201", "densenet", _densenet(64, 32, (6, 12, 48, 32)), 20_013_928, 224, 32, "DenseNet-201"),
    ZooEntry("vgg16", "vgg", _vgg(16), 138_357_544, 224, 224, "VGG-16 (no BN)", rule=_VGG_RULE),
    ZooEntry("vgg19", "vgg", _vgg(19), 143_667_240, 224, 224, "VGG-19 (no BN)", rule=_VGG_RULE),
    ZooEntry("inception_v3", "inception", _inception_v3, 27_161_264, 299, 75,
             "Inception-v3 (eval graph without the aux head; --aux-head adds it)",
             options=(("aux_head", False),), off_graph_params=3_326_696),
    ZooEntry("mobilenet_v2", "mobilenet", _mobilenet_v2, 3_504_872, 224, 32, "MobileNetV2 (ReLU6 as Clip)"),
    ZooEntry("squeezenet1_1", "squeezenet", _squeezenet_1_1, 1_235_496, 224, 32, "SqueezeNet 1.1"),
    ZooEntry("vit_b_16", "vit", _vit_b16, 86_567_656, 224, 32, "ViT-B/16 (class token, pre-norm, GELU)",
             rule=_VIT_RULE),
)}

INCEPTION_AUX_HEAD_PARAMS = ZOO["inception_v3"].off_graph_params  # conv0 98,560 + conv1 2,459,136 + fc 769,000


def zoo_entry(name: str) -> ZooEntry:
    try:
        return ZOO[name]
    except KeyError:
        raise SniperError(f"zoo: unknown network {name!r}; choose one of: {', '.join(ZOO)}") from None


def export_zoo_model(name: str, resolution: int | None = None, batch: int = 1, weights: bool = True,
                     seed: int = 0, aux_head: bool = False) -> onnx.ModelProto:
    """The zoo network ``name`` as ONNX (input ``input`` of shape (batch, 3, resolution, resolution)).

    ``resolution=None`` uses the network's reference size (299 for Inception-v3, 224 otherwise).
    ``aux_head=True`` (Inception-v3 only) adds torchvision's auxiliary classifier as a second output
    ``aux_logits``; torchvision's eval graph does not run it, so it is off by default.
    """
    entry = zoo_entry(name)
    resolution = entry.default_resolution if resolution is None else int(resolution)
    if not entry.accepts(resolution):
        raise SniperError(f"{name}: resolution {resolution} is refused; {name} takes {entry.resolutions()}; "
                          f"nearest: {_nearest_text(entry, resolution)}")
    if batch < 1:
        raise SniperError(f"{name}: batch {batch} must be >= 1")
    check_seed(seed)
    if aux_head and name != "inception_v3":
        raise SniperError(f"{name}: only inception_v3 has an auxiliary head; drop --aux-head")
    builder = GraphBuilder(name, np.random.default_rng(seed), weights)
    x = builder.input("input", (batch, 3, resolution, resolution))
    logits = entry.build(builder, x, {"aux_head": aux_head})
    builder.output(logits, "logits")
    if aux_head:  # torchvision returns (logits, aux_logits): keep that output order
        builder.outputs.reverse()
    return builder.build(doc=f"sniper_generator zoo {name} resolution={resolution} batch={batch} seed={seed}")


def _nearest_text(entry: ZooEntry, resolution: int) -> str:
    below, above = entry.nearest(resolution, -1), entry.nearest(resolution, +1)
    choices = sorted({r for r in (below, above) if r is not None}, key=lambda r: (abs(r - resolution), r))
    return " or ".join(f"--resolution {r}" for r in choices)


__all__ = ["ZOO", "ZooEntry", "export_zoo_model", "export_zoo_to_file", "list_zoo", "count_parameters",
           "INCEPTION_AUX_HEAD_PARAMS"]


@dataclass
class ZooExport:
    """What ``export_zoo_to_file`` wrote."""

    name: str
    path: str
    params: int
    input_shape: tuple[int, ...]
    bytes: int
    weights: bool

    def to_json_dict(self) -> dict:
        return {"name": self.name, "path": self.path, "params": self.params, "input_shape": list(self.input_shape),
                "bytes": self.bytes, "weights": self.weights}


def list_zoo() -> list[dict]:
    """One row per network: name, family, torchvision parameter count, default resolution, description."""
    return [{"name": e.name, "family": e.family, "params": e.reference_params, "export_params": e.export_params,
             "default_resolution": e.default_resolution, "min_resolution": e.min_resolution,
             "resolutions": e.resolutions(), "description": e.description} for e in ZOO.values()]


def export_zoo_to_file(name: str, path: str | Path, resolution: int | None = None, batch: int = 1,
                       weights: bool = True, seed: int = 0, aux_head: bool = False) -> ZooExport:
    model = export_zoo_model(name, resolution, batch, weights, seed, aux_head)
    path = Path(path)
    if path.is_dir():
        raise SniperError(f"{path}: is a directory; give a file name such as {path / (name + '.onnx')}")
    if not path.parent.is_dir():
        raise SniperError(f"{path.parent}: no such directory; create it first")
    data = model.SerializeToString()
    path.write_bytes(data)
    shape = tuple(d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim)
    return ZooExport(name, str(path), count_parameters(model), shape, len(data), weights)
