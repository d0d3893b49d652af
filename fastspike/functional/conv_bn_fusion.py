"""Conv -> BatchNorm pairs of a network, fused for inference or packed for training (SpikingJelly 2.0.0's
``functional.conv_bn_fusion``; like there, not imported by ``fastspike.functional`` itself).

* :func:`fuse_conv_bn_eval_modules` (eval mode): every convolution whose only consumer is a BatchNorm becomes
  one convolution with the BatchNorm folded into its weight and bias (``torch.nn.utils.fusion``).
* :func:`pack_conv_bn_train_modules` (train mode): every such pair becomes one module that, on a sequence
  [T, N, ...], folds T into the batch once for both layers.

Both trace the network with ``torch.fx`` (stateful step modules and neurons are leaves) and return the
rewritten ``fx.GraphModule``. fastspike's ``layer.Conv*d`` / ``layer.BatchNorm*d`` subclass torch's, so
one set of patterns covers both; this module does not import ``fastspike.layer``.
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Tuple

import torch
import torch.nn as nn
from torch import fx
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .. import base

__all__ = ["fuse_conv_bn_eval_modules", "pack_conv_bn_train_modules"]

_PAIRS = ((nn.Conv1d, nn.BatchNorm1d), (nn.Conv2d, nn.BatchNorm2d), (nn.Conv3d, nn.BatchNorm3d))


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (_PackedConvBN, base.StepModule)) or super().is_leaf_module(m, qualname)


@contextlib.contextmanager
def _single_step(m: nn.Module):
    if isinstance(m, base.StepModule):
        old, m.step_mode = m.step_mode, "s"
        try:
            yield
        finally:
            m.step_mode = old
    else:
        yield


class _PackedConvBN(nn.Module):
    """A convolution and its BatchNorm run as one step: a sequence [T, N, C, ...] is flattened to
    [T*N, C, ...] once for both (when both are in step mode 'm'), otherwise ``bn(conv(x))``."""

    def __init__(self, conv: nn.Module, bn: nn.Module):
        super().__init__()
        self.conv = conv
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq_dim = {nn.Conv1d: 4, nn.Conv2d: 5, nn.Conv3d: 6}
        wants_seq = next((d for cls, d in seq_dim.items() if isinstance(self.conv, cls)), None)
        if (getattr(self.conv, "step_mode", "m") == "m" and getattr(self.bn, "step_mode", "m") == "m"
                and x.dim() == wants_seq):
            lead = x.shape[:2]
            with _single_step(self.conv), _single_step(self.bn):
                y = self.bn(self.conv(x.flatten(0, 1)))
            return y.unflatten(0, lead)
        return self.bn(self.conv(x))


def _trace(net: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    graph = tracer.trace(net)
    return fx.GraphModule(tracer.root, graph)


def _pairs(gm: fx.GraphModule, modules: Dict[str, nn.Module]) -> Dict[Tuple[str, str], List[fx.Node]]:
    """(conv target, bn target) -> the BatchNorm call nodes, for pairs where the convolution's only consumer is
    the BatchNorm at every call and the convolution feeds a single BatchNorm module."""
    calls: Dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    found: Dict[Tuple[str, str], List[fx.Node]] = {}
    bns_of: Dict[str, set] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        src = node.args[0]
        if src.op != "call_module" or len(src.users) != 1:
            continue
        conv, bn = modules.get(src.target), modules.get(node.target)
        if any(isinstance(conv, c) and isinstance(bn, b) for c, b in _PAIRS):
            found.setdefault((src.target, node.target), []).append(node)
            bns_of.setdefault(src.target, set()).add(node.target)
    return {pair: nodes for pair, nodes in found.items()
            if len(bns_of[pair[0]]) == 1 and len(nodes) == calls[pair[0]]}


def _replace(gm: fx.GraphModule, modules: Dict[str, nn.Module], target: str, new: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(modules[parent] if parent else gm, name, new)
    modules[target] = new


def _rewrite(gm: fx.GraphModule, modules, pair, nodes, new: nn.Module) -> None:
    _replace(gm, modules, pair[0], new)
    for node in nodes:  # the BatchNorm's users now read the (fused or packed) convolution's output
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)


def _finish(gm: fx.GraphModule) -> fx.GraphModule:
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def fuse_conv_bn_eval_modules(net: nn.Module) -> fx.GraphModule:
    """Fold every BatchNorm that follows a convolution into it (``net`` must be in eval mode)."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"fuse_conv_bn_eval_modules: net must be a torch.nn.Module, but got {type(net).__name__}.")
    if net.training:
        raise ValueError("fuse_conv_bn_eval_modules: net must be in eval mode (call net.eval() first); folding "
                         "uses the BatchNorm running statistics.")
    gm = _trace(net)
    modules = dict(gm.named_modules())
    for pair, nodes in _pairs(gm, modules).items():
        bn = modules[pair[1]]
        if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
            raise ValueError(f"fuse_conv_bn_eval_modules: cannot fold {pair[1]}: its BatchNorm does not track "
                             "running statistics (track_running_stats=False).")
        _rewrite(gm, modules, pair, nodes, fuse_conv_bn_eval(modules[pair[0]], bn))
    return _finish(gm)


def pack_conv_bn_train_modules(net: nn.Module) -> fx.GraphModule:
    """Pack every convolution -> BatchNorm pair into one module (``net`` must be in train mode). Pairs whose
    two layers are in different step modes are left as they are."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"pack_conv_bn_train_modules: net must be a torch.nn.Module, but got {type(net).__name__}.")
    if not net.training:
        raise ValueError("pack_conv_bn_train_modules: net must be in train mode (call net.train() first).")
    gm = _trace(net)
    modules = dict(gm.named_modules())
    for pair, nodes in _pairs(gm, modules).items():
        conv, bn = modules[pair[0]], modules[pair[1]]
        if getattr(conv, "step_mode", None) != getattr(bn, "step_mode", None):
            continue
        _rewrite(gm, modules, pair, nodes, _PackedConvBN(conv, bn))
    return _finish(gm)
