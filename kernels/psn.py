"""Triton kernels for the Parallel Spiking Neuron family (fastspike.ops.psn).

H = W X + B over time (W [T, T], X [T, N] row-major, B [T]), S = Heaviside(H). A program owns BLOCK_N
columns and walks the time matrix in BLOCK_T x BLOCK_T tiles with ``tl.dot`` (fp32, IEEE precision, so
results match the fp32 reference); H lives in registers only. BANDED restricts W to the causal band of
width BAND (t - BAND < j <= t), skipping tiles outside it (MaskedPSN with lambda >= 1, SlidingPSN: a causal
convolution in time).

The backward recomputes H, forms dH = dS * surrogate'(H) inline (kernels/surrogate.py) and produces
dX = W^T dH (accumulated per program over the tiles of its own columns), and per-program partial sums of
dW = dH X^T and dB = sum dH that the launcher adds up (deterministic, no atomics). T is a runtime argument,
never specialised. A program re-reads its own partial sums (dX, dW, dB tiles) after storing them; the tiles'
register layouts for the load and the store may assign an element to different threads, so a barrier
(``tl.debug_barrier``, a CTA-wide bar.sync that also orders global memory within the CTA) separates every such
store from the next load of the same addresses. Distinct programs never touch the same addresses.
"""
import torch
import triton
import triton.language as tl

from ._spec import KernelSpec
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
def _w_tile(p_w, t, j, T, BAND, BANDED: tl.constexpr):
    m_w = (t[:, None] < T) & (j[None, :] < T)
    if BANDED:
        m_w = m_w & (j[None, :] <= t[:, None]) & (j[None, :] > t[:, None] - BAND)
    return tl.load(p_w + t[:, None] * T + j[None, :], mask=m_w, other=0.0).to(tl.float32)


@triton.jit
def _h_tile(p_x, p_w, p_b, t0, o_r, o_n, m_n, T, N, BAND, BANDED: tl.constexpr, BLOCK_T: tl.constexpr,
            BLOCK_N: tl.constexpr):
    t = t0 + o_r
    b_h = tl.zeros([BLOCK_T, BLOCK_N], dtype=tl.float32)
    k_lo, k_hi = _band_range(t0, T, BAND, BANDED, BLOCK_T)
    for k0 in range(k_lo, k_hi, BLOCK_T):
        j = k0 + o_r
        b_w = _w_tile(p_w, t, j, T, BAND, BANDED)
        b_x = tl.load(p_x + j[:, None] * N + o_n[None, :], mask=(j[:, None] < T) & m_n[None, :],
                      other=0.0).to(tl.float32)
        b_h += tl.dot(b_w, b_x, input_precision="ieee")
    b_b = tl.load(p_b + t, mask=t < T, other=0.0).to(tl.float32)
    return b_h + b_b[:, None]


@triton.jit(do_not_specialize=["T"])
def psn_fwd_kernel(p_x, p_w, p_b, p_s, T, N, BAND, BANDED: tl.constexpr, BLOCK_T: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    o_n = pid * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    m_n = o_n < N
    o_r = tl.arange(0, BLOCK_T).to(tl.int64)
    for t0 in range(0, T, BLOCK_T):
        t = t0 + o_r
        b_h = _h_tile(p_x, p_w, p_b, t0, o_r, o_n, m_n, T, N, BAND, BANDED, BLOCK_T, BLOCK_N)
        b_s = tl.where(b_h >= 0.0, 1.0, 0.0)
        tl.store(p_s + t[:, None] * N + o_n[None, :], b_s.to(p_s.dtype.element_ty),
                 mask=(t[:, None] < T) & m_n[None, :])


@triton.jit(do_not_specialize=["T"])
def psn_bwd_kernel(p_x, p_gs, p_w, p_b, p_gx, p_gw, p_gb, T, N, BAND, n_blocks, n_progs, sg_a, sg_b,
                   SG: tl.constexpr, BANDED: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr):
    sg_a = tl.cast(sg_a, tl.float32)
    sg_b = tl.cast(sg_b, tl.float32)
    pid = tl.program_id(0).to(tl.int64)
    o_r = tl.arange(0, BLOCK_T).to(tl.int64)
    p_gw_prog = p_gw + pid * T * T  # this program's [T, T] partial of dW (zero-initialised by the launcher)
    p_gb_prog = p_gb + pid * T
    for cb in range(pid, n_blocks, n_progs):
        o_n = cb * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
        m_n = o_n < N
        for t0 in range(0, T, BLOCK_T):
            t = t0 + o_r
            m_t = t < T
            m_tn = m_t[:, None] & m_n[None, :]
            b_h = _h_tile(p_x, p_w, p_b, t0, o_r, o_n, m_n, T, N, BAND, BANDED, BLOCK_T, BLOCK_N)
            b_gs = tl.load(p_gs + t[:, None] * N + o_n[None, :], mask=m_tn, other=0.0).to(tl.float32)
            b_gh = tl.where(m_tn, b_gs * surrogate_grad(b_h, sg_a, sg_b, SG), 0.0)
            tl.debug_barrier()  # the previous column block's store of these dB partials
            b_gb = tl.load(p_gb_prog + t, mask=m_t, other=0.0)
            tl.store(p_gb_prog + t, b_gb + tl.sum(b_gh, 1), mask=m_t)
            k_lo, k_hi = _band_range(t0, T, BAND, BANDED, BLOCK_T)
            for k0 in range(k_lo, k_hi, BLOCK_T):
                j = k0 + o_r
                m_j = j < T
                m_jn = m_j[:, None] & m_n[None, :]
                b_x = tl.load(p_x + j[:, None] * N + o_n[None, :], mask=m_jn, other=0.0).to(tl.float32)
                b_w = _w_tile(p_w, t, j, T, BAND, BANDED)
                # dW tile += dH X^T (outside the band the tile is masked away)
                m_w = m_t[:, None] & m_j[None, :]
                if BANDED:
                    m_w = m_w & (j[None, :] <= t[:, None]) & (j[None, :] > t[:, None] - BAND)
                o_w = t[:, None] * T + j[None, :]
                tl.debug_barrier()  # earlier stores of this dW tile and of these dX rows
                b_gw = tl.load(p_gw_prog + o_w, mask=m_w, other=0.0)
                b_gw += tl.dot(b_gh, tl.trans(b_x), input_precision="ieee")
                tl.store(p_gw_prog + o_w, b_gw, mask=m_w)
                # dX tile += W^T dH; the first t-tile that reaches this j-tile stores instead of adding
                b_gx = tl.dot(tl.trans(b_w), b_gh, input_precision="ieee")
                if BANDED:
                    first = t0 == k0
                else:
                    first = t0 == 0
                p_gx_tile = p_gx + j[:, None] * N + o_n[None, :]
                if first:
                    tl.store(p_gx_tile, b_gx, mask=m_jn)
                else:
                    tl.store(p_gx_tile, tl.load(p_gx_tile, mask=m_jn, other=0.0) + b_gx, mask=m_jn)


def _blocks(T: int, interpret: bool, backward: bool = False):
    """(BLOCK_T, BLOCK_N, num_warps). The backward holds five tiles at once: at BLOCK_T = 32 its 32 x 64 tiles
    spilled registers on sm_90 even with 8 warps (tests/test_triton_compile.py), 32 x 32 with 8 warps does not."""
    block_t = 16 if T <= 16 else 32
    if interpret:
        return block_t, 16, 4
    if backward and block_t == 32:
        return 32, 32, 8
    return block_t, 64, 4


def psn_forward(x, w, b, band: int, interpret: bool = False, launch=None, blocks=None):
    """Heaviside(band(w) @ x + b) as a new [T, N] tensor in x's dtype; x [T, N], w [T, T], b [T] contiguous.
    ``launch(kernel)`` wraps the kernel (torch.library.wrap_triton); ``blocks`` = (BLOCK_T, BLOCK_N, num_warps)
    overrides the choice (tests run the GPU's blocks under the interpreter)."""
    T, N = x.shape
    s = torch.empty((T, N), dtype=x.dtype, device=x.device)
    block_t, block_n, warps = blocks or _blocks(T, interpret)
    kernel = psn_fwd_kernel if launch is None else launch(psn_fwd_kernel)
    kernel[(triton.cdiv(N, block_n),)](x, w, b, s, T, N, band, BANDED=band > 0, BLOCK_T=block_t,
                                      BLOCK_N=block_n, num_warps=warps)
    return s


def psn_backward(x, gs, w, b, band: int, sg_id: int, sg_a: float, sg_b: float, interpret: bool = False,
                 launch=None, blocks=None, max_programs=None):
    """(dX [T, N], dW [T, T], dB [T]), all fp32. A program walks every n_progs-th column block (n_progs: four per
    SM on a GPU, ``max_programs`` or 4 otherwise) and keeps [T, T] + [T] partial sums of its own."""
    T, N = x.shape
    block_t, block_n, warps = blocks or _blocks(T, interpret, backward=True)
    n_blocks = triton.cdiv(N, block_n)
    if max_programs is None:
        max_programs = 4 * torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 4
    n_progs = min(n_blocks, max_programs)
    gx = torch.empty((T, N), dtype=torch.float32, device=x.device)
    gw = torch.zeros((n_progs, T, T), dtype=torch.float32, device=x.device)
    gb = torch.zeros((n_progs, T), dtype=torch.float32, device=x.device)
    kernel = psn_bwd_kernel if launch is None else launch(psn_bwd_kernel)
    kernel[(n_progs,)](x, gs, w, b, gx, gw, gb, T, N, band, n_blocks, n_progs, float(sg_a), float(sg_b),
                       SG=sg_id, BANDED=band > 0, BLOCK_T=block_t, BLOCK_N=block_n, num_warps=warps)
    return gx, gw.sum(0), gb.sum(0)


# every specialisation the launchers above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI)
COMPILE_SPECS = [
    KernelSpec(psn_fwd_kernel, data=("p_x", "p_s"), ints=("T", "N", "BAND"),
               constexprs={"BANDED": (False, True), "BLOCK_T,BLOCK_N,@num_warps": ((16, 64, 4), (32, 64, 4))}),
    KernelSpec(psn_bwd_kernel, data=("p_x", "p_gs"), ints=("T", "N", "BAND", "n_blocks", "n_progs"),
               floats=("sg_a", "sg_b"),
               constexprs={"SG": tuple(range(14)), "BANDED": (False, True),
                           "BLOCK_T,BLOCK_N,@num_warps": ((16, 64, 4), (32, 32, 8))}),
]
