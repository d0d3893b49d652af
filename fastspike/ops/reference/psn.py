"""Reference of ``psn``: S = Heaviside(band(W) X + B) as one addmm in fp32, then the surrogate module."""
from __future__ import annotations

import torch

__all__ = ["psn", "band_mask"]


def band_mask(T: int, k: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[T, T] matrix with ones where t - k < j <= t (row t, column j), zeros elsewhere."""
    ones = torch.ones((T, T), device=device, dtype=dtype)
    return torch.tril(ones) * torch.triu(ones, -(k - 1))


def psn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, surrogate_function,
                  band: int = 0) -> torch.Tensor:
    """Pure-PyTorch PSN: addmm over time in fp32, then the surrogate module (Heaviside forward)."""
    T = x.shape[0]
    dtype = x.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    w = weight.to(compute)
    if band > 0:
        w = w * band_mask(T, band, device=w.device, dtype=compute)
    h = torch.addmm(bias.to(compute).reshape(T, 1), w, x.reshape(T, -1).to(compute))
    return surrogate_function(h).to(dtype).view(x.shape)
