"""The ``transformer-torch`` family: encoders written as ``torch.onnx.export`` writes them.

The ``transformer`` family keeps tokens as a 2-D ``[batch * tokens, dim]`` matrix and writes every
linear layer as a Gemm. torch keeps them 3-D ``[batch, tokens, dim]`` and writes ``nn.Linear`` as
MatMul by the weight plus an Add of the bias; BERT-style models are post-norm and add an attention
mask to the scores. On such graphs onnxruntime fuses each residual Add with the LayerNorm reading it
into ``SkipLayerNormalization``, whose speed the 2-D nets never show a predictor
(docs/predictor-measurements.md, "Transformers exported from torch").

Config: the ``transformer`` family's (``sniper_generator.transformer``), plus::

    {"norm": "post" | "pre", "mask": "none" | "padding" | "causal", "layer_norm_eps": 1e-12}
"""

from __future__ import annotations

import math

import numpy as np

from sniper_generator.builder import GraphBuilder, Tensor
from sniper_generator.sampling import choice
from sniper_generator.transformer import classifier_head, dry_size, sample_transformer_config

NORMS = ("post", "pre")
MASKS = ("none", "padding", "causal")


def linear(b: GraphBuilder, x: Tensor, out_features: int, prefix: str) -> Tensor:
    """``nn.Linear`` as torch exports it on a 3-D input: MatMul by a [in, out] weight, then Add."""
    in_features = x.shape[-1]
    name = b._unique(prefix)
    weight = Tensor(b._float_init(f"{name}.weight", (in_features, out_features), "normal",
                                  math.sqrt(2.0 / in_features)), (in_features, out_features))
    bias = Tensor(b._float_init(f"{name}.bias", (out_features,), "zeros"), (out_features,))
    return b.add(b.matmul(x, weight), bias)


def _attention(b: GraphBuilder, x: Tensor, heads: int, mask: Tensor | None) -> Tensor:
    batch, tokens, dim = x.shape
    head_dim = dim // heads

    def split_heads(t: Tensor, perm: tuple[int, ...]) -> Tensor:
        return b.transpose(b.reshape(t, (batch, tokens, heads, head_dim)), perm)

    q, k, v = (linear(b, x, dim, name) for name in ("query", "key", "value"))
    scores = b.scale(b.matmul(split_heads(q, (0, 2, 1, 3)), split_heads(k, (0, 2, 3, 1))), 1.0 / math.sqrt(head_dim))
    if mask is not None:
        scores = b.add(scores, mask)
    context = b.matmul(b.softmax(scores), split_heads(v, (0, 2, 1, 3)))
    context = b.reshape(b.transpose(context, (0, 2, 1, 3)), (batch, tokens, dim))
    return linear(b, context, dim, "attention_out")


def encoder_block(b: GraphBuilder, x: Tensor, cfg: dict, mask: Tensor | None) -> Tensor:
    eps, post = cfg["layer_norm_eps"], cfg["norm"] == "post"
    y = _attention(b, x if post else b.layernorm(x, eps), cfg["heads"], mask)
    x = b.add(x, y)
    if post:
        x = b.layernorm(x, eps)
    y = x if post else b.layernorm(x, eps)
    y = linear(b, b.activation(linear(b, y, cfg["dim"] * cfg["mlp_ratio"], "intermediate"), cfg["activation"]),
               cfg["dim"], "output")
    x = b.add(x, y)
    return b.layernorm(x, eps) if post else x


def _embedding(b: GraphBuilder, cfg: dict) -> Tensor:
    batch, dim = cfg["batch"], cfg["dim"]
    if cfg["input"] == "image":
        image = b.input("input", (batch, 3, cfg["resolution"], cfg["resolution"]))
        x = b.conv(image, dim, cfg["patch"], cfg["patch"], padding=0, bias=True, prefix="patch_embed")
        x = b.transpose(b.reshape(x, (batch, dim, x.shape[2] * x.shape[3])), (0, 2, 1))
    else:
        x = linear(b, b.input("input", (batch, cfg["tokens"], cfg["features"])), dim, "embed")
    if cfg["class_token"]:
        token = b.parameter("class_token", (1, 1, dim))
        if batch != 1:
            token = b.expand(token, (batch, 1, dim))
        x = b.concat([token, x], axis=1)
    x = b.add(x, b.parameter("position_embedding", (1, x.shape[1], dim)))
    return b.layernorm(x, cfg["layer_norm_eps"]) if cfg["norm"] == "post" else x


def _mask(b: GraphBuilder, cfg: dict, batch: int, tokens: int) -> Tensor | None:
    """An additive mask held as a constant: all tokens valid (padding) or a causal triangle's shape.
    Its values do not change the time of the Add and Softmax, so it is zeros (never denormal)."""
    if cfg["mask"] == "none":
        return None
    shape = (batch, 1, 1, tokens) if cfg["mask"] == "padding" else (1, 1, tokens, tokens)
    return Tensor(b._float_init(b._unique("attention_mask"), shape, "zeros", learnable=False), shape)


def build_transformer_torch(b: GraphBuilder, cfg: dict) -> Tensor:
    """Adds the encoder of ``cfg`` to ``b`` and returns its logits."""
    x = _embedding(b, cfg)
    mask = _mask(b, cfg, x.shape[0], x.shape[1])
    for _layer in range(cfg["depth"]):
        x = encoder_block(b, x, cfg, mask)
    if cfg["norm"] == "pre":
        x = b.layernorm(x, cfg["layer_norm_eps"])
    return classifier_head(b, b.gather(x, 0, axis=1), cfg)


def estimate_transformer_torch_size(cfg: dict) -> tuple[int, int]:
    return dry_size(build_transformer_torch, cfg)


def _sample_options(rng: np.random.Generator) -> dict:
    return {
        "norm": choice(rng, NORMS, (0.6, 0.4)),
        "mask": choice(rng, MASKS, (0.3, 0.4, 0.3)),
        "layer_norm_eps": float(choice(rng, (1e-12, 1e-6, 1e-5))),
    }


def sample_transformer_torch_config(rng: np.random.Generator, max_macs: float | None = None) -> dict:
    return sample_transformer_config(rng, max_macs, options=_sample_options, size=estimate_transformer_torch_size)
