"""LIF neurons for online training through time (SpikingJelly 2.0's ``neuron.online_learning``).

Both run in single-step mode, one step per call, and in training mode cut the gradient through the previous
membrane potential (V[t-1] is detached), so memory does not grow with T; in eval mode they fire with the plain
Heaviside. Per step: fastspike.neuron.dynamics.lif_step.

* ``OTTTLIFNode`` (Xiao et al., NeurIPS 2022): also keeps a presynaptic trace
  trace <- (1 - 1/tau) trace + S (no gradient) and, in training mode, returns [spike, trace]; states (v, trace).
* ``SLTTLIFNode`` (Meng et al., ICCV 2023): spatial learning through time; returns the spike.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import surrogate
from .dynamics import lif_step
from .node import LIFNode

__all__ = ["OTTTLIFNode", "SLTTLIFNode"]


def _single_step_only(cls: str, step_mode) -> None:
    if step_mode != "s":
        raise ValueError(f"{cls}: step_mode must be 's' (single-step mode enables memory-efficient online "
                         f"training), but got {step_mode!r}.")


class _OnlineLIFNode(LIFNode):
    def single_step_functional_forward(self, inputs, states, **kwargs):
        v = states[0]
        fire = self.surrogate_function if self.training else surrogate.heaviside
        spike, v = lif_step(inputs[0], v.detach() if self.training else v, self.tau, self.decay_input,
                            self.v_threshold, self.v_reset, fire, self.detach_reset)
        return (spike,), (v, *states[1:])


class OTTTLIFNode(_OnlineLIFNode):
    """Online training through time LIF (soft reset, decay_input=False, detach_reset=True by default)."""

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: Optional[float] = None,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = True, step_mode="s", store_v_seq: bool = False):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq)
        _single_step_only("OTTTLIFNode", step_mode)
        self.register_memory("trace", None)

    def materialize_states(self, inputs, states, step_mode):
        v, trace = super().materialize_states(inputs, states, step_mode)
        if self.training and trace is None:
            trace = torch.zeros_like(v)
        return v, trace

    @staticmethod
    def track_trace(spike: torch.Tensor, trace: torch.Tensor, tau: float) -> torch.Tensor:
        with torch.no_grad():
            return trace * (1.0 - 1.0 / tau) + spike

    def single_step_functional_forward(self, inputs, states, **kwargs):
        (spike,), (v, trace) = super().single_step_functional_forward(inputs, states, **kwargs)
        if not self.training:
            return (spike,), (v, trace)
        trace = self.track_trace(spike, trace, self.tau)
        return (spike, trace), (v, trace)

    def single_step_forward(self, x: torch.Tensor, *args, **kwargs):
        out = super().single_step_forward(x, *args, **kwargs)
        return list(out) if isinstance(out, tuple) else out


class SLTTLIFNode(_OnlineLIFNode):
    """Spatial learning through time LIF (detach_reset=True by default)."""

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = True, step_mode="s", store_v_seq: bool = False):
        super().__init__(tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset, step_mode,
                         store_v_seq)
        _single_step_only("SLTTLIFNode", step_mode)
