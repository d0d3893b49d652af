"""Noisy spiking neurons for exploration in deep RL (NoisySAN, Chen et al. 2024; SpikingJelly 2.0's
``neuron.noisy``), and the colored-noise generator they use.

``powerlaw_psd_gaussian(exponent, size, fmin=0., random_state=None)``: Gaussian noise whose power spectral
density falls as 1/f**exponent along the last axis (0: white, 1: pink, 2: brown), its time-varying part of unit
variance (the constant component comes on top), generated in the frequency domain (Timmer & Koenig 1995) with
numpy's random generator, so a fixed ``random_state`` gives fixed samples.

The Noisy* nodes are multi-step only and restart from V = v_reset (C = 0) on every call, running ``T`` steps.
With ``is_training``, each call adds sigma_v * noise to the input current and sigma_s * noise to the emitted
spikes (sigma = sigma_init / sqrt(num_node)), the noise being the next episode step of sequences drawn by
``reset_noise(num_rl_step)`` (call it first), or a replay buffer's noise set by ``load_colored_noise(cn)``
(cn: [batch, T, 2 * num_node], the layout of ``get_colored_noise``). ``NoisyILC*`` add the intra-layer
spike feedback of fastspike.neuron.inter_layer_connection. ``NoisyNonSpiking*`` return membrane potentials
(decoded like NonSpikingIFNode) with a learnable per-neuron noise scale ``sigma``.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Optional, Union

import numpy as np
import torch
import torch.nn as nn

from .. import surrogate
from ..base import MultiStepModule
from . import _checks
from .dynamics import reset_voltage

__all__ = ["powerlaw_psd_gaussian", "NoisyBaseNode", "NoisyCUBALIFNode", "NoisyILCBaseNode", "NoisyILCCUBALIFNode",
           "NoisyNonSpikingBaseNode", "NoisyNonSpikingIFNode"]


def _normal(random_state):
    if random_state is None or (isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool)):
        return np.random.default_rng(random_state).normal
    if isinstance(random_state, (np.random.Generator, np.random.RandomState)):
        return random_state.normal
    raise ValueError("random_state must be one of integer, numpy.random.Generator, numpy.random.RandomState, "
                     f"but got {type(random_state).__name__}.")


def powerlaw_psd_gaussian(exponent: float, size: Union[int, Iterable[int]], fmin: float = 0.0,
                          random_state: Optional[Union[int, np.random.Generator, np.random.RandomState]] = None):
    """Gaussian samples (time-varying part of unit variance) with power spectrum ~ 1/f**exponent along the last
    axis of ``size`` (a numpy array of that shape). ``fmin`` (0 <= fmin <= 0.5) flattens the spectrum below that
    frequency."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        shape = [int(size)]
    elif isinstance(size, Iterable):
        shape = list(size)
    else:
        raise ValueError(f"Size must be of type int or Iterable[int], but got {type(size).__name__}.")
    n = shape[-1]
    freqs = np.fft.rfftfreq(n)
    if not 0 <= fmin <= 0.5:
        raise ValueError(f"fmin must be chosen between 0 and 0.5, but got {fmin}.")
    fmin = max(fmin, 1.0 / n)
    scale = freqs.copy()
    below = int(np.sum(scale < fmin))  # frequencies under fmin take the amplitude at fmin
    if below and below < len(scale):
        scale[:below] = scale[below]
    scale = scale ** (-exponent / 2.0)
    # standard deviation of the noise the amplitudes below would give, to normalise it to 1
    amplitudes = scale[1:].copy()
    amplitudes[-1] *= (1 + n % 2) / 2.0
    sigma = 2 * np.sqrt(np.sum(amplitudes ** 2)) / n
    shape[-1] = len(freqs)
    scale = scale[(np.newaxis,) * (len(shape) - 1) + (Ellipsis,)]
    normal = _normal(random_state)
    real = normal(scale=scale, size=shape)
    imag = normal(scale=scale, size=shape)
    if n % 2 == 0:  # the Nyquist component of a real signal is real
        imag[..., -1] = 0
        real[..., -1] *= np.sqrt(2)
    imag[..., 0] = 0  # so is the mean
    real[..., 0] *= np.sqrt(2)
    return np.fft.irfft(real + 1j * imag, n=n, axis=-1) / sigma


def _noise_sequences(beta: float, num_node: int, num_rl_step: int, T: int) -> torch.Tensor:
    """[num_rl_step, T, num_node] colored noise, correlated along the episode's num_rl_step * T steps."""
    noise = powerlaw_psd_gaussian(beta, [num_node, num_rl_step * T]).reshape(num_node, num_rl_step, T)
    return torch.FloatTensor(noise).permute(1, 2, 0)


class _NoiseSchedule:
    """The per-call noise bookkeeping of the Noisy* nodes (episode sequences or loaded replay noise)."""

    def _next_noise_step(self, loaded: bool) -> None:
        if self.is_training and not loaded:
            if "noise_step" not in self.__dict__:
                raise RuntimeError(f"{type(self).__name__}: call reset_noise(num_rl_step) before the first "
                                   "training forward (or load_colored_noise(cn)).")
            self.noise_step += 1


class NoisyBaseNode(nn.Module, MultiStepModule, _NoiseSchedule):
    """Noisy spiking neuron base: a subclass defines ``neuronal_charge(x)`` (and ``init_tensor``)."""

    def __init__(self, num_node, is_training: bool = True, T: int = 5, sigma_init: float = 0.5, beta: float = 0.0,
                 v_threshold: float = 0.5, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        name = type(self).__name__
        v_threshold = _checks.number(name, "v_threshold", v_threshold)
        if v_reset is not None:
            v_reset = _checks.number(name, "v_reset", v_reset)
        super().__init__()
        self._step_mode = "m"
        self.num_node = num_node
        self.is_training = is_training
        self.T = T
        self.beta = beta
        self.sigma_v = sigma_init / math.sqrt(num_node)
        self.cn_v = None
        self.sigma_s = sigma_init / math.sqrt(num_node)
        self.cn_s = None
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.surrogate_function = surrogate_function

    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define neuronal_charge(x) (update self.v from x).")

    def neuronal_fire(self) -> torch.Tensor:
        return self.surrogate_function(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        self.v = reset_voltage(self.v, spike, self.v_threshold, self.v_reset, False)

    def init_tensor(self, data: torch.Tensor) -> None:
        self.v = torch.full_like(data, 0.0 if self.v_reset is None else self.v_reset)

    def _after_spike(self, t: int, spike: torch.Tensor):
        """Extra input for step t + 1 computed from step t's (noisy) spikes; None: nothing."""
        return None

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        self.init_tensor(x_seq[0])
        self._next_noise_step(self.cn_v is not None and self.cn_s is not None)
        out, extra = [], None
        for t in range(self.T):
            x = x_seq[t] if extra is None else x_seq[t] + extra
            if self.is_training:
                noise_v = self.eps_v_seq[self.noise_step][t].to(x_seq.device) if self.cn_v is None else self.cn_v[:, t]
                x = x + self.sigma_v * noise_v
            self.neuronal_charge(x)
            spike = self.neuronal_fire()
            self.neuronal_reset(spike)
            if self.is_training:
                noise_s = self.eps_s_seq[self.noise_step][t].to(x_seq.device) if self.cn_s is None else self.cn_s[:, t]
                spike = spike + self.sigma_s * noise_s
            out.append(spike)
            extra = self._after_spike(t, spike)
        return torch.stack(out)

    def reset_noise(self, num_rl_step: int) -> None:
        """Draw the input and spike noise of an episode of ``num_rl_step`` calls; restart at its first step."""
        self.eps_v_seq = _noise_sequences(self.beta, self.num_node, num_rl_step, self.T)
        self.eps_s_seq = _noise_sequences(self.beta, self.num_node, num_rl_step, self.T)
        self.noise_step = -1

    def get_colored_noise(self) -> torch.Tensor:
        """The current step's noise [T, 2 * num_node] (input noise, then spike noise), for a replay buffer."""
        return torch.cat([self.eps_v_seq[self.noise_step], self.eps_s_seq[self.noise_step]], dim=1)

    def load_colored_noise(self, cn: torch.Tensor) -> None:
        """Use the replayed noise ``cn`` [batch, T, 2 * num_node] instead of the episode's."""
        self.cn_v = cn[:, :, :self.num_node]
        self.cn_s = cn[:, :, self.num_node:]

    def cancel_load(self) -> None:
        self.cn_v = None
        self.cn_s = None


class NoisyCUBALIFNode(NoisyBaseNode):
    """Noisy current-based LIF: C = c_decay C + X, H = v_decay V + C."""

    def __init__(self, num_node, c_decay: float = 0.5, v_decay: float = 0.75, is_training: bool = True, T: int = 5,
                 sigma_init: float = 0.5, beta: float = 0.0, v_threshold: float = 0.5, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        super().__init__(num_node, is_training, T, sigma_init, beta, v_threshold, v_reset, surrogate_function)
        self.c_decay = c_decay
        self.v_decay = v_decay

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.c = self.c * self.c_decay + x
        self.v = self.v * self.v_decay + self.c

    def init_tensor(self, data: torch.Tensor) -> None:
        self.c = torch.full_like(data, 0.0)
        super().init_tensor(data)


class NoisyILCBaseNode(NoisyBaseNode):
    """Noisy neurons in act_dim groups of dec_pop_dim with the grouped spike feedback ``conn``."""

    def __init__(self, act_dim, dec_pop_dim, is_training: bool = True, T: int = 5, sigma_init: float = 0.5,
                 beta: float = 0.0, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        self.act_dim = act_dim
        self.dec_pop_dim = dec_pop_dim
        num_node = act_dim * dec_pop_dim
        super().__init__(num_node, is_training, T, sigma_init, beta, v_threshold, v_reset, surrogate_function)
        self.conn = nn.Conv1d(act_dim, num_node, dec_pop_dim, groups=act_dim)

    def _after_spike(self, t: int, spike: torch.Tensor):
        if t + 1 == self.T:
            return None
        return self.conn(spike.view(-1, self.act_dim, self.dec_pop_dim)).view(-1, self.num_node)


class NoisyILCCUBALIFNode(NoisyILCBaseNode):
    """Noisy current-based LIF with intra-layer connections."""

    def __init__(self, act_dim, dec_pop_dim, c_decay: float = 0.5, v_decay: float = 0.75, is_training: bool = True,
                 T: int = 5, sigma_init: float = 0.5, beta: float = 0.0, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Rect()):
        super().__init__(act_dim, dec_pop_dim, is_training, T, sigma_init, beta, v_threshold, v_reset,
                         surrogate_function)
        self.c_decay = c_decay
        self.v_decay = v_decay

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.c = self.c * self.c_decay + x
        self.v = self.v * self.v_decay + self.c

    def init_tensor(self, data: torch.Tensor) -> None:
        self.c = torch.full_like(data, 0.0)
        super().init_tensor(data)


class NoisyNonSpikingBaseNode(nn.Module, MultiStepModule, _NoiseSchedule):
    """Noisy readout neuron: a subclass defines ``neuronal_charge(x)``; returns the T membrane potentials
    (a list) or their decoding ('max-mem', 'max-abs-mem', 'mean-mem', 'last_mem' (SpikingJelly spells it
    'last-me'; both work))."""

    def __init__(self, num_node, is_training: bool = True, T: int = 5, sigma_init: float = 0.5, beta: float = 0.0,
                 decode: Optional[str] = None):
        super().__init__()
        self._step_mode = "m"
        self.num_node = num_node
        self.is_training = is_training
        self.T = T
        self.beta = beta
        self.decode = decode
        self.sigma = nn.Parameter(torch.full((num_node,), sigma_init / math.sqrt(num_node), dtype=torch.float))
        self.cn = None

    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define neuronal_charge(x) (update self.v from x).")

    def init_tensor(self, data: torch.Tensor) -> None:
        self.v = torch.full_like(data, 0.0)

    def forward(self, x_seq: torch.Tensor):
        self.init_tensor(x_seq[0])
        self._next_noise_step(self.cn is not None)
        v_seq = []
        for t in range(self.T):
            x = x_seq[t]
            if self.is_training:
                noise = (self.eps_seq[self.noise_step][t] if self.cn is None else self.cn[:, t]).to(x_seq.device)
                x = x + self.sigma * noise
            self.neuronal_charge(x)
            v_seq.append(self.v)
        if self.decode not in ("max-mem", "max-abs-mem", "mean-mem", "last-me", "last_mem"):
            return v_seq
        stacked = torch.stack(v_seq)
        if self.decode == "max-mem":
            return stacked.max(0).values
        if self.decode == "max-abs-mem":
            hi, lo = stacked.max(0).values, stacked.min(0).values
            return torch.where(hi.abs() > lo.abs(), hi, lo)
        if self.decode == "mean-mem":
            return stacked.mean(0)
        return v_seq[-1]

    def reset_noise(self, num_rl_step: int) -> None:
        """Draw the input noise of an episode of ``num_rl_step`` calls; restart at its first step."""
        self.eps_seq = _noise_sequences(self.beta, self.num_node, num_rl_step, self.T)
        self.noise_step = -1

    def get_colored_noise(self) -> torch.Tensor:
        return self.eps_seq[self.noise_step]

    def load_colored_noise(self, cn: torch.Tensor) -> None:
        self.cn = cn

    def cancel_load(self) -> None:
        self.cn = None


class NoisyNonSpikingIFNode(NoisyNonSpikingBaseNode):
    """Noisy non-spiking IF readout: V = V + X."""

    def neuronal_charge(self, x: torch.Tensor) -> None:
        self.v = self.v + x
