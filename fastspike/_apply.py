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

__all__ = ["fast_apply"]

_functorch_active = torch._C._are_functorch_transforms_active


def fast_apply(function: type) -> Callable:
    """``function.apply`` (a torch.autograd.Function subclass), through the C entry point when the first argument is
    a plain tensor outside torch.compile and torch.func transforms."""
    c_apply = super(torch.autograd.Function, function).apply

    def apply(*args):
        if not torch.compiler.is_compiling() and type(args[0]) is torch.Tensor and not _functorch_active():
            return c_apply(*args)
        return function.apply(*args)  # looked up per call: the neuron compiler patches Function.apply
    apply.__name__ = apply.__qualname__ = f"{function.__name__}.apply"
    return apply
