"""Output buffers for the CPU kernels.

Large fresh CPU buffers page-fault on first write, 4 KiB at a time, and on the machines measured here
that cost more than the streaming kernels that fill them (csrc/memory.cpp has the figures). Buffers of
at least ``HUGEPAGE_MIN_BYTES`` are therefore advised to use transparent huge pages before a kernel
writes them. ``FASTSPIKE_HUGEPAGES=0`` in the environment turns the advice off.
"""
from __future__ import annotations

import os
from typing import Optional

import torch

from .. import _ext

__all__ = ["empty_like", "empty", "f32", "HUGEPAGE_MIN_BYTES"]

HUGEPAGE_MIN_BYTES = 4 << 20
_ENABLED = os.environ.get("FASTSPIKE_HUGEPAGES", "1") not in ("0", "", "false", "False")


def _advise(t: torch.Tensor) -> torch.Tensor:
    nbytes = t.numel() * t.element_size()
    if _ENABLED and nbytes >= HUGEPAGE_MIN_BYTES and t.is_cpu and _ext.available():
        _ext.get().advise_hugepages(t.data_ptr(), nbytes)
    return t


def empty_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like(x, memory_format=torch.contiguous_format)``, huge-page advised when large."""
    return _advise(torch.empty_like(x, memory_format=torch.contiguous_format))


def empty(shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A contiguous CPU ``torch.empty``, huge-page advised when large."""
    return _advise(torch.empty(shape, dtype=dtype))


def f32(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``t`` as a contiguous float32 tensor (no copy when it is one already), the layout every C++ kernel reads;
    None stays None."""
    if t is None:
        return None
    if t.dtype is not torch.float32:
        t = t.float()
    return t if t.is_contiguous() else t.contiguous()
