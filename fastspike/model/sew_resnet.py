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
from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import torch
import torch.nn as nn

from .. import functional
from .._errors import UnsupportedOptionError
from ._common import load_pretrained, require_neuron
from ._config import ModelBuilder, ModelConfig, NeuronConfig, resolve_neuron_config
from .spiking_resnet import _basic_body, _bottleneck_body, _ResidualBranch, _ResNetTrunk, model_urls
from .spiking_resnet import conv1x1, conv3x3  # noqa: F401  (public here too, as in SpikingJelly)

__all__ = [
    "SEWResNet",
    "SEWResNet34Config",
    "sew_function",
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


# -- serializable configuration (SpikingJelly 2.0.0's SEWResNet34Config / SEWResNet34Builder) ---------------------
class _SEWHead(nn.Module):
    """Last pipeline chunk: the rest of layer4, pooling and the classifier (multi-step input)."""

    def __init__(self, layer4: nn.Module, avgpool: nn.Module, fc: nn.Module) -> None:
        super().__init__()
        self.layer4, self.avgpool, self.fc = layer4, avgpool, fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.layer4(x)), 2))


def _pipeline_stage(model: nn.Module, rank: int, size: int) -> nn.Module:
    """Split SEW-ResNet34 into ``size`` (1, 2 or 4) consecutive stages; return stage ``rank``."""
    if size == 1:
        return model
    if size not in (2, 4):
        raise ValueError(f"SEW-ResNet34 PP size must be 1, 2, or 4, got {size}.")
    l2, l3, l4 = (tuple(getattr(model, f"layer{i}").children()) for i in (2, 3, 4))
    chunks = (nn.Sequential(model.conv1, model.bn1, model.sn1, model.maxpool, model.layer1, l2[0]),
              nn.Sequential(*l2[1:], l3[0]), nn.Sequential(*l3[1:], l4[0]),
              _SEWHead(nn.Sequential(*l4[1:]), model.avgpool, model.fc))
    per_stage = len(chunks) // size
    return nn.Sequential(*chunks[rank * per_stage:(rank + 1) * per_stage])


@dataclass(frozen=True)
class SEWResNet34Config(ModelConfig):
    """ImageNet-style SEW-ResNet34: ``image_size`` (> 0), ``in_channels`` (3), ``connection`` ('ADD', 'AND' or
    'IAND'), and the default LIF neuron's ``tau`` (> 1) and ``detach_reset`` unless ``neuron_config`` names one."""

    builder: ClassVar[str] = "fastspike.model.sew_resnet.SEWResNet34Builder"
    image_size: int = 224
    in_channels: int = 3
    connection: str = "ADD"
    tau: float = 2.0
    detach_reset: bool = True
    neuron_config: Optional[NeuronConfig] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}.")
        if self.in_channels != 3:
            raise ValueError(f"The built-in SEW-ResNet34 requires in_channels=3, got {self.in_channels}.")
        if self.connection not in CONNECT_FUNCTIONS:
            raise ValueError(f"connection must be 'ADD', 'AND', or 'IAND', got {self.connection!r}.")
        if self.neuron_config is None and self.tau <= 1.0:
            raise ValueError(f"tau must be greater than 1.0, got {self.tau}.")


class SEWResNet34Builder(ModelBuilder):
    """Builds SEWResNet34Config's model (see fastspike.model._config for what ``build`` supports)."""

    _fsdp_root_types = (BasicBlock,)

    def _build_canonical_model(self) -> nn.Module:
        config = self.config
        if not isinstance(config, SEWResNet34Config):
            raise TypeError(f"SEWResNet34Builder requires SEWResNet34Config, got {type(config).__name__}.")
        spiking_neuron, neuron_kwargs = resolve_neuron_config(config.neuron_config)
        if spiking_neuron is None:
            from ..neuron import LIFNode

            spiking_neuron, neuron_kwargs = LIFNode, {"tau": config.tau, "detach_reset": config.detach_reset}
        net = sew_resnet34(pretrained=False, cnf=config.connection, spiking_neuron=spiking_neuron,
                           num_classes=config.num_classes, **neuron_kwargs)
        functional.set_step_mode(net, config.step_mode)
        return net

    def _pipeline_stage(self, model: nn.Module, rank: int, size: int) -> nn.Module:
        return _pipeline_stage(model, rank, size)

    def _stage_shapes(self, micro_batch: int, rank: int, size: int):
        c = self.config
        stem = (c.image_size + 3) // 4
        shapes = [(c.time_steps, micro_batch, ch, (stem + k) // d, (stem + k) // d)
                  for ch, k, d in ((128, 1, 2), (256, 3, 4), (512, 7, 8))] + [(c.time_steps, micro_batch,
                                                                                 c.num_classes)]
        per_stage = len(shapes) // size
        start = rank * per_stage
        first = (micro_batch, c.time_steps, c.in_channels, c.image_size, c.image_size)
        return (first if start == 0 else shapes[start - 1]), shapes[start + per_stage - 1]
