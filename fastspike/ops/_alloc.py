"""Output buffers for the CPU kernels.

Large fresh CPU buffers page-fault on first write, 4 KiB at a time, and on the machines measured here
that cost more than the streaming kernels that fill them (csrc/memory.cpp has the figures). Buffers of
at least ``HUGEPAGE_MIN_BYTES`` are therefore advised to use transparent huge pages before a kernel
writes them. ``FASTSPIKE_HUGEPAGES=0`` in the environment turns the advice off.

Huge pages fault too, and glibc unmaps every large block it frees, so a training loop that makes the same
large outputs each step would fault them in each step; so do medium outputs, from ``CACHE_MIN_BYTES`` (where glibc
starts mapping blocks of their own), e.g. the spikes of a single-step layer that a network keeps for each step.
Buffers of at least ``CACHE_MIN_BYTES`` therefore come from a block cache in the C++ extension (csrc/memory.cpp):
the tensor reaches torch through DLPack, and when torch frees its storage the block (pages still mapped) waits in
the cache for the next output of the same size (rounded up to 2 MiB from ``HUGEPAGE_MIN_BYTES``, to 64 KiB
below). The cache holds at most ``FASTSPIKE_CPU_CACHE_MB`` megabytes of freed blocks (default: a quarter of
the machine's memory; 0 turns the cache off), dropping the least recently freed first; ``fastspike.ops.empty_cache()``
frees them all and ``fastspike.ops.cached_bytes()`` says how much is held. Like ``torch.empty``, a buffer's contents
are undefined: the kernels write every element of their outputs. Memory made through DLPack is not torch's
allocator's: ``torch.profiler``'s memory events do not count these outputs (``cache_disabled()`` or
``FASTSPIKE_CPU_CACHE_MB=0`` while profiling memory), and a DLPack tensor cannot be resized in place
(``resize_`` raises).
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator, Optional

import torch

from .. import _ext

__all__ = ["empty_like", "empty", "f32", "HUGEPAGE_MIN_BYTES", "CACHE_MIN_BYTES", "empty_cache", "cached_bytes",
           "cache_disabled"]

HUGEPAGE_MIN_BYTES = 4 << 20  # csrc/memory.cpp's kHugeMin
CACHE_MIN_BYTES = 128 << 10  # glibc's default M_MMAP_THRESHOLD
_F32 = torch.float32
_ENABLED = os.environ.get("FASTSPIKE_HUGEPAGES", "1") not in ("0", "", "false", "False")
# DLPack's (type code, bits) of the dtypes a kernel output may have
_DLPACK = {torch.float32: (2, 32), torch.float64: (2, 64), torch.float16: (2, 16), torch.bfloat16: (4, 16),
           torch.uint8: (1, 8), torch.int8: (0, 8), torch.int16: (0, 16), torch.int32: (0, 32),
           torch.int64: (0, 64), torch.bool: (6, 8)}


def _cache_limit() -> int:
    """The block cache's limit in bytes, from ``FASTSPIKE_CPU_CACHE_MB`` (a whole number of megabytes >= 0)."""
    value = os.environ.get("FASTSPIKE_CPU_CACHE_MB")
    if value is None or value.strip() == "":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
        except (ValueError, OSError, AttributeError):  # no sysconf (not POSIX): a fixed 2 GiB
            return 2 << 30
    try:
        mb = int(value)
    except ValueError:
        mb = -1
    if mb < 0:
        raise ValueError(f"FASTSPIKE_CPU_CACHE_MB must be a whole number of megabytes >= 0 (0 turns fastspike's CPU "
                         f"block cache off), but got {value!r}.")
    return mb << 20


_LIMIT = _cache_limit()
_CACHING = _LIMIT > 0 and _ext.available() and hasattr(_ext.get(), "cached_empty")
if _CACHING:
    _ext.get().set_cache_limit(_LIMIT)


def _advise(t: torch.Tensor) -> torch.Tensor:
    nbytes = t.numel() * t.element_size()
    if _ENABLED and nbytes >= HUGEPAGE_MIN_BYTES and t.is_cpu and _ext.available():
        _ext.get().advise_hugepages(t.data_ptr(), nbytes)
    return t


def _from_cache(shape, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous CPU tensor whose memory comes from (and returns to) the block cache."""
    return torch.from_dlpack(_ext.get().cached_empty(tuple(shape), *_DLPACK[dtype]))


def empty(shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A contiguous CPU ``torch.empty``: from the block cache from ``CACHE_MIN_BYTES``, else huge-page advised when
    large (the cache is off)."""
    if isinstance(shape, int):
        shape = (shape,)
    bits = _DLPACK.get(dtype)
    if bits is not None and math.prod(shape) * bits[1] < CACHE_MIN_BYTES * 8:  # small: a layer's last state, say
        return torch.empty(shape, dtype=dtype)
    if _CACHING and bits is not None:
        return _from_cache(shape, dtype)
    return _advise(torch.empty(shape, dtype=dtype))


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(x, memory_format=torch.contiguous_format)`` for a CPU tensor ``x``, as ``empty``."""
    if x.nbytes < CACHE_MIN_BYTES:  # the common small case: nothing to decide (per call)
        return torch.empty_like(x, memory_format=torch.contiguous_format)
    if _CACHING and x.dtype in _DLPACK:
        return _from_cache(x.shape, x.dtype)
    return _advise(torch.empty_like(x, memory_format=torch.contiguous_format))


def empty_cache() -> int:
    """Free the CPU block cache's blocks (outputs freed by torch, kept for reuse); returns the bytes freed."""
    if not _CACHING:
        return 0
    C = _ext.get()
    held = C.cached_bytes()
    C.set_cache_limit(0)
    C.set_cache_limit(_LIMIT)
    return held


def cached_bytes() -> int:
    """Bytes held by the CPU block cache: freed kernel outputs waiting to be reused (0 when the cache is off)."""
    return _ext.get().cached_bytes() if _CACHING else 0


@contextlib.contextmanager
def cache_disabled() -> Iterator[None]:
    """Within the block, large outputs come from ``torch.empty`` instead of the block cache: memory made through
    DLPack is invisible to torch's allocator, so ``torch.profiler(profile_memory=True)`` (and the benchmark's
    CPU peak memory, which is read from it) counts them only this way. Not thread-safe: it switches the cache off
    for the whole process while it lasts."""
    global _CACHING
    saved, _CACHING = _CACHING, False
    try:
        yield
    finally:
        _CACHING = saved


def f32(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``t`` as a contiguous float32 tensor (no copy when it is one already), the layout every C++ kernel reads;
    None stays None."""
    if t is None or (t.dtype is _F32 and t.is_contiguous()):  # the common case first: called per tensor per op
        return t
    if t.dtype is not _F32:
        t = t.float()
    return t if t.is_contiguous() else t.contiguous()
