"""The Performance Characterization Network (Sniper eq. 1-3) in PyTorch, and its training loop.

Training code only: torch is imported here and nowhere on the prediction path. Parameters leave as
a dict of numpy arrays whose layout :func:`sniper_onnx.predictors.graph.build_graph` turns into ONNX.

Target and loss: natural-log seconds with mean squared error. Latencies span four decades across
devices; an error in log time is a relative error, which is what a scheduler pays for, and it keeps
a 1 ms phone and a 1 s batch-256 GPU equally weighted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import torch
from torch import nn


@dataclass
class PCNConfig:
    attention_dim: int = 8
    hidden: tuple = (128, 64)
    embedding: int = 8  # H: width of F(Attn(x_n)) and of the device vector it is multiplied with
    # L extra network-embedding columns that are a plain linear projection of the normalized
    # (log) features, unbounded: a skip path beside the sigmoid-bounded MLP, so log time can grow
    # with log MACs beyond the training range instead of saturating (docs/predictor.md). 0 = paper.
    linear: int = 4
    epochs: int = 40
    # Small databases give one or two batches an epoch; training runs at least this many optimizer
    # steps (more epochs) so a 200-network table is not left after 60 steps, barely past its init.
    min_steps: int = 3000
    batch_size: int = 512
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    seed: int = 0


class FeatureAttention(nn.Module):
    """Each scalar feature becomes a token; scaled dot-product self-attention mixes them (eq. 1)."""

    def __init__(self, prefix: str, width: int, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.prefix = prefix
        self.dim = dim

        def init(*shape: int, scale: float) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=generator) * scale)

        self.embed_w = init(width, dim, scale=1.0)
        self.embed_b = init(width, dim, scale=0.1)
        self.wq, self.wk, self.wv = (init(dim, dim, scale=1 / math.sqrt(dim)) for _ in range(3))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        tokens = z.unsqueeze(2) * self.embed_w + self.embed_b
        scores = (tokens @ self.wq) @ (tokens @ self.wk).transpose(1, 2) / math.sqrt(self.dim)
        attended = torch.softmax(scores, dim=-1) @ (tokens @ self.wv) + tokens
        return attended.reshape(z.shape[0], -1)

    def export(self) -> Dict[str, np.ndarray]:
        names = ("embed_w", "embed_b", "wq", "wk", "wv")
        return {f"{self.prefix}_{n}": getattr(self, n).detach().double().numpy() for n in names}


class Dense(nn.Module):
    def __init__(self, name: str, fan_in: int, fan_out: int, generator: torch.Generator) -> None:
        super().__init__()
        self.name = name
        self.w = nn.Parameter(torch.randn(fan_in, fan_out, generator=generator) * math.sqrt(2.0 / fan_in))
        self.b = nn.Parameter(torch.zeros(fan_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + self.b

    def export(self) -> Dict[str, np.ndarray]:
        return {f"{self.name}_w": self.w.detach().double().numpy(), f"{self.name}_b": self.b.detach().double().numpy()}


class PCN(nn.Module):
    def __init__(self, n_net: int, n_dev: int, config: PCNConfig) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(config.seed)
        self.net_attention = FeatureAttention("net", n_net, config.attention_dim, gen)
        widths = [n_net * config.attention_dim, *config.hidden, config.embedding]
        self.mlp = nn.ModuleList(Dense(f"net_fc{i}", a, b, gen) for i, (a, b) in enumerate(zip(widths, widths[1:])))
        self.linear = nn.Parameter(torch.randn(n_net, config.linear, generator=gen) * 0.1 / math.sqrt(n_net)) if config.linear else None
        self.dev_attention = FeatureAttention("dev", n_dev, config.attention_dim, gen)
        self.dev_fc = Dense("dev_fc", n_dev * config.attention_dim, config.embedding + config.linear + 1, gen)
        self.out_bias = nn.Parameter(torch.zeros(()))

    def network_embedding(self, z_net: torch.Tensor) -> torch.Tensor:
        hidden = self.net_attention(z_net)
        for i, layer in enumerate(self.mlp):
            hidden = layer(hidden)
            if i < len(self.mlp) - 1:
                hidden = torch.relu(hidden)
        bounded = 2 * torch.sigmoid(hidden) - 1
        return bounded if self.linear is None else torch.cat([bounded, z_net @ self.linear], dim=1)

    def device_embedding(self, z_dev: torch.Tensor) -> torch.Tensor:
        return self.dev_fc(self.dev_attention(z_dev))

    @staticmethod
    def combine(net: torch.Tensor, dev: torch.Tensor) -> torch.Tensor:
        return (net * dev[:, :-1]).sum(1) + dev[:, -1]

    def export(self) -> Dict[str, np.ndarray]:
        params: Dict[str, np.ndarray] = {}
        for module in (self.net_attention, self.dev_attention, self.dev_fc, *self.mlp):
            params.update(module.export())
        params["out_bias"] = np.array(self.out_bias.item())
        if self.linear is not None:
            params["net_linear_w"] = self.linear.detach().double().numpy()
        return params


def normalization(net_raw: np.ndarray, dev_raw: np.ndarray) -> Dict[str, np.ndarray]:
    logged = np.log1p(np.maximum(net_raw, 0))
    def safe_std(x: np.ndarray) -> np.ndarray:
        std = x.std(axis=0)
        return np.where(std > 1e-9, std, 1.0)
    return {
        "net_mean": logged.mean(axis=0), "net_std": safe_std(logged),
        "dev_mean": dev_raw.mean(axis=0), "dev_std": safe_std(dev_raw),
    }


def train_pcn(
    net_raw: np.ndarray,
    dev_raw: np.ndarray,
    pairs_net: np.ndarray,
    pairs_dev: np.ndarray,
    log_seconds: np.ndarray,
    config: Optional[PCNConfig] = None,
    progress: Optional[Callable[[int, float], None]] = None,
) -> Dict[str, np.ndarray]:
    """Fit the PCN on (network i, device j, log seconds) triples; returns the numpy parameters.

    Networks and devices are given once each (``net_raw`` [N_nets, F_n], ``dev_raw`` [N_dev, F_d]) and
    the triples index them, so a network measured on nine devices is embedded once per batch.
    """
    config = config or PCNConfig()
    threads = torch.get_num_threads()
    # Small matrices: one thread is faster than several spinning on a shared machine.
    torch.set_num_threads(1)
    try:
        return _train(net_raw, dev_raw, pairs_net, pairs_dev, log_seconds, config, progress)
    finally:
        torch.set_num_threads(threads)


def _train(net_raw, dev_raw, pairs_net, pairs_dev, log_seconds, config: PCNConfig, progress) -> Dict[str, np.ndarray]:
    torch.manual_seed(config.seed)
    norm = normalization(net_raw, dev_raw)
    z_net = torch.tensor((np.log1p(np.maximum(net_raw, 0)) - norm["net_mean"]) / norm["net_std"], dtype=torch.float32)
    z_dev = torch.tensor((dev_raw - norm["dev_mean"]) / norm["dev_std"], dtype=torch.float32)
    model = PCN(net_raw.shape[1], dev_raw.shape[1], config)
    with torch.no_grad():
        model.out_bias.fill_(float(np.mean(log_seconds)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    # Batches are groups of networks with all their measured devices: each network is embedded once
    # per epoch however many devices measured it.
    by_network = np.argsort(pairs_net, kind="stable")
    starts = np.searchsorted(pairs_net[by_network], np.arange(net_raw.shape[0] + 1))
    measured = np.flatnonzero(np.diff(starts) > 0)
    pairs_per_net = max(1.0, len(pairs_net) / max(1, len(measured)))
    # At least 8 batches an epoch: a whole small table in one batch is one step per epoch.
    nets_per_batch = max(1, min(int(config.batch_size / pairs_per_net), math.ceil(len(measured) / 8)))
    steps_per_epoch = math.ceil(len(measured) / nets_per_batch)
    epochs = max(config.epochs, math.ceil(config.min_steps / steps_per_epoch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate, total_steps=epochs * steps_per_epoch)
    i_dev = torch.tensor(pairs_dev, dtype=torch.long)
    target = torch.tensor(log_seconds, dtype=torch.float32)
    rng = np.random.default_rng(config.seed)
    for epoch in range(epochs):
        order = rng.permutation(measured)
        total = 0.0
        for start in range(0, len(order), nets_per_batch):
            nets = order[start : start + nets_per_batch]
            rows = np.concatenate([by_network[starts[n] : starts[n + 1]] for n in nets])
            net_index = torch.tensor(np.repeat(np.arange(len(nets)), np.diff(starts)[nets]))
            rows_t = torch.tensor(rows)
            devs, dev_index = torch.unique(i_dev[rows_t], return_inverse=True)
            net_embedding = model.network_embedding(z_net[torch.tensor(nets)])[net_index]
            dev_embedding = model.device_embedding(z_dev[devs])[dev_index]
            prediction = model.combine(net_embedding, dev_embedding) + model.out_bias
            loss = torch.mean((prediction - target[rows_t]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(rows)
        if progress:
            # Reported on the requested scale, so a progress bar of config.epochs ends at its end.
            progress(min(config.epochs - 1, epoch * config.epochs // epochs), total / len(target))
    params = model.export()
    params.update(norm)
    embed_width = config.embedding + 1
    params["slot_delta"] = np.zeros((0, embed_width))
    params["slot_trim_w"] = np.zeros((net_raw.shape[1], 0))
    params["slot_trim_b"] = np.zeros(0)
    params["slot_power"] = np.zeros(0)
    params["slot_node_power"] = np.zeros(0)
    params["slot_roofline_only"] = np.zeros(0)
    params["slot_roofline"] = np.zeros((0, 3))
    params["slot_roofline_call"] = np.zeros(0)
    return params


def torch_forward(params: Dict[str, np.ndarray], net_raw: np.ndarray, dev_raw: np.ndarray) -> np.ndarray:
    """Seconds from the torch modules rebuilt from ``params`` (slot 0 only); the export round-trip test."""
    n_net, n_dev = params["net_mean"].shape[0], params["dev_mean"].shape[0]
    layers = sorted(k[:-2] for k in params if k.startswith("net_fc") and k.endswith("_w"))
    linear = params["net_linear_w"].shape[1] if "net_linear_w" in params else 0
    config = PCNConfig(
        attention_dim=params["net_wq"].shape[0],
        hidden=tuple(params[f"{name}_w"].shape[1] for name in layers[:-1]),
        embedding=params["dev_fc_w"].shape[1] - 1 - linear,
        linear=linear,
    )
    model = PCN(n_net, n_dev, config)
    with torch.no_grad():
        for module in (model.net_attention, model.dev_attention):
            for n in ("embed_w", "embed_b", "wq", "wk", "wv"):
                getattr(module, n).copy_(torch.tensor(params[f"{module.prefix}_{n}"]))
        for module in (model.dev_fc, *model.mlp):
            module.w.copy_(torch.tensor(params[f"{module.name}_w"]))
            module.b.copy_(torch.tensor(params[f"{module.name}_b"]))
        model.out_bias.fill_(float(params["out_bias"]))
        if linear:
            model.linear.copy_(torch.tensor(params["net_linear_w"]))
        z_net = torch.tensor((np.log1p(np.maximum(net_raw, 0)) - params["net_mean"]) / params["net_std"], dtype=torch.float32)
        z_dev = torch.tensor((dev_raw - params["dev_mean"]) / params["dev_std"], dtype=torch.float32)
        log_t = model.combine(model.network_embedding(z_net), model.device_embedding(z_dev)) + model.out_bias
    return np.exp(log_t.double().numpy())
