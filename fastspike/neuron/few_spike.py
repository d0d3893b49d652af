"""Few-spike (FS) coding neurons (Stoeckl & Maass 2021; SpikingJelly 2.0's ``neuron.few_spike``).

A ``FewSpikeTable(theta, h, d)`` holds K per-step thresholds theta_k, reset amounts h_k and output weights
d_k. ``FewSpikeNode(table)`` approximates an activation function with K spikes: starting from v = x, at step
k it fires z_k = spike(v - theta_k), outputs d_k z_k and lowers v by h_k z_k
(fastspike.neuron.dynamics.few_spike_table). Single-step mode returns the sum of the K outputs; multi-step
mode takes K steps [K, N, *], codes their sum and returns the K weighted spikes.

* ``OutlierAwareThresholdNode``: codes |x| with ``table`` where |x| <= split_threshold and with
  ``outlier_table`` elsewhere (x optionally clamped to +-clamp_value), then restores the sign.
* ``HGNode``: several tables, one per region of x delimited by the increasing ``gate_thresholds``.
Buffers: theta, h, d (FewSpikeNode, plus outlier_theta/h/d), region_theta/h/d and gate_thresholds (HGNode).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from .. import surrogate
from ..base import StepModule
from .dynamics import few_spike_table

__all__ = ["FewSpikeNode", "FewSpikeTable", "HGNode", "OutlierAwareThresholdNode"]

TensorLike1D = Union[torch.Tensor, Sequence[float]]


def _vector(name: str, value: TensorLike1D) -> torch.Tensor:
    t = torch.as_tensor(value)
    if t.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor or sequence, but got shape {tuple(t.shape)}.")
    if t.numel() == 0:
        raise ValueError(f"{name} must be non-empty.")
    if torch.is_complex(t):
        raise TypeError(f"{name} must be a real-valued tensor or sequence, but got dtype {t.dtype}.")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must contain only finite values, but got {t.tolist()}.")
    return t.detach().clone()


def _like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return t.to(device=ref.device, dtype=ref.dtype).clone()


def _check_table(name: str, table, K: Optional[int] = None) -> None:
    if not isinstance(table, FewSpikeTable):
        raise TypeError(f"{name} must be FewSpikeTable, but got {type(table).__name__}.")
    if K is not None and table.K != K:
        raise ValueError(f"{name}.K must be {K}, but got {table.K}.")


class FewSpikeTable:
    """K coding steps: thresholds ``theta``, reset amounts ``h`` and output weights ``d`` (1-D, same length)."""

    def __init__(self, theta: TensorLike1D, h: TensorLike1D, d: TensorLike1D):
        self.theta = _vector("theta", theta)
        self.h = _vector("h", h)
        self.d = _vector("d", d)
        if not self.theta.shape == self.h.shape == self.d.shape:
            raise ValueError(f"theta, h and d must have the same shape, but got {tuple(self.theta.shape)}, "
                             f"{tuple(self.h.shape)}, {tuple(self.d.shape)}.")

    @property
    def K(self) -> int:
        return self.theta.numel()


class FewSpikeNode(nn.Module, StepModule):
    """Few-spike neuron with one table (see the module docstring)."""

    def __init__(self, table: FewSpikeTable, surrogate_function: Optional[surrogate.SurrogateFunctionBase] = None,
                 step_mode: str = "s"):
        super().__init__()
        _check_table("table", table)
        self.register_buffer("theta", table.theta.clone())
        self.register_buffer("h", table.h.clone())
        self.register_buffer("d", table.d.clone())
        self.surrogate_function = surrogate.Sigmoid() if surrogate_function is None else surrogate_function
        self.step_mode = step_mode

    @property
    def K(self) -> int:
        return self.theta.numel()

    @staticmethod
    def _check_input(x, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, but got {type(x).__name__}.")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating point tensor, but got {x.dtype}.")

    def _run_table(self, gate, theta, h, d, return_sequence: bool) -> torch.Tensor:
        return few_spike_table(gate, theta, h, d, self.surrogate_function, return_sequence)

    def _forward_from_gate(self, gate: torch.Tensor, return_sequence: bool) -> torch.Tensor:
        return self._run_table(gate, self.theta, self.h, self.d, return_sequence)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The coded activation of x: the sum of the K weighted spikes."""
        self._check_input(x, "x")
        return self._forward_from_gate(x, return_sequence=False)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Code x_seq.sum(0) ([K, N, *] in) and return the K weighted spikes [K, N, *]."""
        self._check_input(x_seq, "x_seq")
        if x_seq.shape[0] != self.K:
            raise ValueError(f"x_seq.shape[0] must equal K={self.K}, but got {x_seq.shape[0]}.")
        return self._forward_from_gate(x_seq.sum(dim=0), return_sequence=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self.single_step_forward(x)
        return self.multi_step_forward(x)

    def extra_repr(self) -> str:
        return f"K={self.K}, step_mode={self.step_mode}"


class OutlierAwareThresholdNode(FewSpikeNode):
    """Few-spike coding of |x| with a second table for outliers (|x| > split_threshold)."""

    def __init__(self, table: FewSpikeTable, outlier_table: FewSpikeTable, split_threshold: float,
                 clamp_value: Optional[float] = None,
                 surrogate_function: Optional[surrogate.SurrogateFunctionBase] = None, step_mode: str = "s"):
        _check_table("table", table)
        _check_table("outlier_table", outlier_table, table.K)
        split_threshold = float(split_threshold)
        if not math.isfinite(split_threshold) or split_threshold < 0:
            raise ValueError(f"split_threshold must be a finite non-negative value, but got {split_threshold}.")
        if clamp_value is not None:
            clamp_value = float(clamp_value)
            if not math.isfinite(clamp_value) or clamp_value <= 0:
                raise ValueError(f"clamp_value must be finite and positive when it is not None, but got {clamp_value}.")
            if clamp_value < split_threshold:
                raise ValueError(f"clamp_value ({clamp_value}) must be no smaller than split_threshold "
                                 f"({split_threshold}).")
        super().__init__(table, surrogate_function, step_mode)
        self.register_buffer("outlier_theta", _like(outlier_table.theta, table.theta))
        self.register_buffer("outlier_h", _like(outlier_table.h, table.h))
        self.register_buffer("outlier_d", _like(outlier_table.d, table.d))
        self.split_threshold = split_threshold
        self.clamp_value = clamp_value

    def _forward_from_gate(self, gate: torch.Tensor, return_sequence: bool) -> torch.Tensor:
        if self.clamp_value is not None:
            gate = gate.clamp(min=-self.clamp_value, max=self.clamp_value)
        sign = torch.sign(gate).detach()
        magnitude = gate.abs()
        inlier = magnitude <= self.split_threshold

        def pick(normal, outlier):
            return (torch.where(inlier, a, b) for a, b in zip(normal, outlier))

        out = self._run_table(magnitude, pick(self.theta, self.outlier_theta), pick(self.h, self.outlier_h),
                              pick(self.d, self.outlier_d), return_sequence)
        return out * (sign.unsqueeze(0) if return_sequence else sign)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", split_threshold={self.split_threshold}, clamp_value={self.clamp_value}"


class HGNode(FewSpikeNode):
    """Few-spike coding with a table per region of x: region i holds gate_thresholds[i-1] < x <=
    gate_thresholds[i] (``torch.bucketize``), len(tables) = len(gate_thresholds) + 1."""

    def __init__(self, tables: Sequence[FewSpikeTable], gate_thresholds: TensorLike1D,
                 surrogate_function: Optional[surrogate.SurrogateFunctionBase] = None, step_mode: str = "s"):
        if len(tables) == 0:
            raise ValueError("tables must contain at least one FewSpikeTable.")
        for i, table in enumerate(tables):
            _check_table(f"tables[{i}]", table)
        K = tables[0].K
        for i, table in enumerate(tables[1:], start=1):
            _check_table(f"tables[{i}]", table, K)
        thresholds = torch.as_tensor(gate_thresholds)
        if thresholds.dim() != 1:
            raise ValueError(f"gate_thresholds must be a 1-D tensor or sequence, but got shape "
                             f"{tuple(thresholds.shape)}.")
        if torch.is_complex(thresholds):
            raise TypeError("gate_thresholds must be real-valued.")
        ref = tables[0].theta
        thresholds = thresholds.to(device=ref.device, dtype=ref.dtype)
        if thresholds.numel() != len(tables) - 1:
            raise ValueError(f"gate_thresholds must have length len(tables) - 1, but got {thresholds.numel()} for "
                             f"{len(tables)} tables.")
        if not torch.isfinite(thresholds).all():
            raise ValueError("gate_thresholds must contain only finite values.")
        if thresholds.numel() > 1 and not torch.all(thresholds[1:] > thresholds[:-1]):
            raise ValueError(f"gate_thresholds must be strictly increasing, but got {thresholds.tolist()}.")
        nn.Module.__init__(self)
        self.surrogate_function = surrogate.Sigmoid() if surrogate_function is None else surrogate_function
        self.step_mode = step_mode
        self.register_buffer("region_theta", torch.stack([_like(t.theta, ref) for t in tables]))
        self.register_buffer("region_h", torch.stack([_like(t.h, tables[0].h) for t in tables]))
        self.register_buffer("region_d", torch.stack([_like(t.d, tables[0].d) for t in tables]))
        self.register_buffer("gate_thresholds", thresholds)

    @property
    def K(self) -> int:
        return self.region_theta.shape[1]

    def _forward_from_gate(self, gate: torch.Tensor, return_sequence: bool) -> torch.Tensor:
        region = torch.bucketize(gate.detach(), self.gate_thresholds)

        def per_region(table):
            return (table[:, k][region] for k in range(self.K))

        return self._run_table(gate, per_region(self.region_theta), per_region(self.region_h),
                               per_region(self.region_d), return_sequence)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", regions={self.region_theta.shape[0]}, gate_thresholds={self.gate_thresholds}"
