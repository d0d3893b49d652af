"""Reference of ``multistep_gated_lif``: SpikingJelly 2.0's gated LIF (GLIF) as a plain loop over time."""
from __future__ import annotations

from typing import Tuple, Union

import torch

from .neuron import _SigmoidSpike

__all__ = ["multistep_gated_lif"]


def multistep_gated_lif(
    x_seq: torch.Tensor,
    v_init: Union[torch.Tensor, float],
    alpha: torch.Tensor,
    beta: torch.Tensor,
    gamma: torch.Tensor,
    tau: torch.Tensor,
    v_threshold: torch.Tensor,
    linear_decay: torch.Tensor,
    v_subreset: torch.Tensor,
    conduct: torch.Tensor,
    surrogate_function=None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """GLIF over T steps in SpikingJelly 2.0.0's order of operations (``functional.gated_lif_step``), returning
    (spikes [T, *], V after the last step [*]). The gates and coefficients are the values after the sigmoid:
    0-d (one for every neuron) or [C], C = x_seq.shape[2] (per channel of a step [N, C, *]); conduct is [T] or
    [T, C]. With S the previous step's spike (0 before the first step):

        L = 1 - alpha (1 - tau)
        V' = L V - (1 - alpha) linear_decay + X (1 - beta (1 - conduct[t]))
        V' = V' - L V gamma S - (1 - gamma) v_subreset S
        S' = Heaviside(V' - v_threshold)   (the surrogate's gradient backward, S never detached)
    """
    if surrogate_function is None:
        surrogate_function = _SigmoidSpike.apply
    cdt = torch.float64 if x_seq.dtype == torch.float64 else torch.float32
    extra = max(x_seq.dim() - 3, 0)

    def per_channel(p: torch.Tensor) -> torch.Tensor:  # [C] -> [C, 1, ..., 1] against a step [N, C, *]
        p = p.to(cdt)
        return p if p.dim() == 0 else p.reshape(p.shape + (1,) * extra)

    a, b, g = per_channel(alpha), per_channel(beta), per_channel(gamma)
    ta, th = per_channel(tau), per_channel(v_threshold)
    ld, sr = per_channel(linear_decay), per_channel(v_subreset)
    if isinstance(v_init, torch.Tensor):
        v = v_init.to(cdt)
    else:
        v = torch.full(x_seq.shape[1:], float(v_init), dtype=cdt, device=x_seq.device)
    spike = torch.zeros(x_seq.shape[1:], dtype=cdt, device=x_seq.device)
    spikes = []
    for t in range(x_seq.shape[0]):
        x = x_seq[t].to(cdt)
        c = per_channel(conduct[t])
        current = x * (1 - b * (1 - c))
        h = ((1 - a * (1 - ta)) * v - (1 - a) * ld) + current
        h = h - (1 - a * (1 - ta)) * v * g * spike - (1 - g) * sr * spike
        spike = surrogate_function(h - th)
        v = h
        spikes.append(spike)
    dt = x_seq.dtype
    if not spikes:
        return x_seq.clone(), v.to(dt).clone()
    return torch.stack(spikes).to(dt), v.to(dt)
