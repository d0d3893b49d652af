"""Online training through time (OTTT, Xiao et al., NeurIPS 2022): the layers of SpikingJelly 2.0.0's
``activation_based.layer.online_learning``.

In OTTT an online neuron (``OTTTLIFNode``) emits, in training, a pair ``[spike, trace]``: the spikes feed the
forward pass and the presynaptic trace (a leaky sum of past spikes) carries the gradient to the weights, so
no history is stored through time.

* ``ReplaceforGrad.apply(x, x_r)``: returns ``x_r``; its backward sends the incoming gradient to both.
* ``GradwithTrace(module)``: ``[spike, trace]`` -> one tensor: ``module(spike)`` forward, with gradients as if
  the input had been ``trace`` (for synapse layers with weights).
* ``SpikeTraceOp(module)``: ``[spike, trace]`` -> ``[module(spike), module(trace)]``, the trace without
  gradient (for stateless layers such as pooling).
* ``OTTTSequential(*modules)``: an ``nn.Sequential`` that routes a ``[spike, trace]`` pair to each child by
  the rules above (online neurons take the spikes; children without parameters get SpikeTraceOp's rule, the
  others GradwithTrace's); plain tensors pass as in ``nn.Sequential``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .._apply import fast_apply

__all__ = ["ReplaceforGrad", "GradwithTrace", "SpikeTraceOp", "OTTTSequential"]


class ReplaceforGrad(torch.autograd.Function):
    """Forward: ``x_r``. Backward: the gradient of the output goes, unchanged, to both ``x`` and ``x_r``."""

    generate_vmap_rule = True  # PyTorch operations only (setup_context style: torch.func transforms apply it)

    @staticmethod
    def forward(x: torch.Tensor, x_r: torch.Tensor) -> torch.Tensor:
        return x_r

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, grad


_replace = fast_apply(ReplaceforGrad)


def _forward_spike_grad_trace(module: nn.Module, pair) -> torch.Tensor:
    spike, trace = pair
    with torch.no_grad():
        out = module(spike)
    # the value of module(spike), the gradient of module(trace) (with respect to the weights and the trace)
    return _replace(module(_replace(spike, trace)), out)


def _map_spike_and_trace(module: nn.Module, pair) -> list:
    spike, trace = pair
    spike = module(spike)
    with torch.no_grad():
        trace = module(trace)
    return [spike, trace]


class GradwithTrace(nn.Module):
    """Wrap a layer with weights: takes ``[spike, trace]``, returns ``module(spike)`` whose backward follows
    ``module(trace)``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x) -> torch.Tensor:
        return _forward_spike_grad_trace(self.module, x)


class SpikeTraceOp(nn.Module):
    """Wrap a stateless layer: takes ``[spike, trace]``, returns ``[module(spike), module(trace)]`` (the trace
    without gradient)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x) -> list:
        return _map_spike_and_trace(self.module, x)


def _online_neuron_types() -> tuple:
    """The neuron classes that take only the spikes of a ``[spike, trace]`` pair (fastspike.neuron's
    OTTTLIFNode, once that module provides it)."""
    from .. import neuron

    cls = getattr(neuron, "OTTTLIFNode", None)
    return (cls,) if isinstance(cls, type) else ()


class OTTTSequential(nn.Sequential):
    """``nn.Sequential`` for OTTT networks: ``[spike, trace]`` pairs are routed to each child (online neuron:
    the spikes; child without parameters: both, trace without gradient; child with parameters: forward on
    the spikes, gradient through the trace); tensors pass through as in ``nn.Sequential``."""

    def __init__(self, *args):
        super().__init__(*args)

    def forward(self, input):
        online = _online_neuron_types()
        for module in self:
            if not isinstance(input, list):
                input = module(input)
            elif online and isinstance(module, online):
                input = module(input[0])
            elif next(module.parameters(), None) is None:
                input = _map_spike_and_trace(module, input)
            else:
                input = _forward_spike_grad_trace(module, input)
        return input
