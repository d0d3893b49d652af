"""Pure-PyTorch implementations of every op: the oracle of the tests and the fallback of last resort.

Nothing here shares code with the kernels. Each function computes in float32 (float64 when given
float64) and casts its outputs back to the input dtype; autograd provides the gradients, with the
surrogate function's own autograd rule for the spike.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["neuron_multistep"]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def neuron_multistep(
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
) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """IF / LIF / ParametricLIF over T steps (DESIGN.md's equations), returning (spikes, v_last, v_seq).

    mode: 'if' (H = V + X), 'lif' (decay 1/tau) or 'plif' (decay sigmoid(w)). v_seq holds V after
    reset at every step when store_v_seq, else None.
    """
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
        else:
            raise ValueError(f"mode must be 'if', 'lif' or 'plif', but got {mode!r}.")
        s = surrogate_function(h - v_threshold)
        s_reset = s.detach() if detach_reset else s
        if v_reset is None:
            v = h - s_reset * v_threshold
        else:
            v = s_reset * v_reset + (1.0 - s_reset) * h
        spikes.append(s)
        if store_v_seq:
            vs.append(v)
    spike_seq = torch.stack(spikes).to(out_dt)
    v_seq = torch.stack(vs).to(out_dt) if store_v_seq else None
    return spike_seq, v.to(out_dt), v_seq


# The other ops keep their reference next to their dispatch (written independently of their kernels);
# they are listed here so this module names the oracle of every op.
from .psn import band_mask, reference_psn as psn  # noqa: E402
from .scan import reference_linear_scan as linear_scan  # noqa: E402
from .synapse import (ref_conv2d_grad_weight as conv2d_grad_weight,  # noqa: E402
                      ref_linear_grad_weight as linear_grad_weight, ref_pack_bits as pack_bits,
                      ref_unpack_bits as unpack_bits)

__all__ += ["psn", "band_mask", "linear_scan", "pack_bits", "unpack_bits", "linear_grad_weight",
            "conv2d_grad_weight"]
