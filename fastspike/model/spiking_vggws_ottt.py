"""The VGG networks of online training through time (OTTT, Xiao et al., NeurIPS 2022), with SpikingJelly
2.0.0's classes, builders, arguments and state_dict keys.

``OTTTSpikingVGG`` stacks (WS)Conv2d -> neuron [-> Scale(2.74) with weight standardisation] [-> Dropout] per
VGG config entry, with max pooling ('M') or average pooling ('A'), inside ``layer.OTTTSequential`` containers
so that an online neuron's ``[spike, trace]`` output is routed correctly; the classifier is light (adaptive
pool to ``fc_hw`` x ``fc_hw``, flatten, linear) or VGG's three linear layers. Single-step: input [N, 3, H, W]
per time step.

SpikingJelly's builders default to its ``OTTTLIFNode``; here the default is ``fastspike.neuron.OTTTLIFNode``
when fastspike.neuron provides it, otherwise ``spiking_neuron=`` must be passed (e.g. ``neuron.LIFNode``).
"""
from __future__ import annotations

from copy import deepcopy
from typing import Callable, Optional

import torch.nn as nn

from .. import layer, neuron

__all__ = ["OTTTSpikingVGG", "ottt_spiking_vgg11", "ottt_spiking_vgg11_ws", "ottt_spiking_vgg13",
           "ottt_spiking_vgg13_ws", "ottt_spiking_vgg16", "ottt_spiking_vgg16_ws", "ottt_spiking_vgg19",
           "ottt_spiking_vgg19_ws", "ottt_spiking_vggws"]

#: SpikingJelly's default neuron for these builders, once fastspike.neuron has it (None until then)
DEFAULT_NEURON: Optional[Callable] = getattr(neuron, "OTTTLIFNode", None)

WS_SCALE = 2.74  # rescales the output of a weight-standardised layer's neuron


class Scale(nn.Module):
    """Multiply by a constant ``scale``."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return x * self.scale


def _require_neuron(spiking_neuron) -> Callable:
    if spiking_neuron is None:
        raise TypeError("OTTTSpikingVGG: pass spiking_neuron= (SpikingJelly's default, OTTTLIFNode, is not in "
                        "fastspike.neuron yet; e.g. fastspike.neuron.LIFNode); its keyword arguments come from "
                        "the builder's **kwargs")
    if not callable(spiking_neuron):
        raise TypeError(f"OTTTSpikingVGG: spiking_neuron must be callable, got {type(spiking_neuron).__name__}")
    return spiking_neuron


class OTTTSpikingVGG(nn.Module):
    """OTTT VGG from a config list ``cfg`` (channel counts, 'M' max pool, 'A' average pool).
    ``kwargs``: ``fc_hw`` (the light classifier's pooled size, default 1); the rest go to ``spiking_neuron``.
    (SpikingJelly 2.0.0 also passes ``fc_hw`` to the neuron, which fails; fastspike takes it out first.)"""

    def __init__(self, cfg, weight_standardization=True, num_classes=1000, init_weights=True,
                 spiking_neuron: Callable = None, light_classifier=True, drop_rate=0.0, **kwargs):
        super().__init__()
        spiking_neuron = _require_neuron(spiking_neuron)
        self.fc_hw = kwargs.pop("fc_hw", 1)
        ws_scale = WS_SCALE if weight_standardization else 1.0
        self.neuron = spiking_neuron
        self.features = self.make_layers(cfg=cfg, weight_standardization=weight_standardization,
                                         neuron=spiking_neuron, drop_rate=drop_rate, **kwargs)
        if light_classifier:
            self.classifier = layer.OTTTSequential(layer.AdaptiveAvgPool2d((self.fc_hw, self.fc_hw)),
                                                   layer.Flatten(1),
                                                   layer.Linear(512 * self.fc_hw ** 2, num_classes))
        else:
            linear = layer.WSLinear if weight_standardization else layer.Linear
            self.classifier = layer.OTTTSequential(
                layer.AdaptiveAvgPool2d((7, 7)), layer.Flatten(1),
                linear(512 * 7 * 7, 4096), spiking_neuron(**deepcopy(kwargs)), Scale(ws_scale), layer.Dropout(),
                linear(4096, 4096), spiking_neuron(**deepcopy(kwargs)), Scale(ws_scale), layer.Dropout(),
                layer.Linear(4096, num_classes))
        if init_weights:
            self._initialize_weights()

    def forward(self, x):
        return self.classifier(self.features(x))

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, layer.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, layer.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, layer.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

    @staticmethod
    def make_layers(cfg, weight_standardization=True, neuron: Callable = None, drop_rate=0.0, **kwargs):
        conv = layer.WSConv2d if weight_standardization else layer.Conv2d
        layers = []
        in_channels = 3
        for v in cfg:
            if v == "M":
                layers.append(layer.MaxPool2d(kernel_size=2, stride=2))
            elif v == "A":
                layers.append(layer.AvgPool2d(kernel_size=2, stride=2))
            else:
                layers += [conv(in_channels, v, kernel_size=3, padding=1), neuron(**deepcopy(kwargs))]
                if weight_standardization:
                    layers.append(Scale(WS_SCALE))
                if drop_rate > 0.0:
                    layers.append(layer.Dropout(drop_rate))
                in_channels = v
        return layer.OTTTSequential(*layers)


cfgs = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
    "S": [64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512],
}


def _spiking_vgg(cfg, weight_standardization, spiking_neuron, **kwargs):
    return OTTTSpikingVGG(cfg=cfgs[cfg], weight_standardization=weight_standardization,
                          spiking_neuron=spiking_neuron, **kwargs)


def ottt_spiking_vggws(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """OTTT's VGG with weight standardisation and the light classifier (config 'S')."""
    return _spiking_vgg("S", True, spiking_neuron, light_classifier=True, **kwargs)


def ottt_spiking_vgg11(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """VGG-11 (config 'A') for OTTT, full classifier."""
    return _spiking_vgg("A", False, spiking_neuron, light_classifier=False, **kwargs)


def ottt_spiking_vgg11_ws(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """VGG-11 with weight standardisation."""
    return _spiking_vgg("A", True, spiking_neuron, light_classifier=False, **kwargs)


def ottt_spiking_vgg13(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """VGG-13 (config 'B')."""
    return _spiking_vgg("B", False, spiking_neuron, light_classifier=False, **kwargs)


def ottt_spiking_vgg13_ws(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """VGG-13 with weight standardisation."""
    return _spiking_vgg("B", True, spiking_neuron, light_classifier=False, **kwargs)


def ottt_spiking_vgg16(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """VGG-16 (config 'D')."""
    return _spiking_vgg("D", False, spiking_neuron, light_classifier=False, **kwargs)


def ottt_spiking_vgg16_ws(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """VGG-16 with weight standardisation."""
    return _spiking_vgg("D", True, spiking_neuron, light_classifier=False, **kwargs)


def ottt_spiking_vgg19(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """VGG-19 (config 'E')."""
    return _spiking_vgg("E", False, spiking_neuron, light_classifier=False, **kwargs)


def ottt_spiking_vgg19_ws(spiking_neuron: Callable = DEFAULT_NEURON, **kwargs):
    """VGG-19 with weight standardisation."""
    return _spiking_vgg("E", True, spiking_neuron, light_classifier=False, **kwargs)
