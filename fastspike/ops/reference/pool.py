"""Reference of ``max_pool``: torch's own max pooling (1d, 2d or 3d), whose backward scatters the output gradient
into the argmax positions."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["max_pool"]


def max_pool(x: torch.Tensor, dims: int, kernel_size, stride=None, padding=0, dilation=1,
             ceil_mode: bool = False) -> torch.Tensor:
    """``F.max_pool{dims}d(x, ...)``."""
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[dims - 1]
    return pool(x, kernel_size, stride, padding, dilation, ceil_mode)
