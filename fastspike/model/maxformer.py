"""MaxFormer ("Spiking Neural Networks Need High Frequency Information", arXiv:2505.18608) with SpikingJelly
2.0.0's classes, builders, arguments and state_dict keys.

Three stages: a patch embedding (stage 1: two stride-2 convs with a conv shortcut, or for CIFAR a stride-1
conv with two spiking branches; stages 2 and 3: conv -> max pool with a pooled 1x1 shortcut), then blocks: depth-
wise-conv blocks (``_DWCBlock``) in stages 1-2 (spatial MLPs only in CIFAR's stage 1), spiking self-attention
blocks in stage 3. The head is a neuron on the token mean, then a linear layer on its time average.

Multi-step only: input [N, C, H, W] (repeated T times) or [T, N, C, H, W]; output [N, num_classes]. Neurons:
``spiking_neuron(**kwargs)`` when given, else LIF (default arguments; for CIFAR tau=2 and detach_reset unless
overridden; attention neurons tau=2, threshold 0.5, detach_reset).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn

from .. import functional, layer
from ..layer.attention import _ATTN_DEFAULTS, make_multi_step_neuron
from .ms_resnet import to_sequence

__all__ = ["MaxFormer", "maxformer_10_384", "maxformer_cifar"]

NeuronClass = Optional[Callable[..., nn.Module]]


def _conv(in_c: int, out_c: int, k: int, stride: int = 1, bias: bool = True, groups: int = 1) -> layer.Conv2d:
    return layer.Conv2d(in_c, out_c, k, stride=stride, padding=k // 2, bias=bias, groups=groups, step_mode="m")


def _bn(c: int) -> layer.BatchNorm2d:
    return layer.BatchNorm2d(c, step_mode="m")


def _pool() -> layer.MaxPool2d:
    return layer.MaxPool2d(3, stride=2, padding=1, step_mode="m")


class _MaxCifarEmbed(nn.Module):
    def __init__(self, in_channels, out_channels, spiking_neuron, neuron_kwargs):
        super().__init__()
        hidden = out_channels // 2
        self.conv = _conv(in_channels, hidden, 3, bias=False)
        self.bn = _bn(hidden)
        self.branch = nn.Sequential(make_multi_step_neuron(spiking_neuron, neuron_kwargs),
                                    _conv(hidden, out_channels, 3, bias=False), _bn(out_channels))
        self.shortcut = nn.Sequential(make_multi_step_neuron(spiking_neuron, neuron_kwargs),
                                      _conv(hidden, out_channels, 1, bias=False), _bn(out_channels))

    def forward(self, x):
        x = self.bn(self.conv(x))
        return self.branch(x) + self.shortcut(x)


class _MaxCifarSSA(nn.Module):
    """CIFAR variant of spiking self-attention on [T, N, C, L]: input neuron, Q K V from one 1x1 conv + BN,
    ``Q (K^T V) * 0.125`` per head, attention neuron, then a biased 1x1 conv + BN (no output neuron)."""

    def __init__(self, dim, num_heads, spiking_neuron, neuron_kwargs):
        super().__init__()
        self.num_heads = num_heads
        self.input_lif = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.qkv = layer.SeqToANNContainer(nn.Conv1d(dim, 3 * dim, 1, bias=False), nn.BatchNorm1d(3 * dim))
        self.qkv_lif = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.attn_lif = make_multi_step_neuron(spiking_neuron, neuron_kwargs, _ATTN_DEFAULTS)
        self.proj = layer.SeqToANNContainer(nn.Conv1d(dim, dim, 1), nn.BatchNorm1d(dim))

    def forward(self, x):
        T, N, C, L = x.shape
        h = self.num_heads
        qkv = self.qkv_lif(self.qkv(self.input_lif(x)))  # [T, N, 3C, L] spikes
        q, k, v = qkv.view(T, N, 3, h, C // h, L).unbind(2)  # [T, N, h, C/h, L]; tokens last
        # per head: out[l] = sum_j q[l, j] (k^T v)[j, :], computed as (v k^T) q with tokens on the last axis
        att = (v @ k.transpose(-2, -1)) @ q * 0.125  # [T, N, h, C/h, L]; integer sums of spikes: exact
        return self.proj(self.attn_lif(att.reshape(T, N, C, L)))


class _MaxEmbedInit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, spiking_neuron: NeuronClass,
                 neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1 = _conv(in_channels, hidden, 3, stride=2)
        self.bn1 = _bn(hidden)
        self.lif1 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.conv2 = _conv(hidden, out_channels, 3, stride=2)
        self.bn2 = _bn(out_channels)
        self.lif2 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.conv3 = _conv(out_channels, out_channels, 3)
        self.bn3 = _bn(out_channels)
        self.shortcut = nn.Sequential(layer.Conv2d(hidden, out_channels, 1, stride=2, step_mode="m"),
                                      _bn(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(self.bn1(self.conv1(x)))
        x = self.lif2(self.bn2(self.conv2(s)))
        return self.bn3(self.conv3(x)) + self.shortcut(s)


class _MaxEmbedStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, spiking_neuron: NeuronClass,
                 neuron_kwargs: Dict[str, Any], bias: bool = True) -> None:
        super().__init__()
        self.conv1 = _conv(in_channels, out_channels, 3, bias=bias)
        self.bn1 = _bn(out_channels)
        self.lif1 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.pool = _pool()
        self.conv2 = _conv(out_channels, out_channels, 3, bias=bias)
        self.bn2 = _bn(out_channels)
        self.lif2 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.shortcut = nn.Sequential(_conv(in_channels, out_channels, 1, bias=bias), _bn(out_channels), _pool())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(x)
        x = self.lif2(self.pool(self.bn1(self.conv1(s))))
        return self.bn2(self.conv2(x)) + self.shortcut(s)


class _SpatialMLP(nn.Module):
    """Two 1x1 conv + BN layers, each after a neuron, with residual adds (also after the first when the hidden
    width equals the input's)."""

    def __init__(self, dim: int, hidden_dim: int, spiking_neuron: NeuronClass, neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        self.residual = dim == hidden_dim
        self.fc1 = layer.Conv2d(dim, hidden_dim, 1, step_mode="m")
        self.bn1 = _bn(hidden_dim)
        self.lif1 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.fc2 = layer.Conv2d(hidden_dim, dim, 1, step_mode="m")
        self.bn2 = _bn(dim)
        self.lif2 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn1(self.fc1(self.lif1(x)))
        if self.residual:
            x = h = h + x
        return self.bn2(self.fc2(self.lif2(h))) + x


class _DWCBlock(nn.Module):
    def __init__(self, dim: int, kernel_size: int, mlp_ratio: float, spiking_neuron: NeuronClass,
                 neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        self.lif = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.dwconv = _conv(dim, dim, kernel_size, groups=dim)
        self.bn = _bn(dim)
        self.mlp = _SpatialMLP(dim, int(dim * mlp_ratio), spiking_neuron, neuron_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x + self.bn(self.dwconv(self.lif(x))))


class _SSABlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, spiking_neuron: NeuronClass,
                 neuron_kwargs: Dict[str, Any], cifar: bool = False) -> None:
        super().__init__()
        self.attn = (_MaxCifarSSA(dim, num_heads, spiking_neuron, neuron_kwargs) if cifar else
                     layer.SpikingSelfAttention(dim, num_heads, spiking_neuron=spiking_neuron, **neuron_kwargs))
        self.mlp = _SpatialMLP(dim, int(dim * mlp_ratio), spiking_neuron, neuron_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(3)
        return self.mlp((tokens + self.attn(tokens)).reshape(x.shape))


class MaxFormer(nn.Module):
    """MaxFormer: ``embed_dims`` is stage 3's width (stages 1-2: a quarter and a half), ``depths`` the blocks
    per stage; ``cifar=True`` selects the CIFAR embedding, blocks and attention."""

    def __init__(self, T: int = 4, in_channels: int = 3, num_classes: int = 1000, embed_dims: int = 384,
                 depths: tuple = (1, 2, 7), mlp_ratio: float = 4.0, spiking_neuron: NeuronClass = None,
                 cifar: bool = False, **kwargs: Any) -> None:
        super().__init__()
        if len(depths) != 3 or embed_dims % (8 if cifar else 4):
            raise ValueError(f"depths must contain three values; embed_dims must be divisible by 8 for CIFAR or 4 "
                             f"otherwise (got depths={tuple(depths)}, embed_dims={embed_dims}, cifar={cifar})")
        dims = (embed_dims // 4, embed_dims // 2, embed_dims)
        self.T = T
        if cifar and spiking_neuron is None:
            kwargs = {"tau": 2.0, "detach_reset": True, **kwargs}
        nk = kwargs
        self.patch_embed1 = (_MaxCifarEmbed if cifar else _MaxEmbedInit)(in_channels, dims[0], spiking_neuron, nk)
        self.patch_embed2 = _MaxEmbedStage(dims[0], dims[1], spiking_neuron, nk, bias=not cifar)
        self.patch_embed3 = _MaxEmbedStage(dims[1], dims[2], spiking_neuron, nk, bias=not cifar)
        if cifar:
            stage1 = [_SpatialMLP(dims[0], int(dims[0] * mlp_ratio), spiking_neuron, nk) for _ in range(depths[0])]
        else:
            stage1 = [_DWCBlock(dims[0], 7, mlp_ratio, spiking_neuron, nk) for _ in range(depths[0])]
        self.stage1 = nn.ModuleList(stage1)
        self.stage2 = nn.ModuleList([_DWCBlock(dims[1], 3 if cifar else 5, mlp_ratio, spiking_neuron, nk)
                                     for _ in range(depths[1])])
        heads = 8 if cifar else max(1, dims[2] // 64)
        self.stage3 = nn.ModuleList([_SSABlock(dims[2], heads, mlp_ratio, spiking_neuron, nk, cifar=cifar)
                                     for _ in range(depths[2])])
        self.head_lif = make_multi_step_neuron(spiking_neuron, nk)
        self.head = nn.Linear(embed_dims, num_classes)
        functional.set_step_mode(self, "m")
        if cifar:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def _to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return to_sequence(x, self.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] or [T, N, C, H, W] -> [N, num_classes]."""
        x = self._to_sequence(x)
        for embed, stage in ((self.patch_embed1, self.stage1), (self.patch_embed2, self.stage2),
                             (self.patch_embed3, self.stage3)):
            x = embed(x)
            for block in stage:
                x = block(x)
        return self.head(self.head_lif(x.flatten(3).mean(-1)).mean(0))


def maxformer_10_384(T: int = 4, in_channels: int = 3, num_classes: int = 1000, spiking_neuron: NeuronClass = None,
                     **kwargs: Any) -> MaxFormer:
    """MaxFormer-10-384 for ImageNet (depths 1, 2, 7)."""
    return MaxFormer(T=T, in_channels=in_channels, num_classes=num_classes, embed_dims=384, depths=(1, 2, 7),
                     spiking_neuron=spiking_neuron, **kwargs)


def maxformer_cifar(T: int = 4, in_channels: int = 3, num_classes: int = 100, spiking_neuron: NeuronClass = None,
                    **kwargs: Any) -> MaxFormer:
    """MaxFormer for CIFAR (depths 1, 1, 2; 384 channels)."""
    return MaxFormer(T=T, in_channels=in_channels, num_classes=num_classes, embed_dims=384, depths=(1, 1, 2),
                     cifar=True, spiking_neuron=spiking_neuron, **kwargs)
