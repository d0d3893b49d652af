"""``FusedStepNode``: the fused path of neurons written in SpikingJelly 2.0's functional style whose dynamics the
single-state op ``fastspike.ops.multistep_neuron`` computes (QIF, EIF, KLIF, LIAF, ILIF).

A subclass defines ``_op_kwargs()`` (the op's keyword arguments: numbers, flags and names, planned once and cached until
an attribute of the neuron is assigned; None when the op cannot take this configuration), ``_op_per_call()``
(arguments read per call: parameters, which module conversions may replace without setattr, and surrogate settings,
planned again when they change; see BaseNode._fused) and
``_python_step(x, v)`` (the per-step dynamics used otherwise). Both step modes run the op (single-step mode is its T
= 1 case) when the surrogate is one the kernels fuse (unless ``_fuses_surrogate`` is False: the op does not use it)
and no subclass redefines the functional forwards.
"""
from __future__ import annotations

import math

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

    def _fused_ok(self, kw) -> bool:
        """The op runs this neuron when the surrogate is one the kernels fuse (unless the fire variant does not use
        it), no subclass redefines the functional forwards and every numeric argument is a finite number (a tensor
        v_rest, say, takes the Python path, which broadcasts it)."""
        cls, owner = type(self), self._fused_class
        spec = getattr(self.surrogate_function, "kernel_spec", None)
        return bool(kw) and (not self._fuses_surrogate or (spec is not None and spec() is not None)) \
            and cls.single_step_functional_forward is owner.single_step_functional_forward \
            and cls.multi_step_functional_forward is owner.multi_step_functional_forward \
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for k, v in kw.items() if k not in _NOT_NUMBERS)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        fused = self._fused()
        if fused is None:
            out, v = self._python_step(inputs[0], states[0])
            return (out,), (v, *states[1:])
        outs, v, _ = self._run_fused(fused, inputs[0].unsqueeze(0), states[0])
        return (outs[0],), (v, *states[1:])

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        fused = self._fused()
        if fused is None or len(inputs) != 1:
            return super().multi_step_functional_forward(inputs, states, **kwargs)
        outs, v, _ = self._run_fused(fused, inputs[0], states[0])
        return (outs,), (v, *states[1:])

    def _multi_step_with_v_seq(self, inputs, states, **kwargs):
        fused = self._fused()
        if fused is None or len(inputs) != 1:
            return super()._multi_step_with_v_seq(inputs, states, **kwargs)
        outs, v, v_seq = self._run_fused(fused, inputs[0], states[0], store_v_seq=True)
        return (outs,), (v, *states[1:]), v_seq
