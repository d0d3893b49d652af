"""Argument checks shared by every op, so that bad input gets the same named error whatever the backend.

Each check takes the op's name first and raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError``
(wrong value, shape or device) with one sentence naming the op, the argument, the value and what is expected.
They look at Python values and tensor metadata only (never at tensor data: that would cost a pass over the data
and, on a GPU, a device-to-host synchronisation), so they are free to call on every forward and under
torch.compile.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Optional, Sequence, Tuple

import torch

__all__ = ["tensor", "optional_tensor", "same_device", "floating", "dtype_in", "pair", "ntuple", "finite",
           "positive_int", "choice"]


def _kind(value) -> str:
    return type(value).__name__


def tensor(op: str, name: str, value, *, ndim: Optional[Iterable[int]] = None, layout: str = "") -> torch.Tensor:
    """``value`` must be a torch.Tensor (with ``ndim`` in the given ranks, described by ``layout``)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, but got {_kind(value)}.")
    if ndim is not None:
        ranks = tuple(ndim)
        if value.dim() not in ranks:
            want = f"shape [{layout}]" if layout else f"{' or '.join(map(str, ranks))} dimensions"
            raise ValueError(f"{op}: {name} must have {want}, but got shape {tuple(value.shape)}.")
    return value


def optional_tensor(op: str, name: str, value) -> Optional[torch.Tensor]:
    if value is not None and not isinstance(value, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor or None, but got {_kind(value)}.")
    return value


def same_device(op: str, first: Tuple[str, torch.Tensor], *others: Tuple[str, Optional[torch.Tensor]]) -> None:
    """Every tensor in ``others`` (None entries skipped) is on ``first``'s device."""
    name0, t0 = first
    for name, t in others:
        if t is not None and t.device != t0.device:
            raise ValueError(f"{op}: {name} is on {t.device} but {name0} is on {t0.device}; put them on one device "
                             "(move the module or the tensors).")


def floating(op: str, name: str, t: torch.Tensor) -> None:
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be a floating-point tensor, but got dtype {t.dtype}.")


def dtype_in(op: str, name: str, t: torch.Tensor, dtypes: Sequence[torch.dtype]) -> None:
    if t.dtype not in dtypes:
        raise TypeError(f"{op}: {name} must have one of the dtypes {[str(d) for d in dtypes]}, but got {t.dtype}.")


_INT_TYPE = frozenset({int})


def _is_int(v) -> bool:
    t = type(v)
    if t is int:  # the common case first: an ABC check (numbers.Integral) costs ~1 us
        return True
    return t is not bool and isinstance(v, numbers.Integral)


def ntuple(op: str, name: str, value, n: int, minimum: Optional[int] = None) -> Tuple[int, ...]:
    """An int or a sequence of ``n`` ints -> a tuple of ``n`` Python ints, each at least ``minimum``."""
    # the common cases first (these run on every forward of a synapse layer): a plain int, a tuple of plain ints
    if type(value) is int and (minimum is None or value >= minimum):
        return (value,) * n
    if type(value) is tuple and len(value) == n and set(map(type, value)) == _INT_TYPE \
            and (minimum is None or min(value) >= minimum):
        return value
    if _is_int(value):
        value = (value,) * n
    if not (isinstance(value, (tuple, list, torch.Size)) and len(value) == n and all(_is_int(v) for v in value)):
        what = "an int or a pair of ints" if n == 2 else f"an int or {n} ints"
        raise ValueError(f"{op}: {name} must be {what}, but got {value!r}.")
    out = tuple(int(v) for v in value)
    if minimum is not None and min(out) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, but got {value!r}.")
    return out


def pair(op: str, name: str, value, minimum: Optional[int] = None) -> Tuple[int, int]:
    """An int or a pair of ints -> (int, int), each at least ``minimum``."""
    return ntuple(op, name, value, 2, minimum)  # type: ignore[return-value]


def finite(op: str, name: str, value, allow_none: bool = False) -> None:
    """A finite real number (not a bool), or None when ``allow_none``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{op}: {name} must be a finite number{' or None' if allow_none else ''}, "
                         f"but got {value!r}.")


def positive_int(op: str, name: str, value) -> int:
    if type(value) is int and value >= 1:
        return value
    if not _is_int(value) or value < 1:
        raise ValueError(f"{op}: {name} must be a positive int, but got {value!r}.")
    return int(value)


def choice(op: str, name: str, value, choices: Sequence) -> None:
    """``value`` is one of ``choices``, compared by identity for bools (True is not 1 here) and by == otherwise."""
    if type(value) is str and value in choices:  # the common cases first (a str equals only a str)
        return
    if type(value) is bool and id(value) in map(id, choices):  # a bool is compared by identity (True is not 1)
        return
    for c in choices:
        if isinstance(c, bool) or isinstance(value, bool):
            if value is c:
                return
        elif value == c:
            return
    raise ValueError(f"{op}: {name} must be one of {', '.join(map(repr, choices))}, but got {value!r}.")
