"""Surrogate spike functions: Heaviside forward, a smooth function's derivative backward.

Names, parameters, defaults and ``spiking`` behaviour follow SpikingJelly 2.0.0's
``activation_based.surrogate``. Each class also carries ``kernel_id`` and ``kernel_params()`` so the
fused Triton and C++ neuron kernels compute the same gradient inline (csrc/surrogate.h and
kernels/surrogate.py implement the ids listed in ``KERNEL_IDS``). The torch formulas in this file are the
reference the kernels are tested against.

With ``spiking=False`` a surrogate returns its smooth primitive function instead of spikes (used for
pre-training or plotting); neurons then run the reference path.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "heaviside", "SurrogateFunctionBase", "Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign",
    "Erf", "SuperSpike", "PiecewiseLeakyReLU", "Rect", "S2NN", "QPseudoSpike", "LeakyKReLU", "LogTailedReLU",
    "NonzeroSignLogAbs", "KERNEL_IDS",
]


_UNSET = object()


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """1 where x >= 0, else 0, in x's dtype."""
    return (x >= 0).to(x)


class _Spike(torch.autograd.Function):
    """Heaviside forward; backward multiplies by the surrogate's derivative ``grad_fn(x, *params)``."""

    @staticmethod
    def forward(ctx, x, grad_fn, params):
        ctx.save_for_backward(x)
        ctx.grad_fn = grad_fn
        ctx.params = params
        return heaviside(x)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        return grad_output * ctx.grad_fn(x, *ctx.params), None, None


class SurrogateFunctionBase(nn.Module):
    """Base class. Subclasses define ``_param_names``, ``grad`` (the derivative used backward),
    ``primitive_function`` and, for fused kernels, ``kernel_id``."""

    _param_names: Tuple[str, ...] = ("alpha",)
    kernel_id: int = -1

    def __init__(self, spiking: bool = True, **params):
        super().__init__()
        self.spiking = spiking
        for k, v in params.items():
            setattr(self, k, v)

    def set_spiking_mode(self, spiking: bool) -> None:
        self.spiking = spiking

    @property
    def params(self) -> tuple:
        return tuple(getattr(self, k) for k in self._param_names)

    def kernel_params(self) -> Tuple[float, float]:
        """The (a, b) pair the fused kernels take for this surrogate (unused slots are 0)."""
        p = [float(v) for v in self.params] + [0.0, 0.0]
        return p[0], p[1]

    def fusable(self) -> bool:
        """True when the fused kernels compute exactly this surrogate (built-in class, spiking, float params)."""
        return (self.kernel_id >= 0 and self.spiking and type(self).grad is KERNEL_GRADS.get(self.kernel_id)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.params))

    def kernel_spec(self) -> Optional[Tuple[int, Tuple[float, float]]]:
        """(kernel_id, kernel_params()) when fusable(), else None. Cached: every call of a neuron asks for
        it, and assigning any attribute (alpha, spiking, ...) drops the cached value."""
        spec = self.__dict__.get("_kernel_spec", _UNSET)
        if spec is _UNSET:
            spec = (self.kernel_id, self.kernel_params()) if self.fusable() else None
            self.__dict__["_kernel_spec"] = spec
        return spec

    def __setattr__(self, name, value) -> None:
        super().__setattr__(name, value)
        self.__dict__.pop("_kernel_spec", None)

    @classmethod
    def spiking_function(cls, x: torch.Tensor, *params):
        return _Spike.apply(x, cls.grad, params)

    @staticmethod
    def grad(x: torch.Tensor, *params) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def primitive_function(x: torch.Tensor, *params) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def backward(cls, grad_output: torch.Tensor, x: torch.Tensor, *params) -> torch.Tensor:
        return grad_output * cls.grad(x, *params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spiking:
            return self.spiking_function(x, *self.params)
        return self.primitive_function(x, *self.params)

    def extra_repr(self) -> str:
        return ", ".join([f"{k}={getattr(self, k)}" for k in self._param_names] + [f"spiking={self.spiking}"])


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
            raise ValueError(f"SoftSign: alpha must be > 0, but got {alpha}.")
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
            raise ValueError(f"PiecewiseLeakyReLU: w must be > 0, but got {w}.")
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
KERNEL_GRADS = {cls.kernel_id: cls.__dict__["grad"].__func__ if isinstance(cls.__dict__["grad"], staticmethod)
                else cls.__dict__["grad"] for cls in _BUILTINS}
