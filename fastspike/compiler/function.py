"""``compile_neuron``: a step function traced once, run as a fused multi-step forward and backward.

``CompiledNeuron(inputs, states, params)`` runs the neuron over T steps and returns ``(outputs, final_states,
state_seqs)``; autograd goes through ``_FusedNeuron`` (generated kernels forward and backward) or, with
``backend='torch'`` (and for float64, or a device no kernel serves), through ``reference`` (the step function in a
Python loop, differentiated by autograd: the oracle of the tests).
"""
from __future__ import annotations

import ctypes
import inspect
import os
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..ops import _alloc
from . import cpp, triton_gen
from .autodiff import backward
from .tracer import trace

__all__ = ["CompiledNeuron", "compile_neuron"]

TRITON_BLOCK = 256
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


def _empty(like: torch.Tensor, *shape: int) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.float32, device=like.device)


class _CppRunner:
    def __init__(self, lib) -> None:
        self.lib = lib

    @staticmethod
    def _ptrs(tensors: Sequence[torch.Tensor]):
        return (ctypes.c_void_p * max(1, len(tensors)))(*[t.data_ptr() for t in tensors])

    def forward(self, g, xs, s0, ps, store_seq: bool, T: int, N: int):
        ys = [_alloc.empty((T, N)) for _ in range(g.num_outputs)]
        st = [_empty(xs[0], N) for _ in range(g.num_states)]
        qs = [_alloc.empty((T, N)) for _ in range(g.num_states)] if store_seq else []
        rc = self.lib.fs_forward(self._ptrs([*xs, *s0, *ps]), self._ptrs([*ys, *st, *qs]), T, N,
                                 torch.get_num_threads(), int(store_seq))
        if rc:
            raise MemoryError("the generated neuron forward kernel failed (out of memory?).")
        return ys, st, qs

    def backward(self, g, xs, s0, ps, qs, gys, gts, gqs, T: int, N: int):
        gx = [_alloc.empty((T, N)) for _ in xs]
        gs = [_empty(xs[0], N) for _ in s0]
        gp = [_empty(xs[0], N) for _ in ps]
        rc = self.lib.fs_backward(self._ptrs([*xs, *s0, *ps]), self._ptrs([*gys, *gts, *gqs]),
                                  self._ptrs([*gx, *gs, *gp]), T, N, torch.get_num_threads(), int(bool(gqs)))
        if rc:
            raise MemoryError("the generated neuron backward kernel failed to allocate its state buffer.")
        return gx, gs, gp


class _TritonRunner:
    saves_states = True

    def __init__(self, module) -> None:
        self.module = module

    def forward(self, g, xs, s0, ps, store_seq: bool, T: int, N: int):
        ys = [_empty(xs[0], T, N) for _ in range(g.num_outputs)]
        st = [_empty(xs[0], N) for _ in range(g.num_states)]
        qs = [_empty(xs[0], T, N) for _ in range(g.num_states)] if store_seq else []
        dummy = [_empty(xs[0], 1)] * g.num_states
        grid = ((N + TRITON_BLOCK - 1) // TRITON_BLOCK,)
        self.module.fs_forward[grid](*xs, *s0, *ps, *ys, *st, *(qs or dummy), T, N, BLOCK=TRITON_BLOCK,
                                     STORE_SEQ=store_seq)
        return ys, st, qs

    def backward(self, g, xs, s0, ps, qs, gys, gts, gqs, T: int, N: int):
        gx = [_empty(xs[0], T, N) for _ in xs]
        gs = [_empty(xs[0], N) for _ in s0]
        gp = [_empty(xs[0], N) for _ in ps]
        grid = ((N + TRITON_BLOCK - 1) // TRITON_BLOCK,)
        dummy = [_empty(xs[0], 1)] * g.num_states
        self.module.fs_backward[grid](*xs, *s0, *ps, *qs, *gys, *gts, *(gqs or dummy), *gx, *gs, *gp, T, N,
                                      (T - 1) * N, BLOCK=TRITON_BLOCK, HAS_SEQ=bool(gqs))
        return gx, gs, gp


class _FusedNeuron(torch.autograd.Function):
    """Inputs [T, N], states [N], parameters [1] or [N], all float32 contiguous; see CompiledNeuron."""

    @staticmethod
    def forward(ctx, neuron, runner, store_seq, needs_grad, *tensors):
        g = neuron.graph
        NI, NS = g.num_inputs, g.num_states
        xs, s0, ps = tensors[:NI], tensors[NI:NI + NS], tensors[NI + NS:]
        T, N = xs[0].shape
        save_states = isinstance(runner, _TritonRunner) and needs_grad
        ys, st, qs = runner.forward(g, xs, s0, ps, store_seq or save_states, T, N)
        ctx.runner, ctx.neuron, ctx.store_seq = runner, neuron, store_seq
        ctx.save_for_backward(*tensors, *(qs if save_states else ()))
        return (*ys, *st, *(qs if store_seq else ()))

    @staticmethod
    def backward(ctx, *grads):
        g = ctx.neuron.graph
        NI, NS, NP, NO = g.num_inputs, g.num_states, g.num_params, g.num_outputs
        saved = ctx.saved_tensors
        xs, s0, ps, qs = saved[:NI], saved[NI:NI + NS], saved[NI + NS:NI + NS + NP], saved[NI + NS + NP:]
        T, N = xs[0].shape

        def fill(grad, shape):
            return xs[0].new_zeros(shape) if grad is None else grad.float().contiguous()

        gys = [fill(gr, (T, N)) for gr in grads[:NO]]
        gts = [fill(gr, (N,)) for gr in grads[NO:NO + NS]]
        seq_grads = grads[NO + NS:] if ctx.store_seq else ()
        gqs = [fill(gr, (T, N)) for gr in seq_grads] if any(gr is not None for gr in seq_grads) else []
        gx, gs, gp = ctx.runner.backward(g, xs, s0, ps, qs, gys, gts, gqs, T, N)
        gp = [gr.sum().reshape(1) if p.numel() == 1 else gr for gr, p in zip(gp, ps)]
        return (None, None, None, None, *gx, *gs, *gp)


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
        self._runners = {}

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

    def runner(self, backend: str, scalar_params: Tuple[bool, ...]):
        key = (backend, scalar_params)
        if key not in self._runners:
            src = self.source(backend, scalar_params)
            self._runners[key] = _CppRunner(cpp.load(src)) if backend == "cpp" else _TritonRunner(triton_gen.load(src))
        return self._runners[key]

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
        ref = inputs[0]
        fixed = []
        for s in states:
            if isinstance(s, (int, float)) and not isinstance(s, bool):
                s = torch.full(step, float(s), dtype=ref.dtype, device=ref.device)
            if not isinstance(s, torch.Tensor) or s.shape != step:
                raise ValueError(f"states must be numbers or tensors of shape {tuple(step)} (an input without T), "
                                 f"but got {tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__}. "
                                 "If the batch size changed, call functional.reset_net(net).")
            fixed.append(s)
        for p in params:
            if not isinstance(p, torch.Tensor) or not _broadcasts(p.shape, step):
                raise ValueError(f"params must be tensors of one element or broadcastable to {tuple(step)}, but got "
                                 f"{tuple(p.shape) if isinstance(p, torch.Tensor) else type(p).__name__}.")
        return inputs, tuple(fixed), params

    def reference(self, inputs, states, params=(), store_state_seqs: bool = False):
        """The step function in a Python loop over time (autograd differentiates it)."""
        inputs, states, params = self._prepare(inputs, states, params)
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
        T, step = x0.shape[0], x0.shape[1:]
        N = step.numel()
        xs = [x.reshape(T, N).float().contiguous() for x in inputs]
        s0 = [s.reshape(N).float().contiguous() for s in states]
        ps = [p.reshape(1).float() if p.numel() == 1 else p.expand(step).reshape(N).float().contiguous()
              for p in params]
        runner = self.runner(backend, tuple(p.numel() == 1 for p in ps))
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (*xs, *s0, *ps))
        res = _FusedNeuron.apply(self, runner, store_state_seqs, needs_grad, *xs, *s0, *ps)
        NO, NS = self.num_outputs, self.num_states
        dtype = x0.dtype
        outputs = tuple(y.reshape(T, *step).to(dtype) for y in res[:NO])
        finals = tuple(s.reshape(step).to(dtype) for s in res[NO:NO + NS])
        seqs = tuple(q.reshape(T, *step).to(dtype) for q in res[NO + NS:]) if store_state_seqs else None
        return outputs, finals, seqs


def compile_neuron(step_fn: Callable, num_states: int, num_params: int = 0,
                   num_inputs: Optional[int] = None) -> CompiledNeuron:
    """Trace ``step_fn(*inputs, *states, *params) -> (*outputs, *new_states)`` (a single value when it returns one)
    and return a :class:`CompiledNeuron`. The number of inputs defaults to step_fn's positional arguments minus the
    states and parameters. Raises NeuronTraceError, naming the line, on a construct it cannot compile."""
    return CompiledNeuron(step_fn, num_states, num_params, num_inputs)

