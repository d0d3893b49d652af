"""Lossless compact storage of activations kept for the backward pass.

Spiking networks keep many tensors for the backward that hold only 0 and 1 (spikes, stored here as 1 bit
each, 32x smaller than float32) or small non-negative integers (spike counts such as SEW ResNet's 'ADD'
block outputs, stored as one byte each, 4x smaller). ``compact`` decides which in one read pass and returns a
:class:`Compacted` record; ``restore`` gives back a tensor equal to the original (same dtype and device; a -0.0
comes back as 0.0), so gradients computed from it are unchanged.

Used by the synapse ops (``layer.Conv2d`` / ``layer.Linear`` save their input this way during CPU training),
the max-pooling op (``narrow_indices``) and ``fastspike.utils.pack_saved_spikes`` (every tensor that autograd
saves inside the context). Contiguous CPU float32 tensors take csrc/saved.cpp (one pass that stops early on
real values). Any other floating-point tensor is classified with torch operations only when the caller allows
it (``sync_ok``): on a GPU the answer costs a device-to-host synchronisation per tensor.
"""
from __future__ import annotations

from typing import NamedTuple, Tuple, Union

import torch

from ... import _ext
from .. import _backend
from . import cpu, library

__all__ = ["Compacted", "compact", "restore", "narrow_indices", "widen_indices", "MIN_NUMEL", "BITS", "BYTES"]

MIN_NUMEL = 4096  # smaller tensors are not worth a kernel call
BITS, BYTES = 1, 2


class Compacted(NamedTuple):
    """A tensor kept in a smaller exact form: ``kind`` BITS (``payload``: packed bits, 8 elements a byte) or BYTES
    (``payload``: one uint8 per element), with the original ``shape``, number of nonzeros ``nnz`` and ``dtype``."""
    kind: int
    payload: torch.Tensor
    shape: torch.Size
    nnz: int
    dtype: torch.dtype

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _kind_torch(t: torch.Tensor) -> Tuple[int, int]:
    """(kind, nonzeros) of any floating-point tensor with torch operations (the oracle of the C++ pass)."""
    nz = t != 0
    binary = bool(((t == 1) | ~nz).all())
    if not binary and not bool(((t >= 0) & (t <= 255) & (t == torch.floor(t))).all()):  # NaN fails every test
        return 0, 0
    return (BITS if binary else BYTES), int(nz.sum())


def compact(t: torch.Tensor, min_numel: int = MIN_NUMEL, sync_ok: bool = False) -> Union[torch.Tensor, Compacted]:
    """``t`` itself, or a :class:`Compacted` that ``restore`` turns back into a tensor equal to ``t``: BITS when
    every value is 0 or 1, BYTES when every value is an integer in [0, 255]. ``t`` must not require grad (pass
    ``t.detach()``). Tensors with fewer than ``min_numel`` elements, non-floating-point tensors, and (unless
    ``sync_ok``) tensors other than contiguous CPU float32 are returned unchanged."""
    if not t.is_floating_point() or t.numel() < max(1, min_numel):
        return t
    assert not t.requires_grad, "compact() takes a tensor that does not require grad (t.detach())"
    if t.dtype is torch.float32 and t.is_cpu and t.is_contiguous() and _ext.available():
        kind, nnz, bits, values = cpu.compact(t)
        if kind == BITS:
            return Compacted(BITS, bits, t.shape, nnz, t.dtype)
        if kind == BYTES:
            return Compacted(BYTES, values, t.shape, nnz, t.dtype)
        return t
    if not sync_ok:
        return t
    kind, nnz = _kind_torch(t)
    if kind == BITS:  # the device's kernel (the reference for dtypes the kernels do not take); t is binary
        flat = t.reshape(1, -1)
        packed = library.pack(flat, _backend.resolve("auto", [flat], "compact"))[0]
        return Compacted(BITS, packed.reshape(-1), t.shape, nnz, t.dtype)
    if kind == BYTES:
        return Compacted(BYTES, t.to(torch.uint8).reshape(-1), t.shape, nnz, t.dtype)
    return t


def restore(p: Union[torch.Tensor, Compacted]) -> torch.Tensor:
    """Inverse of :func:`compact`: a contiguous tensor of the original shape, dtype and device."""
    if isinstance(p, torch.Tensor):
        return p
    if p.kind == BYTES:
        return p.payload.to(p.dtype).view(p.shape)
    if p.payload.is_cpu and p.dtype is torch.float32 and _ext.available():
        return cpu.unpack_into(p.payload.view(1, -1), torch.empty(p.shape, dtype=torch.float32))
    probe = torch.empty(0, dtype=torch.float32, device=p.payload.device)
    backend = _backend.resolve("auto", [probe], "restore")
    return library.unpack(p.payload.view(1, -1), p.numel, p.dtype, backend).view(p.shape)


def narrow_indices(idx: torch.Tensor, bound: int) -> torch.Tensor:
    """Store int64 indices known to lie in [0, bound) in the narrowest signed integer dtype that holds them."""
    return idx.to(index_dtype(bound))


def index_dtype(bound: int) -> torch.dtype:
    """The narrowest signed integer dtype holding every value in [0, bound)."""
    for dt in (torch.int16, torch.int32):
        if bound <= torch.iinfo(dt).max + 1:
            return dt
    return torch.int64


def widen_indices(idx: torch.Tensor) -> torch.Tensor:
    return idx if idx.dtype is torch.int64 else idx.to(torch.int64)

