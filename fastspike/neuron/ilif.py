"""Integer LIF (SpikingJelly 2.0's ``neuron.ilif``): a LIF neuron that emits multi-level spikes.

Per step (fastspike.neuron.dynamics.ilif_step): H = (1 - 1/tau) V + X, S = round(clamp(H / v_threshold, 0,
max_spike_count)) with a straight-through gradient where grad_min <= H / v_threshold <= grad_max, and a
soft reset V = H - S v_threshold. The spike function is a ``MultiLevelSpikeCount`` surrogate; any object with
``max_spike_count``, ``grad_min``, ``grad_max`` and ``spiking=True`` is accepted (SpikingJelly's included). Both
step modes run the fused op (ops.multistep_neuron, mode='leaky', fire='count'), as SpikingJelly's multi-step path
computes H.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import surrogate
from ._fused import FusedStepNode
from .dynamics import ilif_step, multi_level_spike
from .node import LIFNode

__all__ = ["ILIFNode"]


class MultiLevelSpikeCount(nn.Module):
    """Stand-in for ``surrogate.MultiLevelSpikeCount`` (used when fastspike.surrogate lacks it): clamp and round
    to [0, max_spike_count] forward, gradient 1 on [grad_min, grad_max] (default [0, max_spike_count])."""

    def __init__(self, max_spike_count: int, spiking: bool = True, grad_window=None):
        if isinstance(max_spike_count, bool) or not isinstance(max_spike_count, int):
            raise TypeError(f"max_spike_count must be an integer, but got {max_spike_count!r}.")
        if max_spike_count < 1:
            raise ValueError(f"max_spike_count must be >= 1, but got {max_spike_count}.")
        grad_min, grad_max = (0.0, float(max_spike_count)) if grad_window is None else grad_window
        if grad_min > grad_max:
            raise ValueError(f"grad_window must satisfy grad_min <= grad_max, but got {grad_window!r}.")
        super().__init__()
        self.max_spike_count, self.grad_min, self.grad_max, self.spiking = max_spike_count, grad_min, grad_max, spiking

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spiking:
            return multi_level_spike(x, self.max_spike_count, self.grad_min, self.grad_max)
        return torch.clamp(x, 0, self.max_spike_count)


MultiLevelSpikeCount = getattr(surrogate, "MultiLevelSpikeCount", MultiLevelSpikeCount)


def _is_spiking_multi_level(fn) -> bool:
    return (getattr(fn, "spiking", False) is True
            and all(hasattr(fn, k) for k in ("max_spike_count", "grad_min", "grad_max")))


class ILIFNode(FusedStepNode, LIFNode):
    """Integer LIF: soft reset, decay_input=False, multi-level spikes from ``surrogate_function``."""

    _fuses_surrogate = False  # the count has its own straight-through gradient

    def __init__(self, tau: float = 4.0 / 3.0, v_threshold: float = 1.0,
                 surrogate_function=MultiLevelSpikeCount(4), detach_reset: bool = False,
                 step_mode: str = "s", store_v_seq: bool = False) -> None:
        if not _is_spiking_multi_level(surrogate_function):
            raise ValueError(f"ILIFNode: surrogate_function must be a spiking MultiLevelSpikeCount, but got "
                             f"{surrogate_function!r}.")
        super().__init__(tau=tau, decay_input=False, v_threshold=v_threshold, v_reset=None,
                         surrogate_function=surrogate_function, detach_reset=detach_reset, step_mode=step_mode,
                         store_v_seq=store_v_seq)

    def _python_step(self, x, v):
        fn = self.surrogate_function
        if not _is_spiking_multi_level(fn):
            raise ValueError(f"ILIFNode: surrogate_function must be a spiking MultiLevelSpikeCount, but got {fn!r}.")
        return ilif_step(x, v, self.tau, self.v_threshold, float(fn.max_spike_count), float(fn.grad_min),
                         float(fn.grad_max), self.detach_reset)

    def _op_kwargs(self):
        return dict(mode="leaky", fire="count", tau=self.tau, v_threshold=self.v_threshold, v_reset=None,
                    detach_reset=self.detach_reset, backend=self.backend)

    def _op_per_call(self) -> dict:
        fn = self.surrogate_function
        if not _is_spiking_multi_level(fn):
            raise ValueError(f"ILIFNode: surrogate_function must be a spiking MultiLevelSpikeCount, but got {fn!r}.")
        return dict(max_spike_count=int(fn.max_spike_count), grad_window=(float(fn.grad_min), float(fn.grad_max)))


ILIFNode._fused_class = ILIFNode
