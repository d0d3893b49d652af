"""C++ launchers of the multi-step IF / LIF / ParametricLIF / QIF / EIF kernels (csrc/neuron.cpp).

Tensors are contiguous float32 in x's layout [T, *]; a constant V0 stays a number (no buffer). The forward
stores no H: the C++ backward recomputes it from X block by block.
"""
from __future__ import annotations

import math

import torch

from ... import _ext
from .. import _alloc, _backend


def _channels(pc, inner: int):
    """(address, C, inner) of the per-channel thresholds / offsets, or (0, 1, 1)."""
    return (0, 1, 1) if pc is None else (pc.data_ptr(), pc.shape[1], inner)


def forward(x, v0, v0_value: float, decay: float, mode: int, decay_input: bool, v_th: float, v_reset: float,
            soft_reset: bool, store_v_seq: bool, params=(0.0, 0.0, 0.0), fire=(0, 0, 1.0, 0.0), pc=None,
            inner: int = 1):
    """Returns (spikes, v_seq or None, v_last); ``decay`` is tau (LIF, QIF, EIF) or k = sigmoid(w) (ParametricLIF);
    ``params``: QIF's (a0, v_rest, v_c), EIF's (delta_T, theta_rh, v_rest) or the leaky charge's decay;
    ``fire``: (fire, act, KLIF's k, q1) of csrc/neuron_fire.h; ``pc``: None or a [2, C] float32 tensor of
    per-channel thresholds and offsets (the offset fire), neuron n of a row in channel (n // inner) % C."""
    shape = x.shape
    T = shape[0]
    spikes = _alloc.empty_like(x)
    v_seq = _alloc.empty_like(x) if store_v_seq else None
    v_last = _alloc.empty(shape[1:])
    _ext.get().neuron_forward(x.data_ptr(), 0 if v0 is None else v0.data_ptr(), v0_value, spikes.data_ptr(), 0,
                              v_seq.data_ptr() if store_v_seq else 0, v_last.data_ptr(), T, v_last.numel(), mode,
                              decay, decay_input, v_th, v_reset, soft_reset, _backend.num_threads(), *params, *fire,
                              *_channels(pc, inner))
    return spikes, v_seq, v_last


def backward(gs, gv_seq, gv_last, x, v0, v0_value: float, decay: float, mode: int, decay_input: bool, v_th: float,
             v_reset: float, soft_reset: bool, detach_reset: bool, sg: int, sg_a: float, sg_b: float,
             need_gv0: bool, params=(0.0, 0.0, 0.0), fire=(0, 0, 1.0, 0.0, 0.0, 0.0), pc=None, inner: int = 1):
    """Every tensor contiguous float32 in x's layout (gs, gv_seq, gv_last may be None); ``fire``: (fire, act, k,
    q1, q2, q3); ``pc`` / ``inner`` as the forward's. Returns (grad_x, grad_v0 or None, grad_k as a 1-element
    float32 tensor or None): dL/dk of ParametricLIF's decay or of KLIF's scale."""
    C = _ext.get()
    T = x.shape[0]
    N = math.prod(x.shape[1:])
    plif = mode == 2 or fire[0] == 1 or fire[0] == 2  # a per-block dL/dk partial
    if gs is None:
        gs = torch.zeros(x.shape)
    gx = _alloc.empty_like(x)
    gv0 = _alloc.empty(x.shape[1:]) if need_gv0 else None
    gk = torch.empty((max(1, -(-N // C.NEURON_BLOCK)),), dtype=torch.float64) if plif else None
    C.neuron_backward(gs.data_ptr(), gv_seq.data_ptr() if gv_seq is not None else 0,
                      gv_last.data_ptr() if gv_last is not None else 0, x.data_ptr(),
                      0 if v0 is None else v0.data_ptr(), v0_value, gx.data_ptr(),
                      gv0.data_ptr() if need_gv0 else 0, gk.data_ptr() if plif else 0, T, N, mode, decay,
                      decay_input, v_th, v_reset, soft_reset, detach_reset, sg, sg_a, sg_b,
                      _backend.num_threads(), *params, *fire, *_channels(pc, inner))
    return gx, gv0, (gk.sum().float().reshape(1) if plif else None)
