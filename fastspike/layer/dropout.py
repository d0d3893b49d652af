"""Dropout that keeps one mask for a whole sequence (SpikingJelly 2.0.0 semantics).

An SNN sees the same sample for T steps; dropping different units at every step would let every unit
through on average and regularise little. These modules sample one mask (scaled by 1/(1-p), as
``torch.nn.functional.dropout``) at the first training step after a reset and reuse it for every later
step until ``functional.reset_net``. In step mode 'm' the mask is sampled from the shape of one step and
applied to all T steps. In eval mode they are the identity and sample nothing.

``DropConnectLinear`` (Wan et al., ICML 2013) drops weights instead of activations: in training every sample
gets its own masked copy of the weight (fresh per step, or kept until reset with ``invariant=True``); in
eval mode the output is the mean of ``samples_num`` draws of a Gaussian approximation of the pre-activation
pushed through ``activation``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import base

__all__ = ["Dropout", "Dropout2d", "DropConnectLinear"]


class Dropout(base.MemoryModule):
    """Element-wise dropout with a mask shared by all time steps until ``reset()``.

    :param p: probability of dropping an element, 0 <= p < 1
    :param step_mode: 's' (x: [N, *]) or 'm' (x_seq: [T, N, *])
    """

    def __init__(self, p: float = 0.5, step_mode: str = "s"):
        super().__init__()
        self.step_mode = step_mode
        if not 0 <= p < 1:
            raise ValueError(f"{type(self).__name__}: p must satisfy 0 <= p < 1, but got p={p}.")
        self.register_memory("mask", None)
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def create_mask(self, x: torch.Tensor) -> torch.Tensor:
        """A fresh mask with the shape of one step ``x``: 0 for dropped elements, 1/(1-p) for kept ones."""
        return F.dropout(torch.ones_like(x), self.p, training=True)

    def _mask_for(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            self.mask = self.create_mask(x)
        elif self.mask.shape != x.shape:
            raise ValueError(
                f"{type(self).__name__}: the stored mask has shape {tuple(self.mask.shape)} but one step of the input "
                f"has shape {tuple(x.shape)}; call functional.reset_net(net) between input sequences.")
        return self.mask

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * self._mask_for(x)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} (step_mode='m') expects x_seq with shape [T, N, *], "
                             f"but got shape {tuple(x_seq.shape)}.")
        if not self.training:
            return x_seq
        return x_seq * self._mask_for(x_seq[0])


class Dropout2d(Dropout):
    """Channel dropout (whole feature maps of [N, C, H, W]) with a mask shared by all time steps until
    ``reset()``."""

    def __init__(self, p: float = 0.2, step_mode: str = "s"):
        super().__init__(p, step_mode)

    def create_mask(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout2d(torch.ones_like(x), self.p, training=True)


class DropConnectLinear(base.MemoryModule):
    """Linear layer with DropConnect, followed by ``activation`` (default ``nn.ReLU()``; None for none).

    Training: each sample n draws masks keeping each weight (and bias) element with probability 1 - p and
    computes ``activation(W_n x_n + b_n)`` with the masked ``W_n``, ``b_n`` (no 1/(1-p) rescaling). The masked
    copies are memories (``dropped_w``, ``dropped_b``): with ``invariant=True`` they are drawn once and kept
    for every step until ``reset()``; otherwise every step draws new ones.
    Eval: the pre-activation is approximated by a Gaussian with mean ``(1-p)(W x + b)`` and variance
    ``p(1-p)(W^2 x^2 + b^2)``; the output is the mean over ``samples_num`` draws of ``activation(sample)``.
    A zero variance gives the mean itself (SpikingJelly 2.0.0's torch.distributions.Normal rejects it).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, p: float = 0.5,
                 samples_num: int = 1024, invariant: bool = False, activation: Optional[nn.Module] = nn.ReLU(),
                 step_mode: str = "s") -> None:
        super().__init__()
        self.step_mode = step_mode
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        self.p = p
        self.register_memory("dropped_w", None)
        if self.bias is not None:
            self.register_memory("dropped_b", None)
        self.samples_num = samples_num
        self.invariant = invariant
        self.activation = activation

    def reset_parameters(self) -> None:
        """nn.Linear's initialisation: Kaiming-uniform weight, bias uniform in +-1/sqrt(fan_in)."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def reset(self) -> None:
        super().reset()
        if hasattr(self.activation, "reset"):
            self.activation.reset()

    def drop(self, batch_size: int):
        """Masked copies of the weight ([batch_size, out, in]) and bias ([batch_size, out], or None)."""
        keep_w = torch.rand((batch_size,) + tuple(self.weight.shape), dtype=self.weight.dtype,
                            device=self.weight.device) >= self.p
        dropped_b = None
        if self.bias is not None:
            keep_b = torch.rand((batch_size,) + tuple(self.bias.shape), dtype=self.bias.dtype,
                                device=self.bias.device) >= self.p
            dropped_b = self.bias * keep_b
        return self.weight * keep_w, dropped_b

    def _activate(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.activation is None else self.activation(y)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.in_features or (self.training and x.dim() != 2):
            want = f"[N, {self.in_features}]" if self.training else f"[..., {self.in_features}]"
            raise ValueError(f"DropConnectLinear ({'training' if self.training else 'eval'}) expects one step with "
                             f"shape {want}, but got shape {tuple(x.shape)}")
        if self.training:
            if not self.invariant or self.dropped_w is None:
                self.dropped_w, dropped_b = self.drop(x.shape[0])
                if self.bias is not None:
                    self.dropped_b = dropped_b
            y = torch.bmm(self.dropped_w, x.unsqueeze(-1)).squeeze(-1)
            if self.bias is not None:
                y = y + self.dropped_b
            return self._activate(y)
        mean = (1.0 - self.p) * F.linear(x, self.weight, self.bias)
        var = self.p * (1.0 - self.p) * F.linear(x.square(), self.weight.square(),
                                                 None if self.bias is None else self.bias.square())
        shape = (self.samples_num,) + tuple(mean.shape)
        with torch.no_grad():
            samples = torch.normal(mean.expand(shape), var.sqrt().expand(shape))
        return self._activate(samples).mean(dim=0)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"p={self.p}, invariant={self.invariant}")
