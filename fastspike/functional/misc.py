"""Small training utilities (SpikingJelly 2.0.0's ``functional.misc``): per-class threshold margins, redundant
one-hot labels, first-spike masks, Kaiming initialisation of synapses, and delaying a sequence in time."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["set_threshold_margin", "redundant_one_hot", "first_spike_index", "kaiming_normal_conv_linear_weight",
           "delay"]


def set_threshold_margin(output_layer: nn.Module, label_one_hot: torch.Tensor, eval_threshold: float = 1.0,
                         threshold0: float = 0.9, threshold1: float = 1.1) -> None:
    """Training: give the output neurons of the true class threshold ``threshold1`` and the others
    ``threshold0`` (a margin between classes); evaluation: every neuron gets ``eval_threshold``."""
    if output_layer.training:
        v_th = torch.full_like(label_one_hot, threshold0, dtype=torch.get_default_dtype()
                               if not label_one_hot.is_floating_point() else label_one_hot.dtype)
        v_th[label_one_hot == 1] = threshold1
        output_layer.v_threshold = v_th
    else:
        output_layer.v_threshold = eval_threshold


def redundant_one_hot(labels: torch.Tensor, num_classes: int, n: int) -> torch.Tensor:
    """One-hot labels with every class repeated ``n`` times: [N] -> [N, num_classes * n] (float),
    for an output layer with ``n`` neurons per class."""
    if n < 1:
        raise ValueError(f"redundant_one_hot: n must be >= 1, but got {n}.")
    return F.one_hot(labels, num_classes).repeat_interleave(n, dim=-1).to(torch.get_default_dtype())


def first_spike_index(spikes: torch.Tensor) -> torch.Tensor:
    """Boolean mask of each neuron's first spike along the LAST dimension (time-last layout [*, T]):
    True exactly where the first nonzero of every row sits."""
    fired = spikes != 0
    return fired & (fired.cumsum(dim=-1) == 1)


def kaiming_normal_conv_linear_weight(net: nn.Module) -> None:
    """Kaiming-normal initialise (a=sqrt(5)) the weight of every Conv1d/2d/3d and Linear of ``net``."""
    for m in net.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=math.sqrt(5))


def delay(x_seq: torch.Tensor, delay_steps: int) -> torch.Tensor:
    """Shift ``x_seq`` [T, *] later in time by ``delay_steps``, filling the first steps with zeros."""
    if not isinstance(delay_steps, int) or delay_steps < 0:
        raise ValueError(f"delay: delay_steps must be a non-negative int, but got {delay_steps!r}.")
    if delay_steps == 0:
        return x_seq
    T = x_seq.shape[0]
    if delay_steps >= T:
        return torch.zeros_like(x_seq)
    return torch.cat((x_seq.new_zeros((delay_steps, *x_seq.shape[1:])), x_seq[: T - delay_steps]))
