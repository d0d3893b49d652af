"""C++ launchers of the linear-recurrence scan (csrc/scan.cpp): a sequential pass over time, parallel and SIMD
over columns (the memory-bound optimum on a CPU)."""
from __future__ import annotations

import torch

from ... import _ext
from .. import _alloc, _backend


def _scan_block(M: int, nthreads: int) -> int:
    # wide blocks (KiB-long row segments), but at least ~4 blocks per thread when M allows
    per = -(-M // (4 * nthreads))
    return int(min(4096, max(256, -(-per // 64) * 64)))


def forward(a_k, b2, h0_1, mode: int, a_scalar: float):
    C = _ext.get()
    T, M = b2.shape
    b32 = b2.float().contiguous()
    a32 = a_k.float().contiguous() if a_k is not None else None
    h032 = h0_1.float().contiguous() if h0_1 is not None else None
    h = _alloc.empty((T, M))
    nt = _backend.num_threads()
    C.scan_forward(a32.data_ptr() if a32 is not None else 0, b32.data_ptr(),
                   h032.data_ptr() if h032 is not None else 0, h.data_ptr(), T, M, mode, float(a_scalar),
                   _scan_block(M, nt), nt)
    return h


def backward(a_k, h, h0_1, gout, mode: int, a_scalar: float, need_ga: bool, need_gh0: bool):
    C = _ext.get()
    T, M = h.shape
    g32 = gout.float().contiguous()
    a32 = a_k.float().contiguous() if a_k is not None else None
    h032 = h0_1.float().contiguous() if h0_1 is not None else None
    gb = _alloc.empty((T, M))
    ga = _alloc.empty((T, M)) if need_ga and mode == 2 else None
    nt = _backend.num_threads()
    block = _scan_block(M, nt)
    nblocks = (M + block - 1) // block
    gap = torch.empty((nblocks, T), dtype=torch.float64) if need_ga and mode == 1 else None
    gh0 = torch.empty((M,), dtype=torch.float32) if need_gh0 else None
    C.scan_backward(a32.data_ptr() if a32 is not None else 0, h.data_ptr(),
                    h032.data_ptr() if h032 is not None else 0, g32.data_ptr(), gb.data_ptr(),
                    ga.data_ptr() if ga is not None else 0, gap.data_ptr() if gap is not None else 0,
                    gh0.data_ptr() if gh0 is not None else 0, T, M, mode, float(a_scalar), block, nt)
    if gap is not None:
        ga = gap.sum(0).float()
    return gb, ga, gh0
