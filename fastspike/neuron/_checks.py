"""Argument checks shared by the neuron classes: clear ValueError / TypeError messages that name the class,
the argument, the value and what is expected (where SpikingJelly uses bare asserts)."""
from __future__ import annotations

import math


def number(cls: str, name: str, value, *, gt=None, lt=None, ge=None) -> float:
    """``value`` as a float, checked to be a real number (bool excluded) within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{cls}: {name} must be a number, but got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{cls}: {name} must be finite, but got {value}.")
    for bound, ok, word in ((gt, lambda b: value > b, ">"), (lt, lambda b: value < b, "<"),
                            (ge, lambda b: value >= b, ">=")):
        if bound is not None and not ok(bound):
            raise ValueError(f"{cls}: {name} must be {word} {bound}, but got {value}.")
    return value


def flag(cls: str, name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{cls}: {name} must be a bool, but got {value!r}.")
    return value


def multi_step_only(cls: str, step_mode) -> None:
    if step_mode != "m":
        raise ValueError(f"{cls} runs in multi-step mode only: step_mode must be 'm', but got {step_mode!r}.")


def tau(cls: str, value, name: str = "tau") -> float:
    """A membrane time constant: a finite number > 1 (1/tau is the leak per step). ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not value > 1.0:
        raise ValueError(f"{cls}: {name} must be a finite number > 1, but got {value!r}.")
    return float(value)
