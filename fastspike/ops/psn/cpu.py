"""C++ launchers of the PSN kernels (csrc/psn.cpp): fused forward and backward, H never stored."""
from __future__ import annotations

import torch

from ... import _ext
from .. import _alloc, _backend


def _band(T: int, k: int) -> torch.Tensor:
    ones = torch.ones((T, T), dtype=torch.float32)
    return torch.tril(ones) - torch.tril(ones, -k)


def _chunks(T: int, nblocks: int) -> int:
    # a fixed partition of the columns (independent of the thread count) for the dW/dB partial sums,
    # capped so that the float64 partials stay small next to X
    return max(1, min(nblocks, 32, (1 << 22) // (T * T)))


def forward(x2, w, b, band: int):
    C = _ext.get()
    T, N = x2.shape
    s = _alloc.empty((T, N))
    C.psn_forward(x2.data_ptr(), w.data_ptr(), b.data_ptr(), s.data_ptr(), 0, T, N, band, _backend.num_threads())
    return s


# The C++ backward keeps dW as 16 float lane sums per (t, j) weight in use; past this many bytes the
# lane sums thrash L2 and a GEMM of the stored dH with X (MKL through torch) is faster (measured at
# [T, N] = [32, 131072]: lane sums 16.0 ms, GEMM 17.3 ms; [64, 65536]: 43.1 ms against 28.9 ms).
_LANE_SUM_MAX_BYTES = 128 << 10


def backward(x2, gs, w, b, band: int, sg_id: int, sg_a: float, sg_b: float):
    C = _ext.get()
    T, N = x2.shape
    gx = _alloc.empty((T, N))
    nblocks = (N + C.PSN_BLOCK - 1) // C.PSN_BLOCK
    nchunks = _chunks(T, nblocks)
    pairs = T * T if band == 0 else sum(min(t + 1, band) for t in range(T))
    gh = _alloc.empty((T, N)) if pairs * 64 > _LANE_SUM_MAX_BYTES else None
    gw = torch.empty((nchunks, T, T), dtype=torch.float64)
    gb = torch.empty((nchunks, T), dtype=torch.float64)
    C.psn_backward(x2.data_ptr(), gs.data_ptr(), w.data_ptr(), b.data_ptr(), gx.data_ptr(), gw.data_ptr(),
                   gb.data_ptr(), gh.data_ptr() if gh is not None else 0, T, N, band, nchunks, sg_id, sg_a, sg_b,
                   _backend.num_threads())
    if gh is None:
        return gx, gw.sum(0).float(), gb.sum(0).float()
    gw = torch.mm(gh, x2.t())
    if band > 0:
        gw.mul_(_band(T, band))
    return gx, gw, gb.sum(0).float()
