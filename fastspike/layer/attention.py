"""Attention layers of SpikingJelly 2.0.0's ``activation_based.layer`` (same names, arguments, state_dict keys).

* ``TemporalWiseAttention(T, reduction=16, dimension=4)`` (TA-SNN, ICCV 2021): one sigmoid score per time
  step and sample, from a shared two-layer MLP over the average and the maximum of each step.
* ``MultiDimensionalAttention(T, C, ...)`` (MA-SNN, "Attention Spiking Neural Networks"): temporal, channel
  and spatial attention applied in that order (any of them can be switched off), then a ReLU.
* ``SpikingSelfAttention`` (Spikformer), ``QKAttention`` / ``TokenQKAttention`` / ``ChannelQKAttention``
  (QKFormer) and ``SpikeDrivenSelfAttention`` (Spike-driven Transformer v1): spiking attention blocks,
  multi-step only. Their neurons are built by ``make_multi_step_neuron``: ``spiking_neuron(**kwargs)`` when a
  class is given, otherwise LIF neurons with each position's default arguments (tau=2, detach_reset=True;
  threshold 0.5 for the attention neuron).

``SpikingSelfAttention(dim, num_heads=8, spiking_neuron=None, **kwargs)`` takes [T, N, C, L] (tokens on
the last axis) and returns [T, N, C, L]. Q, K and V come from one 1x1 Conv1d + BatchNorm1d
(``qkv_conv_bn``) followed by spiking neurons (``qkv_lif``); per head the attention is computed without
softmax as ``(V K^T) Q * 0.125`` (the order SpikingJelly 2.0.0 evaluates it in, which gives a C/h x C/h
intermediate instead of L x L), passed through ``attn_lif`` (threshold 0.5 by default), then projected by
``proj_conv_bn`` and ``proj_lif``. With ``spiking_neuron=None`` the neurons are multi-step ``LIFNode``s
with tau=2 and detach_reset=True; otherwise ``spiking_neuron(**kwargs, step_mode='m')`` is used as given.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional

import torch
import torch.nn as nn

from .. import base
from .._errors import ArgumentError

__all__ = [
    "TemporalWiseAttention",
    "MultiDimensionalAttention",
    "SpikingSelfAttention",
    "QKAttention",
    "TokenQKAttention",
    "ChannelQKAttention",
    "SpikeDrivenSelfAttention",
    "make_multi_step_neuron",
]

_SPIKE_DEFAULTS = {"tau": 2.0, "detach_reset": True}
_ATTN_DEFAULTS = {"tau": 2.0, "v_threshold": 0.5, "detach_reset": True}


def make_multi_step_neuron(spiking_neuron: Optional[Callable[..., nn.Module]], kwargs: dict,
                           defaults: Optional[dict] = None) -> nn.Module:
    """Build a multi-step neuron: ``spiking_neuron(**kwargs)`` or, when it is None,
    ``fastspike.neuron.LIFNode(**defaults, **kwargs)``; ``step_mode`` is forced to 'm'."""
    if kwargs.get("step_mode", "m") != "m":
        raise ValueError(f"spiking neurons of these blocks run multi-step only: step_mode must be 'm', "
                         f"got step_mode={kwargs['step_mode']!r}")
    params = copy.deepcopy(defaults) if (spiking_neuron is None and defaults) else {}
    params.update(copy.deepcopy(kwargs))
    params["step_mode"] = "m"
    if spiking_neuron is None:
        from ..neuron import LIFNode

        spiking_neuron = LIFNode
    return spiking_neuron(**params)


class SpikingSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, spiking_neuron: Optional[Callable[..., nn.Module]] = None,
                 **kwargs: Any) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} should be divisible by num_heads {num_heads}.")
        from .container import SeqToANNContainer

        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = 0.125
        self.qkv_conv_bn = SeqToANNContainer(nn.Conv1d(dim, dim * 3, kernel_size=1, stride=1, bias=False),
                                             nn.BatchNorm1d(dim * 3))
        self.qkv_lif = make_multi_step_neuron(spiking_neuron, kwargs, _SPIKE_DEFAULTS)
        self.attn_lif = make_multi_step_neuron(spiking_neuron, kwargs, _ATTN_DEFAULTS)
        self.proj_conv_bn = SeqToANNContainer(nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False),
                                              nn.BatchNorm1d(dim))
        self.proj_lif = make_multi_step_neuron(spiking_neuron, kwargs, _SPIKE_DEFAULTS)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.ndim != 4:
            raise ValueError(f"expected input [T, N, C, L], got shape {tuple(x_seq.shape)}")
        T, N, C, L = x_seq.shape
        if C != self.dim:
            raise ValueError(f"expected C={self.dim} channels, got {C}")
        qkv = self.qkv_lif(self.qkv_conv_bn(x_seq))  # [T, N, 3C, L] spikes
        h = self.num_heads
        q, k, v = qkv.view(T, N, 3, h, C // h, L).unbind(2)  # each [T, N, h, C/h, L]
        attn = (v @ k.transpose(-2, -1)) @ q * self.scale  # [T, N, h, C/h, L]
        x = self.attn_lif(attn).reshape(T, N, C, L)
        return self.proj_lif(self.proj_conv_bn(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}"


def _conv_bn_1x1(in_channels: int, out_channels: int) -> nn.Module:
    """1x1 Conv1d (no bias) + BatchNorm1d over the folded [T*N, C, L] batch."""
    from .container import SeqToANNContainer

    return SeqToANNContainer(nn.Conv1d(in_channels, out_channels, kernel_size=1, stride=1, bias=False),
                             nn.BatchNorm1d(out_channels))


def _check_heads(dim: int, num_heads: int) -> None:
    if num_heads <= 0 or dim % num_heads != 0:
        raise ValueError(f"dim {dim} should be divisible by num_heads {num_heads}.")


class TemporalWiseAttention(nn.Module, base.MultiStepModule):
    """Temporal-wise attention (TA-SNN): scales every time step of every sample by a learned score.

    Input [T, N, C, H, W] (``dimension=4``) or [T, N, L] (``dimension=2``), output of the same shape. For each
    sample the mean and the maximum of each step go through a shared MLP T -> T // reduction -> T
    (``sharedMLP.0``, ReLU, ``sharedMLP.2``, no biases); ``sigmoid(mlp(avg) + mlp(max))`` scales the steps.
    Place it between a synapse layer and the neurons. Multi-step only.
    """

    def __init__(self, T: int, reduction: int = 16, dimension: int = 4):
        super().__init__()
        self.step_mode = "m"
        if dimension not in (2, 4):
            raise ArgumentError(f"TemporalWiseAttention: dimension must be 4 ([T, N, C, H, W]) or 2 ([T, N, L]), "
                                f"got dimension={dimension!r}")
        if T < reduction:
            raise ArgumentError(f"TemporalWiseAttention: reduction ({reduction}) cannot be greater than T ({T})")
        pools = (nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d) if dimension == 2 else (nn.AdaptiveAvgPool3d,
                                                                                     nn.AdaptiveMaxPool3d)
        self.avg_pool, self.max_pool = pools[0](1), pools[1](1)
        self.sharedMLP = nn.Sequential(nn.Linear(T, T // reduction, bias=False), nn.ReLU(),
                                       nn.Linear(T // reduction, T, bias=False))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() not in (3, 5):
            raise ArgumentError(f"TemporalWiseAttention expects x_seq with shape [T, N, L] or [T, N, C, H, W], "
                             f"but got shape {tuple(x_seq.shape)}")
        x = x_seq.transpose(0, 1)  # [N, T, ...]: time is the pools' channel axis
        n, t = x.shape[:2]
        avg = self.sharedMLP(self.avg_pool(x).view(n, t))
        mx = self.sharedMLP(self.max_pool(x).view(n, t))
        scores = torch.sigmoid(avg + mx).view(n, t, *([1] * (x.dim() - 2)))
        return (x * scores).transpose(0, 1)


class _PooledAxisScore(nn.Module):
    """Sigmoid score per index of one axis of [N, T, C, H, W] (T, or C when ``channel_axis``), from a shared
    1x1x1 Conv3d MLP over the average and the maximum of everything else."""

    def __init__(self, planes: int, ratio: int, channel_axis: bool = False):
        super().__init__()
        self.channel_axis = channel_axis
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.max_pool = nn.AdaptiveMaxPool3d(1)
        self.sharedMLP = nn.Sequential(nn.Conv3d(planes, planes // ratio, 1, bias=False), nn.ReLU(),
                                       nn.Conv3d(planes // ratio, planes, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_axis:
            x = x.transpose(1, 2)
        score = torch.sigmoid(self.sharedMLP(self.avg_pool(x)) + self.sharedMLP(self.max_pool(x)))
        return score.transpose(1, 2) if self.channel_axis else score


class _SpatialScore(nn.Module):
    """Sigmoid score per pixel of [N, T, C, H, W]: a 2 -> 1 convolution over the mean and the maximum taken
    across time and channels together."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1, 2)
        pooled = torch.cat((x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values), dim=1)
        return torch.sigmoid(self.conv(pooled)).unsqueeze(1)


class MultiDimensionalAttention(nn.Module, base.MultiStepModule):
    """Multi-dimensional attention (MA-SNN): temporal (``ta``), channel (``ca``) and spatial (``sa``) scores
    multiply [T, N, C, H, W] in that order, then a ReLU. ``use_temporal``/``use_channel``/``use_spatial``
    switch one off (its submodule is None); at least one must stay on. Multi-step only.
    """

    def __init__(self, T: int, C: int, reduction_t: int = 16, reduction_c: int = 16, kernel_size=3,
                 use_temporal: bool = True, use_channel: bool = True, use_spatial: bool = True):
        super().__init__()
        if not (use_temporal or use_channel or use_spatial):
            raise ValueError("at least one of use_temporal, use_channel, and use_spatial must be True")
        if use_temporal and T < reduction_t:
            raise ArgumentError(f"MultiDimensionalAttention: reduction_t ({reduction_t}) cannot be greater than "
                                f"T ({T})")
        if use_channel and C < reduction_c:
            raise ArgumentError(f"MultiDimensionalAttention: reduction_c ({reduction_c}) cannot be greater than "
                                f"C ({C})")
        if kernel_size not in (3, 7):
            raise ArgumentError(f"MultiDimensionalAttention: kernel_size must be 3 or 7, got {kernel_size!r}")
        self.step_mode = "m"
        self.ta = _PooledAxisScore(T, reduction_t) if use_temporal else None
        self.ca = _PooledAxisScore(C, reduction_c, channel_axis=True) if use_channel else None
        self.sa = _SpatialScore(kernel_size) if use_spatial else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ArgumentError(f"MultiDimensionalAttention expects x with shape [T, N, C, H, W], "
                             f"but got shape {tuple(x.shape)}")
        out = x.transpose(0, 1)
        for score in (self.ta, self.ca, self.sa):
            if score is not None:
                out = score(out) * out
        return self.relu(out).transpose(0, 1)


class QKAttention(nn.Module):
    """Q-K attention (QKFormer) on [T, N, C, L]. Q and K come from one 1x1 conv + BN (``qk_conv_bn``) and
    spiking neurons (``qk_lif``); per head, Q is summed over channels (``qka_type='token'``: one mask per token)
    or over tokens (``'channel'``: one mask per channel), fired by ``attn_lif`` (threshold 0.5 by default) and
    the mask gates K; then ``proj_conv_bn`` and ``proj_lif``."""

    def __init__(self, dim: int, num_heads: int = 8, qka_type: str = "token",
                 spiking_neuron: Optional[Callable[..., nn.Module]] = None, **kwargs: Any) -> None:
        super().__init__()
        _check_heads(dim, num_heads)
        if qka_type not in ("token", "channel"):
            raise ValueError(f"qka_type should be either 'token' or 'channel', but got {qka_type!r}.")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self._qka_type = qka_type
        self.qk_conv_bn = _conv_bn_1x1(dim, 2 * dim)
        self.qk_lif = make_multi_step_neuron(spiking_neuron, kwargs, _SPIKE_DEFAULTS)
        self.sum_dim = 3 if qka_type == "token" else 4  # axis of [T, N, heads, C/heads, L] that Q is summed over
        self.attn_lif = make_multi_step_neuron(spiking_neuron, kwargs, _ATTN_DEFAULTS)
        self.proj_conv_bn = _conv_bn_1x1(dim, dim)
        self.proj_lif = make_multi_step_neuron(spiking_neuron, kwargs, _SPIKE_DEFAULTS)

    @property
    def qka_type(self) -> str:
        """'token' or 'channel'; fixed at construction."""
        return self._qka_type

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects x_seq with shape [T, N, C, L], "
                             f"but got shape {tuple(x_seq.shape)}")
        T, N, C, L = x_seq.shape
        qk = self.qk_lif(self.qk_conv_bn(x_seq))  # [T, N, 2C, L] spikes
        q, k = qk.view(T, N, 2, self.num_heads, C // self.num_heads, L).unbind(2)
        mask = self.attn_lif(q.sum(dim=self.sum_dim, keepdim=True))
        x = (mask * k).reshape(T, N, C, L)
        return self.proj_lif(self.proj_conv_bn(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, qka_type={self.qka_type}"


class TokenQKAttention(QKAttention):
    """``QKAttention`` with a token-wise mask (``qka_type='token'``)."""

    def __init__(self, dim: int, num_heads: int = 8, spiking_neuron: Optional[Callable[..., nn.Module]] = None,
                 **kwargs: Any) -> None:
        super().__init__(dim, num_heads, qka_type="token", spiking_neuron=spiking_neuron, **kwargs)


class ChannelQKAttention(QKAttention):
    """``QKAttention`` with a channel-wise mask (``qka_type='channel'``)."""

    def __init__(self, dim: int, num_heads: int = 8, spiking_neuron: Optional[Callable[..., nn.Module]] = None,
                 **kwargs: Any) -> None:
        super().__init__(dim, num_heads, qka_type="channel", spiking_neuron=spiking_neuron, **kwargs)


class SpikeDrivenSelfAttention(nn.Module):
    """Spike-driven self-attention (Spike-driven Transformer v1) on [T, N, C, H, W].

    The input passes ``shortcut_lif``; Q, K and V are 1x1 conv + BN + neuron each; per head, the spikes of
    K * V summed over the tokens are fired by ``attn_lif`` (threshold 0.5 by default) into a channel mask
    that gates Q; ``proj_conv`` + ``proj_bn`` project the result, and the block input is added back.
    """

    def __init__(self, dim: int, num_heads: int = 8, spiking_neuron: Optional[Callable[..., nn.Module]] = None,
                 **kwargs: Any) -> None:
        super().__init__()
        _check_heads(dim, num_heads)
        from .bn import BatchNorm2d
        from .stateless_wrapper import Conv2d

        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.shortcut_lif = make_multi_step_neuron(spiking_neuron, kwargs, _SPIKE_DEFAULTS)
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_conv", Conv2d(dim, dim, 1, bias=False, step_mode="m"))
            setattr(self, f"{name}_bn", BatchNorm2d(dim, step_mode="m"))
            setattr(self, f"{name}_lif", make_multi_step_neuron(spiking_neuron, kwargs, _SPIKE_DEFAULTS))
        self.attn_lif = make_multi_step_neuron(spiking_neuron, kwargs, _ATTN_DEFAULTS)
        self.proj_conv = Conv2d(dim, dim, 1, step_mode="m")
        self.proj_bn = BatchNorm2d(dim, step_mode="m")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"SpikeDrivenSelfAttention expects x with shape [T, N, C, H, W], "
                             f"but got shape {tuple(x.shape)}")
        T, N, C, H, W = x.shape
        s = self.shortcut_lif(x)
        heads = (T, N, self.num_heads, C // self.num_heads, H * W)
        q = self.q_lif(self.q_bn(self.q_conv(s))).reshape(heads)
        k = self.k_lif(self.k_bn(self.k_conv(s))).reshape(heads)
        v = self.v_lif(self.v_bn(self.v_conv(s))).reshape(heads)
        # spikes: the sums over tokens are integers, exact in any order; the mask's neuron sees them as
        # [T, N, heads, 1, C/heads] (SpikingJelly's layout, so its state has SpikingJelly's shape)
        mask = self.attn_lif((k * v).sum(dim=-1).unsqueeze(-2))
        out = (q * mask.transpose(-1, -2)).reshape(T, N, C, H, W)
        return self.proj_bn(self.proj_conv(out)) + x

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}"
