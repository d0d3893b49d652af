"""Dropout that keeps one mask for a whole sequence (SpikingJelly 2.0.0 semantics).

An SNN sees the same sample for T steps; dropping different units at every step would let every unit
through on average and regularise little. These modules sample one mask (scaled by 1/(1-p), as
``torch.nn.functional.dropout``) at the first training step after a reset and reuse it for every later
step until ``functional.reset_net``. In step mode 'm' the mask is sampled from the shape of one step and
applied to all T steps. In eval mode they are the identity and sample nothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import base

__all__ = ["Dropout", "Dropout2d"]


class Dropout(base.MemoryModule):
    """Element-wise dropout with a mask shared by all time steps until ``reset()``.

    :param p: probability of dropping an element, 0 <= p < 1
    :param step_mode: 's' (x: [N, *]) or 'm' (x_seq: [T, N, *])
    """

    def __init__(self, p: float = 0.5, step_mode: str = "s"):
        super().__init__()
        self.step_mode = step_mode
        if not 0 <= p < 1:
            raise ValueError(f"{type(self).__name__}: p must satisfy 0 <= p < 1, but got p={p}.")
        self.register_memory("mask", None)
        self.p = p

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def create_mask(self, x: torch.Tensor) -> torch.Tensor:
        """A fresh mask with the shape of one step ``x``: 0 for dropped elements, 1/(1-p) for kept ones."""
        return F.dropout(torch.ones_like(x), self.p, training=True)

    def _mask_for(self, x: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            self.mask = self.create_mask(x)
        elif self.mask.shape != x.shape:
            raise ValueError(
                f"{type(self).__name__}: the stored mask has shape {tuple(self.mask.shape)} but one step of the input "
                f"has shape {tuple(x.shape)}; call functional.reset_net(net) between input sequences.")
        return self.mask

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x * self._mask_for(x)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} (step_mode='m') expects x_seq with shape [T, N, *], "
                             f"but got shape {tuple(x_seq.shape)}.")
        if not self.training:
            return x_seq
        return x_seq * self._mask_for(x_seq[0])


class Dropout2d(Dropout):
    """Channel dropout (whole feature maps of [N, C, H, W]) with a mask shared by all time steps until
    ``reset()``."""

    def __init__(self, p: float = 0.2, step_mode: str = "s"):
        super().__init__(p, step_mode)

    def create_mask(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout2d(torch.ones_like(x), self.p, training=True)
