"""Dense-path gradients of the convolution, with the two CPU cases where oneDNN's kernels are slow replaced by
one GEMM over the whole batch (MKL). Everything here is torch operations (traceable by torch.compile)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._contract import tracing

__all__ = ["GEMM_MAX_POSITIONS", "conv2d_grad_weight", "conv2d_grad_input"]

# Output maps of at most this many positions take the weight gradient as one GEMM of the unfolded input
# (MKL): oneDNN's weight-gradient kernel is slow on tiny maps. Measured on the 2-core Xeon VM (T*B = 32):
# 512->512 3x3 on 2x2 maps 13.3 ms (oneDNN) against 6.5 ms; 256->512 stride 2, 4x4 -> 2x2, 6.4 against 4.5;
# 256->256 on 4x4 maps 4.4 against 8.5 (oneDNN better from 16 positions up).
GEMM_MAX_POSITIONS = 4


def conv2d_grad_weight(x: torch.Tensor, w_shape, g: torch.Tensor, s, p, d, groups: int) -> torch.Tensor:
    """dL/dW of ``F.conv2d(x, W, None, s, p, d, groups)`` given dL/dout ``g`` (x and g in one dtype)."""
    B, Cout, OH, OW = g.shape
    if groups != 1 or OH * OW > GEMM_MAX_POSITIONS or g.device.type != "cpu":
        return torch.nn.grad.conv2d_weight(x, w_shape, g, s, p, d, groups)
    KH, KW = w_shape[2], w_shape[3]
    cols = F.unfold(x, (KH, KW), dilation=d, padding=p, stride=s)  # [B, Cin*KH*KW, OH*OW]
    L = cols.shape[-1]
    cols = cols.transpose(1, 2).reshape(B * L, -1)
    g2 = g.reshape(B, Cout, L).transpose(1, 2).reshape(B * L, Cout)
    return (g2.t() @ cols).view(w_shape)


def conv2d_grad_input(g: torch.Tensor, x_shape, w: torch.Tensor, s, p, d, groups: int) -> torch.Tensor:
    """dL/dx: oneDNN's, or, on the CPU, for strided convolutions that are 1x1 or have at most 4 output positions,
    one GEMM W^T g over the whole batch folded onto the input (F.fold). oneDNN's backward-data kernel is slow
    there. Measured on the 2-core Xeon VM (T*B = 32): 256->512 3x3 stride 2 (4x4 -> 2x2) 4.07 ms against 2.21;
    1x1 stride 2, 256->512 on 4x4 0.48 against 0.34; but 128->256 3x3 stride 2 on 8x8 1.35 against 2.52 and
    512->512 stride 1 on 2x2 2.25 against 4.57 (kept on oneDNN)."""
    B, Cout, OH, OW = g.shape
    KH, KW = w.shape[2], w.shape[3]
    # traced (torch.compile, export): torch's own backward. Inductor (torch 2.13, CPU) miscompiles the fold below
    # for some shapes (3x3, stride 2, padding 1 on a 2x2 input: the compiled kernel writes out of bounds and
    # corrupts the heap), and the GEMM route is a speed-up measured in eager mode only
    if (groups != 1 or g.device.type != "cpu" or max(s) == 1 or tracing(g)
            or not (KH * KW == 1 or OH * OW <= GEMM_MAX_POSITIONS)):
        shape_only = g.new_zeros(1).expand(x_shape)  # convolution_backward reads only its shape
        return torch.ops.aten.convolution_backward(g, shape_only, w, None, list(s), list(p), list(d), False,
                                                   [0, 0], groups, [True, False, False])[0]
    L = OH * OW
    g2 = g.reshape(B, Cout, L).transpose(0, 1).reshape(Cout, B * L)
    cols = torch.mm(w.reshape(Cout, -1).t(), g2).view(-1, B, L).transpose(0, 1)  # [B, Cin*KH*KW, L]
    if KH * KW == 1 and max(p) == 0:  # each input position gets at most one value: a strided copy (4x fold's speed)
        gx = g.new_zeros(x_shape)
        gx[:, :, ::s[0], ::s[1]] = cols.reshape(B, -1, OH, OW)
        return gx
    return F.fold(cols, tuple(x_shape[2:]), (KH, KW), dilation=d, padding=p, stride=s)
