"""C++ launchers of the multi-step IF / LIF / ParametricLIF / QIF / EIF kernels (csrc/neuron.cpp), in the op
contract's form: ``neuron_forward`` / ``neuron_backward`` take the arguments of ``fastspike::neuron_cpp`` and its
backward (ops/neuron/autograd.py's ``CONFIG``) and are that op's forward and backward kernels.

The kernels read contiguous float32 in x's layout [T, *] (other dtypes are converted here, and the results
converted back); a constant V0 stays a number (no buffer). The forward stores no H: the backward recomputes it from
X block by block. These run once per neuron layer per call, so they call the binding directly (a small layer's host
time is the ``neuron.overhead`` bench case).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from ... import _ext
from .. import _alloc

_F32 = torch.float32
_threads = torch.get_num_threads


def _plif_decay(k: Tensor) -> float:
    """ParametricLIF's k = sigmoid(w) as a number for the C++ kernels (free on the CPU), checked: a NaN w
    would silently give NaN states."""
    decay = float(k)
    if not math.isfinite(decay):
        raise ValueError(f"ParametricLIF's w must be finite (1/tau = sigmoid(w)), but sigmoid(w) = {decay}.")
    return decay


def _klif_k(k: Tensor) -> float:
    """KLIF's scale k as a number for the C++ kernels (the other fire variants pass 1.0), checked finite."""
    value = float(k)
    if not math.isfinite(value):
        raise ValueError(f"KLIF's k must be finite, but got {value}.")
    return value


def neuron_forward(x: Tensor, v0: Optional[Tensor], k: Optional[Tensor], pc: Optional[Tensor], v0_value: float,
                   mode: int, tau: float, decay_input: bool, v_threshold: float, v_reset: float, soft_reset: bool,
                   detach_reset: bool, sg: int, sg_a: float, sg_b: float, p1: float, p2: float, p3: float, fire: int,
                   act: int, q1: float, q2: float, q3: float, store_v_seq: bool, need_grad: bool,
                   inner: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(spikes [T, *], V after the last step [*], V after every step or None, None: no H). ``tau`` is the decay
    of LIF / QIF / EIF (ParametricLIF's is k = sigmoid(w)); (p1, p2, p3) QIF's (a0, v_rest, v_c), EIF's (delta_T,
    theta_rh, v_rest) or the leaky charge's decay; (fire, act, KLIF's k, q1) as csrc/neuron_fire.h; ``pc``: None or
    a [2, C] float32 tensor of per-channel thresholds and offsets (the offset fire), neuron n of a row in channel
    (n // inner) % C."""
    xf = x if x.dtype is _F32 and x.is_contiguous() else _alloc.f32(x)
    if v0 is not None:
        v0 = _alloc.f32(v0)
    decay = _plif_decay(k) if mode == 2 else tau
    scale = _klif_k(k) if fire == 1 or fire == 2 else 1.0
    spikes = _alloc.empty_like(xf)
    v_seq = _alloc.empty_like(xf) if store_v_seq else None
    v_last = _alloc.empty(xf.shape[1:])
    pc_ptr, channels, inner = (0, 1, 1) if pc is None else (pc.data_ptr(), pc.shape[1], inner)
    _ext.get().neuron_forward(
        xf.data_ptr(), 0 if v0 is None else v0.data_ptr(), v0_value, spikes.data_ptr(), 0,
        0 if v_seq is None else v_seq.data_ptr(), v_last.data_ptr(), xf.shape[0], v_last.numel(), mode, decay,
        decay_input, v_threshold, v_reset, soft_reset, _threads(), p1, p2, p3, fire, act, scale, q1,
        pc_ptr, channels, inner)
    if x.dtype is not _F32:
        spikes, v_last = spikes.to(x.dtype), v_last.to(x.dtype)
        v_seq = v_seq.to(x.dtype) if v_seq is not None else None
    return spikes, v_last, v_seq, None


def neuron_backward(gs: Optional[Tensor], gv_seq: Optional[Tensor], gv_last: Optional[Tensor], x: Optional[Tensor],
                    h: Optional[Tensor], v0: Optional[Tensor], k: Optional[Tensor], v0_value: float, mode: int,
                    tau: float, decay_input: bool, v_threshold: float, v_reset: float, soft_reset: bool,
                    detach_reset: bool, sg: int, sg_a: float, sg_b: float, p1: float, p2: float, p3: float,
                    fire: int, act: int, q1: float, q2: float, q3: float, need_gv0: bool, pc: Optional[Tensor],
                    inner: int) -> Tuple[Tensor, Tensor, Tensor]:
    """(grad_x in x's shape, float32; grad_v0 or None; grad_k as a 1-element float32 tensor or None: dL/dk of
    ParametricLIF's decay or of KLIF's scale). The incoming gradients may be None (zero); ``h`` is unused (the
    kernel recomputes H from x)."""
    assert x is not None, "the C++ backward recomputes H from x"
    f32 = _alloc.f32
    x = f32(x)
    gs = torch.zeros(x.shape, dtype=_F32) if gs is None else f32(gs)
    if gv_seq is not None:  # None (zero) in the common case: no call
        gv_seq = f32(gv_seq)
    if gv_last is not None:
        gv_last = f32(gv_last)
    if v0 is not None:
        v0 = f32(v0)
    decay = _plif_decay(k) if mode == 2 else tau
    scale = _klif_k(k) if fire == 1 or fire == 2 else 1.0
    T = x.shape[0]
    N = math.prod(x.shape[1:])
    C = _ext.get()
    plif = mode == 2 or fire == 1 or fire == 2  # a per-block dL/dk partial
    gx = _alloc.empty_like(x)
    gv0 = _alloc.empty(x.shape[1:]) if need_gv0 else None
    gk = torch.empty((max(1, -(-N // C.NEURON_BLOCK)),), dtype=torch.float64) if plif else None
    pc_ptr, channels, inner = (0, 1, 1) if pc is None else (pc.data_ptr(), pc.shape[1], inner)
    C.neuron_backward(
        gs.data_ptr(), 0 if gv_seq is None else gv_seq.data_ptr(), 0 if gv_last is None else gv_last.data_ptr(),
        x.data_ptr(), 0 if v0 is None else v0.data_ptr(), v0_value, gx.data_ptr(),
        gv0.data_ptr() if need_gv0 else 0, gk.data_ptr() if plif else 0, T, N, mode, decay, decay_input, v_threshold,
        v_reset, soft_reset, detach_reset, sg, sg_a, sg_b, _threads(), p1, p2, p3, fire, act, scale, q1,
        q2, q3, pc_ptr, channels, inner)
    return gx, gv0, (gk.sum().float().reshape(1) if plif else None)
