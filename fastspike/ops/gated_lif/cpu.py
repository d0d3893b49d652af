"""C++ launchers of the gated LIF kernels (csrc/gated_lif.cpp).

Tensors are contiguous float32: x [T, NB x C x S], the coefficients coef [5, C] and inc [T, C]; a constant
initial potential stays a number (no buffer). The forward keeps V after every step (fp32) for the backward.
"""
from __future__ import annotations

import torch

from ... import _ext
from .. import _alloc, _backend


def _addr(t) -> int:
    return 0 if t is None else t.data_ptr()


def forward(x, v0, v0_value: float, coef, inc, dims, store_v: bool):
    """x [T, M] float32, v0 [M] or None; ``dims`` = (NB, C, S) with M = NB C S. Returns (spikes [T, M],
    v_last [M], v_seq [T, M] or None), float32."""
    C = _ext.get()
    T, M = x.shape
    spikes = _alloc.empty_like(x)
    v_seq = _alloc.empty_like(x) if store_v else None
    v_last = torch.empty((M,), dtype=torch.float32)
    C.gated_lif_forward(x.data_ptr(), _addr(v0), v0_value, coef.data_ptr(), inc.data_ptr(), spikes.data_ptr(),
                        _addr(v_seq), v_last.data_ptr(), T, *dims, _backend.num_threads())
    return spikes, v_last, v_seq


def backward(gs, gv_last, x, v_seq, v0, v0_value: float, coef, inc, dims, sg: int, sg_a: float, sg_b: float,
             need_g0: bool):
    """Every tensor contiguous float32 (gs / gv_last may be None: zero). Returns (grad_x [T, M], grad_v0 [M] or
    None, grad_coef [5, C], grad_inc [T, C])."""
    C = _ext.get()
    T, M = x.shape
    if gs is None:
        gs = torch.zeros((T, M), dtype=torch.float32)
    gx = _alloc.empty_like(x)
    gv0 = torch.empty((M,), dtype=torch.float32) if need_g0 else None
    gcoef = torch.empty(coef.shape, dtype=torch.float32)
    ginc = torch.empty(inc.shape, dtype=torch.float32)
    C.gated_lif_backward(gs.data_ptr(), _addr(gv_last), x.data_ptr(), v_seq.data_ptr(), _addr(v0), v0_value,
                         coef.data_ptr(), inc.data_ptr(), gx.data_ptr(), _addr(gv0), gcoef.data_ptr(),
                         ginc.data_ptr(), T, *dims, sg, sg_a, sg_b, _backend.num_threads())
    return gx, gv0, gcoef, ginc
