"""QKFormer ("QKFormer: Hierarchical Spiking Transformer using Q-K Attention", arXiv:2403.16552) with
SpikingJelly 2.0.0's classes, builder, arguments and state_dict keys.

Three stages, each a spiking patch embedding (conv -> BN -> max pool -> neuron, with a strided 1x1 conv + BN +
neuron shortcut) followed by blocks: Q-K attention blocks (``qka_type`` 'token' or 'channel') in stages 1-2,
spiking self-attention blocks in stage 3; every block adds its attention and its MLP (1x1 Conv1d + BN + neuron,
twice) residually. The head is a linear layer on the token and time average.

Multi-step only: input [N, C, H, W] (repeated T times) or [T, N, C, H, W]; output [N, num_classes]. Neurons:
``spiking_neuron(**kwargs)`` when given, else LIF (attention neurons tau=2, threshold 0.5, detach_reset).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn

from .. import functional, layer
from ..layer.attention import QKAttention, SpikingSelfAttention, make_multi_step_neuron
from .ms_resnet import to_sequence

__all__ = ["QKFormer", "qkformer_10_384"]

NeuronClass = Optional[Callable[..., nn.Module]]


def _conv3(in_c: int, out_c: int) -> layer.Conv2d:
    return layer.Conv2d(in_c, out_c, kernel_size=3, padding=1, step_mode="m")


def _bn(c: int) -> layer.BatchNorm2d:
    return layer.BatchNorm2d(c, step_mode="m")


def _pool() -> layer.MaxPool2d:
    return layer.MaxPool2d(3, stride=2, padding=1, step_mode="m")


def _shortcut(in_c: int, out_c: int, spiking_neuron: NeuronClass, kw: Dict[str, Any]) -> nn.Sequential:
    return nn.Sequential(layer.Conv2d(in_c, out_c, kernel_size=1, stride=2, step_mode="m"), _bn(out_c),
                         make_multi_step_neuron(spiking_neuron, kw))


class _PatchEmbedInit(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, spiking_neuron: NeuronClass,
                 neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        hidden = out_channels // 2
        self.conv1, self.bn1, self.pool1 = _conv3(in_channels, hidden), _bn(hidden), _pool()
        self.lif1 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.conv2, self.bn2, self.pool2 = _conv3(hidden, out_channels), _bn(out_channels), _pool()
        self.lif2 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.conv3, self.bn3 = _conv3(out_channels, out_channels), _bn(out_channels)
        self.lif3 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.shortcut = _shortcut(hidden, out_channels, spiking_neuron, neuron_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.lif1(self.pool1(self.bn1(self.conv1(x))))
        x = self.lif2(self.pool2(self.bn2(self.conv2(s))))
        return self.lif3(self.bn3(self.conv3(x))) + self.shortcut(s)


class _PatchEmbedStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, spiking_neuron: NeuronClass,
                 neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        self.conv1, self.bn1, self.pool = _conv3(in_channels, out_channels), _bn(out_channels), _pool()
        self.lif1 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.conv2, self.bn2 = _conv3(out_channels, out_channels), _bn(out_channels)
        self.lif2 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.shortcut = _shortcut(in_channels, out_channels, spiking_neuron, neuron_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.lif1(self.pool(self.bn1(self.conv1(x))))
        return self.lif2(self.bn2(self.conv2(y))) + self.shortcut(x)


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden_dim: int, spiking_neuron: NeuronClass, neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        self.fc1 = layer.Conv1d(dim, hidden_dim, kernel_size=1, step_mode="m")
        self.bn1 = layer.BatchNorm1d(hidden_dim, step_mode="m")
        self.lif1 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)
        self.fc2 = layer.Conv1d(hidden_dim, dim, kernel_size=1, step_mode="m")
        self.bn2 = layer.BatchNorm1d(dim, step_mode="m")
        self.lif2 = make_multi_step_neuron(spiking_neuron, neuron_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif2(self.bn2(self.fc2(self.lif1(self.bn1(self.fc1(x))))))


class _Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qka_type: str, self_attention: bool,
                 spiking_neuron: NeuronClass, neuron_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        if self_attention:
            self.attn = SpikingSelfAttention(dim, num_heads, spiking_neuron=spiking_neuron, **neuron_kwargs)
        else:
            self.attn = QKAttention(dim, num_heads, qka_type=qka_type, spiking_neuron=spiking_neuron, **neuron_kwargs)
        self.mlp = _MLP(dim, int(dim * mlp_ratio), spiking_neuron, neuron_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(3)
        tokens = tokens + self.attn(tokens)
        return (tokens + self.mlp(tokens)).reshape(x.shape)


class QKFormer(nn.Module):
    """QKFormer: ``embed_dims`` is stage 3's width (stages 1-2: a quarter and a half), ``num_heads`` and
    ``depths`` per stage."""

    def __init__(self, T: int = 4, in_channels: int = 3, num_classes: int = 1000, embed_dims: int = 384,
                 num_heads: tuple = (3, 6, 6), depths: tuple = (1, 2, 7), mlp_ratio: float = 4.0,
                 qka_type: str = "token", spiking_neuron: NeuronClass = None, **kwargs: Any) -> None:
        super().__init__()
        if len(num_heads) != 3 or len(depths) != 3:
            raise ValueError(f"num_heads and depths must contain three stage values, got num_heads="
                             f"{tuple(num_heads)}, depths={tuple(depths)}")
        if embed_dims % 4:
            raise ValueError(f"embed_dims must be divisible by 4, got embed_dims={embed_dims}")
        dims = (embed_dims // 4, embed_dims // 2, embed_dims)
        self.T = T
        self.patch_embed1 = _PatchEmbedInit(in_channels, dims[0], spiking_neuron, kwargs)
        self.patch_embed2 = _PatchEmbedStage(dims[0], dims[1], spiking_neuron, kwargs)
        self.patch_embed3 = _PatchEmbedStage(dims[1], dims[2], spiking_neuron, kwargs)
        for i in range(3):
            setattr(self, f"stage{i + 1}", nn.ModuleList(
                [_Block(dims[i], num_heads[i], mlp_ratio, qka_type, i == 2, spiking_neuron, kwargs)
                 for _ in range(depths[i])]))
        self.head = nn.Linear(embed_dims, num_classes)
        functional.set_step_mode(self, "m")

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
        return self.head(x.flatten(3).mean(dim=-1).mean(0))


def qkformer_10_384(T: int = 4, in_channels: int = 3, num_classes: int = 1000, spiking_neuron: NeuronClass = None,
                    **kwargs: Any) -> QKFormer:
    """QKFormer-10-384 (depths 1, 2, 7; 6 heads per stage)."""
    return QKFormer(T=T, in_channels=in_channels, num_classes=num_classes, embed_dims=384, num_heads=(6, 6, 6),
                    depths=(1, 2, 7), spiking_neuron=spiking_neuron, **kwargs)
