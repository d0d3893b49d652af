"""SpikingJelly 2.0's training-free local threshold balancing recipe (Bu, Li and Yu, "Inference-Scale Complexity
in ANN-SNN Conversion for High-Performance and Low-Power Applications", CVPR 2025).

Each ``nn.ReLU`` module (with the MaxPool2d that alone reads it, if any) gets a channel-wise threshold ``theta``
learnt from calibration data without touching the ANN: per batch, ``theta += 2 * mean(max(relu(x) - theta, 0))``
over every dimension but the channel (from zero, floored at ``eps``), and the calibration forward passes
``min(relu(x), theta)`` on. The ReLU then becomes ``ChannelVoltageScaler(1 / theta) -> IF neuron starting at half
its threshold 1 -> ChannelVoltageScaler(theta)``, named ``ltb_spiking_<i>.{scaler0, if_node, scaler1}``; a
following MaxPool2d pools the pre-activations, before the neuron.
"""
from __future__ import annotations

from typing import Dict, Iterable

import torch
import torch.fx as fx
import torch.nn as nn

from ..modules import ChannelVoltageScaler
from .base import FXConversionRecipe
from .rate_coding import activation_of, channel_dim_of, finish, fuse_conv_bn, half_threshold_if, hook_target, \
    insert_module_after, is_relu, replace_activation, run_calibration, sole_maxpool_user

__all__ = ["LocalThresholdBalancingRecipe", "LocalThresholdBalancingHook"]


class LocalThresholdBalancingHook(nn.Module):
    """The calibration observer of :class:`LocalThresholdBalancingRecipe` (module docstring): updates the
    per-channel ``threshold`` buffer and returns ``min(relu(x), threshold)``."""

    def __init__(self, channel_dim: int = 1, eps: float = 1e-6):
        super().__init__()
        self.channel_dim = channel_dim
        self.eps = float(eps)
        self.register_buffer("threshold", torch.empty(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = channel_dim_of(x, self.channel_dim, "LocalThresholdBalancingHook")
        positive = torch.clamp(x, min=0)
        stat = positive.detach()
        if stat.dtype in (torch.float16, torch.bfloat16):
            stat = stat.float()
        if self.threshold.numel() == 0:
            self.threshold = torch.zeros(x.shape[d], device=stat.device, dtype=stat.dtype)
        shape = [1] * x.dim()
        shape[d] = -1
        theta = self.threshold.to(device=stat.device, dtype=stat.dtype)
        others = tuple(i for i in range(x.dim()) if i != d)
        overflow = torch.clamp(stat - theta.reshape(shape), min=0)
        theta = torch.clamp(theta + 2.0 * overflow.mean(dim=others), min=self.eps)
        self.threshold = theta.detach()
        return torch.minimum(positive, theta.to(device=x.device, dtype=x.dtype).reshape(shape))

    def compute_threshold(self) -> torch.Tensor:
        if self.threshold.numel() == 0:
            raise ValueError("LocalThresholdBalancingHook: no calibration activations were recorded.")
        if not bool(torch.isfinite(self.threshold).all()) or bool((self.threshold <= 0).any()):
            raise ValueError(f"LocalThresholdBalancingHook: thresholds must be finite and positive, but got "
                             f"{self.threshold.tolist()}.")
        return self.threshold.detach()


class LocalThresholdBalancingRecipe(FXConversionRecipe):
    """Channel-wise thresholds balanced on calibration data (module docstring).

    :param dataloader: calibration batches (as for ``RateCodingRecipe``).
    :param channel_dim: the channel dimension of a single step's ReLU output.
    :param fuse_flag: fold Conv-BatchNorm pairs first.
    :param eps: lower bound of each threshold.
    """

    def __init__(self, dataloader: Iterable, channel_dim: int = 1, fuse_flag: bool = True, eps: float = 1e-6):
        self.dataloader = dataloader
        self.channel_dim = channel_dim
        self.fuse_flag = fuse_flag
        self.eps = eps

    def validate(self, converter) -> None:
        if self.dataloader is None:
            raise ValueError("LocalThresholdBalancingRecipe needs calibration data: pass dataloader=....")
        if isinstance(self.channel_dim, bool) or not isinstance(self.channel_dim, int):
            raise ValueError(f"LocalThresholdBalancingRecipe: channel_dim must be an int, but got "
                             f"{self.channel_dim!r}.")
        if not self.eps > 0:
            raise ValueError(f"LocalThresholdBalancingRecipe: eps must be positive, but got {self.eps!r}.")

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
            target = hook_target(node, counts, "ltb_hook")
            observed = sole_maxpool_user(node, modules) or node
            hook = LocalThresholdBalancingHook(self.channel_dim, self.eps)
            hook_node = insert_module_after(fx_model, target, observed, hook, (observed,))
            observed.replace_all_uses_with(hook_node, delete_user_cb=lambda user: user is not hook_node)
            modules[target] = hook
        fx_model.graph.lint()
        fx_model.recompile()
        return fx_model.to(converter.device)

    def calibrate(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        return run_calibration(fx_model, self.dataloader, converter.device, "LocalThresholdBalancingRecipe")

    def replace(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        modules = dict(fx_model.named_modules())
        for hook_node in list(fx_model.graph.nodes):
            hook = modules.get(hook_node.target) if hook_node.op == "call_module" else None
            if not isinstance(hook, LocalThresholdBalancingHook):
                continue
            activation = activation_of(hook_node, modules)
            if activation is None:
                continue
            theta = hook.compute_threshold()
            parent, _, leaf = hook_node.target.rpartition(".")
            leaf = leaf.replace("ltb_hook_", "ltb_spiking_")
            replace_activation(fx_model, activation, hook_node, f"{parent}.{leaf}" if parent else leaf,
                               ChannelVoltageScaler(1.0 / theta, channel_dim=self.channel_dim), half_threshold_if(1.0),
                               ChannelVoltageScaler(theta, channel_dim=self.channel_dim))
        return finish(fx_model, converter, "LocalThresholdBalancingRecipe")
