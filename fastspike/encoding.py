"""Encoders that turn real-valued inputs into spikes (SpikingJelly 2.0.0's ``activation_based.encoding``).

* Stateless (a fresh encoding every call): :class:`PoissonEncoder` (rate code, spike with probability x).
* Stateful (encode once, then emit one step per call, cycling with period T; ``functional.reset_net``
  starts over): :class:`PeriodicEncoder` (replays a given spike train), :class:`LatencyEncoder` (one spike,
  earlier for larger x), :class:`WeightedPhaseEncoder` (binary expansion of x over K phases).
* Population codes for reinforcement-learning observations: :class:`PopEncoder` (Gaussian receptive fields),
  :class:`PopSpikeEncoderDeterministic` (their activity through IF neurons), :class:`PopSpikeEncoderRandom`
  (Bernoulli samples of it).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import base, functional, neuron, surrogate
from ._errors import ArgumentError

__all__ = ["StatelessEncoder", "StatefulEncoder", "PeriodicEncoder", "LatencyEncoder", "PoissonEncoder",
           "WeightedPhaseEncoder", "PopSpikeEncoderDeterministic", "PopSpikeEncoderRandom", "PopEncoder"]


class StatelessEncoder(nn.Module, base.StepModule):
    """An encoder without state: ``forward(x)`` encodes every call anew."""

    def __init__(self, step_mode="s"):
        super().__init__()
        self.step_mode = step_mode

    def forward(self, x: torch.Tensor):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")


class StatefulEncoder(base.MemoryModule):
    """An encoder that encodes its first input into a spike train [T, *] (``single_step_encode``) and then
    returns step ``t`` of it at the t-th call (cycling with period T) until ``reset()``.

    In step mode 'm' every element of the input sequence counts as one call.
    """

    def __init__(self, T: int, step_mode="s"):
        super().__init__()
        self.step_mode = step_mode
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ArgumentError(f"{type(self).__name__}: T must be an int >= 1, but got {T!r}.")
        self.T = T
        self.register_memory("spike", None)
        self.register_memory("t", 0)

    def single_step_forward(self, x: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.spike is None:
            if x is None:
                raise ValueError(f"{type(self).__name__}: the first call after a reset needs the input x to encode.")
            self.spike = self.single_step_encode(x)
        out = self.spike[self.t]
        self.t = (self.t + 1) % self.spike.shape[0]
        return out

    def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement single_step_encode(x) -> [T, *]")

    def extra_repr(self) -> str:
        return f"T={self.T}"


class PeriodicEncoder(StatefulEncoder):
    """Replays a spike train [T, *] periodically. The constructor's ``spike`` sets T; the train itself is the
    first input: ``encoder(spike)`` returns ``spike[0]``, then ``spike[1]``, ... (the argument of later calls
    is ignored until ``reset()``)."""

    def __init__(self, spike: torch.Tensor, step_mode="s"):
        if not isinstance(spike, torch.Tensor) or spike.dim() < 1:
            raise ValueError("PeriodicEncoder: spike must be a spike train tensor [T, *].")
        super().__init__(spike.shape[0], step_mode)

    def single_step_encode(self, spike: torch.Tensor) -> torch.Tensor:
        return spike


class LatencyEncoder(StatefulEncoder):
    """One spike per input element within T steps, earlier for larger x in [0, 1]: at step
    round((T - 1)(1 - x)) ('linear') or round(T - 1 - ln(alpha x + 1)) with alpha = e^(T-1) - 1 ('log').
    The train [T, *] has x's dtype."""

    def __init__(self, T: int, enc_function="linear", step_mode="s"):
        super().__init__(T, step_mode)
        if enc_function == "log":
            self.alpha = math.exp(T - 1.0) - 1.0
        elif enc_function != "linear":
            raise NotImplementedError(f"LatencyEncoder: enc_function must be 'linear' or 'log', but got "
                                      f"{enc_function!r}.")
        self.enc_function = enc_function

    def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
        if self.enc_function == "log":
            t_fire = (self.T - 1.0 - torch.log(self.alpha * x + 1.0)).round().long()
        else:
            t_fire = ((self.T - 1.0) * (1.0 - x)).round().long()
        return F.one_hot(t_fire, num_classes=self.T).to(x).movedim(-1, 0)


class PoissonEncoder(StatelessEncoder):
    """Rate code: each element spikes with probability x (x in [0, 1]), independently at every call:
    ``rand_like(x) <= x``, in x's dtype."""

    def __init__(self, step_mode="s"):
        super().__init__(step_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand_like(x).le(x).to(x)


class WeightedPhaseEncoder(StatefulEncoder):
    """Weighted phase code (Kim et al. 2018): x in [0, 1 - 2^-K] as its K-bit binary expansion, phase i
    (weight 2^-(i+1)) spiking when that bit is 1; the train [K, *] is float32."""

    def __init__(self, K: int, step_mode="s"):
        super().__init__(K, step_mode)

    def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
        top = 1 - 2 ** (-self.T)
        if not bool(((x >= 0) & (x <= top)).all()):
            raise ArgumentError(f"WeightedPhaseEncoder: x must lie in [0, 1 - 2^-K] = [0, {top}] for K={self.T}.")
        rest = x.clone()
        spike = torch.zeros((self.T,) + tuple(x.shape), device=x.device)
        w = 0.5
        for i in range(self.T):
            spike[i] = rest >= w
            rest -= w * spike[i]
            w *= 0.5
        return spike


def _population(obs_dim: int, pop_dim: int, mean_range, std):
    """Learnable Gaussian receptive fields: means evenly spaced over mean_range, one width ``std``."""
    mean = torch.linspace(mean_range[0], mean_range[1], pop_dim).expand(1, obs_dim, pop_dim).clone()
    return nn.Parameter(mean), nn.Parameter(torch.full_like(mean, std))


def _activity(obs: torch.Tensor, obs_dim: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return torch.exp(-0.5 * ((obs.view(-1, obs_dim, 1) - mean) / std).square()).flatten(1)


class PopEncoder(nn.Module):
    """Population code of observations [N, obs_dim]: each dimension drives ``pop_dim`` Gaussian receptive
    fields; the activity [N, obs_dim * pop_dim] is repeated over ``spike_ts`` steps (real-valued, not spikes)."""

    def __init__(self, obs_dim, pop_dim, spike_ts, mean_range, std):
        super().__init__()
        self.obs_dim = obs_dim
        self.pop_dim = pop_dim
        self.encoder_neuron_num = obs_dim * pop_dim
        self.spike_ts = spike_ts
        self.mean, self.std = _population(obs_dim, pop_dim, mean_range, std)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return _activity(obs, self.obs_dim, self.mean, self.std).unsqueeze(0).repeat(self.spike_ts, 1, 1)


class PopSpikeEncoderDeterministic(nn.Module):
    """:class:`PopEncoder`'s activity fed for ``spike_ts`` steps to IF neurons (threshold 0.999, soft reset,
    straight-through gradient): [spike_ts, N, obs_dim * pop_dim] spikes."""

    def __init__(self, obs_dim, pop_dim, spike_ts, mean_range, std):
        super().__init__()
        self.obs_dim = obs_dim
        self.pop_dim = pop_dim
        self.encoder_neuron_num = obs_dim * pop_dim
        self.spike_ts = spike_ts
        self.mean, self.std = _population(obs_dim, pop_dim, mean_range, std)
        self.neurons = neuron.IFNode(v_threshold=0.999, v_reset=None, surrogate_function=surrogate.DeterministicPass(),
                                     detach_reset=True)
        functional.set_step_mode(self, step_mode="m")

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        act = _activity(obs, self.obs_dim, self.mean, self.std)
        return self.neurons(act.unsqueeze(0).repeat(self.spike_ts, 1, 1))


class PopSpikeEncoderRandom(nn.Module):
    """:class:`PopEncoder`'s activity as spike probabilities: ``spike_ts`` Bernoulli samples with a
    straight-through gradient (``surrogate.poisson_pass``)."""

    def __init__(self, obs_dim, pop_dim, spike_ts, mean_range, std):
        super().__init__()
        self.obs_dim = obs_dim
        self.pop_dim = pop_dim
        self.encoder_neuron_num = obs_dim * pop_dim
        self.spike_ts = spike_ts
        self.mean, self.std = _population(obs_dim, pop_dim, mean_range, std)
        self.pseudo_spike = surrogate.poisson_pass.apply

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        act = _activity(obs, self.obs_dim, self.mean, self.std)
        return self.pseudo_spike(act.unsqueeze(0).expand(self.spike_ts, *act.shape))
