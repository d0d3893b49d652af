"""Reference of ``multistep_neuron``: IF / LIF / ParametricLIF / QIF / EIF / leaky charges with the spike, KLIF,
count (ILIF) or analog (LIAF) fire, as a plain loop over time."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["multistep_neuron"]


class _SigmoidSpike(torch.autograd.Function):
    """Heaviside forward, the derivative of sigmoid(4 x) backward: SpikingJelly's default surrogate, written
    here so the reference depends on nothing else in fastspike."""

    generate_vmap_rule = True  # torch.func transforms apply it, as they do the rest of the reference

    @staticmethod
    def forward(x):
        return (x >= 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(4.0 * x)
        return g * 4.0 * s * (1.0 - s)


_sigmoid_spike = _SigmoidSpike.apply


_ACTS = {"identity": lambda z: z, "relu": torch.relu, "sigmoid": torch.sigmoid}


def _count(h: torch.Tensor, v_threshold: float, max_spike_count: float, grad_window) -> torch.Tensor:
    """ILIF's spike count round(clamp(H / thr, 0, max)), straight-through gradient 1 on grad_window."""
    scaled = h / v_threshold
    hard = scaled.clamp(0.0, max_spike_count).round()
    window = ((scaled >= grad_window[0]) & (scaled <= grad_window[1])).to(h.dtype)
    return hard + window * (scaled - scaled.detach())


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
    fire: str = "spike",
    k: Optional[torch.Tensor] = None,
    scale_reset: bool = False,
    max_spike_count: int = 4,
    grad_window: Tuple[float, float] = (0.0, 4.0),
    act: str = "relu",
    threshold_related: bool = True,
    v_offset: float = 0.0,
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """IF / LIF / ParametricLIF / QIF / EIF over T steps (DESIGN.md's equations), returning (spikes, v_last, v_seq).

    mode: 'if' (H = V + X), 'lif' (decay 1/tau), 'plif' (decay sigmoid(w)), 'qif'
    (H = V + (X + a0 (V - v_rest)(V - v_c)) / tau) or 'eif' (H = V + (X + v_rest - V + delta_T exp((V - theta_rh)
    / delta_T)) / tau) or 'leaky' (H = (1 - 1/tau) V + X), in SpikingJelly 2.0.0's order of operations. v_seq holds
    V after reset at every step when store_v_seq, else None.

    fire: 'spike' (S = surrogate(H - v_threshold), reset on H), 'klif' (F = relu(k H), S = surrogate(F - v_threshold),
    reset on F, or with scale_reset on F / k by v_threshold / k), 'count' (ILIF: S = round(clamp(H / v_threshold, 0,
    max_spike_count)), straight-through gradient on grad_window, soft reset by S v_threshold) or 'analog' (LIAF:
    output act(H - v_threshold) when threshold_related else act(H); the spike only resets) or 'offset'
    (ActivationAwareIF: S = surrogate(H + v_offset - v_threshold), reset from H).
    """
    if surrogate_function is None:
        surrogate_function = _sigmoid_spike
    cdt = _compute_dtype(x_seq)
    out_dt = x_seq.dtype
    v = v_init.to(cdt)
    vr = 0.0 if v_reset is None else v_reset
    if fire == "klif" and k is None:
        raise ValueError("fire='klif' needs k, KLIF's scale (a 1-element tensor).")
    kk = k.to(cdt).reshape(()) if fire == "klif" else None
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
        elif mode == "leaky":
            h = (1.0 - 1.0 / tau) * v + x
        else:
            raise ValueError(f"mode must be 'if', 'lif', 'plif', 'qif', 'eif' or 'leaky', but got {mode!r}.")
        thr = v_threshold
        if fire == "count":
            s = _count(h, v_threshold, float(max_spike_count), grad_window)
        elif fire == "klif":
            h = torch.relu(kk * h)
            s = surrogate_function(h - v_threshold)
            if scale_reset:
                h, thr = h / kk, v_threshold / kk
        elif fire == "offset":
            s = surrogate_function(h + v_offset - v_threshold)
        else:
            s = surrogate_function(h - v_threshold)
        out = s
        if fire == "analog":
            out = _ACTS[act](h - v_threshold if threshold_related else h)
        s_reset = s.detach() if detach_reset else s
        if v_reset is None:
            v = h - s_reset * thr
        else:
            v = s_reset * v_reset + (1.0 - s_reset) * h
        spikes.append(out)
        if store_v_seq:
            vs.append(v)
    if not spikes:  # T = 0: no step, V stays V0
        return x_seq.clone(), v.to(out_dt).clone(), (x_seq.clone() if store_v_seq else None)
    spike_seq = torch.stack(spikes).to(out_dt)
    v_seq = torch.stack(vs).to(out_dt) if store_v_seq else None
    return spike_seq, v.to(out_dt), v_seq


