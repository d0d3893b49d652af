"""The fused path of the neurons with two state variables (IzhikevichNode, CUBALIFNode, ComplementaryLIFNode).

``_FusedTwoStateNode`` runs both step modes through ``ops.multistep_neuron2`` (single-step mode is its T = 1
case) when the configuration fits the kernels: a surrogate they fuse (fastspike's built-in ones, spiking=True),
number parameters, and no subclass redefining the functional forwards. Otherwise each class's ``_python_step``
(SpikingJelly 2.0's per-step function) runs. States are (v, u), u being the class's second memory.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..ops.neuron2 import multistep_neuron2
from .node import BaseNode

_NOT_NUMBERS = ("model", "v_reset", "surrogate_function", "detach_reset", "backend")


class _FusedTwoStateNode(BaseNode):
    """Subclasses define ``_python_step(x, v, u) -> (spike, v', u')``, ``_op2_kwargs()`` (multistep_neuron2's
    keyword arguments) and set ``_fused_class`` to themselves."""

    def _python_step(self, x, v, u):
        raise NotImplementedError(f"{type(self).__name__} must define _python_step(x, v, u) -> (spike, v', u').")

    def _op2_kwargs(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must define _op2_kwargs().")

    def _eval_heaviside(self) -> bool:
        """True when this call fires with the plain Heaviside (no gradient through the spike): CLIF in eval mode."""
        return False

    def _two_state_kwargs(self) -> Optional[dict]:
        """multistep_neuron2's keyword arguments, or None for the Python path (cached until an attribute of this
        neuron is assigned: __setattr__ drops the cache)."""
        kw = self.__dict__.get("_two_state_cache")
        if kw is None:
            cls, owner = type(self), self._fused_class
            spec = getattr(self.surrogate_function, "kernel_spec", None)
            kw = False
            if (spec is not None and spec() is not None
                    and cls.single_step_functional_forward is owner.single_step_functional_forward
                    and cls.multi_step_functional_forward is owner.multi_step_functional_forward):
                kw = self._op2_kwargs()
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for k, v in kw.items() if k not in _NOT_NUMBERS):
                    kw = False  # e.g. a tensor parameter: the Python path broadcasts it
            self.__dict__["_two_state_cache"] = kw
        if not kw or (self._eval_heaviside() and torch.is_grad_enabled()):
            return None
        return kw

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name != "v_seq" and name not in self.__dict__.get("_memories", ()):
            self.__dict__.pop("_two_state_cache", None)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        kw = self._two_state_kwargs()
        if kw is None:
            spike, v, u = self._python_step(inputs[0], states[0], states[1])
            return (spike,), (v, u, *states[2:])
        spikes, v, u, _, _ = multistep_neuron2(inputs[0].unsqueeze(0), states[0], states[1], **kw)
        return (spikes[0],), (v, u, *states[2:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        kw = self._two_state_kwargs()
        if kw is None or len(inputs) != 1:
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        spikes, v, u, _, _ = multistep_neuron2(inputs[0], states[0], states[1], **kw)
        return (spikes,), (v, u, *states[2:])

    def _multi_step_with_seqs(self, inputs, states, **kwargs):
        """(outputs, new states, v_seq, u_seq): the fused op's sequences, or a loop over single steps."""
        kw = self._two_state_kwargs()
        if kw is not None and len(inputs) == 1:
            spikes, v, u, v_seq, u_seq = multistep_neuron2(inputs[0], states[0], states[1], store_seq=True, **kw)
            return (spikes,), (v, u, *states[2:]), v_seq, u_seq
        steps, v_steps, u_steps = [], [], []
        for t in range(inputs[0].shape[0]):
            outputs, states = self.single_step_functional_forward(tuple(x[t] for x in inputs), states, **kwargs)
            steps.append(outputs)
            v_steps.append(states[0])
            u_steps.append(states[1])
        return tuple(torch.stack(seq) for seq in zip(*steps)), states, torch.stack(v_steps), torch.stack(u_steps)

    def _multi_step_with_v_seq(self, inputs, states, **kwargs):
        outputs, states, v_seq, _ = self._multi_step_with_seqs(inputs, states, **kwargs)
        return outputs, states, v_seq


def common_kwargs(node: BaseNode) -> dict:
    return dict(v_threshold=node.v_threshold, v_reset=node.v_reset, surrogate_function=node.surrogate_function,
                detach_reset=node.detach_reset, backend=node.backend)
