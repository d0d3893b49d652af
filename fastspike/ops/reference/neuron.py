"""Reference of ``multistep_neuron``: IF / LIF / ParametricLIF / QIF / EIF as a plain loop over time."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["multistep_neuron"]


class _SigmoidSpike(torch.autograd.Function):
    """Heaviside forward, the derivative of sigmoid(4 x) backward: SpikingJelly's default surrogate, written
    here so the reference depends on nothing else in fastspike."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(4.0 * x)
        return g * 4.0 * s * (1.0 - s)


_sigmoid_spike = _SigmoidSpike.apply


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def multistep_neuron(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    mode: str,
    tau: Optional[float] = None,
    w: Optional[torch.Tensor] = None,
    decay_input: bool = True,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    surrogate_function=None,
    detach_reset: bool = False,
    store_v_seq: bool = False,
    a0: float = 1.0,
    v_c: float = 0.8,
    delta_T: float = 1.0,
    theta_rh: float = 0.8,
    v_rest: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """IF / LIF / ParametricLIF / QIF / EIF over T steps (DESIGN.md's equations), returning (spikes, v_last, v_seq).

    mode: 'if' (H = V + X), 'lif' (decay 1/tau), 'plif' (decay sigmoid(w)), 'qif'
    (H = V + (X + a0 (V - v_rest)(V - v_c)) / tau) or 'eif' (H = V + (X + v_rest - V + delta_T exp((V - theta_rh)
    / delta_T)) / tau), in SpikingJelly 2.0.0's order of operations. v_seq holds V after reset at every step when
    store_v_seq, else None.
    """
    if surrogate_function is None:
        surrogate_function = _sigmoid_spike
    cdt = _compute_dtype(x_seq)
    out_dt = x_seq.dtype
    v = v_init.to(cdt)
    vr = 0.0 if v_reset is None else v_reset
    k = torch.sigmoid(w.to(cdt)) if mode == "plif" else None
    spikes, vs = [], []
    for x in x_seq:
        x = x.to(cdt)
        if mode == "if":
            h = v + x
        elif mode == "lif":
            h = v + (x - (v - vr)) / tau if decay_input else v - (v - vr) / tau + x
        elif mode == "plif":
            h = v + (x - (v - vr)) * k if decay_input else v - (v - vr) * k + x
        elif mode == "qif":
            h = v + (x + a0 * (v - v_rest) * (v - v_c)) / tau
        elif mode == "eif":
            h = v + (x + v_rest - v + delta_T * torch.exp((v - theta_rh) / delta_T)) / tau
        else:
            raise ValueError(f"mode must be 'if', 'lif', 'plif', 'qif' or 'eif', but got {mode!r}.")
        s = surrogate_function(h - v_threshold)
        s_reset = s.detach() if detach_reset else s
        if v_reset is None:
            v = h - s_reset * v_threshold
        else:
            v = s_reset * v_reset + (1.0 - s_reset) * h
        spikes.append(s)
        if store_v_seq:
            vs.append(v)
    if not spikes:  # T = 0: no step, V stays V0
        return x_seq.clone(), v.to(out_dt).clone(), (x_seq.clone() if store_v_seq else None)
    spike_seq = torch.stack(spikes).to(out_dt)
    v_seq = torch.stack(vs).to(out_dt) if store_v_seq else None
    return spike_seq, v.to(out_dt), v_seq


