"""Differentiation-on-spike-representation neurons (Meng et al., CVPR 2022; SpikingJelly 2.0's ``neuron.dsr``).

Multi-step only and stateless between calls. The forward is an IF (``DSRIFNode``) or LIF (``DSRLIFNode``)
neuron with a soft reset that fires at alpha * v_threshold and emits v_threshold per spike (divided by
delta_t for the LIF); the backward does not go through time but through the spike *rate*: the output
rate approximates clamp(input rate, 0, v_threshold), so the input gradient is the rate-coded upstream
gradient inside that range, and the threshold (a learnable parameter unless v_threshold_training=False)
receives the rate-coded gradient where the input rate exceeds it (times v_threshold_grad_scaling).
The LIF variant codes rates with exponential weights exp(-(T - i) delta_t / tau).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..base import MemoryModule
from . import _checks

__all__ = ["DSRIFNode", "DSRLIFNode"]


def _check_common(cls: str, T, v_threshold, alpha, lower_bound, step_mode) -> None:
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"{cls}: T must be an int, but got {T!r}.")
    _checks.number(cls, "v_threshold_lower_bound", lower_bound, gt=0.0)
    _checks.number(cls, "v_threshold", v_threshold, ge=lower_bound)
    a = _checks.number(cls, "alpha", alpha, gt=0.0)
    if a > 1.0:
        raise ValueError(f"{cls}: alpha must be in (0, 1], but got {alpha}.")
    _checks.multi_step_only(cls, step_mode)


def _check_T(module, x_seq: torch.Tensor) -> None:
    if not isinstance(x_seq, torch.Tensor) or not x_seq.is_floating_point() or x_seq.dim() < 2:
        raise TypeError(f"{type(module).__name__}: input must be a floating-point tensor [T, N, *].")
    if x_seq.shape[0] != module.T:
        raise ValueError(f"{type(module).__name__} was built with T={module.T}, but the input has {x_seq.shape[0]} "
                         f"time steps (shape {tuple(x_seq.shape)}).")


class _DSRIF(torch.autograd.Function):
    generate_vmap_rule = True  # PyTorch operations only (setup_context style: torch.func transforms apply it)

    @staticmethod
    def forward(x_seq, T, v_threshold, alpha, grad_scaling):
        v = torch.zeros_like(x_seq[0])
        out = []
        for x in x_seq:
            v = v + x
            spike = (v >= alpha * v_threshold).float() * v_threshold
            v = v - spike
            out.append(spike)
        return torch.stack(out)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x_seq, ctx.T, ctx.v_threshold, _, ctx.grad_scaling = inputs
        ctx.save_for_backward(x_seq)

    @staticmethod
    def backward(ctx, grad_out):
        (x_seq,) = ctx.saved_tensors
        T, v_threshold = ctx.T, ctx.v_threshold
        rate = x_seq.mean(0)
        g = grad_out.mean(0) * T
        outside = (rate < 0) | (rate > v_threshold)
        grad_x = torch.where(outside, torch.zeros_like(g), g)
        grad_th = torch.where(rate <= v_threshold, torch.zeros_like(g), g).sum() * ctx.grad_scaling
        return torch.stack([grad_x] * T) / T, None, grad_th, None, None


class DSRIFNode(MemoryModule):
    """DSR integrate-and-fire neuron (see the module docstring); input [T, N, *] with T fixed at construction."""

    def __init__(self, T: int = 20, v_threshold: float = 6.0, alpha: float = 0.5, v_threshold_training: bool = True,
                 v_threshold_grad_scaling: float = 1.0, v_threshold_lower_bound: float = 0.01, step_mode="m"):
        _check_common("DSRIFNode", T, v_threshold, alpha, v_threshold_lower_bound, step_mode)
        super().__init__()
        self.step_mode = step_mode
        self.T = T
        if v_threshold_training:
            self.v_threshold = nn.Parameter(torch.tensor(float(v_threshold)))
        else:
            self.v_threshold = torch.tensor(float(v_threshold))
        self.alpha = float(alpha)
        self.v_threshold_lower_bound = float(v_threshold_lower_bound)
        self.v_threshold_grad_scaling = v_threshold_grad_scaling

    def extra_repr(self) -> str:
        return (f", T={self.T}, init_vth={self.v_threshold}, alpha={self.alpha}, "
                f"vth_bound={self.v_threshold_lower_bound}, vth_g_scale={self.v_threshold_grad_scaling}")

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        _check_T(self, inputs[0])
        v_threshold = self.v_threshold.clamp(min=self.v_threshold_lower_bound)
        return (_DSRIF.apply(inputs[0], self.T, v_threshold, self.alpha, self.v_threshold_grad_scaling),), states


class _DSRLIF(torch.autograd.Function):
    generate_vmap_rule = True  # PyTorch operations only (setup_context style: torch.func transforms apply it)

    @staticmethod
    def forward(x_seq, T, v_threshold, tau, delta_t, alpha, grad_scaling):
        beta = math.exp(-delta_t / tau)
        v = torch.zeros_like(x_seq[0])
        out = []
        for x in x_seq:
            v = beta * v + (1 - beta) * x
            spike = (v >= alpha * v_threshold).float() * v_threshold
            v = v - spike
            out.append(spike / delta_t)
        return torch.stack(out)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x_seq, ctx.T, ctx.v_threshold, ctx.tau, ctx.delta_t, _, ctx.grad_scaling = inputs
        ctx.save_for_backward(x_seq)

    @staticmethod
    def backward(ctx, grad_out):
        (x_seq,) = ctx.saved_tensors
        T, tau, delta_t = ctx.T, ctx.tau, ctx.delta_t
        rate = DSRLIFNode.weight_rate_spikes(x_seq, tau, delta_t)
        g = DSRLIFNode.weight_rate_spikes(grad_out, tau, delta_t) * T
        top = ctx.v_threshold / delta_t * tau
        grad_x = torch.where((rate > 0) & (rate < top), g / tau, torch.zeros_like(g))
        grad_th = torch.where(rate <= top, torch.zeros_like(g), g).sum() * delta_t * ctx.grad_scaling
        return torch.stack([grad_x] * T) / T, None, grad_th, None, None, None, None


class DSRLIFNode(MemoryModule):
    """DSR leaky integrate-and-fire neuron (see the module docstring); input [T, N, *] with T fixed."""

    def __init__(self, T: int = 20, v_threshold: float = 1.0, tau: float = 2.0, delta_t: float = 0.05,
                 alpha: float = 0.3, v_threshold_training: bool = True, v_threshold_grad_scaling: float = 1.0,
                 v_threshold_lower_bound: float = 0.1, step_mode="m"):
        _check_common("DSRLIFNode", T, v_threshold, alpha, v_threshold_lower_bound, step_mode)
        super().__init__()
        self.step_mode = step_mode
        self.T = T
        if v_threshold_training:
            self.v_threshold = nn.Parameter(torch.tensor(float(v_threshold)))
        else:
            self.v_threshold = torch.tensor(float(v_threshold))
        self.tau = tau
        self.delta_t = delta_t
        self.alpha = float(alpha)
        self.v_threshold_lower_bound = float(v_threshold_lower_bound)
        self.v_threshold_grad_scaling = v_threshold_grad_scaling

    def extra_repr(self) -> str:
        return (f", T={self.T}, init_vth={self.v_threshold}, tau={self.tau}, dt={self.delta_t}, alpha={self.alpha}, "
                f"vth_bound={self.v_threshold_lower_bound}, vth_g_scale={self.v_threshold_grad_scaling}")

    @classmethod
    def weight_rate_spikes(cls, data: torch.Tensor, tau: float, delta_t: float) -> torch.Tensor:
        """Exponentially weighted mean over time (dimension 0): weights exp(-(T delta_t - i delta_t) / tau),
        i = 1..T, normalised to sum 1."""
        T = data.shape[0]
        weight = torch.tensor([math.exp(-1 / tau * (delta_t * T - i * delta_t)) for i in range(1, T + 1)])
        weight = weight.to(data.device)
        return (weight * data.movedim(0, -1)).sum(dim=-1) / weight.sum()

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        _check_T(self, inputs[0])
        v_threshold = self.v_threshold.clamp(min=self.v_threshold_lower_bound)
        return (_DSRLIF.apply(inputs[0], self.T, v_threshold, self.tau, self.delta_t, self.alpha,
                              self.v_threshold_grad_scaling),), states
