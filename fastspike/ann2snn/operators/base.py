"""Temporal-difference (TD) operators: the base class and the input checks they share.

A TD operator turns an ANN function ``f`` into a spiking-time operator whose outputs, summed over time, equal ``f``
applied to the inputs summed over time. It keeps the running sums of its inputs (memory ``x_cum``) and of its
output (memory ``y_cum``); at step t it emits ``f(x_1 + ... + x_t) - f(x_1 + ... + x_{t-1})``. A sequence [T, *]
is done at once: ``f`` on the cumulative sums of all T steps (one batched call), then the differences along time.
State carries over between calls until ``reset()`` (``functional.reset_net``); an input whose shape, device or
dtype differs from the stored sums starts afresh.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from ... import base

__all__ = ["TDModule"]


def _same_meta(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.device == b.device and a.dtype == b.dtype


def _as_tuple(x_cum) -> tuple:
    return x_cum if isinstance(x_cum, tuple) else (x_cum,)


def _pack(values: tuple):
    """One stored sum is kept as a tensor, several as a tuple (SpikingJelly's layout of ``x_cum``)."""
    return values[0] if len(values) == 1 else values


def resolve_dim(dim: int, ndim: int) -> int:
    resolved = dim + ndim if dim < 0 else dim
    if not 0 <= resolved < ndim:
        raise ValueError(f"dim must be in the range [{-ndim}, {ndim - 1}], but got {dim} for an input with {ndim} "
                         "dimensions.")
    return resolved


def check_sequence(x_seq: torch.Tensor, owner: str, name: str = "x_seq", min_dim: int = 2,
                   layout: str = "[T, ...]") -> None:
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{owner}: {name} must be a torch.Tensor, but got {type(x_seq).__name__}.")
    if x_seq.dim() < min_dim:
        raise ValueError(f"{owner} expects {name} with shape {layout} and at least {min_dim} dimensions, but got "
                         f"shape {tuple(x_seq.shape)}.")
    if x_seq.shape[0] == 0:
        raise ValueError(f"{owner} expects a non-empty time dimension, but got shape {tuple(x_seq.shape)}.")


def check_same_length(seqs: Tuple[torch.Tensor, ...], names: Tuple[str, ...], owner: str) -> None:
    lengths = [s.shape[0] for s in seqs]
    if len(set(lengths)) != 1:
        raise ValueError(f"{owner} expects {', '.join(names)} to have the same time length, but got "
                         f"{', '.join(map(str, lengths))}.")


def align_ranks(a_seq: torch.Tensor, b_seq: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Insert singleton dimensions after time into the lower-rank sequence until both have the same rank."""
    while a_seq.dim() < b_seq.dim():
        a_seq = a_seq.unsqueeze(1)
    while b_seq.dim() < a_seq.dim():
        b_seq = b_seq.unsqueeze(1)
    return a_seq, b_seq


class TDModule(base.MemoryModule):
    """Base of the TD operators: subclasses define ``ann_forward`` (the ANN function ``f``); single steps apply it
    to the running sums, and subclasses give a sequence version through :meth:`_td_sequence_forward`.

    :param step_mode: 'm' (default, a sequence [T, *] per call) or 's' (one step per call).
    """

    def __init__(self, step_mode: str = "m") -> None:
        super().__init__()
        self.register_memory("x_cum", None)
        self.register_memory("y_cum", None)
        self.step_mode = step_mode

    def ann_forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define ann_forward (the ANN function it runs on the "
                                  "running sums of its inputs).")

    # -- one step -----------------------------------------------------------------------------------------
    def _accumulate_inputs(self, inputs: tuple, x_cum, y_cum) -> Tuple[tuple, object, object]:
        previous = _as_tuple(x_cum)
        if len(previous) != len(inputs) or not all(isinstance(p, torch.Tensor) and _same_meta(p, x)
                                                   for p, x in zip(previous, inputs)):
            previous, y_cum = (None,) * len(inputs), None  # a fresh start: nothing to add or subtract
        summed = tuple(x if p is None else p + x for p, x in zip(previous, inputs))
        return summed, _pack(summed), y_cum

    @staticmethod
    def _diff_output(output_cum: torch.Tensor, previous) -> Tuple[torch.Tensor, torch.Tensor]:
        if isinstance(previous, torch.Tensor) and _same_meta(previous, output_cum):
            return output_cum - previous, output_cum
        return output_cum, output_cum

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs) -> Tuple[tuple, tuple]:
        summed, x_cum, y_cum = self._accumulate_inputs(tuple(inputs), states[0], states[1])
        output, y_cum = self._diff_output(self.ann_forward(*summed, **kwargs), y_cum)
        return (output,), (x_cum, y_cum)

    # -- a sequence ---------------------------------------------------------------------------------------
    def _td_sequence_forward(self, input_seqs: Tuple[torch.Tensor, ...], states: tuple,
                             fn: Callable[..., torch.Tensor]) -> Tuple[tuple, tuple]:
        """``fn`` on the cumulative sums of ``input_seqs`` ([T, *] each, continuing the stored sums when they
        fit), then the differences along time: returns ``((y_seq,), (x_cum, y_cum))``."""
        for x_seq in input_seqs:
            if x_seq.shape[0] == 0:
                raise ValueError(f"{type(self).__name__} expects a non-empty time dimension, but got shape "
                                 f"{tuple(x_seq.shape)}.")
        cum_seqs = tuple(x_seq.cumsum(dim=0) for x_seq in input_seqs)
        x_cum, y_cum = states
        previous = _as_tuple(x_cum)
        if len(previous) == len(cum_seqs) and all(isinstance(p, torch.Tensor) and _same_meta(p, c[0])
                                                  for p, c in zip(previous, cum_seqs)):
            cum_seqs = tuple(p + c for p, c in zip(previous, cum_seqs))
        else:
            y_cum = None
        y_cum_seq = fn(*cum_seqs)
        if not (isinstance(y_cum, torch.Tensor) and _same_meta(y_cum, y_cum_seq[0])):
            y_cum = torch.zeros_like(y_cum_seq[0])
        y_seq = torch.diff(y_cum_seq, dim=0, prepend=y_cum.unsqueeze(0))
        x_cum = _pack(tuple(c[-1].clone() for c in cum_seqs))
        return (y_seq,), (x_cum, y_cum_seq[-1].clone())


def optional_mask(inputs: tuple, kwargs: dict) -> Optional[torch.Tensor]:
    """An attention mask given as a fourth input or as the keyword ``attn_mask``."""
    return inputs[3] if len(inputs) > 3 else kwargs.get("attn_mask")
