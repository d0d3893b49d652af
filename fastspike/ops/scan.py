"""Linear recurrence along time: ``linear_scan(a, b, h0)`` computes h[t] = a[t] * h[t-1] + b[t] over dim 0.

Leaky integration without reset (a non-spiking LIF neuron, a synaptic trace) is such a recurrence, and a
parallel scan solves it in O(log T) depth on the GPU (``tl.associative_scan``, kernels/scan.py); on the CPU
the memory-bound optimum is a sequential pass over time, parallel and SIMD over columns (csrc/scan.cpp).

Backward (a reversed scan of the same form)::

    g[t] = grad_out[t] + a[t+1] * g[t+1]          (g[T] = 0)
    grad_b[t] = g[t];  grad_a[t] = g[t] * h[t-1]  (h[-1] = h0);  grad_h0 = a[0] * g[0]

``a`` may be a Python number (one decay for every step and element), a 0-d tensor, or a tensor with as
many dims as ``b`` whose sizes are 1 or equal to b's (e.g. [T, 1, ...]: one decay per step, or [1, N]:
one per neuron); gradients are reduced over the broadcast dims. ``reference_linear_scan`` (a plain loop)
is the oracle of the tests and the 'torch' backend.
"""
from __future__ import annotations

import numbers
from typing import Optional, Union

import torch

from .. import _ext
from . import _alloc, _backend

__all__ = ["linear_scan", "reference_linear_scan"]

Decay = Union[float, torch.Tensor]


def reference_linear_scan(a: Decay, b: torch.Tensor, h0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Plain time loop in fp32 (autograd-differentiable); the oracle for every backend."""
    dtype = b.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    b = b.to(compute)
    T = b.shape[0]
    if isinstance(a, torch.Tensor):
        a = a.to(compute)
        if a.dim() == 0:
            a = a.reshape([1] * b.dim())
    h = torch.zeros(b.shape[1:], dtype=compute, device=b.device) if h0 is None else h0.to(compute)
    # unbind (not b[t]) keeps the autograd graph linear in T
    b_steps = b.unbind(0)
    if isinstance(a, torch.Tensor):
        a_steps = a.unbind(0) if a.shape[0] > 1 else [a[0]] * T
    else:
        a_steps = [a] * T
    out = []
    for t in range(T):
        h = a_steps[t] * h + b_steps[t]
        out.append(h)
    return torch.stack(out).to(dtype)


# ---------------------------------------------------------------------------------------------------------
# launchers
def _scan_block(M: int, nthreads: int) -> int:
    # wide blocks (KiB-long row segments), but at least ~4 blocks per thread when M allows
    per = -(-M // (4 * nthreads))
    return int(min(4096, max(256, -(-per // 64) * 64)))


def _cpp_forward(a_k, b2, h0_1, mode: int, a_scalar: float):
    C = _ext.get()
    T, M = b2.shape
    b32 = b2.float().contiguous()
    a32 = a_k.float().contiguous() if a_k is not None else None
    h032 = h0_1.float().contiguous() if h0_1 is not None else None
    h = _alloc.empty((T, M))
    nt = _backend.num_threads()
    C.scan_forward(a32.data_ptr() if a32 is not None else 0, b32.data_ptr(),
                   h032.data_ptr() if h032 is not None else 0, h.data_ptr(), T, M, mode, float(a_scalar),
                   _scan_block(M, nt), nt)
    return h


def _cpp_backward(a_k, h, h0_1, gout, mode: int, a_scalar: float, need_ga: bool, need_gh0: bool):
    C = _ext.get()
    T, M = h.shape
    g32 = gout.float().contiguous()
    a32 = a_k.float().contiguous() if a_k is not None else None
    h032 = h0_1.float().contiguous() if h0_1 is not None else None
    gb = _alloc.empty((T, M))
    ga = _alloc.empty((T, M)) if need_ga and mode == 2 else None
    nt = _backend.num_threads()
    block = _scan_block(M, nt)
    nblocks = (M + block - 1) // block
    gap = torch.empty((nblocks, T), dtype=torch.float64) if need_ga and mode == 1 else None
    gh0 = torch.empty((M,), dtype=torch.float32) if need_gh0 else None
    C.scan_backward(a32.data_ptr() if a32 is not None else 0, h.data_ptr(),
                    h032.data_ptr() if h032 is not None else 0, g32.data_ptr(), gb.data_ptr(),
                    ga.data_ptr() if ga is not None else 0, gap.data_ptr() if gap is not None else 0,
                    gh0.data_ptr() if gh0 is not None else 0, T, M, mode, float(a_scalar), block, nt)
    if gap is not None:
        ga = gap.sum(0).float()
    return gb, ga, gh0


def _triton_forward(a_k, b2, h0_1, mode: int, a_scalar: float):
    from fastspike.kernels import scan as K

    T, M = b2.shape
    b32 = b2.contiguous()
    a32 = a_k.float().contiguous() if a_k is not None else None
    h032 = h0_1.contiguous() if h0_1 is not None else None
    h = torch.empty((T, M), dtype=torch.float32, device=b2.device)
    K.scan_forward(a32, b32, h032, h, T, M, mode, a_scalar, interpret=_backend.triton_interpret())
    return h


def _triton_backward(a_k, h, h0_1, gout, mode: int, a_scalar: float, need_ga: bool, need_gh0: bool):
    from fastspike.kernels import scan as K

    T, M = h.shape
    g = gout.contiguous()
    a32 = a_k.float().contiguous() if a_k is not None else None
    h032 = h0_1.contiguous() if h0_1 is not None else None
    gb = torch.empty((T, M), dtype=torch.float32, device=h.device)
    ga = torch.empty((T, M), dtype=torch.float32, device=h.device) if need_ga and mode == 2 else None
    gh0 = torch.empty((M,), dtype=torch.float32, device=h.device) if need_gh0 else None
    ga = K.scan_backward(a32, h, h032, g, gb, ga, gh0, T, M, mode, a_scalar, need_ga,
                         interpret=_backend.triton_interpret())
    return gb, ga, gh0


_LAUNCHERS = {"cpp": (_cpp_forward, _cpp_backward), "triton": (_triton_forward, _triton_backward)}


# ---------------------------------------------------------------------------------------------------------
class LinearScanFunction(torch.autograd.Function):
    """b2 [T, M]; a_k None (mode 0), [T] (mode 1) or [T, M] (mode 2); h0_1 [M] or None."""

    @staticmethod
    def forward(ctx, b2, a_k, h0_1, mode: int, a_scalar: float, backend: str):
        fwd, _ = _LAUNCHERS[backend]
        h = fwd(a_k, b2, h0_1, mode, a_scalar)
        need_h = a_k is not None and ctx.needs_input_grad[1]
        ctx.save_for_backward(a_k, h if need_h else None, h0_1 if need_h else None)
        ctx.cfg = (mode, a_scalar, backend, need_h)
        return h.to(b2.dtype)

    @staticmethod
    def backward(ctx, gout):
        a_k, h, h0_1 = ctx.saved_tensors
        mode, a_scalar, backend, need_h = ctx.cfg
        need_gh0 = ctx.needs_input_grad[2]
        _, bwd = _LAUNCHERS[backend]
        if h is None:  # grad_a not needed: pass any [T, M] buffer as h (never read)
            h = gout
        gb, ga, gh0 = bwd(a_k, h, h0_1, gout, mode, a_scalar, need_h, need_gh0)
        gb = gb if ctx.needs_input_grad[0] else None
        ga = ga.to(a_k.dtype) if (need_h and ga is not None) else None
        return gb, ga, gh0, None, None, None


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
    if name == "torch":
        return reference_linear_scan(a, b, h0)

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
    out = LinearScanFunction.apply(b2, a_k, h0_1, mode, a_scalar, name)
    return out.view(b.shape)
