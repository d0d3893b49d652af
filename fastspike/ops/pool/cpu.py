"""C++ launchers of max pooling (csrc/pool.cpp): the 2-D forward with narrow argmax indices, and the backward
scatter of the output gradient into the argmax positions (1-D, 2-D and 3-D alike: rows of plane offsets)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from ... import _ext
from .. import _backend
from ..bits import index_dtype

__all__ = ["max_pool2d", "max_pool_backward", "pool_out"]


def pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling output length."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def max_pool2d(x: torch.Tensor, k: Sequence[int], s: Sequence[int], p: Sequence[int], d: Sequence[int],
               ceil_mode: bool) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(output, plane-offset indices in ``index_dtype(H * W + 1)``) for contiguous CPU float32 [N, C, H, W] or
    [C, H, W]; None where torch's own kernel should run (other tensors, arguments torch rejects)."""
    if not (x.is_cpu and x.dtype == torch.float32 and x.is_contiguous() and x.dim() in (3, 4) and _ext.available()):
        return None
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, s, p, d
    H, W = x.shape[-2:]
    if min(kh, kw, sh, sw, dh, dw) < 1 or ph > kh // 2 or pw > kw // 2 or H * W >= 2 ** 31 - 1:
        return None
    OH, OW = pool_out(H, kh, sh, ph, dh, ceil_mode), pool_out(W, kw, sw, pw, dw, ceil_mode)
    if OH < 1 or OW < 1:
        return None
    planes = x.numel() // (H * W) if H * W else 0
    out = torch.empty(x.shape[:-2] + (OH, OW), dtype=torch.float32)
    idx = torch.empty(out.shape, dtype=index_dtype(H * W + 1))
    if out.numel():
        _ext.get().max_pool2d(x.data_ptr(), out.data_ptr(), idx.data_ptr(), idx.element_size(), planes, H, W, OH, OW,
                              kh, kw, sh, sw, ph, pw, dh, dw, _backend.num_threads())
    return out, idx


def max_pool_backward(idx: torch.Tensor, g: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """gx [rows, cols] = 0, then gx[r, idx[r, j]] += g[r, j] in the order of j (scatter_add_'s order, so the sums
    are torch's to the bit); idx int16/int32, g float32."""
    gx = torch.empty((rows, cols), dtype=torch.float32)
    g2, idx2 = g.contiguous(), idx.contiguous()
    _ext.get().max_pool_backward(idx2.data_ptr(), idx2.element_size(), g2.data_ptr(), gx.data_ptr(), rows,
                                 idx2.numel() // rows, cols, _backend.num_threads())
    return gx
