"""Event-driven synapse kernels (Triton) and their launchers: bit pack / unpack, spike-gather Linear and Conv2d
forward, and their weight gradients read straight from the packed bits.

* Forward (linear and conv2d): the launcher compacts the spikes into CSR lists with torch (row pointers and
  the active input indices); one program owns one output row (linear) or output pixel (conv2d) and a block of
  output channels, and walks its spike list adding one contiguous weight row per spike (W^T [K, N] for linear,
  WT[Cin][KH][KW][Cout/G] for conv2d).
* Weight gradient: one program owns a block of inputs x outputs, loops over the rows (pixels) in blocks,
  unpacks the spike bits in registers and skips blocks without a spike (grad of W accumulated only where inputs
  fired). The input gradient is dense and computed by torch (cuBLAS / cuDNN) in ops/synapse.py.
* Bit layout as csrc/synapse.cpp: [rows, cols] -> [rows, ceil(cols/8)], bit j of byte b = element 8 b + j.
"""
import torch
import triton
import triton.language as tl

from ._spec import KernelSpec

PACK_BLOCK = 256     # bytes per program
UNPACK_BLOCK = 1024  # elements per program
BLOCK_N = 64         # output channels per program (forward)


@triton.jit
def pack_bits_kernel(p_x, p_bits, p_bad, rows, cols, nb, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    o_b = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_b = o_b < rows * nb
    o_r = o_b // nb
    o_c0 = (o_b % nb) * 8
    b_byte = tl.zeros([BLOCK], dtype=tl.int32)
    b_bad = tl.zeros([BLOCK], dtype=tl.int32)
    for j in tl.static_range(8):
        o_c = o_c0 + j
        m = m_b & (o_c < cols)
        b_x = tl.load(p_x + o_r * cols + o_c, mask=m, other=0.0).to(tl.float32)
        b_nz = (b_x != 0.0).to(tl.int32)
        b_byte = b_byte | (b_nz << j)
        b_bad = b_bad | (b_nz & (b_x != 1.0).to(tl.int32))
    tl.store(p_bits + o_b, b_byte.to(tl.uint8), mask=m_b)
    tl.store(p_bad + pid, tl.max(b_bad, axis=0))


@triton.jit
def unpack_bits_kernel(p_bits, p_out, rows, cols, nb, BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    o_e = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_e = o_e < rows * cols
    o_r = o_e // cols
    o_c = o_e % cols
    b_byte = tl.load(p_bits + o_r * nb + o_c // 8, mask=m_e, other=0).to(tl.int32)
    b_bit = (b_byte >> (o_c % 8).to(tl.int32)) & 1
    tl.store(p_out + o_e, b_bit.to(tl.float32), mask=m_e)


@triton.jit
def linear_fwd_kernel(p_rowptr, p_idx, p_wt, p_bias, p_out, N, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr):
    # out[m, n] = bias[n] + sum over the active inputs k of row m of WT[k, n]
    pid_m = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1).to(tl.int64)
    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    m_n = o_n < N
    if HAS_BIAS:
        b_acc = tl.load(p_bias + o_n, mask=m_n, other=0.0).to(tl.float32)
    else:
        b_acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    start = tl.load(p_rowptr + pid_m)
    end = tl.load(p_rowptr + pid_m + 1)
    for j in range(start, end):
        k = tl.load(p_idx + j).to(tl.int64)
        b_acc += tl.load(p_wt + k * N + o_n, mask=m_n, other=0.0).to(tl.float32)
    tl.store(p_out + pid_m * N + o_n, b_acc, mask=m_n)


@triton.jit
def linear_gw_kernel(p_bits, p_g, p_gw, M, K, N, nb, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr,
                     BLOCK_N: tl.constexpr):
    # gw[n, k] = sum over the rows m where input k fired of g[m, n]
    pid_k = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1).to(tl.int64)
    o_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K).to(tl.int64)
    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    m_k = o_k < K
    m_n = o_n < N
    b_acc = tl.zeros([BLOCK_K, BLOCK_N], dtype=tl.float32)
    for m0 in range(0, M, BLOCK_M):
        o_m = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
        m_m = o_m < M
        b_byte = tl.load(p_bits + o_m[:, None] * nb + (o_k // 8)[None, :], mask=m_m[:, None] & m_k[None, :],
                         other=0).to(tl.int32)
        b_s = ((b_byte >> (o_k % 8).to(tl.int32)[None, :]) & 1).to(tl.float32)  # [BLOCK_M, BLOCK_K]
        if tl.max(tl.max(b_s, axis=1), axis=0) > 0.0:  # skip row blocks without a spike
            b_g = tl.load(p_g + o_m[:, None] * N + o_n[None, :], mask=m_m[:, None] & m_n[None, :],
                          other=0.0).to(tl.float32)
            b_acc += tl.dot(tl.trans(b_s), b_g, input_precision="ieee")
    tl.store(p_gw + o_n[None, :] * K + o_k[:, None], b_acc, mask=m_k[:, None] & m_n[None, :])


@triton.jit
def conv2d_fwd_kernel(p_rowptr, p_idx, p_wt, p_bias, p_out, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, G,
                      cing, cout_g, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr):
    # one output pixel (b, oy, ox), group g, block of its output channels
    pid_p = tl.program_id(0).to(tl.int64)
    grp = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2).to(tl.int64)
    ox = pid_p % OW
    oy = (pid_p // OW) % OH
    b = pid_p // (OW * OH)
    o_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    m_c = o_c < cout_g
    if HAS_BIAS:
        b_acc = tl.load(p_bias + grp * cout_g + o_c, mask=m_c, other=0.0).to(tl.float32)
    else:
        b_acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for ky in range(0, KH):
        iy = oy * sh - ph + ky * dh
        for kx in range(0, KW):
            ix = ox * sw - pw + kx * dw
            inside = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
            row = ((b * H + iy) * W + ix) * G + grp
            row = tl.where(inside, row, 0)
            start = tl.load(p_rowptr + row)
            end = tl.load(p_rowptr + row + 1)
            end = tl.where(inside, end, start)
            for j in range(start, end):
                c = grp * cing + tl.load(p_idx + j).to(tl.int64)
                b_acc += tl.load(p_wt + ((c * KH + ky) * KW + kx) * cout_g + o_c, mask=m_c, other=0.0).to(tl.float32)
    OHW = OH * OW
    tl.store(p_out + ((b * G + grp) * cout_g + o_c) * OHW + oy * OW + ox, b_acc, mask=m_c)


@triton.jit
def conv2d_gw_kernel(p_bits, p_g, p_gw, B, Cin, H, W, Cout, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, cing, cout_g,
                     BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    # gw[o, c - grp*cing, ky, kx] = sum over output pixels whose tap (ky, kx) input of channel c fired of g[b, o, oy, ox]
    c = tl.program_id(0).to(tl.int64)
    tap = tl.program_id(1).to(tl.int64)
    pid_o = tl.program_id(2).to(tl.int64)
    ky = tap // KW
    kx = tap % KW
    grp = c // cing
    o_o = pid_o * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    m_o = o_o < cout_g
    o_glob = grp * cout_g + o_o
    OHW = OH * OW
    P = B * OHW
    b_acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p0 in range(0, P, BLOCK_P):
        o_p = p0 + tl.arange(0, BLOCK_P).to(tl.int64)
        m_p = o_p < P
        b = o_p // OHW
        oy = (o_p // OW) % OH
        ox = o_p % OW
        iy = oy * sh - ph + ky * dh
        ix = ox * sw - pw + kx * dw
        m_in = m_p & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        pos = ((b * Cin + c) * H + iy) * W + ix
        pos = tl.where(m_in, pos, 0)
        b_byte = tl.load(p_bits + pos // 8, mask=m_in, other=0).to(tl.int32)
        b_s = ((b_byte >> (pos % 8).to(tl.int32)) & 1).to(tl.float32)
        if tl.max(b_s, axis=0) > 0.0:
            b_g = tl.load(p_g + (b[:, None] * Cout + o_glob[None, :]) * OHW + (oy * OW + ox)[:, None],
                          mask=m_p[:, None] & m_o[None, :], other=0.0).to(tl.float32)
            b_acc += tl.sum(b_s[:, None] * b_g, axis=0)
    tl.store(p_gw + ((o_glob * cing + (c - grp * cing)) * KH + ky) * KW + kx, b_acc, mask=m_o)


# ============================================================================================== launchers
def _pow2(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(1, n))))


def pack_bits(x2: torch.Tensor):
    """[rows, cols] -> (uint8 [rows, ceil(cols/8)], binary)."""
    x2 = x2.contiguous()
    rows, cols = x2.shape
    nb = (cols + 7) // 8
    bits = torch.empty((rows, nb), dtype=torch.uint8, device=x2.device)
    grid = (triton.cdiv(rows * nb, PACK_BLOCK),)
    bad = torch.empty((grid[0],), dtype=torch.int32, device=x2.device)
    pack_bits_kernel[grid](x2, bits, bad, rows, cols, nb, BLOCK=PACK_BLOCK)
    return bits, not bool(bad.any())


def unpack_bits(bits: torch.Tensor, cols: int) -> torch.Tensor:
    bits = bits.contiguous()
    rows = bits.shape[0]
    out = torch.empty((rows, cols), dtype=torch.float32, device=bits.device)
    grid = (triton.cdiv(rows * cols, UNPACK_BLOCK),)
    unpack_bits_kernel[grid](bits, out, rows, cols, bits.shape[1], BLOCK=UNPACK_BLOCK)
    return out


def _csr(nz2: torch.Tensor):
    """Row pointers (int64 [rows + 1]) and column indices (int32) of the nonzeros of a 2-D bool tensor."""
    counts = nz2.sum(1)
    rowptr = torch.zeros(nz2.shape[0] + 1, dtype=torch.int64, device=nz2.device)
    torch.cumsum(counts, 0, out=rowptr[1:])
    idx = nz2.nonzero()[:, 1].to(torch.int32).contiguous()
    if idx.numel() == 0:
        idx = torch.zeros(1, dtype=torch.int32, device=nz2.device)
    return rowptr, idx


def linear_weight_t(w: torch.Tensor) -> torch.Tensor:
    """W [N, K] -> W^T [K, N] float32 contiguous (the caller may cache it per weight version)."""
    return w.detach().t().to(torch.float32).contiguous()


def conv2d_weight_t(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[Cout, Cin/G, KH, KW] -> [Cin][KH][KW][Cout/G] float32 contiguous."""
    Cout, cing, KH, KW = w.shape
    return (w.detach().to(torch.float32).reshape(groups, Cout // groups, cing, KH, KW)
            .permute(0, 2, 3, 4, 1).contiguous())


def linear_forward(x2: torch.Tensor, w: torch.Tensor, b, wt=None) -> torch.Tensor:
    M, K = x2.shape
    N = w.shape[0]
    rowptr, idx = _csr(x2 != 0)
    if wt is None:
        wt = linear_weight_t(w)
    out = torch.empty((M, N), dtype=torch.float32, device=x2.device)
    bias = b.detach().to(torch.float32).contiguous() if b is not None else out
    block_n = _pow2(N, 16, BLOCK_N)
    linear_fwd_kernel[(M, triton.cdiv(N, block_n))](rowptr, idx, wt, bias, out, N, HAS_BIAS=b is not None,
                                                    BLOCK_N=block_n)
    return out


def linear_grad_weight(bits: torch.Tensor, g: torch.Tensor, K: int) -> torch.Tensor:
    M, N = g.shape
    bits = bits.contiguous()
    gw = torch.empty((N, K), dtype=torch.float32, device=g.device)
    bm, bk, bn = 32, _pow2(K, 16, 32), _pow2(N, 16, 64)
    linear_gw_kernel[(triton.cdiv(K, bk), triton.cdiv(N, bn))](bits, g, gw, M, K, N, bits.shape[1], BLOCK_M=bm,
                                                              BLOCK_K=bk, BLOCK_N=bn)
    return gw


def conv2d_forward(x, w, b, s, p, d, groups, wt=None):
    B, Cin, H, W = x.shape
    Cout, cing, KH, KW = w.shape
    cout_g = Cout // groups
    OH = (H + 2 * p[0] - d[0] * (KH - 1) - 1) // s[0] + 1
    OW = (W + 2 * p[1] - d[1] * (KW - 1) - 1) // s[1] + 1
    # CSR over (pixel, group): the active channels (within the group) of each input pixel
    nz = (x != 0).permute(0, 2, 3, 1).reshape(B * H * W * groups, cing)
    rowptr, idx = _csr(nz)
    if wt is None:
        wt = conv2d_weight_t(w, groups)
    out = torch.empty((B, Cout, OH, OW), dtype=torch.float32, device=x.device)
    bias = b.detach().to(torch.float32).contiguous() if b is not None else out
    block_c = _pow2(cout_g, 16, 128)
    grid = (B * OH * OW, groups, triton.cdiv(cout_g, block_c))
    conv2d_fwd_kernel[grid](rowptr, idx, wt, bias, out, H, W, OH, OW, KH, KW, s[0], s[1], p[0], p[1], d[0], d[1],
                            groups, cing, cout_g, HAS_BIAS=b is not None, BLOCK_C=block_c)
    return out


def conv2d_grad_weight(bits, x_shape, g, w_shape, s, p, d, groups):
    B, Cin, H, W = x_shape
    Cout, cing, KH, KW = w_shape
    cout_g = Cout // groups
    _, _, OH, OW = g.shape
    bits = bits.contiguous().reshape(-1)
    gw = torch.empty((Cout, cing, KH, KW), dtype=torch.float32, device=g.device)
    block_c = _pow2(cout_g, 16, 64)
    grid = (Cin, KH * KW, triton.cdiv(cout_g, block_c))
    # a [64, 64] gradient tile ran out of registers with 4 warps (tests/test_triton_compile.py)
    conv2d_gw_kernel[grid](bits, g, gw, B, Cin, H, W, Cout, OH, OW, KH, KW, s[0], s[1], p[0], p[1], d[0], d[1],
                           cing, cout_g, BLOCK_P=64, BLOCK_C=block_c, num_warps=8 if block_c == 64 else 4)
    return gw


# every specialisation the launchers above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI)
_CONV_INTS = ("H", "W", "OH", "OW", "KH", "KW", "sh", "sw", "ph", "pw", "dh", "dw")
COMPILE_SPECS = [
    KernelSpec(pack_bits_kernel, data=("p_x",), pointers={"p_bits": "*u8", "p_bad": "*i32"},
               ints=("rows", "cols", "nb"), constexprs=dict(BLOCK=(PACK_BLOCK,))),
    KernelSpec(unpack_bits_kernel, pointers={"p_bits": "*u8"}, ints=("rows", "cols", "nb"),
               constexprs=dict(BLOCK=(UNPACK_BLOCK,))),
    KernelSpec(linear_fwd_kernel, pointers={"p_rowptr": "*i64", "p_idx": "*i32"}, ints=("N",),
               constexprs=dict(HAS_BIAS=(False, True), BLOCK_N=(16, 32, 64))),
    KernelSpec(linear_gw_kernel, pointers={"p_bits": "*u8"}, ints=("M", "K", "N", "nb"),
               constexprs=dict(BLOCK_M=(32,), BLOCK_K=(16, 32), BLOCK_N=(16, 32, 64))),
    KernelSpec(conv2d_fwd_kernel, pointers={"p_rowptr": "*i64", "p_idx": "*i32"},
               ints=_CONV_INTS + ("G", "cing", "cout_g"),
               constexprs=dict(HAS_BIAS=(False, True), BLOCK_C=(16, 32, 64, 128))),
    KernelSpec(conv2d_gw_kernel, pointers={"p_bits": "*u8"},
               ints=("B", "Cin", "Cout") + _CONV_INTS + ("cing", "cout_g"),
               constexprs={"BLOCK_P": (64,), "BLOCK_C,@num_warps": ((16, 4), (32, 4), (64, 8))}),
]
