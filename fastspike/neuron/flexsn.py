"""User-defined neurons from a step function (SpikingJelly 2.0's ``neuron.flexsn``).

``FlexSN(core, num_states, static_inputs=(), step_mode='m', store_state_seqs=False)``: ``core`` is a pure
function of one time step, ``core(*inputs, *states, *static_inputs) -> (*outputs, *new_states)`` (a single
tensor when it returns one value), written with torch operations (spikes through a surrogate function).
Inputs are [N, *] per step ([T, N, *] in multi-step mode); states start at zero and persist between calls
until ``reset()``; ``static_inputs`` are tensors (parameters are learnable) of one element or of one step's
size. The number of inputs comes from core's signature, the number of outputs from one trial call at
construction.

This version runs ``core`` step by step in PyTorch on every device (autograd gives the backward through
time); SpikingJelly additionally lowers it to a Triton kernel on CUDA, which fastspike's neuron compiler is
to provide. ``core`` must not capture tensors or modules (pass them as static inputs), so that it can be
traced and compiled.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable, Optional, Tuple

import torch
import torch.nn as nn

from ..base import MemoryModule

__all__ = ["FlexSN"]


def _as_tuple(value) -> tuple:
    return (value,) if isinstance(value, torch.Tensor) else tuple(value)


def _holds_tensor(value) -> bool:
    if isinstance(value, (torch.Tensor, nn.Module)):
        return True
    if isinstance(value, functools.partial):
        return _holds_tensor(value.func) or _holds_tensor(value.args) or _holds_tensor(value.keywords)
    if isinstance(value, dict):
        return any(_holds_tensor(v) for v in value.values())
    if isinstance(value, (tuple, list)):
        return any(_holds_tensor(v) for v in value)
    return False


def _check_pure(core: Callable) -> None:
    if isinstance(core, nn.Module):
        raise TypeError("FlexSN core must be a pure callable. Pass tensor parameters through static_inputs "
                        "instead of capturing an nn.Module.")
    if isinstance(core, functools.partial) and _holds_tensor(core):
        raise TypeError("FlexSN core cannot capture tensor-valued partial arguments; pass them through "
                        "static_inputs.")
    while isinstance(core, functools.partial):
        core = core.func
    for cell in getattr(core, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if _holds_tensor(value):
            raise TypeError("FlexSN core cannot capture tensors or modules; pass tensor values through "
                            "static_inputs.")


def _count_inputs(core: Callable, num_states: int, num_static: int) -> int:
    params = tuple(inspect.signature(core).parameters.values())
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        raise TypeError("FlexSN core cannot use variadic positional arguments.")
    positional = sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                     for p in params)
    num_inputs = positional - num_states - num_static
    if num_inputs <= 0:
        raise ValueError(f"FlexSN core must accept at least one step input: it takes {positional} positional "
                         f"arguments for {num_states} states and {num_static} static inputs.")
    return num_inputs


class FlexSN(MemoryModule):
    """A neuron defined by a step function ``core`` (see the module docstring)."""

    def __init__(self, core: Callable, num_states: int, static_inputs: Tuple[torch.Tensor, ...] = (),
                 step_mode: str = "m", store_state_seqs: bool = False) -> None:
        super().__init__()
        if not callable(core):
            raise TypeError(f"FlexSN core must be callable, but got {type(core).__name__}.")
        if isinstance(num_states, bool) or not isinstance(num_states, int) or num_states < 0:
            raise ValueError(f"FlexSN num_states must be a non-negative integer, but got {num_states!r}.")
        _check_pure(core)
        self.core = core
        self.num_states = num_states
        static_inputs = tuple(static_inputs)
        self._static_input_names = tuple(f"_static_input_{i}" for i in range(len(static_inputs)))
        for name, tensor in zip(self._static_input_names, static_inputs):
            if isinstance(tensor, nn.Parameter):
                self.register_parameter(name, tensor)
            elif isinstance(tensor, torch.Tensor):
                self.register_buffer(name, tensor)
            else:
                raise TypeError(f"FlexSN static_inputs must contain tensors, but got {type(tensor).__name__}.")
        self._state_names = tuple(f"_state_{i}" for i in range(num_states))
        for name in self._state_names:
            self.register_memory(name, None)
        self._num_inputs = _count_inputs(core, num_states, len(static_inputs))
        self._num_outputs: Optional[int] = None
        self.state_seqs = None
        self._store_state_seqs = bool(store_state_seqs)
        self._infer_output_arity()
        self.step_mode = step_mode

    # -- attributes -------------------------------------------------------------------------------
    @property
    def static_inputs(self) -> Tuple[torch.Tensor, ...]:
        return tuple(getattr(self, name) for name in self._static_input_names)

    @property
    def states(self) -> tuple:
        return tuple(self._memories[name] for name in self._state_names)

    @states.setter
    def states(self, values) -> None:
        values = tuple(values)
        if len(values) != self.num_states:
            raise ValueError(f"FlexSN expected {self.num_states} states, but got {len(values)}.")
        for name, value in zip(self._state_names, values):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"FlexSN states must be tensors, but got {type(value).__name__}.")
            self._memories[name] = value

    @property
    def store_state_seqs(self) -> bool:
        return self._store_state_seqs

    @store_state_seqs.setter
    def store_state_seqs(self, value: bool) -> None:
        self._store_state_seqs = bool(value)
        self.state_seqs = None

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, value: str) -> None:
        if value not in ("s", "m"):
            raise ValueError(f"Unsupported FlexSN step_mode: {value!r} (expected 's' or 'm').")
        self._step_mode = value
        self.state_seqs = None

    def reset(self) -> None:
        super().reset()
        self.state_seqs = None

    def extra_repr(self) -> str:
        core = self.core.func if isinstance(self.core, functools.partial) else self.core
        name = getattr(core, "__name__", type(core).__name__)
        if isinstance(self.core, functools.partial):
            name = f"partial({name})"
        return (f"core={name}, num_states={self.num_states}, num_static_inputs={len(self._static_input_names)}, "
                f"step_mode={self.step_mode!r}")

    # -- states and checks ------------------------------------------------------------------------
    @staticmethod
    def init_states(num_states: int, step_mode: str, *inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Zero states shaped like one step of the first input."""
        if not inputs:
            raise ValueError("FlexSN requires at least one input tensor.")
        if step_mode == "m" and inputs[0].dim() == 0:
            raise ValueError("FlexSN multi-step inputs must have a time dimension.")
        if step_mode == "m" and inputs[0].shape[0] == 0:
            raise ValueError("FlexSN does not support empty multi-step inputs.")
        ref = inputs[0] if step_mode == "s" else inputs[0][0]
        return tuple(torch.zeros_like(ref) for _ in range(num_states))

    def materialize_states(self, inputs, states, step_mode):
        if len(states) != self.num_states:
            raise ValueError(f"FlexSN expected {self.num_states} states, but got {len(states)}.")
        if any(s is None for s in states):
            return self.init_states(self.num_states, step_mode, *inputs)
        return states

    def _infer_output_arity(self) -> None:
        statics = self.static_inputs
        ref = torch.zeros(1, dtype=statics[0].dtype if statics else torch.float32,
                          device=statics[0].device if statics else torch.device("cpu"))
        try:
            returns = self.core(*(ref for _ in range(self._num_inputs + self.num_states)), *(ref for _ in statics))
        except Exception as error:
            raise RuntimeError("FlexSN core must run with construction-time unit tensors to infer its output "
                               f"arity; calling it failed with {type(error).__name__}: {error}") from error
        returns = _as_tuple(returns)
        if len(returns) < self.num_states:
            raise ValueError(f"FlexSN core returned {len(returns)} tensors, fewer than num_states={self.num_states}.")
        self._num_outputs = len(returns) - self.num_states
        self._split_returns(returns, ref)

    def _validate_operands(self, inputs, states, static_inputs, step_mode: str) -> torch.Tensor:
        if not inputs:
            raise ValueError("FlexSN requires at least one input tensor.")
        if len(states) != self.num_states:
            raise ValueError(f"FlexSN expected {self.num_states} states, but got {len(states)}.")
        if len(static_inputs) != len(self._static_input_names):
            raise ValueError(f"FlexSN expected {len(self._static_input_names)} static inputs, but got "
                             f"{len(static_inputs)}.")
        if any(not isinstance(t, torch.Tensor) for t in (*inputs, *states, *static_inputs)):
            raise TypeError("FlexSN inputs, states, and static_inputs must be tensors.")
        if step_mode == "m":
            if any(t.dim() == 0 for t in inputs):
                raise ValueError("FlexSN multi-step inputs must have a time dimension.")
            T = inputs[0].shape[0]
            if T == 0:
                raise ValueError("FlexSN does not support empty multi-step inputs.")
            if any(t.shape[0] != T for t in inputs):
                raise ValueError(f"FlexSN input sequences must share the same T, but got "
                                 f"{[t.shape[0] for t in inputs]}.")
            step_inputs = tuple(t[0] for t in inputs)
        else:
            step_inputs = tuple(inputs)
        ref = step_inputs[0]
        for t in (*step_inputs, *states):
            if t.numel() != ref.numel() or t.dtype != ref.dtype or t.device != ref.device:
                raise ValueError("FlexSN inputs and states must share per-step numel, dtype, and device.")
        for t in static_inputs:
            if t.numel() not in (1, ref.numel()) or t.dtype != ref.dtype or t.device != ref.device:
                raise ValueError("FlexSN static inputs must be scalar or match the per-step numel, dtype, and "
                                 "device.")
        if len(inputs) != self._num_inputs:
            raise ValueError(f"FlexSN core interface expects {self._num_inputs} inputs, but got {len(inputs)}.")
        return ref

    def _split_returns(self, returns, ref: torch.Tensor):
        returns = _as_tuple(returns)
        if len(returns) < self.num_states:
            raise ValueError(f"FlexSN core returned {len(returns)} tensors, fewer than num_states={self.num_states}.")
        num_outputs = len(returns) - self.num_states
        if num_outputs != self._num_outputs:
            raise ValueError(f"FlexSN core interface expects {self._num_outputs} outputs, but returned {num_outputs}.")
        if any(not isinstance(t, torch.Tensor) for t in returns):
            raise TypeError("FlexSN core must return tensors.")
        for t in returns:
            if t.numel() != ref.numel() or t.dtype != ref.dtype or t.device != ref.device:
                raise ValueError("FlexSN outputs and updated states must match the per-step numel, dtype, and device.")
        return returns[:num_outputs], returns[num_outputs:]

    # -- execution --------------------------------------------------------------------------------
    def _core_step(self, inputs, states, static_inputs):
        ref = self._validate_operands(inputs, states, static_inputs, "s")
        return self._split_returns(self.core(*inputs, *states, *static_inputs), ref)

    def _multi_step(self, inputs, states, static_inputs, store_state_seqs: bool):
        """The reference execution: ``core`` once per step (a generated fused kernel replaces this loop)."""
        self._validate_operands(inputs, states, static_inputs, "m")
        output_steps, state_steps = None, None
        for t in range(inputs[0].shape[0]):
            outputs, states = self._core_step(tuple(x[t] for x in inputs), states, static_inputs)
            if output_steps is None:
                output_steps = [[] for _ in outputs]
                state_steps = [[] for _ in states] if store_state_seqs else None
            for seq, value in zip(output_steps, outputs):
                seq.append(value)
            if state_steps is not None:
                for seq, value in zip(state_steps, states):
                    seq.append(value)
        outputs = tuple(torch.stack(seq) for seq in output_steps)
        state_seqs = tuple(torch.stack(seq) for seq in state_steps) if state_steps is not None else None
        return outputs, tuple(states), state_seqs

    def single_step_functional_forward(self, inputs, states, *, static_inputs=None, **kwargs):
        statics = self.static_inputs if static_inputs is None else tuple(static_inputs)
        return self._core_step(tuple(inputs), tuple(states), statics)

    def multi_step_functional_forward(self, inputs, states, *, static_inputs=None, **kwargs):
        statics = self.static_inputs if static_inputs is None else tuple(static_inputs)
        outputs, states, _ = self._multi_step(tuple(inputs), tuple(states), statics, False)
        return outputs, states

    def forward(self, *inputs: torch.Tensor):
        statics = self.static_inputs
        if self.step_mode == "m" and inputs:
            if not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() == 0:
                raise ValueError("FlexSN multi-step inputs must have a time dimension.")
            if inputs[0].shape[0] == 0:
                raise ValueError("FlexSN does not support empty multi-step inputs.")
        states = self.materialize_states(inputs, self.states, self.step_mode)
        if self.step_mode == "s":
            outputs, states = self.single_step_functional_forward(inputs, states, static_inputs=statics)
            self.state_seqs = None
        else:
            outputs, states, self.state_seqs = self._multi_step(inputs, states, statics, self.store_state_seqs)
        self.states = states
        return outputs[0] if len(outputs) == 1 else outputs
