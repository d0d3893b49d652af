"""Stateless one-step forms of stateful layers (SpikingJelly 2.0.0's ``functional.layer``).

Each takes the state explicitly and returns the new state, so a layer can be written as a pure function
(torch.func, torch.compile) or driven by hand: :func:`delay_step` (a FIFO of past inputs),
:func:`neunorm_step` (NeuNorm's lateral inhibition) and :func:`synapse_filter_step` (a first-order synaptic
current filter).
"""
from __future__ import annotations

from typing import Tuple, Union

import torch

__all__ = ["delay_step", "neunorm_step", "synapse_filter_step"]


def neunorm_step(in_spikes: torch.Tensor, state: torch.Tensor, weight: torch.Tensor, momentum: float,
                 input_scale: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """NeuNorm (Wu et al., AAAI 2019) for one step of spikes [N, C, *]:
    ``state' = momentum * state + input_scale * sum_c in_spikes``, output ``in_spikes - weight * state'``.

    :return: (output, state')
    """
    if not isinstance(in_spikes, torch.Tensor) or in_spikes.dim() < 2:
        got = tuple(in_spikes.shape) if isinstance(in_spikes, torch.Tensor) else type(in_spikes).__name__
        raise ValueError(f"neunorm_step: in_spikes must be a tensor [N, C, *], but got {got}.")
    state_next = momentum * state + input_scale * in_spikes.sum(dim=1, keepdim=True)
    return in_spikes - weight * state_next, state_next


def delay_step(x: torch.Tensor, queue: Tuple[torch.Tensor, ...],
               delay_steps: int) -> Tuple[torch.Tensor, Tuple[torch.Tensor, ...]]:
    """Delay ``x`` by ``delay_steps`` steps: push it on ``queue`` (the earlier inputs, oldest first) and return
    the input of ``delay_steps`` steps ago (zeros while the queue fills) and the new queue.

    ``delay_step(x, (), 0)`` returns ``(x, ())``.
    """
    if not isinstance(delay_steps, int) or isinstance(delay_steps, bool) or delay_steps < 0:
        raise ValueError(f"delay_step: delay_steps must be a non-negative int, but got {delay_steps!r}.")
    queue = (*queue, x)
    if len(queue) > delay_steps:
        return queue[0], queue[1:]
    return torch.zeros_like(x), queue


def synapse_filter_step(x: torch.Tensor, out_i: torch.Tensor,
                        reciprocal_tau: Union[float, torch.Tensor]) -> torch.Tensor:
    """One step of the synaptic filter of SpikingJelly's SynapseFilter: the current decays by
    ``reciprocal_tau`` (1/tau) between spikes and jumps by 1 on a spike,
    ``out_i' = out_i - (1 - x) * out_i * reciprocal_tau + x``."""
    return out_i - (1.0 - x) * out_i * reciprocal_tau + x
