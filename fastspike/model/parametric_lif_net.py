"""The networks of Fang et al., "Incorporating Learnable Membrane Time Constant to Enhance Learning of
Spiking Neural Networks", ICCV 2021 (arXiv:2007.05785), as SpikingJelly 2.0.0 ships them in
``activation_based.model.parametric_lif_net``: same class names, arguments and state_dict keys
(``conv_fc.<index>.*``). Use ``spiking_neuron=neuron.ParametricLIFNode`` for the paper's PLIF networks.

Inputs: MNISTNet/FashionMNISTNet [N, 1, 28, 28], NMNISTNet [N, 2, 34, 34], CIFAR10Net [N, 3, 32, 32],
CIFAR10DVSNet [N, 2, 128, 128], DVSGestureNet [N, 2, 128, 128] (or [T, N, ...] in multi-step mode).
The 100 (110 for DVS Gesture) output neurons are averaged in groups of 10 by a ``VotingLayer``.
"""
from __future__ import annotations

from copy import deepcopy
from typing import Callable

import torch
import torch.nn as nn

from .. import layer
from ._common import require_neuron

__all__ = ["MNISTNet", "FashionMNISTNet", "NMNISTNet", "CIFAR10Net", "CIFAR10DVSNet", "DVSGestureNet"]


def _conv_bn_sn(in_channels, channels, spiking_neuron, kwargs):
    return [layer.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
            layer.BatchNorm2d(channels), spiking_neuron(**deepcopy(kwargs))]


def _head(in_features, hidden, outputs, spiking_neuron, kwargs, voting_size=None):
    return [layer.Flatten(), layer.Dropout(0.5), layer.Linear(in_features, hidden), spiking_neuron(**deepcopy(kwargs)),
            layer.Dropout(0.5), layer.Linear(hidden, outputs), spiking_neuron(**deepcopy(kwargs)),
            layer.VotingLayer() if voting_size is None else layer.VotingLayer(voting_size)]


class MNISTNet(nn.Module):
    """Two conv blocks (conv-BN-neuron-maxpool) and a two-layer spiking classifier with voting."""

    def __init__(self, channels=128, spiking_neuron: Callable = None, **kwargs):
        super().__init__()
        sn = require_neuron(spiking_neuron, type(self).__name__)
        self.conv_fc = nn.Sequential(
            *_conv_bn_sn(1, channels, sn, kwargs), layer.MaxPool2d(2, 2),
            *_conv_bn_sn(channels, channels, sn, kwargs), layer.MaxPool2d(2, 2),
            *_head(channels * 7 * 7, 2048, 100, sn, kwargs),
        )

    def forward(self, x: torch.Tensor):
        return self.conv_fc(x)


class FashionMNISTNet(MNISTNet):
    """Same network as MNISTNet (Fashion-MNIST has the same input shape)."""


class NMNISTNet(MNISTNet):
    """MNISTNet with 2 input channels (ON/OFF events) and 34x34 input."""

    def __init__(self, channels=128, spiking_neuron: Callable = None, **kwargs):
        super().__init__(channels, spiking_neuron, **kwargs)
        self.conv_fc[0] = layer.Conv2d(2, channels, kernel_size=3, padding=1, bias=False)
        self.conv_fc[-6] = layer.Linear(channels * 8 * 8, 2048)


class CIFAR10Net(nn.Module):
    """Two stages of three conv blocks, each stage followed by max pooling, then the spiking classifier."""

    def __init__(self, channels=256, spiking_neuron: Callable = None, **kwargs):
        super().__init__()
        sn = require_neuron(spiking_neuron, type(self).__name__)
        conv = []
        for _ in range(2):
            for _ in range(3):
                conv += _conv_bn_sn(3 if not conv else channels, channels, sn, kwargs)
            conv.append(layer.MaxPool2d(2, 2))
        self.conv_fc = nn.Sequential(*conv, *_head(channels * 8 * 8, 2048, 100, sn, kwargs, 10))

    def forward(self, x):
        return self.conv_fc(x)


class CIFAR10DVSNet(nn.Module):
    """Four conv-BN-neuron-maxpool blocks (128x128 -> 8x8), then the spiking classifier."""

    def __init__(self, channels=128, spiking_neuron: Callable = None, **kwargs):
        super().__init__()
        sn = require_neuron(spiking_neuron, type(self).__name__)
        conv = []
        for _ in range(4):
            conv += _conv_bn_sn(2 if not conv else channels, channels, sn, kwargs)
            conv.append(layer.MaxPool2d(2, 2))
        self.conv_fc = nn.Sequential(*conv, *_head(channels * 8 * 8, 512, 100, sn, kwargs, 10))

    def forward(self, x: torch.Tensor):
        return self.conv_fc(x)


class DVSGestureNet(nn.Module):
    """Five conv-BN-neuron-maxpool blocks (128x128 -> 4x4), then the spiking classifier (11 classes x 10)."""

    def __init__(self, channels=128, spiking_neuron: Callable = None, **kwargs):
        super().__init__()
        sn = require_neuron(spiking_neuron, type(self).__name__)
        conv = []
        for _ in range(5):
            conv += _conv_bn_sn(2 if not conv else channels, channels, sn, kwargs)
            conv.append(layer.MaxPool2d(2, 2))
        self.conv_fc = nn.Sequential(*conv, *_head(channels * 4 * 4, 512, 110, sn, kwargs, 10))

    def forward(self, x: torch.Tensor):
        return self.conv_fc(x)
