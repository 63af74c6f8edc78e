"""The random CNN family: a config sampler and the builder that turns a config into a graph.

A config is plain JSON and fully resolved (every width, kernel and block is written out), so a net
is rebuilt from its config alone; randomness only picks the config (and, later, the weights).

Shape of a config::

    {"resolution": 128, "batch": 1, "norm": true, "activation": "relu",
     "stem": {"channels": 32, "kernel": 3, "stride": 2, "pool": "max"},
     "stages": [{"downsample": "conv", "blocks": [{"kind": "residual", ...}, ...]}, ...],
     "head": {"pool": "avg", "side": 1, "fc": [512, 1000]}}
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from sniper_generator.builder import ACTIVATIONS, GraphBuilder, Tensor
from sniper_generator.sampling import MAX_MACS, MAX_NODES, MAX_PARAMS, choice, log_uniform, sample_target_macs

BLOCK_KINDS = ("plain", "residual", "dense", "inception", "separable", "grouped", "atrous")
DOWNSAMPLES = ("maxpool", "avgpool", "conv", "none")
KERNELS = (1, 3, 5, 7)
MIN_CHANNELS = 4
MAX_CHANNELS = 2048


# ------------------------------------------------------------------------------------ building
def _norm_act(b: GraphBuilder, x: Tensor, cfg: dict, act: bool = True) -> Tensor:
    if cfg["norm"]:
        x = b.batchnorm(x)
    return b.activation(x, cfg["activation"]) if act else x


def _conv_unit(b: GraphBuilder, x: Tensor, cfg: dict, out: int, kernel: int, stride: int = 1,
               dilation: int = 1, groups: int = 1, act: bool = True) -> Tensor:
    # a bias only where no BatchNorm follows, as in real networks
    y = b.conv(x, out, kernel, stride, dilation=dilation, groups=groups, bias=not cfg["norm"])
    return _norm_act(b, y, cfg, act)


def _shortcut(b: GraphBuilder, x: Tensor, y: Tensor, cfg: dict, stride: int = 1) -> Tensor:
    if x.shape != y.shape:  # a projection, strided where the block strides (ResNet's 1x1 stride 2)
        x = _conv_unit(b, x, cfg, y.channels, 1, stride, act=False)
    return b.activation(b.add(y, x), cfg["activation"])


# Blocks of the cnn-strided family carry "stride": 2 and downsample themselves, as real networks
# do; configs without the key build exactly the graphs they built before.
def _stride(blk: dict) -> int:
    return blk.get("stride", 1)


def _plain(b: GraphBuilder, x: Tensor, blk: dict, cfg: dict) -> Tensor:
    return _conv_unit(b, x, cfg, blk["channels"], blk["kernel"], _stride(blk))


def _residual(b: GraphBuilder, x: Tensor, blk: dict, cfg: dict) -> Tensor:
    c, k, s = blk["channels"], blk["kernel"], _stride(blk)
    if blk["bottleneck"]:  # the stride on the k x k conv, as torchvision's ResNet v1.5
        mid = max(MIN_CHANNELS, c // 4)
        y = _conv_unit(b, _conv_unit(b, x, cfg, mid, 1), cfg, mid, k, s)
        y = _conv_unit(b, y, cfg, c, 1, act=False)
    else:
        y = _conv_unit(b, _conv_unit(b, x, cfg, c, k, s), cfg, c, k, act=False)
    return _shortcut(b, x, y, cfg, s)


def _dense(b: GraphBuilder, x: Tensor, blk: dict, cfg: dict) -> Tensor:
    growth, k = blk["growth"], blk["kernel"]
    # As torchvision's DenseNet: each layer reads the concat of ALL earlier features, so one
    # feature map fans out to every later layer (Table 1's branches), not a chain of 2-input concats.
    features = [x]
    for _layer in range(blk["layers"]):
        y = b.concat(features) if len(features) > 1 else x
        if blk["bottleneck"]:
            y = _conv_unit(b, y, cfg, 4 * growth, 1)
        features.append(_conv_unit(b, y, cfg, growth, k))
    x = b.concat(features)
    if blk.get("transition"):
        x = _conv_unit(b, x, cfg, blk["transition"], 1)
    return x


def _inception(b: GraphBuilder, x: Tensor, blk: dict, cfg: dict) -> Tensor:
    c = blk["branch_channels"]
    outputs = []
    for branch in blk["branches"]:
        if branch["type"] == "pool":
            pool = b.maxpool if branch["pool"] == "max" else b.avgpool
            outputs.append(_conv_unit(b, pool(x, 3, 1, 1), cfg, c, 1))
            continue
        y = x
        for kernel in branch["kernels"]:
            y = _conv_unit(b, y, cfg, c, kernel)
        outputs.append(y)
    return b.concat(outputs)


def _separable(b: GraphBuilder, x: Tensor, blk: dict, cfg: dict) -> Tensor:
    hidden = x.channels * blk["expand"]
    y = _conv_unit(b, x, cfg, hidden, 1) if blk["expand"] != 1 else x
    y = _conv_unit(b, y, cfg, hidden, blk["kernel"], _stride(blk), groups=hidden)
    y = _conv_unit(b, y, cfg, blk["channels"], 1, act=False)
    return b.add(x, y) if blk["residual"] and x.shape == y.shape else y


def _grouped(b: GraphBuilder, x: Tensor, blk: dict, cfg: dict) -> Tensor:
    c, g = blk["channels"], blk["groups"]
    y = _conv_unit(b, x, cfg, c, 1)
    y = _conv_unit(b, y, cfg, c, blk["kernel"], _stride(blk), groups=g)
    y = _conv_unit(b, y, cfg, c, 1, act=False)
    return _shortcut(b, x, y, cfg, _stride(blk))


def _atrous(b: GraphBuilder, x: Tensor, blk: dict, cfg: dict) -> Tensor:
    y = _conv_unit(b, x, cfg, blk["channels"], 3, dilation=blk["dilation"], act=not blk["residual"])
    return _shortcut(b, x, y, cfg) if blk["residual"] else y


BLOCK_BUILDERS: dict[str, Callable[[GraphBuilder, Tensor, dict, dict], Tensor]] = {
    "plain": _plain, "residual": _residual, "dense": _dense, "inception": _inception,
    "separable": _separable, "grouped": _grouped, "atrous": _atrous,
}


def _downsample(b: GraphBuilder, x: Tensor, kind: str, cfg: dict, channels: int) -> Tensor:
    if kind == "maxpool":
        return b.maxpool(x, 3, 2, 1)
    if kind == "avgpool":
        return b.avgpool(x, 2, 2)
    if kind == "conv":
        return _conv_unit(b, x, cfg, channels, 3, stride=2)
    return x


def _head(b: GraphBuilder, x: Tensor, head: dict, cfg: dict) -> Tensor:
    if head["pool"] == "conv":
        x = b.conv(x, head["classes"], 1, bias=True)
        return b.flatten(b.global_pool(b.activation(x, cfg["activation"])))
    if head["pool"] == "flatten":
        side = x.shape[2]
        if side > head["side"]:
            window = -(-side // head["side"])
            x = b.avgpool(x, window, window)
        x = b.flatten(x)
    else:
        x = b.flatten(b.global_pool(x, head["pool"]))
    sizes = head["fc"]
    for index, size in enumerate(sizes):
        x = b.gemm(x, size)
        if index != len(sizes) - 1:
            x = b.activation(x, cfg["activation"])
    return x


def build_cnn(b: GraphBuilder, cfg: dict) -> Tensor:
    """Adds the network of ``cfg`` to ``b`` and returns its logits."""
    size = cfg["resolution"]
    x = b.input("input", (cfg["batch"], 3, size, size))
    stem = cfg["stem"]
    x = _conv_unit(b, x, cfg, stem["channels"], stem["kernel"], stem["stride"])
    if stem["pool"] != "none":
        x = _downsample(b, x, f"{stem['pool']}pool", cfg, x.channels)
    for stage in cfg["stages"]:
        first = stage["blocks"][0]
        x = _downsample(b, x, stage["downsample"], cfg, first.get("channels", x.channels))
        for blk in stage["blocks"]:
            x = BLOCK_BUILDERS[blk["kind"]](b, x, blk, cfg)
    return _head(b, x, cfg["head"], cfg)


# ------------------------------------------------------------------------------------ sampling
def _round_channels(value: float, multiple: int = 4) -> int:
    value = min(max(value, MIN_CHANNELS), MAX_CHANNELS)
    return max(multiple, int(round(value / multiple)) * multiple)


def _sample_plain(rng: np.random.Generator, channels: int, kernel: int) -> dict:
    return {"kind": "plain", "channels": channels, "kernel": kernel}


def _sample_residual(rng: np.random.Generator, channels: int, kernel: int) -> dict:
    return {"kind": "residual", "channels": channels, "kernel": kernel, "bottleneck": bool(rng.random() < 0.5)}


def _sample_dense(rng: np.random.Generator, channels: int, kernel: int) -> dict:
    growth = _round_channels(channels / 4)
    layers = int(rng.integers(2, 13)) if rng.random() < 0.8 else int(rng.integers(13, 49))
    transition = _round_channels(channels) if rng.random() < 0.7 else None
    return {"kind": "dense", "growth": growth, "layers": layers, "kernel": kernel,
            "bottleneck": bool(rng.random() < 0.6), "transition": transition}


def _sample_inception(rng: np.random.Generator, channels: int, kernel: int) -> dict:
    count = int(rng.integers(2, 6))
    branches = []
    for index in range(count):
        if index == count - 1 and rng.random() < 0.6:
            branches.append({"type": "pool", "pool": choice(rng, ("max", "avg"))})
            continue
        depth = int(rng.integers(0, 3))
        kernels = [1] + [int(choice(rng, (3, 5, 7), (0.5, 0.35, 0.15))) for _ in range(depth)]
        branches.append({"type": "conv", "kernels": kernels})
    return {"kind": "inception", "branch_channels": _round_channels(channels / count), "branches": branches}


def _sample_separable(rng: np.random.Generator, channels: int, kernel: int) -> dict:
    # depthwise kernels: 1x1 would make the block a plain 1x1 pair, so draw among 3/5/7
    return {"kind": "separable", "channels": channels, "kernel": choice(rng, (3, 5, 7), (0.6, 0.3, 0.1)),
            "expand": int(choice(rng, (1, 2, 4, 6))), "residual": bool(rng.random() < 0.7)}


def _sample_grouped(rng: np.random.Generator, channels: int, kernel: int) -> dict:
    groups = int(choice(rng, (2, 4, 8, 16, 32)))
    return {"kind": "grouped", "channels": _round_channels(channels, max(4, groups)), "kernel": kernel,
            "groups": groups}


def _sample_atrous(rng: np.random.Generator, channels: int, kernel: int) -> dict:
    return {"kind": "atrous", "channels": channels, "dilation": int(choice(rng, (2, 3, 4, 6))),
            "residual": bool(rng.random() < 0.6)}


BLOCK_SAMPLERS: dict[str, Callable[[np.random.Generator, int, int], dict]] = {
    "plain": _sample_plain, "residual": _sample_residual, "dense": _sample_dense, "inception": _sample_inception,
    "separable": _sample_separable, "grouped": _sample_grouped, "atrous": _sample_atrous,
}


def _sample_block(rng: np.random.Generator, kind: str, channels: int) -> dict:
    kernel = choice(rng, KERNELS, (0.15, 0.6, 0.15, 0.1))  # drawn for every kind: keeps the stream simple
    return BLOCK_SAMPLERS[kind](rng, channels, kernel)


HEAD_POOLS = ("avg", "max", "flatten", "conv")
HIDDEN_SIZES = (128, 256, 512, 1024, 2048, 4096)
VGG_HEAD_MIN_MACS = 1e9


def _sample_head(rng: np.random.Generator, target_macs: float) -> dict:
    """Global pooling + 1-3 Gemm, a VGG-like flatten of a small map, or a SqueezeNet-like conv classifier.

    Hidden FC widths grow with the net (as in real ones): up to about sqrt(MACs) / 2, and the
    4096-4096 VGG classifier only on nets of 1e9 MACs or more, so small nets stay small files.
    """
    pool = choice(rng, HEAD_POOLS, (0.55, 0.15, 0.22, 0.08))
    classes = int(choice(rng, (10, 100, 1000), (0.3, 0.2, 0.5)))
    if pool == "conv":
        return {"pool": pool, "side": 1, "fc": [], "classes": classes}
    if pool == "flatten" and target_macs >= VGG_HEAD_MIN_MACS and rng.random() < 0.6:
        return {"pool": pool, "side": 7, "fc": [4096, 4096, classes]}
    widest = max(HIDDEN_SIZES[0], math.sqrt(target_macs) / 2)
    sizes = tuple(size for size in HIDDEN_SIZES if size <= widest)
    hidden = [int(choice(rng, sizes)) for _ in range(int(rng.integers(0, 3)))]
    return {"pool": pool, "side": int(rng.integers(1, 8)) if pool == "flatten" else 1,
            "fc": sorted(hidden, reverse=True) + [classes]}


def _sample_structure(rng: np.random.Generator, target_macs: float) -> dict:
    resolution = int(round(log_uniform(rng, 32, 512) / 8)) * 8
    batch = int(choice(rng, (1, 2, 4, 8), (0.7, 0.1, 0.1, 0.1)))
    width = log_uniform(rng, 8, 96)
    stem_stride = int(choice(rng, (1, 2), (0.3, 0.7)))
    stem_pool = choice(rng, ("none", "max", "avg"), (0.5, 0.35, 0.15))
    reduced = resolution // stem_stride // (1 if stem_pool == "none" else 2)
    max_stages = max(1, min(5, int(math.log2(max(reduced, 2)))))
    stage_count = int(rng.integers(1, max_stages + 1))
    style = rng.random()
    if style < 0.3:  # one block kind throughout, like the ResNet, DenseNet and Inception families
        mix = np.eye(len(BLOCK_KINDS))[int(rng.integers(len(BLOCK_KINDS)))]
    else:
        mix = rng.dirichlet(np.full(len(BLOCK_KINDS), 0.6 if style < 0.6 else 3.0))
    depth = log_uniform(rng, 1, 6) if rng.random() < 0.85 else log_uniform(rng, 6, 36)
    stages = []
    for index in range(stage_count):
        channels = _round_channels(width * 2 ** index)
        blocks = [_sample_block(rng, choice(rng, BLOCK_KINDS, mix), channels)
                  for _ in range(max(1, int(round(depth * rng.uniform(0.5, 1.5)))))]
        downsample = "none" if index == 0 and rng.random() < 0.5 else choice(rng, DOWNSAMPLES[:3], (0.4, 0.2, 0.4))
        stages.append({"downsample": downsample, "blocks": blocks})
    head = _sample_head(rng, target_macs)
    return {
        "resolution": resolution, "batch": batch, "norm": bool(rng.random() < 0.8),
        "activation": choice(rng, ACTIVATIONS, (0.55, 0.15, 0.15, 0.15)),
        "stem": {"channels": _round_channels(width), "kernel": int(choice(rng, (3, 5, 7), (0.5, 0.2, 0.3))),
                 "stride": stem_stride, "pool": stem_pool},
        "stages": stages, "head": head,
    }


_WIDTH_KEYS = ("channels", "growth", "branch_channels", "transition")


def _scale_widths(cfg: dict, factor: float) -> dict:
    """Multiplies every conv width by ``factor``, keeping group divisibility."""
    def scaled(blk: dict) -> dict:
        out = dict(blk)
        multiple = max(4, blk.get("groups", 4))
        for key in _WIDTH_KEYS:
            if out.get(key):
                out[key] = _round_channels(out[key] * factor, multiple)
        return out

    new = dict(cfg)
    new["stem"] = scaled(cfg["stem"])
    new["stages"] = [{**stage, "blocks": [scaled(blk) for blk in stage["blocks"]]} for stage in cfg["stages"]]
    return new


def estimate_size(cfg: dict) -> tuple[int, int, int]:
    """(MACs of the conv/Gemm/MatMul layers, learnable parameters, nodes), from a dry build."""
    builder = GraphBuilder("estimate", None, weights=False, dry=True)
    build_cnn(builder, cfg)
    return builder.macs, builder.params, builder.node_count


def estimate_macs(cfg: dict) -> int:
    return estimate_size(cfg)[0]


def _fits(cfg: dict) -> bool:
    """False when downsampling shrinks the map below 1x1 (the net cannot be built)."""
    try:
        return estimate_macs(cfg) > 0
    except (ValueError, IndexError):
        return False


def _fit_to_target(cfg: dict, target: float) -> dict:
    """Scales widths, then batch and resolution, until the MACs are near ``target``."""
    for _step in range(6):
        macs = estimate_macs(cfg)
        factor = math.sqrt(target / macs)
        if 0.8 < factor < 1.25:
            break
        rescaled = _scale_widths(cfg, factor)
        if rescaled != cfg:
            cfg = rescaled
            continue
        if factor > 1:  # every width is at its cap: accept a smaller net
            break
        if cfg["batch"] > 1:  # widths are at their floor: shrink the input instead
            cfg = {**cfg, "batch": max(1, int(cfg["batch"] * factor * factor))}
            continue
        smaller = {**cfg, "resolution": max(32, int(cfg["resolution"] * factor) // 8 * 8)}
        if smaller["resolution"] == cfg["resolution"] or not _fits(smaller):
            break
        cfg = smaller
    return cfg


STRIDED_KINDS = ("plain", "residual", "separable", "grouped")
STRIDED_KIND_WEIGHTS = (0.2, 0.3, 0.35, 0.15)
STRIDED_STAGE_SHARE = 0.85


def _stage_channels(block: dict) -> int:
    if block.get("channels"):
        return block["channels"]
    if block["kind"] == "dense":
        return _round_channels(4 * block["growth"])
    return _round_channels(block["branch_channels"] * len(block["branches"]))


def _stride_blocks(rng: np.random.Generator, cfg: dict) -> dict:
    """Most downsampling stages drop their pooling or 3x3 stride-2 opening and get instead a
    stride-2 first block (replacing the sampled one) of a kind that strides in real networks: MobileNet's stride-2 depthwise, ResNet's stride-2 conv with a stride-2 1x1
    projection, a strided plain or grouped conv. A runtime picks other kernels for these."""
    stages = []
    for stage in cfg["stages"]:
        if stage["downsample"] != "none" and rng.random() < STRIDED_STAGE_SHARE:
            kind = choice(rng, STRIDED_KINDS, STRIDED_KIND_WEIGHTS)
            first = {**_sample_block(rng, kind, _stage_channels(stage["blocks"][0])), "stride": 2}
            stage = {"downsample": "none", "blocks": [first] + stage["blocks"][1:]}
        stages.append(stage)
    return {**cfg, "stages": stages}


def sample_cnn_config(rng: np.random.Generator, max_macs: float | None = None, strided: bool = False) -> dict:
    """A random, fully resolved CNN config whose MACs land near a sampled target.

    ``strided`` gives the cnn-strided family: the same draws, then strided blocks (more draws, so
    the cnn family's stream, and every net it made, stays as it was)."""
    target = sample_target_macs(rng, max_macs)
    cap = MAX_MACS if max_macs is None else min(MAX_MACS, 2 * max_macs)
    for _attempt in range(50):
        cfg = _sample_structure(rng, target)
        if strided:
            cfg = _stride_blocks(rng, cfg)
        if not _fits(cfg):
            continue
        cfg = _fit_to_target(cfg, target)
        macs, params, nodes = estimate_size(cfg)
        if macs <= cap and params <= MAX_PARAMS and nodes <= MAX_NODES:
            break
    else:  # pragma: no cover - tiny nets at resolution >= 32 always fit
        raise RuntimeError("could not sample a CNN that fits its resolution and the MACs cap")
    cfg["target_macs"] = float(f"{target:.4g}")
    return cfg


WIDE_MACS_RANGE = (1e9, 2e10)  # keeps a net's run near 0.02-0.4 s on one core of the reference CPU
WIDE_KINDS = ("plain", "residual")
WIDE_HEAD_MACS = 1e6  # small classifier heads: this family is about the convolutions


def sample_wide_cnn_config(rng: np.random.Generator, max_macs: float | None = None) -> dict:
    """The cnn-wide family: VGG's and ResNet's early layers. A stride-1 stem without pooling
    keeps the whole input resolution (112-448), and 32-128 channels there make single
    convolutions of 1e8-1e10 MACs on maps of millions of elements, which the cnn family reaches
    only in its top percent (its MACs come from depth). One to three stages of 1-3 plain or
    residual blocks. Configs are cnn configs: ``build_cnn`` builds them."""
    cap = min(WIDE_MACS_RANGE[1], MAX_MACS if max_macs is None else max_macs)
    smallest: tuple[float, dict] | None = None
    for _attempt in range(50):
        width = _round_channels(log_uniform(rng, 32, 128), 8)
        stages = []
        for index in range(int(rng.integers(1, 4))):
            kind = choice(rng, WIDE_KINDS, (0.6, 0.4))
            blocks = [_sample_block(rng, kind, _round_channels(width * 2 ** index, 8))
                      for _ in range(int(rng.integers(1, 4)))]
            downsample = "none" if index == 0 else choice(rng, ("maxpool", "conv"), (0.7, 0.3))
            stages.append({"downsample": downsample, "blocks": blocks})
        cfg = {"resolution": int(round(log_uniform(rng, 112, 448) / 8)) * 8,
               "batch": int(choice(rng, (1, 2), (0.8, 0.2))), "norm": bool(rng.random() < 0.5),
               "activation": choice(rng, ACTIVATIONS, (0.7, 0.1, 0.1, 0.1)),
               "stem": {"channels": width, "kernel": 3, "stride": 1, "pool": "none"},
               "stages": stages, "head": _sample_head(rng, WIDE_HEAD_MACS)}
        macs, params, nodes = estimate_size(cfg)
        if min(WIDE_MACS_RANGE[0], cap / 2) <= macs <= cap and params <= MAX_PARAMS:
            break
        if params <= MAX_PARAMS and (smallest is None or macs < smallest[0]):
            smallest = (macs, cfg)
    else:  # a small --max-macs: the smallest draw, narrowed and shrunk toward the cap as cnn nets are
        cfg = _fit_to_target(smallest[1], cap / 1.5)
        macs = estimate_size(cfg)[0]
    cfg["target_macs"] = float(f"{macs:.4g}")
    return cfg

