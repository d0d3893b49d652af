"""One time step of every neuron model, as plain PyTorch functions on tensors (no module, no stored state).

These functions are the reference of fastspike's neuron models: each neuron class of fastspike.neuron
builds its single-step and multi-step modes on the function here (a loop over time for multi-step), and
fused kernels that later replace those loops are tested against them. They differentiate through autograd
(the spike functions through their surrogate), compute in the input's dtype and follow SpikingJelly 2.0.0's
formulas and order of operations, so spikes match it exactly and voltages and gradients to rounding.

Conventions: ``x`` is the input of one step, ``v`` the membrane potential before it; ``surrogate_function``
maps H - threshold to spikes (Heaviside forward, a smooth derivative backward). Hard reset (``v_reset`` a
number) sets V to v_reset where a spike fired; soft reset (``v_reset=None``) subtracts the threshold.
``detach_reset`` cuts the gradient through the spike used by the reset.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

Surrogate = Callable[[torch.Tensor], torch.Tensor]

__all__ = [
    "reset_voltage", "lif_charge", "if_step", "lif_step", "ternary_if_step", "ternary_lif_step", "qif_step",
    "eif_step", "izhikevich_step", "ilif_step", "multi_level_spike", "activation_aware_if_step", "raf_step",
    "klif_step", "cuba_lif_step", "clif_step", "liaf_step", "gated_lif_step", "stbif_step", "few_spike_table",
]


def reset_voltage(v: torch.Tensor, spike: torch.Tensor, v_threshold, v_reset: Optional[float],
                  detach_reset: bool) -> torch.Tensor:
    """V after the spike, from the charged potential ``v`` (H): S v_reset + (1 - S) H (hard) or H - S v_threshold
    (soft). SpikingJelly's ``functional.voltage_reset``."""
    if detach_reset:
        spike = spike.detach()
    if v_reset is None:
        return v - spike * v_threshold
    return spike * v_reset + (1.0 - spike) * v


def lif_charge(x: torch.Tensor, v: torch.Tensor, tau: float, decay_input: bool,
               v_reset: Optional[float]) -> torch.Tensor:
    """Leaky integration towards v_reset (0 for soft reset) with time constant tau:
    H = V + (X - (V - V_r)) / tau with decay_input, else H = V - (V - V_r) / tau + X."""
    v_r = 0.0 if v_reset is None else v_reset
    if decay_input:
        return v + (x - (v - v_r)) / tau
    return v - (v - v_r) / tau + x


def if_step(x, v, v_threshold, v_reset, surrogate_function: Surrogate, detach_reset=False):
    """Integrate-and-fire: H = V + X."""
    h = v + x
    spike = surrogate_function(h - v_threshold)
    return spike, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def lif_step(x, v, tau, decay_input, v_threshold, v_reset, surrogate_function: Surrogate, detach_reset=False):
    """Leaky integrate-and-fire (charge: :func:`lif_charge`)."""
    h = lif_charge(x, v, tau, decay_input, v_reset)
    spike = surrogate_function(h - v_threshold)
    return spike, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def _ternary_fire(h, v_threshold, v_reset, surrogate_function: Surrogate, detach_reset):
    up = surrogate_function(h - v_threshold)
    down = surrogate_function(-h - v_threshold)
    spike = up - down  # +1 above v_threshold, -1 below -v_threshold
    # hard reset pulls V to v_reset after either spike; soft reset moves it back by +-v_threshold
    reset_by = spike if v_reset is None else up + down
    return spike, reset_voltage(h, reset_by, v_threshold, v_reset, detach_reset)


def ternary_if_step(x, v, v_threshold, v_reset, surrogate_function: Surrogate, detach_reset=False):
    """IF with spikes in {-1, 0, +1}: +1 when H >= v_threshold, -1 when H <= -v_threshold."""
    return _ternary_fire(v + x, v_threshold, v_reset, surrogate_function, detach_reset)


def ternary_lif_step(x, v, tau, decay_input, v_threshold, v_reset, surrogate_function: Surrogate,
                     detach_reset=False):
    """LIF charge, ternary spikes as :func:`ternary_if_step`."""
    return _ternary_fire(lif_charge(x, v, tau, decay_input, v_reset), v_threshold, v_reset, surrogate_function,
                         detach_reset)


def qif_step(x, v, tau, a0, v_rest, v_c, v_threshold, v_reset, surrogate_function: Surrogate, detach_reset=False):
    """Quadratic integrate-and-fire: H = V + (X + a0 (V - v_rest)(V - v_c)) / tau."""
    h = v + (x + a0 * (v - v_rest) * (v - v_c)) / tau
    spike = surrogate_function(h - v_threshold)
    return spike, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def eif_step(x, v, tau, delta_t, theta_rh, v_rest, v_threshold, v_reset, surrogate_function: Surrogate,
             detach_reset=False):
    """Exponential integrate-and-fire: H = V + (X + v_rest - V + delta_t exp((V - theta_rh) / delta_t)) / tau."""
    h = v + (x + v_rest - v + delta_t * torch.exp((v - theta_rh) / delta_t)) / tau
    spike = surrogate_function(h - v_threshold)
    return spike, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def izhikevich_step(x, v, w, tau, a0, v_rest, v_c, tau_w, a, b, v_threshold, v_reset,
                    surrogate_function: Surrogate, detach_reset=False):
    """Izhikevich-style QIF with an adaptation current w:
    H = V + (X + a0 (V - v_rest)(V - v_c) - w) / tau; w' = w + (a (H - v_rest) - w) / tau_w + b S."""
    h = v + (x + a0 * (v - v_rest) * (v - v_c) - w) / tau
    spike = surrogate_function(h - v_threshold)
    w_next = w + (a * (h - v_rest) - w) / tau_w + b * spike
    return spike, reset_voltage(h, spike, v_threshold, v_reset, detach_reset), w_next


def multi_level_spike(scaled: torch.Tensor, max_spike_count: float, grad_min: float, grad_max: float) -> torch.Tensor:
    """round(clamp(scaled, 0, max_spike_count)) forward; gradient 1 where grad_min <= scaled <= grad_max."""
    hard = scaled.clamp(0.0, max_spike_count).round()
    window = ((scaled >= grad_min) & (scaled <= grad_max)).to(scaled.dtype)
    return hard + window * (scaled - scaled.detach())


def ilif_step(x, v, tau, v_threshold, max_spike_count, grad_min, grad_max, detach_reset=False):
    """Integer LIF (multi-level spikes): H = (1 - 1/tau) V + X; S = round(clamp(H / v_threshold, 0, count))
    with a straight-through gradient on [grad_min, grad_max]; V = H - S v_threshold."""
    h = (1.0 - 1.0 / tau) * v + x
    spike = multi_level_spike(h / v_threshold, max_spike_count, grad_min, grad_max)
    return spike, reset_voltage(h, spike, v_threshold, None, detach_reset)


def activation_aware_if_step(x, v, v_threshold, v_offset, v_reset, surrogate_function: Surrogate,
                             detach_reset=False):
    """IF whose firing test is shifted by v_offset: S = Heaviside(V + X + v_offset - v_threshold);
    thresholds and offsets may be per channel (broadcast against x)."""
    h = v + x
    spike = surrogate_function(h + v_offset - v_threshold)
    return spike, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def raf_step(x, u, v, b, omega, dt, v_threshold, v_reset, surrogate_function: Surrogate, detach_reset=False):
    """Resonate-and-fire: (u, v) rotates by omega dt and decays by exp(b dt) each step, x drives u, v fires.
    Returns (spike, u, v)."""
    decay = math.exp(b * dt)
    cos, sin = math.cos(omega * dt), math.sin(omega * dt)
    u_next = decay * (u * cos - v * sin) + x
    h = decay * (u * sin + v * cos)
    spike = surrogate_function(h - v_threshold)
    return spike, u_next, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def klif_step(x, v, k, tau, decay_input, scale_reset, v_threshold, v_reset, surrogate_function: Surrogate,
              detach_reset=False):
    """KLIF: LIF charge, then H = relu(k H) with a learnable k; scale_reset resets in the unscaled domain."""
    h = torch.relu(k * lif_charge(x, v, tau, decay_input, v_reset))
    spike = surrogate_function(h - v_threshold)
    if scale_reset:
        return spike, reset_voltage(h / k, spike, v_threshold / k, v_reset, detach_reset)
    return spike, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def cuba_lif_step(x, current, v, current_decay, voltage_decay, v_threshold, v_reset, surrogate_function: Surrogate,
                  detach_reset=False):
    """Current-based LIF: I' = current_decay I + X; H = voltage_decay V + I'. Returns (spike, I', v')."""
    current_next = current * current_decay + x
    h = v * voltage_decay + current_next
    spike = surrogate_function(h - v_threshold)
    return spike, current_next, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def clif_step(x, v, m, tau, v_threshold, spike_function: Surrogate):
    """Complementary LIF: H = V - V / tau + X; m' = m sigmoid(H / tau) + S; V' = H - S (v_threshold + sigmoid(m')).
    Returns (spike, v', m')."""
    h = v - v / tau + x
    spike = spike_function(h - v_threshold)
    m_next = m * torch.sigmoid(h / tau) + spike
    return spike, h - spike * (v_threshold + torch.sigmoid(m_next)), m_next


def liaf_step(x, v, tau, decay_input, v_threshold, v_reset, act, threshold_related, surrogate_function: Surrogate,
              detach_reset=False):
    """Leaky integrate-and-analog-fire: LIF dynamics, but the output is act(H - v_threshold) (threshold_related)
    or act(H) instead of the spike. Returns (output, v')."""
    h = lif_charge(x, v, tau, decay_input, v_reset)
    out = act(h - v_threshold if threshold_related else h)
    spike = surrogate_function(h - v_threshold)
    return out, reset_voltage(h, spike, v_threshold, v_reset, detach_reset)


def gated_lif_step(x, v, spike, alpha, beta, gamma, tau, v_threshold, linear_decay, v_subreset, conduct,
                   surrogate_function: Surrogate):
    """Gated LIF (GLIF): gates alpha, beta, gamma in (0, 1) mix exponential / linear leak, input conductance
    and multiplicative / subtractive reset by the previous spike. Returns (spike', v')."""
    leak = 1 - alpha * (1 - tau)
    v_next = leak * v - (1 - alpha) * linear_decay + x * (1 - beta * (1 - conduct))
    v_next = v_next - leak * v * gamma * spike - (1 - gamma) * v_subreset * spike
    return surrogate_function(v_next - v_threshold), v_next


def stbif_step(x, q, acc_q, q_threshold, pos_max, neg_min):
    """Signed, bounded IF of SpikeZIP: q accumulates x / q_threshold; a +1 spike when q >= 1 and the count is below
    pos_max, a -1 spike when q < 0 and the count is above neg_min. Returns (spike * q_threshold, q', count', spike)."""
    q_threshold = q_threshold.to(device=x.device, dtype=x.dtype)
    pos_max = pos_max.to(device=x.device, dtype=x.dtype)
    neg_min = neg_min.to(device=x.device, dtype=x.dtype)
    q = q + x / q_threshold
    acc_q = acc_q.round()
    up = (q >= 1) & (acc_q < pos_max)
    down = (q < 0) & (acc_q > neg_min)
    spike = up.to(x.dtype) - down.to(x.dtype)
    return spike * q_threshold, q - up.to(q.dtype) + down.to(q.dtype), acc_q + spike, spike


def few_spike_table(gate: torch.Tensor, theta, h, d, surrogate_function: Surrogate,
                    return_sequence: bool) -> torch.Tensor:
    """Few-spike coding of an activation: for k = 1..K, z_k = spike(v - theta_k), output d_k z_k, v -= h_k z_k
    (v starts at ``gate``). theta, h, d: per-step values (numbers or tensors broadcast against gate).
    Returns the K weighted spikes stacked ([K, *]) or their sum."""
    v = gate
    steps = []
    total = torch.zeros_like(gate)
    for theta_k, h_k, d_k in zip(theta, h, d):
        z = surrogate_function(v - theta_k)
        if return_sequence:
            steps.append(d_k * z)
        else:
            total = total + d_k * z
        v = v - h_k * z
    return torch.stack(steps) if return_sequence else total

