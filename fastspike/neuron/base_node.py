"""SpikingJelly 2.0's ``neuron.base_node`` names: BaseNode (fastspike.neuron.node), NonSpikingBaseNode
(fastspike.neuron.nonspiking) and SimpleBaseNode, defined here.

``SimpleBaseNode`` is the minimal charge / fire / reset neuron for subclassing: a subclass defines
``neuronal_charge(x)`` (update ``self.v``); each step then fires S = surrogate(V - v_threshold) and resets
(hard to v_reset, or soft by v_threshold when v_reset is None). V starts at 0 (a number until the first
step); multi-step mode loops the single step over time, unless the hooks compile (fastspike/neuron/_hook_kernels.py):
then both modes run the generated fused kernels. No v_seq.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import surrogate
from ..base import MemoryModule
from ._hook_kernels import hook_kernel, run_hook_kernel
from .dynamics import reset_voltage
from .node import BaseNode
from .nonspiking import NonSpikingBaseNode

__all__ = ["BaseNode", "NonSpikingBaseNode", "SimpleBaseNode"]


class SimpleBaseNode(MemoryModule):
    """Charge (defined by the subclass), fire, reset; state ``v`` (initially 0.0)."""

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode: str = "s"):
        super().__init__()
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.surrogate_function = surrogate_function
        self.detach_reset = detach_reset
        self.step_mode = step_mode
        self.register_memory("v", 0.0)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define neuronal_charge(x) (update self.v from x).")

    def neuronal_fire(self) -> torch.Tensor:
        return self.surrogate_function(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        self.v = reset_voltage(self.v, spike, self.v_threshold, self.v_reset, self.detach_reset)

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name not in self.__dict__.get("_memories", ()):  # the configuration changed: trace the hooks again
            self.__dict__.pop("_hook_kernel_cache", None)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        hooks = hook_kernel(self, x) if isinstance(x, torch.Tensor) else None
        ran = run_hook_kernel(self, hooks, x.unsqueeze(0)) if hooks is not None else None
        if ran is not None:
            return ran[0][0]
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        hooks = hook_kernel(self, x_seq) if isinstance(x_seq, torch.Tensor) and x_seq.ndim > 0 else None
        ran = run_hook_kernel(self, hooks, x_seq) if hooks is not None else None
        if ran is not None:
            return ran[0]
        return torch.stack([self.single_step_forward(x) for x in x_seq])

    def extra_repr(self) -> str:
        return (f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
                f"step_mode={self.step_mode}")
