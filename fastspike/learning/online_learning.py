"""Online training loops (SpikingJelly 2.0.0's ``learning.online_learning``): the network runs one time step at a
time in step mode 's' and each step's loss is back-propagated at once, with the state detached between steps
(memory independent of T).

* :func:`ottt_online_training`: OTTT (Xiao et al., NeurIPS 2022): an optimizer step per time step
  (``online=True``) or gradients accumulated over the sequence and one step at the end.
* :func:`fptt_online_training` with :func:`fptt_online_training_init_w_ra`: FPTT (Yin et al., ICML 2023):
  each step's loss plus a dynamic regulariser pulling the weights towards a running average ``w_ra``.
"""
from __future__ import annotations

import copy
from typing import Callable, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import base
from ..functional.net_config import detach_net

__all__ = ["fptt_online_training_init_w_ra", "fptt_online_training", "ottt_online_training"]


def _params(optimizer: torch.optim.Optimizer) -> List[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def fptt_online_training_init_w_ra(optimizer: torch.optim.Optimizer) -> list:
    """FPTT's running average of the weights, started at their current values (one tensor per parameter of
    ``optimizer``, in its order)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"fptt_online_training_init_w_ra: optimizer must be a torch.optim.Optimizer, but got "
                        f"{type(optimizer).__name__}.")
    return [p.detach().clone() for p in _params(optimizer)]


def fptt_online_training(model: nn.Module, optimizer: torch.optim.Optimizer, x_seq: torch.Tensor,
                         target_seq: torch.Tensor, f_loss_t: Callable, alpha: float, w_ra: list) -> None:
    """One FPTT pass over ``x_seq`` [T, N, *] with targets ``target_seq`` [T, ...]: at every step t the loss
    ``f_loss_t(model(x[t]), target[t]) + alpha/2 * sum_i mse(W_i, w_ra_i + g_i / (2 alpha))`` (g_i the previous
    step's gradient) is minimised with one optimizer step; then the gradient at the new weights updates
    ``w_ra`` in place, ``w_ra_i = (w_ra_i + W_i) / 2 - g_i / (2 alpha)``, without advancing the network state."""
    if not alpha > 0:
        raise ValueError(f"fptt_online_training: alpha must be > 0, but got {alpha!r}.")
    params = _params(optimizer)
    if len(w_ra) != len(params):
        raise ValueError(f"fptt_online_training: w_ra holds {len(w_ra)} tensors but the optimizer has {len(params)} "
                         "parameters; build it with fptt_online_training_init_w_ra(optimizer).")
    prev_grads = [0.0] * len(params)
    stateful = [m for m in model.modules() if isinstance(m, base.MemoryModule)]
    T = x_seq.shape[0]
    for t in range(T):
        x_t, target_t = x_seq[t], target_seq[t]
        optimizer.zero_grad()
        loss = f_loss_t(model(x_t), target_t)
        loss = loss + alpha / 2.0 * sum(F.mse_loss(p, w_ra[i] + prev_grads[i] / (2.0 * alpha))
                                        for i, p in enumerate(params))
        loss.backward()
        optimizer.step()
        detach_net(model)
        saved = [copy.deepcopy(m._memories) for m in stateful]
        optimizer.zero_grad()
        if t < T - 1:
            f_loss_t(model(x_t), target_t).backward()
            with torch.no_grad():
                for i, p in enumerate(params):
                    prev_grads[i] = p.grad
                    w_ra[i] = (w_ra[i] + p) / 2.0 - p.grad / (2.0 * alpha)
        optimizer.zero_grad()
        for m, memories in zip(stateful, saved):  # the extra forward must not advance the state
            m._memories = memories


def ottt_online_training(model: nn.Module, optimizer: torch.optim.Optimizer, x_seq: torch.Tensor,
                         target_seq: torch.Tensor, f_loss_t: Callable, online: bool) -> Tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """One OTTT pass over a batch-first sequence ``x_seq`` [N, T, *] with targets ``target_seq`` [N, T, ...]:
    each step's loss is back-propagated at once and the state detached; ``online`` steps the optimizer every
    time step, otherwise once at the end. A model returning a tuple contributes its first element.

    :return: (the summed loss, detached; the outputs [N, T, *], detached)
    """
    x_seq = x_seq.transpose(0, 1)
    target_seq = target_seq.transpose(0, 1)
    total = 0.0
    outputs = []
    if not online:
        optimizer.zero_grad()
    for t in range(x_seq.shape[0]):
        if online:
            optimizer.zero_grad()
        y_t = model(x_seq[t])
        if isinstance(y_t, (list, tuple)):
            y_t = y_t[0]
        loss = f_loss_t(y_t, target_seq[t].contiguous())
        loss.backward()
        if online:
            optimizer.step()
        detach_net(model)
        total += loss.detach()
        outputs.append(y_t.detach())
    if not online:
        optimizer.step()
    return total, torch.stack(outputs, dim=1)
