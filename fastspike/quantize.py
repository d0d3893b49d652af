"""Straight-through quantizers (SpikingJelly 2.0.0 ``activation_based.quantize`` names and signatures).

Every quantizer computes a piecewise-constant function in the forward pass and replaces its zero/undefined
derivative by a straight-through estimate in the backward pass:

==========================  =====================================================  ===========================
function                    forward                                                d out / d x
==========================  =====================================================  ===========================
round(x)                    torch.round(x) (half to even)                          1
ceil(x)                     torch.ceil(x)                                          1
floor(x)                    torch.floor(x)                                         1
clamp(x, lo, hi)            torch.clamp(x, lo, hi)                                 1 where lo <= x <= hi, else 0
step_quantize(x, step)      round(x / step) * step                                 1
multi_level_spike_count     round(clamp(x, 0, max_spike_count))                    1 inside grad_window, else 0
k_bit_quantize(x, k)        round(x * (2**k - 1)) / (2**k - 1)                     1
affine_k_bit_quantize       w * k_bit_quantize(x, k) + b                           w (autograd through w, b)
clamp_by_linear(x, eps)     (x - min x) / (max x - min x + eps)                    ordinary autograd
==========================  =====================================================  ===========================

These are small element-wise ops with no state; they run on any device through PyTorch itself. One autograd
Function, :class:`StraightThroughATGF`, implements every straight-through gradient (identity, or a window);
SpikingJelly's per-op Function names (``RoundATGF``, ``ClampATGF``, ...) are thin ``apply`` adapters over it.
"""
from __future__ import annotations

import operator
from typing import Callable, Optional, Sequence

import torch

from ._apply import fast_apply

__all__ = [
    "round",
    "ceil",
    "floor",
    "clamp",
    "step_quantize",
    "multi_level_spike_count",
    "k_bit_quantize",
    "affine_k_bit_quantize",
    "clamp_by_linear",
]


def _check_tensor(name: str, x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, but got {type(x).__name__}.")
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"{name} must be a floating-point tensor, but got dtype {x.dtype}.")


class StraightThroughATGF(torch.autograd.Function):
    """The one straight-through estimator of this module: forward ``op(x)``; backward passes the incoming gradient
    unchanged, or only where ``lo <= x <= hi`` when a window is given (``lo``/``hi`` None: unbounded on that side).
    ``x`` is saved only when a window needs it."""

    generate_vmap_rule = True  # PyTorch operations only (setup_context style: torch.func transforms apply it)

    @staticmethod
    def forward(x: torch.Tensor, op: Callable[[torch.Tensor], torch.Tensor], lo=None, hi=None):
        return op(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, _, lo, hi = (*inputs, None, None)[:4]
        ctx.window = (lo, hi)
        if lo is not None or hi is not None:
            ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        lo, hi = ctx.window
        if lo is None and hi is None:
            return grad_output, None, None, None
        (x,) = ctx.saved_tensors
        inside = torch.ones_like(x, dtype=torch.bool)
        if lo is not None:
            inside &= x >= lo
        if hi is not None:
            inside &= x <= hi
        return grad_output * inside.to(grad_output.dtype), None, None, None


_ste = fast_apply(StraightThroughATGF)


def _levels(k: int) -> float:
    return float(2 ** k - 1)


class RoundATGF:
    """SpikingJelly's name: ``RoundATGF.apply(x)`` is ``torch.round`` with the identity gradient."""

    @staticmethod
    def apply(x: torch.Tensor) -> torch.Tensor:
        return _ste(x, torch.round)


class CeilATGF:
    """SpikingJelly's name: ``CeilATGF.apply(x)`` is ``torch.ceil`` with the identity gradient."""

    @staticmethod
    def apply(x: torch.Tensor) -> torch.Tensor:
        return _ste(x, torch.ceil)


class FloorATGF:
    """SpikingJelly's name: ``FloorATGF.apply(x)`` is ``torch.floor`` with the identity gradient."""

    @staticmethod
    def apply(x: torch.Tensor) -> torch.Tensor:
        return _ste(x, torch.floor)


class ClampATGF:
    """SpikingJelly's name: ``ClampATGF.apply(x, lo, hi)`` clamps; gradient 1 on [lo, hi], 0 outside."""

    @staticmethod
    def apply(x: torch.Tensor, min_value, max_value) -> torch.Tensor:
        return _ste(x, lambda t: torch.clamp(t, min_value, max_value), min_value, max_value)


class StepQuantizeATGF:
    """SpikingJelly's name: ``StepQuantizeATGF.apply(x, step)`` is ``round(x / step) * step``, gradient 1."""

    @staticmethod
    def apply(x: torch.Tensor, step: float) -> torch.Tensor:
        return _ste(x, lambda t: torch.round(t / step) * step)


class MultiLevelSpikeCountATGF:
    """SpikingJelly's name: ``round(clamp(x, 0, max_spike_count))``, gradient 1 on [grad_min, grad_max]."""

    @staticmethod
    def apply(x: torch.Tensor, max_spike_count: int, grad_min: float, grad_max: float) -> torch.Tensor:
        return _ste(x, lambda t: torch.round(torch.clamp(t, 0, max_spike_count)), grad_min,
                                         grad_max)


class KBitQuantizeATGF:
    """SpikingJelly's name: DoReFa-Net's k-bit quantizer of [0, 1] with the identity gradient."""

    @staticmethod
    def apply(x: torch.Tensor, k: int) -> torch.Tensor:
        return _ste(x, lambda t: torch.round(t * _levels(k)) / _levels(k))


def round(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer (``torch.round``: halves go to the even integer); gradient 1."""
    _check_tensor("x", x)
    return RoundATGF.apply(x)


def ceil(x: torch.Tensor) -> torch.Tensor:
    """Smallest integer >= x; gradient 1 (straight-through)."""
    _check_tensor("x", x)
    return CeilATGF.apply(x)


def floor(x: torch.Tensor) -> torch.Tensor:
    """Largest integer <= x; gradient 1 (straight-through)."""
    _check_tensor("x", x)
    return FloorATGF.apply(x)


def clamp(x: torch.Tensor, min_value: float, max_value: float) -> torch.Tensor:
    """Clamp to [min_value, max_value]; the gradient passes where min_value <= x <= max_value and is 0 elsewhere."""
    _check_tensor("x", x)
    numbers = all(isinstance(v, (int, float)) for v in (min_value, max_value))
    if numbers and float(min_value) > float(max_value):
        raise ValueError(f"clamp needs min_value <= max_value, but got min_value={min_value}, max_value={max_value}.")
    return ClampATGF.apply(x, min_value, max_value)


def step_quantize(x: torch.Tensor, step: float = 1.0) -> torch.Tensor:
    """Quantize to the nearest integer multiple of ``step`` (``round(x / step) * step``); gradient 1."""
    _check_tensor("x", x)
    if not float(step) > 0.0:
        raise ValueError(f"step must be a positive number, but got step={step}.")
    return StepQuantizeATGF.apply(x, step)


def multi_level_spike_count(
    x: torch.Tensor, max_spike_count: int, grad_window: Optional[Sequence[float]] = None
) -> torch.Tensor:
    """Number of spikes an ideal integrate-and-fire neuron emits for a normalised input: ``round(clamp(x, 0, M))``.

    ``x`` is the input in units of the threshold summed over the time window, ``M = max_spike_count`` the number
    of time steps. The gradient is 1 where ``grad_window[0] <= x <= grad_window[1]`` (default ``(0, M)``) and 0
    outside.
    """
    _check_tensor("x", x)
    max_spike_count = int(max_spike_count)
    if max_spike_count < 0:
        raise ValueError(f"max_spike_count must be >= 0, but got {max_spike_count}.")
    if grad_window is None:
        grad_min, grad_max = 0.0, float(max_spike_count)
    else:
        if len(grad_window) != 2:
            raise ValueError(f"grad_window must be a pair (min, max), but got {grad_window!r}.")
        grad_min, grad_max = (float(v) for v in grad_window)
    return MultiLevelSpikeCountATGF.apply(x, max_spike_count, grad_min, grad_max)


def k_bit_quantize(x: torch.Tensor, k: int) -> torch.Tensor:
    """DoReFa-Net k-bit quantizer: maps x in [0, 1] to the nearest ``i / (2**k - 1)``; gradient 1.

    Inputs outside [0, 1] are not clipped (as in SpikingJelly); squash them first, e.g. with
    :func:`clamp_by_linear`, ``torch.sigmoid`` or :func:`clamp`.
    """
    _check_tensor("x", x)
    if isinstance(k, bool):
        raise TypeError("k must be an int, but got bool.")
    try:
        k = operator.index(k)  # ints and integer scalars (numpy, 0-dim integer tensors)
    except TypeError:
        raise TypeError(f"k must be an int, but got {type(k).__name__}.") from None
    if k < 1:
        raise ValueError(f"k must be a positive integer, but got {k}")
    return KBitQuantizeATGF.apply(x, k)


def affine_k_bit_quantize(x: torch.Tensor, k: int, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Affine k-bit quantization ``w * k_bit_quantize(x, k) + b`` (``w`` and ``b`` may be trainable)."""
    return w * k_bit_quantize(x, k) + b


def clamp_by_linear(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Rescale x linearly into [0, 1): ``(x - min(x)) / (max(x) - min(x) + eps)`` (min/max over the whole tensor)."""
    _check_tensor("x", x)
    lo = torch.min(x)
    span = torch.max(x) - lo + eps
    return (x - lo) / span

