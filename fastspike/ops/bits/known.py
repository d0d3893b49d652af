"""Tensors known to hold only 0 and 1 because fastspike produced them as spikes.

A neuron's spikes are Heaviside outputs: binary by construction. Learning that again from the data costs a pass on
the CPU and a device-to-host synchronisation on CUDA, so the producer records the fact here and a consumer (the
synapse layers, which keep a binary input as bits for their weight gradient) looks it up for free.

The record is an attribute of the tensor that owns the spikes' storage (the spikes, or their base when the producer
returned a view of its own buffer, as the Triton launchers do): the dtype, the version counter and the storage
address when they were marked. A consumer looks at the tensor it was given or, for a view, at the view's base
(``x._base``: PyTorch points every view, of a view too, at the tensor that owns the storage):

* a view of the spikes (``s[0]``, ``s.flatten(0, 1)``, a permutation) shares the base and the version counter, so
  it is recognised, and it keeps the base (and so the record) alive; any in-place change to the spikes or a view of
  them bumps the shared version counter and the fact is gone;
* the record lives and dies with the tensor (no table, nothing to leak, no address to be reused); a copy of the
  tensor's Python attributes (``copy.deepcopy``, pickling) is not taken for the original: its storage address
  differs;
* a tensor that shares the storage without being a view (``s.detach()``, ``s.data``) has no base and is not known
  (the consumer then keeps the input as it would have anyway); nor is another dtype's view of the same bytes (1.0
  is not 1 as an int);
* nothing is recorded or found while tracing (torch.compile, tensor subclasses) or inside a torch.func transform
  (its wrappers have no storage): the facts are about real storage; nor for inference tensors (made under
  ``torch.inference_mode()``), which have no version counter to show an in-place change (the record would serve a
  training step's weight gradient, which inference never takes).

Setting the attribute costs about as much as a dictionary store, and it runs once per neuron call: the neuron's
small-layer host time (the ``neuron.overhead`` benchmark case) counts it.
"""
from __future__ import annotations

import torch

from .._contract import opaque

__all__ = ["mark_binary", "mark_output_binary", "known_binary"]

_ATTR = "_fastspike_binary"  # (dtype, version, storage address) when marked


def mark_binary(t: torch.Tensor) -> None:
    """Record that every element of ``t`` is 0 or 1 (call it on a fresh output that spans its whole storage)."""
    if opaque(t) or t.is_inference():
        return
    storage = t.untyped_storage()
    nbytes = t.nbytes
    if nbytes == 0 or storage.nbytes() != nbytes:
        return
    base = t._base
    setattr(t if base is None else base, _ATTR, (t.dtype, t._version, storage.data_ptr()))


def mark_output_binary(t: torch.Tensor) -> None:
    """``mark_binary`` for a kernel's fresh, non-empty output (its own whole storage, not a view) where the caller
    has already ruled out tracing and torch.func transforms (a neuron op's short path)."""
    if not t.is_inference():
        setattr(t, _ATTR, (t.dtype, t._version, t.data_ptr()))


def known_binary(x: torch.Tensor) -> bool:
    """Whether ``x`` is (a view of) spikes recorded by :func:`mark_binary` and unchanged since."""
    if opaque(x) or x.numel() == 0 or x.is_inference():
        return False
    base = x._base
    if base is None:
        base = x
    record = getattr(base, _ATTR, None)
    return (record is not None and record[0] == x.dtype and record[1] == x._version
            and record[2] == x.untyped_storage().data_ptr())
