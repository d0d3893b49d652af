"""Containers that decide how their children see time (SpikingJelly 2.0.0 names and semantics).

* :class:`SeqToANNContainer`: stateless children; [T, N, *] is folded to [T*N, *] and run once.
* :class:`MultiStepContainer`: stateful single-step children; looped over the T steps.
* :class:`StepModeContainer`: either of the above, or plain single-step, chosen by ``stateful``/``step_mode``.
* Time-last variants (:class:`TLastSeqToANNContainer`, :class:`TLastMultiStepContainer`) for [N, *, T].
* Recurrent wrappers: :class:`ElementWiseRecurrentContainer`, :class:`LinearRecurrentContainer`.

Children of these containers must be in step mode 's'; ``functional.set_step_mode`` does not enter them
(each class says so with ``children_keep_step_mode = True``, which set_step_mode reads: functional needs no
import of this module, and this module imports only ``functional.forward``).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from .. import base
from ..functional.forward import (multi_step_forward, seq_to_ann_forward, t_last_multi_step_forward,
                                  t_last_seq_to_ann_forward)

__all__ = [
    "MultiStepContainer",
    "SeqToANNContainer",
    "TLastMultiStepContainer",
    "TLastSeqToANNContainer",
    "StepModeContainer",
    "ElementWiseRecurrentContainer",
    "LinearRecurrentContainer",
]


def _check_children_single_step(container: nn.Module) -> None:
    for i, m in enumerate(container):
        mode = getattr(m, "step_mode", "s")
        if mode != "s":
            raise ValueError(
                f"{type(container).__name__}: child {i} ({type(m).__name__}) has step_mode={mode!r}, but children of "
                f"this container must be in single-step mode 's' (the container handles the time dimension).")


class _FixedMultiStep(nn.Sequential, base.MultiStepModule):
    """nn.Sequential whose own step mode is always 'm'."""

    children_keep_step_mode = True

    def __init__(self, *args):
        super().__init__(*args)
        _check_children_single_step(self)
        self._step_mode = "m"

    def _sequential_forward(self, x):
        return nn.Sequential.forward(self, x)


class MultiStepContainer(_FixedMultiStep):
    """Sequential container for stateful single-step modules, run step by step over x_seq [T, N, *]
    (see :func:`fastspike.functional.multi_step_forward`). Constructed like ``nn.Sequential``."""

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return multi_step_forward(x_seq, self._sequential_forward)


class SeqToANNContainer(_FixedMultiStep):
    """Sequential container for stateless modules, run once on x_seq [T, N, *] folded to [T*N, *]
    (see :func:`fastspike.functional.seq_to_ann_forward`). Constructed like ``nn.Sequential``."""

    def forward(self, x_seq: torch.Tensor):
        return seq_to_ann_forward(x_seq, self._sequential_forward)


class TLastSeqToANNContainer(_FixedMultiStep):
    """:class:`SeqToANNContainer` for the time-last layout x_seq [N, *, T]."""

    def forward(self, x_seq: torch.Tensor):
        return t_last_seq_to_ann_forward(x_seq, self._sequential_forward)


class TLastMultiStepContainer(_FixedMultiStep):
    """:class:`MultiStepContainer` for the time-last layout x_seq [N, *, T]."""

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        return t_last_multi_step_forward(x_seq, self._sequential_forward)


class StepModeContainer(nn.Sequential, base.StepModule):
    """Sequential container whose time handling follows its own ``step_mode``:

    * 's': the children are called once on x [N, *];
    * 'm' and ``stateful``: the children are looped over x_seq [T, N, *] (multi_step_forward);
    * 'm' and not ``stateful``: x_seq is folded into the batch (seq_to_ann_forward).

    Constructed as ``StepModeContainer(stateful, step_mode, *modules)``.
    """

    children_keep_step_mode = True

    def __init__(self, stateful: bool, step_mode: str = "s", *args):
        super().__init__(*args)
        self.stateful = stateful
        _check_children_single_step(self)
        self.step_mode = step_mode

    def _sequential_forward(self, x):
        return nn.Sequential.forward(self, x)

    def forward(self, x: torch.Tensor):
        if self.step_mode == "s":
            return self._sequential_forward(x)
        if self.stateful:
            return multi_step_forward(x, self._sequential_forward)
        return seq_to_ann_forward(x, self._sequential_forward)


class ElementWiseRecurrentContainer(base.MemoryModule):
    """Self-connection through an element-wise function: i[t] = f(y[t-1], x[t]), y[t] = sub_module(i[t]),
    with y[-1] = 0. ``sub_module`` must keep the shape and be in step mode 's'.

    :param element_wise_function: ``z = f(y, x)``
    """

    children_keep_step_mode = True

    def __init__(self, sub_module: nn.Module, element_wise_function: Callable, step_mode: str = "s"):
        super().__init__()
        self.step_mode = step_mode
        if getattr(sub_module, "step_mode", "s") != "s":
            raise ValueError("ElementWiseRecurrentContainer: sub_module must be in step mode 's'.")
        self.sub_module = sub_module
        self.element_wise_function = element_wise_function
        self.register_memory("y", None)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.y
        if y is None:
            y = torch.zeros_like(x)
        elif not isinstance(y, torch.Tensor) or y.shape != x.shape:
            raise ValueError(f"ElementWiseRecurrentContainer: the stored output has shape {tuple(y.shape)} but the "
                             f"input has shape {tuple(x.shape)}; call functional.reset_net(net) between sequences.")
        self.y = self.sub_module(self.element_wise_function(y, x))
        return self.y

    def extra_repr(self) -> str:
        return f"element-wise function={self.element_wise_function}, step_mode={self.step_mode}"


class LinearRecurrentContainer(base.MemoryModule):
    """Self-connection through a linear layer: i[t] = Linear([x[t], y[t-1]]), y[t] = sub_module(i[t]),
    with y[-1] = 0. The connection is ``rc = nn.Linear(in_features + out_features, in_features, bias)``.

    x[t] has shape [N, *, in_features] and y[t] [N, *, out_features]; ``sub_module`` must be in step mode 's'.
    """

    children_keep_step_mode = True

    def __init__(self, sub_module: nn.Module, in_features: int, out_features: int, bias: bool = True,
                 step_mode: str = "s") -> None:
        super().__init__()
        self.step_mode = step_mode
        if getattr(sub_module, "step_mode", "s") != "s":
            raise ValueError("LinearRecurrentContainer: sub_module must be in step mode 's'.")
        self.sub_module_out_features = out_features
        self.rc = nn.Linear(in_features + out_features, in_features, bias)
        self.sub_module = sub_module
        self.register_memory("y", None)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.y
        shape = (*x.shape[:-1], self.sub_module_out_features)
        if y is None:
            y = x.new_zeros(shape)
        elif tuple(y.shape) != shape:
            raise ValueError(f"LinearRecurrentContainer: the stored output has shape {tuple(y.shape)} but this "
                             f"input needs {shape}; call functional.reset_net(net) before changing the batch shape.")
        self.y = self.sub_module(self.rc(torch.cat((x, y), dim=-1)))
        return self.y

    def extra_repr(self) -> str:
        return f", step_mode={self.step_mode}"


# containers that fix their children's step mode (children_keep_step_mode): functional.set_step_mode does not
# enter them
KEEP_STEP_MODE_TYPES = (
    StepModeContainer,
    MultiStepContainer,
    SeqToANNContainer,
    TLastMultiStepContainer,
    TLastSeqToANNContainer,
    ElementWiseRecurrentContainer,
    LinearRecurrentContainer,
)
