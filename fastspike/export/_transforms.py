"""Model transforms used before export and conversion: BatchNorm folding (the one implementation, shared with
``fastspike.ann2snn``)."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from ._graph import _state_free_copy

__all__ = ["fold_batchnorm", "fold_bn_into", "fold_bn_weights"]


def fold_bn_weights(weight: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.modules.batchnorm._BatchNorm
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(layer(x))`` for a layer with ``weight`` [out, ...] and ``bias`` [out] (or None),
    with ``bn`` in eval mode: W' = W * g / sqrt(var + eps) per output channel, b' = (b - mean) * g / sqrt(var + eps)
    + beta. Computed by torch's ``fuse_conv_bn_weights`` in ``weight``'s dtype, so the result is bit-identical to
    ``torch.nn.utils.fusion.fuse_conv_bn_eval`` (and to SpikingJelly's Conv-BN fusion).

    The one BatchNorm-folding rule of fastspike: :func:`fold_batchnorm`, the Speck exporter and
    ``fastspike.ann2snn`` (folding, and the fixed ``ChannelAffine`` of an unfoldable BatchNorm) all use it."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_batchnorm: BatchNorm without running statistics (track_running_stats=False) "
                         "cannot be folded.")
    if weight.shape[0] != bn.num_features:
        raise ValueError(f"fold_batchnorm: the layer has {weight.shape[0]} output channels but the BatchNorm has "
                         f"num_features={bn.num_features}.")
    d = weight.dtype
    cast = lambda t: None if t is None else t.detach().to(d)  # noqa: E731
    w = weight.detach()
    w2 = w.reshape(w.shape[0], -1) if w.dim() < 2 else w
    new_w, new_b = fuse_conv_bn_weights(w2, cast(bias), cast(bn.running_mean), cast(bn.running_var), bn.eps,
                                        cast(bn.weight), cast(bn.bias))
    return new_w.detach().reshape(weight.shape), new_b.detach()


def fold_bn_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """Fold an eval-mode BatchNorm that directly follows ``layer`` (Conv1d/2d/3d or Linear) into its weight/bias,
    in place (:func:`fold_bn_weights`); a layer without bias gets one."""
    w, b = fold_bn_weights(layer.weight, layer.bias, bn)
    with torch.no_grad():
        layer.weight.copy_(w)
        if layer.bias is None:
            layer.bias = nn.Parameter(b)
        else:
            layer.bias.copy_(b.to(layer.bias.dtype))


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
