"""``compile_neuron``: a step function traced once, run as a fused multi-step forward and backward.

``CompiledNeuron(inputs, states, params)`` runs the neuron over T steps and returns ``(outputs, final_states,
state_seqs)``; the kernels run as the custom ops of kernel_op.py (``fastspike::compiled_<hash>_cpp`` /
``_triton``, registered when the neuron is created, so torch.compile traces them without a graph break) or, with
``backend='torch'`` (and for float64, or a device no kernel serves), ``reference`` runs (the step function in a
Python loop, differentiated by autograd: the oracle of the tests).
"""
from __future__ import annotations

import inspect
import os
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..ops import _backend
from . import cpp, triton_gen
from .autodiff import backward
from .kernel_op import neuron_op
from .tracer import trace

__all__ = ["CompiledNeuron", "compile_neuron"]

_BACKENDS = ("auto", "torch", "cpp", "triton")


def _count_inputs(fn: Callable, num_states: int, num_params: int) -> int:
    params = tuple(inspect.signature(fn).parameters.values())
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        raise TypeError("compile_neuron: step_fn cannot take *args; name its inputs, states and parameters.")
    positional = sum(p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                     for p in params)
    count = positional - num_states - num_params
    if count <= 0:
        raise ValueError(f"compile_neuron: step_fn takes {positional} positional arguments, which leaves no step "
                         f"input besides num_states={num_states} states and num_params={num_params} parameters.")
    return count


def _broadcasts(shape, step) -> bool:
    try:
        return torch.broadcast_shapes(shape, step) == step
    except RuntimeError:
        return False


class CompiledNeuron:
    """A neuron step function ``step_fn(*inputs, *states, *params) -> (*outputs, *new_states)`` traced into the
    IR, with its generated kernels (built on first use per backend and parameter layout, cached on disk)."""

    def __init__(self, step_fn: Callable, num_states: int, num_params: int = 0,
                 num_inputs: Optional[int] = None) -> None:
        if not callable(step_fn):
            raise TypeError(f"compile_neuron: step_fn must be callable, but got {type(step_fn).__name__}.")
        for name, value in (("num_states", num_states), ("num_params", num_params)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"compile_neuron: {name} must be a non-negative integer, but got {value!r}.")
        self.step_fn = step_fn
        self.num_inputs = _count_inputs(step_fn, num_states, num_params) if num_inputs is None else num_inputs
        self.graph = trace(step_fn, self.num_inputs, num_states, num_params)
        self.grads = backward(self.graph)
        #: the structure's hash, computed once: what names its custom ops
        self.key = self.graph.key()
        # the custom ops, registered now (not at the first call, which torch.compile may be tracing)
        self._ops: Dict[str, object] = {"cpp": neuron_op(self.graph, self.grads, "cpp", self.key)}
        if _backend.triton_available():
            self._ops["triton"] = neuron_op(self.graph, self.grads, "triton", self.key)

    def __deepcopy__(self, memo) -> "CompiledNeuron":
        return self  # immutable (a traced graph, its registered ops and their kernels): copies of a model share it

    def __reduce__(self):
        # pickled as its step function (which must be picklable), traced again where it is loaded
        return (compile_neuron, (self.step_fn, self.num_states, self.graph.num_params, self.num_inputs))

    @property
    def num_states(self) -> int:
        return self.graph.num_states

    @property
    def num_outputs(self) -> int:
        return self.graph.num_outputs

    def source(self, backend: str, scalar_params: Tuple[bool, ...]) -> str:
        """The generated C++ ('cpp') or Triton ('triton') source for this parameter layout."""
        gen = cpp.generate if backend == "cpp" else triton_gen.generate
        return gen(self.graph, self.grads, scalar_params)

    def op(self, backend: str):
        """The registered op (fastspike/ops/_contract.Op) of this neuron on 'cpp' or 'triton'."""
        found = self._ops.get(backend)
        if found is None:
            found = self._ops[backend] = neuron_op(self.graph, self.grads, backend, self.key)
        return found

    # -- calling ----------------------------------------------------------------------------------
    def _prepare(self, inputs, states, params):
        inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        states = (states,) if isinstance(states, (torch.Tensor, int, float)) else tuple(states)
        params = (params,) if isinstance(params, torch.Tensor) else tuple(params)
        counts = (("inputs", inputs, self.num_inputs), ("states", states, self.num_states),
                  ("params", params, self.graph.num_params))
        for name, values, count in counts:
            if len(values) != count:
                raise ValueError(f"the compiled neuron takes {count} {name}, but got {len(values)}.")
        for x in inputs:
            if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 1:
                got = (x.dtype, tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__
                raise TypeError(f"inputs must be floating-point tensors [T, *], but got {got}.")
            if x.shape != inputs[0].shape:
                raise ValueError(f"every input must have the shape {tuple(inputs[0].shape)}, but got {tuple(x.shape)}.")
        step = inputs[0].shape[1:]
        fixed = []
        for s in states:
            if isinstance(s, (int, float)) and not isinstance(s, bool):
                s = float(s)
            elif not isinstance(s, torch.Tensor) or s.shape != step:
                raise ValueError(f"states must be numbers or tensors of shape {tuple(step)} (an input without T), "
                                 f"but got {tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}. "
                                 "If the batch size changed, call functional.reset_net(net).")
            fixed.append(s)
        for p in params:
            if not isinstance(p, torch.Tensor) or not (p.numel() == 1 or p.shape == step or _broadcasts(p.shape, step)):
                raise ValueError(f"params must be tensors of one element or broadcastable to {tuple(step)}, but got "
                                 f"{tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__}.")
        return inputs, tuple(fixed), params

    @staticmethod
    def _state_tensors(states, ref: torch.Tensor) -> tuple:
        """States given as numbers, as tensors shaped like one step of ``ref`` [T, *]."""
        return tuple(torch.full(ref.shape[1:], s, dtype=ref.dtype, device=ref.device) if isinstance(s, float) else s
                     for s in states)

    def reference(self, inputs, states, params=(), store_state_seqs: bool = False):
        """The step function in a Python loop over time (autograd differentiates it)."""
        inputs, states, params = self._prepare(inputs, states, params)
        states = self._state_tensors(states, inputs[0])
        NO = self.num_outputs
        outs: List[List[torch.Tensor]] = [[] for _ in range(NO)]
        seqs: List[List[torch.Tensor]] = [[] for _ in states]
        for t in range(inputs[0].shape[0]):
            ret = self.step_fn(*(x[t] for x in inputs), *states, *params)
            ret = (ret,) if isinstance(ret, torch.Tensor) else tuple(ret)
            for seq, value in zip(outs, ret[:NO]):
                seq.append(value)
            states = tuple(ret[NO:])
            for seq, value in zip(seqs, states):
                seq.append(value)
        state_seqs = tuple(torch.stack(s) for s in seqs) if store_state_seqs else None
        return tuple(torch.stack(s) for s in outs), states, state_seqs

    def __call__(self, inputs, states, params=(), *, store_state_seqs: bool = False,
                 backend: Optional[str] = None):
        """Run T steps: ``inputs`` [T, *] (a tensor or a tuple), ``states`` [*] or numbers, ``params`` tensors of one
        element or broadcastable to [*]. Returns (outputs [T, *] tuple, final states tuple, state sequences or None).
        ``backend``: 'auto' (default: triton on CUDA, cpp on the CPU, torch for float64), 'torch', 'cpp', 'triton'."""
        backend = "auto" if backend is None else backend
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, but got {backend!r}.")
        inputs, states, params = self._prepare(inputs, states, params)
        x0 = inputs[0]
        if backend == "auto":
            backend = "torch" if x0.dtype == torch.float64 or x0.numel() == 0 else ("triton" if x0.is_cuda else "cpp")
        if backend == "torch":
            return self.reference(inputs, states, params, store_state_seqs)
        if backend == "cpp" and x0.device.type != "cpu":
            raise ValueError(f"backend='cpp' runs on CPU tensors, but the inputs are on {x0.device}.")
        if backend == "triton" and not (x0.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
            raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors).")
        step = x0.shape[1:]
        xs = [x if x.dtype is torch.float32 else x.float() for x in inputs]
        # a state given as a number reaches the kernels as that number (no tensor): a null state pointer there
        ss = [None if isinstance(s, float) else (s if s.dtype is torch.float32 else s.float()) for s in states]
        vs = [s if isinstance(s, float) else 0.0 for s in states]
        ps = [(p.reshape(1) if p.ndim != 1 else p) if p.numel() == 1 else (p if p.shape == step else p.expand(step))
              for p in params]
        ps = [p if p.dtype is torch.float32 else p.float() for p in ps]
        needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (*xs, *ss, *ps))
        res = self.op(backend)(*xs, *ss, *ps, *vs, store_state_seqs, needs_grad)
        NO, NS = self.num_outputs, self.num_states
        dtype = x0.dtype
        if dtype is torch.float32:
            return tuple(res[:NO]), tuple(res[NO:NO + NS]), (tuple(res[NO + NS:]) if store_state_seqs else None)
        outputs = tuple(y.to(dtype) for y in res[:NO])
        finals = tuple(s.to(dtype) for s in res[NO:NO + NS])
        seqs = tuple(q.to(dtype) for q in res[NO + NS:]) if store_state_seqs else None
        return outputs, finals, seqs


def compile_neuron(step_fn: Callable, num_states: int, num_params: int = 0,
                   num_inputs: Optional[int] = None) -> CompiledNeuron:
    """Trace ``step_fn(*inputs, *states, *params) -> (*outputs, *new_states)`` (a single value when it returns one)
    and return a :class:`CompiledNeuron`. The number of inputs defaults to step_fn's positional arguments minus the
    states and parameters. Raises NeuronTraceError, naming the line, on a construct it cannot compile."""
    return CompiledNeuron(step_fn, num_states, num_params, num_inputs)

