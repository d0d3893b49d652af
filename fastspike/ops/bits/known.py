"""Tensors known to hold only 0 and 1 because fastspike produced them as spikes.

A neuron's spikes are Heaviside outputs: binary by construction. Learning that again from the data costs a pass on
the CPU and a device-to-host synchronisation on CUDA, so the producer records the fact here and a consumer (the
synapse layers, which keep a binary input as bits for their weight gradient) looks it up for free.

The record is keyed by the tensor's storage and holds a weak reference to the producing tensor and its version:

* a view of the spikes (``s[0]``, ``s.flatten(0, 1)``, a permutation) shares the storage and the version counter,
  so it is recognised; any in-place change to the spikes or a view of them bumps the shared version counter and
  the fact is gone;
* the record dies with the producing tensor (weak reference), so a freed storage whose address is reused is never
  mistaken for spikes; a view that outlives the producing tensor is simply not known (the consumer then keeps the
  input as it would have anyway);
* another dtype's view of the same bytes is not known (1.0 is not 1 as an int);
* nothing is recorded or found while tracing (torch.compile, tensor subclasses): the facts are about real storage.
"""
from __future__ import annotations

import functools
import threading
import weakref
from typing import Dict, Tuple

import torch

from .._contract import tracing

__all__ = ["mark_binary", "known_binary"]

_lock = threading.Lock()
_known: Dict[Tuple[torch.device, int], Tuple["weakref.ref[torch.Tensor]", int]] = {}


def _key(t: torch.Tensor) -> Tuple[torch.device, int]:
    return t.device, t.untyped_storage().data_ptr()


def _forget(key, ref) -> None:
    with _lock:
        if _known.get(key, (None,))[0] is ref:
            del _known[key]


def mark_binary(t: torch.Tensor) -> None:
    """Record that every element of ``t``'s storage is 0 or 1 (call it on a fresh output that owns its storage)."""
    if tracing(t):
        return
    storage = t.untyped_storage()
    numel = t.numel()
    if numel == 0 or storage.nbytes() != numel * t.element_size():
        return
    key = (t.device, storage.data_ptr())
    entry = (weakref.ref(t, functools.partial(_forget, key)), t._version)
    with _lock:
        _known[key] = entry


def known_binary(x: torch.Tensor) -> bool:
    """Whether ``x`` is (a view of) spikes recorded by :func:`mark_binary` and unchanged since."""
    if tracing(x) or x.numel() == 0:
        return False
    with _lock:
        entry = _known.get(_key(x))
    if entry is None:
        return False
    owner = entry[0]()
    return (owner is not None and owner.dtype == x.dtype and owner._version == entry[1]
            and x._version == entry[1] and owner.untyped_storage().data_ptr() == x.untyped_storage().data_ptr())
