"""Neurons with intra-layer connections for population-coded actions (SpikingJelly 2.0's
``neuron.inter_layer_connection``, from the population-coded spiking actor networks of deep RL).

The layer holds ``act_dim`` groups of ``dec_pop_dim`` neurons (input [T, B, act_dim * dec_pop_dim]). After
each step, the spikes of every group pass through a grouped 1-D convolution ``conn`` (one kernel of width
dec_pop_dim per group: parameters conn.weight, conn.bias) and are added to the next step's input. Multi-step
only; every call starts from V = v_reset (and C = 0). The input is not modified (SpikingJelly adds in place).

* ``ILCIFNode``: H = V + X.  * ``ILCLIFNode``: H = v_decay V + X.
* ``ILCCUBALIFNode``: C = c_decay C + X, H = v_decay V + C (current-based LIF).
Subclasses of ``ILCBaseNode`` define ``neuronal_charge(x)`` (and ``init_tensor`` for extra state).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .. import surrogate
from ..base import MultiStepModule
from . import _checks
from .dynamics import reset_voltage

__all__ = ["ILCBaseNode", "ILCIFNode", "ILCLIFNode", "ILCCUBALIFNode"]


class ILCBaseNode(nn.Module, MultiStepModule):
    """Charge (subclass), fire, reset, and the grouped spike feedback ``conn`` into the next step."""

    def __init__(self, act_dim, dec_pop_dim, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        name = type(self).__name__
        v_threshold = _checks.number(name, "v_threshold", v_threshold)
        if v_reset is not None:
            v_reset = _checks.number(name, "v_reset", v_reset)
        super().__init__()
        self._step_mode = "m"
        self.act_dim = act_dim
        self.out_pop_dim = act_dim * dec_pop_dim
        self.dec_pop_dim = dec_pop_dim
        self.conn = nn.Conv1d(act_dim, self.out_pop_dim, dec_pop_dim, groups=act_dim)
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.surrogate_function = surrogate_function

    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define neuronal_charge(x) (update self.v from x).")

    def neuronal_fire(self) -> torch.Tensor:
        return self.surrogate_function(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        self.v = reset_voltage(self.v, spike, self.v_threshold, self.v_reset, False)

    def init_tensor(self, data: torch.Tensor) -> None:
        """The state at the start of a call: V = v_reset (0 with soft reset)."""
        self.v = torch.full_like(data, 0.0 if self.v_reset is None else self.v_reset)

    def _feedback(self, spike: torch.Tensor) -> torch.Tensor:
        return self.conn(spike.view(-1, self.act_dim, self.dec_pop_dim)).view(-1, self.out_pop_dim)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not isinstance(x_seq, torch.Tensor) or x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} expects input of shape [T, B, act_dim * dec_pop_dim], but got "
                             f"{getattr(x_seq, 'shape', type(x_seq).__name__)}.")
        if x_seq.shape[-1] != self.out_pop_dim:
            raise ValueError(f"{type(self).__name__}: the last input dimension must be act_dim * dec_pop_dim = "
                             f"{self.out_pop_dim}, but got shape {tuple(x_seq.shape)}.")
        self.init_tensor(x_seq[0].detach())
        T = x_seq.shape[0]
        spikes, feedback = [], None
        for t in range(T):
            x = x_seq[t] if feedback is None else x_seq[t] + feedback
            self.neuronal_charge(x)
            spike = self.neuronal_fire()
            self.neuronal_reset(spike)
            spikes.append(spike)
            if t < T - 1:
                feedback = self._feedback(spike)
        return torch.stack(spikes)


class ILCIFNode(ILCBaseNode):
    """IF charge H = V + X."""

    def __init__(self, act_dim, dec_pop_dim, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        super().__init__(act_dim, dec_pop_dim, v_threshold, v_reset, surrogate_function)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x


class ILCLIFNode(ILCBaseNode):
    """LIF charge H = v_decay V + X."""

    def __init__(self, act_dim, dec_pop_dim, v_decay: float = 0.75, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        super().__init__(act_dim, dec_pop_dim, v_threshold, v_reset, surrogate_function)
        self.v_decay = v_decay

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v * self.v_decay + x


class ILCCUBALIFNode(ILCBaseNode):
    """Current-based LIF charge: C = c_decay C + X, H = v_decay V + C."""

    def __init__(self, act_dim, dec_pop_dim, c_decay: float = 0.5, v_decay: float = 0.75, v_threshold: float = 0.5,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        super().__init__(act_dim, dec_pop_dim, v_threshold, v_reset, surrogate_function)
        self.c_decay = c_decay
        self.v_decay = v_decay

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.c = self.c * self.c_decay + x
        self.v = self.v * self.v_decay + self.c

    def init_tensor(self, data: torch.Tensor) -> None:
        self.c = torch.full_like(data, 0.0)
        super().init_tensor(data)
