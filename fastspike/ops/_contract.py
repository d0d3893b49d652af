"""The op contract: every kernel-backed op is a pair of ``torch.library`` custom ops (forward and backward
kernels, each with a fake implementation) joined by one autograd formula.

An op is defined once, by:

* ``forward(*inputs) -> tuple of tensors``: runs the forward kernel (a launcher). Its type annotations are the
  custom op's schema, so scalars reach the kernels as fixed types (float, int, bool); optional tensors are
  ``Optional[Tensor]``. The tensor arguments come first, then the others (``Op`` checks this). An output that a
  configuration does not produce is None: the eager Function returns it as None, the registered custom op (whose
  schema cannot hold None) as an empty tensor, so the formula treats None and empty alike.
* ``backward_kernel(*args) -> tuple of tensors``: the backward kernel, with the same rules.
* ``fake_forward`` / ``fake_backward``: the output shapes and dtypes, for tracing (torch.compile, export).
* ``setup_context(ctx, inputs, output)``: what the backward needs (``ctx.save_for_backward`` and plain
  attributes), shared by both paths below.
* ``backward(ctx, grads, backward_kernel)``: the autograd formula; it calls the kernel it is given.

From these, ``Op`` registers ``fastspike::<name>`` and ``fastspike::<name>_backward`` (through
``torch.library.triton_op`` for Triton launchers, so Inductor sees the kernels inside, and
``torch.library.custom_op`` otherwise) with ``register_autograd``, and builds an equivalent
``torch.autograd.Function``, which takes the tensor arguments and then the other arguments as one tuple (autograd
examines every argument of a Function on every call and returns a gradient slot for each; a neuron op has ~20
scalars, and passing them as one tuple took 2% off the instructions of a small LIF layer's forward+backward).
``Op.__call__`` takes the Function in eager mode on plain tensors (no dispatcher round trip: about 15 us less per
call, which is most of a small layer's host time), the forward launcher alone when grad mode is off (inference
records nothing: the Function's own cost is saved too), and the custom op whenever torch.compile / export is
tracing or the inputs are tensor subclasses (fake or functional tensors). All paths run the same launchers and the
same formula; tests/test_compile.py checks that they agree.

A forward-only op (an inference transition with no gradient, such as SpikeZIP's ST-BIF neuron) is an
``InferenceOp``: ``forward`` and ``fake_forward`` only, registered as ``fastspike::<name>`` the same way, with no
autograd formula. Called while grad mode is on with an input tensor that requires grad, it raises a RuntimeError
naming the op (on every path, eager or traced), instead of returning outputs whose gradient would be missing.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable, Optional

import torch

from .._apply import _functorch_active, opaque, tracing
from . import _backend

__all__ = ["Op", "InferenceOp", "inference_only", "tracing", "opaque", "launcher", "register_op", "vmap_by_loop"]

_NAMESPACE = "fastspike"


def launcher(t: torch.Tensor):
    """What a Triton implementation wraps its kernels in: ``torch.library.wrap_triton`` while torch.compile traces
    (Inductor then sees the kernel), nothing in eager calls (wrap_triton's own dispatch costs host time)."""
    return torch.library.wrap_triton if tracing(t) else None


def _no_none(fn: Callable) -> Callable:
    """``fn`` with None outputs replaced by empty tensors (same annotations, so the same schema)."""
    @functools.wraps(fn)
    def wrapper(*args):
        out = fn(*args)
        if not isinstance(out, tuple):
            return out
        like = next(a for a in args if isinstance(a, torch.Tensor))
        return tuple(like.new_empty((0,)) if o is None else o for o in out)
    # the schema is read from the signature: give the wrapper fn's, with its annotations evaluated where fn lives
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)
    del wrapper.__wrapped__
    return wrapper


def register_op(name: str, impl: Callable, fake: Callable, triton: bool = False):
    """Register ``fastspike::<name>`` with its fake implementation: a ``triton_op`` for a Triton launcher where
    Inductor can compile it, an opaque ``custom_op`` otherwise (every C++ launcher; Triton launchers under the
    interpreter or with a torch built without CUDA and ROCm)."""
    qualname = f"{_NAMESPACE}::{name}"
    # triton_op lets Inductor see the kernels inside, but it needs real @triton.jit functions: under
    # TRITON_INTERPRET=1 (tests on CPU-only machines) they are interpreter objects, which tracing cannot see
    # through. A torch built for the CPU alone never runs a compiled Triton kernel either, and triton_op's
    # kernel discovery imports Inductor and Dynamo (most of a second of `import fastspike`): there the same
    # implementation is an opaque custom op with the same fake as well.
    if triton and not _backend.triton_interpret() and _backend.gpu_build():
        op = torch.library.triton_op(qualname, impl, mutates_args=())
    else:
        op = torch.library.custom_op(qualname, impl, mutates_args=())
    op.register_fake(fake)
    op.register_vmap(lambda info, in_dims, *args: vmap_by_loop(op, info, in_dims, args))
    return op


def _entry(arg, dim, b: int):
    """Batch entry ``b`` of a vmapped argument (``dim``: its batch dimension, None when not batched; a list or tuple
    argument comes with a list of dimensions)."""
    if dim is None:
        return arg
    if isinstance(arg, (list, tuple)):
        return type(arg)(_entry(a, d, b) for a, d in zip(arg, dim))
    return arg.select(dim, b)


def vmap_by_loop(fn: Callable, info, in_dims, inputs):
    """A vmap rule for any kernel-backed function (``torch.func.vmap``): ``fn`` on each batch entry's slice of the
    batched inputs, outputs stacked along dim 0. The kernels read raw memory, so a batched tensor cannot reach
    them; one call per entry is what vmap costs here (per-sample gradients of a few hundred samples are fine).
    None outputs (an Op's Function leaves them out) stay None."""
    per_entry = [fn(*(_entry(a, d, b) for a, d in zip(inputs, in_dims))) for b in range(info.batch_size)]
    if not isinstance(per_entry[0], tuple):
        return torch.stack(per_entry), 0
    outs = tuple(None if first is None else torch.stack([e[i] for e in per_entry])
                 for i, first in enumerate(per_entry[0]))
    return outs, tuple(None if o is None else 0 for o in outs)


def _register(name: str, impl: Callable, fake: Callable, triton: bool):
    return register_op(name, _no_none(impl), _no_none(fake), triton)


def _tensor_arguments(name: str, fn: Callable) -> int:
    """How many arguments of ``fn`` are tensors (annotated ``Tensor`` or ``Optional[Tensor]``); they must come
    before every other argument."""
    count, others = 0, []
    for p in inspect.signature(fn, eval_str=True).parameters.values():
        if p.annotation in (torch.Tensor, Optional[torch.Tensor]):
            if others:
                raise TypeError(f"op {name}: the tensor argument {p.name!r} follows {others[-1]!r}; the op contract "
                                "takes the tensor arguments first (ops/_contract.py).")
            count += 1
        else:
            others.append(p.name)
    return count


class Op:
    """One differentiable kernel-backed op (see the module docstring). ``name`` is unique per backend, e.g.
    'neuron_cpp' and 'neuron_triton'."""

    def __init__(self, name: str, *, forward: Callable, fake_forward: Callable, backward_kernel: Callable,
                 fake_backward: Callable, setup_context: Callable, backward: Callable, triton: bool = False):
        self.name = name
        self.forward_kernel = forward
        self.backward_kernel = backward_kernel
        self.tensors = k = _tensor_arguments(name, forward)
        self.custom_forward = _register(name, forward, fake_forward, triton)
        self.custom_backward = _register(name + "_backward", backward_kernel, fake_backward, triton)
        custom_backward = self.custom_backward

        def registered_backward(ctx, *grads):
            return backward(ctx, grads, custom_backward)

        self.custom_forward.register_autograd(registered_backward, setup_context=setup_context)

        class Function(torch.autograd.Function):
            # setup_context style, so that torch.func transforms (grad, vjp, jacrev, vmap) can apply it; eager
            # calls reach it through autograd's C entry point (self.apply_eager), which costs the same in either style.
            # Its arguments: the op's k tensor arguments, then a tuple of the others (see the module docstring)
            @staticmethod
            def forward(*args):
                return forward(*args[:-1], *args[-1])

            @staticmethod
            def setup_context(ctx, args, outputs):
                setup_context(ctx, args[:-1] + args[-1], outputs)

            @staticmethod
            def backward(ctx, *grads):
                if not _functorch_active():
                    return backward(ctx, grads, backward_kernel)[:k] + (None,)
                # inside a torch.func transform the gradients may be batched (vmap over grad): the registered
                # backward op has a vmap rule (the launcher reads raw memory). Run without grad mode, as in eager:
                # the backward kernels have no derivative of their own (no double backward), and with grad mode
                # on the op's autograd layer would refuse the transform
                with torch.no_grad():
                    return backward(ctx, grads, custom_backward)[:k] + (None,)

            @staticmethod
            def vmap(info, in_dims, *inputs):
                return vmap_by_loop(Function.apply, info, in_dims, inputs)

        Function.__name__ = Function.__qualname__ = f"{name}_function"
        self.function = Function
        # autograd's C entry point: what Function.apply calls after its Python preamble (default-argument binding
        # for setup_context-style Functions, and unwrapping functorch wrappers, needed only while a functorch
        # transform is active). Calling it directly saves ~10-20 us per call with ~20 arguments. Takes the k tensor
        # arguments, then the others as one tuple; only for plain tensors outside torch.compile and torch.func.
        self.apply_eager = super(torch.autograd.Function, Function).apply

    def __call__(self, *inputs):
        if tracing(inputs[0]):
            return self.custom_forward(*inputs)
        k = self.tensors
        if _functorch_active():  # torch.func transforms (also under no_grad: vmap) need Function.apply's handling
            return self.function.apply(*inputs[:k], inputs[k:])
        if not torch.is_grad_enabled():  # inference: nothing to record, so not even autograd's Function (~10 us)
            return self.forward_kernel(*inputs)
        return self.apply_eager(*inputs[:k], inputs[k:])

    def __repr__(self) -> str:
        return f"Op({_NAMESPACE}::{self.name})"


def inference_only(op: str, inputs) -> None:
    """Raise a RuntimeError naming ``op`` when grad mode is on and a tensor in ``inputs`` requires grad (a
    forward-only op would return outputs without a gradient). Public functions of forward-only ops call it too,
    so that their reference backend raises the same error."""
    if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in inputs):
        raise RuntimeError(f"{op} is forward-only (inference) and has no gradient, but an input requires grad: run "
                           "it under torch.no_grad() / torch.inference_mode(), or pass tensors that do not require "
                           "grad (.detach()).")


class InferenceOp:
    """One forward-only kernel-backed op (see the module docstring): ``forward`` / ``fake_forward`` as in ``Op``,
    registered as the custom op ``fastspike::<name>``, without a backward. ``__call__`` raises a RuntimeError naming
    the op when grad mode is on and an input tensor requires grad."""

    def __init__(self, name: str, *, forward: Callable, fake_forward: Callable, triton: bool = False):
        self.name = name
        self.forward_kernel = forward
        self.custom_forward = _register(name, forward, fake_forward, triton)

    def __call__(self, *inputs):
        inference_only(f"{_NAMESPACE}::{self.name}", inputs)
        if opaque(inputs[0]):  # traced, or inside torch.func.vmap: the registered op (fake, vmap rule)
            return self.custom_forward(*inputs)
        return self.forward_kernel(*inputs)

    def __repr__(self) -> str:
        return f"InferenceOp({_NAMESPACE}::{self.name})"
