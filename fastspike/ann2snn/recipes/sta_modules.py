"""The pieces of :class:`~fastspike.ann2snn.recipes.sta_transformer.STATransformerRecipe`: the calibration
observer of the spike encoders' thresholds, the spike encoder, and the time constant (a parameter or buffer that
the network reads once, at the first step)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from fastspike import base

__all__ = ["STAThresholdObserver", "STASpikeEncoder", "STAConstant"]

_MSE_FACTORS = torch.linspace(0.125, 2.0, steps=31).tolist()


def broadcast_channel_vector(value: torch.Tensor, output: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """``value`` [C] viewed to broadcast along ``channel_dim`` of ``output``."""
    if channel_dim < 0:
        channel_dim += output.dim()
    shape = [1] * output.dim()
    shape[channel_dim] = value.numel()
    return value.to(device=output.device, dtype=output.dtype).view(shape)


class STAThresholdObserver:
    """Per-channel step thresholds from calibration activations (a forward-hook callable).

    Per batch, each channel's ``max |x|`` (at least ``eps``) gives a candidate: ``max / time_steps`` in mode
    'max'; in mode 'mse' the factor ``f`` in ``linspace(0.125, 2, 31)`` whose threshold ``max * f`` (at least
    ``eps``) quantises the channel (``trunc(x / s) * s`` with ``s = max * f / time_steps``) with the least mean
    squared error, divided by ``time_steps``. The first batch sets ``threshold``; later ones move it by
    ``threshold = (1 - momentum) * threshold + momentum * candidate``.
    """

    def __init__(self, time_steps: int, channel_dim: int, mode: str, momentum: float, eps: float) -> None:
        self.time_steps = time_steps
        self.channel_dim = channel_dim
        self.mode = mode
        self.momentum = momentum
        self.eps = eps
        self.threshold: Optional[torch.Tensor] = None
        self.num_batches_tracked = 0

    @staticmethod
    def _normalize_channel_dim(x: torch.Tensor, channel_dim: int) -> int:
        if x.dim() < 2:
            raise ValueError(f"STA calibration needs activations with at least 2 dimensions, but got shape "
                             f"{tuple(x.shape)}.")
        dim = channel_dim + x.dim() if channel_dim < 0 else channel_dim
        if not 0 <= dim < x.dim():
            raise ValueError(f"STA calibration: channel_dim={channel_dim} is out of range for an activation of "
                             f"shape {tuple(x.shape)}.")
        return dim

    def __call__(self, output) -> None:
        if isinstance(output, (tuple, list)):
            output = output[0]
        if not torch.is_tensor(output):
            raise TypeError(f"STA observer: the observed module must return a tensor, but returned "
                            f"{type(output).__name__}.")
        with torch.no_grad():
            threshold = self._compute_threshold(output.detach())
            if self.threshold is None:
                self.threshold = threshold
            else:
                previous = self.threshold.to(device=threshold.device, dtype=threshold.dtype)
                self.threshold = ((1 - self.momentum) * previous + self.momentum * threshold).detach()
            self.num_batches_tracked += 1

    def _compute_threshold(self, x: torch.Tensor) -> torch.Tensor:
        dim = self._normalize_channel_dim(x, self.channel_dim)
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.to(torch.float32)
        values = x.movedim(dim, 0).reshape(x.shape[dim], -1)
        max_abs = torch.clamp(values.abs().max(dim=1).values, min=self.eps)
        if self.mode == "max":
            return (max_abs / self.time_steps).detach()
        if self.mode != "mse":
            raise ValueError(f"STA threshold mode must be 'mse' or 'max', but got {self.mode!r}.")
        best_threshold = max_abs
        best_error = torch.full_like(max_abs, float("inf"))
        for factor in _MSE_FACTORS:
            threshold = torch.clamp(max_abs * factor, min=self.eps)
            step = threshold[:, None] / self.time_steps
            error = (values - torch.trunc(values / step) * step).square().mean(dim=1)
            better = error < best_error
            best_threshold = torch.where(better, threshold, best_threshold)
            best_error = torch.where(better, error, best_error)
        return (best_threshold / self.time_steps).detach()

    def compute_threshold(self) -> torch.Tensor:
        if self.threshold is None:
            raise ValueError("STA threshold observer: no calibration activations were recorded.")
        if not bool(torch.isfinite(self.threshold).all()) or bool((self.threshold <= 0).any()):
            raise ValueError("STA threshold observer: thresholds must be finite and positive.")
        return self.threshold.detach()


class STASpikeEncoder(base.MemoryModule):
    """Multi-level spike encoder with a signed residual: per step ``mem += x``, emit
    ``trunc(mem / v_threshold) * v_threshold`` (per channel along ``channel_dim``; the threshold floored at the
    dtype's epsilon) and keep the remainder in ``mem``. Summed over time the output follows the summed input to
    within one threshold."""

    def __init__(self, threshold: torch.Tensor, channel_dim: int = -1, step_mode: str = "s") -> None:
        super().__init__()
        self.channel_dim = channel_dim
        self.register_buffer("v_threshold", threshold.detach().clone())
        self.register_memory("mem", None)
        self.step_mode = step_mode

    def materialize_states(self, inputs: tuple, states: tuple, step_mode: str) -> tuple:
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        mem = states[0]
        if not isinstance(mem, torch.Tensor) or mem.shape != x.shape or mem.device != x.device \
                or mem.dtype != x.dtype:
            mem = torch.zeros_like(x)
        return (mem,)

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x = inputs[0]
        threshold = broadcast_channel_vector(self.v_threshold, x, self.channel_dim)
        threshold = torch.clamp(threshold, min=torch.finfo(threshold.dtype).eps)
        mem = states[0] + x
        spike = torch.trunc(mem / threshold) * threshold
        return (spike,), (mem - spike,)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        x_seq = inputs[0]
        threshold = broadcast_channel_vector(self.v_threshold, x_seq[0], self.channel_dim)
        threshold = torch.clamp(threshold, min=torch.finfo(threshold.dtype).eps)
        mem, spikes = states[0], []
        for x in x_seq:  # the signed residual is a true recurrence: no closed form over time
            mem = mem + x
            spike = torch.trunc(mem / threshold) * threshold
            mem = mem - spike
            spikes.append(spike)
        return (torch.stack(spikes),), (mem,)

    def extra_repr(self) -> str:
        return f"channel_dim={self.channel_dim}, step_mode={self.step_mode}"


class STAConstant(base.MemoryModule):
    """A tensor the ANN reads (a parameter or a buffer: a class token, a position embedding) given as a spike
    train: ``value`` at the first step after a reset, zeros afterwards. 'm' mode emits ``time_steps`` steps per
    call. Takes no input."""

    def __init__(self, value: torch.Tensor, time_steps: int, step_mode: str = "s") -> None:
        super().__init__()
        self.time_steps = time_steps
        if isinstance(value, nn.Parameter):
            self.value = nn.Parameter(value.detach().clone(), requires_grad=value.requires_grad)
        else:
            self.register_buffer("value", value.detach().clone())
        self.register_memory("t", 0)
        self.step_mode = step_mode

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        output = self.value if states[0] == 0 else torch.zeros_like(self.value)
        return (output,), (states[0] + 1,)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        zeros = torch.zeros_like(self.value)
        if states[0] == 0:
            output = torch.cat((self.value.unsqueeze(0), zeros.expand(self.time_steps - 1, *self.value.shape)))
        else:
            output = zeros.expand(self.time_steps, *self.value.shape)
        return (output,), (states[0] + self.time_steps,)

    def single_step_forward(self) -> torch.Tensor:
        outputs, states = self.single_step_functional_forward((), tuple(self._memories.values()))
        self.t = states[0]
        return outputs[0]

    def multi_step_forward(self) -> torch.Tensor:
        outputs, states = self.multi_step_functional_forward((), tuple(self._memories.values()))
        self.t = states[0]
        return outputs[0]
