"""One-step neuron dynamics that no fastspike kernel fuses, as pure functions of explicit state.

Part of ``fastspike.functional.neuron`` (which re-exports every name here; import them from there). The IF,
LIF and ParametricLIF functions, which the fused kernels cover, live in ``neuron.py``. Each function takes
the state, returns the spikes and the next state, and follows SpikingJelly 2.0.0's argument order. H is the
membrane potential after charging, S = surrogate(H - v_threshold), and :func:`voltage_reset` applies the
hard (v_reset a number) or soft (v_reset None) reset.

The step functions that fastspike's neuron modules also run are one implementation, in
``fastspike.neuron.dynamics``, imported here; this file holds those that only the functional API has (its
``ilif_step`` with a surrogate, the PSN queue steps, Loihi's fixed-point CUBA LIF).
"""
from __future__ import annotations

from typing import Callable

import torch

from .._apply import fast_apply

from ..neuron.dynamics import (activation_aware_if_step, clif_step, cuba_lif_step, eif_step, gated_lif_step,
                               izhikevich_step, klif_step, liaf_step, lif_charge, qif_step, raf_step, stbif_step,
                               ternary_if_step, ternary_lif_step)
from ..neuron.dynamics import reset_voltage as voltage_reset
from ..quantize import step_quantize

__all__ = ["voltage_reset", "lif_charge", "ternary_if_step", "ternary_lif_step", "qif_step", "eif_step",
           "activation_aware_if_step", "liaf_step", "ilif_step", "izhikevich_step", "raf_step", "klif_step",
           "cuba_lif_step", "clif_step", "sliding_psn_step", "masked_psn_step", "gated_lif_step", "stbif_step",
           "lava_cuba_lif_step", "leaky_integrator_step"]

SurrogateFunction = Callable[[torch.Tensor], torch.Tensor]


def ilif_step(x, v, tau, v_threshold, surrogate_function, detach_reset=False):
    """Integer LIF: H = v - v / tau + x, S = surrogate(H / v_threshold) (a multi-level spike count with
    MultiLevelSpikeCount), soft reset by S * v_threshold."""
    h = lif_charge(x, v, tau, False, None)
    spike = surrogate_function(h / v_threshold)
    return spike, voltage_reset(h, spike, v_threshold, None, detach_reset)


def sliding_psn_step(x, queue, weight, bias, surrogate_function):
    """One step of SlidingPSN: H = sum_i weight[k - n + i] x[t - n + 1 + i] over the last n <= k inputs
    (``queue`` holds them flattened, oldest first), S = surrogate(H + bias). Returns (spike, queue')."""
    k = weight.numel()
    queue = (*queue, x.flatten())
    if len(queue) > k:
        queue = queue[1:]
    w = weight[k - len(queue):k].unsqueeze(-1)
    h = (w * torch.stack(queue)).sum(0)
    return surrogate_function(h + bias).view(x.shape), queue


def masked_psn_step(x, time_step, queue, masked_weight, bias, k, surrogate_function):
    """One step of MaskedPSN at step ``time_step``: row ``time_step`` of the masked T x T weight over the last
    n <= k inputs, plus bias[time_step]. Returns (spike, time_step + 1, queue')."""
    queue = (*queue, x.flatten())
    if len(queue) > k:
        queue = queue[1:]
    w = masked_weight[time_step, time_step + 1 - len(queue):time_step + 1]
    h = (w.unsqueeze(-1) * torch.stack(queue)).sum(0)
    return surrogate_function(h + bias[time_step]).view(x.shape), time_step + 1, queue


_HW_BITS = 12  # Loihi's decay resolution: decays are integers in [0, 4096]


class _LeakyIntegrator(torch.autograd.Function):
    """Loihi's fixed-point leaky integration: state' = (state * w_scale * (4096 - decay)) >> 12 (rounding
    toward zero) + x * w_scale, divided back by w_scale; straight-through gradients of the real-valued form."""

    generate_vmap_rule = True  # PyTorch operations only (setup_context style: torch.func transforms apply it)

    @staticmethod
    def forward(x, decay, state, w_scale):
        scaled = (state * w_scale).to(torch.int64)
        prod = scaled * ((1 << _HW_BITS) - decay.to(torch.int64))
        shifted = torch.sign(prod) * (prod.abs() >> _HW_BITS)
        out = (shifted + (w_scale * x).to(torch.int64)) / w_scale
        return out.to(x.dtype)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1], inputs[2])

    @staticmethod
    def backward(ctx, grad_output):
        decay, state = ctx.saved_tensors
        scale = float(1 << _HW_BITS)
        grad_decay = (-state / scale * grad_output).sum() if ctx.needs_input_grad[1] else None
        return grad_output, grad_decay, (1 - decay / scale) * grad_output, None


_leaky_integrator = fast_apply(_LeakyIntegrator)


def leaky_integrator_step(x: torch.Tensor, decay: torch.Tensor, state: torch.Tensor, w_scale: int) -> torch.Tensor:
    """Loihi's fixed-point leaky integrator (SpikingJelly's ``lava_exchange.LeakyIntegratorStep.apply``)."""
    return _leaky_integrator(x, decay, state, w_scale)


def lava_cuba_lif_step(x, current_state, voltage_state, current_decay, voltage_decay, s_scale, v_threshold,
                       v_threshold_eps, v_reset, surrogate_function, detach_reset=False):
    """Loihi's CUBA LIF in fixed point (lava-dl's): the current and then the voltage are leaky integrators with
    quantised decays; fires at v_threshold + v_threshold_eps. Returns (spike, current', voltage')."""
    current = leaky_integrator_step(x, step_quantize(current_decay), current_state.contiguous(), s_scale)
    h = leaky_integrator_step(current, step_quantize(voltage_decay), voltage_state.contiguous(), s_scale)
    spike = surrogate_function(h - (v_threshold + v_threshold_eps))
    return spike, current, voltage_reset(h, spike, v_threshold, v_reset, detach_reset)
