"""Model transforms used before export: BatchNorm folding."""
from __future__ import annotations

import torch
import torch.nn as nn

from ._graph import _state_free_copy

__all__ = ["fold_batchnorm", "fold_bn_into"]


def fold_bn_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold an eval-mode BatchNorm that directly follows ``layer`` (Conv1d/2d/3d or Linear) into its weight/bias:
    W' = W * g / sqrt(var + eps) (per output channel), b' = (b - mean) * g / sqrt(var + eps) + beta."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batchnorm: BatchNorm without running statistics (track_running_stats=False) "
                         "cannot be folded.")
    with torch.no_grad():
        std = torch.sqrt(bn.running_var.double() + bn.eps)
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(std)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(std)
        k = gamma / std
        w = layer.weight.double()
        layer.weight.copy_((w * k.view(-1, *([1] * (w.dim() - 1)))).to(layer.weight.dtype))
        b = layer.bias.double() if layer.bias is not None else torch.zeros_like(k)
        new_b = ((b - bn.running_mean.double()) * k + beta).to(layer.weight.dtype)
        if layer.bias is None:
            layer.bias = nn.Parameter(new_b)
        else:
            layer.bias.copy_(new_b)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm that directly follows a Conv/Linear inside an ``nn.Sequential``
    (including SeqToANNContainer) folded into that layer and replaced by ``nn.Identity``.

    Uses the running statistics (eval-mode semantics). BatchNorms elsewhere are left in place, so an exporter
    still reports them.
    """
    model = _state_free_copy(model)

    def visit(m: nn.Module):
        if isinstance(m, nn.Sequential):
            names = list(m._modules.keys())
            for a, b in zip(names, names[1:]):
                la, lb = m._modules[a], m._modules[b]
                if isinstance(la, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and \
                        isinstance(lb, nn.modules.batchnorm._BatchNorm):
                    fold_bn_into(la, lb)
                    m._modules[b] = nn.Identity()
        for c in m.children():
            visit(c)

    visit(model)
    return model
