"""Reference of ``linear_scan``: h[t] = a[t] h[t-1] + b[t] as a plain loop over time."""
from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = ["linear_scan"]


def linear_scan(a: Union[float, torch.Tensor], b: torch.Tensor, h0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Plain time loop in fp32 (autograd-differentiable); the oracle for every backend."""
    dtype = b.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    b = b.to(compute)
    T = b.shape[0]
    if isinstance(a, torch.Tensor):
        a = a.to(compute)
        if a.dim() == 0:
            a = a.reshape([1] * b.dim())
    h = torch.zeros(b.shape[1:], dtype=compute, device=b.device) if h0 is None else h0.to(compute)
    # unbind (not b[t]) keeps the autograd graph linear in T
    b_steps = b.unbind(0)
    if isinstance(a, torch.Tensor):
        a_steps = a.unbind(0) if a.shape[0] > 1 else [a[0]] * T
    else:
        a_steps = [a] * T
    out = []
    for t in range(T):
        h = a_steps[t] * h + b_steps[t]
        out.append(h)
    return torch.stack(out).to(dtype)
