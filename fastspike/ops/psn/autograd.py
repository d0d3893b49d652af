"""The PSN op under the op contract (ops/_contract.py).

Forward: x2 [T, N] (fp32 for C++; fp32/bf16/fp16 for Triton), w [T, T] and b [T] in fp32, band, then the
surrogate's kernel id and parameters -> spikes [T, N] (fp32 from C++, x2's dtype from Triton). Nothing but the
inputs is saved: both backwards recompute H. Backward kernel: -> (dX fp32 [T, N], dW fp32 [T, T], dB fp32 [T]).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .. import _backend, _kernels
from .._contract import Op, launcher
from . import cpu

__all__ = ["OPS"]


def _cpp_forward(x2: Tensor, w: Tensor, b: Tensor, band: int, sg: int, sg_a: float, sg_b: float) -> Tensor:
    return cpu.forward(x2.float().contiguous(), w.float().contiguous(), b.float().contiguous(), band)


def _cpp_backward(gs: Tensor, x2: Tensor, w: Tensor, b: Tensor, band: int, sg: int, sg_a: float,
                  sg_b: float) -> Tuple[Tensor, Tensor, Tensor]:
    return cpu.backward(x2.float().contiguous(), gs.float().contiguous(), w.float().contiguous(),
                        b.float().contiguous(), band, sg, sg_a, sg_b)


def _triton_forward(x2: Tensor, w: Tensor, b: Tensor, band: int, sg: int, sg_a: float, sg_b: float) -> Tensor:
    K = _kernels.load("psn")
    return K.psn_forward(x2.contiguous(), w.float().contiguous(), b.float().contiguous(), band,
                         interpret=_backend.triton_interpret(), launch=launcher(x2))


def _triton_backward(gs: Tensor, x2: Tensor, w: Tensor, b: Tensor, band: int, sg: int, sg_a: float,
                     sg_b: float) -> Tuple[Tensor, Tensor, Tensor]:
    K = _kernels.load("psn")
    return K.psn_backward(x2.contiguous(), gs.contiguous(), w.float().contiguous(), b.float().contiguous(), band, sg,
                          sg_a, sg_b, interpret=_backend.triton_interpret(), launch=launcher(gs))


def _fake_forward(x2, w, b, band, sg, sg_a, sg_b, dtype=torch.float32):
    return x2.new_empty(x2.shape, dtype=dtype)


def _fake_backward(gs, x2, w, b, band, sg, sg_a, sg_b):
    f32 = torch.float32
    return (x2.new_empty(x2.shape, dtype=f32), w.new_empty(w.shape, dtype=f32), b.new_empty(b.shape, dtype=f32))


def _setup_context(ctx, inputs, output):
    x2, w, b = inputs[:3]
    ctx.config = inputs[3:]
    ctx.dtypes = (x2.dtype, w.dtype, b.dtype)
    ctx.save_for_backward(x2, w, b)


def _backward(ctx, grads, kernel):
    (gs,) = grads
    x2, w, b = ctx.saved_tensors
    gx, gw, gb = kernel(gs, x2, w, b, *ctx.config)
    need = ctx.needs_input_grad
    return (gx.to(ctx.dtypes[0]) if need[0] else None, gw.to(ctx.dtypes[1]) if need[1] else None,
            gb.to(ctx.dtypes[2]) if need[2] else None) + (None,) * len(ctx.config)


OPS = {
    "cpp": Op("psn_cpp", forward=_cpp_forward, fake_forward=_fake_forward, backward_kernel=_cpp_backward,
              fake_backward=_fake_backward, setup_context=_setup_context, backward=_backward),
    "triton": Op("psn_triton", forward=_triton_forward,
                 fake_forward=lambda x2, *a: _fake_forward(x2, *a, dtype=x2.dtype),
                 backward_kernel=_triton_backward, fake_backward=_fake_backward, setup_context=_setup_context,
                 backward=_backward, triton=True),
}
