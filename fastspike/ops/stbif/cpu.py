"""C++ launcher of the ST-BIF kernel (csrc/stbif.cpp): contiguous float32 buffers, x [T, N], states [N]."""
from __future__ import annotations

import math

import torch

from ... import _ext
from .. import _alloc, _backend


def forward(x, q0, acc0, q_threshold: float, pos_max: float, neg_min: float):
    """Returns (out [T, *], q, acc_q, event [*]), all float32 (x, q0, acc0 contiguous float32)."""
    C = _ext.get()
    T = x.shape[0]
    N = math.prod(x.shape[1:])
    out = _alloc.empty_like(x)
    q, acc, event = (torch.empty(size=x.shape[1:], dtype=torch.float32) for _ in range(3))
    C.stbif_forward(x.data_ptr(), q0.data_ptr(), acc0.data_ptr(), out.data_ptr(), q.data_ptr(), acc.data_ptr(),
                    event.data_ptr(), T, N, q_threshold, pos_max, neg_min, _backend.num_threads())
    return out, q, acc, event
