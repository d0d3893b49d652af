"""Parallel Spiking Neuron op: ``psn(x, weight, bias, surrogate_function, band)``.

S = Heaviside(band(W) X + B) over the time dimension: X [T, *] is viewed as [T, N], W is [T, T] and B [T].
``band`` = 0 uses the dense W (PSN; MaskedPSN while lambda < 1); ``band`` = k > 0 keeps only the causal band
t - k < j <= t (MaskedPSN with lambda >= 1; SlidingPSN, whose W is the Toeplitz matrix of its k weights,
i.e. a causal convolution in time). Entries outside the band are treated as 0 and receive no gradient.

Backends: 'torch' (``reference_psn``: addmm + the surrogate module, the oracle), 'cpp' (csrc/psn.cpp: fused
forward and backward, H never stored) and 'triton' (kernels/psn.py: tl.dot tiles fused with the threshold
and the surrogate gradient). The fused kernels run the built-in surrogates (``surrogate_function.fusable()``);
any other surrogate runs the reference.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from .. import _ext
from . import _alloc, _backend

__all__ = ["psn", "reference_psn", "band_mask"]

_warned_custom_surrogate = set()


def band_mask(T: int, k: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[T, T] matrix with ones where t - k < j <= t (row t, column j), zeros elsewhere."""
    ones = torch.ones((T, T), device=device, dtype=dtype)
    return torch.tril(ones) * torch.triu(ones, -(k - 1))


def reference_psn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, surrogate_function,
                  band: int = 0) -> torch.Tensor:
    """Pure-PyTorch PSN: addmm over time in fp32, then the surrogate module (Heaviside forward)."""
    T = x.shape[0]
    dtype = x.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    w = weight.to(compute)
    if band > 0:
        w = w * band_mask(T, band, device=w.device, dtype=compute)
    h = torch.addmm(bias.to(compute).reshape(T, 1), w, x.reshape(T, -1).to(compute))
    return surrogate_function(h).to(dtype).view(x.shape)


# ---------------------------------------------------------------------------------------------------------
def _chunks(T: int, nblocks: int) -> int:
    # a fixed partition of the columns (independent of the thread count) for the dW/dB partial sums,
    # capped so that the float64 partials stay small next to X
    return max(1, min(nblocks, 32, (1 << 22) // (T * T)))


def _cpp_forward(x2, w, b, band: int):
    C = _ext.get()
    T, N = x2.shape
    s = _alloc.empty((T, N))
    C.psn_forward(x2.data_ptr(), w.data_ptr(), b.data_ptr(), s.data_ptr(), 0, T, N, band, _backend.num_threads())
    return s


# The C++ backward keeps dW as 16 float lane sums per (t, j) weight in use; past this many bytes the
# lane sums thrash L2 and a GEMM of the stored dH with X (MKL through torch) is faster (measured at
# [T, N] = [32, 131072]: lane sums 16.0 ms, GEMM 17.3 ms; [64, 65536]: 43.1 ms against 28.9 ms).
_LANE_SUM_MAX_BYTES = 128 << 10


def _cpp_backward(x2, gs, w, b, band: int, sg_id: int, sg_a: float, sg_b: float):
    C = _ext.get()
    T, N = x2.shape
    gx = _alloc.empty((T, N))
    nblocks = (N + C.PSN_BLOCK - 1) // C.PSN_BLOCK
    nchunks = _chunks(T, nblocks)
    pairs = T * T if band == 0 else sum(min(t + 1, band) for t in range(T))
    gh = _alloc.empty((T, N)) if pairs * 64 > _LANE_SUM_MAX_BYTES else None
    gw = torch.empty((nchunks, T, T), dtype=torch.float64)
    gb = torch.empty((nchunks, T), dtype=torch.float64)
    C.psn_backward(x2.data_ptr(), gs.data_ptr(), w.data_ptr(), b.data_ptr(), gx.data_ptr(), gw.data_ptr(),
                   gb.data_ptr(), gh.data_ptr() if gh is not None else 0, T, N, band, nchunks, sg_id, sg_a, sg_b,
                   _backend.num_threads())
    if gh is None:
        return gx, gw.sum(0).float(), gb.sum(0).float()
    gw = torch.mm(gh, x2.t())
    if band > 0:
        gw.mul_(band_mask(T, band))
    return gx, gw, gb.sum(0).float()


def _triton_forward(x2, w, b, band: int):
    from fastspike.kernels import psn as K

    T, N = x2.shape
    s = torch.empty((T, N), dtype=x2.dtype, device=x2.device)
    K.psn_forward(x2, w, b, s, T, N, band, interpret=_backend.triton_interpret())
    return s


def _triton_backward(x2, gs, w, b, band: int, sg_id: int, sg_a: float, sg_b: float):
    from fastspike.kernels import psn as K

    T, N = x2.shape
    gx = torch.empty((T, N), dtype=torch.float32, device=x2.device)
    gw, gb = K.psn_backward(x2, gs, w, b, gx, T, N, band, sg_id, sg_a, sg_b, interpret=_backend.triton_interpret())
    return gx, gw, gb


_LAUNCHERS = {"cpp": (_cpp_forward, _cpp_backward), "triton": (_triton_forward, _triton_backward)}


class PSNFunction(torch.autograd.Function):
    """x2 [T, N], w [T, T], b [T] -> spikes [T, N]; saves only x, w, b (H is recomputed backward)."""

    @staticmethod
    def forward(ctx, x2, w, b, band: int, sg_id: int, sg_a: float, sg_b: float, backend: str):
        fwd, _ = _LAUNCHERS[backend]
        if backend == "cpp":
            x2 = x2.float().contiguous()
        else:
            x2 = x2.contiguous()
        w32 = w.float().contiguous()
        b32 = b.float().contiguous()
        s = fwd(x2, w32, b32, band)
        ctx.save_for_backward(x2, w32, b32)
        ctx.cfg = (band, sg_id, sg_a, sg_b, backend, w.dtype, b.dtype)
        return s

    @staticmethod
    def backward(ctx, gs):
        x2, w32, b32 = ctx.saved_tensors
        band, sg_id, sg_a, sg_b, backend, w_dtype, b_dtype = ctx.cfg
        _, bwd = _LAUNCHERS[backend]
        gs = gs.float().contiguous() if backend == "cpp" else gs.contiguous()
        gx, gw, gb = bwd(x2, gs, w32, b32, band, sg_id, sg_a, sg_b)
        return (gx if ctx.needs_input_grad[0] else None, gw.to(w_dtype) if ctx.needs_input_grad[1] else None,
                gb.to(b_dtype) if ctx.needs_input_grad[2] else None, None, None, None, None, None)


def psn(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, surrogate_function, band: int = 0,
        backend: Optional[str] = "auto") -> torch.Tensor:
    """Spikes S = Heaviside(band(weight) @ x.flatten(1) + bias) with x of shape [T, *], weight [T, T], bias [T]
    (or [T, 1]); returns S with x's shape and dtype. The surrogate gives the backward."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError(f"psn: x must be a floating-point tensor of shape [T, *], but got "
                        f"{type(x).__name__ if not isinstance(x, torch.Tensor) else x.dtype}.")
    if x.dim() < 2:
        raise ValueError(f"psn: x must have shape [T, N, *] (multi-step), but got {tuple(x.shape)}.")
    T = x.shape[0]
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (T, T):
        raise ValueError(f"psn: weight must have shape [T, T] = [{T}, {T}] for an input with T = {T} steps, but got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__}.")
    if not isinstance(bias, torch.Tensor) or bias.numel() != T:
        raise ValueError(f"psn: bias must have T = {T} elements ([T] or [T, 1]), but got "
                         f"{tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__}.")
    if weight.device != x.device or bias.device != x.device:
        raise ValueError(f"psn: x is on {x.device} but weight is on {weight.device} and bias on {bias.device}; "
                         "move the module (or the tensors) to one device.")
    if isinstance(band, bool) or not isinstance(band, int) or band < 0:
        raise ValueError(f"psn: band must be an int >= 0 (0 = dense), but got {band!r}.")
    name = _backend.resolve(backend, [x], "psn")
    fusable = getattr(surrogate_function, "fusable", None)
    if name != "torch" and not (callable(fusable) and fusable()):
        key = type(surrogate_function).__name__
        if key not in _warned_custom_surrogate:
            _warned_custom_surrogate.add(key)
            warnings.warn(f"psn: surrogate {key} is not fused into fastspike's kernels (custom class, spiking=False "
                          "or tensor parameters); using the slower pure-PyTorch path.", RuntimeWarning, stacklevel=2)
        name = "torch"
    if name == "torch":
        return reference_psn(x, weight, bias, surrogate_function, band)
    sg_a, sg_b = surrogate_function.kernel_params()
    x2 = x.reshape(T, -1)
    s = PSNFunction.apply(x2, weight, bias.reshape(T), band, int(surrogate_function.kernel_id), sg_a, sg_b, name)
    return s.to(x.dtype).view(x.shape)
