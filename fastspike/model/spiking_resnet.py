"""Spiking ResNets (torchvision ResNet layout with ReLU replaced by spiking neurons), SpikingJelly 2.0.0
constructor arguments and state_dict keys (``conv1, bn1, sn1, layer1.0.conv1, ..., fc``)."""
from __future__ import annotations

from copy import deepcopy
from typing import Callable

import torch
import torch.nn as nn

from .. import layer
from ._common import load_pretrained, require_neuron

__all__ = [
    "SpikingResNet",
    "spiking_resnet18",
    "spiking_resnet34",
    "spiking_resnet50",
    "spiking_resnet101",
    "spiking_resnet152",
    "spiking_resnext50_32x4d",
    "spiking_resnext101_32x8d",
    "spiking_wide_resnet50_2",
    "spiking_wide_resnet101_2",
]

# ImageNet ANN checkpoints that SpikingJelly loads for pretrained=True (torchvision's)
model_urls = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
    "resnext50_32x4d": "https://download.pytorch.org/models/resnext50_32x4d-7cdf4587.pth",
    "resnext101_32x8d": "https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth",
    "wide_resnet50_2": "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",
    "wide_resnet101_2": "https://download.pytorch.org/models/wide_resnet101_2-32ee1156.pth",
}


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    return layer.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                        bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    return layer.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def flatten_features(x: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    """Flatten pooled features: from dim 1 in single-step mode, from dim 2 ([T, N, ...]) in multi-step."""
    return torch.flatten(x, 2 if getattr(pool, "step_mode", "s") == "m" else 1)


def _basic_body(m: nn.Module, inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer,
                spiking_neuron, kwargs) -> None:
    """Register a BasicBlock's conv1, bn1, sn1, conv2, bn2, sn2 and downsample on ``m`` (in that order)."""
    norm_layer = norm_layer or layer.BatchNorm2d
    if groups != 1 or base_width != 64:
        raise ValueError("BasicBlock only supports groups=1 and base_width=64")
    if dilation > 1:
        raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
    m.conv1 = conv3x3(inplanes, planes, stride)
    m.bn1 = norm_layer(planes)
    m.sn1 = spiking_neuron(**deepcopy(kwargs))
    m.conv2 = conv3x3(planes, planes)
    m.bn2 = norm_layer(planes)
    m.sn2 = spiking_neuron(**deepcopy(kwargs))
    m.downsample = downsample


def _bottleneck_body(m: nn.Module, inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer,
                     spiking_neuron, kwargs) -> None:
    """Register a Bottleneck's conv1..3, bn1..3, sn1..3 and downsample on ``m`` (in that order)."""
    norm_layer = norm_layer or layer.BatchNorm2d
    width = int(planes * (base_width / 64.0)) * groups
    m.conv1 = conv1x1(inplanes, width)
    m.bn1 = norm_layer(width)
    m.sn1 = spiking_neuron(**deepcopy(kwargs))
    m.conv2 = conv3x3(width, width, stride, groups, dilation)
    m.bn2 = norm_layer(width)
    m.sn2 = spiking_neuron(**deepcopy(kwargs))
    m.conv3 = conv1x1(width, planes * m.expansion)
    m.bn3 = norm_layer(planes * m.expansion)
    m.sn3 = spiking_neuron(**deepcopy(kwargs))
    m.downsample = downsample


class _ResidualBranch(nn.Module):
    """The residual branch of a ResNet block: stages ``conv{i} -> bn{i} -> sn{i}`` for i = 1.._depth,
    registered by ``_basic_body`` / ``_bottleneck_body``, and the ``downsample`` shortcut. Shared by the
    spiking ResNet blocks here and the SEW blocks (sew_resnet.py)."""

    _depth = 2

    def _branch(self, x: torch.Tensor, fire_last: bool = True) -> torch.Tensor:
        for i in range(1, self._depth + 1):
            x = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x))
            if fire_last or i < self._depth:
                x = getattr(self, f"sn{i}")(x)
        return x


class _SpikingBlock(_ResidualBranch):
    """Spiking ResNet block: the last neuron fires on branch + shortcut (torchvision's ReLU position)."""

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        last_sn = getattr(self, f"sn{self._depth}")
        return last_sn(self._branch(x, fire_last=False) + identity)


class BasicBlock(_SpikingBlock):
    expansion = 1
    _depth = 2

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, spiking_neuron: Callable = None, **kwargs):
        super().__init__()
        _basic_body(self, inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer,
                    spiking_neuron, kwargs)
        self.stride = stride


class Bottleneck(_SpikingBlock):
    expansion = 4  # stride on the 3x3 conv (ResNet v1.5), as torchvision
    _depth = 3

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, spiking_neuron: Callable = None, **kwargs):
        super().__init__()
        _bottleneck_body(self, inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer,
                         spiking_neuron, kwargs)
        self.stride = stride


class _ResNetTrunk(nn.Module):
    """The ResNet trunk shared by SpikingResNet and SEWResNet: stem (conv1, bn1, sn1, maxpool), layer1..4,
    avgpool, fc, and their initialisation; registration order and names as SpikingJelly 2.0.0.

    ``block_args``: extra block arguments that go after ``norm_layer`` and before ``spiking_neuron``
    (SEW's ``cnf``); ``basic``/``bottleneck``: the block classes ``zero_init_residual`` acts on.
    """

    def __init__(self, block, layers, num_classes, zero_init_residual, groups, width_per_group,
                 replace_stride_with_dilation, norm_layer, spiking_neuron, block_args: dict, neuron_kwargs: dict,
                 basic, bottleneck):
        super().__init__()
        spiking_neuron = require_neuron(spiking_neuron, type(self).__name__)
        norm_layer = norm_layer or layer.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, "
                             f"got {replace_stride_with_dilation}")
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = layer.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.sn1 = spiking_neuron(**deepcopy(neuron_kwargs))
        self.maxpool = layer.MaxPool2d(kernel_size=3, stride=2, padding=1)
        common = dict(block_args, spiking_neuron=spiking_neuron, **neuron_kwargs)
        self.layer1 = self._make_layer(block, 64, layers[0], **common)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0],
                                       **common)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1],
                                       **common)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2],
                                       **common)
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1))
        self.fc = layer.Linear(512 * block.expansion, num_classes)
        _init_resnet(self, zero_init_residual, basic, bottleneck)

    def _build_layer(self, block, planes, blocks, stride, dilate, block_args: dict, spiking_neuron, neuron_kwargs):
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer(planes * block.expansion))
        blocks_ = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation,
                         norm_layer, *block_args.values(), spiking_neuron, **neuron_kwargs)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            blocks_.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                 dilation=self.dilation, norm_layer=norm_layer, **block_args,
                                 spiking_neuron=spiking_neuron, **neuron_kwargs))
        return nn.Sequential(*blocks_)

    def _forward_impl(self, x):
        x = self.maxpool(self.sn1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = flatten_features(self.avgpool(x), self.avgpool)
        return self.fc(x)

    def forward(self, x):
        return self._forward_impl(x)


class SpikingResNet(_ResNetTrunk):
    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1, width_per_group=64,
                 replace_stride_with_dilation=None, norm_layer=None, spiking_neuron: Callable = None, **kwargs):
        super().__init__(block, layers, num_classes, zero_init_residual, groups, width_per_group,
                         replace_stride_with_dilation, norm_layer, spiking_neuron, {}, kwargs, BasicBlock, Bottleneck)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False, spiking_neuron: Callable = None, **kwargs):
        return self._build_layer(block, planes, blocks, stride, dilate, {}, spiking_neuron, kwargs)


def _init_resnet(model: nn.Module, zero_init_residual: bool, basic, bottleneck) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, bottleneck):
                nn.init.constant_(m.bn3.weight, 0)
            elif isinstance(m, basic):
                nn.init.constant_(m.bn2.weight, 0)


def _spiking_resnet(arch, block, layers, pretrained, progress, spiking_neuron, **kwargs):
    model = SpikingResNet(block, layers, spiking_neuron=spiking_neuron, **kwargs)
    if pretrained:
        load_pretrained(model, arch, model_urls[arch])
    return model


def spiking_resnet18(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking ResNet-18. ``kwargs``: SpikingResNet options (num_classes, zero_init_residual, groups,
    width_per_group, replace_stride_with_dilation, norm_layer); the rest go to ``spiking_neuron``."""
    return _spiking_resnet("resnet18", BasicBlock, [2, 2, 2, 2], pretrained, progress, spiking_neuron, **kwargs)


def spiking_resnet34(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking ResNet-34 (see ``spiking_resnet18``)."""
    return _spiking_resnet("resnet34", BasicBlock, [3, 4, 6, 3], pretrained, progress, spiking_neuron, **kwargs)


def spiking_resnet50(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking ResNet-50 (see ``spiking_resnet18``)."""
    return _spiking_resnet("resnet50", Bottleneck, [3, 4, 6, 3], pretrained, progress, spiking_neuron, **kwargs)


def spiking_resnet101(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking ResNet-101 (see ``spiking_resnet18``)."""
    return _spiking_resnet("resnet101", Bottleneck, [3, 4, 23, 3], pretrained, progress, spiking_neuron, **kwargs)


def spiking_resnet152(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking ResNet-152 (see ``spiking_resnet18``)."""
    return _spiking_resnet("resnet152", Bottleneck, [3, 8, 36, 3], pretrained, progress, spiking_neuron, **kwargs)


def spiking_resnext50_32x4d(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking ResNeXt-50 32x4d (see ``spiking_resnet18``)."""
    kwargs["groups"] = 32
    kwargs["width_per_group"] = 4
    return _spiking_resnet("resnext50_32x4d", Bottleneck, [3, 4, 6, 3], pretrained, progress, spiking_neuron,
                           **kwargs)


def spiking_resnext101_32x8d(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking ResNeXt-101 32x8d (see ``spiking_resnet18``)."""
    kwargs["groups"] = 32
    kwargs["width_per_group"] = 8
    return _spiking_resnet("resnext101_32x8d", Bottleneck, [3, 4, 23, 3], pretrained, progress, spiking_neuron,
                           **kwargs)


def spiking_wide_resnet50_2(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking Wide ResNet-50-2 (see ``spiking_resnet18``)."""
    kwargs["width_per_group"] = 64 * 2
    return _spiking_resnet("wide_resnet50_2", Bottleneck, [3, 4, 6, 3], pretrained, progress, spiking_neuron,
                           **kwargs)


def spiking_wide_resnet101_2(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking Wide ResNet-101-2 (see ``spiking_resnet18``)."""
    kwargs["width_per_group"] = 64 * 2
    return _spiking_resnet("wide_resnet101_2", Bottleneck, [3, 4, 23, 3], pretrained, progress, spiking_neuron,
                           **kwargs)
