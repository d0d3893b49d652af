"""Triton kernels for the Parallel Spiking Neuron family (fastspike.ops.psn).

H = W X + B over time (W [T, T], X [T, N] row-major, B [T]), S = Heaviside(H). A program owns BLOCK_N
columns and walks the time matrix in BLOCK_T x BLOCK_T tiles with ``tl.dot`` (fp32, IEEE precision, so
results match the fp32 reference); H lives in registers only. BANDED restricts W to the causal band of
width BAND (t - BAND < j <= t), skipping tiles outside it (MaskedPSN with lambda >= 1, SlidingPSN: a causal
convolution in time).

The backward recomputes H, forms dH = dS * surrogate'(H) inline (kernels/surrogate.py) and produces
dX = W^T dH (accumulated per program over the tiles of its own columns), and per-program partial sums of
dW = dH X^T and dB = sum dH that the launcher adds up (deterministic, no atomics). T is a runtime argument.
"""
import triton
import triton.language as tl

from .surrogate import surrogate_grad


@triton.jit
def _band_range(t0, T, BAND, BANDED: tl.constexpr, BLOCK_T: tl.constexpr):
    if BANDED:
        k_lo = tl.maximum(t0 - BAND + 1, 0) // BLOCK_T * BLOCK_T
        k_hi = tl.minimum(t0 + BLOCK_T, T)
    else:
        k_lo = t0 * 0
        k_hi = T
    return k_lo, k_hi


@triton.jit
def _w_tile(w_ptr, t, j, T, BAND, BANDED: tl.constexpr):
    m_w = (t[:, None] < T) & (j[None, :] < T)
    if BANDED:
        m_w = m_w & (j[None, :] <= t[:, None]) & (j[None, :] > t[:, None] - BAND)
    return tl.load(w_ptr + t[:, None] * T + j[None, :], mask=m_w, other=0.0).to(tl.float32)


@triton.jit
def _h_tile(x_ptr, w_ptr, b_ptr, t0, o_r, o_n, m_n, T, N, BAND, BANDED: tl.constexpr, BLOCK_T: tl.constexpr,
            BLOCK_N: tl.constexpr):
    t = t0 + o_r
    b_h = tl.zeros([BLOCK_T, BLOCK_N], dtype=tl.float32)
    k_lo, k_hi = _band_range(t0, T, BAND, BANDED, BLOCK_T)
    for k0 in range(k_lo, k_hi, BLOCK_T):
        j = k0 + o_r
        b_w = _w_tile(w_ptr, t, j, T, BAND, BANDED)
        b_x = tl.load(x_ptr + j[:, None] * N + o_n[None, :], mask=(j[:, None] < T) & m_n[None, :],
                      other=0.0).to(tl.float32)
        b_h += tl.dot(b_w, b_x, input_precision="ieee")
    b_b = tl.load(b_ptr + t, mask=t < T, other=0.0).to(tl.float32)
    return b_h + b_b[:, None]


@triton.jit
def psn_fwd_kernel(x_ptr, w_ptr, b_ptr, s_ptr, T, N, BAND, BANDED: tl.constexpr, BLOCK_T: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    o_n = pid * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    m_n = o_n < N
    o_r = tl.arange(0, BLOCK_T).to(tl.int64)
    for t0 in range(0, T, BLOCK_T):
        t = t0 + o_r
        b_h = _h_tile(x_ptr, w_ptr, b_ptr, t0, o_r, o_n, m_n, T, N, BAND, BANDED, BLOCK_T, BLOCK_N)
        b_s = tl.where(b_h >= 0.0, 1.0, 0.0)
        tl.store(s_ptr + t[:, None] * N + o_n[None, :], b_s.to(s_ptr.dtype.element_ty),
                 mask=(t[:, None] < T) & m_n[None, :])


@triton.jit
def psn_bwd_kernel(x_ptr, gs_ptr, w_ptr, b_ptr, gx_ptr, gw_ptr, gb_ptr, T, N, BAND, n_blocks, n_progs, sg_a, sg_b,
                   SG: tl.constexpr, BANDED: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    o_r = tl.arange(0, BLOCK_T).to(tl.int64)
    p_gw = gw_ptr + pid * T * T  # this program's [T, T] partial of dW (zero-initialised by the launcher)
    p_gb = gb_ptr + pid * T
    for cb in range(pid, n_blocks, n_progs):
        o_n = cb * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
        m_n = o_n < N
        for t0 in range(0, T, BLOCK_T):
            t = t0 + o_r
            m_t = t < T
            m_tn = m_t[:, None] & m_n[None, :]
            b_h = _h_tile(x_ptr, w_ptr, b_ptr, t0, o_r, o_n, m_n, T, N, BAND, BANDED, BLOCK_T, BLOCK_N)
            b_gs = tl.load(gs_ptr + t[:, None] * N + o_n[None, :], mask=m_tn, other=0.0).to(tl.float32)
            b_gh = tl.where(m_tn, b_gs * surrogate_grad(b_h, sg_a, sg_b, SG), 0.0)
            b_gb = tl.load(p_gb + t, mask=m_t, other=0.0)
            tl.store(p_gb + t, b_gb + tl.sum(b_gh, 1), mask=m_t)
            k_lo, k_hi = _band_range(t0, T, BAND, BANDED, BLOCK_T)
            for k0 in range(k_lo, k_hi, BLOCK_T):
                j = k0 + o_r
                m_j = j < T
                m_jn = m_j[:, None] & m_n[None, :]
                b_x = tl.load(x_ptr + j[:, None] * N + o_n[None, :], mask=m_jn, other=0.0).to(tl.float32)
                b_w = _w_tile(w_ptr, t, j, T, BAND, BANDED)
                # dW tile += dH X^T (outside the band the tile is masked away)
                m_w = m_t[:, None] & m_j[None, :]
                if BANDED:
                    m_w = m_w & (j[None, :] <= t[:, None]) & (j[None, :] > t[:, None] - BAND)
                o_w = t[:, None] * T + j[None, :]
                b_gw = tl.load(p_gw + o_w, mask=m_w, other=0.0)
                b_gw += tl.dot(b_gh, tl.trans(b_x), input_precision="ieee")
                tl.store(p_gw + o_w, b_gw, mask=m_w)
                # dX tile += W^T dH; the first t-tile that reaches this j-tile stores instead of adding
                b_gx = tl.dot(tl.trans(b_w), b_gh, input_precision="ieee")
                if BANDED:
                    first = t0 == k0
                else:
                    first = t0 == 0
                p_gx = gx_ptr + j[:, None] * N + o_n[None, :]
                if first:
                    tl.store(p_gx, b_gx, mask=m_jn)
                else:
                    tl.store(p_gx, tl.load(p_gx, mask=m_jn, other=0.0) + b_gx, mask=m_jn)


def _blocks(T: int, interpret: bool):
    block_t = 16 if T <= 16 else 32
    block_n = 16 if interpret else 64
    return block_t, block_n


def psn_forward(x, w, b, s, T: int, N: int, band: int, interpret: bool = False):
    """s[T, N] <- Heaviside(band(w) @ x + b); x, w, b contiguous (x [T, N], w [T, T], b [T])."""
    block_t, block_n = _blocks(T, interpret)
    grid = (triton.cdiv(N, block_n),)
    psn_fwd_kernel[grid](x, w, b, s, T, N, band, BANDED=band > 0, BLOCK_T=block_t, BLOCK_N=block_n,
                         num_warps=4)
    return s


def psn_backward(x, gs, w, b, gx, T: int, N: int, band: int, sg_id: int, sg_a: float, sg_b: float,
                 interpret: bool = False):
    """Fill gx [T, N] (fp32) and return (dW [T, T], dB [T]) in fp32."""
    import torch

    block_t, block_n = _blocks(T, interpret)
    n_blocks = triton.cdiv(N, block_n)
    if x.is_cuda:
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count
        n_progs = min(n_blocks, 4 * sms)
    else:
        n_progs = min(n_blocks, 4)
    gw = torch.zeros((n_progs, T, T), dtype=torch.float32, device=x.device)
    gb = torch.zeros((n_progs, T), dtype=torch.float32, device=x.device)
    psn_bwd_kernel[(n_progs,)](x, gs, w, b, gx, gw, gb, T, N, band, n_blocks, n_progs, float(sg_a), float(sg_b),
                               SG=sg_id, BANDED=band > 0, BLOCK_T=block_t, BLOCK_N=block_n, num_warps=4)
    return gw.sum(0), gb.sum(0)
