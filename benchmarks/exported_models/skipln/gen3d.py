"""Prototype generator variant (not in sniper_generator; usage: gen3d.py [OUT_DIR]): torch-style encoder on 3-D [B,T,D] tokens:
Linear = MatMul(x, W[K,N]) + Add(bias); attention with an additive mask [B,1,1,T]; post-norm (Add -> LN)
or pre-norm. He-init weights via GraphBuilder. Writes gen3d_post.onnx, gen3d_pre.onnx, gen3d_post_nomask.onnx."""
import sys, math, numpy as np, onnx
OUT = sys.argv[1] if len(sys.argv) > 1 else "/tmp/sniper-exported"
from sniper_generator.builder import GraphBuilder, Tensor

def linear3d(b, x, n, prefix):
    k = x.shape[-1]; name = b._unique(prefix)
    w = Tensor(b._float_init(f"{name}.weight", (k, n), "normal", math.sqrt(2.0 / k)), (k, n))
    y = b.matmul(x, w)
    return b.add(y, Tensor(b._float_init(f"{name}.bias", (n,), "zeros"), (n,)))

def block(b, x, heads, ff, post, mask):
    B, T, D = x.shape; dh = D // heads
    y = x if post else b.layernorm(x, 1e-12)
    q, k, v = (linear3d(b, y, D, p) for p in ("q", "k", "v"))
    sp = lambda t, perm: b.transpose(b.reshape(t, (B, T, heads, dh)), perm)
    s = b.scale(b.matmul(sp(q, (0, 2, 1, 3)), sp(k, (0, 2, 3, 1))), 1 / math.sqrt(dh))
    if mask is not None: s = b.add(s, mask)
    c = b.matmul(b.softmax(s), sp(v, (0, 2, 1, 3)))
    c = b.reshape(b.transpose(c, (0, 2, 1, 3)), (B, T, D))
    x = b.add(x, linear3d(b, c, D, "o"))
    if post: x = b.layernorm(x, 1e-12)
    y = x if post else b.layernorm(x, 1e-12)
    y = linear3d(b, b.activation(linear3d(b, y, ff, "fc1"), "gelu"), D, "fc2")
    x = b.add(x, y)
    return b.layernorm(x, 1e-12) if post else x

for name, post, use_mask in (("gen3d_post", True, True), ("gen3d_pre", False, True), ("gen3d_post_nomask", True, False)):
    b = GraphBuilder("generated", np.random.default_rng(0), True)
    B, T, F, D = 1, 128, 256, 256
    x = b.input("input", (B, T, F))
    x = linear3d(b, x, D, "embed")
    if post: x = b.layernorm(x, 1e-12)
    mask = b.parameter("mask", (B, 1, 1, T), 0.0) if use_mask else None
    for _ in range(4): x = block(b, x, 4, 1024, post, mask)
    if not post: x = b.layernorm(x, 1e-12)
    x = b.gemm(b.gather(x, 0, axis=1), 1000, prefix="head")
    b.output(x, "logits")
    onnx.save(b.build(), f"{OUT}/{name}.onnx"); print(name)
