"""SpikingJelly 2.0.0's functional surrogate API: lowercase ``torch.autograd.Function``s and ``*_backward``s.

``surrogate.sigmoid.apply(x, alpha)`` is the Heaviside spike of ``x`` whose backward multiplies by the Sigmoid
surrogate's derivative; ``surrogate.sigmoid_backward(grad_output, x, alpha)`` returns ``(grad_x, None)`` (one
``None`` per parameter), as SpikingJelly's do. Every Function here is built by :func:`_spike_function` from the
derivative ``grad(x, *params)`` that the surrogate classes define, so a class and its lowercase function cannot
disagree.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Sequence, Tuple

import torch

from .base import heaviside
from .builtins import (ATan, Erf, LeakyKReLU, LogTailedReLU, NonzeroSignLogAbs, PiecewiseExp, PiecewiseLeakyReLU,
                       PiecewiseQuadratic, QPseudoSpike, Rect, S2NN, Sigmoid, SoftSign, SuperSpike)

__all__ = [
    "piecewise_quadratic_backward", "piecewise_quadratic", "piecewise_exp_backward", "piecewise_exp",
    "sigmoid_backward", "sigmoid", "soft_sign_backward", "soft_sign", "super_spike_backward", "super_spike",
    "atan_backward", "atan", "nonzero_sign_log_abs_backward", "nonzero_sign_log_abs", "erf_backward", "erf",
    "piecewise_leaky_relu_backward", "piecewise_leaky_relu", "squarewave_fourier_series", "s2nn", "q_pseudo_spike",
    "leaky_k_relu_backward", "leaky_k_relu", "fake_numerical_gradient_backward", "fake_numerical_gradient",
    "log_tailed_relu_backward", "log_tailed_relu", "deterministic_pass", "poisson_pass", "rect_backward", "rect",
]

_POS = inspect.Parameter.POSITIONAL_OR_KEYWORD


def squarewave_fourier_series_grad(x: torch.Tensor, n: int, T_period: float) -> torch.Tensor:
    """Derivative of the square wave's Fourier partial sum: (4/T) sum_{i=1}^{n-1} cos((2i-1) 2pi/T x)."""
    w = 2.0 * math.pi / T_period
    g = torch.zeros_like(x)
    for i in range(1, n):
        g = g + torch.cos((2 * i - 1.0) * w * x)
    return g * (4.0 / T_period)


def fake_numerical_gradient_grad(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """min(sign(x) / x, alpha) with sign(0) = 1: the slope of the secant from (0, H(0)) to (x, H(x))."""
    return torch.clamp_max(((x >= 0).to(x) * 2.0 - 1.0) / x, alpha)


def _spike_function(name: str, grad: Callable, params: Sequence[Tuple[str, object]], doc: str,
                    forward_fn: Callable = heaviside) -> type:
    """A ``torch.autograd.Function`` named ``name`` whose ``apply(x, *params)`` is ``forward_fn(x)`` and whose
    backward is ``grad_output * grad(x, *params)``. ``params``: (name, default or inspect.Parameter.empty)."""
    sig = inspect.Signature([inspect.Parameter("x", _POS)]
                            + [inspect.Parameter(p, _POS, default=d) for p, d in params])

    def forward(x, *args):
        return forward_fn(x)

    forward.__signature__ = sig

    def setup_context(ctx, inputs, output):
        bound = sig.bind(*inputs)
        bound.apply_defaults()
        ctx.save_for_backward(inputs[0])
        ctx.params = tuple(bound.arguments.values())[1:]
        ctx.n_inputs = len(inputs)

    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        grad_x = grad_output * grad(x, *ctx.params) if ctx.needs_input_grad[0] else None
        return (grad_x,) + (None,) * (ctx.n_inputs - 1)

    return type(name, (torch.autograd.Function,), {
        "__doc__": doc, "__module__": __name__, "forward": staticmethod(forward),
        "setup_context": staticmethod(setup_context), "backward": staticmethod(backward),
        "generate_vmap_rule": True})  # PyTorch operations only: torch.func.vmap applies it


_E = inspect.Parameter.empty
_ALPHA = (("alpha", _E),)

piecewise_quadratic = _spike_function("piecewise_quadratic", PiecewiseQuadratic.grad, _ALPHA,
                                      "Heaviside forward, PiecewiseQuadratic gradient backward.")
piecewise_exp = _spike_function("piecewise_exp", PiecewiseExp.grad, _ALPHA,
                                "Heaviside forward, PiecewiseExp gradient backward.")
sigmoid = _spike_function("sigmoid", Sigmoid.grad, _ALPHA, "Heaviside forward, Sigmoid gradient backward.")
soft_sign = _spike_function("soft_sign", SoftSign.grad, _ALPHA, "Heaviside forward, SoftSign gradient backward.")
super_spike = _spike_function("super_spike", SuperSpike.grad, _ALPHA,
                              "Heaviside forward, SuperSpike gradient backward.")
atan = _spike_function("atan", ATan.grad, _ALPHA, "Heaviside forward, ATan gradient backward.")
nonzero_sign_log_abs = _spike_function("nonzero_sign_log_abs", NonzeroSignLogAbs.grad, _ALPHA,
                                       "Heaviside forward, NonzeroSignLogAbs gradient backward.")
erf = _spike_function("erf", Erf.grad, _ALPHA, "Heaviside forward, Erf gradient backward.")
piecewise_leaky_relu = _spike_function("piecewise_leaky_relu", PiecewiseLeakyReLU.grad, (("w", 1), ("c", 0.01)),
                                       "Heaviside forward, PiecewiseLeakyReLU gradient backward.")
squarewave_fourier_series = _spike_function("squarewave_fourier_series", squarewave_fourier_series_grad,
                                            (("n", _E), ("T_period", _E)),
                                            "Heaviside forward, square-wave Fourier-series gradient backward.")
s2nn = _spike_function("s2nn", S2NN.grad, (("alpha", _E), ("beta", _E)), "Heaviside forward, S2NN gradient backward.")
q_pseudo_spike = _spike_function("q_pseudo_spike", QPseudoSpike.grad, _ALPHA,
                                 "Heaviside forward, QPseudoSpike gradient backward.")
leaky_k_relu = _spike_function("leaky_k_relu", LeakyKReLU.grad, (("leak", _E), ("k", _E)),
                               "Heaviside forward, LeakyKReLU gradient backward.")
fake_numerical_gradient = _spike_function("fake_numerical_gradient", fake_numerical_gradient_grad, _ALPHA,
                                          "Heaviside forward, FakeNumericalGradient gradient backward.")
log_tailed_relu = _spike_function("log_tailed_relu", LogTailedReLU.grad, _ALPHA,
                                  "Heaviside forward, LogTailedReLU gradient backward.")
rect = _spike_function("rect", Rect.grad, _ALPHA, "Heaviside forward, Rect gradient backward.")
deterministic_pass = _spike_function("deterministic_pass", lambda x: torch.ones_like(x), (),
                                     "Heaviside forward, identity (straight-through) backward.")
poisson_pass = _spike_function("poisson_pass", lambda x: torch.ones_like(x), (),
                               "Bernoulli sample of the probabilities x forward, identity backward.",
                               forward_fn=lambda x: torch.bernoulli(x).float())


def piecewise_quadratic_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * PiecewiseQuadratic.grad(x, alpha), None


def piecewise_exp_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * PiecewiseExp.grad(x, alpha), None


def sigmoid_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * Sigmoid.grad(x, alpha), None


def soft_sign_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * SoftSign.grad(x, alpha), None


def super_spike_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * SuperSpike.grad(x, alpha), None


def atan_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * ATan.grad(x, alpha), None


def nonzero_sign_log_abs_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * NonzeroSignLogAbs.grad(x, alpha), None


def erf_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * Erf.grad(x, alpha), None


def piecewise_leaky_relu_backward(grad_output: torch.Tensor, x: torch.Tensor, w: float, c: float):
    return grad_output * PiecewiseLeakyReLU.grad(x, w, c), None, None


def leaky_k_relu_backward(grad_output: torch.Tensor, x: torch.Tensor, leak: float, k: float):
    return grad_output * LeakyKReLU.grad(x, leak, k), None, None


def fake_numerical_gradient_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * fake_numerical_gradient_grad(x, alpha), None


def log_tailed_relu_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * LogTailedReLU.grad(x, alpha), None


def rect_backward(grad_output: torch.Tensor, x: torch.Tensor, alpha: float):
    return grad_output * Rect.grad(x, alpha), None
