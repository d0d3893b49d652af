"""Surrogates the fused kernels do not implement (neurons using them run the pure-PyTorch path).

SquarewaveFourierSeries, FakeNumericalGradient, DeterministicPass, MultiLevelSpikeCount and PoissonPass, with
SpikingJelly 2.0.0's parameters, defaults and checks.
"""
from __future__ import annotations

import math
import numbers

import torch

from .. import quantize
from .._errors import ArgumentError
from .base import SurrogateFunctionBase
from .functions import (deterministic_pass, fake_numerical_gradient_grad, poisson_pass,
                        squarewave_fourier_series_grad)

__all__ = ["SquarewaveFourierSeries", "FakeNumericalGradient", "DeterministicPass", "MultiLevelSpikeCount",
           "PoissonPass"]


class SquarewaveFourierSeries(SurrogateFunctionBase):
    """Primitive: the first ``n - 1`` odd harmonics of a square wave of period ``T_period``,
    g(x) = 1/2 + 2/pi sum_{i=1}^{n-1} sin((2i-1) w x) / (2i-1), w = 2 pi / T_period; g' backward."""
    _param_names = ("n", "T_period")

    def __init__(self, n: int = 2, T_period: float = 8, spiking=True):
        if not isinstance(n, int) or isinstance(n, bool):
            raise ArgumentError(f"SquarewaveFourierSeries: n must be an int, but got {n!r}.")
        if not T_period > 0.0:
            raise ArgumentError(f"SquarewaveFourierSeries: T_period must be > 0, but got {T_period!r}.")
        super().__init__(spiking, n=n, T_period=T_period)

    grad = staticmethod(squarewave_fourier_series_grad)

    @staticmethod
    def primitive_function(x: torch.Tensor, n: int, T_period: float) -> torch.Tensor:
        w = 2.0 * math.pi / T_period
        acc = torch.zeros_like(x)
        for i in range(1, n):
            c = 2 * i - 1.0
            acc = acc + torch.sin(c * w * x) / c
        return 0.5 + 2.0 / math.pi * acc


class FakeNumericalGradient(SurrogateFunctionBase):
    """Gradient min(sign(x) / x, alpha): the slope of the secant of the Heaviside step through the origin,
    capped at ``alpha``. Spiking only (it has no primitive function)."""

    def __init__(self, alpha=0.3):
        super().__init__(True, alpha=alpha)

    grad = staticmethod(fake_numerical_gradient_grad)


class DeterministicPass(SurrogateFunctionBase):
    """Heaviside forward with a straight-through (identity) gradient; ``spiking=False`` is the identity."""
    _param_names = ()

    def __init__(self, spiking=True):
        super().__init__(spiking)

    @staticmethod
    def grad(x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return deterministic_pass.apply(x) if self.spiking else x

    @staticmethod
    def backward(grad_output, x, alpha=None):
        return grad_output


class PoissonPass(SurrogateFunctionBase):
    """Forward: a Bernoulli sample with probabilities ``x`` (a Poisson spike); backward: the identity.
    ``spiking=False`` is the identity."""
    _param_names = ()

    def __init__(self, spiking=True):
        super().__init__(spiking)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return poisson_pass.apply(x) if self.spiking else x

    @staticmethod
    def backward(grad_output, x, alpha=None):
        return grad_output


class MultiLevelSpikeCount(SurrogateFunctionBase):
    """A spike count in {0, 1, ..., max_spike_count}: forward round(clamp(x, 0, max_spike_count)), backward the
    identity inside ``grad_window`` = (grad_min, grad_max) (default (0, max_spike_count)) and 0 outside.
    ``spiking=False`` gives clamp(x, 0, max_spike_count)."""
    _param_names = ("max_spike_count", "grad_min", "grad_max")

    def __init__(self, max_spike_count: int, spiking: bool = True, grad_window=None):
        if not isinstance(max_spike_count, numbers.Integral) or isinstance(max_spike_count, bool):
            raise TypeError(f"MultiLevelSpikeCount: max_spike_count must be an integer, but got {max_spike_count!r}.")
        max_spike_count = int(max_spike_count)
        if max_spike_count < 1:
            raise ValueError(f"MultiLevelSpikeCount: max_spike_count must be >= 1, but got {max_spike_count}.")
        if grad_window is None:
            grad_min, grad_max = 0.0, float(max_spike_count)
        else:
            grad_min, grad_max = grad_window
            if grad_min > grad_max:
                raise ValueError(f"MultiLevelSpikeCount: grad_window must satisfy grad_min <= grad_max, but got "
                                 f"{tuple(grad_window)}.")
        super().__init__(spiking, max_spike_count=max_spike_count, grad_min=grad_min, grad_max=grad_max)

    @staticmethod
    def spiking_function(x: torch.Tensor, max_spike_count: int, grad_min: float, grad_max: float):
        return quantize.multi_level_spike_count(x, max_spike_count, (grad_min, grad_max))

    @staticmethod
    def primitive_function(x: torch.Tensor, max_spike_count: int, grad_min: float, grad_max: float):
        return torch.clamp(x, 0, max_spike_count)
