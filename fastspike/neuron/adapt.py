"""Neurons with an adaptation current w (SpikingJelly 2.0's ``neuron.adapt``).

* ``AdaptBaseNode``: BaseNode with a second state ``w`` (initially and after reset ``w_rest``) and the
  adaptation rule w <- w + (a (V - v_rest) - w) / tau_w (``neuronal_adaptation``); subclasses define the
  dynamics in ``single_step_functional_forward``.
* ``IzhikevichNode``: H = V + (X + a0 (V - v_rest)(V - v_c) - w) / tau, spike, reset, and
  w <- w + (a (H - v_rest) - w) / tau_w + b S (fastspike.neuron.dynamics.izhikevich_step).
State order (for the functional API): (v, w).

IzhikevichNode runs both step modes through the fused op ``ops.multistep_neuron2`` (model 'izhikevich') when the
kernels take its configuration (fastspike/neuron/_two_state.py), else izhikevich_step in Python.
"""
from __future__ import annotations

from typing import Optional


from .. import surrogate
from . import _checks
from ._two_state import _FusedTwoStateNode, common_kwargs
from .dynamics import izhikevich_step
from .node import BaseNode, state_tensor

__all__ = ["AdaptBaseNode", "IzhikevichNode"]


class AdaptBaseNode(BaseNode):
    """BaseNode with an adaptation state ``w`` (see the module docstring)."""

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, v_rest: float = 0.0,
                 w_rest: float = 0.0, tau_w: float = 2.0, a: float = 0.0, b: float = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False):
        name = type(self).__name__
        w_rest = _checks.number(name, "w_rest", w_rest)
        v_rest = _checks.number(name, "v_rest", v_rest)
        tau_w = _checks.number(name, "tau_w", tau_w)
        a = _checks.number(name, "a", a)
        b = _checks.number(name, "b", b)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq)
        self.register_memory("w", w_rest)
        self.w_rest = w_rest
        self.v_rest = v_rest
        self.tau_w = tau_w
        self.a = a
        self.b = b

    @staticmethod
    def jit_neuronal_adaptation(w, tau_w: float, a: float, v_rest: float, v):
        return w + 1.0 / tau_w * (a * (v - v_rest) - w)

    def neuronal_adaptation(self) -> None:
        """w <- w + (a (V - v_rest) - w) / tau_w, on the stored states."""
        self.w = self.jit_neuronal_adaptation(self.w, self.tau_w, self.a, self.v_rest, self.v)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", v_rest={self.v_rest}, w_rest={self.w_rest}, tau_w={self.tau_w}, "
                f"a={self.a}, b={self.b}")

    def materialize_states(self, inputs, states, step_mode):
        states = super().materialize_states(inputs, states, step_mode)
        return (*states[:-1], state_tensor(self, states[-1], states[0], "w"))


class IzhikevichNode(_FusedTwoStateNode, AdaptBaseNode):
    """Izhikevich neuron (quadratic charge with adaptation current w); see the module docstring."""

    def __init__(self, tau: float = 2.0, v_c: float = 0.8, a0: float = 1.0, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, v_rest: float = -0.1, w_rest: float = 0.0, tau_w: float = 2.0,
                 a: float = 0.0, b: float = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False):
        tau = _checks.number("IzhikevichNode", "tau", tau, gt=1.0)
        a0 = _checks.number("IzhikevichNode", "a0", a0, gt=0.0)
        super().__init__(v_threshold, v_reset, v_rest, w_rest, tau_w, a, b, surrogate_function, detach_reset,
                         step_mode, store_v_seq)
        self.tau = tau
        self.v_c = v_c
        self.a0 = a0

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, v_c={self.v_c}, a0={self.a0}"

    def _python_step(self, x, v, w):
        return izhikevich_step(x, v, w, self.tau, self.a0, self.v_rest, self.v_c, self.tau_w, self.a, self.b,
                               self.v_threshold, self.v_reset, self.surrogate_function, self.detach_reset)

    def _op2_kwargs(self) -> dict:
        return dict(model="izhikevich", tau=self.tau, a0=self.a0, v_rest=self.v_rest, v_c=self.v_c,
                    tau_w=self.tau_w, a=self.a, b=self.b, **common_kwargs(self))


IzhikevichNode._fused_class = IzhikevichNode
