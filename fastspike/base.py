"""Step modes and stateful modules (SpikingJelly's ``activation_based.base`` semantics).

A ``MemoryModule`` keeps named state ("memories", e.g. the membrane potential ``v``) that persists
between calls until ``reset()``; memories read and write like attributes but are not parameters or
buffers, so they never appear in ``state_dict``.
"""
from __future__ import annotations

import copy
from typing import Iterator, Tuple

import torch
import torch.nn as nn

__all__ = ["StepModule", "SingleStepModule", "MultiStepModule", "MemoryModule", "BackendMixin"]


class StepModule:
    """A module that runs one time step ('s', input [N, *]) or a whole sequence ('m', input [T, N, *])."""

    def supported_step_mode(self) -> Tuple[str, ...]:
        return ("s", "m")

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value not in self.supported_step_mode():
            raise ValueError(f"step_mode must be one of {self.supported_step_mode()}, but got {value!r}.")
        self._step_mode = value


class SingleStepModule(StepModule):
    def supported_step_mode(self):
        return ("s",)


class MultiStepModule(StepModule):
    def supported_step_mode(self):
        return ("m",)


class MemoryModule(nn.Module, StepModule):
    def __init__(self):
        super().__init__()
        self._memories = {}
        self._memories_rv = {}
        self._step_mode = "s"

    # -- memories ---------------------------------------------------------------------------------
    def register_memory(self, name: str, value) -> None:
        if hasattr(self, name) and name not in self._memories:
            raise AttributeError(f"{name!r} is already an attribute of {type(self).__name__}; pick another memory name.")
        self._memories[name] = value
        self.set_reset_value(name, value)

    def set_reset_value(self, name: str, value) -> None:
        self._memories_rv[name] = copy.deepcopy(value)

    def reset(self) -> None:
        """Restore every memory to its registered initial value (call between independent sequences)."""
        memories = self._memories
        for key, value in self._memories_rv.items():
            # numbers and None are immutable: only containers and tensors need a fresh copy
            memories[key] = value if value is None or type(value) in (float, int, bool) else copy.deepcopy(value)

    def detach(self) -> None:
        """Cut the autograd history of the state (truncated BPTT) without changing its value."""
        for key, value in self._memories.items():
            if isinstance(value, torch.Tensor):
                self._memories[key] = value.detach()

    def memories(self) -> Iterator:
        yield from self._memories.values()

    def named_memories(self) -> Iterator:
        yield from self._memories.items()

    def __getattr__(self, name: str):
        memories = self.__dict__.get("_memories")
        if memories is not None and name in memories:
            return memories[name]
        return super().__getattr__(name)

    def __setattr__(self, name: str, value) -> None:
        memories = self.__dict__.get("_memories")
        if memories is not None and name in memories:
            memories[name] = value
        else:
            super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in self._memories:
            del self._memories[name]
            del self._memories_rv[name]
        else:
            super().__delattr__(name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._memories))

    def _apply(self, fn, *args, **kwargs):
        for store in (self._memories, self._memories_rv):
            for key, value in store.items():
                if isinstance(value, torch.Tensor):
                    store[key] = fn(value)
        return super()._apply(fn, *args, **kwargs)

    def _replicate_for_data_parallel(self):
        replica = super()._replicate_for_data_parallel()
        replica._memories = self._memories.copy()
        return replica

    # -- step modes -------------------------------------------------------------------------------
    def single_step_forward(self, x: torch.Tensor, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement single_step_forward")

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        """Default: loop over time calling single_step_forward (subclasses override with fused kernels)."""
        return torch.stack([self.single_step_forward(x, *args, **kwargs) for x in x_seq])

    def forward(self, *args, **kwargs):
        if self.step_mode == "s":
            return self.single_step_forward(*args, **kwargs)
        return self.multi_step_forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"step_mode={self.step_mode}"


class BackendMixin:
    """A ``backend`` attribute ('auto', 'torch', 'triton' or 'cpp'), validated on assignment."""

    @property
    def backend(self) -> str:
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        from .ops._backend import check_backend_name

        check_backend_name(value)
        self._backend = value
