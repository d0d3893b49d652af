"""The linear-scan op under the op contract (ops/_contract.py).

Forward: b2 [T, M], a_k (None in mode 0, [T] in mode 1, [T, M] in mode 2), h0 [M] or None, mode, the scalar
decay of mode 0, and whether the backward will need h (a gradient for a) -> h [T, M] in fp32. Backward kernel:
-> (grad_b [T, M], grad_a ([T] or [T, M], empty when not needed), grad_h0 [M] (empty when not needed)), fp32.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import _backend, _kernels
from .._contract import Op, launcher
from . import cpu

__all__ = ["OPS"]


def _contig(t: Optional[Tensor], dtype=None) -> Optional[Tensor]:
    if t is None:
        return None
    if dtype is not None and t.dtype is not dtype:
        t = t.to(dtype)
    return t.contiguous()


def _empty(like: Tensor) -> Tensor:
    return like.new_empty((0,), dtype=torch.float32)


def _cpp_forward(b2: Tensor, a_k: Optional[Tensor], h0: Optional[Tensor], mode: int, a_scalar: float,
                 need_h: bool) -> Tensor:
    return cpu.forward(a_k, b2, h0, mode, a_scalar)


def _cpp_backward(gout: Tensor, a_k: Optional[Tensor], h: Tensor, h0: Optional[Tensor], mode: int, a_scalar: float,
                  need_ga: bool, need_gh0: bool) -> Tuple[Tensor, Tensor, Tensor]:
    gb, ga, gh0 = cpu.backward(a_k, h if need_ga else gout, h0, gout, mode, a_scalar, need_ga, need_gh0)
    return gb, ga if ga is not None else _empty(gb), gh0 if gh0 is not None else _empty(gb)


def _triton_forward(b2: Tensor, a_k: Optional[Tensor], h0: Optional[Tensor], mode: int, a_scalar: float,
                    need_h: bool) -> Tensor:
    K = _kernels.load("scan")
    return K.scan_forward(_contig(a_k, torch.float32), b2.contiguous(), _contig(h0), mode, a_scalar,
                          interpret=_backend.triton_interpret(), launch=launcher(b2))


def _triton_backward(gout: Tensor, a_k: Optional[Tensor], h: Tensor, h0: Optional[Tensor], mode: int,
                     a_scalar: float, need_ga: bool, need_gh0: bool) -> Tuple[Tensor, Tensor, Tensor]:
    K = _kernels.load("scan")
    g = gout.contiguous()
    gb, ga, gh0 = K.scan_backward(_contig(a_k, torch.float32), h if need_ga else g, _contig(h0), g, mode, a_scalar,
                                  need_ga, need_gh0, interpret=_backend.triton_interpret(),
                                  launch=launcher(gout))
    return gb, ga if ga is not None else _empty(gb), gh0 if gh0 is not None else _empty(gb)


def _fake_forward(b2, a_k, h0, mode, a_scalar, need_h):
    return b2.new_empty(b2.shape, dtype=torch.float32)


def _fake_backward(gout, a_k, h, h0, mode, a_scalar, need_ga, need_gh0):
    T, M = gout.shape
    gb = gout.new_empty((T, M), dtype=torch.float32)
    ga = gout.new_empty((T, M) if mode == 2 else (T,), dtype=torch.float32) if need_ga and mode else _empty(gb)
    gh0 = gout.new_empty((M,), dtype=torch.float32) if need_gh0 else _empty(gb)
    return gb, ga, gh0


def _setup_context(ctx, inputs, output):
    b2, a_k, h0, mode, a_scalar, need_h = inputs
    ctx.set_materialize_grads(False)
    ctx.config = (mode, a_scalar)
    ctx.need_h = bool(need_h and a_k is not None)
    ctx.save_for_backward(a_k, output if ctx.need_h else None, h0 if ctx.need_h else None)


def _backward(ctx, grads, kernel):
    (gout,) = grads
    a_k, h, h0 = ctx.saved_tensors
    need = ctx.needs_input_grad
    if gout is None:
        return (None,) * 6
    need_ga = ctx.need_h and need[1]
    gb, ga, gh0 = kernel(gout, a_k, h if h is not None else gout, h0, *ctx.config, need_ga, need[2])
    return (gb if need[0] else None, ga.to(a_k.dtype) if need_ga else None, gh0 if need[2] else None,
            None, None, None)


OPS = {
    "cpp": Op("linear_scan_cpp", forward=_cpp_forward, fake_forward=_fake_forward, backward_kernel=_cpp_backward,
              fake_backward=_fake_backward, setup_context=_setup_context, backward=_backward),
    "triton": Op("linear_scan_triton", forward=_triton_forward, fake_forward=_fake_forward,
                 backward_kernel=_triton_backward, fake_backward=_fake_backward, setup_context=_setup_context,
                 backward=_backward, triton=True),
}
