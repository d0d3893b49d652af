"""Leaky integrate-and-fire neurons (SpikingJelly 2.0's ``neuron.lif`` names).

LIFNode and NonSpikingLIFNode live in fastspike.neuron.node / .nonspiking (fused kernels). Defined here:
``SimpleLIFNode`` (SimpleBaseNode with the LIF charge of fastspike.neuron.dynamics.lif_charge:
H = V + (X - (V - v_reset)) / tau with decay_input, else V - (V - v_reset) / tau + X).
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import surrogate
from .base_node import SimpleBaseNode
from .dynamics import lif_charge
from .node import LIFNode
from .nonspiking import NonSpikingLIFNode

__all__ = ["SimpleLIFNode", "LIFNode", "NonSpikingLIFNode"]


class SimpleLIFNode(SimpleBaseNode):
    """SimpleBaseNode with the LIF charge (tau and decay_input have no defaults, as in SpikingJelly)."""

    def __init__(self, tau: float, decay_input: bool, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s"):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode)
        self.tau = tau
        self.decay_input = decay_input

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = lif_charge(x, self.v, self.tau, self.decay_input, self.v_reset)
