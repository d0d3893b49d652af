"""References of ``synapse_linear`` / ``synapse_conv2d`` and of the weight gradients their event-driven kernels
compute from bit-packed spikes: torch's dense layers in fp32 (fp64 for fp64 input), cast back."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from .bits import unpack_bits

__all__ = ["synapse_linear", "synapse_conv2d", "synapse_linear_grad_weight", "synapse_conv2d_grad_weight"]


def _compute(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def synapse_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``F.linear`` in fp32 (fp64 for fp64 weights), cast to the weight's dtype."""
    c = _compute(weight)
    out = F.linear(x.to(c), weight.to(c), None if bias is None else bias.to(c))
    return out.to(weight.dtype)


def synapse_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1,
                   padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """``F.conv2d`` in fp32 (fp64 for fp64 weights), cast to the weight's dtype."""
    c = _compute(weight)
    out = F.conv2d(x.to(c), weight.to(c), None if bias is None else bias.to(c), stride, padding, dilation, groups)
    return out.to(weight.dtype)


def synapse_linear_grad_weight(bits: torch.Tensor, g: torch.Tensor, in_features: int) -> torch.Tensor:
    """dL/dW = g^T x for x [M, in_features] given as packed bits [M, ceil(in_features / 8)], g [M, N]."""
    x = unpack_bits(bits, in_features, _compute(g))
    return g.to(x.dtype).t().mm(x)


def synapse_conv2d_grad_weight(bits: torch.Tensor, x_shape, g: torch.Tensor, w_shape, stride, padding, dilation,
                               groups: int) -> torch.Tensor:
    """dL/dW of a convolution whose input x [B, Cin, H, W] is given as packed bits (all of x as one row)."""
    x = unpack_bits(bits.reshape(1, -1), math.prod(x_shape), _compute(g)).reshape(x_shape)
    return torch.nn.grad.conv2d_weight(x, w_shape, g.to(x.dtype), stride, padding, dilation, groups)
