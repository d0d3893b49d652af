"""Attention spiking networks of "Attention Spiking Neural Networks" (IEEE TPAMI), with
SpikingJelly 2.0.0's classes, builders, arguments and state_dict keys.

* ``MASNN`` / ``masnn_dvs128_gesture``: conv blocks (conv -> BN -> [avg pool] -> MultiDimensionalAttention ->
  neuron) and two fully connected blocks (linear -> BN -> TemporalWiseAttention -> ReLU -> neuron); the output
  neurons' spikes are averaged over time. Default neuron: LIF tau=10/7, threshold 0.3, decay_input=False,
  detach_reset, Rect(alpha=2).
* ``AttMSResNet`` / ``att_ms_resnet18``: MS-ResNet whose blocks multiply their residual branch by a channel +
  spatial MultiDimensionalAttention, with average-pool downsampling shortcuts and a dropout + linear head on
  the time-averaged features. Default neuron: LIF tau=4/3, threshold 0.5, decay_input=False, detach_reset,
  Rect(alpha=1).

With ``spiking_neuron=`` every neuron is ``spiking_neuron(**kwargs)``; otherwise ``kwargs`` override the
defaults above. Multi-step only: input [N, C, H, W] (repeated T times) or [T, N, C, H, W]; output [N, classes].
"""
from __future__ import annotations

from copy import deepcopy
from typing import Callable, Optional

import torch
import torch.nn as nn

from .. import functional, layer, neuron, surrogate
from .ms_resnet import MSResNet, _bn, _conv1x1, _MSBlock, to_sequence

__all__ = ["MASNN", "AttMSResNet", "masnn_dvs128_gesture", "att_ms_resnet18"]


def _lif_with(defaults: dict, overrides: dict) -> nn.Module:
    params = dict(defaults, step_mode="m")
    params.update(overrides)
    return neuron.LIFNode(**params)


def _ma_lif(**overrides) -> nn.Module:
    """MA-SNN's default neuron; keyword arguments override its parameters."""
    return _lif_with({"tau": 10.0 / 7.0, "v_threshold": 0.3, "detach_reset": True, "decay_input": False,
                      "surrogate_function": surrogate.Rect(alpha=2.0)}, overrides)


def _att_ms_lif(**overrides) -> nn.Module:
    """Att-MS-ResNet's default neuron; keyword arguments override its parameters."""
    return _lif_with({"tau": 4.0 / 3.0, "v_threshold": 0.5, "detach_reset": True, "decay_input": False,
                      "surrogate_function": surrogate.Rect(alpha=1.0)}, overrides)


def _neuron_factory(spiking_neuron, default_factory, kwargs: dict) -> Callable[[], nn.Module]:
    """A zero-argument neuron constructor: ``spiking_neuron(**kwargs)`` or ``default_factory(**kwargs)``."""
    build = default_factory if spiking_neuron is None else spiking_neuron
    return lambda: build(**deepcopy(kwargs))


class _MaConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, pool: int, cell_factory, attn_factory):
        super().__init__()
        self.conv = layer.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=True, step_mode="m")
        self.bn = layer.BatchNorm2d(out_channels, step_mode="m")
        self.pool = layer.AvgPool2d(pool, step_mode="m") if pool > 1 else None
        self.attn = attn_factory(out_channels)
        self.cell = cell_factory()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        if self.pool is not None:
            x = self.pool(x)
        return self.cell(self.attn(x))


class _MaFcBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int, T: int, reduction_t: int, cell_factory):
        super().__init__()
        self.linear = layer.Linear(in_features, out_features, bias=True, step_mode="m")
        self.bn = layer.BatchNorm1d(out_features, step_mode="m")
        self.attn = layer.TemporalWiseAttention(T=T, reduction=reduction_t, dimension=2)
        self.relu = nn.ReLU()
        self.cell = cell_factory()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell(self.relu(self.attn(self.bn(self.linear(x)))))


class MASNN(nn.Module):
    """MA-SNN for event frames: ``channels``/``pools`` describe the conv blocks (pool factor 1 = no pooling),
    ``fc_hidden`` the hidden fully connected layer; ``input_size`` (H, W) must be divisible by the pooling."""

    def __init__(self, T: int = 60, in_channels: int = 2, num_classes: int = 11, input_size: tuple = (32, 32),
                 channels: tuple = (64, 128, 128), pools: tuple = (1, 2, 2), fc_hidden: int = 256,
                 reduction_t: int = 5, reduction_c: int = 8, spiking_neuron: Optional[Callable] = None,
                 **kwargs) -> None:
        super().__init__()
        if len(channels) != len(pools):
            raise ValueError(f"channels and pools must have the same length, got {len(channels)} and {len(pools)}")
        height, width = input_size
        for pool in pools:
            if pool > 1 and (height % pool or width % pool):
                raise ValueError(f"input_size {tuple(input_size)} must be divisible by the pooling factors "
                                 f"{tuple(pools)}")
            height, width = height // pool, width // pool
        self.T = T
        cell_factory = _neuron_factory(spiking_neuron, _ma_lif, kwargs)

        def attn_factory(c: int) -> nn.Module:
            return layer.MultiDimensionalAttention(T=T, C=c, reduction_t=reduction_t, reduction_c=reduction_c)

        widths = (in_channels,) + tuple(channels)
        self.conv_blocks = nn.Sequential(*[_MaConvBlock(widths[i], widths[i + 1], pools[i], cell_factory,
                                                        attn_factory) for i in range(len(channels))])
        self.fc_blocks = nn.Sequential(
            _MaFcBlock(channels[-1] * height * width, fc_hidden, T, reduction_t, cell_factory),
            _MaFcBlock(fc_hidden, num_classes, T, reduction_t, cell_factory))
        functional.set_step_mode(self, "m")

    def _to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return to_sequence(x, self.T, check_T=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] or [T, N, C, H, W] (T must equal the model's) -> output spike rates [N, classes]."""
        x = self.conv_blocks(self._to_sequence(x))
        return self.fc_blocks(x.flatten(2)).mean(0)


def masnn_dvs128_gesture(T: int = 60, in_channels: int = 2, num_classes: int = 11, input_size: tuple = (32, 32),
                         spiking_neuron: Optional[Callable] = None, **kwargs) -> MASNN:
    """MA-SNN for DVS128 Gesture frames (32x32, 2 polarities, 11 classes): channels 64-128-128, pools 1-2-2."""
    return MASNN(T=T, in_channels=in_channels, num_classes=num_classes, input_size=input_size,
                 channels=(64, 128, 128), pools=(1, 2, 2), fc_hidden=256, reduction_t=5, reduction_c=8,
                 spiking_neuron=spiking_neuron, **kwargs)


class _AttMSBlock(_MSBlock):
    """MS block whose residual branch is scaled by an attention module before the shortcut is added."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, downsample: Optional[nn.Module],
                 attention: nn.Module, cell_factory) -> None:
        super().__init__(in_channels, out_channels, stride, downsample, make_neuron=cell_factory)
        nn.init.constant_(self.bn2.weight, 0.1)
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.attention(self._residual(x)) + identity


class AttMSResNet(MSResNet):
    """Att-MS-ResNet: MS-ResNet with channel + spatial attention in every block (``reduction_c``), shortcuts
    that average-pool before their 1x1 conv, and ``dropout`` before a plain ``nn.Linear`` head applied to the
    time-averaged features."""

    _block_type = _AttMSBlock
    _transition_block_type = _AttMSBlock

    def __init__(self, T: int = 1, in_channels: int = 3, num_classes: int = 1000, layers: tuple = (2, 2, 2, 2),
                 base_channels: int = 64, stem_kernel_size: int = 7, stem_stride: int = 2, stem_pool: bool = False,
                 stage_channels: Optional[tuple] = None, reduction_c: int = 8, dropout: float = 0.2,
                 spiking_neuron: Optional[Callable] = None, **kwargs) -> None:
        self._cell_factory = _neuron_factory(spiking_neuron, _att_ms_lif, kwargs)
        self._attention_factory = lambda channels: layer.MultiDimensionalAttention(
            T=T, C=channels, reduction_c=reduction_c, use_temporal=False)
        super().__init__(T=T, in_channels=in_channels, num_classes=num_classes, layers=layers,
                         base_channels=base_channels, stem_kernel_size=stem_kernel_size, stem_stride=stem_stride,
                         stem_pool=stem_pool, stage_channels=stage_channels)
        self.dropout = nn.Dropout(dropout)
        functional.set_step_mode(self, "m")

    def _make_head_lif(self) -> nn.Module:
        return self._cell_factory()

    def _make_head(self, in_features: int, num_classes: int) -> nn.Module:
        return nn.Linear(in_features, num_classes)

    def _downsample(self, out_channels: int, stride: int) -> nn.Module:
        pool = [layer.AvgPool2d(stride, stride, ceil_mode=True, step_mode="m")] if stride != 1 else []
        return nn.Sequential(*pool, _conv1x1(self.inplanes, out_channels, 1), _bn(out_channels, self._bn_weight))

    def _new_block(self, block_type, in_channels, out_channels, stride, downsample) -> nn.Module:
        return block_type(in_channels, out_channels, stride, downsample, self._attention_factory(out_channels),
                          self._cell_factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] or [T, N, C, H, W] -> [N, num_classes] (the head on time-averaged features)."""
        return self.head(self.dropout(self._features(x).mean(0)))


def att_ms_resnet18(T: int = 1, in_channels: int = 3, num_classes: int = 1000,
                    spiking_neuron: Optional[Callable] = None, **kwargs) -> AttMSResNet:
    """Att-MS-ResNet-18 (stages 2, 2, 2, 2)."""
    return AttMSResNet(T=T, in_channels=in_channels, num_classes=num_classes, layers=(2, 2, 2, 2),
                       spiking_neuron=spiking_neuron, **kwargs)
