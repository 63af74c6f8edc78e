"""The random transformer family: pre-norm encoders (MatMul attention, Softmax, LayerNormalization,
MLP) over image patches (ViT-like) or over a sequence of feature vectors (BERT-like encoder).

Config::

    {"input": "image", "resolution": 64, "patch": 8, "batch": 1, "dim": 128, "heads": 4,
     "depth": 6, "mlp_ratio": 4, "activation": "gelu", "class_token": true, "fc": [10]}
    {"input": "sequence", "tokens": 128, "features": 64, "batch": 1, ...}
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from sniper_generator.builder import GraphBuilder, Tensor
from sniper_generator.sampling import MAX_MACS, MAX_PARAMS, choice, log_uniform, sample_target_macs
from sniper_generator.zoo import patch_embedding, vit_encoder_block

MAX_HEADS = 16
MAX_DEPTH = 24


def _sequence_embedding(b: GraphBuilder, cfg: dict) -> tuple[Tensor, int]:
    batch, tokens = cfg["batch"], cfg["tokens"]
    x = b.input("input", (batch, tokens, cfg["features"]))
    x = b.gemm(b.reshape(x, (batch * tokens, cfg["features"])), cfg["dim"], prefix="embed")
    if cfg["class_token"]:
        x = b.reshape(x, (batch, tokens, cfg["dim"]))
        token = b.parameter("class_token", (1, 1, cfg["dim"]))
        if batch != 1:
            token = b.expand(token, (batch, 1, cfg["dim"]))
        tokens += 1
        x = b.reshape(b.concat([token, x], axis=1), (batch * tokens, cfg["dim"]))
    return x, tokens


def build_transformer(b: GraphBuilder, cfg: dict) -> Tensor:
    """Adds the encoder of ``cfg`` to ``b`` and returns its logits."""
    batch, dim = cfg["batch"], cfg["dim"]
    if cfg["input"] == "image":
        image = b.input("input", (batch, 3, cfg["resolution"], cfg["resolution"]))
        x, tokens = patch_embedding(b, image, dim, cfg["patch"], cfg["class_token"])
    else:
        x, tokens = _sequence_embedding(b, cfg)
    for _layer in range(cfg["depth"]):
        x = vit_encoder_block(b, x, batch, tokens, cfg["heads"], dim * cfg["mlp_ratio"], cfg["activation"])
    x = b.gather(b.reshape(b.layernorm(x), (batch, tokens, dim)), 0, axis=1)
    return classifier_head(b, x, cfg)


def classifier_head(b: GraphBuilder, x: Tensor, cfg: dict) -> Tensor:
    """1-3 Gemm layers on token 0 (``cfg["fc"]`` sizes, the activation between them)."""
    sizes = cfg["fc"]
    for index, size in enumerate(sizes):
        x = b.gemm(x, size, prefix="head")
        if index != len(sizes) - 1:
            x = b.activation(x, cfg["activation"])
    return x


def dry_size(build: Callable[[GraphBuilder, dict], Tensor], cfg: dict) -> tuple[int, int]:
    """(MACs, params) of ``build(cfg)``, from a build that only tracks shapes."""
    builder = GraphBuilder("estimate", None, weights=False, dry=True)
    build(builder, cfg)
    return builder.macs, builder.params


def estimate_transformer_size(cfg: dict) -> tuple[int, int]:
    return dry_size(build_transformer, cfg)


def estimate_transformer_macs(cfg: dict) -> int:
    return estimate_transformer_size(cfg)[0]


def _sample_structure(rng: np.random.Generator) -> dict:
    head_dim = int(choice(rng, (16, 32, 64), (0.3, 0.4, 0.3)))
    heads = int(choice(rng, (1, 2, 4, 6, 8, 12, 16)))
    cfg = {
        "batch": int(choice(rng, (1, 2, 4, 8), (0.7, 0.1, 0.1, 0.1))),
        "head_dim": head_dim, "heads": heads, "dim": heads * head_dim,
        "depth": int(round(log_uniform(rng, 1, MAX_DEPTH))),
        "mlp_ratio": int(choice(rng, (2, 4), (0.3, 0.7))),
        "activation": choice(rng, ("gelu", "relu", "silu"), (0.7, 0.2, 0.1)),
        "class_token": bool(rng.random() < 0.7),
    }
    hidden = [int(choice(rng, (256, 512, 1024))) for _ in range(int(rng.integers(0, 3)))]
    cfg["fc"] = sorted(hidden, reverse=True) + [int(choice(rng, (10, 100, 1000), (0.3, 0.2, 0.5)))]
    if rng.random() < 0.7:
        patch = int(choice(rng, (4, 8, 14, 16, 32), (0.15, 0.25, 0.1, 0.35, 0.15)))
        side = int(round(log_uniform(rng, 2, 32)))
        cfg.update(input="image", patch=patch, resolution=max(32, patch * side) // patch * patch)
    else:
        cfg.update(input="sequence", tokens=int(round(log_uniform(rng, 8, 1024))),
                   features=int(choice(rng, (16, 64, 128, 256, 768))))
    return cfg


def _fit_to_target(cfg: dict, target: float, estimate: Callable[[dict], int] = estimate_transformer_macs) -> dict:
    """Width (number of heads) first, then depth, towards the target MACs."""
    for _step in range(4):
        factor = target / estimate(cfg)
        if 0.7 < factor < 1.4:
            break
        heads = int(min(MAX_HEADS, max(1, round(cfg["heads"] * math.sqrt(factor)))))
        depth = cfg["depth"]
        if heads == cfg["heads"]:
            depth = int(min(MAX_DEPTH, max(1, round(depth * factor))))
        if (heads, depth) == (cfg["heads"], cfg["depth"]):
            break
        cfg = {**cfg, "heads": heads, "dim": heads * cfg["head_dim"], "depth": depth}
    return cfg


def sample_transformer_config(rng: np.random.Generator, max_macs: float | None = None, *,
                              options: Callable[[np.random.Generator], dict] | None = None,
                              size: Callable[[dict], tuple[int, int]] = estimate_transformer_size) -> dict:
    """``options`` draws a variant's extra settings after the shared structure (so the plain family's
    stream is unchanged); ``size`` estimates (MACs, params) of that variant."""
    target = sample_target_macs(rng, max_macs, tail_share=0.3)  # the reference ViTs sit in the tail
    cap = MAX_MACS if max_macs is None else min(MAX_MACS, 2 * max_macs)
    for _attempt in range(50):
        structure = _sample_structure(rng)
        if options is not None:
            structure.update(options(rng))
        cfg = _fit_to_target(structure, target, lambda c: size(c)[0])
        macs, params = size(cfg)
        if macs <= cap and params <= MAX_PARAMS:
            break
    cfg["target_macs"] = float(f"{target:.4g}")
    return cfg
