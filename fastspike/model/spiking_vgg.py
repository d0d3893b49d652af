"""Spiking VGG-11/13/16/19 with and without BatchNorm (torchvision VGG layout, ReLU -> spiking neuron),
SpikingJelly 2.0.0 arguments and state_dict keys (``features.*``, ``classifier.*``)."""
from __future__ import annotations

from copy import deepcopy
from typing import Callable

import torch.nn as nn

from .. import layer
from ._common import load_pretrained, require_neuron
from .spiking_resnet import flatten_features

__all__ = [
    "SpikingVGG",
    "spiking_vgg11",
    "spiking_vgg11_bn",
    "spiking_vgg13",
    "spiking_vgg13_bn",
    "spiking_vgg16",
    "spiking_vgg16_bn",
    "spiking_vgg19",
    "spiking_vgg19_bn",
]

model_urls = {
    "vgg11": "https://download.pytorch.org/models/vgg11-8a719046.pth",
    "vgg13": "https://download.pytorch.org/models/vgg13-19584684.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "vgg11_bn": "https://download.pytorch.org/models/vgg11_bn-6002323d.pth",
    "vgg13_bn": "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth",
    "vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
    "vgg19_bn": "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth",
}

cfgs = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class SpikingVGG(nn.Module):
    def __init__(self, cfg, batch_norm=False, norm_layer=None, num_classes=1000, init_weights=True,
                 spiking_neuron: Callable = None, **kwargs):
        super().__init__()
        spiking_neuron = require_neuron(spiking_neuron, type(self).__name__)
        self.features = self.make_layers(cfg=cfg, batch_norm=batch_norm, norm_layer=norm_layer,
                                         neuron=spiking_neuron, **kwargs)
        self.avgpool = layer.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            layer.Linear(512 * 7 * 7, 4096),
            spiking_neuron(**deepcopy(kwargs)),
            layer.Dropout(),
            layer.Linear(4096, 4096),
            spiking_neuron(**deepcopy(kwargs)),
            layer.Dropout(),
            layer.Linear(4096, num_classes),
        )
        if init_weights:
            self._initialize_weights()

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(flatten_features(x, self.avgpool))

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    @staticmethod
    def make_layers(cfg, batch_norm=False, norm_layer=None, neuron: Callable = None, **kwargs):
        norm_layer = norm_layer or layer.BatchNorm2d
        layers = []
        in_channels = 3
        for v in cfg:
            if v == "M":
                layers.append(layer.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(layer.Conv2d(in_channels, v, kernel_size=3, padding=1))
                if batch_norm:
                    layers.append(norm_layer(v))
                layers.append(neuron(**deepcopy(kwargs)))
                in_channels = v
        return nn.Sequential(*layers)


def _spiking_vgg(arch, cfg, batch_norm, pretrained, progress, norm_layer=None, spiking_neuron=None, **kwargs):
    if pretrained:
        kwargs["init_weights"] = False
    norm_layer = norm_layer if batch_norm else None
    model = SpikingVGG(cfg=cfgs[cfg], batch_norm=batch_norm, norm_layer=norm_layer, spiking_neuron=spiking_neuron,
                       **kwargs)
    if pretrained:
        load_pretrained(model, arch, model_urls[arch])
    return model


def spiking_vgg11(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking VGG-11 (config A). ``kwargs``: num_classes, init_weights; the rest go to the neuron."""
    return _spiking_vgg("vgg11", "A", False, pretrained, progress, None, spiking_neuron, **kwargs)


def spiking_vgg11_bn(pretrained=False, progress=True, norm_layer: Callable = None, spiking_neuron: Callable = None,
                     **kwargs):
    """Spiking VGG-11 with BatchNorm (``norm_layer`` default ``layer.BatchNorm2d``)."""
    return _spiking_vgg("vgg11_bn", "A", True, pretrained, progress, norm_layer, spiking_neuron, **kwargs)


def spiking_vgg13(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking VGG-13 (config B)."""
    return _spiking_vgg("vgg13", "B", False, pretrained, progress, None, spiking_neuron, **kwargs)


def spiking_vgg13_bn(pretrained=False, progress=True, norm_layer: Callable = None, spiking_neuron: Callable = None,
                     **kwargs):
    """Spiking VGG-13 with BatchNorm."""
    return _spiking_vgg("vgg13_bn", "B", True, pretrained, progress, norm_layer, spiking_neuron, **kwargs)


def spiking_vgg16(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking VGG-16 (config D)."""
    return _spiking_vgg("vgg16", "D", False, pretrained, progress, None, spiking_neuron, **kwargs)


def spiking_vgg16_bn(pretrained=False, progress=True, norm_layer: Callable = None, spiking_neuron: Callable = None,
                     **kwargs):
    """Spiking VGG-16 with BatchNorm."""
    return _spiking_vgg("vgg16_bn", "D", True, pretrained, progress, norm_layer, spiking_neuron, **kwargs)


def spiking_vgg19(pretrained=False, progress=True, spiking_neuron: Callable = None, **kwargs):
    """Spiking VGG-19 (config E)."""
    return _spiking_vgg("vgg19", "E", False, pretrained, progress, None, spiking_neuron, **kwargs)


def spiking_vgg19_bn(pretrained=False, progress=True, norm_layer: Callable = None, spiking_neuron: Callable = None,
                     **kwargs):
    """Spiking VGG-19 with BatchNorm."""
    return _spiking_vgg("vgg19_bn", "E", True, pretrained, progress, norm_layer, spiking_neuron, **kwargs)
