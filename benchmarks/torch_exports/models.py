"""Small models as torch users write them, for benchmarks/bench_torch_exports.py.

Written by a report-only tester on 2026-11-30 (docs/predictor-measurements.md, "Models exported from
torch by a tester"): ``MODELS`` maps a name to (a function returning (module, example inputs),
opset). Weights are initialized like trained ones (``init``): He for convolutions and linear layers,
norms at unit statistics, so that no activation goes denormal.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.backends.mha.set_fastpath_enabled(False)


def init(m):
    for mod in m.modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)):
            if getattr(mod, "weight", None) is not None:
                nn.init.ones_(mod.weight)
            if getattr(mod, "bias", None) is not None:
                nn.init.zeros_(mod.bias)
            if getattr(mod, "running_mean", None) is not None:
                mod.running_mean.zero_(); mod.running_var.fill_(1.0)
    return m.eval()


def conv_block(cin, cout, norm, act, k=3, **kw):
    return [nn.Conv2d(cin, cout, k, padding=kw.pop("padding", k // 2), **kw), norm(cout), act()]


class Seq(nn.Sequential):
    pass


# --- model definitions: name -> (module, example inputs, opset, expected-MACs (None = skip), notes)
MODELS = {}


def reg(name, opset=17):
    def deco(fn):
        MODELS[name] = (fn, opset)
        return fn
    return deco


C, H = 64, 32  # common: 1x64x32x32


def cnn(norm, act, n=4, c=C, h=H):
    layers = []
    for i in range(n):
        layers += conv_block(c, c, norm, act)
    return nn.Sequential(*layers), (torch.randn(1, c, h, h),)


@reg("groupnorm_o21", 21)
def _():
    return cnn(lambda c: nn.GroupNorm(8, c), nn.ReLU)


@reg("groupnorm_o18", 18)
def _():
    return cnn(lambda c: nn.GroupNorm(8, c), nn.ReLU)


@reg("groupnorm_o17", 17)
def _():
    return cnn(lambda c: nn.GroupNorm(8, c), nn.ReLU)


@reg("instnorm_o17", 17)
def _():
    return cnn(lambda c: nn.InstanceNorm2d(c, affine=True), nn.ReLU)


class LNChannelsLast(nn.Module):
    def __init__(self, c):
        super().__init__(); self.ln = nn.LayerNorm(c)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@reg("ln_chlast_o17", 17)
def _():
    return cnn(LNChannelsLast, nn.GELU)


@reg("lrn_o17", 17)
def _():
    return cnn(lambda c: nn.LocalResponseNorm(5), nn.ReLU)


for actname, act in [("mish", nn.Mish), ("hardswish", nn.Hardswish), ("silu", nn.SiLU),
                     ("gelu", nn.GELU), ("gelu_tanh", lambda: nn.GELU(approximate="tanh")),
                     ("elu", nn.ELU), ("prelu", nn.PReLU), ("prelu_c", lambda: nn.PReLU(C)),
                     ("softplus", nn.Softplus), ("leaky", lambda: nn.LeakyReLU(0.1)),
                     ("relu6", nn.ReLU6), ("sigmoid", nn.Sigmoid), ("tanh", nn.Tanh)]:
    for op in (17, 20):
        if op == 20 and actname not in ("gelu", "gelu_tanh", "mish", "hardswish"):
            continue
        def mk(act=act):
            return cnn(nn.BatchNorm2d, act)
        MODELS[f"act_{actname}_o{op}"] = (mk, op)


class Up(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.c1 = nn.Conv2d(64, 64, 3, padding=1, stride=2)
        self.c2 = nn.Conv2d(64, 32, 3, padding=1)
        self.mode = mode

    def forward(self, x):
        y = F.relu(self.c1(x))
        if self.mode == "nearest":
            y = F.interpolate(y, scale_factor=2, mode="nearest")
        elif self.mode == "bilinear":
            y = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        elif self.mode == "bilinear_ac":
            y = F.interpolate(y, size=(32, 32), mode="bilinear", align_corners=True)
        elif self.mode == "upsample_mod":
            y = nn.Upsample(scale_factor=2)(y)
        return F.relu(self.c2(y))


for mode in ["nearest", "bilinear", "bilinear_ac", "upsample_mod"]:
    MODELS[f"up_{mode}"] = ((lambda mode=mode: (Up(mode), (torch.randn(1, 64, 32, 32),))), 17)


class Deconv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.d1 = nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1)
        self.d2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        return self.d2(F.relu(self.d1(F.relu(self.c(x)))))


@reg("deconv")
def _():
    return Deconv(), (torch.randn(1, 64, 32, 32),)


@reg("dilated")
def _():
    return nn.Sequential(nn.Conv2d(64, 64, 3, padding=2, dilation=2), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=4, dilation=4), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1)), (torch.randn(1, 64, 32, 32),)


@reg("grouped")
def _():
    return nn.Sequential(nn.Conv2d(64, 128, 1), nn.BatchNorm2d(128), nn.ReLU(),
                         nn.Conv2d(128, 128, 3, padding=1, groups=128), nn.BatchNorm2d(128), nn.ReLU(),
                         nn.Conv2d(128, 128, 3, padding=1, groups=8), nn.BatchNorm2d(128), nn.ReLU(),
                         nn.Conv2d(128, 64, 1)), (torch.randn(1, 64, 32, 32),)


@reg("conv1d")
def _():
    return nn.Sequential(nn.Conv1d(64, 128, 5, padding=2), nn.BatchNorm1d(128), nn.ReLU(),
                         nn.Conv1d(128, 128, 3, padding=1, stride=2), nn.ReLU(),
                         nn.Conv1d(128, 64, 3, padding=2, dilation=2)), (torch.randn(1, 64, 512),)


@reg("conv3d")
def _():
    return nn.Sequential(nn.Conv3d(8, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv3d(16, 16, 3, padding=1, stride=2), nn.ReLU(),
                         nn.Conv3d(16, 8, 1)), (torch.randn(1, 8, 16, 32, 32),)


class PS(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(64, 256, 3, padding=1)
        self.ps = nn.PixelShuffle(2)
        self.c2 = nn.Conv2d(64, 32, 3, padding=1)

    def forward(self, x):
        return self.c2(F.relu(self.ps(self.c1(x))))


@reg("pixelshuffle")
def _():
    return PS(), (torch.randn(1, 64, 16, 16),)


class Pads(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(64, 64, 3)
        self.c2 = nn.Conv2d(64, 64, 3)
        self.c3 = nn.Conv2d(64, 64, 3)

    def forward(self, x):
        x = F.relu(self.c1(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        x = F.relu(self.c2(F.pad(x, (1, 1, 1, 1), mode="replicate")))
        x = self.c3(F.pad(x, (1, 1, 1, 1), mode="constant", value=0.0))
        return x


@reg("pads")
def _():
    return Pads(), (torch.randn(1, 64, 32, 32),)


class RNN(nn.Module):
    def __init__(self, kind):
        super().__init__()
        cls = nn.LSTM if kind == "lstm" else nn.GRU
        self.rnn = cls(128, 256, num_layers=2, batch_first=True)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1])


@reg("lstm")
def _():
    return RNN("lstm"), (torch.randn(1, 32, 128),)


@reg("gru")
def _():
    return RNN("gru"), (torch.randn(1, 32, 128),)


class BiLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(128, 128, bidirectional=True)

    def forward(self, x):
        return self.rnn(x)[0]


@reg("bilstm")
def _():
    return BiLSTM(), (torch.randn(32, 1, 128),)


class MHA(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(128, 4, batch_first=True)
        self.fc = nn.Linear(128, 128)

    def forward(self, x):
        return self.fc(self.mha(x, x, x, need_weights=False)[0])


@reg("mha")
def _():
    return MHA(), (torch.randn(1, 64, 128),)


class SDPA(nn.Module):
    def __init__(self, d=128, h=4, causal=False):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d); self.o = nn.Linear(d, d); self.h = h; self.causal = causal

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.o(y.transpose(1, 2).reshape(b, t, d))


@reg("sdpa")
def _():
    return SDPA(), (torch.randn(1, 64, 128),)


@reg("sdpa_causal")
def _():
    return SDPA(causal=True), (torch.randn(1, 64, 128),)


class Ein(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(128, 256) / 11.3)
        self.w2 = nn.Parameter(torch.randn(256, 128) / 16)

    def forward(self, x):
        y = torch.relu(torch.einsum("btd,de->bte", x, self.w))
        a = torch.einsum("bte,bse->bts", y, y)
        y = torch.einsum("bts,bse->bte", torch.softmax(a / 16, -1), y)
        return torch.einsum("bte,ed->btd", y, self.w2)


@reg("einsum")
def _():
    return Ein(), (torch.randn(1, 64, 128),)


@reg("transformer_o17", 17)
def _():
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, batch_first=True), 2,
                                 enable_nested_tensor=False), (torch.randn(1, 64, 128),)


@reg("transformer_gelu_o20", 20)
def _():
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, batch_first=True,
                                                            activation="gelu", norm_first=True), 2,
                                 enable_nested_tensor=False), (torch.randn(1, 64, 128),)


class Pools(nn.Module):
    def __init__(self, target):
        super().__init__()
        self.c1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.mp = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.c2 = nn.Conv2d(64, 128, 3, padding=1)
        self.ap = nn.AdaptiveAvgPool2d(target)
        self.fc = nn.Linear(128 * target * target, 10)

    def forward(self, x):
        x = self.mp(F.relu(self.c1(x)))
        x = self.ap(F.relu(self.c2(x)))
        return self.fc(torch.flatten(x, 1))


@reg("pool_adapt7")
def _():
    return Pools(7), (torch.randn(1, 3, 112, 112),)


@reg("pool_adapt1")
def _():
    return Pools(1), (torch.randn(1, 3, 112, 112),)


class AvgCeil(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(64, 64, 3, padding=1)
        self.ap = nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False)
        self.c2 = nn.Conv2d(64, 64, 3, padding=1)
        self.mp = nn.MaxPool2d(2, 2, ceil_mode=True)

    def forward(self, x):
        return self.mp(self.c2(self.ap(F.relu(self.c1(x)))))


@reg("pool_ceil")
def _():
    return AvgCeil(), (torch.randn(1, 64, 33, 33),)


class SE(nn.Module):
    def __init__(self, c=64):
        super().__init__()
        self.c = nn.Conv2d(c, c, 3, padding=1)
        self.f1 = nn.Conv2d(c, c // 4, 1); self.f2 = nn.Conv2d(c // 4, c, 1)

    def forward(self, x):
        y = F.relu(self.c(x))
        s = torch.sigmoid(self.f2(F.relu(self.f1(y.mean((2, 3), keepdim=True)))))
        return y * s


@reg("se_block")
def _():
    return nn.Sequential(SE(), SE(), SE()), (torch.randn(1, 64, 32, 32),)


class ChunkCat(nn.Module):
    """chunk / cat / split, like CSP / GhostNet blocks."""
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(64, 128, 1)
        self.c2 = nn.Conv2d(64, 64, 3, padding=1)
        self.c3 = nn.Conv2d(128, 64, 1)

    def forward(self, x):
        a, b = self.c1(x).chunk(2, 1)
        b = F.silu(self.c2(b))
        return self.c3(torch.cat([a, b], 1))


@reg("chunkcat")
def _():
    return nn.Sequential(ChunkCat(), ChunkCat()), (torch.randn(1, 64, 32, 32),)



class ConvSoftmax(nn.Module):
    """Three 1x1 convolutions, each followed by a Softmax over ``dim`` (1: over the channels, as a
    segmentation head does; -1: over the last axis)."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.convs = nn.ModuleList([nn.Conv2d(64, 64, 1) for _ in range(3)])

    def forward(self, x):
        for conv in self.convs:
            x = torch.softmax(conv(x), dim=self.dim)
        return x


@reg("softmax_channels")
def _():
    return ConvSoftmax(1), (torch.randn(1, 64, 64, 64),)


@reg("softmax_last")
def _():
    return ConvSoftmax(-1), (torch.randn(1, 64, 64, 64),)


class Conv3dHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(8, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv3d(16, 16, 3, padding=1, stride=2), nn.ReLU(),
                                      nn.Conv3d(16, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool3d(1))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


@reg("conv3d_head")
def _():
    return Conv3dHead(), (torch.randn(1, 8, 16, 32, 32),)
