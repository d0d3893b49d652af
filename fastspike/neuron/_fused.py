"""``FusedStepNode``: the fused path of neurons written in SpikingJelly 2.0's functional style whose dynamics the
single-state op ``fastspike.ops.multistep_neuron`` computes (QIF, EIF, KLIF, LIAF, ILIF).

A subclass defines ``_op_kwargs()`` (the op's keyword arguments: numbers, flags and names, cached until an attribute
of the neuron is assigned; None when the op cannot take this configuration), ``_op_per_call()`` (arguments read per
call: parameters, which module conversions may replace without setattr, and surrogate settings) and
``_python_step(x, v)`` (the per-step dynamics used otherwise). Both step modes run the op (single-step mode is its T
= 1 case) when the surrogate is one the kernels fuse (unless ``_fuses_surrogate`` is False: the op does not use it)
and no subclass redefines the functional forwards.
"""
from __future__ import annotations

import math
from typing import Optional

from ..ops.neuron import multistep_neuron
from .node import BaseNode

__all__ = ["FusedStepNode"]

# keyword arguments of the op that are not numeric parameters (numbers are checked finite before fusing)
_NOT_NUMBERS = ("mode", "v_reset", "surrogate_function", "detach_reset", "backend", "decay_input", "fire", "act",
                "scale_reset", "threshold_related", "grad_window")


class FusedStepNode(BaseNode):
    """See the module docstring; ``_fused_class`` (set after each concrete class) marks the class whose
    functional forwards are the fused ones."""

    _fuses_surrogate = True  # the op takes the surrogate (False: the fire variant has its own gradient)

    def _python_step(self, x, v):
        raise NotImplementedError(f"{type(self).__name__} must define _python_step(x, v) -> (output, v'), the "
                                  "per-step dynamics used when the fused op does not apply.")

    def _op_per_call(self) -> dict:
        return {}

    def _nonlinear_kwargs(self) -> Optional[dict]:
        """multistep_neuron's keyword arguments, or None for the Python path (cached until an attribute of this
        neuron is assigned; BaseNode.__setattr__ drops the cache)."""
        kw = self.__dict__.get("_fused_cache")
        if kw is None:
            cls, owner = type(self), self._fused_class
            spec = getattr(self.surrogate_function, "kernel_spec", None)
            kw = False
            if ((not self._fuses_surrogate or (spec is not None and spec() is not None))
                    and cls.single_step_functional_forward is owner.single_step_functional_forward
                    and cls.multi_step_functional_forward is owner.multi_step_functional_forward):
                kw = self._op_kwargs() or False
                if kw and not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                  for k, v in kw.items() if k not in _NOT_NUMBERS):
                    kw = False  # e.g. a tensor v_rest: the Python path broadcasts it
            self.__dict__["_fused_cache"] = kw
        return dict(kw, **self._op_per_call()) if kw else None

    def single_step_functional_forward(self, inputs, states, **kwargs):
        kw = self._nonlinear_kwargs()
        if kw is None:
            out, v = self._python_step(inputs[0], states[0])
            return (out,), (v, *states[1:])
        outs, v, _ = multistep_neuron(inputs[0].unsqueeze(0), states[0], **kw)
        return (outs[0],), (v, *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        kw = self._nonlinear_kwargs()
        if kw is None or len(inputs) != 1:
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        outs, v, _ = multistep_neuron(inputs[0], states[0], **kw)
        return (outs,), (v, *states[1:])

    def _multi_step_with_v_seq(self, inputs, states, **kwargs):
        kw = self._nonlinear_kwargs()
        if kw is None or len(inputs) != 1:
            return super()._multi_step_with_v_seq(inputs, states, **kwargs)
        outs, v, v_seq = multistep_neuron(inputs[0], states[0], store_v_seq=True, **kw)
        return (outs,), (v, *states[1:]), v_seq
