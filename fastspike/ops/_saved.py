"""Lossless compact storage of activations kept for the backward pass.

Spiking networks keep many tensors for the backward that hold only 0 and 1 (spikes, stored here as 1 bit
each, 32x smaller than float32) or small non-negative integers (spike counts such as SEW ResNet's 'ADD'
block outputs, stored as one byte each, 4x smaller). ``compact`` decides which in one read pass and
``restore`` gives back a tensor equal to the original (same dtype and device; a -0.0 comes back as 0.0), so
gradients computed from it are unchanged.

Used by the synapse layers (``layer.Conv2d`` / ``layer.Linear`` save their input this way during training),
the max-pooling layers (``narrow_indices``) and ``fastspike.utils.pack_saved_spikes`` (every tensor that
autograd saves inside the context). Contiguous CPU float32 tensors take csrc/saved.cpp (one pass that stops
early on real values). Any other floating-point tensor is classified with torch operations only when the
caller allows it (``sync_ok``): on a GPU the answer costs a device-to-host synchronisation per tensor.
"""
from __future__ import annotations

from typing import Tuple, Union

import torch

from .. import _ext
from . import _backend

__all__ = ["compact", "restore", "narrow_indices", "widen_indices", "MIN_NUMEL", "BITS", "BYTES"]

MIN_NUMEL = 4096  # smaller tensors are not worth a kernel call
BITS, BYTES = 1, 2


def _kind_torch(t: torch.Tensor) -> Tuple[int, int]:
    """(kind, nonzeros) of any floating-point tensor with torch operations (the oracle of the C++ pass)."""
    nz = t != 0
    binary = bool(((t == 1) | ~nz).all())
    if not binary and not bool(((t >= 0) & (t <= 255) & (t == torch.floor(t))).all()):  # NaN fails every test
        return 0, 0
    return (BITS if binary else BYTES), int(nz.sum())


def compact(t: torch.Tensor, min_numel: int = MIN_NUMEL, sync_ok: bool = False) -> Union[torch.Tensor, Tuple]:
    """``t`` itself, or a tuple (kind, payload, shape, nonzeros, dtype) that ``restore`` turns back into a tensor
    equal to ``t``: kind ``BITS`` (payload: packed bits) when every value is 0 or 1, ``BYTES`` (payload: uint8)
    when every value is an integer in [0, 255]. ``t`` must not require grad (pass ``t.detach()``). Tensors with
    fewer than ``min_numel`` elements, non-floating-point tensors, and (unless ``sync_ok``) tensors other than
    contiguous CPU float32 are returned unchanged."""
    if not t.is_floating_point() or t.numel() < max(1, min_numel):
        return t
    assert not t.requires_grad, "compact() takes a tensor that does not require grad (t.detach())"
    n = t.numel()
    if t.dtype is torch.float32 and t.is_cpu and t.is_contiguous() and _ext.available():
        C = _ext.get()
        nt = _backend.num_threads()
        # one pass classifies and writes both forms; the one the kind calls for is kept
        bits = torch.empty(((n + 7) // 8,), dtype=torch.uint8)
        values = torch.empty((n,), dtype=torch.uint8)
        kind, nnz = C.compact_saved(t.data_ptr(), n, bits.data_ptr(), values.data_ptr(), nt)
        if kind == BITS:
            return (BITS, bits, t.shape, nnz, t.dtype)
        if kind == BYTES:
            return (BYTES, values, t.shape, nnz, t.dtype)
        return t
    if not sync_ok:
        return t
    kind, nnz = _kind_torch(t)
    if kind == BITS:
        from .synapse import pack_bits
        flat = t.reshape(1, -1)
        try:
            bits = pack_bits(flat)
        except (RuntimeError, ImportError):  # no compiled kernel for this tensor: the reference
            bits = pack_bits(flat, backend="torch")
        return (BITS, bits.reshape(-1), t.shape, nnz, t.dtype)
    if kind == BYTES:
        return (BYTES, t.to(torch.uint8).reshape(-1), t.shape, nnz, t.dtype)
    return t


def restore(p: Union[torch.Tensor, Tuple]) -> torch.Tensor:
    """Inverse of :func:`compact`: a contiguous tensor of the original shape, dtype and device."""
    if isinstance(p, torch.Tensor):
        return p
    kind, payload, shape, _, dtype = p
    if kind == BYTES:
        return payload.to(dtype).view(shape)
    n = 1
    for s in shape:
        n *= s
    if payload.is_cpu and dtype is torch.float32 and _ext.available():
        out = torch.empty(shape, dtype=torch.float32)
        _ext.get().spike_unpack(payload.data_ptr(), out.data_ptr(), 1, n, _backend.num_threads())
        return out
    from .synapse import unpack_bits
    try:
        return unpack_bits(payload.view(1, -1), n, dtype).view(shape)
    except (RuntimeError, ImportError):
        return unpack_bits(payload.view(1, -1), n, dtype, backend="torch").view(shape)


def narrow_indices(idx: torch.Tensor, bound: int) -> torch.Tensor:
    """Store int64 indices known to lie in [0, bound) in the narrowest signed integer dtype that holds them."""
    for dt in (torch.int16, torch.int32):
        if bound <= torch.iinfo(dt).max + 1:
            return idx.to(dt)
    return idx


def widen_indices(idx: torch.Tensor) -> torch.Tensor:
    return idx if idx.dtype is torch.int64 else idx.to(torch.int64)
