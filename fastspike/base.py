"""Step modes and stateful modules (SpikingJelly 2.0's ``activation_based.base`` semantics).

A ``MemoryModule`` keeps named state ("memories", e.g. the membrane potential ``v``) that persists
between calls until ``reset()``; memories read and write like attributes but are not parameters or
buffers, so they never appear in ``state_dict``.

The functional-state API of SpikingJelly 2.0 runs a module on explicit states instead of its memories:
``module.functional_forward(inputs, states) -> (outputs, new_states)`` (the order of ``states`` is the
order in which the memories were registered) leaves the module's memories untouched. A module defines
``single_step_functional_forward`` (and optionally a faster ``multi_step_functional_forward``); its
stateful ``forward`` is then built on them. Modules written the older way (``single_step_forward`` only)
get a functional form too: their memories are swapped for the given states for the duration of the call.
The module-level ``named_memories`` / ``extract_memories`` / ``load_memories`` / ``to_functional_forward``
do the same for whole networks.
"""
from __future__ import annotations

import copy
from typing import Callable, Iterator, Optional, Tuple

import torch
import torch.nn as nn

__all__ = ["StepModule", "SingleStepModule", "MultiStepModule", "MemoryModule", "BackendMixin", "named_memories",
           "memories", "extract_memories", "load_memories", "to_functional_forward"]


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
            raise AttributeError(f"{name!r} is already an attribute of {type(self).__name__}; "
                                 "pick another memory name.")
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

    def get_reset_value(self, name: str):
        """The value memory ``name`` is restored to by ``reset()``."""
        if name not in self._memories:
            raise KeyError(f"{name!r} is not a registered memory of {type(self).__name__} "
                           f"(memories: {list(self._memories)}).")
        if name not in self._memories_rv:
            raise KeyError(f"memory {name!r} of {type(self).__name__} has no reset value; call set_reset_value first.")
        return self._memories_rv[name]

    # -- functional-state API (SpikingJelly 2.0) --------------------------------------------------
    def materialize_states(self, inputs: tuple, states: tuple, step_mode: str) -> tuple:
        """Turn stored states (numbers, None) into the tensors a functional forward takes; ``inputs`` are the
        whole call's inputs ([T, N, *] in step mode 'm'). Must not change the module or ``states``. The
        default returns ``states`` unchanged."""
        return states

    def _stateful_fallback(self, method, inputs: tuple, states: tuple, kwargs: dict):
        """Run the stateful ``method`` with the memories temporarily replaced by ``states``; returns
        (outputs, new_states) and leaves the memories as they were."""
        names = tuple(self._memories)
        if len(states) != len(names):
            raise ValueError(f"{type(self).__name__} has {len(names)} memories {list(names)}, but {len(states)} "
                             "states were given.")
        if self.__dict__.get("_in_stateful_fallback"):
            raise NotImplementedError(f"{type(self).__name__} does not implement single_step_functional_forward.")
        saved = dict(self._memories)
        self.__dict__["_in_stateful_fallback"] = True
        try:
            self._memories.update(zip(names, states))
            out = method(*inputs, **kwargs)
            new_states = tuple(self._memories[n] for n in names)
        finally:
            self._memories.clear()
            self._memories.update(saved)
            self.__dict__["_in_stateful_fallback"] = False
        return (tuple(out) if isinstance(out, (tuple, list)) else (out,)), new_states

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs) -> Tuple[tuple, tuple]:
        """One step on explicit states: returns ``(outputs, new_states)``. Subclasses written in SpikingJelly
        2.0's style override this; for one that only defines ``single_step_forward`` it runs that method
        with its memories swapped for ``states``."""
        if type(self).single_step_forward is not MemoryModule.single_step_forward:
            return self._stateful_fallback(self.single_step_forward, inputs, states, kwargs)
        raise NotImplementedError(f"{type(self).__name__} does not implement single_step_functional_forward.")

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs) -> Tuple[tuple, tuple]:
        """A whole sequence (dimension 0 of each input is time) on explicit states. The default loops
        ``single_step_functional_forward`` over time; modules with a sequence kernel override it."""
        cls = type(self)
        if (cls.single_step_functional_forward is MemoryModule.single_step_functional_forward
                and cls.multi_step_forward is not MemoryModule.multi_step_forward):
            return self._stateful_fallback(self.multi_step_forward, inputs, states, kwargs)
        steps = []
        for t in range(inputs[0].shape[0]):
            outputs, states = self.single_step_functional_forward(tuple(x[t] for x in inputs), states, **kwargs)
            steps.append(outputs)
        return tuple(torch.stack(seq) for seq in zip(*steps)), states

    def functional_forward(self, inputs: tuple, states: tuple, **kwargs) -> Tuple[tuple, tuple]:
        """Run the current step mode on explicit ``states`` (ordered like the memories); returns
        ``(outputs, new_states)`` and changes nothing in the module."""
        if not isinstance(inputs, tuple):
            raise TypeError(f"{type(self).__name__}.functional_forward: inputs must be a tuple of tensors, but got "
                            f"{type(inputs).__name__}.")
        if not isinstance(states, tuple):
            raise TypeError(f"{type(self).__name__}.functional_forward: states must be a tuple, but got "
                            f"{type(states).__name__}.")
        mode = self.step_mode
        states = self.materialize_states(inputs, states, mode)
        if mode == "s":
            return self.single_step_functional_forward(inputs, states, **kwargs)
        return self.multi_step_functional_forward(inputs, states, **kwargs)

    def _store_states(self, states: tuple) -> None:
        names = tuple(self._memories)
        if len(states) != len(names):
            raise ValueError(f"{type(self).__name__}: the functional forward returned {len(states)} states for "
                             f"{len(names)} memories {list(names)}.")
        self._memories.update(zip(names, states))

    # -- step modes -------------------------------------------------------------------------------
    def single_step_forward(self, x: torch.Tensor, *args, **kwargs):
        """One step through ``single_step_functional_forward`` on the stored memories, which it updates."""
        inputs = (x, *args)
        states = self.materialize_states(inputs, tuple(self._memories.values()), "s")
        outputs, states = self.single_step_functional_forward(inputs, states, **kwargs)
        self._store_states(states)
        return outputs[0] if len(outputs) == 1 else outputs

    def multi_step_forward(self, x_seq: torch.Tensor, *args, **kwargs):
        """A sequence through ``multi_step_functional_forward``; a module that defines only
        ``single_step_forward`` (no functional forward) loops that over time instead."""
        cls = type(self)
        if (cls.single_step_functional_forward is MemoryModule.single_step_functional_forward
                and cls.multi_step_functional_forward is MemoryModule.multi_step_functional_forward):
            return torch.stack([self.single_step_forward(x, *args, **kwargs) for x in x_seq])
        inputs = (x_seq, *args)
        states = self.materialize_states(inputs, tuple(self._memories.values()), "m")
        outputs, states = self.multi_step_functional_forward(inputs, states, **kwargs)
        self._store_states(states)
        return outputs[0] if len(outputs) == 1 else outputs

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


# -- whole-network state (SpikingJelly 2.0's base.named_memories ... to_functional_forward) ---------------
def named_memories(module: nn.Module, prefix: str = "") -> Iterator[Tuple[str, object]]:
    """(dotted name, value) of every memory in ``module`` and its children, in module order
    (``"0.v"``, ``"2.v"``, ... for an ``nn.Sequential``)."""
    if isinstance(module, MemoryModule):
        for name, value in module.named_memories():
            yield (f"{prefix}.{name}" if prefix else name), value
    for child_name, child in module.named_children():
        yield from named_memories(child, f"{prefix}.{child_name}" if prefix else child_name)


def memories(module: nn.Module) -> Iterator:
    """The values of :func:`named_memories`."""
    for _, value in named_memories(module):
        yield value


def extract_memories(module: nn.Module) -> list:
    """Every memory of ``module`` (and its children) as a list, in :func:`named_memories` order."""
    return list(memories(module))


def load_memories(module: nn.Module, memory_list) -> None:
    """Write ``memory_list`` (as returned by :func:`extract_memories`) back into ``module``'s memories."""
    names = [name for name, _ in named_memories(module)]
    memory_list = list(memory_list)
    if len(names) != len(memory_list):
        raise ValueError(f"Memory length mismatch: model has {len(names)} memories but list contains "
                         f"{len(memory_list)}.")
    for name, value in zip(names, memory_list):
        *path, leaf = name.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, leaf, value)


def _outputs_tuple(result) -> tuple:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def to_functional_forward(module: nn.Module, fn: Optional[Callable] = None) -> Callable:
    """A function ``f(inputs, states, **kwargs) -> (outputs, new_states)`` that runs ``module`` (or ``fn``,
    a callable using it) on explicit states, ordered as :func:`extract_memories`, leaving the module's own
    memories unchanged.

    A single stateful module calls its ``functional_forward``; an ``nn.Sequential`` whose memories all sit in
    its direct children threads the states through them (keyword arguments go to the first child only, as
    in ``nn.Sequential``); anything else runs ``fn`` (default ``module.forward``) with the memories swapped.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"to_functional_forward: module must be a torch.nn.Module, but got {type(module).__name__}.")
    if fn is not None and not callable(fn):
        raise TypeError(f"to_functional_forward: fn must be callable or None, but got {type(fn).__name__}.")
    stateful = [m for m in module.modules() if isinstance(m, MemoryModule)]
    num_states = sum(len(m._memories) for m in stateful)

    def check(states) -> None:
        if len(states) != num_states:
            raise ValueError(f"{type(module).__name__} expected {num_states} states, but got {len(states)}.")

    if fn is None and isinstance(module, MemoryModule) and len(stateful) == 1:
        def direct_forward(inputs, states, **kwargs):
            check(states)
            return module.functional_forward(tuple(inputs), tuple(states), **kwargs)
        return direct_forward

    plain_sequential = isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward
    if fn is None and plain_sequential:
        children = list(module._modules.values())
        counts = [len(c._memories) if isinstance(c, MemoryModule) else 0 for c in children]
        if sum(counts) == num_states:
            def sequential_forward(inputs, states, **kwargs):
                check(states)
                outputs, new_states, offset = tuple(inputs), [], 0
                for i, (child, count) in enumerate(zip(children, counts)):
                    child_kwargs = kwargs if i == 0 else {}
                    if count:
                        outputs, child_states = child.functional_forward(
                            outputs, tuple(states[offset:offset + count]), **child_kwargs)
                        new_states.extend(child_states)
                        offset += count
                    else:
                        outputs = _outputs_tuple(child(*outputs, **child_kwargs))
                return outputs, tuple(new_states)
            return sequential_forward

    if fn is None and plain_sequential:
        def forward_fn(*inputs, **kwargs):
            outputs = inputs
            for i, child in enumerate(module._modules.values()):
                outputs = _outputs_tuple(child(*outputs, **(kwargs if i == 0 else {})))
            return outputs[0] if len(outputs) == 1 else outputs
    else:
        forward_fn = module.forward if fn is None else fn

    def fallback_forward(inputs, states, **kwargs):
        check(states)
        saved = extract_memories(module)
        load_memories(module, list(states))
        try:
            outputs = _outputs_tuple(forward_fn(*inputs, **kwargs))
            new_states = tuple(extract_memories(module))
        finally:
            load_memories(module, saved)
        return outputs, new_states
    return fallback_forward
