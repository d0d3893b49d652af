"""Linear recurrence along time: ``linear_scan(a, b, h0)`` computes h[t] = a[t] * h[t-1] + b[t] over dim 0.

Leaky integration without reset (a non-spiking LIF neuron, a synaptic trace) is such a recurrence, and a
parallel scan solves it in O(log T) depth on the GPU (``tl.associative_scan``, kernels/scan.py); on the CPU
the memory-bound optimum is a sequential pass over time, parallel and SIMD over columns (csrc/scan.cpp).

Backward (a reversed scan of the same form)::

    g[t] = grad_out[t] + a[t+1] * g[t+1]          (g[T] = 0)
    grad_b[t] = g[t];  grad_a[t] = g[t] * h[t-1]  (h[-1] = h0);  grad_h0 = a[0] * g[0]

``a`` may be a Python number (one decay for every step and element), a 0-d tensor, or a tensor with as
many dims as ``b`` whose sizes are 1 or equal to b's (e.g. [T, 1, ...]: one decay per step, or [1, N]:
one per neuron); gradients are reduced over the broadcast dims. ``reference.linear_scan`` (a plain loop)
is the oracle of the tests and the 'torch' backend.
"""
from __future__ import annotations

import numbers
from typing import Optional, Union

import torch

from .. import _backend, reference
from .autograd import OPS

__all__ = ["linear_scan"]

Decay = Union[float, torch.Tensor]


def _check_decay(a, b: torch.Tensor):
    if isinstance(a, bool) or not isinstance(a, (numbers.Real, torch.Tensor)):
        raise TypeError(f"linear_scan: a must be a float or a tensor, but got {type(a).__name__}.")
    if not isinstance(a, torch.Tensor):
        return
    if not a.is_floating_point():
        raise TypeError(f"linear_scan: a must be a floating-point tensor, but got dtype {a.dtype}.")
    if a.device != b.device:
        raise ValueError(f"linear_scan: a is on {a.device} but b is on {b.device}; put them on the same device.")
    if a.dim() == 0:
        return
    if a.dim() != b.dim() or any(sa not in (1, sb) for sa, sb in zip(a.shape, b.shape)):
        raise ValueError(
            f"linear_scan: a of shape {tuple(a.shape)} does not broadcast against b of shape {tuple(b.shape)}; "
            f"a must be a float, a 0-d tensor, or have {b.dim()} dims each equal to b's or 1 "
            "(e.g. [T, 1, ...] for one decay per step).")


def linear_scan(a: Decay, b: torch.Tensor, h0: Optional[torch.Tensor] = None,
                backend: Optional[str] = "auto") -> torch.Tensor:
    """h[t] = a[t] * h[t-1] + b[t] along dim 0 of ``b`` ([T, *]), h[-1] = h0 (zeros when None).

    Returns h with b's shape and dtype. Differentiable in a (when a tensor), b and h0.
    """
    if not isinstance(b, torch.Tensor):
        raise TypeError(f"linear_scan: b must be a tensor of shape [T, *], but got {type(b).__name__}.")
    if not b.is_floating_point():
        raise TypeError(f"linear_scan: b must be a floating-point tensor, but got dtype {b.dtype}.")
    if b.dim() < 1 or b.shape[0] < 1:
        raise ValueError(f"linear_scan: b must have shape [T, *] with T >= 1, but got {tuple(b.shape)}.")
    _check_decay(a, b)
    if h0 is not None:
        if not isinstance(h0, torch.Tensor):
            raise TypeError(f"linear_scan: h0 must be a tensor or None, but got {type(h0).__name__}.")
        if h0.device != b.device:
            raise ValueError(f"linear_scan: h0 is on {h0.device} but b is on {b.device}; put them on the same device.")
        try:
            torch.broadcast_shapes(h0.shape, b.shape[1:])
            ok = torch.broadcast_shapes(h0.shape, b.shape[1:]) == b.shape[1:]
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"linear_scan: h0 of shape {tuple(h0.shape)} must broadcast to b.shape[1:] = "
                             f"{tuple(b.shape[1:])}.")
    name = _backend.resolve(backend, [b], "linear_scan")
    if name == "torch" or b.numel() == 0:  # nothing for a kernel to do on zero-size columns
        return reference.linear_scan(a, b, h0)

    T = b.shape[0]
    M = b[0].numel()
    b2 = b.reshape(T, M)
    h0_1 = None if h0 is None else h0.expand(b.shape[1:]).reshape(M)
    a_scalar = 0.0
    if not isinstance(a, torch.Tensor):
        mode, a_k, a_scalar = 0, None, float(a)
    elif a.dim() == 0:
        mode, a_k = 1, a.expand(T)
    elif all(s == 1 for s in a.shape[1:]):
        mode, a_k = 1, a.reshape(a.shape[0]).expand(T)
    else:
        mode, a_k = 2, a.expand(b.shape).reshape(T, M)
    need_h = a_k is not None and torch.is_grad_enabled() and a_k.requires_grad
    out = OPS[name](b2, a_k, h0_1, mode, float(a_scalar), need_h)
    return out.to(b.dtype).view(b.shape)
