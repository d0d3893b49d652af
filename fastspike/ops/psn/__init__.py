"""Parallel Spiking Neuron op: ``psn(x, weight, bias, surrogate_function, band)``.

S = Heaviside(band(W) X + B) over the time dimension: X [T, *] is viewed as [T, N], W is [T, T] and B [T].
``band`` = 0 uses the dense W (PSN; MaskedPSN while lambda < 1); ``band`` = k > 0 keeps only the causal band
t - k < j <= t (MaskedPSN with lambda >= 1; SlidingPSN, whose W is the Toeplitz matrix of its k weights,
i.e. a causal convolution in time). Entries outside the band are treated as 0 and receive no gradient.

Backends: 'torch' (``reference.psn``: addmm + the surrogate module, the oracle), 'cpp' (csrc/psn.cpp: fused
forward and backward, H never stored) and 'triton' (kernels/psn.py: tl.dot tiles fused with the threshold
and the surrogate gradient), both as custom ops ``fastspike::psn_cpp`` / ``psn_triton`` (autograd.py). The fused
kernels run the built-in surrogates (``surrogate_function.fusable()``); any other surrogate runs the reference.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _backend, reference
from ..reference.psn import band_mask
from .autograd import OPS

__all__ = ["psn", "band_mask"]



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
    if not (callable(fusable) and fusable()):
        name = _backend.unfused_surrogate("psn", surrogate_function, backend, name)
    if name == "torch":
        return reference.psn(x, weight, bias, surrogate_function, band)
    sg_a, sg_b = surrogate_function.kernel_params()
    x2 = x.reshape(T, -1)
    s = OPS[name](x2, weight, bias.reshape(T), band, int(surrogate_function.kernel_id), float(sg_a), float(sg_b))
    return s.to(x.dtype).view(x.shape)
