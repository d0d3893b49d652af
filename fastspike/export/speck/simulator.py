"""Bit-accurate, time-stepped integer IAF simulation of a Speck configuration (rules in
``fastspike.export.speck``)."""
from __future__ import annotations

import os
from typing import Union

import torch
import torch.nn.functional as F

from .config import SpeckConfig, load_config

__all__ = ["simulate"]


def _sum_pool(x: torch.Tensor, p: int) -> torch.Tensor:
    if p == 1:
        return x
    n, c, h, w = x.shape
    return x[:, :, : h // p * p, : w // p * p].reshape(n, c, h // p, p, w // p, p).sum(dim=(3, 5))


def simulate(config: Union[SpeckConfig, str, os.PathLike], spikes: torch.Tensor, return_all: bool = False):
    """Time-stepped integer IAF simulation of a Speck configuration (module docstring).

    spikes: input events per step [T, N, C, H, W] (non-negative integer counts). Returns the output core's
    spikes [T, N, f, h, w] (and every core's spikes with return_all=True). Exactly reproducible: integer
    arithmetic only (convolutions run in float64 on integers below 2**53, which is exact)."""
    cfg = config if isinstance(config, SpeckConfig) else load_config(os.fspath(config))
    if isinstance(spikes, torch.Tensor) and spikes.dim() == 3:
        spikes = spikes.reshape(*spikes.shape, 1, 1)  # dense models: [T, N, F] -> [T, N, F, 1, 1]
    if not isinstance(spikes, torch.Tensor) or spikes.dim() != 5:
        raise ValueError("simulate: spikes must be a tensor [T, N, C, H, W] (or [T, N, F] for dense models).")
    expected = tuple(cfg.input_shape) if len(cfg.input_shape) == 3 else (cfg.input_shape[0], 1, 1)
    if tuple(spikes.shape[2:]) != expected:
        raise ValueError(f"simulate: spikes have per-sample shape {tuple(spikes.shape[2:])}, the configuration "
                         f"expects {tuple(cfg.input_shape)}.")
    if bool((spikes < 0).any()) or not bool((spikes == spikes.round()).all()):
        raise ValueError("simulate: spikes must be non-negative integer event counts.")
    T, N = spikes.shape[:2]
    v = [None] * len(cfg.cores)
    outs = [[] for _ in cfg.cores]
    out_idx = [i for i, c in enumerate(cfg.cores) if any(d is None for d, _ in c.destinations)]
    with torch.no_grad():
        for t in range(T):
            x_in = spikes[t].to(torch.int64)
            cur = [None] * len(cfg.cores)
            for i, c in enumerate(cfg.cores):
                total = None
                for src, p in c.sources:
                    s = x_in if src < 0 else cur[src]
                    s = _sum_pool(s, p)
                    if s.shape[1:] != c.in_shape:
                        s = s.reshape(s.shape[0], *c.in_shape)
                    total = s if total is None else total + s
                a = F.conv2d(total.double(), c.weight_q.double(), None, c.stride, c.padding).round().to(torch.int64)
                if c.bias_q is not None:
                    a = a + c.bias_q.view(1, -1, 1, 1)
                vi = a if v[i] is None else v[i] + a
                vi = vi.clamp(-(2 ** 15), 2 ** 15 - 1)
                spk = vi >= c.threshold_q
                if c.reset == "zero":
                    vi = torch.where(spk, torch.zeros_like(vi), vi)
                else:
                    vi = vi - spk.to(torch.int64) * c.threshold_q
                vi = vi.clamp(min=-(2 ** 15))
                v[i] = vi
                cur[i] = spk.to(torch.int64)
                outs[i].append(cur[i])
    all_spikes = [torch.stack(o).to(torch.float32) for o in outs]
    last = all_spikes[out_idx[-1] if out_idx else -1]
    return (last, all_spikes) if return_all else last
