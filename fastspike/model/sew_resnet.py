"""Spike-Element-Wise ResNets (Fang et al., NeurIPS 2021), SpikingJelly 2.0.0 arguments and state_dict keys.

Each residual block ends with its own spiking neuron and joins the spikes of the residual branch and of
the shortcut with a connect function ``cnf``: 'ADD' (A + S), 'AND' (A * S) or 'IAND'. The shortcut's
downsample path (conv1x1 + BN) is followed by a spiking neuron ``downsample_sn``.
IAND follows SpikingJelly 2.0.0 exactly: in BasicBlock it is ``identity * (1 - out)``, in Bottleneck
``out * (1 - identity)``. Both blocks are one class (``_SEWBlock``) that differs only in its body and that order.
An unknown ``cnf`` raises ``UnsupportedOptionError`` (a ValueError that is also SpikingJelly's NotImplementedError).
"""
from __future__ import annotations

from copy import deepcopy
from typing import Callable

import torch
import torch.nn as nn

from ..layer._errors import UnsupportedOptionError
from ._common import load_pretrained, require_neuron
from .spiking_resnet import (_basic_body, _bottleneck_body, _ResidualBranch, _ResNetTrunk, conv1x1, conv3x3,
                             model_urls)

__all__ = [
    "SEWResNet",
    "BasicBlock",
    "Bottleneck",
    "sew_function",
    "conv3x3",
    "conv1x1",
    "sew_resnet18",
    "sew_resnet34",
    "sew_resnet50",
    "sew_resnet101",
    "sew_resnet152",
    "sew_resnext50_32x4d",
    "sew_resnext101_32x8d",
    "sew_wide_resnet50_2",
    "sew_wide_resnet101_2",
]

CONNECT_FUNCTIONS = ("ADD", "AND", "IAND")


def _check_cnf(cnf) -> None:
    if cnf not in CONNECT_FUNCTIONS:
        raise UnsupportedOptionError(f"cnf must be one of {CONNECT_FUNCTIONS}, got cnf={cnf!r}")


def sew_function(x: torch.Tensor, y: torch.Tensor, cnf: str) -> torch.Tensor:
    """Join two spike tensors: 'ADD' x + y, 'AND' x * y, 'IAND' x * (1 - y)."""
    if cnf == "ADD":
        return x + y
    if cnf == "AND":
        return x * y
    if cnf == "IAND":
        return x * (1.0 - y)
    _check_cnf(cnf)


class _SEWBlock(_ResidualBranch):
    """One implementation of both SEW blocks: every stage of the residual branch fires, the shortcut's
    downsample (when there is one) is followed by ``downsample_sn``, and ``sew_function`` joins the two.
    The subclasses set the body (``_body``, ``_depth``, ``expansion``) and the join's argument order."""

    _body = None
    _identity_first = True  # sew_function(identity, out) in BasicBlock, sew_function(out, identity) in Bottleneck

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, dilation=1,
                 norm_layer=None, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
        super().__init__()
        type(self)._body(self, inplanes, planes, stride, downsample, groups, base_width, dilation, norm_layer,
                         spiking_neuron, kwargs)
        if downsample is not None:
            self.downsample_sn = spiking_neuron(**deepcopy(kwargs))
        self.stride = stride
        self.cnf = cnf

    def forward(self, x):
        out = self._branch(x)
        identity = x if self.downsample is None else self.downsample_sn(self.downsample(x))
        return sew_function(identity, out, self.cnf) if self._identity_first else sew_function(out, identity, self.cnf)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf}"


class BasicBlock(_SEWBlock):
    expansion = 1
    _depth = 2
    _body = staticmethod(_basic_body)
    _identity_first = True


class Bottleneck(_SEWBlock):
    expansion = 4
    _depth = 3
    _body = staticmethod(_bottleneck_body)
    _identity_first = False


class SEWResNet(_ResNetTrunk):
    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1, width_per_group=64,
                 replace_stride_with_dilation=None, norm_layer=None, cnf: str = None, spiking_neuron: Callable = None,
                 **kwargs):
        require_neuron(spiking_neuron, type(self).__name__)
        _check_cnf(cnf)
        super().__init__(block, layers, num_classes, zero_init_residual, groups, width_per_group,
                         replace_stride_with_dilation, norm_layer, spiking_neuron, {"cnf": cnf}, kwargs,
                         BasicBlock, Bottleneck)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False, cnf: str = None,
                    spiking_neuron: Callable = None, **kwargs):
        return self._build_layer(block, planes, blocks, stride, dilate, {"cnf": cnf}, spiking_neuron, kwargs)


def _sew_resnet(arch, block, layers, pretrained, progress, cnf, spiking_neuron, **kwargs):
    model = SEWResNet(block, layers, cnf=cnf, spiking_neuron=spiking_neuron, **kwargs)
    if pretrained:
        load_pretrained(model, arch, model_urls[arch])
    return model


def sew_resnet18(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW ResNet-18; ``cnf`` in 'ADD', 'AND', 'IAND'. ``kwargs``: SEWResNet options (num_classes, ...),
    the rest go to ``spiking_neuron``."""
    return _sew_resnet("resnet18", BasicBlock, [2, 2, 2, 2], pretrained, progress, cnf, spiking_neuron, **kwargs)


def sew_resnet34(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW ResNet-34 (see ``sew_resnet18``)."""
    return _sew_resnet("resnet34", BasicBlock, [3, 4, 6, 3], pretrained, progress, cnf, spiking_neuron, **kwargs)


def sew_resnet50(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW ResNet-50 (see ``sew_resnet18``)."""
    return _sew_resnet("resnet50", Bottleneck, [3, 4, 6, 3], pretrained, progress, cnf, spiking_neuron, **kwargs)


def sew_resnet101(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW ResNet-101 (see ``sew_resnet18``)."""
    return _sew_resnet("resnet101", Bottleneck, [3, 4, 23, 3], pretrained, progress, cnf, spiking_neuron, **kwargs)


def sew_resnet152(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW ResNet-152 (see ``sew_resnet18``)."""
    return _sew_resnet("resnet152", Bottleneck, [3, 8, 36, 3], pretrained, progress, cnf, spiking_neuron, **kwargs)


def sew_resnext50_32x4d(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW ResNeXt-50 32x4d (see ``sew_resnet18``)."""
    kwargs["groups"] = 32
    kwargs["width_per_group"] = 4
    return _sew_resnet("resnext50_32x4d", Bottleneck, [3, 4, 6, 3], pretrained, progress, cnf, spiking_neuron,
                       **kwargs)


def sew_resnext101_32x8d(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW ResNeXt-101 32x8d (see ``sew_resnet18``)."""
    kwargs["groups"] = 32
    kwargs["width_per_group"] = 8
    return _sew_resnet("resnext101_32x8d", Bottleneck, [3, 4, 23, 3], pretrained, progress, cnf, spiking_neuron,
                       **kwargs)


def sew_wide_resnet50_2(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW Wide ResNet-50-2 (see ``sew_resnet18``)."""
    kwargs["width_per_group"] = 64 * 2
    return _sew_resnet("wide_resnet50_2", Bottleneck, [3, 4, 6, 3], pretrained, progress, cnf, spiking_neuron,
                       **kwargs)


def sew_wide_resnet101_2(pretrained=False, progress=True, cnf: str = None, spiking_neuron: Callable = None, **kwargs):
    """SEW Wide ResNet-101-2 (see ``sew_resnet18``)."""
    kwargs["width_per_group"] = 64 * 2
    return _sew_resnet("wide_resnet101_2", Bottleneck, [3, 4, 23, 3], pretrained, progress, cnf, spiking_neuron,
                       **kwargs)
