"""The ``tiny`` family: networks of 1-8 layers and at most 1e6 Conv and Gemm MACs, which run in microseconds.

The other families start at 1e6 MACs and 10 layers, so no training net shows a predictor what a
call costs when the layers cost almost nothing: the runtime's own cost of a call (binding inputs,
launching the executor, returning outputs), which on the reference CPU is about 7 us of a 1-node
net's 8 us. Without these nets a predictor put a single Relu at nanoseconds (docs/predictor-measurements.md,
"The cost of a call").

Config::

    {"kind": "mlp" | "conv" | "elementwise", "batch": 1..8, "layers": 1..8, "width": ...,
     "activation": "relu" | "clip" | "silu" | "gelu", ...}

- mlp: a [batch, width] input through ``layers`` Gemm layers of the ``widths`` listed;
- conv: a [batch, channels, side, side] input through ``layers`` convolutions (3x3 or 1x1), then
  global average pooling and a Gemm to ``classes``;
- elementwise: a [batch, width] input through ``ops`` (activations, LayerNorm, Softmax, a bias Add).
"""

from __future__ import annotations

import numpy as np

from sniper_generator.builder import ACTIVATIONS, GraphBuilder, Tensor
from sniper_generator.sampling import choice, log_uniform
from sniper_generator.transformer import dry_size

KINDS = ("mlp", "conv", "elementwise")
ELEMENTWISE_OPS = ("activation", "layernorm", "softmax", "bias")
# the family's ceiling on Conv and Gemm MACs: where the mixed family's smallest nets begin
TINY_MAX_MACS = 1e6


def _mlp(b: GraphBuilder, cfg: dict) -> Tensor:
    x = b.input("input", (cfg["batch"], cfg["width"]))
    for index, width in enumerate(cfg["widths"]):
        x = b.gemm(x, width)
        if index != len(cfg["widths"]) - 1:
            x = b.activation(x, cfg["activation"])
    return x


def _conv(b: GraphBuilder, cfg: dict) -> Tensor:
    x = b.input("input", (cfg["batch"], cfg["channels"], cfg["side"], cfg["side"]))
    for width, kernel in zip(cfg["widths"], cfg["kernels"]):
        x = b.activation(b.conv(x, width, kernel), cfg["activation"])
    return b.gemm(b.flatten(b.global_pool(x)), cfg["classes"])


def _elementwise(b: GraphBuilder, cfg: dict) -> Tensor:
    x = b.input("input", (cfg["batch"], cfg["width"]))
    for op in cfg["ops"]:
        if op == "activation":
            x = b.activation(x, cfg["activation"])
        elif op == "layernorm":
            x = b.layernorm(x)
        elif op == "softmax":
            x = b.softmax(x)
        else:
            x = b.add(x, b.parameter("bias", (cfg["width"],)))
    return x


BUILDERS = {"mlp": _mlp, "conv": _conv, "elementwise": _elementwise}


def build_tiny(b: GraphBuilder, cfg: dict) -> Tensor:
    """Adds the tiny net of ``cfg`` to ``b`` and returns its output."""
    return BUILDERS[cfg["kind"]](b, cfg)


def _draw(rng: np.random.Generator) -> dict:
    kind = choice(rng, KINDS, (0.4, 0.35, 0.25))
    layers = int(round(log_uniform(rng, 1, 8)))
    cfg = {"kind": kind, "batch": int(choice(rng, (1, 2, 4, 8), (0.7, 0.1, 0.1, 0.1))), "layers": layers,
           "activation": choice(rng, ACTIVATIONS, (0.5, 0.2, 0.15, 0.15))}
    if kind == "mlp":
        cfg["width"] = int(round(log_uniform(rng, 4, 1024)))
        cfg["widths"] = [int(round(log_uniform(rng, 4, 1024))) for _ in range(layers)]
    elif kind == "conv":
        cfg.update(channels=int(choice(rng, (1, 3, 8, 16))), side=int(round(log_uniform(rng, 4, 64))),
                   widths=[int(choice(rng, (4, 8, 16, 32))) for _ in range(layers)],
                   kernels=[int(choice(rng, (1, 3), (0.3, 0.7))) for _ in range(layers)],
                   classes=int(choice(rng, (2, 10, 100))))
    else:
        cfg["width"] = int(round(log_uniform(rng, 1, 65536)))
        cfg["ops"] = [choice(rng, ELEMENTWISE_OPS, (0.5, 0.2, 0.15, 0.15)) for _ in range(layers)]
    return cfg


def estimate_tiny_size(cfg: dict) -> tuple[int, int]:
    return dry_size(build_tiny, cfg)


# the analyzer's MACs per element of each elementwise layer (docs/analyzer.md)
ELEMENT_MACS = {"relu": 1, "clip": 1, "silu": 2, "gelu": 1, "layernorm": 5, "softmax": 3, "bias": 1}


def elementwise_macs(cfg: dict) -> int:
    """What the analyzer counts for the net's elementwise layers, beside its Conv and Gemm MACs."""
    act = ELEMENT_MACS[cfg["activation"]]
    if cfg["kind"] == "elementwise":
        per_op = [act if op == "activation" else ELEMENT_MACS[op] for op in cfg["ops"]]
        return cfg["batch"] * cfg["width"] * sum(per_op)
    if cfg["kind"] == "mlp":
        return cfg["batch"] * act * sum(cfg["widths"][:-1])
    side, total = cfg["side"], 0
    for width in cfg["widths"]:
        total += cfg["batch"] * width * side * side * act
    return total + cfg["batch"] * cfg["widths"][-1] * side * side  # the global pooling


def sample_tiny_config(rng: np.random.Generator, max_macs: float | None = None) -> dict:
    """A tiny net with at most ``TINY_MAX_MACS`` Conv and Gemm MACs, redrawn until one fits (the
    bulk does). With ``max_macs``, the analyzer's count, elementwise layers included, is held under
    it too; without it, elementwise chains reach a few million of those (the measured nets' stream)."""
    while True:  # ends: a quarter of the draws are elementwise nets, which have no Conv or Gemm MACs
        cfg = _draw(rng)
        gemm_macs = estimate_tiny_size(cfg)[0]
        if gemm_macs > TINY_MAX_MACS:
            continue
        if max_macs is None or gemm_macs + elementwise_macs(cfg) <= max_macs:
            return cfg
