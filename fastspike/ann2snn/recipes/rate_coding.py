"""SpikingJelly 2.0's rate-coding recipe: every ``nn.ReLU`` module becomes
``VoltageScaler(v_th / s) -> IFNode(v_reset=None) -> VoltageScaler(s)`` with an activation scale ``s`` measured on
calibration data (layer-wise by default, channel-wise on request).

Steps (numbers match SpikingJelly's):

1. ``before_trace``: ``ann.eval()``; ``after_trace``: fold each Conv1d/2d/3d -> BatchNorm pair whose conv output
   has no other reader (``fastspike.export.fold_bn_weights``, bit-identical to torch's ``fuse_conv_bn_eval``);
   other BatchNorms stay (in eval mode);
2. ``insert_observers``: a ``VoltageHook`` (or, channel-wise, a ``ChannelVoltageHook``) after each ``nn.ReLU``
   module, named ``voltage_hook_<i>`` under the ReLU's parent (``<i>`` counts per parent);
3. ``calibrate``: every batch of the dataloader, once;
4. ``replace``: the ReLU and its hook become ``spiking_<i>.{scaler0, if_node, scaler1}`` (``channel_spiking_<i>``
   channel-wise), then the graph is made step-mode aware (``step_mode_adapters``).

Only ``nn.ReLU`` modules are converted (functional relus are left as they are, as in SpikingJelly); the
fastspike :class:`~fastspike.ann2snn.ReLUConverter` covers those, clipped ReLUs and QCFS.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, Optional, Tuple, Union

import torch
import torch.fx as fx
import torch.nn as nn

from fastspike import neuron
from ..modules import ChannelVoltageScaler, VoltageHook, VoltageScaler, check_mode, quantile
from ..passes import fold_batchnorm_pass
from .base import FXConversionRecipe
from .step_mode_adapters import adapt_step_mode_graph

__all__ = ["RateCodingRecipe", "ChannelVoltageHook", "validate_rate_coding_mode"]

_CONV_BN = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}
_INPUT_KEYS = ("input", "image", "images", "img", "x", "data", "pixel_values")


def validate_rate_coding_mode(mode: Union[str, float]) -> None:
    """'Max' (any case), 'P%' with 0 <= P <= 100, or a float in (0, 1]; NotImplementedError otherwise."""
    check_mode(mode)


def extract_batch_input(data, _inside: bool = False):
    """The model input of one calibration batch: a tensor, the first item of an (input, target) sequence, or the
    entry of a dict under one of 'input', 'image', 'images', 'img', 'x', 'data', 'pixel_values' (or its only
    entry)."""
    if isinstance(data, torch.Tensor):
        return data
    if isinstance(data, (list, tuple)):
        if not data:
            raise ValueError("a calibration batch is an empty list or tuple.")
        if len(data) == 1:
            return extract_batch_input(data[0], _inside)
        return data if _inside else extract_batch_input(data[0], not isinstance(data[0], dict))
    if isinstance(data, dict):
        if not data:
            raise ValueError("a calibration batch is an empty dict.")
        if _inside:
            return data
        for key in _INPUT_KEYS:
            if key in data:
                return extract_batch_input(data[key], True)
        if len(data) != 1:
            raise ValueError(f"a calibration batch dict with several fields ({sorted(data)}) must hold the input "
                             f"under one of {list(_INPUT_KEYS)}.")
        return extract_batch_input(next(iter(data.values())), True)
    return data


def fuse_conv_bn(fx_model: fx.GraphModule, fuse_flag: bool = True) -> fx.GraphModule:
    """Fold Conv-BatchNorm pairs (SpikingJelly's ``fuse_flag`` rule: convolutions only, others kept)."""
    if fuse_flag:
        fold_batchnorm_pass(fx_model, targets=_CONV_BN, keep_unfolded=True)
        fx_model.graph.lint()
        fx_model.delete_all_unused_submodules()
        fx_model.recompile()
    return fx_model


def is_relu(node: fx.Node, modules: Dict[str, nn.Module]) -> bool:
    return node.op == "call_module" and isinstance(node.target, str) and type(modules.get(node.target)) is nn.ReLU


def insert_module_after(fx_model: fx.GraphModule, target: str, after: fx.Node, module: nn.Module,
                        args: Tuple) -> fx.Node:
    fx_model.add_submodule(target, module)
    with fx_model.graph.inserting_after(after):
        return fx_model.graph.call_module(target, args=args)


def hook_target(node: fx.Node, counts: Dict[str, int], leaf: str) -> str:
    """``<parent>.<leaf>_<i>`` with ``<i>`` counting the hooks of each parent module."""
    parent = node.target.rpartition(".")[0]
    i = counts.get(parent, 0)
    counts[parent] = i + 1
    return f"{parent}.{leaf}_{i}" if parent else f"{leaf}_{i}"


def sole_maxpool_user(node: fx.Node, modules: Dict[str, nn.Module]) -> Optional[fx.Node]:
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module" and isinstance(modules.get(users[0].target), nn.MaxPool2d):
        return users[0]
    return None


def activation_of(hook_node: fx.Node, modules: Dict[str, nn.Module]) -> Optional[fx.Node]:
    """The ReLU a hook observes: its input, or the input of the MaxPool2d it observes."""
    src = hook_node.args[0] if hook_node.args else None
    if not isinstance(src, fx.Node):
        return None
    if is_relu(src, modules):
        return src
    if isinstance(modules.get(src.target), nn.MaxPool2d) and src.args and isinstance(src.args[0], fx.Node) \
            and is_relu(src.args[0], modules):
        return src.args[0]
    return None


def channel_dim_of(x: torch.Tensor, channel_dim: int, who: str) -> int:
    if x.dim() < 2:
        raise ValueError(f"{who}: channel-wise calibration needs activations with at least 2 dimensions, but got "
                         f"shape {tuple(x.shape)}.")
    d = channel_dim + x.dim() if channel_dim < 0 else channel_dim
    if not 0 <= d < x.dim():
        raise ValueError(f"{who}: channel_dim={channel_dim} is out of range for activations of shape "
                         f"{tuple(x.shape)}.")
    return d


def half_threshold_if(v_threshold: float = 1.0) -> nn.Module:
    """SpikingJelly's ``HalfThresholdIFNode``: a soft-reset IF neuron whose membrane starts (and resets, with
    ``reset_net``) at half its threshold."""
    node = neuron.IFNode(v_threshold=v_threshold, v_reset=None)
    node.set_reset_value("v", v_threshold / 2.0)
    node.v = v_threshold / 2.0
    return node


def scalar_threshold(node: nn.Module, who: str) -> float:
    thr = getattr(node, "v_threshold", 1.0)
    if isinstance(thr, torch.Tensor):
        if thr.numel() != 1:
            raise ValueError(f"{who} needs a scalar neuron threshold, but the neuron has v_threshold of shape "
                             f"{tuple(thr.shape)}.")
        thr = thr.item()
    if not isinstance(thr, (int, float)) or not (math.isfinite(thr) and thr > 0):
        raise ValueError(f"{who} needs a finite positive neuron threshold, but got v_threshold={thr!r}.")
    return float(thr)


def replace_activation(fx_model: fx.GraphModule, activation: fx.Node, hook_node: fx.Node, prefix: str,
                       scaler0: nn.Module, spiking: nn.Module, scaler1: nn.Module) -> None:
    """Replace ``activation`` (and the hook observing it) by ``prefix.{scaler0, if_node, scaler1}``. When the hook
    observes a MaxPool2d after the activation, the pooling moves before the neuron (it pools pre-activations)."""
    src = hook_node.args[0]
    pooled = src is not activation
    if pooled:
        src.replace_input_with(activation, activation.args[0])
    n0 = insert_module_after(fx_model, f"{prefix}.scaler0", hook_node, scaler0, (src,) if pooled else activation.args)
    n1 = insert_module_after(fx_model, f"{prefix}.if_node", n0, spiking, (n0,))
    n2 = insert_module_after(fx_model, f"{prefix}.scaler1", n1, scaler1, (n1,))
    hook_node.replace_all_uses_with(n2)
    fx_model.graph.erase_node(hook_node)
    if not pooled:
        activation.replace_all_uses_with(n2)
    fx_model.graph.erase_node(activation)


def finish(fx_model: fx.GraphModule, converter, context: str) -> fx.GraphModule:
    fx_model.graph.lint()
    fx_model.delete_all_unused_submodules()
    fx_model.recompile()
    return adapt_step_mode_graph(fx_model, context=context).to(converter.device)


def run_calibration(fx_model: fx.GraphModule, dataloader: Iterable, device, who: str) -> fx.GraphModule:
    seen = 0
    with torch.no_grad():
        for data in dataloader:
            x = extract_batch_input(data)
            if not isinstance(x, torch.Tensor):
                if isinstance(x, (list, tuple, dict)):
                    raise ValueError(f"{who} calibrates single-input models only, but a batch holds several inputs; "
                                     "subclass the recipe and override calibrate() for multi-input models.")
                x = torch.as_tensor(x)
            fx_model(x.to(device=device))
            seen += 1
    if seen == 0:
        raise ValueError(f"{who}: the calibration dataloader yielded no batches.")
    return fx_model


class ChannelVoltageHook(nn.Module):
    """Channel-wise ``VoltageHook``: per batch, the statistic of each channel of ``relu(x)`` (max, percentile or a
    fraction of the max), floored at ``eps``, with the same momentum rule; returns ``x`` unchanged."""

    def __init__(self, mode: Union[str, float] = "Max", momentum: float = 0.1, channel_dim: int = 1,
                 eps: float = 1e-6):
        super().__init__()
        self.mode = mode
        self.momentum = momentum
        self.channel_dim = channel_dim
        self.eps = eps
        self.register_buffer("scale", torch.empty(0))
        self.num_batches_tracked = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_mode(self.mode)
        d = channel_dim_of(x, self.channel_dim, "ChannelVoltageHook")
        stat = torch.clamp(x.detach(), min=0)
        if stat.dtype in (torch.float16, torch.bfloat16):
            stat = stat.float()
        per_channel = stat.movedim(d, 0).reshape(stat.shape[d], -1)
        if isinstance(self.mode, str) and self.mode.endswith("%"):
            s_t = quantile(per_channel, float(self.mode[:-1]) / 100.0, dim=1)
        else:
            s_t = per_channel.max(dim=1).values
            if not isinstance(self.mode, str):
                s_t = s_t * self.mode
        s_t = torch.clamp(s_t.to(device=x.device, dtype=x.dtype), min=self.eps)
        if self.num_batches_tracked == 0:
            self.scale = s_t.detach()
        else:
            old = self.scale.to(device=x.device, dtype=x.dtype)
            self.scale = ((1 - self.momentum) * old + self.momentum * s_t).detach()
        self.num_batches_tracked += x.shape[0]
        return x

    def compute_threshold(self) -> torch.Tensor:
        if self.scale.numel() == 0:
            raise ValueError("ChannelVoltageHook: no calibration activations were recorded.")
        if not bool(torch.isfinite(self.scale).all()) or bool((self.scale <= 0).any()):
            raise ValueError(f"ChannelVoltageHook: channel thresholds must be finite and positive, but got "
                             f"{self.scale.tolist()}.")
        return self.scale.detach()


class RateCodingRecipe(FXConversionRecipe):
    """SpikingJelly 2.0's rate-coding ReLU -> IF conversion (module docstring).

    :param dataloader: calibration batches: tensors, (input, target) pairs or dicts with an input key.
    :param mode: ``'Max'``, a percentile string such as ``'99.9%'``, or a float in (0, 1] (that fraction of the
        max). Layer-wise statistics are taken over the whole batch tensor.
    :param momentum: running estimate ``s <- (1 - momentum) s + momentum s_batch`` (the first batch sets s).
    :param fuse_flag: fold Conv-BatchNorm pairs before calibrating.
    :param channel_wise: one scale per channel (along ``channel_dim``) instead of one per layer.
    :param channel_dim: the channel dimension of a single step's activation.
    :param pre_spike_maxpool: channel-wise only: a ReLU -> MaxPool2d pair pools the pre-activations and puts the
        neuron after the pooling.
    :param half_threshold: channel-wise only: neurons start at half their threshold.
    :param eps: channel-wise only: lower bound of each channel's scale.
    :param neuron_factory: ``scale -> neuron`` (``1.0`` is passed channel-wise); default
        ``IFNode(v_threshold=1.0, v_reset=None)``. The neuron's threshold must be a positive scalar.
    """

    def __init__(self, dataloader: Iterable, mode: Union[str, float] = "Max", momentum: float = 0.1,
                 fuse_flag: bool = True, channel_wise: bool = False, channel_dim: int = 1,
                 pre_spike_maxpool: bool = False, half_threshold: bool = False, eps: float = 1e-6,
                 neuron_factory: Optional[Callable[[float], nn.Module]] = None) -> None:
        if channel_wise and half_threshold and neuron_factory is not None:
            raise ValueError("RateCodingRecipe: channel_wise=True with half_threshold=True builds its own neurons, "
                             "so neuron_factory must be None.")
        self.dataloader = dataloader
        self.mode = mode
        self.momentum = momentum
        self.fuse_flag = fuse_flag
        self.channel_wise = channel_wise
        self.channel_dim = channel_dim
        self.pre_spike_maxpool = pre_spike_maxpool
        self.half_threshold = half_threshold
        self.eps = eps
        self.neuron_factory = neuron_factory

    def validate(self, converter) -> None:
        if self.dataloader is None:
            raise ValueError("RateCodingRecipe needs calibration data: pass RateCodingRecipe(dataloader=...).")
        check_mode(self.mode)
        m = self.momentum
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not (math.isfinite(m) and 0.0 <= m <= 1.0):
            raise ValueError(f"RateCodingRecipe: momentum must be a finite number in [0, 1], but got {m!r}.")
        for name in ("channel_wise", "pre_spike_maxpool", "half_threshold"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"RateCodingRecipe: {name} must be a bool, but got {getattr(self, name)!r}.")
        if isinstance(self.channel_dim, bool) or not isinstance(self.channel_dim, int):
            raise ValueError(f"RateCodingRecipe: channel_dim must be an int, but got {self.channel_dim!r}.")
        if isinstance(self.eps, bool) or not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise ValueError(f"RateCodingRecipe: eps must be a positive number, but got {self.eps!r}.")

    def before_trace(self, converter, ann: nn.Module) -> nn.Module:
        return ann.eval()

    def after_trace(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        return fuse_conv_bn(fx_model, self.fuse_flag).to(converter.device)

    def insert_observers(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        modules = dict(fx_model.named_modules())
        counts: Dict[str, int] = {}
        for node in list(fx_model.graph.nodes):
            if not is_relu(node, modules):
                continue
            if self.channel_wise:
                target = hook_target(node, counts, "channel_voltage_hook")
                hook = ChannelVoltageHook(self.mode, self.momentum, self.channel_dim, self.eps)
            else:
                target = hook_target(node, counts, "voltage_hook")
                hook = VoltageHook(momentum=self.momentum, mode=self.mode)
            observed = node
            if self.channel_wise and self.pre_spike_maxpool:
                observed = sole_maxpool_user(node, modules) or node
            hook_node = insert_module_after(fx_model, target, observed, hook, (observed,))
            if self.channel_wise:
                observed.replace_all_uses_with(hook_node, delete_user_cb=lambda user: user is not hook_node)
            modules[target] = hook
        fx_model.graph.lint()
        fx_model.recompile()
        return fx_model.to(converter.device)

    def calibrate(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        return run_calibration(fx_model, self.dataloader, converter.device, "RateCodingRecipe")

    def replace(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        modules = dict(fx_model.named_modules())
        hook_type = ChannelVoltageHook if self.channel_wise else VoltageHook
        for hook_node in list(fx_model.graph.nodes):
            if hook_node.op != "call_module" or not isinstance(modules.get(hook_node.target), hook_type):
                continue
            activation = activation_of(hook_node, modules)
            if activation is None or (not self.channel_wise and activation is not hook_node.args[0]):
                continue
            hook = modules[hook_node.target]
            parent, _, leaf = hook_node.target.rpartition(".")
            if self.channel_wise:
                leaf = leaf.replace("channel_voltage_hook_", "channel_spiking_")
                scaler0, spiking, scaler1 = self._channel_wise(hook)
            else:
                leaf = leaf.replace("voltage_hook_", "spiking_")
                where = f"ReLU {activation.target!r} (hook {hook_node.target!r})"
                scaler0, spiking, scaler1 = self._layer_wise(hook, where)
            replace_activation(fx_model, activation, hook_node, f"{parent}.{leaf}" if parent else leaf, scaler0,
                               spiking, scaler1)
        return finish(fx_model, converter, "RateCodingRecipe")

    def _layer_wise(self, hook: VoltageHook, where: str):
        scale = float(hook.scale.item())
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"RateCodingRecipe: the activation scale of {where} is {scale}; it must be finite and "
                             "positive (the ReLU never fired on the calibration data?).")
        spiking = neuron.IFNode(v_reset=None) if self.neuron_factory is None else self.neuron_factory(scale)
        thr = getattr(spiking, "v_threshold", 1.0)
        if isinstance(thr, torch.Tensor) and thr.numel() == 1:
            thr = thr.item()
        return VoltageScaler(thr / scale), spiking, VoltageScaler(scale)

    def _channel_wise(self, hook: ChannelVoltageHook):
        threshold = hook.compute_threshold()
        if self.half_threshold:
            spiking, thr = half_threshold_if(1.0), 1.0
        else:
            spiking = neuron.IFNode(v_reset=None) if self.neuron_factory is None else self.neuron_factory(1.0)
            thr = scalar_threshold(spiking, "channel-wise RateCodingRecipe")
        return (ChannelVoltageScaler(thr / threshold, channel_dim=self.channel_dim), spiking,
                ChannelVoltageScaler(threshold, channel_dim=self.channel_dim))
