"""One-step neuron dynamics that no fastspike kernel fuses, as pure functions of explicit state.

Part of ``fastspike.functional.neuron`` (which re-exports every name here; import them from there). The IF,
LIF and ParametricLIF functions, which the fused kernels cover, live in ``neuron.py``. Each function takes
the state, returns the spikes and the next state, and follows SpikingJelly 2.0.0's argument order. H is the
membrane potential after charging, S = surrogate(H - v_threshold), and :func:`voltage_reset` applies the
hard (v_reset a number) or soft (v_reset None) reset.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..quantize import step_quantize

__all__ = ["voltage_reset", "lif_charge", "ternary_if_step", "ternary_lif_step", "qif_step", "eif_step",
           "activation_aware_if_step", "liaf_step", "ilif_step", "izhikevich_step", "raf_step", "klif_step",
           "cuba_lif_step", "clif_step", "sliding_psn_step", "masked_psn_step", "gated_lif_step", "stbif_step",
           "lava_cuba_lif_step", "leaky_integrator_step"]

SurrogateFunction = Callable[[torch.Tensor], torch.Tensor]


def voltage_reset(v: torch.Tensor, spike: torch.Tensor, v_threshold: float, v_reset: Optional[float],
                  detach_reset: bool) -> torch.Tensor:
    """Hard reset ``spike * v_reset + (1 - spike) * v`` (v_reset a number) or soft reset
    ``v - spike * v_threshold`` (v_reset None); ``detach_reset`` stops the gradient through the spike."""
    if detach_reset:
        spike = spike.detach()
    if v_reset is None:
        return v - spike * v_threshold
    return spike * v_reset + (1.0 - spike) * v


def lif_charge(x: torch.Tensor, v: torch.Tensor, tau: float, decay_input: bool,
               v_reset: Optional[float]) -> torch.Tensor:
    """LIF charge: ``v + (x - (v - v_reset)) / tau`` (decay_input) or ``v - (v - v_reset) / tau + x``;
    v_reset None counts as 0 in the leak."""
    rest = 0.0 if v_reset is None else v_reset
    if decay_input:
        return v + (x - (v - rest)) / tau
    return v - (v - rest) / tau + x


def _fire_reset(h, v_threshold, v_reset, surrogate_function, detach_reset):
    spike = surrogate_function(h - v_threshold)
    return spike, voltage_reset(h, spike, v_threshold, v_reset, detach_reset)


def _ternary(h, v_threshold, v_reset, surrogate_function, detach_reset):
    up = surrogate_function(h - v_threshold)
    down = surrogate_function(-h - v_threshold)
    spike = up - down
    # soft reset moves v towards 0 by the signed spike; hard reset fires on either sign
    return spike, voltage_reset(h, spike if v_reset is None else up + down, v_threshold, v_reset, detach_reset)


def ternary_if_step(x, v, v_threshold, v_reset, surrogate_function, detach_reset=False):
    """IF neuron with spikes in {-1, 0, 1} (fires -1 when H <= -v_threshold)."""
    return _ternary(v + x, v_threshold, v_reset, surrogate_function, detach_reset)


def ternary_lif_step(x, v, tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset=False):
    """LIF neuron with spikes in {-1, 0, 1}."""
    return _ternary(lif_charge(x, v, tau, decay_input, v_reset), v_threshold, v_reset, surrogate_function,
                    detach_reset)


def qif_charge(x, v, tau, a0, v_rest, v_c):
    return v + (x + a0 * (v - v_rest) * (v - v_c)) / tau


def qif_step(x, v, tau, a0, v_rest, v_c, v_threshold, v_reset, surrogate_function, detach_reset=False):
    """Quadratic IF: H = v + (x + a0 (v - v_rest)(v - v_c)) / tau."""
    return _fire_reset(qif_charge(x, v, tau, a0, v_rest, v_c), v_threshold, v_reset, surrogate_function,
                       detach_reset)


def eif_charge(x, v, tau, delta_t, theta_rh, v_rest):
    return v + (x + v_rest - v + delta_t * torch.exp((v - theta_rh) / delta_t)) / tau


def eif_step(x, v, tau, delta_t, theta_rh, v_rest, v_threshold, v_reset, surrogate_function, detach_reset=False):
    """Exponential IF: H = v + (x + v_rest - v + delta_t exp((v - theta_rh) / delta_t)) / tau."""
    return _fire_reset(eif_charge(x, v, tau, delta_t, theta_rh, v_rest), v_threshold, v_reset, surrogate_function,
                       detach_reset)


def activation_aware_if_step(x, v, v_threshold, v_offset, v_reset, surrogate_function, detach_reset=False):
    """IF neuron that fires when H + v_offset >= v_threshold (per-channel tensors allowed)."""
    h = v + x
    spike = surrogate_function(h + v_offset - v_threshold)
    return spike, voltage_reset(h, spike, v_threshold, v_reset, detach_reset)


def liaf_step(x, v, tau, decay_input, v_threshold, v_reset, act, threshold_related, surrogate_function,
              detach_reset=False):
    """LIAF: a LIF neuron whose output is act(H - v_threshold) (threshold_related) or act(H), not the spike;
    the spike only resets. Returns (output, v)."""
    h = lif_charge(x, v, tau, decay_input, v_reset)
    out = act(h - v_threshold if threshold_related else h)
    spike = surrogate_function(h - v_threshold)
    return out, voltage_reset(h, spike, v_threshold, v_reset, detach_reset)


def ilif_step(x, v, tau, v_threshold, surrogate_function, detach_reset=False):
    """Integer LIF: H = v - v / tau + x, S = surrogate(H / v_threshold) (a multi-level spike count with
    MultiLevelSpikeCount), soft reset by S * v_threshold."""
    h = lif_charge(x, v, tau, False, None)
    spike = surrogate_function(h / v_threshold)
    return spike, voltage_reset(h, spike, v_threshold, None, detach_reset)


def izhikevich_step(x, v, w, tau, a0, v_rest, v_c, tau_w, a, b, v_threshold, v_reset, surrogate_function,
                    detach_reset=False):
    """Izhikevich: H = v + (x + a0 (v - v_rest)(v - v_c) - w) / tau; the recovery
    w' = w + (a (H - v_rest) - w) / tau_w + b S. Returns (spike, v, w)."""
    h = v + (x + a0 * (v - v_rest) * (v - v_c) - w) / tau
    spike = surrogate_function(h - v_threshold)
    w_next = w + (a * (h - v_rest) - w) / tau_w + b * spike
    return spike, voltage_reset(h, spike, v_threshold, v_reset, detach_reset), w_next


def raf_step(x, u, v, b, omega, dt, v_threshold, v_reset, surrogate_function, detach_reset=False):
    """Resonate-and-fire: (u, v) rotates by omega dt and grows by exp(b dt) per step, x drives u, v fires.
    Returns (spike, u, v)."""
    r = math.exp(b * dt)
    c, s = math.cos(omega * dt), math.sin(omega * dt)
    u_next = r * (u * c - v * s) + x
    h = r * (u * s + v * c)
    spike = surrogate_function(h - v_threshold)
    return spike, u_next, voltage_reset(h, spike, v_threshold, v_reset, detach_reset)


def klif_step(x, v, k, tau, decay_input, scale_reset, v_threshold, v_reset, surrogate_function, detach_reset=False):
    """KLIF (Jiang & Zhang 2023): LIF charge, then H = relu(k H) with a learnable k; ``scale_reset`` resets in
    the unscaled domain (H / k against v_threshold / k)."""
    h = torch.relu(k * lif_charge(x, v, tau, decay_input, v_reset))
    spike = surrogate_function(h - v_threshold)
    if scale_reset:
        return spike, voltage_reset(h / k, spike, v_threshold / k, v_reset, detach_reset)
    return spike, voltage_reset(h, spike, v_threshold, v_reset, detach_reset)


def cuba_lif_step(x, current, v, current_decay, voltage_decay, v_threshold, v_reset, surrogate_function,
                  detach_reset=False):
    """Current-based LIF: I' = current_decay I + x, H = voltage_decay v + I'. Returns (spike, I', v')."""
    current_next = current * current_decay + x
    h = v * voltage_decay + current_next
    spike = surrogate_function(h - v_threshold)
    return spike, current_next, voltage_reset(h, spike, v_threshold, v_reset, detach_reset)


def clif_step(x, v, m, tau, v_threshold, spike_function):
    """Complementary LIF (Huang et al. 2024): H = v - v / tau + x, the complementary potential
    m' = m sigmoid(H / tau) + S, and v' = H - S (v_threshold + sigmoid(m')). Returns (spike, v', m')."""
    h = v - v / tau + x
    spike = spike_function(h - v_threshold)
    m_next = m * torch.sigmoid(h / tau) + spike
    return spike, h - spike * (v_threshold + torch.sigmoid(m_next)), m_next


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


def gated_lif_step(x, v, spike, alpha, beta, gamma, tau, v_threshold, linear_decay, v_subreset, conduct,
                   surrogate_function):
    """GLIF (Yao et al. 2022): gates alpha (exponential vs linear leak), beta (input conductance) and gamma
    (multiplicative vs subtractive reset) mix the charge and reset of the previous ``spike``.
    Returns (spike', v')."""
    keep = 1 - alpha * (1 - tau)
    v_next = keep * v - (1 - alpha) * linear_decay + x * (1 - beta * (1 - conduct))
    v_next = v_next - keep * v * gamma * spike - (1 - gamma) * v_subreset * spike
    return surrogate_function(v_next - v_threshold), v_next


def stbif_step(x, q, acc_q, q_threshold, pos_max, neg_min):
    """Signed ternary bounded IF (SpikeZIP-TF): q accumulates x / q_threshold; a +1 event when q >= 1 and the
    running count acc_q < pos_max, -1 when q < 0 and acc_q > neg_min. Inference only.
    Returns (event * q_threshold, q', acc_q', event)."""
    q_threshold = q_threshold.to(device=x.device, dtype=x.dtype)
    pos_max = pos_max.to(device=x.device, dtype=x.dtype)
    neg_min = neg_min.to(device=x.device, dtype=x.dtype)
    q = q + x / q_threshold
    acc_q = acc_q.round()
    up = (q >= 1) & (acc_q < pos_max)
    down = (q < 0) & (acc_q > neg_min)
    event = up.to(x.dtype) - down.to(x.dtype)
    return event * q_threshold, q - up.float() + down.float(), acc_q + event, event


_HW_BITS = 12  # Loihi's decay resolution: decays are integers in [0, 4096]


class _LeakyIntegrator(torch.autograd.Function):
    """Loihi's fixed-point leaky integration: state' = (state * w_scale * (4096 - decay)) >> 12 (rounding
    toward zero) + x * w_scale, divided back by w_scale; straight-through gradients of the real-valued form."""

    @staticmethod
    def forward(ctx, x, decay, state, w_scale):
        scaled = (state * w_scale).to(torch.int64)
        prod = scaled * ((1 << _HW_BITS) - decay.to(torch.int64))
        shifted = torch.sign(prod) * (prod.abs() >> _HW_BITS)
        out = (shifted + (w_scale * x).to(torch.int64)) / w_scale
        ctx.save_for_backward(decay, state)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        decay, state = ctx.saved_tensors
        scale = float(1 << _HW_BITS)
        grad_decay = (-state / scale * grad_output).sum() if ctx.needs_input_grad[1] else None
        return grad_output, grad_decay, (1 - decay / scale) * grad_output, None


def leaky_integrator_step(x: torch.Tensor, decay: torch.Tensor, state: torch.Tensor, w_scale: int) -> torch.Tensor:
    """Loihi's fixed-point leaky integrator (SpikingJelly's ``lava_exchange.LeakyIntegratorStep.apply``)."""
    return _LeakyIntegrator.apply(x, decay, state, w_scale)


def lava_cuba_lif_step(x, current_state, voltage_state, current_decay, voltage_decay, s_scale, v_threshold,
                       v_threshold_eps, v_reset, surrogate_function, detach_reset=False):
    """Loihi's CUBA LIF in fixed point (lava-dl's): the current and then the voltage are leaky integrators with
    quantised decays; fires at v_threshold + v_threshold_eps. Returns (spike, current', voltage')."""
    current = leaky_integrator_step(x, step_quantize(current_decay), current_state.contiguous(), s_scale)
    h = leaky_integrator_step(current, step_quantize(voltage_decay), voltage_state.contiguous(), s_scale)
    spike = surrogate_function(h - (v_threshold + v_threshold_eps))
    return spike, current, voltage_reset(h, spike, v_threshold, v_reset, detach_reset)
