"""Running modules over time (SpikingJelly 2.0.0's ``functional.forward``).

* :func:`multi_step_forward` loops a stateful single-step module over the T steps of [T, N, *];
* :func:`seq_to_ann_forward` folds T into the batch for a stateless module ([T, N, *] -> [T*N, *]);
* their time-last variants for [N, *, T] and :func:`chunk_multi_step_forward`.

This module imports nothing from fastspike: the layer containers build on it (``fastspike.layer.container``
imports it, never the reverse).
"""
from __future__ import annotations

from typing import Callable, Sequence, Tuple, Union

import torch
import torch.nn as nn

__all__ = ["multi_step_forward", "t_last_multi_step_forward", "chunk_multi_step_forward", "seq_to_ann_forward",
           "t_last_seq_to_ann_forward"]

ModuleLike = Union[nn.Module, Sequence[nn.Module], Callable]


def _apply(x, modules: ModuleLike):
    """Call ``modules`` (a callable, or a list/tuple of callables applied in order) on ``x``.

    A tuple ``x`` is unpacked into the first call's arguments.
    """
    args = x if isinstance(x, tuple) else (x,)
    if isinstance(modules, (list, tuple)):
        for module in modules:
            x = module(*args)
            args = (x,)
        return x
    return modules(*args)


def _check_seq(fn: str, x_seq: torch.Tensor, min_dim: int) -> None:
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{fn}: x_seq must be a torch.Tensor, but got {type(x_seq).__name__}.")
    if x_seq.dim() < min_dim:
        layout = "[T, N, ...]" if min_dim >= 2 else "[T, ...]"
        raise ValueError(f"{fn}: x_seq must have shape {layout} (at least {min_dim} dimensions), "
                         f"but got shape {tuple(x_seq.shape)}.")


def multi_step_forward(x_seq: torch.Tensor, single_step_module: ModuleLike) -> torch.Tensor:
    """Run a (stateful) single-step module over time: ``y[t] = module(x[t])`` for t in 0..T-1.

    :param x_seq: [T, N, *]
    :param single_step_module: a module, a callable, or a list/tuple of them applied in order
    :return: y_seq with shape [T, N, *out]
    """
    _check_seq("multi_step_forward", x_seq, 1)
    return torch.stack([_apply(x_seq[t], single_step_module) for t in range(x_seq.shape[0])])


def t_last_multi_step_forward(x_seq: torch.Tensor, single_step_module: ModuleLike) -> torch.Tensor:
    """:func:`multi_step_forward` for a time-last layout: x_seq [N, *, T] -> y_seq [N, *out, T]."""
    _check_seq("t_last_multi_step_forward", x_seq, 1)
    return torch.stack([_apply(x_seq.select(-1, t), single_step_module) for t in range(x_seq.shape[-1])], dim=-1)


def chunk_multi_step_forward(split_size: int, x_seq: torch.Tensor, multi_step_module: nn.Module) -> torch.Tensor:
    """Feed ``x_seq`` [T, N, *] to a multi-step module in chunks of ``split_size`` steps (saves memory at
    inference); the module's state carries over from chunk to chunk."""
    if not isinstance(split_size, int) or split_size < 1:
        raise ValueError(f"chunk_multi_step_forward: split_size must be a positive int, but got {split_size!r}.")
    _check_seq("chunk_multi_step_forward", x_seq, 1)
    return torch.cat([multi_step_module(chunk) for chunk in torch.split(x_seq, split_size)], 0)


def seq_to_ann_forward(x_seq: Union[torch.Tensor, Tuple[torch.Tensor, ...]], stateless_module: ModuleLike):
    """Run a stateless module on every step at once by folding time into the batch:
    [T, N, *] -> [T*N, *] -> module -> [T*N, *out] -> [T, N, *out].

    ``x_seq`` may be a tuple of tensors sharing [T, N]; a tuple output is unfolded item by item.
    """
    if isinstance(x_seq, tuple):
        for item in x_seq:
            _check_seq("seq_to_ann_forward", item, 2)
        lead = x_seq[0].shape[:2]
        if any(item.shape[:2] != lead for item in x_seq[1:]):
            raise ValueError("seq_to_ann_forward: every tensor of x_seq must share the leading [T, N] dimensions, "
                             f"but got shapes {[tuple(item.shape) for item in x_seq]}.")
        x = tuple(item.flatten(0, 1) for item in x_seq)
    else:
        _check_seq("seq_to_ann_forward", x_seq, 2)
        lead = x_seq.shape[:2]
        x = x_seq.flatten(0, 1)
    y = _apply(x, stateless_module)
    if isinstance(y, tuple):
        return tuple(item.unflatten(0, tuple(lead)) for item in y)
    return y.unflatten(0, tuple(lead))


def t_last_seq_to_ann_forward(x_seq: torch.Tensor, stateless_module: ModuleLike):
    """:func:`seq_to_ann_forward` for a time-last layout: x_seq [N, *, T] -> y_seq [N, *out, T]."""
    _check_seq("t_last_seq_to_ann_forward", x_seq, 2)
    x = x_seq.movedim(-1, 0)
    lead = x.shape[:2]
    y = _apply(x.flatten(0, 1), stateless_module)
    if isinstance(y, tuple):
        return tuple(item.unflatten(0, tuple(lead)).movedim(0, -1) for item in y)
    return y.unflatten(0, tuple(lead)).movedim(0, -1)
