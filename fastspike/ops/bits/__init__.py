"""Bit-packed spikes: ``pack_bits`` / ``unpack_bits`` / ``spike_stats``, and the compact storage of tensors kept for
the backward pass (``compact`` / ``restore``, saved.py).

``pack_bits(x)`` packs the last dimension, [*, n] -> uint8 [*, ceil(n / 8)] (bit j of byte b = element 8 b + j,
rows padded with zero bits) and raises ValueError when x holds a value other than 0 and 1, so that
``unpack_bits(pack_bits(x), n)`` is exact. Backends: 'cpp' (csrc/bits.cpp, CPU), 'triton' (kernels/bits.py,
CUDA), 'torch' (``reference.pack_bits``). The check costs nothing on the CPU; on CUDA it is one device-to-host
synchronisation, made only when allowed: not under torch.compile and not while a CUDA graph is being
captured (there, and on the 'torch' backend under torch.compile, a value other than 0 and 1 packs as 1).
``spike_stats`` returns Python numbers, so it always reads its answer back to the host.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch

from .. import _backend, _validate, reference
from .._contract import opaque
from . import cpu
from .known import known_binary, mark_binary
from .library import NOT_BINARY, pack, unpack
from .saved import BITS, BYTES, MIN_NUMEL, Compacted, compact, index_dtype, narrow_indices, restore, widen_indices

__all__ = ["pack_bits", "unpack_bits", "spike_stats", "compact", "restore", "Compacted", "narrow_indices",
           "widen_indices", "index_dtype", "BITS", "BYTES", "MIN_NUMEL", "mark_binary", "known_binary"]


def may_sync(t: torch.Tensor) -> bool:
    """Whether a check may read a device value back to the host: not while tracing or inside a torch.func transform
    (``_contract.opaque``), not while capturing."""
    if opaque(t):
        return False
    return not (t.is_cuda and torch.cuda.is_current_stream_capturing())


def pack_bits(x: torch.Tensor, backend: Optional[str] = "auto") -> torch.Tensor:
    """Pack a binary tensor [*, n] into uint8 [*, ceil(n / 8)] (bit j of byte b = element 8 b + j).

    Raises ValueError when x holds a value other than 0 and 1 (the round trip would not be exact); see the
    module docstring for when that check runs on CUDA.
    """
    op = "pack_bits"
    _validate.tensor(op, "x", x)
    if x.dim() == 0:
        raise ValueError("pack_bits: x must have at least one dimension, but got a 0-d tensor.")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    lead, n = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(math.prod(lead), n)
    be = _backend.resolve(backend, [x2], op)
    if x2.numel() == 0:
        return torch.zeros((*lead, (n + 7) // 8), dtype=torch.uint8, device=x.device)
    bits, flag = pack(x2, be)
    if be != "cpp" and may_sync(x2):
        bad = bool(flag.item()) if flag is not None else not reference.is_binary(x2)
        if bad:
            raise ValueError(NOT_BINARY)
    return bits.reshape(*lead, bits.shape[-1])


def unpack_bits(bits: torch.Tensor, n: int, dtype: torch.dtype = torch.float32,
                backend: Optional[str] = "auto") -> torch.Tensor:
    """Inverse of :func:`pack_bits`: uint8 [*, ceil(n / 8)] -> [*, n] of 0/1 in ``dtype``."""
    op = "unpack_bits"
    if not isinstance(bits, torch.Tensor) or bits.dtype != torch.uint8:
        raise TypeError(f"unpack_bits: bits must be a torch.uint8 tensor, but got "
                        f"{getattr(bits, 'dtype', type(bits).__name__)}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"unpack_bits: n must be an int >= 0 (the unpacked length), but got {n!r}.")
    if bits.dim() == 0 or bits.shape[-1] != (n + 7) // 8:
        raise ValueError(f"unpack_bits: bits must have shape [*, ceil(n/8)] = [*, {(n + 7) // 8}] for n={n}, "
                         f"but got {tuple(bits.shape)}.")
    lead = bits.shape[:-1]
    b2 = bits.reshape(math.prod(lead), bits.shape[-1])
    probe = torch.empty(0, dtype=torch.float32, device=bits.device)
    be = _backend.resolve(backend, [probe], op)
    if b2.numel() == 0 or n == 0:
        return torch.zeros((*lead, n), dtype=dtype, device=bits.device)
    return unpack(b2, n, dtype, be).reshape(*lead, n)


def spike_stats(x: torch.Tensor, backend: Optional[str] = "auto") -> Tuple[float, bool]:
    """(fraction of nonzero elements, whether every value is 0 or 1), in one pass on the CPU. Returns Python
    numbers: on CUDA this reads the answer back to the host (a synchronisation)."""
    _validate.tensor("spike_stats", "x", x)
    if x.numel() == 0:
        return 0.0, True
    be = _backend.resolve(backend, [x], "spike_stats", cpp_dtypes=(torch.float32,))
    if be == "cpp":
        nnz, ok = cpu.stats(x)
        return nnz / x.numel(), ok
    return reference.spike_stats(x)
