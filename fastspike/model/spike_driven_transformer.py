"""Spike-driven Transformer v1 (arXiv:2304.11954) with SpikingJelly 2.0.0's classes, builder, arguments
and state_dict keys.

A spiking patch embedding (four conv -> BN [-> neuron] stages, each optionally max-pooled by ``pooling_stat``,
and a relative position embedding conv added residually) and ``depths`` blocks of spike-driven
self-attention (``layer.SpikeDrivenSelfAttention``) followed by a spatial MLP; the head is a neuron on the
token mean and a linear layer on its time average.

Multi-step only: input [N, C, H, W] (repeated T times) or [T, N, C, H, W]; output [N, num_classes]. Neurons:
``spiking_neuron(**kwargs)`` when given, else LIF.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn

from .. import functional, layer
from ..layer.attention import SpikeDrivenSelfAttention, make_multi_step_neuron
from .maxformer import _SpatialMLP
from .ms_resnet import to_sequence

__all__ = ["SpikeDrivenTransformer", "sdt_8_384"]

NeuronClass = Optional[Callable[..., nn.Module]]


def _conv_bn(in_c: int, out_c: int, bias: bool = True) -> list:
    return [layer.Conv2d(in_c, out_c, 3, padding=1, bias=bias, step_mode="m"), layer.BatchNorm2d(out_c, step_mode="m")]


def _pool() -> layer.MaxPool2d:
    return layer.MaxPool2d(3, stride=2, padding=1, step_mode="m")


class _PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, embed_dims: int, pooling_stat: str, spiking_neuron: NeuronClass,
                 neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        widths = (in_channels, embed_dims // 8, embed_dims // 4, embed_dims // 2)
        self.stages = nn.ModuleList()
        for i in range(3):
            stage = _conv_bn(widths[i], widths[i + 1]) + [make_multi_step_neuron(spiking_neuron, neuron_kwargs)]
            if pooling_stat[i] == "1":
                stage.append(_pool())
            self.stages.append(nn.Sequential(*stage))
        final = _conv_bn(widths[3], embed_dims) + ([_pool()] if pooling_stat[3] == "1" else [])
        self.final_stage = nn.Sequential(*final)
        self.final_lif = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.rpe_conv, self.rpe_bn = _conv_bn(embed_dims, embed_dims, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        x = self.final_stage(x)
        return self.rpe_bn(self.rpe_conv(self.final_lif(x))) + x


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, spiking_neuron: NeuronClass,
                 neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        self.attn = SpikeDrivenSelfAttention(dim, num_heads, spiking_neuron=spiking_neuron, **neuron_kwargs)
        self.mlp = _SpatialMLP(dim, int(dim * mlp_ratio), spiking_neuron, neuron_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(x))


class SpikeDrivenTransformer(nn.Module):
    """Spike-driven Transformer: ``embed_dims`` channels, ``num_heads`` heads, ``depths`` blocks;
    ``pooling_stat`` is a four-character 0/1 mask of which embedding stages halve the resolution."""

    def __init__(self, T: int = 4, in_channels: int = 3, num_classes: int = 1000, embed_dims: int = 384,
                 num_heads: int = 8, depths: int = 8, mlp_ratio: float = 4.0, pooling_stat: str = "1111",
                 spiking_neuron: NeuronClass = None, **kwargs: Any) -> None:
        super().__init__()
        if len(pooling_stat) != 4 or any(c not in "01" for c in pooling_stat):
            raise ValueError(f"pooling_stat must be a four-character 0/1 mask, got pooling_stat={pooling_stat!r}")
        self.T = T
        self.patch_embed = _PatchEmbed(in_channels, embed_dims, pooling_stat, spiking_neuron, kwargs)
        self.blocks = nn.ModuleList([_Block(embed_dims, num_heads, mlp_ratio, spiking_neuron, kwargs)
                                     for _ in range(depths)])
        self.head_lif = make_multi_step_neuron(spiking_neuron, kwargs)
        self.head = nn.Linear(embed_dims, num_classes)
        functional.set_step_mode(self, "m")

    def _to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return to_sequence(x, self.T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] or [T, N, C, H, W] -> [N, num_classes]."""
        x = self.patch_embed(self._to_sequence(x))
        for block in self.blocks:
            x = block(x)
        return self.head(self.head_lif(x.flatten(3).mean(-1)).mean(0))


def sdt_8_384(T: int = 4, in_channels: int = 3, num_classes: int = 1000, spiking_neuron: NeuronClass = None,
              **kwargs: Any) -> SpikeDrivenTransformer:
    """Spike-driven Transformer-8-384 (8 blocks, 384 channels, 8 heads)."""
    return SpikeDrivenTransformer(T=T, in_channels=in_channels, num_classes=num_classes, embed_dims=384,
                                  num_heads=8, depths=8, spiking_neuron=spiking_neuron, **kwargs)
