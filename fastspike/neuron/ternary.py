"""Ternary-spike neurons (SpikingJelly 2.0's ``neuron.ternary``): spikes in {-1, 0, +1}.

A +1 spike fires when H >= v_threshold and a -1 spike when H <= -v_threshold (two surrogate calls, so
both sides have a gradient). Hard reset (v_reset in (-v_threshold, v_threshold)) sets V to v_reset after
either spike; soft reset (v_reset=None) moves V back by S v_threshold. The charge is IF (``TernaryIFNode``)
or LIF (``TernaryLIFNode``); see fastspike.neuron.dynamics.ternary_if_step / ternary_lif_step.
"""
from __future__ import annotations

import math
from typing import Optional

from .. import surrogate
from .dynamics import ternary_if_step, ternary_lif_step
from .node import BaseNode

__all__ = ["TernaryIFNode", "TernaryLIFNode"]


def _check(cls: str, v_threshold, v_reset, detach_reset) -> None:
    if not isinstance(v_threshold, float):
        raise TypeError(f"{cls}: v_threshold must be a float, but got {v_threshold!r}.")
    if not math.isfinite(v_threshold) or v_threshold <= 0.0:
        raise ValueError(f"{cls}: v_threshold must be finite and positive, but got {v_threshold}.")
    if v_reset is not None:
        if not isinstance(v_reset, float):
            raise TypeError(f"{cls}: v_reset must be a float or None, but got {v_reset!r}.")
        if not math.isfinite(v_reset) or not -v_threshold < v_reset < v_threshold:
            raise ValueError(f"{cls}: v_reset must lie strictly between -v_threshold and v_threshold "
                             f"({-v_threshold}, {v_threshold}), but got {v_reset}.")
    if not isinstance(detach_reset, bool):
        raise TypeError(f"{cls}: detach_reset must be a bool, but got {detach_reset!r}.")


class TernaryIFNode(BaseNode):
    """IF charge H = V + X with ternary spikes."""

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False) -> None:
        _check("TernaryIFNode", v_threshold, v_reset, detach_reset)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        spike, v = ternary_if_step(inputs[0], states[0], self.v_threshold, self.v_reset, self.surrogate_function,
                                   self.detach_reset)
        return (spike,), (v, *states[1:])


class TernaryLIFNode(BaseNode):
    """LIF charge (tau > 1, decay_input) with ternary spikes."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False) -> None:
        _check("TernaryLIFNode", v_threshold, v_reset, detach_reset)
        if not isinstance(tau, float):
            raise TypeError(f"TernaryLIFNode: tau must be a float, but got {tau!r}.")
        if not math.isfinite(tau) or tau <= 1.0:
            raise ValueError(f"TernaryLIFNode: tau must be finite and greater than 1.0, but got {tau}.")
        if not isinstance(decay_input, bool):
            raise TypeError(f"TernaryLIFNode: decay_input must be a bool, but got {decay_input!r}.")
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq)
        self.tau = tau
        self.decay_input = decay_input

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, decay_input={self.decay_input}"

    def single_step_functional_forward(self, inputs, states, **kwargs):
        spike, v = ternary_lif_step(inputs[0], states[0], self.tau, self.decay_input, self.v_threshold,
                                    self.v_reset, self.surrogate_function, self.detach_reset)
        return (spike,), (v, *states[1:])
