"""Resonate-and-fire neuron (SpikingJelly 2.0's ``neuron.resonate``).

``RAFNode``: a damped oscillator (u, v) rotated by omega dt and scaled by exp(b dt) per step, driven through
u by the input; v fires at v_threshold and is reset (fastspike.neuron.dynamics.raf_step). States (v, u).
"""
from __future__ import annotations

from typing import Optional

from .. import surrogate
from . import _checks
from .dynamics import raf_step
from .node import BaseNode, state_tensor

__all__ = ["RAFNode"]


class RAFNode(BaseNode):
    """Resonate-and-fire: b < 0 (damping), omega > 0 (angular frequency), dt > 0 (step length)."""

    def __init__(self, b: float = -0.2, omega: float = 1.0, dt: float = 1.0, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False) -> None:
        b = _checks.number("RAFNode", "b", b, lt=0.0)
        omega = _checks.number("RAFNode", "omega", omega, gt=0.0)
        dt = _checks.number("RAFNode", "dt", dt, gt=0.0)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq)
        self.register_memory("u", 0.0)
        self.b = b
        self.omega = omega
        self.dt = dt

    def extra_repr(self) -> str:
        return super().extra_repr() + f", b={self.b}, omega={self.omega}, dt={self.dt}"

    def materialize_states(self, inputs, states, step_mode):
        states = super().materialize_states(inputs, states, step_mode)
        return (*states[:-1], state_tensor(self, states[-1], states[0], "u"))

    def single_step_functional_forward(self, inputs, states, **kwargs):
        spike, u, v = raf_step(inputs[0], states[-1], states[0], self.b, self.omega, self.dt, self.v_threshold,
                               self.v_reset, self.surrogate_function, self.detach_reset)
        return (spike,), (v, u)
