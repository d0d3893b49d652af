"""Spiking self-attention as used by Spikformer (Zhou et al., ICLR 2023), SpikingJelly 2.0.0 layout.

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

__all__ = ["SpikingSelfAttention", "make_multi_step_neuron"]


def make_multi_step_neuron(spiking_neuron: Optional[Callable[..., nn.Module]], kwargs: dict,
                           defaults: Optional[dict] = None) -> nn.Module:
    """Build a multi-step neuron: ``spiking_neuron(**kwargs)`` or, when it is None,
    ``fastspike.neuron.LIFNode(**defaults, **kwargs)``; ``step_mode`` is forced to 'm'."""
    if kwargs.get("step_mode", "m") != "m":
        raise ValueError(f"these blocks run multi-step only; got step_mode={kwargs['step_mode']!r}")
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
        self.qkv_lif = make_multi_step_neuron(spiking_neuron, kwargs, {"tau": 2.0, "detach_reset": True})
        self.attn_lif = make_multi_step_neuron(spiking_neuron, kwargs,
                                               {"tau": 2.0, "v_threshold": 0.5, "detach_reset": True})
        self.proj_conv_bn = SeqToANNContainer(nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False),
                                              nn.BatchNorm1d(dim))
        self.proj_lif = make_multi_step_neuron(spiking_neuron, kwargs, {"tau": 2.0, "detach_reset": True})

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
