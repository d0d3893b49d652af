"""Reference of ``multistep_neuron2``: the two-state neurons (Izhikevich, CUBA-LIF, CLIF) as a plain loop over time."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .neuron import _SigmoidSpike

__all__ = ["multistep_neuron2"]


def _reset(h, s, v_threshold, v_reset, detach_reset):
    s = s.detach() if detach_reset else s
    if v_reset is None:
        return h - s * v_threshold
    return s * v_reset + (1.0 - s) * h


def multistep_neuron2(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    u_init: torch.Tensor,
    model: str,
    v_threshold: float = 1.0,
    v_reset: Optional[float] = 0.0,
    surrogate_function=None,
    detach_reset: bool = False,
    store_seq: bool = False,
    tau: float = 2.0,
    a0: float = 1.0,
    v_rest: float = 0.0,
    v_c: float = 0.8,
    tau_w: float = 2.0,
    a: float = 0.0,
    b: float = 0.0,
    c_decay: float = 0.5,
    v_decay: float = 0.75,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor]]:
    """The two-state neurons over T steps in SpikingJelly 2.0.0's order of operations, returning
    (spikes, v_last, u_last, v_seq, u_seq) (the sequences None unless store_seq). u is the second state:

    * 'izhikevich' (u = w): H = V + (X + a0 (V - v_rest)(V - v_c) - W) / tau; S = Heaviside(H - v_threshold);
      W' = W + (a (H - v_rest) - W) / tau_w + b S (S never detached there); V' = reset(H, S).
    * 'cuba' (u = c, the current): C' = C c_decay + X; H = V v_decay + C'; V' = reset(H, S).
    * 'clif' (u = m): H = V - V / tau + X; M' = M sigmoid(H / tau) + S; V' = H - S (v_threshold + sigmoid(M'))
      (its own soft reset: v_reset and detach_reset do not apply).
    reset: hard S v_reset + (1 - S) H, or soft (v_reset None) H - S v_threshold, S detached with detach_reset.
    """
    if surrogate_function is None:
        surrogate_function = _SigmoidSpike.apply
    cdt = torch.float64 if x_seq.dtype == torch.float64 else torch.float32
    v, u = v_init.to(cdt), u_init.to(cdt)
    spikes, vs, us = [], [], []
    for x in x_seq:
        x = x.to(cdt)
        if model == "izhikevich":
            h = v + (x + a0 * (v - v_rest) * (v - v_c) - u) / tau
            s = surrogate_function(h - v_threshold)
            u = u + (a * (h - v_rest) - u) / tau_w + b * s
            v = _reset(h, s, v_threshold, v_reset, detach_reset)
        elif model == "cuba":
            u = u * c_decay + x
            h = v * v_decay + u
            s = surrogate_function(h - v_threshold)
            v = _reset(h, s, v_threshold, v_reset, detach_reset)
        elif model == "clif":
            h = v - v / tau + x
            s = surrogate_function(h - v_threshold)
            u = u * torch.sigmoid(h / tau) + s
            v = h - s * (v_threshold + torch.sigmoid(u))
        else:
            raise ValueError(f"model must be 'izhikevich', 'cuba' or 'clif', but got {model!r}.")
        spikes.append(s)
        if store_seq:
            vs.append(v)
            us.append(u)
    dt = x_seq.dtype
    if not spikes:  # T = 0: the states stay
        empty = x_seq.clone() if store_seq else None
        return x_seq.clone(), v.to(dt).clone(), u.to(dt).clone(), empty, (x_seq.clone() if store_seq else None)
    return (torch.stack(spikes).to(dt), v.to(dt), u.to(dt), torch.stack(vs).to(dt) if store_seq else None,
            torch.stack(us).to(dt) if store_seq else None)
