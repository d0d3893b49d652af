"""Per-weight-version cache of the weight layouts the event-driven kernels read, and of facts about the weight.

Layouts: the C++ Linear reads a tile-blocked W^T (``[ceil(N/64)][K][64]``), the C++ Conv2d ``[Cin][KH][KW][Cout/G]``,
the Triton kernels W^T [K, N] and the same conv layout, plus the number of non-finite weights of each output.
A copy is built once per weight version (an optimizer step bumps the version) and kept while the weight lives
-- except for a weight that is being trained (grad mode, requires_grad): its copy would serve one step only and
would hold an extra copy of every such weight through the backward (SEW ResNet-18 with event_driven='auto':
97 -> 140 MiB peak). For such a weight the C++ kernels take torch's layout and build the copy themselves, into
scratch memory, once their compaction has accepted the input; the Triton launchers build it per call.

Facts (``finite``) are cached for every weight: they cost one pass per weight version and hold no memory.
Nothing is cached for tensors being traced (torch.compile) or without a version counter (inference tensors).
"""
from __future__ import annotations

import threading
import weakref
from typing import Callable

import torch

from .._contract import opaque
from . import cpu

__all__ = ["cached", "finite", "linear_blocked", "conv_transposed"]

_cache: dict = {}  # id(weight) -> (weakref to weight, {tag: (key, value)})
_lock = threading.Lock()


def _version(w: torch.Tensor):
    if opaque(w):
        return None
    try:
        return w._version
    except Exception:  # inference tensors have no version counter: never cache them
        return None


def _drop(wid: int):
    def callback(_ref):
        with _lock:
            _cache.pop(wid, None)
    return callback


def cached(w: torch.Tensor, tag: str, build: Callable[[torch.Tensor], object], keep: bool = True):
    """``build(w)``, kept per weight version under ``tag`` unless ``keep`` is False (a weight being trained)."""
    ver = _version(w) if keep else None
    if ver is None:
        return build(w)
    key = (ver, w.data_ptr(), w.shape, w.stride(), w.dtype, w.device)
    entry = _cache.get(id(w))  # reads need no lock: dict lookups are atomic, entries are replaced whole
    if entry is not None and entry[0]() is w:
        hit = entry[1].get(tag)
        if hit is not None and hit[0] == key:
            return hit[1]
    out = build(w)
    with _lock:
        entry = _cache.get(id(w))
        if entry is None or entry[0]() is not w:
            entry = (weakref.ref(w, _drop(id(w))), {})
            _cache[id(w)] = entry
        entry[1][tag] = (key, out)
    return out


def finite(w: torch.Tensor) -> bool:
    """Every weight is finite (a host answer: for CPU weights; on CUDA it would synchronise). Checked in chunks of
    1M elements, so that no weight-sized mask is allocated (a large weight must not run out of memory here)."""
    def build(w):
        return all(bool(torch.isfinite(c).all()) for c in w.detach().reshape(-1).split(1 << 20))
    return cached(w, "finite", build)


def linear_blocked(w: torch.Tensor) -> torch.Tensor:
    """The C++ Linear's tile-blocked W^T, cached per version."""
    return cached(w, "linear_cpp", lambda w: cpu.tile_rows(w.detach().t()))


def conv_transposed(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[Cout, Cin/G, KH, KW] -> float32 [Cin][KH][KW][Cout/G] (the output row of each input channel and tap), cached."""
    def build(w):
        Cout, cing, KH, KW = w.shape
        return (w.detach().to(torch.float32).reshape(groups, Cout // groups, cing, KH, KW)
                .permute(0, 2, 3, 4, 1).contiguous())
    return cached(w, f"conv_cpp_g{groups}", build)
