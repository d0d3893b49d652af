"""Membrane-potential batch normalisation (Guo et al., ICCV 2023) with threshold re-parameterisation and the
test-time threshold modulation of Zhao et al. 2025 (SpikingJelly 2.0's ``neuron.mpbn``).

``MPBNLIFNode``: per step, H = LIF charge; in training H is batch-normalised by ``vbn`` (BatchNorm1d over
``out_features`` or BatchNorm2d over ``out_channels``, running statistics updated once per time step); the
spike fires at v_threshold, or at exp(a) per feature with ``learnable_vth``; the reset uses v_threshold.
``re_parameterize_v_threshold()`` folds the BN into per-feature thresholds
(v_threshold - beta) sqrt(sigma2 + eps) / gamma + mu and drops ``vbn``; afterwards, in training mode, mu and
sigma2 follow the batch statistics of H (with ``running_stats``, an exponential average whose momentum decays
from bn_momentum by bn_decay_momentum down to bn_min_momentum), and ``normalize_residual`` stores the
sub-threshold H in normalised form. Statistics are updated on copies during the call and written back when
``forward`` returns, so the functional forward leaves the module unchanged.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import surrogate
from . import _checks
from .dynamics import lif_charge, reset_voltage
from .node import BaseNode

__all__ = ["MPBNBaseNode", "MPBNLIFNode"]


class MPBNBaseNode(BaseNode):
    """BaseNode with a membrane-potential BatchNorm ``vbn`` and optional learnable thresholds ``a``
    (v_threshold = exp(a) per feature); exactly one of out_features / out_channels."""

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode="s", store_v_seq: bool = False, mpbn: bool = True,
                 out_features=None, out_channels=None, learnable_vth: bool = False, bn_momentum: float = 0.1,
                 bn_decay_momentum: float = 0.94, bn_min_momentum: float = 0.005):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq)
        if (out_features is None) == (out_channels is None):
            raise ValueError(f"{type(self).__name__}: specify exactly one of out_features or out_channels, but got "
                             f"out_features={out_features!r}, out_channels={out_channels!r}.")
        features = out_channels if out_channels is not None else out_features
        if mpbn:
            self.vbn = nn.BatchNorm2d(features) if out_channels is not None else nn.BatchNorm1d(features)
        else:
            self.vbn = nn.Identity()
        self.register_buffer("mu", None)
        self.register_buffer("sigma2", None)
        self.gamma = None
        self.beta = None
        self.eps = None
        self.fold_bn = False
        self.normalize_residual = False
        self.running_stats = False
        self.bn_momentum = bn_momentum
        self.bn_decay_momentum = bn_decay_momentum
        self.bn_min_momentum = bn_min_momentum
        self.learnable_vth = learnable_vth
        if learnable_vth:
            self.a = nn.Parameter(torch.zeros(features))

    def re_parameterize_v_threshold(self, normalize_residual: bool = False, running_stats: bool = False) -> None:
        """Fold ``vbn`` into per-feature thresholds (see the module docstring); no-op without a BN."""
        if isinstance(self.vbn, nn.Identity):
            return
        self.fold_bn = True
        if self.learnable_vth:
            self.v_threshold = torch.exp(self.a.detach())
            del self.a
            self.learnable_vth = False
        self.normalize_residual = normalize_residual
        self.running_stats = running_stats
        self.mu = self.vbn.running_mean
        self.sigma2 = self.vbn.running_var
        self.gamma = self.vbn.weight
        self.beta = self.vbn.bias
        self.eps = self.vbn.eps
        self.vbn = nn.Identity()


class MPBNLIFNode(MPBNBaseNode):
    """LIF with membrane-potential BN (decay_input=False by default); see the module docstring."""

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0,
                 surrogate_function: surrogate.SurrogateFunctionBase = surrogate.Sigmoid(),
                 detach_reset: bool = False, step_mode="s", store_v_seq: bool = False, mpbn: bool = True,
                 out_features=None, out_channels=None, learnable_vth: bool = False, bn_momentum: float = 0.1,
                 bn_decay_momentum: float = 0.94, bn_min_momentum: float = 0.005):
        tau = _checks.number("MPBNLIFNode", "tau", tau, gt=1.0)
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, step_mode, store_v_seq, mpbn,
                         out_features, out_channels, learnable_vth, bn_momentum, bn_decay_momentum, bn_min_momentum)
        self.tau = tau
        self.decay_input = decay_input

    def _normalization_state(self) -> dict:
        """Copies of the statistics a call may update (written back by ``forward`` in training mode)."""
        bn = None if isinstance(self.vbn, nn.Identity) else self.vbn
        return {"running_mean": None if bn is None else bn.running_mean.clone(),
                "running_var": None if bn is None else bn.running_var.clone(),
                "num_batches_tracked": None if bn is None else bn.num_batches_tracked.clone(),
                "mu": self.mu, "sigma2": self.sigma2, "bn_momentum": self.bn_momentum}

    def forward(self, *args, **kwargs):
        stats = self._normalization_state()
        kwargs["_mpbn_stats"] = stats
        out = super().forward(*args, **kwargs)
        if self.training:
            if not isinstance(self.vbn, nn.Identity):
                self.vbn.running_mean.copy_(stats["running_mean"])
                self.vbn.running_var.copy_(stats["running_var"])
                self.vbn.num_batches_tracked.copy_(stats["num_batches_tracked"])
            elif self.fold_bn and not self.learnable_vth:
                self.mu = stats["mu"]
                self.sigma2 = stats["sigma2"]
                self.bn_momentum = stats["bn_momentum"]
        return out

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        if "_mpbn_stats" not in kwargs:
            kwargs["_mpbn_stats"] = self._normalization_state()
        return super().multi_step_functional_forward(inputs, states, **kwargs)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        stats = kwargs.get("_mpbn_stats")
        if stats is None:
            stats = self._normalization_state()
        v = lif_charge(inputs[0], states[0], self.tau, self.decay_input, self.v_reset)
        bn = self.vbn
        if not isinstance(bn, nn.Identity):
            factor = 0.0 if bn.momentum is None else bn.momentum
            if self.training:
                stats["num_batches_tracked"].add_(1)
                if bn.momentum is None:
                    factor = 1.0 / float(stats["num_batches_tracked"])
            v = F.batch_norm(v, stats["running_mean"], stats["running_var"], bn.weight, bn.bias, self.training,
                             factor, bn.eps)
        mu, sigma2, momentum = stats["mu"], stats["sigma2"], stats["bn_momentum"]
        folded = self.fold_bn and not self.learnable_vth
        if folded and self.training and not (v.ndim == 2 and v.shape[0] == 1):
            dims = 0 if v.ndim == 2 else (0, 2, 3)
            batch_mu = v.mean(dim=dims).detach()
            batch_sigma2 = v.var(dim=dims, unbiased=True).detach()
            if self.running_stats:
                mu = mu.detach() * (1 - momentum) + batch_mu * momentum
                sigma2 = sigma2.detach() * (1 - momentum) + batch_sigma2 * momentum
                momentum = max(momentum * self.bn_decay_momentum, self.bn_min_momentum)
            else:
                mu, sigma2 = batch_mu, batch_sigma2
            stats["mu"], stats["sigma2"], stats["bn_momentum"] = mu, sigma2, momentum
        feature_shape = (1, -1) if v.ndim == 2 else (1, -1, 1, 1)
        if folded:
            threshold = ((self.v_threshold - self.beta) * torch.sqrt(sigma2 + self.eps) / self.gamma
                         + mu).view(feature_shape)
        elif self.learnable_vth:
            threshold = torch.exp(self.a).view(feature_shape)
        else:
            threshold = self.v_threshold
        diff = v - threshold
        spike = self.surrogate_function(diff)
        if self.normalize_residual:
            normalized = ((v - mu.view(feature_shape)) / torch.sqrt(sigma2 + self.eps).view(feature_shape)
                          * self.gamma.view(feature_shape) + self.beta.view(feature_shape))
            v = torch.where(diff <= 0, normalized, v)
        v = reset_voltage(v, spike, self.v_threshold, self.v_reset, self.detach_reset)
        return (spike,), (v, *states[1:])
