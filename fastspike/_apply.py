"""``fast_apply(Function)``: a torch.autograd.Function's ``apply`` without its Python preamble where that is safe.

A Function written in setup_context style (which torch.func transforms need) pays ~15 us per ``apply`` in
``Function.apply``'s Python preamble (it binds default arguments through ``inspect``), three times what the call
itself costs; surrogate spike functions are applied once per neuron per time step. The preamble matters only
inside a torch.func transform (it unwraps the transform's tensors), while torch.compile traces, for inputs that
are not plain tensors (e.g. the neuron compiler's proxies, which its patched ``apply`` intercepts) and for omitted
default arguments. Elsewhere the returned function calls autograd's C entry point directly, as the op contract's
Functions do (ops/_contract.py). Callers pass every argument.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["fast_apply", "tracing", "opaque"]

_functorch_active = torch._C._are_functorch_transforms_active


def tracing(t: torch.Tensor) -> bool:
    """True when ``t`` must take the registered custom op: torch.compile/export is tracing, or ``t`` is not a
    plain tensor (FakeTensor, FunctionalTensor, another subclass)."""
    return torch.compiler.is_compiling() or type(t) is not torch.Tensor


def opaque(t: torch.Tensor) -> bool:
    """True when ``t``'s values cannot be read where the call is made: while tracing (see ``tracing``) and inside a
    torch.func transform (``t`` may be a wrapper without storage: grad's, vmap's batched tensors). Code that looks
    at the data (a density check, a binarity flag read back, a known-binary record) does what it does when tracing,
    and a Function is applied through ``Function.apply`` (which handles both)."""
    return tracing(t) or _functorch_active()


def fast_apply(function: type) -> Callable:
    """``function.apply`` (a torch.autograd.Function subclass), through the C entry point when the first argument is
    a plain tensor outside torch.compile and torch.func transforms."""
    c_apply = super(torch.autograd.Function, function).apply

    def apply(*args):
        if not opaque(args[0]):
            return c_apply(*args)
        return function.apply(*args)  # looked up per call: the neuron compiler patches Function.apply
    apply.__name__ = apply.__qualname__ = f"{function.__name__}.apply"
    return apply
