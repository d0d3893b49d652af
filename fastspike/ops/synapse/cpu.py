"""C++ launchers of the event-driven synapse kernels (csrc/linear.cpp, conv2d_forward.cpp, conv2d_grad_weight.cpp):
Linear and Conv2d forwards (spike lists
built while the input is checked, bits packed on the way) and their weight gradients from packed bits or
bytes. Inputs are made contiguous float32 here; outputs are fresh CPU tensors.

The forwards return a status: ``EVENT`` (the kernel ran; the input is binary), ``NOT_BINARY`` (a value other
than 0 and 1; nothing computed) or ``TOO_DENSE`` (more spikes than ``max_nnz``; nothing computed). Their
output is allocated by the kernel through a callback, only once it goes on, so that a dense fallback does not
pay for two outputs.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from ... import _ext
from .. import _alloc, _backend

__all__ = ["NOT_BINARY", "EVENT", "TOO_DENSE", "TILE", "tile_rows", "linear_forward", "linear_grad_weight",
           "conv2d_forward", "conv2d_grad_weight", "conv_out_hw"]

NOT_BINARY, EVENT, TOO_DENSE = 0, 1, 2  # csrc/synapse.h's statuses
TILE = 64  # outputs per weight tile of the C++ linear kernel (csrc/synapse.h kTile)


def tile_rows(a: torch.Tensor) -> torch.Tensor:
    """[R, C] -> float32 [ceil(C / 64)][R][64], zero padded: tile t holds columns 64 t .. 64 t + 63 of every row."""
    R, Cc = a.shape
    nt = (Cc + TILE - 1) // TILE
    a = _alloc.f32(a)
    if nt * TILE != Cc:
        a = F.pad(a, (0, nt * TILE - Cc))
    return a.reshape(R, nt, TILE).transpose(0, 1).contiguous()


def conv_out_hw(H: int, W: int, KH: int, KW: int, s, p, d) -> Tuple[int, int]:
    return (H + 2 * p[0] - d[0] * (KH - 1) - 1) // s[0] + 1, (W + 2 * p[1] - d[1] * (KW - 1) - 1) // s[1] + 1


class _Output:
    """The output of a C++ event-driven forward, allocated when the kernel calls it (after its compaction found
    the input binary and sparse enough)."""

    __slots__ = ("shape", "tensor")

    def __init__(self, shape):
        self.shape, self.tensor = shape, None

    def __call__(self) -> int:
        self.tensor = _alloc.empty(self.shape)
        return self.tensor.data_ptr()


def linear_forward(x2: torch.Tensor, wt: torch.Tensor, b: Optional[torch.Tensor], N: int, want_bits: bool,
                   max_nnz: int = -1, torch_layout: bool = False):
    """(out or None, bits or None, status) of x2 [M, K] @ W^T + b: the output only when status is EVENT; the
    bits (if wanted) unless the input is not binary. ``wt``: the tile-blocked W^T (``tile_rows(W.t())``) or, with
    ``torch_layout``, W [N, K] itself (the kernel blocks it into scratch memory once it accepts the input)."""
    C = _ext.get()
    x2 = _alloc.f32(x2)
    M, K = x2.shape
    b32 = _alloc.f32(b.detach()) if b is not None else None
    out = _Output((M, N))
    bits = torch.empty((M, (K + 7) // 8), dtype=torch.uint8) if want_bits else None
    status = C.synapse_linear_forward(x2.data_ptr(), wt.data_ptr(), b32.data_ptr() if b32 is not None else 0,
                                      out, bits.data_ptr() if want_bits else 0, M, K, N, int(max_nnz),
                                      torch_layout, _backend.num_threads())
    return (out.tensor if status == EVENT else None), (bits if status != NOT_BINARY else None), status


def linear_grad_weight(bits: torch.Tensor, g: torch.Tensor, K: int) -> torch.Tensor:
    """dL/dW [N, K] from the input's bits [M, ceil(K / 8)] and g [M, N] (fp32)."""
    C = _ext.get()
    M, N = g.shape
    gt = tile_rows(g)
    gw = torch.empty((N, K), dtype=torch.float32)
    C.synapse_linear_grad_weight(bits.contiguous().data_ptr(), gt.data_ptr(), gw.data_ptr(), M, K, N,
                                 _backend.num_threads())
    return gw


def conv2d_forward(x: torch.Tensor, wt: torch.Tensor, b: Optional[torch.Tensor], w_shape, s, p, d, groups: int,
                   max_nnz: int = -1, torch_layout: bool = False):
    """(out or None, status), as ``linear_forward``; ``wt`` is [Cin][KH][KW][Cout/G] or, with ``torch_layout``,
    the weight itself."""
    C = _ext.get()
    x = _alloc.f32(x)
    B, Cin, H, W = x.shape
    Cout, _, KH, KW = w_shape
    OH, OW = conv_out_hw(H, W, KH, KW, s, p, d)
    b32 = _alloc.f32(b.detach()) if b is not None else None
    out = _Output((B, Cout, OH, OW))
    status = C.synapse_conv2d_forward(x.data_ptr(), wt.data_ptr(), b32.data_ptr() if b32 is not None else 0,
                                      out, B, Cin, H, W, Cout, OH, OW, KH, KW, s[0], s[1], p[0], p[1],
                                      d[0], d[1], groups, int(max_nnz), torch_layout, _backend.num_threads())
    return (out.tensor if status == EVENT else None), status


def conv2d_grad_weight(data: torch.Tensor, x_shape, g: torch.Tensor, w_shape, s, p, d, groups: int,
                       values: bool = False) -> torch.Tensor:
    """dL/dW accumulated over x's nonzeros only: ``data`` holds x as packed bits (spikes) or, with ``values``, as
    one uint8 per element (spike counts); g [B, Cout, OH, OW] as torch holds it (NCHW)."""
    C = _ext.get()
    B, Cin, H, W = x_shape
    Cout, cing, KH, KW = w_shape
    _, _, OH, OW = g.shape
    g32 = _alloc.f32(g)  # the kernel transposes it to NHWC in its scratch memory
    gw = torch.empty((Cout, cing, KH, KW), dtype=torch.float32)
    data = data.contiguous()
    C.synapse_conv2d_grad_weight(data.data_ptr(), data.numel(), values, g32.data_ptr(), gw.data_ptr(), B, Cin,
                                 H, W, Cout, OH, OW, KH, KW, s[0], s[1], p[0], p[1], d[0], d[1], groups,
                                 _backend.num_threads())
    return gw
