"""Triton kernels for the linear recurrence h[t] = a[t] * h[t-1] + b[t] (fastspike.ops.scan).

Each program owns BLOCK_M columns of the [T, M] row-major buffers and walks time in chunks of BLOCK_T
rows. Inside a chunk the recurrence is solved by ``tl.associative_scan`` over (a, b) pairs (log depth);
the state at the end of a chunk is folded into the first row of the next one, so any T works with one
compiled kernel per (BLOCK_T, BLOCK_M, A_MODE) choice. The backward is the same scan run over reversed
time on the upstream gradient, with a[t + 1] as decay.

A_MODE: 0 scalar decay (a_scalar), 1 one decay per step (p_a[T]), 2 full decay (p_a[T, M]). T is never
specialised; a_scalar is cast to fp32 on entry (torch.compile passes Python floats as fp64).
"""
import torch
import triton
import triton.language as tl

from ._spec import KernelSpec


@triton.jit
def _affine_combine(a_l, b_l, a_r, b_r):
    # (a_l, b_l) applied first, then (a_r, b_r): h -> a_r * (a_l * h + b_l) + b_r
    return a_l * a_r, b_l * a_r + b_r


@triton.jit
def _load_decay(p_a, a_scalar, t, o_tm, m_t, m_tm, A_MODE: tl.constexpr, BLOCK_T: tl.constexpr,
                BLOCK_M: tl.constexpr):
    # decay at rows t (int64 [BLOCK_T]); rows outside [0, T) get 1 so they pass the state through
    if A_MODE == 0:
        b_a = tl.where(m_t[:, None], a_scalar, 1.0) + tl.zeros([BLOCK_T, BLOCK_M], dtype=tl.float32)
    elif A_MODE == 1:
        b_a1 = tl.load(p_a + t, mask=m_t, other=1.0).to(tl.float32)
        b_a = b_a1[:, None] + tl.zeros([BLOCK_T, BLOCK_M], dtype=tl.float32)
    else:
        b_a = tl.load(p_a + o_tm, mask=m_tm, other=1.0).to(tl.float32)
    return b_a


@triton.jit(do_not_specialize=["T"])
def scan_fwd_kernel(p_a, p_b, p_h0, p_h, T, M, a_scalar,
                    A_MODE: tl.constexpr, HAS_H0: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr):
    a_scalar = tl.cast(a_scalar, tl.float32)
    pid = tl.program_id(0).to(tl.int64)
    o_m = pid * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    m_m = o_m < M
    o_r = tl.arange(0, BLOCK_T)
    if HAS_H0:
        b_carry = tl.load(p_h0 + o_m, mask=m_m, other=0.0).to(tl.float32)
    else:
        b_carry = tl.zeros([BLOCK_M], dtype=tl.float32)
    for t0 in range(0, T, BLOCK_T):
        t = t0 + o_r.to(tl.int64)
        m_t = t < T
        m_tm = m_t[:, None] & m_m[None, :]
        o_tm = t[:, None] * M + o_m[None, :]
        b_a = _load_decay(p_a, a_scalar, t, o_tm, m_t, m_tm, A_MODE, BLOCK_T, BLOCK_M)
        b_b = tl.load(p_b + o_tm, mask=m_tm, other=0.0).to(tl.float32)
        # fold the state entering this chunk into its first row
        b_b = tl.where(o_r[:, None] == 0, b_b + b_a * b_carry[None, :], b_b)
        _, b_h = tl.associative_scan((b_a, b_b), 0, _affine_combine)
        tl.store(p_h + o_tm, b_h.to(p_h.dtype.element_ty), mask=m_tm)
        # padded rows carry the state unchanged, so the last row is the state after this chunk
        b_carry = tl.sum(tl.where(o_r[:, None] == BLOCK_T - 1, b_h, 0.0), 0)


@triton.jit(do_not_specialize=["T"])
def scan_bwd_kernel(p_a, p_h, p_h0, p_gout, p_gb, p_ga, p_gap, p_gh0, T, M, a_scalar,
                    A_MODE: tl.constexpr, HAS_H0: tl.constexpr, NEED_GA: tl.constexpr, NEED_GH0: tl.constexpr,
                    BLOCK_T: tl.constexpr, BLOCK_M: tl.constexpr):
    a_scalar = tl.cast(a_scalar, tl.float32)
    pid = tl.program_id(0).to(tl.int64)
    o_m = pid * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    m_m = o_m < M
    o_r = tl.arange(0, BLOCK_T)
    b_carry = tl.zeros([BLOCK_M], dtype=tl.float32)
    if HAS_H0:
        b_h0 = tl.load(p_h0 + o_m, mask=m_m, other=0.0).to(tl.float32)
    else:
        b_h0 = tl.zeros([BLOCK_M], dtype=tl.float32)
    for s0 in range(0, T, BLOCK_T):
        # reversed time: row r of this chunk is step t = T - 1 - (s0 + r)
        t = (T - 1 - s0) - o_r.to(tl.int64)
        m_t = t >= 0
        m_tm = m_t[:, None] & m_m[None, :]
        o_tm = t[:, None] * M + o_m[None, :]
        # decay that carries g[t + 1] into g[t] is a[t + 1]; at t = T - 1 the carry is 0 anyway
        tn = t + 1
        m_tn = m_t & (tn < T)
        b_a = _load_decay(p_a, a_scalar, tn, o_tm + M, m_tn, m_tn[:, None] & m_m[None, :], A_MODE, BLOCK_T,
                          BLOCK_M)
        b_a = tl.where(m_t[:, None], b_a, 1.0)
        b_go = tl.load(p_gout + o_tm, mask=m_tm, other=0.0).to(tl.float32)
        b_go = tl.where(o_r[:, None] == 0, b_go + b_a * b_carry[None, :], b_go)
        _, b_g = tl.associative_scan((b_a, b_go), 0, _affine_combine)
        tl.store(p_gb + o_tm, b_g, mask=m_tm)
        if NEED_GA:
            m_prev = m_tm & (t[:, None] > 0)
            b_hp = tl.load(p_h + o_tm - M, mask=m_prev, other=0.0).to(tl.float32)
            b_hp = tl.where((t[:, None] == 0) & m_m[None, :], b_h0[None, :], b_hp)
            b_ga = tl.where(m_tm, b_g * b_hp, 0.0)
            if A_MODE == 2:
                tl.store(p_ga + o_tm, b_ga, mask=m_tm)
            else:
                tl.store(p_gap + pid * T + t, tl.sum(b_ga, 1), mask=m_t)
        b_carry = tl.sum(tl.where(o_r[:, None] == BLOCK_T - 1, b_g, 0.0), 0)
    if NEED_GH0:
        # b_carry is g[0]; grad_h0 = a[0] * g[0]
        if A_MODE == 0:
            b_a0 = a_scalar + tl.zeros([BLOCK_M], dtype=tl.float32)
        elif A_MODE == 1:
            b_a0 = tl.load(p_a).to(tl.float32) + tl.zeros([BLOCK_M], dtype=tl.float32)
        else:
            b_a0 = tl.load(p_a + o_m, mask=m_m, other=0.0).to(tl.float32)
        tl.store(p_gh0 + o_m, b_a0 * b_carry, mask=m_m)


def _blocks(T: int, M: int, interpret: bool):
    """(BLOCK_T, BLOCK_M, num_warps). Chunks of 4096 elements take 8 warps: with 4 the backward spilled
    registers on sm_90 (tests/test_triton_compile.py)."""
    if interpret:
        # the interpreter runs a generic associative_scan element by element: keep its padded columns few
        return min(64, max(16, triton.next_power_of_2(T))), min(16, max(2, triton.next_power_of_2(M))), 4
    if M <= 4096:
        # few columns (e.g. B*N = 1024, T = 4096): narrow column blocks give more programs, long time
        # chunks give fewer sequential steps; this is where the log-depth scan beats a time loop
        block_t, block_m = min(256, max(16, triton.next_power_of_2(T))), 16
    else:
        block_t, block_m = min(64, max(16, triton.next_power_of_2(T))), 64
    return block_t, block_m, (8 if block_t * block_m >= 4096 else 4)


@triton.jit(do_not_specialize=["T"])
def scan_fwd_sequential_kernel(p_a, p_b, p_h0, p_h, T, M, a_scalar, A_MODE: tl.constexpr,
                               HAS_H0: tl.constexpr, BLOCK_M: tl.constexpr):
    a_scalar = tl.cast(a_scalar, tl.float32)
    # the plain time loop, one lane per column: the baseline the associative scan is measured against
    pid = tl.program_id(0).to(tl.int64)
    o_m = pid * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)
    m_m = o_m < M
    if HAS_H0:
        b_h = tl.load(p_h0 + o_m, mask=m_m, other=0.0).to(tl.float32)
    else:
        b_h = tl.zeros([BLOCK_M], dtype=tl.float32)
    o = o_m  # int64 offsets of row t, advanced by M each step
    for t in range(0, T):
        if A_MODE == 0:
            b_a = a_scalar
        elif A_MODE == 1:
            b_a = tl.load(p_a + t).to(tl.float32)
        else:
            b_a = tl.load(p_a + o, mask=m_m, other=0.0).to(tl.float32)
        b_h = b_a * b_h + tl.load(p_b + o, mask=m_m, other=0.0).to(tl.float32)
        tl.store(p_h + o, b_h.to(p_h.dtype.element_ty), mask=m_m)
        o += M


def scan_forward_sequential(a, b, h0, h, T: int, M: int, mode: int, a_scalar: float, block_m: int = 128):
    """Benchmark baseline: the same forward as ``scan_forward`` with a sequential loop over time."""
    grid = (triton.cdiv(M, block_m),)
    dummy = b
    scan_fwd_sequential_kernel[grid](a if a is not None else dummy, b, h0 if h0 is not None else dummy, h, T, M,
                                     float(a_scalar), A_MODE=mode, HAS_H0=h0 is not None, BLOCK_M=block_m)
    return h


def scan_forward(a, b, h0, mode: int, a_scalar: float, interpret: bool = False, launch=None, blocks=None):
    """h [T, M] fp32 <- scan of b [T, M] (contiguous) with decay a (None in mode 0, [T] in mode 1, [T, M] in mode
    2) from h0 [M] (or zeros). ``launch(kernel)`` wraps the kernel (torch.library.wrap_triton); ``blocks`` =
    (BLOCK_T, BLOCK_M, num_warps) overrides the choice (tests run the GPU's blocks under the interpreter)."""
    T, M = b.shape
    h = torch.empty((T, M), dtype=torch.float32, device=b.device)
    block_t, block_m, warps = blocks or _blocks(T, M, interpret)
    kernel = scan_fwd_kernel if launch is None else launch(scan_fwd_kernel)
    kernel[(triton.cdiv(M, block_m),)](a if a is not None else b, b, h0 if h0 is not None else b, h, T, M,
                                       float(a_scalar), A_MODE=mode, HAS_H0=h0 is not None, BLOCK_T=block_t,
                                       BLOCK_M=block_m, num_warps=warps)
    return h


def scan_backward(a, h, h0, gout, mode: int, a_scalar: float, need_ga: bool, need_gh0: bool,
                  interpret: bool = False, launch=None, blocks=None):
    """(grad_b [T, M], grad_a (mode 2: [T, M]; mode 1: [T]; else None), grad_h0 [M] or None), all fp32. ``h`` is
    read only when need_ga (any [T, M] tensor otherwise)."""
    T, M = gout.shape
    block_t, block_m, warps = blocks or _blocks(T, M, interpret)
    nprog = triton.cdiv(M, block_m)
    dev = gout.device
    gb = torch.empty((T, M), dtype=torch.float32, device=dev)
    ga = torch.empty((T, M), dtype=torch.float32, device=dev) if need_ga and mode == 2 else None
    gap = torch.empty((nprog, T), dtype=torch.float32, device=dev) if need_ga and mode == 1 else None
    gh0 = torch.empty((M,), dtype=torch.float32, device=dev) if need_gh0 else None
    kernel = scan_bwd_kernel if launch is None else launch(scan_bwd_kernel)
    kernel[(nprog,)](a if a is not None else gb, h, h0 if h0 is not None else gb, gout, gb,
                     ga if ga is not None else gb, gap if gap is not None else gb, gh0 if gh0 is not None else gb,
                     T, M, float(a_scalar), A_MODE=mode, HAS_H0=h0 is not None, NEED_GA=need_ga,
                     NEED_GH0=need_gh0, BLOCK_T=block_t, BLOCK_M=block_m, num_warps=warps)
    if gap is not None:
        ga = gap.sum(0)
    return gb, ga, gh0


# every specialisation the launchers above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI).
# BLOCK_T x BLOCK_M pairs are those _blocks() returns on a GPU (M > 4096: 64 x 64; M <= 4096: up to 256 x 16).
_SCAN_BLOCKS = {"BLOCK_T,BLOCK_M,@num_warps": tuple((t, m, 8 if t * m >= 4096 else 4) for t, m in
                                                   ((16, 16), (32, 16), (64, 16), (128, 16), (256, 16), (16, 64),
                                                    (32, 64), (64, 64)))}
COMPILE_SPECS = [
    KernelSpec(scan_fwd_kernel, data=("p_b", "p_h0"), pointers={"p_h": "*fp32"}, ints=("T", "M"),
               floats=("a_scalar",), constexprs=dict(A_MODE=(0, 1, 2), HAS_H0=(False, True), **_SCAN_BLOCKS)),
    KernelSpec(scan_bwd_kernel, data=("p_h0",), ints=("T", "M"), floats=("a_scalar",),
               constexprs=dict(A_MODE=(0, 1, 2), HAS_H0=(False, True), NEED_GA=(False, True),
                               NEED_GH0=(False, True), **_SCAN_BLOCKS)),
    KernelSpec(scan_fwd_sequential_kernel, data=("p_b", "p_h0", "p_h"), ints=("T", "M"), floats=("a_scalar",),
               constexprs=dict(A_MODE=(0, 1, 2), HAS_H0=(False, True), BLOCK_M=(128,))),
]
