"""C++ launchers of the two-state neuron kernels (csrc/neuron2.cpp).

Tensors are contiguous float32 in x's layout [T, *]; a constant initial state stays a number (no buffer). The
forward stores nothing for the backward: the C++ backward recomputes H from X block by block.
"""
from __future__ import annotations

import math

import torch

from ... import _ext
from .. import _alloc, _backend


def _addr(t) -> int:
    return 0 if t is None else t.data_ptr()


def forward(x, v0, v0_value: float, u0, u0_value: float, mode: int, v_th: float, v_reset: float, soft_reset: bool,
            store_seq: bool, params):
    """Returns (spikes, v_last, u_last, v_seq or None, u_seq or None); ``params``: the model's 7 numbers."""
    C = _ext.get()
    T = x.shape[0]
    N = math.prod(x.shape[1:])
    spikes = _alloc.empty_like(x)
    v_seq = _alloc.empty_like(x) if store_seq else None
    u_seq = _alloc.empty_like(x) if store_seq else None
    v_last = torch.empty(size=x.shape[1:], dtype=torch.float32)
    u_last = torch.empty(size=x.shape[1:], dtype=torch.float32)
    C.neuron2_forward(x.data_ptr(), _addr(v0), v0_value, _addr(u0), u0_value, spikes.data_ptr(), _addr(v_seq),
                      _addr(u_seq), v_last.data_ptr(), u_last.data_ptr(), T, N, mode, v_th, v_reset, soft_reset,
                      _backend.num_threads(), *params)
    return spikes, v_last, u_last, v_seq, u_seq


def backward(gs, gv_seq, gu_seq, gv_last, gu_last, x, v0, v0_value: float, u0, u0_value: float, mode: int,
             v_th: float, v_reset: float, soft_reset: bool, detach_reset: bool, sg: int, sg_a: float, sg_b: float,
             need_g0: bool, params):
    """Every tensor contiguous float32 in x's layout (the gradients may be None); returns (grad_x, grad_v0 or
    None, grad_u0 or None)."""
    C = _ext.get()
    T = x.shape[0]
    N = math.prod(x.shape[1:])
    if gs is None:
        gs = torch.zeros(x.shape, dtype=torch.float32)
    if (gv_seq is None) != (gu_seq is None):  # the kernel takes both sequences or neither
        gv_seq = torch.zeros(x.shape, dtype=torch.float32) if gv_seq is None else gv_seq
        gu_seq = torch.zeros(x.shape, dtype=torch.float32) if gu_seq is None else gu_seq
    gx = _alloc.empty_like(x)
    gv0 = torch.empty(size=x.shape[1:], dtype=torch.float32) if need_g0 else None
    gu0 = torch.empty(size=x.shape[1:], dtype=torch.float32) if need_g0 else None
    C.neuron2_backward(gs.data_ptr(), _addr(gv_seq), _addr(gu_seq), _addr(gv_last), _addr(gu_last), x.data_ptr(),
                       _addr(v0), v0_value, _addr(u0), u0_value, gx.data_ptr(), _addr(gv0), _addr(gu0), T, N, mode,
                       v_th, v_reset, soft_reset, detach_reset, sg, sg_a, sg_b, _backend.num_threads(), *params)
    return gx, gv0, gu0
