"""Nonlinear integrate-and-fire neurons (SpikingJelly 2.0's ``neuron.nonlinear_if``), on the per-step
functions of fastspike.neuron.dynamics:

* ``QIFNode``: H = V + (X + a0 (V - v_rest)(V - v_c)) / tau (quadratic IF).
* ``EIFNode``: H = V + (X + v_rest - V + delta_T exp((V - theta_rh) / delta_T)) / tau (exponential IF).
Both fire at v_threshold and reset to v_reset (default -0.1) or, with v_reset=None, by v_threshold.

With a surrogate that the kernels fuse (fastspike's built-in ones, spiking=True) both step modes run the fused
multi-step op (fastspike.ops.multistep_neuron, modes 'qif' / 'eif'; single-step mode is its T = 1 case); any other
surrogate, or a subclass that redefines the functional forwards, runs the per-step functions in Python.
"""
from __future__ import annotations

import math
from typing import Optional

from .. import surrogate
from ..ops.neuron import multistep_neuron
from . import _checks
from .dynamics import eif_step, qif_step
from .node import BaseNode

__all__ = ["QIFNode", "EIFNode"]

_NOT_NUMBERS = ("mode", "v_reset", "surrogate_function", "detach_reset", "backend")


def _check_reset(cls: str, v_threshold, v_rest, v_reset) -> None:
    if v_reset is not None:
        if not v_threshold > v_reset:
            raise ValueError(f"{cls}: v_threshold must be > v_reset, but got v_threshold={v_threshold}, "
                             f"v_reset={v_reset}.")
        if not v_rest >= v_reset:
            raise ValueError(f"{cls}: v_rest must be >= v_reset, but got v_rest={v_rest}, v_reset={v_reset}.")


class _FusedNonlinearNode(BaseNode):
    """The fused path shared by QIFNode and EIFNode: ``_op_kwargs`` names the op's mode and parameters,
    ``_python_step`` is the per-step Python function used otherwise."""

    def _python_step(self, x, v):
        raise NotImplementedError(f"{type(self).__name__} must define _python_step(x, v) -> (spike, v'), the "
                                  "per-step dynamics used when the fused op does not apply.")

    def _nonlinear_kwargs(self) -> Optional[dict]:
        """multistep_neuron's keyword arguments, or None for the Python path (cached until an attribute of this
        neuron is assigned; BaseNode.__setattr__ drops the cache)."""
        kw = self.__dict__.get("_fused_cache")
        if kw is None:
            cls, owner = type(self), self._fused_class
            spec = getattr(self.surrogate_function, "kernel_spec", None)
            kw = False
            if (spec is not None and spec() is not None
                    and cls.single_step_functional_forward is owner.single_step_functional_forward
                    and cls.multi_step_functional_forward is owner.multi_step_functional_forward):
                kw = self._op_kwargs()
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for k, v in kw.items() if k not in _NOT_NUMBERS):
                    kw = False  # e.g. a tensor v_rest: the Python path broadcasts it
            self.__dict__["_fused_cache"] = kw
        return kw or None

    def single_step_functional_forward(self, inputs, states, **kwargs):
        kw = self._nonlinear_kwargs()
        if kw is None:
            spike, v = self._python_step(inputs[0], states[0])
            return (spike,), (v, *states[1:])
        spikes, v, _ = multistep_neuron(inputs[0].unsqueeze(0), states[0], **kw)
        return (spikes[0],), (v, *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        kw = self._nonlinear_kwargs()
        if kw is None or len(inputs) != 1:
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        spikes, v, _ = multistep_neuron(inputs[0], states[0], **kw)
        return (spikes,), (v, *states[1:])

    def _multi_step_with_v_seq(self, inputs, states, **kwargs):
        kw = self._nonlinear_kwargs()
        if kw is None or len(inputs) != 1:
            return super()._multi_step_with_v_seq(inputs, states, **kwargs)
        spikes, v, v_seq = multistep_neuron(inputs[0], states[0], store_v_seq=True, **kw)
        return (spikes,), (v, *states[1:]), v_seq


def _common(node: BaseNode) -> dict:
    return dict(tau=node.tau, v_threshold=node.v_threshold, v_reset=node.v_reset,
                surrogate_function=node.surrogate_function, detach_reset=node.detach_reset, backend=node.backend)


class QIFNode(_FusedNonlinearNode):
    """Quadratic integrate-and-fire neuron."""

    def __init__(self, tau: float = 2.0, v_c: float = 0.8, a0: float = 1.0, v_threshold: float = 1.0,
                 v_rest: float = 0.0, v_reset: Optional[float] = -0.1,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False):
        tau = _checks.number("QIFNode", "tau", tau, gt=1.0)
        _check_reset("QIFNode", v_threshold, v_rest, v_reset)
        a0 = _checks.number("QIFNode", "a0", a0, gt=0.0)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq)
        self.tau = tau
        self.v_c = v_c
        self.v_rest = v_rest
        self.a0 = a0

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, v_c={self.v_c}, a0={self.a0}, v_rest={self.v_rest}"

    def _python_step(self, x, v):
        return qif_step(x, v, self.tau, self.a0, self.v_rest, self.v_c, self.v_threshold, self.v_reset,
                        self.surrogate_function, self.detach_reset)

    def _op_kwargs(self) -> dict:
        return dict(mode="qif", a0=self.a0, v_rest=self.v_rest, v_c=self.v_c, **_common(self))


QIFNode._fused_class = QIFNode


class EIFNode(_FusedNonlinearNode):
    """Exponential integrate-and-fire neuron."""

    def __init__(self, tau: float = 2.0, delta_T: float = 1.0, theta_rh: float = 0.8, v_threshold: float = 1.0,
                 v_rest: float = 0.0, v_reset: Optional[float] = -0.1,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s", store_v_seq: bool = False):
        tau = _checks.number("EIFNode", "tau", tau, gt=1.0)
        _check_reset("EIFNode", v_threshold, v_rest, v_reset)
        delta_T = _checks.number("EIFNode", "delta_T", delta_T, gt=0.0)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq)
        self.tau = tau
        self.delta_T = delta_T
        self.v_rest = v_rest
        self.theta_rh = theta_rh

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, delta_T={self.delta_T}, theta_rh={self.theta_rh}"

    def _python_step(self, x, v):
        return eif_step(x, v, self.tau, self.delta_T, self.theta_rh, self.v_rest, self.v_threshold, self.v_reset,
                        self.surrogate_function, self.detach_reset)

    def _op_kwargs(self) -> dict:
        return dict(mode="eif", delta_T=self.delta_T, theta_rh=self.theta_rh, v_rest=self.v_rest, **_common(self))


EIFNode._fused_class = EIFNode
