"""C++ launchers of the bit primitives (csrc/bits.cpp: spike_pack / spike_unpack / spike_stats; csrc/saved.cpp:
compact_saved). Inputs are made contiguous float32 here; outputs are fresh CPU tensors."""
from __future__ import annotations

from typing import Tuple

import torch

from ... import _ext
from .. import _alloc, _backend

__all__ = ["pack", "unpack", "stats", "compact", "unpack_into"]


def pack(x2: torch.Tensor) -> Tuple[torch.Tensor, bool]:
    """[rows, cols] -> (uint8 [rows, ceil(cols / 8)], every value 0 or 1). The bits hold x != 0 either way."""
    C = _ext.get()
    x2 = _alloc.f32(x2)
    rows, cols = x2.shape
    bits = torch.empty((rows, (cols + 7) // 8), dtype=torch.uint8)
    ok = C.spike_pack(x2.data_ptr(), bits.data_ptr(), rows, cols, _backend.num_threads()) if bits.numel() else True
    return bits, bool(ok)


def unpack(bits: torch.Tensor, cols: int) -> torch.Tensor:
    """uint8 [rows, ceil(cols / 8)] -> float32 [rows, cols] of 0/1."""
    out = torch.empty((bits.shape[0], cols), dtype=torch.float32)
    if out.numel():
        unpack_into(bits, out)
    return out


def unpack_into(bits: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Unpack ``bits`` (rows of ceil(cols / 8) bytes) into the contiguous float32 ``out`` viewed as [rows, cols]."""
    C = _ext.get()
    bits = bits.contiguous()
    rows = bits.shape[0] if bits.dim() == 2 else 1
    cols = out.numel() // rows if rows else 0
    C.spike_unpack(bits.data_ptr(), out.data_ptr(), rows, cols, _backend.num_threads())
    return out


def stats(x: torch.Tensor) -> Tuple[int, bool]:
    """(number of nonzeros, every value 0 or 1) in one pass."""
    x = _alloc.f32(x)
    nnz, ok = _ext.get().spike_stats(x.data_ptr(), x.numel(), _backend.num_threads())
    return int(nnz), bool(ok)


def compact(t: torch.Tensor) -> Tuple[int, int, torch.Tensor, torch.Tensor]:
    """Contiguous CPU float32 ``t`` -> (kind: 1 bits / 2 bytes / 0 neither, nonzeros, packed bits, uint8 values):
    one pass classifies and writes both forms (it stops early on a value that is neither)."""
    n = t.numel()
    bits = torch.empty(((n + 7) // 8,), dtype=torch.uint8)
    values = torch.empty((n,), dtype=torch.uint8)
    kind, nnz = _ext.get().compact_saved(t.data_ptr(), n, bits.data_ptr(), values.data_ptr(),
                                         _backend.num_threads())
    return int(kind), int(nnz), bits, values
