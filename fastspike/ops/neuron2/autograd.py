"""The two-state neuron op under the op contract (ops/_contract.py): forward and backward kernels of each backend
as custom ops (``fastspike::neuron2_cpp`` / ``fastspike::neuron2_triton``), and one autograd formula.

Forward inputs: x [T, *], v0 [*] or None, u0 [*] or None (then the neurons start at ``v0_value`` / ``u0_value``),
then the configuration as scalars (``CONFIG``), then store_seq and need_grad. Forward outputs: spikes [T, *],
V and U after the last step [*], V and U after every step [T, *] (empty unless store_seq), and what the Triton
backward reads (H [T, N] fp32, and for CLIF M after every step [T, N] fp32; the C++ backward recomputes both
from x). Backward outputs: grad_x, grad_v0, grad_u0 in fp32; the formula casts them to the inputs' dtypes.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import _alloc, _kernels
from .._contract import Op, launcher
from . import cpu

__all__ = ["OPS", "CONFIG"]

# the scalar configuration, in the order the custom ops take it after (x, v0, u0)
CONFIG = ("v0_value", "u0_value", "mode", "v_threshold", "v_reset", "soft_reset", "detach_reset", "sg", "sg_a",
          "sg_b", "p0", "p1", "p2", "p3", "p4", "p5", "p6")
_CLIF = 2

_Fwd = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
_Bwd = Tuple[Tensor, Tensor, Tensor]


# ------------------------------------------------------------------------------------------------- C++
def _cpp_forward(x: Tensor, v0: Optional[Tensor], u0: Optional[Tensor], v0_value: float, u0_value: float, mode: int,
                 v_threshold: float, v_reset: float, soft_reset: bool, detach_reset: bool, sg: int, sg_a: float,
                 sg_b: float, p0: float, p1: float, p2: float, p3: float, p4: float, p5: float, p6: float,
                 store_seq: bool, need_grad: bool) -> _Fwd:
    f32 = _alloc.f32
    out = cpu.forward(f32(x), f32(v0), v0_value, f32(u0), u0_value, mode, v_threshold, v_reset, soft_reset,
                      store_seq, (p0, p1, p2, p3, p4, p5, p6))
    if x.dtype is not torch.float32:
        out = tuple(o.to(x.dtype) if o is not None else None for o in out)
    return (*out, None, None)


def _cpp_backward(gs: Optional[Tensor], gv_seq: Optional[Tensor], gu_seq: Optional[Tensor],
                  gv_last: Optional[Tensor], gu_last: Optional[Tensor], x: Optional[Tensor], h: Optional[Tensor],
                  m: Optional[Tensor], v0: Optional[Tensor], u0: Optional[Tensor], v0_value: float, u0_value: float,
                  mode: int, v_threshold: float, v_reset: float, soft_reset: bool, detach_reset: bool, sg: int,
                  sg_a: float, sg_b: float, p0: float, p1: float, p2: float, p3: float, p4: float, p5: float,
                  p6: float, need_g0: bool) -> _Bwd:
    assert x is not None, "the C++ backward recomputes H from x"
    f32 = _alloc.f32
    return cpu.backward(f32(gs), f32(gv_seq), f32(gu_seq), f32(gv_last), f32(gu_last), f32(x), f32(v0), v0_value,
                        f32(u0), u0_value, mode, v_threshold, v_reset, soft_reset, detach_reset, sg, sg_a, sg_b,
                        need_g0, (p0, p1, p2, p3, p4, p5, p6))


# ---------------------------------------------------------------------------------------------- Triton
def _flat(t: Optional[Tensor], shape) -> Optional[Tensor]:
    return None if t is None else t.reshape(shape).contiguous()


def _triton_forward(x: Tensor, v0: Optional[Tensor], u0: Optional[Tensor], v0_value: float, u0_value: float,
                    mode: int, v_threshold: float, v_reset: float, soft_reset: bool, detach_reset: bool, sg: int,
                    sg_a: float, sg_b: float, p0: float, p1: float, p2: float, p3: float, p4: float, p5: float,
                    p6: float, store_seq: bool, need_grad: bool) -> _Fwd:
    K = _kernels.load("neuron2")
    T = x.shape[0]
    N = x[0].numel() if T else 0
    spikes, v_last, u_last, v_seq, u_seq, h, m = K.neuron2_forward(
        x.reshape(T, N).contiguous(), _flat(v0, (N,)), _flat(u0, (N,)), v0_value, u0_value, mode, v_threshold,
        v_reset, soft_reset, (p0, p1, p2, p3, p4, p5, p6), store_seq, need_grad, launch=launcher(x))
    shape, step = x.shape, x.shape[1:]
    return (spikes.view(shape), v_last.view(step), u_last.view(step), v_seq.view(shape) if store_seq else None,
            u_seq.view(shape) if store_seq else None, h, m)


def _triton_backward(gs: Optional[Tensor], gv_seq: Optional[Tensor], gu_seq: Optional[Tensor],
                     gv_last: Optional[Tensor], gu_last: Optional[Tensor], x: Optional[Tensor], h: Optional[Tensor],
                     m: Optional[Tensor], v0: Optional[Tensor], u0: Optional[Tensor], v0_value: float,
                     u0_value: float, mode: int, v_threshold: float, v_reset: float, soft_reset: bool,
                     detach_reset: bool, sg: int, sg_a: float, sg_b: float, p0: float, p1: float, p2: float,
                     p3: float, p4: float, p5: float, p6: float, need_g0: bool) -> _Bwd:
    K = _kernels.load("neuron2")
    T, N = h.shape
    return K.neuron2_backward(_flat(gs, (T, N)), _flat(gv_seq, (T, N)), _flat(gu_seq, (T, N)), _flat(gv_last, (N,)),
                              _flat(gu_last, (N,)), h, m, _flat(v0, (N,)), _flat(u0, (N,)), v0_value, u0_value, mode,
                              v_threshold, v_reset, soft_reset, detach_reset, sg, sg_a, sg_b,
                              (p0, p1, p2, p3, p4, p5, p6), need_g0, launch=launcher(h))


# --------------------------------------------------------------------------------------- shared parts
def _fake_forward(x, v0, u0, v0_value, u0_value, mode, *rest, keeps_h: bool = False):
    store_seq, need_grad = rest[-2], rest[-1]
    T = x.shape[0]
    n = x[0].numel() if T else 0
    keep = keeps_h and need_grad
    seq = (torch.empty_like(x), torch.empty_like(x)) if store_seq else (None, None)
    return (torch.empty_like(x), x.new_empty(x.shape[1:]), x.new_empty(x.shape[1:]), *seq,
            x.new_empty((T, n), dtype=torch.float32) if keep else None,
            x.new_empty((T, n), dtype=torch.float32) if keep and mode == _CLIF else None)


def _fake_backward(gs, gv_seq, gu_seq, gv_last, gu_last, x, h, m, v0, u0, *rest):
    """C++: fp32 gradients in x's shape; Triton: grad_x [T, N] and grad_v0 / grad_u0 [N], fp32."""
    need_g0 = rest[-1]
    cpp = h is None or h.numel() == 0
    shape = x.shape if cpp else h.shape
    ref = x if cpp else h
    gx = ref.new_empty(shape, dtype=torch.float32)
    g0 = (ref.new_empty(shape[1:], dtype=torch.float32), ref.new_empty(shape[1:], dtype=torch.float32)) \
        if need_g0 else (None, None)
    return (gx, *g0)


def _make_setup(keeps_h: bool):
    def setup_context(ctx, inputs, output):
        x, v0, u0 = inputs[:3]
        ctx.set_materialize_grads(False)
        ctx.config = inputs[3:3 + len(CONFIG)]
        ctx.x_dtype, ctx.x_shape = x.dtype, x.shape
        ctx.save_for_backward(None if keeps_h else x, output[5], output[6], v0, u0)
    return setup_context


def _backward(ctx, grads):
    gs, gv_last, gu_last, gv_seq, gu_seq = grads[:5]
    return gs, gv_seq, gu_seq, gv_last, gu_last


def _formula(ctx, grads, kernel):
    gs, gv_seq, gu_seq, gv_last, gu_last = _backward(ctx, grads)
    x, h, m, v0, u0 = ctx.saved_tensors
    need_v0 = v0 is not None and ctx.needs_input_grad[1]
    need_u0 = u0 is not None and ctx.needs_input_grad[2]
    gx, gv0, gu0 = kernel(gs, gv_seq, gu_seq, gv_last, gu_last, x, h, m, v0, u0, *ctx.config, need_v0 or need_u0)
    if ctx.needs_input_grad[0]:
        gx = gx if gx.shape == ctx.x_shape else gx.reshape(ctx.x_shape)
        gx = gx if gx.dtype == ctx.x_dtype else gx.to(ctx.x_dtype)
    else:
        gx = None
    gv0 = gv0.reshape(v0.shape).to(v0.dtype) if need_v0 else None
    gu0 = gu0.reshape(u0.shape).to(u0.dtype) if need_u0 else None
    return (gx, gv0, gu0) + (None,) * (len(CONFIG) + 2)


OPS = {
    "cpp": Op("neuron2_cpp", forward=_cpp_forward, fake_forward=_fake_forward, backward_kernel=_cpp_backward,
              fake_backward=_fake_backward, setup_context=_make_setup(False), backward=_formula),
    "triton": Op("neuron2_triton", forward=_triton_forward,
                 fake_forward=lambda *a: _fake_forward(*a, keeps_h=True), backward_kernel=_triton_backward,
                 fake_backward=_fake_backward, setup_context=_make_setup(True), backward=_formula, triton=True),
}
