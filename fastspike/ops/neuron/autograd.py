"""The multi-step neuron op under the op contract (ops/_contract.py): forward and backward kernels of each
backend as custom ops, and one autograd formula.

Forward inputs: x [T, *], v0 [*] or None (then every neuron starts at ``v0_value``), k (ParametricLIF's decay
sigmoid(w), a 0-d tensor) or None, ``pc`` (None, or the offset fire's per-channel thresholds and offsets, [2, C]
float32), then the configuration as scalars (``CONFIG``), store_v_seq, need_grad and ``inner`` (neuron n of a step,
flattened in x's layout, is in channel (n // inner) % C). Forward outputs: spikes
[T, *], V after the last step [*], V after every step [T, *] (empty unless ``store_v_seq``) and what the
backward reads besides x (Triton: H [T, N] in x's dtype; C++: None, its backward recomputes H from x).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import _kernels
from .._contract import Op, launcher
from . import cpu

__all__ = ["OPS", "CONFIG"]

# the scalar configuration, in the order the custom ops take it after (x, v0, k, pc)
CONFIG = ("v0_value", "mode", "tau", "decay_input", "v_threshold", "v_reset", "soft_reset", "detach_reset",
          "sg", "sg_a", "sg_b", "p1", "p2", "p3", "fire", "act", "q1", "q2", "q3")

_Fwd = Tuple[Tensor, Tensor, Tensor, Tensor]
_CONFIG_END = 4 + len(CONFIG)  # the configuration's slice of the forward's inputs: [4, _CONFIG_END)
_NO_GRADS = (None,) * (len(CONFIG) + 4)  # the backward's slots after x, v0 and k


# ---------------------------------------------------------------------------------------------- Triton
def _triton_forward(x: Tensor, v0: Optional[Tensor], k: Optional[Tensor], pc: Optional[Tensor], v0_value: float,
                    mode: int, tau: float, decay_input: bool, v_threshold: float, v_reset: float, soft_reset: bool,
                    detach_reset: bool, sg: int, sg_a: float, sg_b: float, p1: float, p2: float, p3: float, fire: int,
                    act: int, q1: float, q2: float, q3: float, store_v_seq: bool, need_grad: bool,
                    inner: int) -> _Fwd:
    K = _kernels.load("neuron")
    T = x.shape[0]
    x2 = x.reshape(T, -1).contiguous()
    v02 = v0.reshape(-1).contiguous() if v0 is not None else None
    k1 = k.detach().float().reshape(1) if k is not None else None
    spikes, h, v_seq, v_last = K.neuron_forward(x2, v02, k1, v0_value, mode, tau, decay_input, v_threshold,
                                                v_reset, soft_reset, need_grad, store_v_seq,
                                                params=(p1, p2, p3), fire=(fire, act, q1, q2, q3), pc=pc,
                                                inner=inner, launch=launcher(x))
    return spikes.view(x.shape), v_last.view(x.shape[1:]), v_seq.view(x.shape) if v_seq is not None else None, h


def _triton_backward(gs: Optional[Tensor], gv_seq: Optional[Tensor], gv_last: Optional[Tensor],
                     x: Optional[Tensor], h: Optional[Tensor], v0: Optional[Tensor], k: Optional[Tensor],
                     v0_value: float,
                     mode: int, tau: float, decay_input: bool, v_threshold: float, v_reset: float,
                     soft_reset: bool, detach_reset: bool, sg: int, sg_a: float, sg_b: float, p1: float,
                     p2: float, p3: float, fire: int, act: int, q1: float, q2: float, q3: float,
                     need_gv0: bool, pc: Optional[Tensor], inner: int) -> Tuple[Tensor, Tensor, Tensor]:
    K = _kernels.load("neuron")

    def flat(t, shape):
        return None if t is None else t.reshape(shape).contiguous()

    T, N = h.shape
    gx, gv0, gk = K.neuron_backward(flat(gs, (T, N)), flat(gv_seq, (T, N)), flat(gv_last, (N,)), h,
                                    flat(x, (T, N)), flat(v0, (N,)), k.detach().float().reshape(1) if k is not None
                                    else None, v0_value, mode, tau, decay_input, v_threshold, v_reset, soft_reset,
                                    detach_reset, sg, sg_a, sg_b, need_gv0, params=(p1, p2, p3),
                                    fire=(fire, act, q1, q2, q3), pc=pc, inner=inner, launch=launcher(h))
    return gx, gv0, gk


# --------------------------------------------------------------------------------------- shared parts
def _fake_forward(x, v0, k, pc, v0_value, mode, tau, decay_input, v_threshold, v_reset, soft_reset, detach_reset,
                  sg, sg_a, sg_b, p1, p2, p3, fire, act, q1, q2, q3, store_v_seq, need_grad, inner,
                  keeps_h: bool = False):
    T = x.shape[0]
    n = x[0].numel() if T else 0
    # Triton's H is fp32 for the count fire (its gradient window needs H unrounded) and per channel, else x's dtype
    h_dtype = torch.float32 if (fire == 3 or pc is not None) else x.dtype
    h = x.new_empty((T, n), dtype=h_dtype) if (keeps_h and need_grad) else None
    return (torch.empty_like(x), x.new_empty(x.shape[1:]), torch.empty_like(x) if store_v_seq else None, h)


def _fake_backward(gs, gv_seq, gv_last, x, h, v0, k, v0_value, mode, *rest):
    """grad_x comes back in x's shape (C++) or as [T, N] (Triton); the formula reshapes it."""
    need_gv0 = rest[-3]  # rest ends with need_gv0, pc, inner
    ref = x if x is not None else h
    no_h = h is None or h.numel() == 0  # C++: fp32 gradients in x's shape; Triton: [T, N] in H's / V0's dtype
    gx = ref.new_empty(ref.shape if no_h else h.shape, dtype=torch.float32 if no_h else h.dtype)
    gv0_dtype = torch.float32 if no_h else (v0.dtype if v0 is not None else h.dtype)
    gv0 = ref.new_empty(gx.shape[1:] if no_h else (h.shape[1],), dtype=gv0_dtype) if need_gv0 else None
    fire = rest[CONFIG.index("fire") - 2]
    gk = ref.new_empty((1,), dtype=torch.float32) if (mode == 2 or fire in (1, 2)) else None
    return gx, gv0, gk


def _make_setup(keeps_h: bool):
    def setup_context(ctx, inputs, output):
        x, v0, k, pc = inputs[:4]
        ctx.set_materialize_grads(False)
        config = ctx.config = inputs[4:_CONFIG_END]
        ctx.x_dtype, ctx.x_shape, ctx.inner = x.dtype, x.shape, inputs[-1]
        # Triton keeps H (and x for ParametricLIF's dH/dk; QIF / EIF recompute V[t-1] from H); C++ keeps x and
        # recomputes H
        keep_x = (not keeps_h) or config[1] == 2
        ctx.save_for_backward(x if keep_x else None, output[3], v0, k, pc)
    return setup_context


def _backward(ctx, grads, kernel):
    gs, gv_last, gv_seq, _ = grads
    x, h, v0, k, pc = ctx.saved_tensors
    need_gv0 = v0 is not None and ctx.needs_input_grad[1]
    gx, gv0, gk = kernel(gs, gv_seq, gv_last, x, h, v0, k, *ctx.config, need_gv0, pc, ctx.inner)
    if ctx.needs_input_grad[0]:  # C++ returns x's shape and dtype already (reshape/to cost host time per call)
        gx = gx if gx.shape == ctx.x_shape else gx.reshape(ctx.x_shape)
        gx = gx if gx.dtype == ctx.x_dtype else gx.to(ctx.x_dtype)
    else:
        gx = None
    gv0 = gv0.reshape(v0.shape).to(v0.dtype) if need_gv0 else None
    gk = gk.reshape(()).to(k.dtype) if (k is not None and ctx.needs_input_grad[2]) else None
    return (gx, gv0, gk) + _NO_GRADS  # no gradient for pc, the configuration, store_v_seq, need_grad or inner


OPS = {
    "cpp": Op("neuron_cpp", forward=cpu.neuron_forward, fake_forward=_fake_forward,
              backward_kernel=cpu.neuron_backward,
              fake_backward=_fake_backward, setup_context=_make_setup(False), backward=_backward),
    "triton": Op("neuron_triton", forward=_triton_forward,
                 fake_forward=lambda *a: _fake_forward(*a, keeps_h=True), backward_kernel=_triton_backward,
                 fake_backward=_fake_backward, setup_context=_make_setup(True), backward=_backward, triton=True),
}
