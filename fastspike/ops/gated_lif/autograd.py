"""The gated LIF op under the op contract (ops/_contract.py): forward and backward kernels of each backend as custom
ops (``fastspike::gated_lif_cpp`` / ``fastspike::gated_lif_triton``), and one autograd formula.

Forward inputs: x [T, M] contiguous, v0 [M] or None (then every neuron starts at ``v0_value``), coef [5, C] and
inc [T, C] fp32 (the per-channel coefficients, see kernels/gated_lif.py), then ``CONFIG``: v0_value, the layout
NB, C, S (M = NB C S), the surrogate (sg, sg_a, sg_b) and need_grad. Forward outputs: spikes [T, M] and V after the
last step [M] in x's dtype, and V after every step [T, M] fp32 for the backward (empty unless need_grad). Backward
outputs: grad_x, grad_v0 (fp32, cast to the inputs' dtypes by the formula), grad_coef [5, C], grad_inc [T, C].
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import _alloc, _kernels
from .._contract import Op, launcher
from . import cpu

__all__ = ["OPS", "CONFIG"]

CONFIG = ("v0_value", "nb", "c", "s", "sg", "sg_a", "sg_b", "need_grad")

_Fwd = Tuple[Tensor, Tensor, Tensor]
_Bwd = Tuple[Tensor, Tensor, Tensor, Tensor]


# ------------------------------------------------------------------------------------------------- C++
def _cpp_forward(x: Tensor, v0: Optional[Tensor], coef: Tensor, inc: Tensor, v0_value: float, nb: int, c: int,
                 s: int, sg: int, sg_a: float, sg_b: float, need_grad: bool) -> _Fwd:
    f32 = _alloc.f32
    spikes, v_last, v_seq = cpu.forward(f32(x), f32(v0), v0_value, f32(coef), f32(inc), (nb, c, s), need_grad)
    if x.dtype is not torch.float32:
        spikes, v_last = spikes.to(x.dtype), v_last.to(x.dtype)
    return spikes, v_last, v_seq


def _cpp_backward(gs: Optional[Tensor], gv_last: Optional[Tensor], x: Tensor, v_seq: Tensor, v0: Optional[Tensor],
                  coef: Tensor, inc: Tensor, v0_value: float, nb: int, c: int, s: int, sg: int, sg_a: float,
                  sg_b: float, need_g0: bool) -> _Bwd:
    f32 = _alloc.f32
    return cpu.backward(f32(gs), f32(gv_last), f32(x), f32(v_seq), f32(v0), v0_value, f32(coef), f32(inc),
                        (nb, c, s), sg, sg_a, sg_b, need_g0)


# ---------------------------------------------------------------------------------------------- Triton
def _c(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def _triton_forward(x: Tensor, v0: Optional[Tensor], coef: Tensor, inc: Tensor, v0_value: float, nb: int, c: int,
                    s: int, sg: int, sg_a: float, sg_b: float, need_grad: bool) -> _Fwd:
    K = _kernels.load("gated_lif")
    return K.gated_lif_forward(x.contiguous(), _c(v0), v0_value, coef.float().contiguous(),
                               inc.float().contiguous(), (nb, c, s), need_grad, launch=launcher(x))


def _triton_backward(gs: Optional[Tensor], gv_last: Optional[Tensor], x: Tensor, v_seq: Tensor,
                     v0: Optional[Tensor], coef: Tensor, inc: Tensor, v0_value: float, nb: int, c: int, s: int,
                     sg: int, sg_a: float, sg_b: float, need_g0: bool) -> _Bwd:
    K = _kernels.load("gated_lif")
    return K.gated_lif_backward(_c(gs), _c(gv_last), x.contiguous(), v_seq, _c(v0), v0_value,
                                coef.float().contiguous(), inc.float().contiguous(), (nb, c, s), sg, sg_a, sg_b,
                                need_g0, launch=launcher(x))


# --------------------------------------------------------------------------------------- shared parts
def _fake_forward(x, v0, coef, inc, *config):
    need_grad = config[-1]
    T, M = x.shape
    return (torch.empty_like(x), x.new_empty((M,)),
            x.new_empty((T, M), dtype=torch.float32) if need_grad else None)


def _fake_backward(gs, gv_last, x, v_seq, v0, coef, inc, *rest):
    need_g0 = rest[-1]
    T, M = x.shape
    return (x.new_empty((T, M), dtype=torch.float32),
            x.new_empty((M,), dtype=torch.float32) if need_g0 else None,
            coef.new_empty(coef.shape, dtype=torch.float32), inc.new_empty(inc.shape, dtype=torch.float32))


def _setup_context(ctx, inputs, output):
    x, v0, coef, inc = inputs[:4]
    ctx.set_materialize_grads(False)
    ctx.config = inputs[4:4 + len(CONFIG) - 1]  # without need_grad
    ctx.dtypes = (x.dtype, None if v0 is None else v0.dtype, coef.dtype, inc.dtype)
    ctx.save_for_backward(x, output[2], v0, coef, inc)


def _formula(ctx, grads, kernel):
    gs, gv_last = grads[0], grads[1]
    x, v_seq, v0, coef, inc = ctx.saved_tensors
    assert v_seq is not None and v_seq.numel() == x.numel(), "the op ran without need_grad"
    need_v0 = v0 is not None and ctx.needs_input_grad[1]
    gx, gv0, gcoef, ginc = kernel(gs, gv_last, x, v_seq, v0, coef, inc, *ctx.config, need_v0)
    dx, dv0, dcoef, dinc = ctx.dtypes
    gx = gx.to(dx) if ctx.needs_input_grad[0] else None
    gv0 = gv0.to(dv0) if need_v0 else None
    gcoef = gcoef.to(dcoef) if ctx.needs_input_grad[2] else None
    ginc = ginc.to(dinc) if ctx.needs_input_grad[3] else None
    return (gx, gv0, gcoef, ginc) + (None,) * len(CONFIG)


OPS = {
    "cpp": Op("gated_lif_cpp", forward=_cpp_forward, fake_forward=_fake_forward, backward_kernel=_cpp_backward,
              fake_backward=_fake_backward, setup_context=_setup_context, backward=_formula),
    "triton": Op("gated_lif_triton", forward=_triton_forward, fake_forward=_fake_forward,
                 backward_kernel=_triton_backward, fake_backward=_fake_backward, setup_context=_setup_context,
                 backward=_formula, triton=True),
}
