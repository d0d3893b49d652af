"""Helpers the Transformer recipes share: ANN modules -> temporal-difference operators, and reading literal
arguments from torch.fx nodes."""
from __future__ import annotations

from typing import Any, Optional

import torch
import torch.fx as fx
import torch.nn as nn

from ..operators import TDConv2d, TDGELU, TDLayerNorm, TDLinear, TDMultiheadAttention

__all__ = ["td_module_from_ann", "make_td_multihead_attention", "literal_argument", "tensor_argument"]


def _factory(module: nn.Module) -> dict:
    weight = getattr(module, "weight", None)
    return {"device": None if weight is None else weight.device, "dtype": None if weight is None else weight.dtype}


def td_module_from_ann(module: nn.Module) -> Optional[nn.Module]:
    """The TD operator for an ``nn.Linear``, ``nn.Conv2d``, ``nn.LayerNorm`` or ``nn.GELU`` (parameters copied,
    ``requires_grad`` and train/eval mode kept), or None for any other module."""
    if isinstance(module, nn.Linear):
        replacement = TDLinear(module.in_features, module.out_features, bias=module.bias is not None,
                               **_factory(module))
    elif isinstance(module, nn.Conv2d):
        replacement = TDConv2d(module.in_channels, module.out_channels, module.kernel_size, stride=module.stride,
                               padding=module.padding, dilation=module.dilation, groups=module.groups,
                               bias=module.bias is not None, padding_mode=module.padding_mode, **_factory(module))
    elif isinstance(module, nn.LayerNorm):
        replacement = TDLayerNorm(module.normalized_shape, eps=module.eps,
                                  elementwise_affine=module.elementwise_affine, bias=module.bias is not None,
                                  **_factory(module))
    elif isinstance(module, nn.GELU):
        replacement = TDGELU(approximate=getattr(module, "approximate", "none"))
    else:
        return None
    source = dict(module.named_parameters())
    with torch.no_grad():
        for name, parameter in replacement.named_parameters():
            parameter.copy_(source[name])
            parameter.requires_grad = source[name].requires_grad
    replacement.train(module.training)
    return replacement


def make_td_multihead_attention(source: nn.MultiheadAttention, owner: str) -> TDMultiheadAttention:
    """A :class:`TDMultiheadAttention` with the packed q/k/v projections of ``source`` split into its
    ``q_proj``/``k_proj``/``v_proj`` (``requires_grad`` and train/eval mode kept)."""
    if source.in_proj_weight is None:
        raise ValueError(f"{owner}: MultiheadAttention conversion needs a packed in_proj_weight (kdim == vdim == "
                         "embed_dim); separate key/value projections are not supported.")
    if source.bias_k is not None or source.bias_v is not None:
        raise ValueError(f"{owner}: MultiheadAttention conversion does not support add_bias_kv=True.")
    if source.add_zero_attn:
        raise ValueError(f"{owner}: MultiheadAttention conversion does not support add_zero_attn=True.")
    target = TDMultiheadAttention(source.embed_dim, source.num_heads, dropout=source.dropout,
                                  bias=source.in_proj_bias is not None, batch_first=source.batch_first,
                                  device=source.in_proj_weight.device, dtype=source.in_proj_weight.dtype)
    projections = (target.q_proj, target.k_proj, target.v_proj)
    with torch.no_grad():
        for proj, weight in zip(projections, source.in_proj_weight.chunk(3, dim=0)):
            proj.weight.copy_(weight)
            proj.weight.requires_grad = source.in_proj_weight.requires_grad
        if source.in_proj_bias is not None:
            for proj, bias in zip(projections, source.in_proj_bias.chunk(3, dim=0)):
                proj.bias.copy_(bias)
                proj.bias.requires_grad = source.in_proj_bias.requires_grad
        target.out_proj.weight.copy_(source.out_proj.weight)
        target.out_proj.weight.requires_grad = source.out_proj.weight.requires_grad
        if source.out_proj.bias is not None and target.out_proj.bias is not None:
            target.out_proj.bias.copy_(source.out_proj.bias)
            target.out_proj.bias.requires_grad = source.out_proj.bias.requires_grad
    target.train(source.training)
    return target


def literal_argument(node: fx.Node, name: str, position: int, default: Any) -> Any:
    """Argument ``name`` of a call node: the keyword, else the positional argument ``position``, else
    ``default``."""
    if name in node.kwargs:
        return node.kwargs[name]
    if len(node.args) > position:
        return node.args[position]
    return default


def tensor_argument(node: fx.Node, name: str, position: int, owner: str) -> Any:
    """Argument ``name`` of a call node (positional first); ValueError naming it when absent."""
    if len(node.args) > position:
        return node.args[position]
    if name in node.kwargs:
        return node.kwargs[name]
    raise ValueError(f"{owner}: malformed {node.target!r} node {node.name!r}: argument {name!r} is missing.")
