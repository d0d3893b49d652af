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

from typing import Optional

from .. import surrogate
from . import _checks
from ._fused import FusedStepNode
from .dynamics import eif_step, qif_step
from .node import BaseNode

__all__ = ["QIFNode", "EIFNode"]


def _check_reset(cls: str, v_threshold, v_rest, v_reset) -> None:
    if v_reset is not None:
        if not v_threshold > v_reset:
            raise ValueError(f"{cls}: v_threshold must be > v_reset, but got v_threshold={v_threshold}, "
                             f"v_reset={v_reset}.")
        if not v_rest >= v_reset:
            raise ValueError(f"{cls}: v_rest must be >= v_reset, but got v_rest={v_rest}, v_reset={v_reset}.")


def _common(node: BaseNode) -> dict:
    return dict(tau=node.tau, v_threshold=node.v_threshold, v_reset=node.v_reset,
                surrogate_function=node.surrogate_function, detach_reset=node.detach_reset, backend=node.backend)


class QIFNode(FusedStepNode):
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


class EIFNode(FusedStepNode):
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
