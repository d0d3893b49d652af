"""Max pooling under the op contract (ops/_contract.py): ``fastspike::max_pool_cpp`` and ``max_pool_torch``.

Forward: x [N, C, *spatial] or [C, *spatial], ``dims`` (1, 2 or 3) and the pooling arguments as lists of
``dims`` ints -> (output, argmax indices as plane offsets in the narrowest integer dtype that holds plane + 1
values, ops.bits.index_dtype). A window with no element inside the input (dilation > 1 only) points at the
sentinel ``plane``. Only the indices are saved for the backward (torch keeps the input and int64 indices);
the backward kernel scatters the output gradient into them, in torch's order.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ... import _ext
from .._contract import Op
from ..bits import index_dtype
from . import cpu

__all__ = ["OPS"]

_POOL = (F.max_pool1d, F.max_pool2d, F.max_pool3d)


def _torch_forward(x: Tensor, dims: int, kernel_size: List[int], stride: List[int], padding: List[int],
                   dilation: List[int], ceil_mode: bool) -> Tuple[Tensor, Tensor]:
    plane = math.prod(x.shape[x.dim() - dims:])
    out, idx = _POOL[dims - 1](x, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    # an empty window's index points past the plane: map it to the sentinel `plane`
    return out, idx.clamp(max=plane).to(index_dtype(plane + 1))


def _cpp_forward(x: Tensor, dims: int, kernel_size: List[int], stride: List[int], padding: List[int],
                 dilation: List[int], ceil_mode: bool) -> Tuple[Tensor, Tensor]:
    pooled = cpu.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode) if dims == 2 else None
    if pooled is None:
        return _torch_forward(x, dims, kernel_size, stride, padding, dilation, ceil_mode)
    return pooled


def _scatter(g: Tensor, idx: Tensor, rows: int, cols: int) -> Tensor:
    gx = g.new_zeros((rows, cols))
    return gx.scatter_add_(1, idx.to(torch.int64).reshape(rows, -1), g.reshape(rows, -1))


def _torch_backward(g: Tensor, idx: Tensor, x_shape: List[int], dims: int, may_be_empty: bool) -> Tensor:
    return _finish(_scatter(g, idx, *_rows_cols(x_shape, dims, may_be_empty)), x_shape, dims, may_be_empty)


def _cpp_backward(g: Tensor, idx: Tensor, x_shape: List[int], dims: int, may_be_empty: bool) -> Tensor:
    rows, cols = _rows_cols(x_shape, dims, may_be_empty)
    if g.is_cpu and g.dtype == torch.float32 and idx.dtype in (torch.int16, torch.int32) and _ext.available():
        gx = cpu.max_pool_backward(idx, g, rows, cols)  # zero and scatter row by row, in scatter_add_'s order
    else:
        gx = _scatter(g, idx, rows, cols)
    return _finish(gx, x_shape, dims, may_be_empty)


def _rows_cols(x_shape: List[int], dims: int, may_be_empty: bool) -> Tuple[int, int]:
    plane = math.prod(x_shape[len(x_shape) - dims:])
    rows = math.prod(x_shape) // plane
    return rows, plane + 1 if may_be_empty else plane  # the extra column collects the empty windows


def _finish(gx: Tensor, x_shape: List[int], dims: int, may_be_empty: bool) -> Tensor:
    if may_be_empty:
        gx = gx[:, :-1]
    return gx.reshape(x_shape)


def _fake_backward(g, idx, x_shape, dims, may_be_empty):
    return g.new_empty(tuple(x_shape))


def _setup_context(ctx, inputs, output):
    x, dims = inputs[0], inputs[1]
    ctx.x_shape, ctx.dims = list(x.shape), dims
    # windows left without an in-bounds element (only with dilation > 1) point at the sentinel `plane`
    ctx.may_be_empty = any(v > 1 for v in inputs[5])
    ctx.save_for_backward(output[1])


def _backward(ctx, grads, kernel):
    g = grads[0]
    (idx,) = ctx.saved_tensors
    gx = kernel(g.contiguous(), idx, ctx.x_shape, ctx.dims, ctx.may_be_empty) if ctx.needs_input_grad[0] else None
    return (gx,) + (None,) * 6


OPS = {
    "cpp": Op("max_pool_cpp", forward=_cpp_forward, fake_forward=_torch_forward, backward_kernel=_cpp_backward,
              fake_backward=_fake_backward, setup_context=_setup_context, backward=_backward),
    "torch": Op("max_pool_torch", forward=_torch_forward, fake_forward=_torch_forward,
                backward_kernel=_torch_backward, fake_backward=_fake_backward, setup_context=_setup_context,
                backward=_backward),
}
