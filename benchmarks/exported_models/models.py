"""Small torch models written as people write them, for the exports that docs/analyzer.md and
docs/predictor-measurements.md quote ("Exporters' decompositions", "Quantized models", "Transformers exported
from torch"). Imported by build.py; nothing here runs on import."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ------------------------------------------------------------------ Hugging Face-style BERT
def gelu_hf(x):  # Hugging Face's original erf GELU, `x * 0.5 * (1 + erf(x / sqrt(2)))`
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class BertLayer(nn.Module):
    def __init__(s, d, h, ff, eps=1e-12):
        super().__init__()
        s.h, s.dh = h, d // h
        s.q, s.k, s.v, s.o = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        s.ln1 = nn.LayerNorm(d, eps=eps)
        s.i, s.out = nn.Linear(d, ff), nn.Linear(ff, d)
        s.ln2 = nn.LayerNorm(d, eps=eps)
        s.drop = nn.Dropout(0.1)

    def split(s, x):
        b, t, _ = x.shape
        return x.view(b, t, s.h, s.dh).permute(0, 2, 1, 3)

    def forward(s, x, ext_mask):
        q, k, v = s.split(s.q(x)), s.split(s.k(x)), s.split(s.v(x))
        sc = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(s.dh) + ext_mask
        p = s.drop(F.softmax(sc, dim=-1))
        c = torch.matmul(p, v).permute(0, 2, 1, 3).contiguous()
        c = c.view(c.shape[0], c.shape[1], -1)
        x = s.ln1(s.drop(s.o(c)) + x)
        y = s.out(gelu_hf(s.i(x)))
        return s.ln2(s.drop(y) + x)


class Bert(nn.Module):
    """Token, position and token-type embeddings, LayerNorm, post-norm layers, additive mask, pooler."""

    def __init__(s, vocab=1000, d=64, h=4, ff=256, L=2, maxpos=64):
        super().__init__()
        s.we, s.pe, s.te = nn.Embedding(vocab, d), nn.Embedding(maxpos, d), nn.Embedding(2, d)
        s.ln = nn.LayerNorm(d, eps=1e-12)
        s.drop = nn.Dropout(0.1)
        s.layers = nn.ModuleList(BertLayer(d, h, ff) for _ in range(L))
        s.pool = nn.Linear(d, d)

    def forward(s, input_ids, attention_mask):
        t = input_ids.shape[1]
        pos = torch.arange(t, device=input_ids.device).unsqueeze(0)
        x = s.we(input_ids) + s.pe(pos) + s.te(torch.zeros_like(input_ids))
        x = s.drop(s.ln(x))
        ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in s.layers:
            x = layer(x, ext)
        return x, torch.tanh(s.pool(x[:, 0]))


# ------------------------------------------------------------------ GPT-2 (Conv1D as addmm)
def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class Conv1D(nn.Module):
    def __init__(s, nf, nx):
        super().__init__()
        s.nf = nf
        s.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        s.bias = nn.Parameter(torch.zeros(nf))

    def forward(s, x):
        size_out = x.size()[:-1] + (s.nf,)
        return torch.addmm(s.bias, x.view(-1, x.size(-1)), s.weight).view(size_out)


class GPT2Block(nn.Module):
    def __init__(s, d, h, n_ctx):
        super().__init__()
        s.h = h
        s.ln_1, s.ln_2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        s.c_attn, s.c_proj = Conv1D(3 * d, d), Conv1D(d, d)
        s.c_fc, s.mlp_proj = Conv1D(4 * d, d), Conv1D(d, 4 * d)
        s.register_buffer("bias", torch.tril(torch.ones(n_ctx, n_ctx, dtype=torch.bool)).view(1, 1, n_ctx, n_ctx))
        s.register_buffer("masked_bias", torch.tensor(-1e4))
        s.drop = nn.Dropout(0.1)

    def heads(s, x):
        b, t, d = x.shape
        return x.view(b, t, s.h, d // s.h).permute(0, 2, 1, 3)

    def attn(s, x):
        q, k, v = s.c_attn(x).split(x.shape[-1], dim=2)
        q, k, v = s.heads(q), s.heads(k), s.heads(v)
        w = torch.matmul(q, k.transpose(-1, -2)) / (float(v.size(-1)) ** 0.5)
        nd, ns = w.size(-2), w.size(-1)
        w = torch.where(s.bias[:, :, ns - nd:ns, :ns], w, s.masked_bias.to(w.dtype))
        w = s.drop(F.softmax(w, dim=-1))
        a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous()
        return s.drop(s.c_proj(a.view(a.shape[0], a.shape[1], -1)))

    def forward(s, x):
        x = x + s.attn(s.ln_1(x))
        return x + s.drop(s.mlp_proj(gelu_new(s.c_fc(s.ln_2(x)))))


class GPT2(nn.Module):
    def __init__(s, vocab=1000, d=64, h=4, L=2, n_ctx=64):
        super().__init__()
        s.wte, s.wpe = nn.Embedding(vocab, d), nn.Embedding(n_ctx, d)
        s.blocks = nn.ModuleList(GPT2Block(d, h, n_ctx) for _ in range(L))
        s.ln_f = nn.LayerNorm(d)

    def forward(s, input_ids):
        pos = torch.arange(input_ids.shape[1]).unsqueeze(0)
        x = s.wte(input_ids) + s.wpe(pos)
        for b in s.blocks:
            x = b(x)
        return s.ln_f(x)


# ------------------------------------------------------------------ LLaMA (RMSNorm, SiLU gate, rotary)
class LlamaRMSNorm(nn.Module):
    """As Hugging Face writes it, with the `.to(input_dtype)` Cast before the weight."""

    def __init__(s, d, eps=1e-6):
        super().__init__()
        s.weight = nn.Parameter(torch.ones(d))
        s.eps = eps

    def forward(s, x):
        dt = x.dtype
        x = x.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps)
        return s.weight * x.to(dt)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(s, d, h, ff):
        super().__init__()
        s.h, s.dh = h, d // h
        s.q, s.k, s.v, s.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        s.gate, s.up = nn.Linear(d, ff, bias=False), nn.Linear(d, ff, bias=False)
        s.down = nn.Linear(ff, d, bias=False)
        s.n1, s.n2 = LlamaRMSNorm(d), LlamaRMSNorm(d)

    def heads(s, x):
        b, t, _ = x.shape
        return x.view(b, t, s.h, s.dh).transpose(1, 2)

    def forward(s, x, cos, sin, mask):
        r = x
        x = s.n1(x)
        q, k, v = s.heads(s.q(x)), s.heads(s.k(x)), s.heads(s.v(x))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        a = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(s.dh) + mask
        a = F.softmax(a, dim=-1, dtype=torch.float32).to(q.dtype)
        o = torch.matmul(a, v).transpose(1, 2).reshape(x.shape)
        x = r + s.o(o)
        hn = s.n2(x)
        return x + s.down(F.silu(s.gate(hn)) * s.up(hn))


class Llama(nn.Module):
    def __init__(s, vocab=1000, d=64, h=4, ff=172, L=2):
        super().__init__()
        s.emb = nn.Embedding(vocab, d)
        s.layers = nn.ModuleList(LlamaBlock(d, h, ff) for _ in range(L))
        s.norm = LlamaRMSNorm(d)
        s.dh = d // h
        inv = 1.0 / (10000 ** (torch.arange(0, s.dh, 2).float() / s.dh))
        s.register_buffer("inv_freq", inv, persistent=False)

    def forward(s, input_ids):
        t = input_ids.shape[1]
        fr = torch.arange(t).float()[:, None] * s.inv_freq[None, :]
        e = torch.cat((fr, fr), dim=-1)
        cos, sin = e.cos()[None, None], e.sin()[None, None]
        i = torch.arange(t)
        mask = torch.where(i[None, :] > i[:, None], torch.tensor(float("-inf")), torch.tensor(0.0))[None, None]
        x = s.emb(input_ids)
        for layer in s.layers:
            x = layer(x, cos, sin, mask)
        return s.norm(x)


# ------------------------------------------------------------------ ViT (class token, learned positions)
class ViTBlock(nn.Module):
    def __init__(s, d, h, ff):
        super().__init__()
        s.h, s.dh = h, d // h
        s.n1, s.n2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        s.qkv, s.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        s.fc1, s.fc2, s.act = nn.Linear(d, ff), nn.Linear(ff, d), nn.GELU()

    def forward(s, x):
        b, t, d = x.shape
        qkv = s.qkv(s.n1(x)).reshape(b, t, 3, s.h, s.dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q @ k.transpose(-2, -1)) * (s.dh ** -0.5)).softmax(-1)
        x = x + s.proj((a @ v).transpose(1, 2).reshape(b, t, d))
        return x + s.fc2(s.act(s.fc1(s.n2(x))))


class ViT(nn.Module):
    def __init__(s, img=64, p=16, d=64, h=4, ff=256, L=2):
        super().__init__()
        s.pe = nn.Conv2d(3, d, p, p)
        n = (img // p) ** 2
        s.cls = nn.Parameter(torch.zeros(1, 1, d))
        s.pos = nn.Parameter(torch.randn(1, n + 1, d) * 0.02)
        s.blocks = nn.ModuleList(ViTBlock(d, h, ff) for _ in range(L))
        s.norm, s.head = nn.LayerNorm(d, eps=1e-6), nn.Linear(d, 10)

    def forward(s, x):
        x = s.pe(x).flatten(2).transpose(1, 2)
        x = torch.cat((s.cls.expand(x.shape[0], -1, -1), x), dim=1) + s.pos
        for b in s.blocks:
            x = b(x)
        return s.head(s.norm(x)[:, 0])


# ------------------------------------------------------------------ MobileNetV3 block (Hardswish, SE)
class SE3(nn.Module):
    def __init__(s, c, r=4):
        super().__init__()
        s.fc1, s.fc2 = nn.Conv2d(c, c // r, 1), nn.Conv2d(c // r, c, 1)

    def forward(s, x):
        return x * F.hardsigmoid(s.fc2(F.relu(s.fc1(F.adaptive_avg_pool2d(x, 1)))))


class MBV3(nn.Module):
    def __init__(s, c=16, e=64):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.Hardswish())
        s.exp = nn.Sequential(nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e), nn.Hardswish())
        s.dw = nn.Sequential(nn.Conv2d(e, e, 5, 1, 2, groups=e, bias=False), nn.BatchNorm2d(e), nn.Hardswish())
        s.se = SE3(e)
        s.proj = nn.Sequential(nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c))
        s.head = nn.Linear(c, 10)

    def forward(s, x):
        x = s.stem(x)
        x = x + s.proj(s.se(s.dw(s.exp(x))))
        return s.head(x.mean((2, 3)))


# ------------------------------------------------------------------ BERT-like encoder from nn.TransformerEncoderLayer
class Encoder(nn.Module):
    """Token + position embeddings, LayerNorm, post-norm GELU `nn.TransformerEncoderLayer`s."""

    def __init__(s, vocab=30522, d=256, heads=4, ff=1024, layers=4, seq=128):
        super().__init__()
        s.tokens, s.positions = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        s.norm = nn.LayerNorm(d, eps=1e-12)
        s.layers = nn.ModuleList(nn.TransformerEncoderLayer(d, heads, ff, dropout=0.0, activation="gelu",
                                                            batch_first=True, layer_norm_eps=1e-12)
                                 for _ in range(layers))
        s.register_buffer("ids", torch.arange(seq))

    def forward(s, input_ids):
        x = s.norm(s.tokens(input_ids) + s.positions(s.ids))
        for layer in s.layers:  # is_causal=False: traced directly, the layer fails to export
            x = layer(x, src_mask=None, is_causal=False)
        return x


# ------------------------------------------------------------------ Linear -> norm -> Linear micro nets
class Sandwich(nn.Module):
    """Linear(64, 64), `f`, Linear(64, 64); `f` reads the module's own weight `w` (64 elements)."""

    def __init__(s, f, d=64):
        super().__init__()
        s.a, s.b, s.f = nn.Linear(d, d), nn.Linear(d, d), f
        s.w = nn.Parameter(torch.randn(d) + 1.0)

    def forward(s, x):
        return s.b(s.f(s.a(x), s.w))


def rms_llama_cast(x, w):  # LlamaRMSNorm: float32 Cast at the start, `.to(input_dtype)` before the weight
    dt = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    return w * x.to(dt)


def rms_nocast(x, w):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


class ConvLNConv(nn.Module):
    """Conv(3->8, 3x3), LayerNorm over the last dim (16) with epsilon `eps`, Conv(8->8, 1x1); 16x16 input."""

    def __init__(s, eps):
        super().__init__()
        s.c, s.ln, s.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.LayerNorm([16], eps=eps), nn.Conv2d(8, 8, 1)

    def forward(s, x):
        return s.c2(s.ln(s.c(x)))


# ------------------------------------------------------------------ small CNNs and transformer for quantization
class CNN(nn.Module):
    def __init__(s):
        super().__init__()
        s.c1 = nn.Conv2d(3, 8, 3, padding=1)
        s.c2 = nn.Conv2d(8, 8, 3, padding=1)
        s.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        s.c3 = nn.Conv2d(8, 16, 1, stride=2)
        s.fc = nn.Linear(16, 10)

    def forward(s, x):
        y = torch.relu(s.c1(x))
        z = s.dw(torch.relu(s.c2(y))) + y
        z = torch.relu(s.c3(z)).mean((2, 3))
        return s.fc(z)


class CNN2(nn.Module):
    """LeakyRelu, MaxPool, Sigmoid, Concat, AveragePool, GlobalAveragePool: more QLinear* contrib ops."""

    def __init__(s):
        super().__init__()
        s.c1, s.c2, s.c3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1)
        s.fc = nn.Linear(16, 10)

    def forward(s, x):
        y = F.max_pool2d(F.leaky_relu(s.c1(x), 0.1), 2)
        z = torch.cat([torch.sigmoid(s.c2(y)), s.c3(y)], 1)
        z = F.adaptive_avg_pool2d(F.avg_pool2d(z, 2), 1).flatten(1)
        return s.fc(z)


class TF(nn.Module):
    def __init__(s):
        super().__init__()
        s.l = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        s.head = nn.Linear(32, 5)

    def forward(s, x):
        return s.head(s.l(x))


class ResBlock(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.a, s.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)

    def forward(s, x):
        return torch.relu(x + s.b(torch.relu(s.a(x))))


class Res(nn.Module):
    """A small ResNet for 112x112 inputs."""

    def __init__(s):
        super().__init__()
        s.stem = nn.Conv2d(3, 32, 3, stride=2, padding=1)
        s.b1, s.down, s.b2, s.b3 = ResBlock(32), nn.Conv2d(32, 64, 3, stride=2, padding=1), ResBlock(64), ResBlock(64)
        s.fc = nn.Linear(64, 100)

    def forward(s, x):
        x = s.b1(torch.relu(s.stem(x)))
        x = s.b3(s.b2(torch.relu(s.down(x))))
        return s.fc(x.mean((2, 3)))
