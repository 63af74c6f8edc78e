"""The kernel-sum path: a small MLP gives each layer node a time on a device; the network's time is
their sum. Trained end to end on whole-network latencies (no single-operator measurements needed).

Imports torch; never imported on the prediction path (the graph is rebuilt from numpy parameters by
:mod:`sniper_onnx.predictors.graph`).

Parameters (all ``kern_`` prefixed, float64 numpy):
- ``kern_mean``/``kern_std`` [D]: standardization of kernel rows (analysis.kernels);
- ``kern_dev_mean``/``kern_dev_std`` [F_d]: standardization of raw device features;
- ``kern_fc0_w`` [D, H], ``kern_fc0_dev_w`` [F_d, H], ``kern_fc0_b`` [H]: the first layer sees the node
  row and the device together;
- ``kern_fc1_w`` [H, H], ``kern_fc1_b`` [H], ``kern_out_w`` [H, 1], ``kern_out_b`` [1]: node log-seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np

Params = Dict[str, np.ndarray]


@dataclass
class KernelNetConfig:
    hidden: int = 64
    steps: int = 3000
    batch_pairs: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0


def _standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = x.std(0)
    return x.mean(0), np.where(std > 1e-9, std, 1.0)


def train_kernel_net(
    tables: Sequence[Optional[np.ndarray]],
    device_matrix: np.ndarray,
    pair_network: np.ndarray,
    pair_device: np.ndarray,
    log_seconds: np.ndarray,
    config: Optional[KernelNetConfig] = None,
    progress: Optional[Callable[[int, float], None]] = None,
) -> Params:
    """Fit on the pairs whose network has a kernel table; ``progress(step, loss)`` every 100 steps."""
    import torch

    config = config or KernelNetConfig()
    usable = np.array([tables[n] is not None and len(tables[n]) > 0 for n in pair_network])
    pair_network, pair_device, log_seconds = pair_network[usable], pair_device[usable], log_seconds[usable]
    if len(pair_network) == 0:
        raise ValueError("no training pair has a kernel table")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    rows = np.concatenate([tables[n] for n in np.unique(pair_network)])
    mean, std = _standardizer(rows.astype(np.float64))
    dev_mean, dev_std = _standardizer(device_matrix.astype(np.float64))
    z_tables = {int(n): torch.tensor(((tables[n] - mean) / std).astype(np.float32)) for n in np.unique(pair_network)}
    z_dev = torch.tensor(((device_matrix - dev_mean) / dev_std).astype(np.float32))
    width, hidden = rows.shape[1], config.hidden
    node_offset = float(np.median(log_seconds) - np.log(np.median([len(tables[n]) for n in pair_network])))

    fc0 = torch.nn.Linear(width, hidden)
    fc0_dev = torch.nn.Linear(device_matrix.shape[1], hidden, bias=False)
    fc1 = torch.nn.Linear(hidden, hidden)
    out = torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        out.bias.fill_(node_offset)
    modules = torch.nn.ModuleList([fc0, fc0_dev, fc1, out])
    optimizer = torch.optim.AdamW(modules.parameters(), config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=config.steps)
    target = torch.tensor(log_seconds, dtype=torch.float32)

    def network_log_seconds(batch: np.ndarray) -> "torch.Tensor":
        x = torch.cat([z_tables[int(pair_network[i])] for i in batch])
        owner = torch.cat([torch.full((len(z_tables[int(pair_network[i])]),), j) for j, i in enumerate(batch)])
        device_term = fc0_dev(z_dev[torch.tensor(pair_device[batch])])[owner]
        node = out(torch.relu(fc1(torch.relu(fc0(x) + device_term)))).squeeze(1)
        # log of a sum of exps per network; node log-times span far less than exp's range
        peak = node.detach().max()
        summed = torch.zeros(len(batch)).index_add(0, owner, torch.exp(node - peak))
        return torch.log(summed) + peak

    batch_size = min(config.batch_pairs, len(pair_network))
    for step in range(config.steps):
        batch = rng.choice(len(pair_network), batch_size, replace=False)
        loss = torch.mean((network_log_seconds(batch) - target[batch]) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None and (step + 1) % 100 == 0:
            progress(step + 1, float(loss))

    def numpy_of(tensor: "torch.Tensor") -> np.ndarray:
        return tensor.detach().numpy().astype(np.float64)

    return {
        "kern_mean": mean, "kern_std": std, "kern_dev_mean": dev_mean, "kern_dev_std": dev_std,
        "kern_fc0_w": numpy_of(fc0.weight).T, "kern_fc0_dev_w": numpy_of(fc0_dev.weight).T, "kern_fc0_b": numpy_of(fc0.bias),
        "kern_fc1_w": numpy_of(fc1.weight).T, "kern_fc1_b": numpy_of(fc1.bias),
        "kern_out_w": numpy_of(out.weight).T, "kern_out_b": numpy_of(out.bias),
    }


def kernel_log_seconds_numpy(params: Params, table: np.ndarray, device_vector: np.ndarray) -> float:
    """The same sum in numpy, for tests and for checking the ONNX graph."""
    z = (table - params["kern_mean"]) / params["kern_std"]
    z_dev = (device_vector - params["kern_dev_mean"]) / params["kern_dev_std"]
    h = np.maximum(z @ params["kern_fc0_w"] + z_dev @ params["kern_fc0_dev_w"] + params["kern_fc0_b"], 0)
    h = np.maximum(h @ params["kern_fc1_w"] + params["kern_fc1_b"], 0)
    node = (h @ params["kern_out_w"] + params["kern_out_b"])[:, 0]
    peak = node.max()
    return float(np.log(np.exp(node - peak).sum()) + peak)

