"""Neurons without reset, solved along time by the linear-recurrence op ``fastspike.ops.scan.linear_scan``.

* ``NonSpikingIFNode(decode=None)`` and ``NonSpikingLIFNode(tau=2., decode=None)``: SpikingJelly 2.0.0's
  readout neurons (multi-step only). Each call starts from V = 0 and returns the membrane potentials,
  decoded by ``decode``: 'max-mem', 'max-abs-mem', 'mean-mem', 'last_mem', or None for the list of the T
  per-step potentials (SpikingJelly's return type). ``.v`` holds the last potential. A subclass that
  redefines ``neuronal_charge`` (SpikingJelly's extension point) runs it step by step instead of the scan.
* ``NoResetLIFNode``: LIFNode's charge and fire with the reset disabled (V is never pulled back after a
  spike), so V is a linear recurrence V[t] = a V[t-1] + b[t] and the whole sequence is one scan.
  Stateful like LIFNode (``.v`` persists until reset), step modes 's' and 'm', ``store_v_seq``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .. import surrogate
from ..base import BackendMixin, MemoryModule, MultiStepModule
from ..ops import _backend
from . import _checks
from ..ops.scan import linear_scan

__all__ = ["NonSpikingBaseNode", "NonSpikingIFNode", "NonSpikingLIFNode", "NoResetLIFNode"]

_DECODES = (None, "max-mem", "max-abs-mem", "mean-mem", "last_mem")


class NonSpikingBaseNode(nn.Module, MultiStepModule, BackendMixin):
    """Base of the readout neurons (SpikingJelly's NonSpikingBaseNode): a subclass defines
    ``neuronal_charge(x)`` (update ``self.v``), run step by step from V = 0 on every call."""

    _scan_class = None  # set on the built-in subclasses whose charge is a linear recurrence (one scan)

    def __init__(self, decode: Optional[str] = None, backend: str = "auto"):
        if decode not in _DECODES:
            raise ValueError(f"{type(self).__name__}: decode must be one of {_DECODES}, but got {decode!r}.")
        super().__init__()
        self._step_mode = "m"
        self.decode = decode
        self.backend = backend

    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define neuronal_charge(x) (update self.v from x).")

    def _decay_and_drive(self, x_seq: torch.Tensor):
        raise NotImplementedError

    def forward(self, x_seq: torch.Tensor):
        if not isinstance(x_seq, torch.Tensor) or not x_seq.is_floating_point():
            raise TypeError(f"{type(self).__name__}: input must be a floating-point tensor of shape [T, N, *].")
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} is multi-step only and expects input of shape [T, N, *], "
                             f"but got shape {tuple(x_seq.shape)}.")
        scan_class = self._scan_class
        if scan_class is None or type(self).neuronal_charge is not scan_class.neuronal_charge:
            # a subclass redefined the charge (SpikingJelly's extension point): run it step by step
            self.v = torch.zeros_like(x_seq[0])
            steps = []
            for x in x_seq:
                self.neuronal_charge(x)
                steps.append(self.v)
            v_seq = torch.stack(steps)
        else:
            a, b = self._decay_and_drive(x_seq)
            v_seq = linear_scan(a, b, None, backend=self.backend)
        self.v = v_seq[-1]
        if self.decode == "max-mem":
            return v_seq.max(0).values
        if self.decode == "max-abs-mem":
            hi = v_seq.max(0).values
            lo = v_seq.min(0).values
            return torch.where(hi.abs() > lo.abs(), hi, lo)
        if self.decode == "mean-mem":
            return v_seq.mean(0)
        if self.decode == "last_mem":
            return v_seq[-1]
        return list(v_seq.unbind(0))

    def extra_repr(self) -> str:
        return f"decode={self.decode}, backend={self.backend}"


class NonSpikingIFNode(NonSpikingBaseNode):
    """V[t] = V[t-1] + X[t], V[-1] = 0; outputs (decoded) membrane potentials."""

    def __init__(self, decode: Optional[str] = None, backend: str = "auto"):
        super().__init__(decode, backend)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x

    def _decay_and_drive(self, x_seq):
        return 1.0, x_seq


class NonSpikingLIFNode(NonSpikingBaseNode):
    """V[t] = V[t-1] + (X[t] - V[t-1]) / tau, V[-1] = 0; outputs (decoded) membrane potentials."""

    def __init__(self, tau: float = 2.0, decode: Optional[str] = None, backend: str = "auto"):
        super().__init__(decode, backend)
        self.tau = _checks.tau("NonSpikingLIFNode", tau)

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + (x - self.v) / self.tau

    def _decay_and_drive(self, x_seq):
        return 1.0 - 1.0 / self.tau, x_seq / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, " + super().extra_repr()


NonSpikingIFNode._scan_class = NonSpikingIFNode
NonSpikingLIFNode._scan_class = NonSpikingLIFNode


class NoResetLIFNode(MemoryModule):
    """Leaky integrate-and-fire without reset: LIFNode's charge, S = Heaviside(V - v_threshold), V kept.

    decay_input=True:  V[t] = V[t-1] + (X[t] - (V[t-1] - v_rest)) / tau
    decay_input=False: V[t] = V[t-1] - (V[t-1] - v_rest) / tau + X[t]
    v_rest (``v_reset`` in LIFNode's signature) is the resting and initial potential (0 if None). The whole
    sequence is one ``linear_scan`` (C++ on the CPU, a Triton parallel scan on CUDA); the spike function is
    the surrogate module applied elementwise.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(), step_mode: str = "s",
                 backend: str = "auto", store_v_seq: bool = False):
        tau = _checks.tau("NoResetLIFNode", tau)
        super().__init__()
        self.v_rest = 0.0 if v_reset is None else float(v_reset)
        self.register_memory("v", self.v_rest)
        self.tau = tau
        self.decay_input = bool(decay_input)
        self.v_threshold = float(v_threshold)
        self.v_reset = v_reset
        self.surrogate_function = surrogate_function
        self.step_mode = step_mode
        self.store_v_seq = bool(store_v_seq)
        self.v_seq = None
        _backend.check_backend_name(backend)
        self.backend = backend

    def _drive(self, x: torch.Tensor) -> torch.Tensor:
        # V[t] = (1 - 1/tau) V[t-1] + drive[t]
        if self.decay_input:
            return (x + self.v_rest) / self.tau
        return x + self.v_rest / self.tau

    def _v0(self, x_step: torch.Tensor) -> torch.Tensor:
        v = self.v
        if not isinstance(v, torch.Tensor):
            return torch.full_like(x_step, float(v))
        if v.shape != x_step.shape:
            raise RuntimeError(f"NoResetLIFNode: the stored membrane state v has shape {tuple(v.shape)} but this "
                               f"input step has shape {tuple(x_step.shape)}; call functional.reset_net(net) "
                               "between independent batches.")
        return v.to(dtype=x_step.dtype, device=x_step.device)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if not isinstance(x_seq, torch.Tensor) or not x_seq.is_floating_point():
            raise TypeError("NoResetLIFNode: input must be a floating-point tensor.")
        if x_seq.dim() < 2:
            raise ValueError(f"NoResetLIFNode in step_mode='m' expects input of shape [T, N, *], but got shape "
                             f"{tuple(x_seq.shape)}.")
        v_seq = linear_scan(1.0 - 1.0 / self.tau, self._drive(x_seq), self._v0(x_seq[0]), backend=self.backend)
        self.v = v_seq[-1]
        if self.store_v_seq:
            self.v_seq = v_seq
        return self.surrogate_function(v_seq - self.v_threshold)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("NoResetLIFNode: input must be a floating-point tensor.")
        if x.dim() < 1:
            raise ValueError("NoResetLIFNode in step_mode='s' expects input of shape [N, *].")
        v = self._v0(x)
        v = (1.0 - 1.0 / self.tau) * v + self._drive(x)
        self.v = v
        if self.store_v_seq:
            self.v_seq = v.unsqueeze(0) if self.v_seq is None else torch.cat((self.v_seq, v.unsqueeze(0)))
        return self.surrogate_function(v - self.v_threshold)

    def reset(self) -> None:
        super().reset()
        self.v_seq = None

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, decay_input={self.decay_input}, v_threshold={self.v_threshold}, "
                f"v_reset={self.v_reset}, step_mode={self.step_mode}, backend={self.backend}")
