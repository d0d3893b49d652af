"""C++ launcher of event-to-frame integration (csrc/events.cpp ``events_integrate``)."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from ... import _ext

__all__ = ["available", "integrate", "PARALLEL_MIN_EVENTS"]

#: below this many events one thread bins them: waking a thread team costs more (worse on a busy machine)
PARALLEL_MIN_EVENTS = 1 << 21


def available() -> bool:
    return _ext.available() and hasattr(_ext.get(), "events_integrate")


def integrate(events: np.ndarray, j_l: np.ndarray, j_r: np.ndarray, out: np.ndarray,
              time_split: bool) -> Tuple[int, bool]:
    """Add event k of segment [j_l[i], j_r[i]) to ``out[i, p, y, x]`` for every segment i. ``events``: a 1-D
    structured array with integer fields t, x, y, p (any field order and stride); ``j_l``/``j_r``: int64 [T];
    ``out``: float32 [T, P, H, W], C-contiguous, zero-filled. Returns (index of the first event outside the sensor
    or -1, whether the times were found unsorted where ``time_split`` needs them sorted)."""
    T, P, H, W = out.shape
    f = events.dtype.fields
    stride = events.strides[0] if events.ndim == 1 and events.shape[0] > 0 else events.dtype.itemsize
    nthreads = torch.get_num_threads() if events.shape[0] >= PARALLEL_MIN_EVENTS else 1
    bad, unsorted = _ext.get().events_integrate(
        events.ctypes.data, events.shape[0], stride, f["t"][1], f["x"][1], f["y"][1], f["p"][1],
        j_l.ctypes.data, j_r.ctypes.data, T, P, H, W, out.ctypes.data, time_split, nthreads)
    return int(bad), bool(unsorted)
