"""Network-wide configuration (SpikingJelly 2.0.0's ``functional.net_config``, plus fastspike's set_backend).

:func:`reset_net`, :func:`collect_reset_modules`, :func:`reset_collected_modules`,
:func:`invalidate_reset_cache`, :func:`set_step_mode`, :func:`detach_net` and :func:`set_backend`.

Containers that own the time dimension of their children (``fastspike.layer.container``) declare it with the
class attribute ``children_keep_step_mode = True``; :func:`set_step_mode` reads that attribute instead of
importing the layer package, so this module sits below ``fastspike.layer`` in the import graph.
"""
from __future__ import annotations

import warnings
from typing import Iterable, List, Tuple, Union

import torch.nn as nn

from .. import base
from ..ops._backend import BACKENDS

__all__ = ["collect_reset_modules", "detach_net", "invalidate_reset_cache", "reset_collected_modules", "reset_net",
           "set_step_mode", "set_backend"]


def _check_net(fn: str, net) -> None:
    if not isinstance(net, nn.Module):
        raise TypeError(f"{fn}: net must be a torch.nn.Module, but got {type(net).__name__}.")


def children_keep_step_mode(m: nn.Module) -> bool:
    """True for a container whose children keep their own step mode ('s') whatever the container's is."""
    return bool(getattr(m, "children_keep_step_mode", False))


def _reset_method(m: nn.Module):
    """``getattr(m, "reset", None)`` without its slow case: nn.Module.__getattr__ raises (and catches) an
    AttributeError for every module that has no such attribute, which was most of reset_net's time."""
    if "reset" in m.__dict__ or hasattr(type(m), "reset") or "reset" in m._modules or "reset" in m._parameters \
            or "reset" in m._buffers:
        return getattr(m, "reset", None)
    return None


def _modules(net: nn.Module) -> List[nn.Module]:
    """``list(net.modules())`` (each module once, depth first, a parent before its children) without the names that
    ``named_modules`` builds for every module on the way, nor a generator resumed per module (``reset_net`` walks
    every module of a network once per training step)."""
    seen, stack, out = set(), [net], []
    while stack:
        m = stack.pop()
        if m is None or id(m) in seen:
            continue
        seen.add(id(m))
        out.append(m)
        stack.extend(reversed(m._modules.values()))
    return out


def collect_reset_modules(net: nn.Module) -> Tuple[nn.Module, ...]:
    """Every module of ``net`` (itself included) that has a callable ``reset()``, in ``net.modules()`` order."""
    _check_net("collect_reset_modules", net)
    return tuple(m for m in _modules(net) if callable(_reset_method(m)))


def reset_collected_modules(modules: Iterable[nn.Module]) -> None:
    """Call ``reset()`` on each module of ``modules`` (e.g. the tuple :func:`collect_reset_modules` returned)."""
    modules = tuple(modules)
    for i, m in enumerate(modules):
        if not callable(getattr(m, "reset", None)):
            raise TypeError(f"reset_collected_modules: modules[{i}] ({type(m).__name__}) has no reset() method.")
    for m in modules:
        m.reset()


def invalidate_reset_cache(net: nn.Module) -> None:
    """Compatibility with SpikingJelly 2.0, whose reset_net caches the list of resettable modules per network
    and must be told when the network's structure changes. fastspike's :func:`reset_net` walks the network on
    every call (so a swapped or added module is always reset); there is nothing to invalidate."""
    _check_net("invalidate_reset_cache", net)


def reset_net(net: nn.Module) -> None:
    """Restore the state of every stateful module of ``net`` (membrane potentials, dropout masks, ...).

    Call it between two independent input sequences (typically after every batch).
    """
    _check_net("reset_net", net)
    for m in _modules(net):  # walked on every call (no cache), so a swapped or added module is reset too
        r = _reset_method(m)
        if callable(r):
            r()


def set_step_mode(net: nn.Module, step_mode: str) -> None:
    """Set ``step_mode`` ('s': one step [N, *] per call, 'm': a sequence [T, N, *]) on every module of ``net``.

    Containers that fix the step mode of their children (SeqToANNContainer, MultiStepContainer,
    StepModeContainer, the recurrent containers: ``children_keep_step_mode``) are not entered: their children
    stay in 's' mode. Such a container whose own step mode is fixed (SeqToANNContainer is always 'm') is left
    unchanged.
    """
    _check_net("set_step_mode", net)
    if step_mode not in ("s", "m"):
        raise ValueError("set_step_mode: step_mode must be 's' (single step) or 'm' (multi step), but got "
                         f"{step_mode!r}.")
    stack = [net]
    while stack:
        m = stack.pop()
        keep = children_keep_step_mode(m)
        if isinstance(m, base.StepModule):
            if step_mode in m.supported_step_mode():
                m.step_mode = step_mode
            elif not keep:
                raise ValueError(
                    f"set_step_mode: {type(m).__name__} supports step_mode {m.supported_step_mode()} only, "
                    f"so it cannot be set to {step_mode!r}.")
        elif hasattr(m, "step_mode"):
            warnings.warn(f"set_step_mode: {type(m).__name__} is not a fastspike.base.StepModule; "
                          f"setting its step_mode={step_mode!r} without validation.", stacklevel=2)
            m.step_mode = step_mode
        if not keep:
            stack.extend(reversed(tuple(m.children())))


def set_backend(net: nn.Module, backend: str, instance: Union[type, Tuple[type, ...]] = (nn.Module,)) -> None:
    """Set ``backend`` on every module of ``net`` that is an instance of ``instance`` and has a ``backend``.

    ``backend`` is one of ``fastspike.ops.BACKENDS`` ('auto', 'torch', 'triton', 'cpp').
    A module that lists ``supported_backends`` without this one is skipped with a warning.
    """
    _check_net("set_backend", net)
    if backend not in BACKENDS:
        raise ValueError(f"set_backend: backend must be one of {BACKENDS}, but got {backend!r}.")
    for m in net.modules():
        if not isinstance(m, instance) or not hasattr(m, "backend"):
            continue
        supported = getattr(m, "supported_backends", None)
        if supported is not None and backend not in supported:
            warnings.warn(f"set_backend: {type(m).__name__} supports backends {tuple(supported)}, "
                          f"not {backend!r}; left at {m.backend!r}.", stacklevel=2)
            continue
        m.backend = backend


def detach_net(net: nn.Module) -> None:
    """Cut the autograd history of every module state of ``net`` (truncated BPTT), keeping the values."""
    _check_net("detach_net", net)
    for m in net.modules():
        if callable(getattr(m, "detach", None)):
            m.detach()
