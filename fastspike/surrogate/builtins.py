"""The 14 built-in surrogates whose gradients the fused kernels compute inline.

Names, parameters, defaults and ``spiking`` behaviour follow SpikingJelly 2.0.0's
``activation_based.surrogate``. Each class carries ``kernel_id`` and ``kernel_params()`` so the fused Triton
and C++ neuron kernels compute the same gradient inline (csrc/surrogate.h and kernels/surrogate.py implement
the ids listed in ``KERNEL_IDS``). The torch formulas in this file (each class's ``grad``) are the reference
the kernels are tested against; the lowercase autograd functions of ``functions.py`` share them.

With ``spiking=False`` a surrogate returns its smooth primitive function instead of spikes (used for
pre-training or plotting); neurons then run the reference path.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._errors import ArgumentError
from .base import KERNEL_GRADS, SurrogateFunctionBase, heaviside

__all__ = ["Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "Erf", "SuperSpike",
           "PiecewiseLeakyReLU", "Rect", "S2NN", "QPseudoSpike", "LeakyKReLU", "LogTailedReLU", "NonzeroSignLogAbs",
           "KERNEL_IDS"]


def _sig_grad(x, alpha):
    s = torch.sigmoid(alpha * x)
    return alpha * s * (1.0 - s)


class Sigmoid(SurrogateFunctionBase):
    """g(x) = sigmoid(alpha x); g'(x) = alpha s (1 - s)."""
    kernel_id = 0

    def __init__(self, alpha=4.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    grad = staticmethod(_sig_grad)

    @staticmethod
    def primitive_function(x, alpha):
        return torch.sigmoid(alpha * x)


class ATan(SurrogateFunctionBase):
    """g(x) = atan(pi/2 alpha x) / pi + 1/2; g'(x) = (alpha/2) / (1 + (pi/2 alpha x)^2)."""
    kernel_id = 1

    def __init__(self, alpha=2.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        z = (math.pi / 2 * alpha) * x
        return (alpha / 2) / (1 + z * z)

    @staticmethod
    def primitive_function(x, alpha):
        return torch.atan((math.pi / 2 * alpha) * x) / math.pi + 0.5


class PiecewiseQuadratic(SurrogateFunctionBase):
    """g'(x) = alpha - alpha^2 |x| for |x| <= 1/alpha, else 0."""
    kernel_id = 2

    def __init__(self, alpha=1.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        ax = x.abs()
        return torch.where(ax > 1 / alpha, torch.zeros_like(x), alpha - alpha * alpha * ax)

    @staticmethod
    def primitive_function(x, alpha):
        inside = (x.abs() <= 1.0 / alpha).to(x)
        above = (x > 1.0 / alpha).to(x)
        return above + inside * (-(alpha ** 2) / 2 * x.square() * x.sign() + alpha * x + 0.5)


class PiecewiseExp(SurrogateFunctionBase):
    """g'(x) = (alpha/2) exp(-alpha |x|)."""
    kernel_id = 3

    def __init__(self, alpha=1.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        return (alpha / 2) * torch.exp(-alpha * x.abs())

    @staticmethod
    def primitive_function(x, alpha):
        pos = heaviside(x)
        sign = pos * 2.0 - 1.0
        return pos - sign * torch.exp(-alpha * sign * x) / 2.0


class SoftSign(SurrogateFunctionBase):
    """g(x) = (softsign(alpha x) + 1) / 2; g'(x) = 1 / (2 alpha (1/alpha + |x|)^2)."""
    kernel_id = 4

    def __init__(self, alpha=2.0, spiking=True):
        if not alpha > 0:
            raise ArgumentError(f"SoftSign: alpha must be > 0, but got {alpha}.")
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        z = 1 / alpha + x.abs()
        return 1 / (2 * alpha * z * z)

    @staticmethod
    def primitive_function(x, alpha):
        return (F.softsign(alpha * x) + 1.0) / 2.0


class SuperSpike(SurrogateFunctionBase):
    """SuperSpike (Zenke & Ganguli 2018): g'(x) = alpha / (1 + |x|)^2."""
    kernel_id = 5

    def __init__(self, alpha=1.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        z = 1 + x.abs()
        return alpha / (z * z)

    @staticmethod
    def primitive_function(x, alpha):
        # the antiderivative of alpha / (1 + |x|)^2, shifted so that g(-inf) = 0 and g(0) = alpha
        return torch.where(x < 0, alpha / (1 - x), 2 * alpha - alpha / (1 + x))


class Erf(SurrogateFunctionBase):
    """g(x) = erfc(-alpha x) / 2; g'(x) = alpha / sqrt(pi) exp(-(alpha x)^2)."""
    kernel_id = 6

    def __init__(self, alpha=2.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        z = alpha * x
        return (alpha / math.sqrt(math.pi)) * torch.exp(-z * z)

    @staticmethod
    def primitive_function(x, alpha):
        return torch.erfc(-alpha * x) / 2.0


class PiecewiseLeakyReLU(SurrogateFunctionBase):
    """g'(x) = 1/(2w) for |x| < w, else c."""
    kernel_id = 7
    _param_names = ("w", "c")

    def __init__(self, w=1.0, c=0.01, spiking=True):
        if not w > 0:
            raise ArgumentError(f"PiecewiseLeakyReLU: w must be > 0, but got {w}.")
        super().__init__(spiking, w=w, c=c)

    @staticmethod
    def grad(x, w, c):
        return torch.where(x.abs() < w, torch.full_like(x, 1 / (2 * w)), torch.full_like(x, c))

    @staticmethod
    def primitive_function(x, w, c):
        below = (x < -w).to(x)
        above = (x > w).to(x)
        mid = 1.0 - below - above
        return below * (c * x + c * w) + above * (c * x + (1 - c * w)) + mid * (x / (2 * w) + 0.5)


class Rect(SurrogateFunctionBase):
    """Rectangular window: g'(x) = alpha for |x| < 1/(2 alpha), else 0."""
    kernel_id = 8

    def __init__(self, alpha=1.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        return alpha * (x.abs() < 0.5 / alpha).to(x)

    @staticmethod
    def primitive_function(x, alpha):
        return torch.clamp(alpha * x + 0.5, 0.0, 1.0)


class S2NN(SurrogateFunctionBase):
    """S2NN (Suetake et al. 2023): sigmoid'(alpha x) for x < 0, beta / (x + 1) for x >= 0."""
    kernel_id = 9
    _param_names = ("alpha", "beta")

    def __init__(self, alpha=4.0, beta=1.0, spiking=True):
        super().__init__(spiking, alpha=alpha, beta=beta)

    @staticmethod
    def grad(x, alpha, beta):
        return torch.where(x < 0, _sig_grad(x, alpha), beta / (x + 1.0))

    @staticmethod
    def primitive_function(x, alpha, beta):
        return torch.where(x < 0, torch.sigmoid(alpha * x), beta * torch.log((x + 1.0).abs() + 1e-5) + 0.5)


class QPseudoSpike(SurrogateFunctionBase):
    """q-PseudoSpike (Sun et al. 2022): g'(x) = (1 + 2/(alpha-1) |x|)^(-alpha)."""
    kernel_id = 10

    def __init__(self, alpha=2.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        return (1 + 2 / (alpha - 1) * x.abs()).pow(-alpha)

    @staticmethod
    def primitive_function(x, alpha):
        pos = heaviside(x)
        sign = pos * 2.0 - 1.0
        return pos - sign * 0.5 * (1.0 + 2.0 / (alpha - 1.0) * x * sign).pow(1.0 - alpha)


class LeakyKReLU(SurrogateFunctionBase):
    """g'(x) = k for x >= 0, leak for x < 0."""
    kernel_id = 11
    _param_names = ("leak", "k")

    def __init__(self, leak: float = 0.0, k: float = 1.0, spiking=True):
        super().__init__(spiking, leak=leak, k=k)

    @staticmethod
    def grad(x, leak, k):
        pos = (x >= 0).to(x)
        return pos * k + (1.0 - pos) * leak

    @staticmethod
    def primitive_function(x, leak, k):
        pos = (x >= 0).to(x)
        return (leak * (1.0 - pos) + k * pos) * x


class LogTailedReLU(SurrogateFunctionBase):
    """Log-tailed ReLU (Cai et al. 2017): g'(x) = alpha for x <= 0, 1 for 0 < x <= 1, 1/x for x > 1."""
    kernel_id = 12

    def __init__(self, alpha=0.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        one = torch.ones_like(x)
        return torch.where(x > 1.0, one / x.clamp_min(1.0), torch.where(x <= 0.0, one * alpha, one))

    @staticmethod
    def primitive_function(x, alpha):
        return torch.where(x > 1.0, torch.log(x.clamp_min(1.0)) + 1.0, F.leaky_relu(x, alpha))


class NonzeroSignLogAbs(SurrogateFunctionBase):
    """g'(x) = 1 / (1/alpha + |x|)."""
    kernel_id = 13

    def __init__(self, alpha=1.0, spiking=True):
        super().__init__(spiking, alpha=alpha)

    @staticmethod
    def grad(x, alpha):
        return 1 / (1 / alpha + x.abs())

    @staticmethod
    def primitive_function(x, alpha):
        sign = heaviside(x) * 2.0 - 1.0
        return sign * torch.log(alpha * sign * x + 1)


_BUILTINS = (Sigmoid, ATan, PiecewiseQuadratic, PiecewiseExp, SoftSign, SuperSpike, Erf, PiecewiseLeakyReLU, Rect,
             S2NN, QPseudoSpike, LeakyKReLU, LogTailedReLU, NonzeroSignLogAbs)
#: surrogate class name -> id used by the fused kernels
KERNEL_IDS = {cls.__name__: cls.kernel_id for cls in _BUILTINS}
KERNEL_GRADS.update({cls.kernel_id: cls.__dict__["grad"].__func__ if isinstance(cls.__dict__["grad"], staticmethod)
                     else cls.__dict__["grad"] for cls in _BUILTINS})
