"""Parallel Spiking Neurons (Fang et al., NeurIPS 2023) with SpikingJelly 2.0.0's arguments, defaults, step
modes, parameter names and state_dict keys, so its checkpoints load unchanged.

* ``PSN(T)``: H = W X + B over all T steps at once (W [T, T], B [T, 1]), S = Heaviside(H). Multi-step only.
* ``MaskedPSN(k, T, lambda_init=0.)``: W masked to the causal band of width k, blended with the all-ones
  mask by ``lambda_`` (progressive masking: M(lambda) = lambda M_k + (1 - lambda) J; set ``lambda_`` during
  training). Single-step mode works once lambda_ >= 1.
* ``SlidingPSN(k, exp_init=True)``: k weights shared across time (a causal convolution in time), scalar bias.

Multi-step calls run ``fastspike.ops.psn`` (fused C++ on the CPU, Triton on CUDA, threshold and surrogate
gradient inside the kernel); single-step calls run the reference recurrence with an input queue. MaskedPSN and
SlidingPSN define SpikingJelly 2.0's functional forwards (states: (time_step, queue) and (queue,)); their stateful
forwards run through them.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from .. import surrogate
from ..base import BackendMixin, MemoryModule, MultiStepModule
from ..ops.psn import psn

__all__ = ["PSN", "MaskedPSN", "SlidingPSN"]


def _check_seq(module: nn.Module, x_seq, T: Optional[int] = None) -> None:
    name = type(module).__name__
    if not isinstance(x_seq, torch.Tensor):
        raise TypeError(f"{name}: input must be a torch.Tensor, but got {type(x_seq).__name__}.")
    if not x_seq.is_floating_point():
        raise TypeError(f"{name}: input must be a floating-point tensor, but got {x_seq.dtype}.")
    if x_seq.dim() < 2:
        raise ValueError(f"{name} in multi-step mode expects input of shape [T, N, *], but got shape "
                         f"{tuple(x_seq.shape)}.")
    if T is not None and x_seq.shape[0] != T:
        raise ValueError(f"{name} was built with T={T} time steps, but the input has {x_seq.shape[0]} steps "
                         f"(shape {tuple(x_seq.shape)}). Build it with T={x_seq.shape[0]} or feed [T={T}, N, *].")


def _check_k(name: str, k) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name}: k (the order) must be an int >= 1, but got {k!r}.")


def _check_T(name: str, T) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"{name}: T (the number of time steps) must be an int >= 1, but got {T!r}.")


class PSN(nn.Module, MultiStepModule, BackendMixin):
    """Parallel Spiking Neuron: H = W X + B, S = Heaviside(H), over T steps at once (multi-step only).

    weight: [T, T] (Kaiming-uniform init, a = sqrt(5)); bias: [T, 1] (init -1, i.e. a threshold of 1).
    """

    def __init__(self, T: int, surrogate_function: surrogate.SurrogateFunctionBase = surrogate.ATan(),
                 backend: str = "auto"):
        _check_T("PSN", T)
        super().__init__()
        self._step_mode = "m"
        self.T = T
        self.surrogate_function = surrogate_function
        self.backend = backend
        self.weight = nn.Parameter(torch.zeros([T, T]))
        self.bias = nn.Parameter(torch.zeros([T, 1]))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.constant_(self.bias, -1.0)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        _check_seq(self, x_seq, self.T)
        return psn(x_seq, self.weight, self.bias, self.surrogate_function, 0, self.backend)

    def extra_repr(self) -> str:
        return f"T={self.T}, backend={self.backend}"


class MaskedPSN(MemoryModule, BackendMixin):
    """Masked PSN of order k: W restricted to the causal band t - k < j <= t, reached progressively.

    ``lambda_`` (buffer ``_lambda_``, init ``lambda_init``) blends the band mask ``mask0`` with the all-ones
    ``mask1``: W_eff = (lambda mask0 + (1 - lambda) mask1) * W; at lambda >= 1 only the band is used and the
    kernels skip everything outside it. Single-step mode needs lambda_ >= 1 and at most T calls per sequence.
    """

    def __init__(self, k: int, T: int, lambda_init: float = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.ATan(), step_mode: str = "s",
                 backend: str = "auto"):
        _check_k("MaskedPSN", k)
        _check_T("MaskedPSN", T)
        if k > T:
            raise ValueError(f"MaskedPSN: the order k={k} is larger than the number of time steps T={T}; "
                             "k must satisfy 1 <= k <= T.")
        super().__init__()
        self.register_memory("time_step", 0)
        self.register_memory("queue", [])
        self.step_mode = step_mode
        self.k = k
        self.T = T
        self.surrogate_function = surrogate_function
        self.backend = backend
        self.register_buffer("_lambda_", torch.as_tensor(float(lambda_init)))
        self.weight = nn.Parameter(torch.zeros([T, T]))
        self.bias = nn.Parameter(torch.zeros([T, 1]))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.constant_(self.bias, -1.0)
        ones = torch.ones([T, T])
        self.register_buffer("mask0", torch.tril(ones) * torch.triu(ones, -(k - 1)))
        self.register_buffer("mask1", ones)

    @property
    def lambda_(self) -> torch.Tensor:
        return self._lambda_

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        self._lambda_.fill_(value)

    @staticmethod
    def gen_masked_weight(lambda_: torch.Tensor, mask0: torch.Tensor, mask1: torch.Tensor,
                          weight: torch.Tensor) -> torch.Tensor:
        return (lambda_ * mask0 + (1.0 - lambda_) * mask1) * weight

    def masked_weight(self) -> torch.Tensor:
        if self.lambda_ >= 1.0:
            return self.weight * self.mask0
        return self.gen_masked_weight(self.lambda_, self.mask0, self.mask1, self.weight)

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """One step on explicit states (time_step, queue): the masked row t of W applied to the last k inputs."""
        x = inputs[0]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"MaskedPSN: input must be a torch.Tensor, but got {type(x).__name__}.")
        if self.lambda_ < 1.0:
            raise ValueError(f"MaskedPSN can run in single-step mode only once lambda_ >= 1 (the mask is then "
                             f"causal), but lambda_ = {float(self.lambda_)}. Use step_mode='m' while masking "
                             "progressively.")
        t, queue = states
        if t + 1 > self.T:
            raise OverflowError(f"MaskedPSN(T={self.T}) has run {t + 1} time steps; call reset() (or "
                                "functional.reset_net) between sequences.")
        queue = list(queue) + [x.flatten()]
        if len(queue) > self.k:
            queue = queue[1:]
        w = self.masked_weight()[t, t + 1 - len(queue): t + 1]
        h = torch.sum(w.unsqueeze(-1) * torch.stack(queue), 0)
        spike = self.surrogate_function(h + self.bias[t])
        return (spike.view(x.shape),), (t + 1, queue)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """The whole sequence [T, N, *] at once; the states are not used and returned unchanged."""
        x_seq = inputs[0]
        _check_seq(self, x_seq, self.T)
        if torch.compiler.is_compiling():
            # no branch on the buffer's value in a traced graph: at lambda_ >= 1 the blend with lambda_ clamped to 1
            # is mask0 * W exactly, which the dense kernel runs (zeros outside the band get zero gradient)
            w = self.gen_masked_weight(self.lambda_.clamp(max=1.0), self.mask0, self.mask1, self.weight)
            return (psn(x_seq, w, self.bias, self.surrogate_function, 0, self.backend),), states
        if self.lambda_ >= 1.0:
            return (psn(x_seq, self.weight, self.bias, self.surrogate_function, self.k, self.backend),), states
        w = self.gen_masked_weight(self.lambda_, self.mask0, self.mask1, self.weight)
        return (psn(x_seq, w, self.bias, self.surrogate_function, 0, self.backend),), states

    def extra_repr(self) -> str:
        return super().extra_repr() + f", lambda_={self.lambda_}, T={self.T}, backend={self.backend}"


class SlidingPSN(MemoryModule, BackendMixin):
    """Sliding PSN of order k: H[t] = sum_i W[i] X[t - k + 1 + i] + B, weights shared across time.

    weight: [k], initialised to (..., 1/4, 1/2, 1) with ``exp_init`` (Kaiming uniform otherwise); bias: a scalar
    (init -1). Multi-step mode accepts any T (the Toeplitz time matrix is built for the input's T; T < k uses
    the last T weights); single-step mode keeps a queue of the last k inputs.
    """

    def __init__(self, k: int, exp_init: bool = True,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.ATan(), step_mode: str = "s",
                 backend: str = "auto"):
        _check_k("SlidingPSN", k)
        super().__init__()
        self.register_memory("queue", [])
        self.step_mode = step_mode
        self.k = k
        self.surrogate_function = surrogate_function
        self.backend = backend
        if exp_init:
            weight = torch.pow(2.0, -torch.arange(k - 1, -1, -1, dtype=torch.float32))
        else:
            weight = torch.ones([1, k])
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            weight = weight[0]
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.as_tensor(-1.0))

    def gen_gemm_weight(self, T: int) -> torch.Tensor:
        """The [T, T] causal Toeplitz matrix: row t holds weight[k-1-d] at column t-d for 0 <= d < k."""
        t = torch.arange(T, device=self.weight.device)
        d = t[:, None] - t[None, :]
        valid = (d >= 0) & (d < self.k)
        idx = (self.k - 1 - d).clamp(0, self.k - 1)
        return torch.where(valid, self.weight[idx], torch.zeros((), dtype=self.weight.dtype,
                                                                device=self.weight.device))

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """One step on the explicit state (queue,): the last k weights applied to the last k inputs."""
        x = inputs[0]
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"SlidingPSN: input must be a torch.Tensor, but got {type(x).__name__}.")
        queue = list(states[0]) + [x.flatten()]
        if len(queue) > self.k:
            queue = queue[1:]
        w = self.weight[self.k - len(queue): self.k].unsqueeze(-1)
        h = torch.sum(w * torch.stack(queue), 0)
        return (self.surrogate_function(h + self.bias).view(x.shape),), (queue,)

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs):
        """The whole sequence [T, N, *] at once (any T); the state is not used and returned unchanged."""
        x_seq = inputs[0]
        _check_seq(self, x_seq)
        T = x_seq.shape[0]
        w = self.gen_gemm_weight(T)
        return (psn(x_seq, w, self.bias.expand(T), self.surrogate_function, min(self.k, T), self.backend),), states

    def extra_repr(self) -> str:
        return super().extra_repr() + f", order={self.k}, backend={self.backend}"
