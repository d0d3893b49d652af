"""Membrane-shortcut ResNets (MS-ResNet, "Advancing Spiking Neural Networks towards Deep Residual Learning",
arXiv:2112.08954) and the MaxResNet of MaxFormer's CIFAR experiments (arXiv:2505.18608), with SpikingJelly
2.0.0's classes, builders, arguments and state_dict keys.

In an MS block the neurons come first: ``spike1 -> conv1 -> bn1 -> spike2 -> conv2 -> bn2``, and the block adds
its input (the membrane-potential-like real values, not spikes) to that branch. The stem is conv + BN (+ max
pool), the head a neuron, global average pooling and a linear layer whose output is averaged over time.

Multi-step only: an image [N, C, H, W] is repeated T times, a sequence [T, N, C, H, W] is used as is; the
output is [N, num_classes]. Neurons default to SpikingJelly's choices (MS: LIF tau=4/3, threshold 0.5,
decay_input=False, detach_reset, Rect(alpha=2) surrogate; MaxResNet: LIF tau=2, detach_reset); with
``spiking_neuron=`` every neuron is ``spiking_neuron(**kwargs)``.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
import torch.nn as nn

from .. import functional, layer, surrogate
from ..layer.attention import make_multi_step_neuron

__all__ = ["MSResNet", "MaxResNet", "ms_resnet18", "ms_resnet34", "max_resnet18"]

NeuronFactory = Callable[[], nn.Module]


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> layer.Conv2d:
    return layer.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False, step_mode="m")


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> layer.Conv2d:
    return layer.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False, step_mode="m")


def _bn(channels: int, weight: float) -> layer.BatchNorm2d:
    bn = layer.BatchNorm2d(channels, step_mode="m")
    nn.init.constant_(bn.weight, weight)
    return bn


def to_sequence(x: torch.Tensor, T: int, check_T: bool = False) -> torch.Tensor:
    """[N, C, H, W] -> repeated T times; [T, N, C, H, W] unchanged (its T checked when ``check_T``)."""
    if x.ndim == 4:
        return x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    if x.ndim == 5:
        if check_T and x.shape[0] != T:
            raise ValueError(f"expected a sequence with T={T} time steps, but got shape {tuple(x.shape)}")
        return x
    raise ValueError(f"expected a 4D image [N, C, H, W] or a 5D sequence [T, N, C, H, W], but got shape "
                     f"{tuple(x.shape)}")


class _MSBlock(nn.Module):
    """Membrane-shortcut basic block. Class attributes: the default neuron's ``tau``, the BN scale
    ``bn_weight`` and ``zero_init`` (bn2 starts at 0)."""

    tau = 4.0 / 3.0
    bn_weight = 0.5
    zero_init = True

    @classmethod
    def _make_lif(cls, spiking_neuron: Optional[Callable[..., nn.Module]] = None,
                  kwargs: Optional[Dict[str, Any]] = None) -> nn.Module:
        return make_multi_step_neuron(spiking_neuron, kwargs or {}, {
            "tau": cls.tau, "v_threshold": 0.5, "detach_reset": True, "decay_input": False,
            "surrogate_function": surrogate.Rect(alpha=2.0)})

    def __init__(self, in_channels: int, out_channels: int, stride: int, downsample: Optional[nn.Module],
                 spiking_neuron: Optional[Callable[..., nn.Module]] = None,
                 neuron_kwargs: Optional[Dict[str, Any]] = None, make_neuron: Optional[NeuronFactory] = None,
                 conv_stride: Optional[int] = None) -> None:
        super().__init__()
        if make_neuron is None:
            def make_neuron():
                return self._make_lif(spiking_neuron, neuron_kwargs)
        self.spike1 = make_neuron()
        self.conv1 = _conv3x3(in_channels, out_channels, stride if conv_stride is None else conv_stride)
        self.bn1 = _bn(out_channels, self.bn_weight)
        self.spike2 = make_neuron()
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = _bn(out_channels, 0.0 if self.zero_init else self.bn_weight)
        self.downsample = downsample

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(self.spike1(x)))
        return self.bn2(self.conv2(self.spike2(out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self._residual(x) + identity


class _MaxResNetBlock(_MSBlock):
    tau = 2.0
    bn_weight = 1.0
    zero_init = False

    @classmethod
    def _make_lif(cls, spiking_neuron=None, kwargs=None) -> nn.Module:
        return make_multi_step_neuron(spiking_neuron, kwargs or {}, {"tau": cls.tau, "detach_reset": True})


class _MaxResNetMaxBlock(_MaxResNetBlock):
    """Transition block of MaxResNet: the stride moves from conv1 to a 3x3 max pool after bn1."""

    def __init__(self, in_channels, out_channels, stride, downsample, spiking_neuron=None, neuron_kwargs=None):
        super().__init__(in_channels, out_channels, stride, downsample, spiking_neuron, neuron_kwargs, conv_stride=1)
        self.max_pool = layer.MaxPool2d(kernel_size=3, stride=stride, padding=1, step_mode="m")

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.max_pool(self.bn1(self.conv1(self.spike1(x))))
        return self.bn2(self.conv2(self.spike2(out)))


class MSResNet(nn.Module):
    """MS-ResNet: ``layers`` gives the blocks per stage (3 or 4 stages), ``stage_channels`` their widths
    (default ``base_channels * 2**i``); the stem is a ``stem_kernel_size`` conv with ``stem_stride`` (+ a 3x3/2
    max pool when ``stem_pool``). Keyword arguments go to ``spiking_neuron``."""

    _block_type = _MSBlock
    _transition_block_type = _MSBlock
    _first_stage_stride = 2
    _bn_weight = 0.5

    def __init__(self, T: int = 6, in_channels: int = 3, num_classes: int = 1000, layers: tuple = (2, 2, 2, 2),
                 base_channels: int = 64, stem_kernel_size: int = 7, stem_stride: int = 2, stem_pool: bool = False,
                 stage_channels: Optional[tuple] = None, spiking_neuron: Optional[Callable[..., nn.Module]] = None,
                 **kwargs: Any) -> None:
        super().__init__()
        if len(layers) not in (3, 4):
            raise ValueError(f"layers must contain three or four stage depths, got layers={tuple(layers)}")
        if stage_channels is None:
            stage_channels = tuple(base_channels * 2 ** i for i in range(len(layers)))
        if len(stage_channels) != len(layers):
            raise ValueError(f"stage_channels must match layers: got {len(stage_channels)} widths for "
                             f"{len(layers)} stages")
        self.T = T
        self.inplanes = base_channels
        self._spiking_neuron, self._neuron_kwargs = spiking_neuron, kwargs
        self.stem = nn.Sequential(
            layer.Conv2d(in_channels, base_channels, stem_kernel_size, stride=stem_stride,
                         padding=stem_kernel_size // 2, bias=False, step_mode="m"),
            _bn(base_channels, self._bn_weight))
        if stem_pool:
            self.stem.append(layer.MaxPool2d(3, stride=2, padding=1, step_mode="m"))
        strides = (self._first_stage_stride, 2, 2, 2)
        for i in range(4):
            setattr(self, f"layer{i + 1}", self._make_layer(stage_channels[i], layers[i], strides[i])
                    if i < len(layers) else None)
        self.head_lif = self._make_head_lif()
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1), step_mode="m")
        self.head = self._make_head(stage_channels[-1], num_classes)
        del self._spiking_neuron, self._neuron_kwargs
        functional.set_step_mode(self, "m")

    # -- construction hooks (AttMSResNet overrides them) -------------------------------------------------
    def _make_head_lif(self) -> nn.Module:
        return self._block_type._make_lif(self._spiking_neuron, self._neuron_kwargs)

    def _make_head(self, in_features: int, num_classes: int) -> nn.Module:
        return layer.Linear(in_features, num_classes, step_mode="m")

    def _downsample(self, out_channels: int, stride: int) -> nn.Module:
        return nn.Sequential(_conv1x1(self.inplanes, out_channels, stride), _bn(out_channels, self._bn_weight))

    def _new_block(self, block_type, in_channels, out_channels, stride, downsample) -> nn.Module:
        return block_type(in_channels, out_channels, stride, downsample, self._spiking_neuron, self._neuron_kwargs)

    def _make_layer(self, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != out_channels:
            downsample = self._downsample(out_channels, stride)
        first_type = self._transition_block_type if stride != 1 else self._block_type
        stage = [self._new_block(first_type, self.inplanes, out_channels, stride, downsample)]
        self.inplanes = out_channels
        stage += [self._new_block(self._block_type, out_channels, out_channels, 1, None) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _to_sequence(self, x: torch.Tensor) -> torch.Tensor:
        return to_sequence(x, self.T)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self._to_sequence(x))
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            if stage is not None:
                x = stage(x)
        return self.avgpool(self.head_lif(x)).flatten(2)  # [T, N, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] or [T, N, C, H, W] -> [N, num_classes] (the head's output averaged over T)."""
        return self.head(self._features(x)).mean(0)


class MaxResNet(MSResNet):
    """MaxResNet (MaxFormer's CIFAR baseline): LIF tau=2 blocks, BN scales 1, transition blocks that
    downsample with a max pool; the first stage keeps the resolution."""

    _block_type = _MaxResNetBlock
    _transition_block_type = _MaxResNetMaxBlock
    _first_stage_stride = 1
    _bn_weight = 1.0


def ms_resnet18(T: int = 6, in_channels: int = 3, num_classes: int = 1000,
                spiking_neuron: Optional[Callable[..., nn.Module]] = None, **kwargs: Any) -> MSResNet:
    """MS-ResNet-18 (stages 2, 2, 2, 2; widths 64-512). ``kwargs``: MSResNet options, the rest to the neuron."""
    return MSResNet(T=T, in_channels=in_channels, num_classes=num_classes, spiking_neuron=spiking_neuron, **kwargs)


def ms_resnet34(T: int = 6, in_channels: int = 3, num_classes: int = 1000,
                spiking_neuron: Optional[Callable[..., nn.Module]] = None, **kwargs: Any) -> MSResNet:
    """MS-ResNet-34 (stages 3, 4, 6, 3)."""
    return MSResNet(T=T, in_channels=in_channels, num_classes=num_classes, layers=(3, 4, 6, 3),
                    spiking_neuron=spiking_neuron, **kwargs)


def max_resnet18(T: int = 4, in_channels: int = 3, num_classes: int = 10,
                 spiking_neuron: Optional[Callable[..., nn.Module]] = None, **kwargs: Any) -> MaxResNet:
    """MaxResNet-18 for CIFAR: 3x3 stride-1 stem, stages 3, 3, 2 of widths 128, 256, 512."""
    return MaxResNet(T=T, in_channels=in_channels, num_classes=num_classes, layers=(3, 3, 2),
                     stage_channels=(128, 256, 512), stem_kernel_size=3, stem_stride=1, stem_pool=False,
                     spiking_neuron=spiking_neuron, **kwargs)
