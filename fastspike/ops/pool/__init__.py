"""Max pooling that keeps only narrow argmax indices for the backward: ``max_pool(x, dims, kernel_size, ...)``.

The result and the gradient are torch's max pooling to the bit (first maximum wins, NaN wins; the gradient is
the same scatter-add of the output gradient into the argmax positions, in the same order). What changes is what
autograd keeps: int16 (or int32) plane offsets instead of the input and int64 indices (a float32 input of
32x32 maps pooled 3x3/2: 5x less memory). Backends: 'cpp' (csrc/pool.cpp: the 2-D forward and the backward
scatter of every rank; other ranks and dtypes take torch's forward) and 'torch' (torch's kernels, any device:
CUDA runs this one). The layers ``layer.MaxPool1d/2d/3d`` call it in training. Windows that hold no element of
the input (possible with dilation > 1) give -inf and no gradient (torch's own backward would write out of
bounds there). Custom ops ``fastspike::max_pool_cpp`` / ``max_pool_torch`` in autograd.py; the reference is
``reference.max_pool`` (torch's F.max_pool{1,2,3}d).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _backend, _validate, reference
from ..bits.known import known_binary, mark_binary
from .autograd import OPS

__all__ = ["max_pool"]


def max_pool(x: torch.Tensor, dims: int, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
             backend: Optional[str] = "auto") -> torch.Tensor:
    """``F.max_pool{dims}d(x, kernel_size, stride, padding, dilation, ceil_mode)``, keeping only narrow indices for
    the backward. x: [N, C, *spatial] or [C, *spatial] with ``dims`` spatial dimensions."""
    op = "max_pool"
    _validate.tensor(op, "x", x)
    if isinstance(dims, bool) or dims not in (1, 2, 3):
        raise ValueError(f"{op}: dims must be 1, 2 or 3, but got {dims!r}.")
    if x.dim() not in (dims + 1, dims + 2):
        raise ValueError(f"{op}: x must have {dims + 1} or {dims + 2} dimensions ([C, *spatial] or "
                         f"[N, C, *spatial] with {dims} spatial ones), but got shape {tuple(x.shape)}.")
    _validate.floating(op, "x", x)
    k = _validate.ntuple(op, "kernel_size", kernel_size, dims, minimum=1)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else \
        _validate.ntuple(op, "stride", stride, dims, minimum=1)
    p = _validate.ntuple(op, "padding", padding, dims, minimum=0)
    d = _validate.ntuple(op, "dilation", dilation, dims, minimum=1)
    if backend == "triton":
        raise ValueError(f"{op}: there is no Triton kernel for max pooling; use backend 'auto', 'cpp' or 'torch' "
                         "(on CUDA 'auto' runs torch's kernels).")
    be = _backend.resolve(backend, [x], op)
    if be == "triton":
        be = "torch"  # CUDA: torch's kernels
    if x.numel() == 0 or not (torch.is_grad_enabled() and x.requires_grad):
        out = reference.max_pool(x, dims, k, s, p, d, ceil_mode)
    else:
        out = OPS[be](x, dims, list(k), list(s), list(p), list(d), bool(ceil_mode))[0]
    if known_binary(x):  # the maximum of spikes is a spike (padding never wins: it is -inf)
        mark_binary(out)
    return out
