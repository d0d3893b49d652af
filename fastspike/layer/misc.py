"""Small SNN layers with SpikingJelly 2.0.0 semantics: SynapseFilter, VotingLayer, Delay, PrintShapeModule, and the
spike-count converters SpikeCountToBinary and TemporalBinSum."""
from __future__ import annotations

import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import base

__all__ = ["SynapseFilter", "PrintShapeModule", "VotingLayer", "Delay", "SpikeCountToBinary", "TemporalBinSum"]

_log = logging.getLogger(__name__)


class SynapseFilter(base.MemoryModule):
    """Exponential synaptic current filter (SpikingJelly ``layer.SynapseFilter``).

    Per step: ``I[t] = I[t-1] - (1 - X[t]) * I[t-1] / tau + X[t]`` with ``I[-1] = 0``: the current decays
    with time constant ``tau`` while the input is silent and integrates the input otherwise.
    ``learnable=True`` learns ``w`` with ``1/tau = sigmoid(w)`` (initialised from ``tau``).
    """

    def __init__(self, tau: float = 100.0, learnable: bool = False, step_mode: str = "s"):
        super().__init__()
        if not tau > 1:
            raise ValueError(f"tau must be > 1, got {tau}")
        self.step_mode = step_mode
        self.learnable = learnable
        if learnable:
            self.w = nn.Parameter(torch.as_tensor(-math.log(tau - 1.0)))
        else:
            self.tau = tau
        self.register_memory("out_i", 0.0)

    def _inv_tau(self):
        return self.w.sigmoid() if self.learnable else 1.0 / self.tau

    def extra_repr(self) -> str:
        tau = float(1.0 / self.w.detach().sigmoid()) if self.learnable else self.tau
        return f"tau={tau}, learnable={self.learnable}, step_mode={self.step_mode}"

    def _state_like(self, x: torch.Tensor) -> torch.Tensor:
        i = self.out_i
        if not isinstance(i, torch.Tensor):
            return torch.full_like(x, float(i))
        if i.shape != x.shape:
            return torch.zeros_like(x)
        return i.to(dtype=x.dtype, device=x.device)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        i = self._state_like(x)
        i = i - (1.0 - x) * i * self._inv_tau() + x
        self.out_i = i
        return i

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 1 or x_seq.shape[0] == 0:
            raise ValueError(f"x_seq must have shape [T, ...] with T > 0, got {tuple(x_seq.shape)}")
        i = self._state_like(x_seq[0])
        k = self._inv_tau()
        out = []
        for x in x_seq:
            i = i - (1.0 - x) * i * k + x
            out.append(i)
        self.out_i = i
        return torch.stack(out)


class VotingLayer(nn.Module, base.StepModule):
    """Average the last dimension over consecutive groups of ``voting_size`` (population voting):
    [N, C] -> [N, C // voting_size] ('s'), [T, N, C] -> [T, N, C // voting_size] ('m')."""

    def __init__(self, voting_size: int = 10, step_mode: str = "s"):
        super().__init__()
        if not isinstance(voting_size, int) or voting_size < 1:
            raise ValueError(f"voting_size must be a positive int, got {voting_size!r}")
        self.voting_size = voting_size
        self.step_mode = step_mode

    def extra_repr(self) -> str:
        return f"voting_size={self.voting_size}, step_mode={self.step_mode}"

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool1d(x.unsqueeze(1), self.voting_size, self.voting_size).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step_forward(x)
        y = self.single_step_forward(x.flatten(0, 1))
        return y.view(x.shape[0], x.shape[1], *y.shape[1:])


class Delay(base.MemoryModule):
    """Delay the input by ``delay_steps`` steps: ``y[t] = x[t - delay_steps]``, zeros before that.
    The pending inputs are a memory (``queue``), so delays carry across calls until ``reset()``."""

    def __init__(self, delay_steps: int, step_mode: str = "s"):
        super().__init__()
        if not isinstance(delay_steps, int) or delay_steps < 0:
            raise ValueError(f"delay_steps must be a non-negative int, got {delay_steps!r}")
        self._delay_steps = delay_steps
        self.step_mode = step_mode
        self.register_memory("queue", [])

    @property
    def delay_steps(self) -> int:
        return self._delay_steps

    def extra_repr(self) -> str:
        return f"delay_steps={self.delay_steps}, step_mode={self.step_mode}"

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        queue = list(self.queue) + [x]
        if len(queue) > self._delay_steps:
            y = queue.pop(0)
        else:
            y = torch.zeros_like(x)
        self.queue = queue
        return y

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        T = x_seq.shape[0]
        d = self._delay_steps
        if d == 0:
            return x_seq
        pending = list(self.queue)
        parts = []
        if len(pending) < d:
            parts.append(x_seq.new_zeros((d - len(pending),) + tuple(x_seq.shape[1:])))
        if pending:
            parts.append(torch.stack(pending))
        full = torch.cat(parts + [x_seq])  # length d + T
        self.queue = list(full[T:].unbind(0))
        return full[:T]


class PrintShapeModule(nn.Module):
    """Identity that logs ``'<ext_str> shape=<shape>'`` at DEBUG level (logger ``fastspike.layer.misc``); for
    finding where a network's shapes go wrong."""

    def __init__(self, ext_str: str = "PrintShapeModule"):
        super().__init__()
        self.ext_str = ext_str

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _log.debug("%s shape=%s", self.ext_str, x.shape)
        return x


def _check_slots(num_slots) -> None:
    if num_slots < 1:
        raise ValueError(f"num_slots must be >= 1, got num_slots={num_slots!r}.")


def _check_sequence(x_seq: torch.Tensor, name: str) -> None:
    if x_seq.ndim < 2 or x_seq.shape[0] == 0:
        raise ValueError(f"{name} expects x_seq with shape [T, N, *] and T > 0, but got shape {tuple(x_seq.shape)}.")


class SpikeCountToBinary(nn.Module, base.MultiStepModule):
    """Expand spike counts into binary spikes: each step t with count c in [0, num_slots] becomes num_slots
    steps, the first c of them 1: [T, N, *] -> [T * num_slots, N, *]. The backward is a straight-through
    estimator: the gradient reaches each count divided by num_slots.

    By default it converts only in eval mode (training passes the counts through unchanged);
    ``always_convert=True`` converts in both. Multi-step only.
    """

    def __init__(self, num_slots: int, always_convert: bool = False) -> None:
        super().__init__()
        _check_slots(num_slots)
        self.num_slots = num_slots
        self.always_convert = always_convert
        self.step_mode = "m"

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if self.training and not self.always_convert:
            return x_seq
        _check_sequence(x_seq, "SpikeCountToBinary")
        counts = x_seq.unsqueeze(1)  # [T, 1, N, *]
        slot = torch.arange(self.num_slots, device=x_seq.device).view(1, -1, *([1] * (x_seq.ndim - 1)))
        spikes = (slot < counts).to(x_seq.dtype)  # [T, num_slots, N, *]
        rate = counts / self.num_slots
        return (spikes + (rate - rate.detach())).flatten(0, 1)


class TemporalBinSum(nn.Module, base.MultiStepModule):
    """Sum consecutive groups of num_slots steps: [T, N, *] -> [ceil(T / num_slots), N, *] (the last group
    zero-padded); the inverse direction of SpikeCountToBinary.

    By default it sums only in eval mode; ``always_convert=True`` sums in both. Multi-step only.
    """

    def __init__(self, num_slots: int, always_convert: bool = False) -> None:
        super().__init__()
        _check_slots(num_slots)
        self.num_slots = num_slots
        self.always_convert = always_convert
        self.step_mode = "m"

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if self.training and not self.always_convert:
            return x_seq
        _check_sequence(x_seq, "TemporalBinSum")
        short = -x_seq.shape[0] % self.num_slots
        if short:
            x_seq = torch.cat((x_seq, x_seq.new_zeros((short,) + tuple(x_seq.shape[1:]))))
        return x_seq.reshape(-1, self.num_slots, *x_seq.shape[1:]).sum(dim=1)
