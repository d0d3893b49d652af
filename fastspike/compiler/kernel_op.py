"""The neuron compiler's generated kernels as torch.library custom ops, under the op contract (ops/_contract.py).

One neuron structure (``Graph.key()``, the hash of its step and adjoint IR) gets, per backend, the op pair
``fastspike::compiled_<key>_cpp`` / ``fastspike::compiled_<key>_triton`` (each with ``_backward``), fake
implementations and one autograd formula. It is registered once per process however many CompiledNeuron objects
share the structure (``neuron_op`` is idempotent), when a CompiledNeuron is created, so that torch.compile never
meets an unregistered op. The kernels are built on an op's first call for each parameter layout (which parameters
are scalars): generated C++ compiled once and loaded through ctypes (cpp.py), or generated Triton (triton_gen.py).
Registering needs no compiler.

Forward, all float32: ``(x_0.. [T, *], state_0.. [*] or None, param_0.. [1] or [*], state_0_value.. float,
store_seq: bool, need_grad: bool) -> (outputs [T, *] per output, final states [*], state sequences [T, *])``. A
state given as None starts at its float value in every neuron (the kernels take a null state pointer so). The
sequences are None (an empty tensor through the custom op) unless ``store_seq``, or, for Triton, ``need_grad``
(its backward reads them; the C++ backward recomputes the states).

Backward: ``(x.., state.., param.., state_value.., sequence.. (Triton's saved ones, else None), grad_output..,
grad_final_state.., grad_sequence.. (each None when no gradient reached it), need_state_grads: bool) ->
(grad_x [T, *] per input, grad_state [*] (None for a state given as a value, or when not needed), grad_param [N]
per neuron)``; the formula sums a scalar parameter's gradient.
"""
from __future__ import annotations

import ctypes
import inspect
import threading
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor

from ..ops import _alloc
from ..ops._contract import Op, launcher
from . import cpp, triton_gen
from .ir import Graph

__all__ = ["TRITON_BLOCK", "neuron_op", "op_name"]

TRITON_BLOCK = 256

_REGISTERED: Dict[str, Op] = {}
_LOCK = threading.RLock()


def op_name(key: str, backend: str) -> str:
    """The custom op's name (without the ``fastspike::`` namespace) of the structure ``key`` on ``backend``."""
    return f"compiled_{key}_{backend}"


def neuron_op(graph: Graph, grads, backend: str, key: Optional[str] = None) -> Op:
    """The registered op of this neuron structure on ``backend`` ('cpp' or 'triton'): registered on the first
    request, the same object afterwards. ``key``: ``graph.key()`` when the caller already has it."""
    name = op_name(graph.key() if key is None else key, backend)
    with _LOCK:
        op = _REGISTERED.get(name)
        if op is None:
            op = _REGISTERED[name] = _OpBuilder(graph, grads, backend).build(name)
        return op


def _signature(params, returns: int) -> inspect.Signature:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind, annotation=a) for n, a in params],
                             return_annotation=Tuple[(Tensor,) * returns])


def _typed(fn: Callable, signature: inspect.Signature) -> Callable:
    """``fn(*args)`` with ``signature``: what the custom op's schema is read from."""
    def typed(*args):
        return fn(*args)
    typed.__signature__ = signature
    return typed


def _empty(like: Tensor, shape) -> Tensor:
    return torch.empty(shape, dtype=torch.float32, device=like.device)


def _given(t: Optional[Tensor]) -> bool:
    """Not None and not empty: the registered op passes an absent tensor as an empty one (ops/_contract.py)."""
    return t is not None and t.numel() > 0


def _zeros_for_none(grads, like_shape, ref: Tensor):
    return [g.contiguous() if _given(g) else ref.new_zeros(like_shape) for g in grads]


class _OpBuilder:
    """The launchers, fakes and autograd formula of one neuron structure on one backend."""

    def __init__(self, graph: Graph, grads, backend: str) -> None:
        self.graph, self.grads, self.backend = graph, grads, backend
        self.counts = (graph.num_inputs, graph.num_states, graph.num_params, graph.num_outputs)
        self.kernels: Dict[Tuple[bool, ...], object] = {}
        self.lock = threading.Lock()

    # -- kernels, per parameter layout --------------------------------------------------------------------------
    def kernel(self, params) -> object:
        layout = tuple(p.numel() == 1 for p in params)
        found = self.kernels.get(layout)
        if found is None:
            with self.lock:
                gen, load = (cpp.generate, cpp.load) if self.backend == "cpp" else (triton_gen.generate,
                                                                                      triton_gen.load)
                found = self.kernels[layout] = load(gen(self.graph, self.grads, layout))
        return found

    def split(self, args):
        NI, NS, NP, _ = self.counts
        xs, ss = args[:NI], args[NI:NI + NS]
        ps, vs = args[NI + NS:NI + NS + NP], args[NI + NS + NP:NI + 2 * NS + NP]
        return xs, ss, vs, ps, args[NI + 2 * NS + NP:]

    # -- C++ --------------------------------------------------------------------------------------------------
    @staticmethod
    def _ptrs(tensors):
        return (ctypes.c_void_p * max(1, len(tensors)))(*[None if t is None else t.data_ptr() for t in tensors])

    @staticmethod
    def _floats(values):
        return (ctypes.c_float * max(1, len(values)))(*values)

    def cpp_forward(self, *args):
        xs, ss, vs, ps, (store_seq, _) = self.split(args)
        NO, NS = self.counts[3], self.counts[1]
        xs, ss, ps = [x.contiguous() for x in xs], [_alloc.f32(s) for s in ss], [p.contiguous() for p in ps]
        x0 = xs[0]
        T = x0.shape[0]
        N = x0.numel() // T
        ys = [_alloc.empty(x0.shape) for _ in range(NO)]
        finals = [_empty(x0, x0.shape[1:]) for _ in range(NS)]
        seqs = [_alloc.empty(x0.shape) for _ in range(NS)] if store_seq else []
        rc = self.kernel(ps).fs_forward(self._ptrs([*xs, *ss, *ps]), self._floats(vs),
                                        self._ptrs([*ys, *finals, *seqs]), T, N, torch.get_num_threads(),
                                        int(store_seq))
        if rc:
            raise MemoryError("the generated neuron forward kernel failed (out of memory?).")
        return (*ys, *finals, *(seqs or (None,) * NS))

    def cpp_backward(self, *args):
        xs, ss, vs, ps, rest = self.split(args)
        NI, NS, _, NO = self.counts
        xs, ss, ps = [x.contiguous() for x in xs], [_alloc.f32(s) for s in ss], [p.contiguous() for p in ps]
        gys, gts, gqs, need_gs = rest[NS:NS + NO], rest[NS + NO:2 * NS + NO], rest[2 * NS + NO:3 * NS + NO], rest[-1]
        x0 = xs[0]
        T = x0.shape[0]
        N = x0.numel() // T
        step = x0.shape[1:]
        has_seq = any(_given(g) for g in gqs)
        gys, gts = _zeros_for_none(gys, x0.shape, x0), _zeros_for_none(gts, step, x0)
        gqs = _zeros_for_none(gqs, x0.shape, x0) if has_seq else []
        gx = [_alloc.empty(x0.shape) for _ in range(NI)]
        gs = [_empty(x0, step) if need_gs and s is not None else None for s in ss]
        gp = [_empty(x0, (N,)) for _ in ps]
        rc = self.kernel(ps).fs_backward(self._ptrs([*xs, *ss, *ps]), self._floats(vs),
                                         self._ptrs([*gys, *gts, *gqs]), self._ptrs([*gx, *gs, *gp]), T, N,
                                         torch.get_num_threads(), int(has_seq))
        if rc:
            raise MemoryError("the generated neuron backward kernel failed to allocate its state buffer.")
        return (*gx, *gs, *gp)

    # -- Triton -----------------------------------------------------------------------------------------------
    def triton_forward(self, *args):
        xs, ss, vs, ps, (store_seq, need_grad) = self.split(args)
        NO, NS = self.counts[3], self.counts[1]
        xs, ps = [x.contiguous() for x in xs], [p.contiguous() for p in ps]
        x0 = xs[0]
        T = x0.shape[0]
        N = x0.numel() // T
        keep = store_seq or need_grad
        ys = [_empty(x0, x0.shape) for _ in range(NO)]
        finals = [_empty(x0, x0.shape[1:]) for _ in range(NS)]
        seqs = [_empty(x0, x0.shape) for _ in range(NS)] if keep else []
        dummy = _empty(x0, (1,))
        fn = self.kernel(ps).fs_forward
        launch = launcher(x0)
        fn = fn if launch is None else launch(fn)
        has_s0 = {f"HAS_S0{j}": s is not None for j, s in enumerate(ss)}
        fn[(triton_cdiv(N),)](*xs, *(x0 if s is None else s.contiguous() for s in ss), *vs, *ps, *ys, *finals,
                              *(seqs or [dummy] * NS), T, N, BLOCK=TRITON_BLOCK, STORE_SEQ=keep, **has_s0)
        return (*ys, *finals, *(seqs or (None,) * NS))

    def triton_backward(self, *args):
        xs, ss, vs, ps, rest = self.split(args)
        NI, NS, _, NO = self.counts
        xs, ps = [x.contiguous() for x in xs], [p.contiguous() for p in ps]
        seqs, gys, gts = rest[:NS], rest[NS:NS + NO], rest[NS + NO:2 * NS + NO]
        gqs, need_gs = rest[2 * NS + NO:3 * NS + NO], rest[-1]
        assert NS == 0 or all(q is not None and q.numel() for q in seqs), "the Triton backward reads the states"
        x0 = xs[0]
        T = x0.shape[0]
        N = x0.numel() // T
        step = x0.shape[1:]
        has_seq = any(_given(g) for g in gqs)
        gys, gts = _zeros_for_none(gys, x0.shape, x0), _zeros_for_none(gts, step, x0)
        dummy = _empty(x0, (1,))
        gqs = _zeros_for_none(gqs, x0.shape, x0) if has_seq else [dummy] * NS
        gx = [_empty(x0, x0.shape) for _ in range(NI)]
        gs = [_empty(x0, step) if need_gs and s is not None else None for s in ss]
        gp = [_empty(x0, (N,)) for _ in ps]
        fn = self.kernel(ps).fs_backward
        launch = launcher(x0)
        fn = fn if launch is None else launch(fn)
        flags = {**{f"HAS_S0{j}": s is not None for j, s in enumerate(ss)},
                 **{f"WRITE_GS{j}": g is not None for j, g in enumerate(gs)}}
        fn[(triton_cdiv(N),)](*xs, *(x0 if s is None else s.contiguous() for s in ss), *vs, *ps,
                              *(q.contiguous() for q in seqs), *gys, *gts, *gqs, *gx,
                              *(x0 if g is None else g for g in gs), *gp, T, N, (T - 1) * N, BLOCK=TRITON_BLOCK,
                              HAS_SEQ=has_seq, **flags)
        return (*gx, *gs, *gp)

    # -- shapes for tracing -----------------------------------------------------------------------------------
    def fake_forward(self, *args):
        xs, ss, vs, ps, (store_seq, need_grad) = self.split(args)
        NS, NO = self.counts[1], self.counts[3]
        x0 = xs[0]
        keep = store_seq or (need_grad and self.backend == "triton")
        seqs = [x0.new_empty(x0.shape) for _ in range(NS)] if keep else [None] * NS
        return (*(x0.new_empty(x0.shape) for _ in range(NO)), *(x0.new_empty(x0.shape[1:]) for _ in range(NS)),
                *seqs)

    def fake_backward(self, *args):
        xs, ss, vs, ps, rest = self.split(args)
        x0 = xs[0]
        n = x0[0].numel()
        return (*(x0.new_empty(x0.shape) for _ in xs),
                *(x0.new_empty(x0.shape[1:]) if rest[-1] and s is not None else None for s in ss),
                *(x0.new_empty((n,)) for _ in ps))

    # -- the autograd formula ---------------------------------------------------------------------------------
    def setup_context(self, ctx, inputs, output):
        NI, NS, NP, NO = self.counts
        xs, ss, vs, ps, (store_seq, _) = self.split(inputs)
        ctx.set_materialize_grads(False)
        ctx.values, ctx.store_seq = vs, store_seq
        seqs = output[NO + NS:] if self.backend == "triton" else ()
        ctx.save_for_backward(*xs, *ss, *ps, *seqs)

    def formula(self, ctx, grads, kernel):
        NI, NS, NP, NO = self.counts
        saved = ctx.saved_tensors
        xs, ss, ps = saved[:NI], saved[NI:NI + NS], saved[NI + NS:NI + NS + NP]
        seqs = saved[NI + NS + NP:] or (None,) * NS
        gqs = grads[NO + NS:] if ctx.store_seq else (None,) * NS
        need = ctx.needs_input_grad
        need_gs = any(s is not None and need[NI + j] for j, s in enumerate(ss))
        out = kernel(*xs, *ss, *ps, *ctx.values, *seqs, *grads[:NO], *grads[NO:NO + NS], *gqs, need_gs)
        gx, gs, gp = out[:NI], out[NI:NI + NS], out[NI + NS:]
        gx = [g if need[k] else None for k, g in enumerate(gx)]
        gs = [g if s is not None and need[NI + j] else None for j, (g, s) in enumerate(zip(gs, ss))]
        first_p = NI + NS
        gp = [None if not need[first_p + k] else (g.sum() if p.numel() == 1 else g).reshape(p.shape)
              for k, (g, p) in enumerate(zip(gp, ps))]
        return (*gx, *gs, *gp, *(None,) * NS, None, None)

    # -- registration -----------------------------------------------------------------------------------------
    def build(self, name: str) -> Op:
        NI, NS, NP, NO = self.counts
        opt = Optional[Tensor]
        # the tensors first (ops/_contract.py)
        head = ([(f"x{k}", Tensor) for k in range(NI)] + [(f"state{j}", opt) for j in range(NS)]
                + [(f"param{k}", Tensor) for k in range(NP)] + [(f"state{j}_value", float) for j in range(NS)])
        fwd_sig = _signature(head + [("store_seq", bool), ("need_grad", bool)], NO + 2 * NS)
        bwd_sig = _signature(head + [(f"seq{j}", opt) for j in range(NS)] + [(f"grad_out{k}", opt) for k in range(NO)]
                             + [(f"grad_final{j}", opt) for j in range(NS)]
                             + [(f"grad_seq{j}", opt) for j in range(NS)] + [("need_state_grads", bool)],
                             NI + NS + NP)
        fwd, bwd = ((self.cpp_forward, self.cpp_backward) if self.backend == "cpp"
                    else (self.triton_forward, self.triton_backward))
        return Op(name, forward=_typed(fwd, fwd_sig), fake_forward=_typed(self.fake_forward, fwd_sig),
                  backward_kernel=_typed(bwd, bwd_sig), fake_backward=_typed(self.fake_backward, bwd_sig),
                  setup_context=self.setup_context, backward=self.formula, triton=self.backend == "triton")


def triton_cdiv(n: int) -> int:
    return (n + TRITON_BLOCK - 1) // TRITON_BLOCK
