"""References of ``pack_bits`` / ``unpack_bits`` / ``spike_stats``: the bit layout written as plain tensor ops."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

__all__ = ["pack_bits", "unpack_bits", "spike_stats", "is_binary"]


def pack_bits(x: torch.Tensor) -> torch.Tensor:
    """[*, n] (nonzero = spike) -> uint8 [*, ceil(n / 8)], bit j of byte b = element 8 b + j (rows padded with 0)."""
    n = x.shape[-1]
    nb = (n + 7) // 8
    nz = (x != 0).to(torch.uint8)
    if nb * 8 != n:
        nz = F.pad(nz, (0, nb * 8 - n))
    nz = nz.reshape(*x.shape[:-1], nb, 8)
    weights = (2 ** torch.arange(8, device=x.device, dtype=torch.int32)).to(torch.uint8)
    return (nz * weights).sum(-1, dtype=torch.int32).to(torch.uint8)


def unpack_bits(bits: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [*, ceil(n / 8)] -> [*, n] of 0/1 in ``dtype``."""
    shifts = torch.arange(8, device=bits.device, dtype=torch.uint8)
    out = (bits.unsqueeze(-1) >> shifts) & 1
    return out.reshape(*bits.shape[:-1], bits.shape[-1] * 8)[..., :n].to(dtype)


def is_binary(x: torch.Tensor) -> bool:
    """Every value is 0 or 1 (NaN is not)."""
    return bool(((x == 0) | (x == 1)).all())


def spike_stats(x: torch.Tensor) -> Tuple[float, bool]:
    """(fraction of nonzero elements, every value 0 or 1)."""
    if x.numel() == 0:
        return 0.0, True
    return int(torch.count_nonzero(x)) / x.numel(), is_binary(x)
