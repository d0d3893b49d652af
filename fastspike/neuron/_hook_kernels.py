"""Fused kernels for neurons defined by SpikingJelly's hooks (``neuronal_charge`` / ``neuronal_fire`` /
``neuronal_reset`` on ``self.v`` and the other memories), the way most custom neurons are written.

``hook_kernel(node, x)`` traces one step of the node's own hooks with the neuron compiler (fastspike.compiler): the
hooks run on a stand-in for ``self`` whose memories (``v``, ``w``, ...) are the traced states and whose direct
parameters and buffers are the traced parameters; every other attribute (numbers, flags, the surrogate function,
other methods) is read from the neuron and becomes a constant of the kernel. The compiled kernels (C++ on the CPU,
Triton on CUDA, forward and backward through time) then run whole sequences, and single steps as T = 1.

The kernel is cached on the neuron until one of its attributes is assigned (``train()``/``eval()`` included) and
rebuilt when the surrogate's settings change. Hooks that do not trace (Python branches on values, an unsupported
function, a SpikingJelly surrogate or another hand-written autograd.Function, a tensor attribute that is neither a
parameter nor a buffer of one element, an assignment to anything but a memory) keep the Python hooks, step by step,
for good; so do float64 inputs, ``backend='torch'``, memories that are not numbers or tensors, and a machine without
a C++ compiler (with a warning). Under torch.compile the Python hooks are traced as they are (Inductor fuses them).
The Python hooks are the reference the kernels are tested against (tests/test_neuron_hook_kernels.py). The hooks
run once, on proxies, when the kernel is traced: side effects in them (printing, counting calls) happen then, not
per step.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Optional

import torch

from ..compiler import KernelBuildError, NeuronTraceError, compile_neuron

__all__ = ["hook_kernel", "run_hook_kernel"]

_CACHE = "_hook_kernel_cache"
_FAILED = "_hook_kernel_failed"
_TRACED = weakref.WeakKeyDictionary()  # neuron class -> its stand-in class
_warned = set()


def _traced_self_class(cls):
    """A subclass of the neuron's class whose instances stand in for the neuron while its hooks are traced (an
    instance of the class, so ``super()`` and properties work): memories are the traced states, the traced
    parameters come from ``_values``, every other attribute is read from the neuron."""
    sub = _TRACED.get(cls)
    if sub is None:
        def __getattr__(self, name):
            values = self.__dict__["_values"]
            if name in values:
                return values[name]
            node = self.__dict__["_node"]
            value = getattr(node, name)
            if isinstance(value, torch.Tensor):
                raise NeuronTraceError(f"{cls.__name__}.{name} is a tensor that is neither a parameter nor a buffer of "
                                       "one element, so the kernel cannot take it")
            return value

        def __setattr__(self, name, value):
            if name not in self.__dict__["_memories"]:
                raise NeuronTraceError(f"the hooks of {cls.__name__} assign self.{name}, which is not one of its "
                                       "memories (only memories may change from step to step)")
            self.__dict__["_values"][name] = value

        sub = type(f"Traced{cls.__name__}", (cls,), {"__getattr__": __getattr__, "__setattr__": __setattr__,
                                                      "__module__": __name__})
        _TRACED[cls] = sub
    return sub


class HookKernel:
    """The compiled hooks of one neuron configuration: memory names (the states, in order), the names of the
    parameters and buffers passed to the kernel, and the surrogate settings it was built for."""

    def __init__(self, node, memories: tuple, params: tuple, spec) -> None:
        cls = type(node)

        def step(x, *values):
            traced = dict(zip(memories + params, values))
            me = object.__new__(_traced_self_class(cls))
            me.__dict__.update(_node=node, _values=traced, _memories=memories)
            cls.neuronal_charge(me, x)
            spike = cls.neuronal_fire(me)
            cls.neuronal_reset(me, spike)
            return (spike, *(traced[name] for name in memories))

        self.memories, self.params, self.spec = memories, params, spec
        self.compiled = compile_neuron(step, len(memories), len(params), 1)


def _spec(node):
    kernel_spec = getattr(node.surrogate_function, "kernel_spec", None)
    return kernel_spec() if kernel_spec is not None else None


def hook_kernel(node, x: torch.Tensor) -> Optional[HookKernel]:
    """The compiled hooks of ``node`` for input ``x`` (a step or a sequence), or None when they do not apply."""
    if (x.dtype not in (torch.float32, torch.float16, torch.bfloat16) or getattr(node, "backend", "auto") == "torch"
            or torch.compiler.is_compiling()):  # torch.compile traces the hooks themselves (Inductor fuses them)
        return None
    if node.__dict__.get(_FAILED):
        return None
    kernel = node.__dict__.get(_CACHE)
    if kernel is False:
        return None
    spec = _spec(node)
    if kernel is not None and kernel.spec == spec:
        return kernel
    memories = tuple(node._memories)
    if not memories or not all(isinstance(v, (int, float, torch.Tensor)) and not isinstance(v, bool)
                               for v in node._memories.values()):
        node.__dict__[_CACHE] = False
        return None
    params = tuple(name for name, t in (*node.named_parameters(recurse=False), *node.named_buffers(recurse=False))
                   if t is not None and t.is_floating_point() and t.numel() == 1)
    try:
        kernel = HookKernel(node, memories, params, spec)
    except (NeuronTraceError, ValueError) as error:
        # the hooks' code does not trace (NeuronTraceError names the line; ValueError: the step returns fewer values
        # than memories): the Python hooks, step by step, from now on (kept across attribute assignments, which
        # hooks that fail this way often make every step); the reason stays readable on the neuron
        node.__dict__[_FAILED] = f"{type(error).__name__}: {error}"
        return None
    node.__dict__[_CACHE] = kernel
    return kernel


def run_hook_kernel(node, kernel: HookKernel, x_seq: torch.Tensor, store_v_seq: bool = False):
    """Run the compiled hooks over x_seq [T, *], store the new memories on ``node`` and return (spikes [T, *],
    the sequence of ``v`` when ``store_v_seq``, else None); None when the kernel cannot run this call (no C++
    compiler: a warning, once per class, and the Python hooks from then on)."""
    step = x_seq.shape[1:]
    states = []
    for name in kernel.memories:
        value = node._memories[name]
        if isinstance(value, torch.Tensor):
            if value.shape != step:
                raise RuntimeError(
                    f"{type(node).__name__}: the stored state {name} has shape {tuple(value.shape)} but this input "
                    f"step has shape {tuple(step)}. The batch or feature size changed without a reset: call "
                    "functional.reset_net(net) between independent batches.")
            value = value.to(dtype=x_seq.dtype, device=x_seq.device)
        states.append(value)
    params = tuple(getattr(node, name) for name in kernel.params)
    try:
        outs, finals, seqs = kernel.compiled((x_seq,), tuple(states), params,
                                             store_state_seqs=store_v_seq and "v" in kernel.memories,
                                             backend=getattr(node, "backend", "auto"))
    except KernelBuildError as error:
        node.__dict__[_FAILED] = f"{type(error).__name__}: {error}"
        if type(node) not in _warned:
            _warned.add(type(node))
            warnings.warn(f"{type(node).__name__}: the compiled hooks cannot be built ({error}); running the Python "
                          "hooks step by step.", RuntimeWarning, stacklevel=3)
        return None
    for name, value in zip(kernel.memories, finals):
        node._memories[name] = value
    v_seq = seqs[kernel.memories.index("v")] if seqs is not None else None
    return outs[0], v_seq

