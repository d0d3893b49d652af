"""Event-driven synapse kernels (Triton) and their launchers: spike-gather Linear and Conv2d forward, and their
weight gradients read straight from the packed bits (kernels/bits.py packs them).

* Spike lists: ``compact_rows_kernel`` gives every row of the input (linear: a sample; conv2d: an input pixel
  and group, over the group's channels) the list of its active columns, in a buffer as large as the input
  (row r's list starts at r * cols), its length, and a flag for a value other than 0 and 1. All on the device:
  no host synchronisation and no data-dependent shape, so the launchers can be captured in a CUDA graph and
  traced by torch.compile.
* Forward: one program owns one output row (linear) or output pixel (conv2d) and a block of output channels
  and walks its spike list, adding one contiguous weight row per spike (W^T [K, N] for linear,
  WT[Cin][KH][KW][Cout/G] for conv2d). Where a silent input meets a weight that is not finite, F.linear gives
  NaN (0 * inf): the kernel counts the non-finite weights it added per output and compares with the count of
  the whole weight row (``p_nf``, from the launcher; for conv2d per output channel and tap, summed over the
  taps inside the input: zero padding is skipped, as oneDNN's and cuDNN's convolutions do); an output that
  skipped one of them is NaN. An output fed by a row flagged non-binary is NaN too (the callers raise a
  ValueError instead whenever they may synchronise; docs/synapses.md).
* Weight gradient: one program owns a block of inputs x outputs, loops over the rows (pixels) in blocks,
  unpacks the spike bits in registers and skips blocks without a spike. The input gradient is dense (torch).

Compiled-code rules (as kernels/neuron.py): every size may arrive as the constant 1 (Triton specialises
integer arguments equal to 1), so products of sizes are formed in int64 (tl.cast) and offsets are int64 from
the program ids on; no program reads back an address it stored.
"""
import torch
import triton
import triton.language as tl

from ._spec import KernelSpec

BLOCK_N = 64         # output channels per program (linear forward)
COMPACT_BLOCK = 256  # columns per step of the spike-list kernel


@triton.jit
def compact_rows_kernel(p_x, p_idx, p_cnt, p_bad, cols, BLOCK: tl.constexpr):
    # row r: idx[r * cols + j] = column of its j-th nonzero, cnt[r] = number of nonzeros, bad[r] = 1 if a value
    # is neither 0 nor 1
    row = tl.program_id(0).to(tl.int64)
    base = row * cols
    n = tl.sum(tl.zeros([BLOCK], dtype=tl.int32), axis=0)
    bad = tl.sum(tl.zeros([BLOCK], dtype=tl.int32), axis=0)
    for c0 in range(0, cols, BLOCK):
        o_c = c0 + tl.arange(0, BLOCK)
        m_c = o_c < cols
        b_x = tl.load(p_x + base + o_c, mask=m_c, other=0.0).to(tl.float32)
        b_nz = ((b_x != 0.0) & m_c).to(tl.int32)
        b_pos = n + tl.cumsum(b_nz, axis=0) - 1
        tl.store(p_idx + base + b_pos, o_c.to(tl.int32), mask=b_nz != 0)
        n += tl.sum(b_nz, axis=0)
        bad = tl.maximum(bad, tl.max((b_nz != 0) & (b_x != 1.0), axis=0).to(tl.int32))
    tl.store(p_cnt + row, n)
    tl.store(p_bad + row, bad)


@triton.jit
def linear_fwd_kernel(p_idx, p_cnt, p_bad, p_wt, p_nf, p_bias, p_out, K, N, HAS_BIAS: tl.constexpr,
                      BLOCK_N: tl.constexpr):
    # out[m, n] = bias[n] + sum over the active inputs k of row m of WT[k, n]
    pid_m = tl.program_id(0).to(tl.int64)
    pid_n = tl.program_id(1).to(tl.int64)
    o_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N).to(tl.int64)
    m_n = o_n < N
    if HAS_BIAS:
        b_acc = tl.load(p_bias + o_n, mask=m_n, other=0.0).to(tl.float32)
    else:
        b_acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    b_nf = tl.zeros([BLOCK_N], dtype=tl.int32)
    base = pid_m * K
    cnt = tl.load(p_cnt + pid_m)
    for j in range(0, cnt):
        k = tl.load(p_idx + base + j).to(tl.int64)
        b_w = tl.load(p_wt + k * N + o_n, mask=m_n, other=0.0).to(tl.float32)
        b_acc += b_w
        b_nf += ((b_w - b_w) != 0.0).to(tl.int32)  # inf - inf and nan - nan are nan
    b_nf_all = tl.load(p_nf + o_n, mask=m_n, other=0)
    poison = (b_nf < b_nf_all) | (tl.load(p_bad + pid_m) != 0)
    b_acc = tl.where(poison, float("nan"), b_acc)
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
def conv2d_fwd_kernel(p_idx, p_cnt, p_bad, p_wt, p_nf, p_bias, p_out, H, W, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw,
                      G, cing, cout_g, HAS_BIAS: tl.constexpr, BLOCK_C: tl.constexpr):
    # one output pixel (b, oy, ox) and group, a block of its output channels; the spike lists are per input pixel
    # and group (row ((b * H + iy) * W + ix) * G + g, ``cing`` columns each)
    pid_p = tl.program_id(0).to(tl.int64)
    grp = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2).to(tl.int64)
    ox = pid_p % OW
    oy = (pid_p // OW) % OH
    b = pid_p // (tl.cast(OW, tl.int64) * OH)
    o_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    m_c = o_c < cout_g
    if HAS_BIAS:
        b_acc = tl.load(p_bias + grp * cout_g + o_c, mask=m_c, other=0.0).to(tl.float32)
    else:
        b_acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    b_nf = tl.zeros([BLOCK_C], dtype=tl.int32)
    b_nf_all = tl.zeros([BLOCK_C], dtype=tl.int32)
    bad = tl.sum(tl.zeros([BLOCK_C], dtype=tl.int32), axis=0)
    for ky in range(0, KH):
        iy = oy * sh - ph + tl.cast(ky, tl.int64) * dh
        for kx in range(0, KW):
            ix = ox * sw - pw + tl.cast(kx, tl.int64) * dw
            inside = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
            row = tl.where(inside, ((b * H + iy) * W + ix) * G + grp, 0)
            cnt = tl.where(inside, tl.load(p_cnt + row), 0)
            bad = tl.maximum(bad, tl.where(inside, tl.load(p_bad + row), 0))
            # the non-finite weights of this tap (over the group's channels); padded taps count for nothing
            b_nf_tap = tl.load(p_nf + ((grp * cout_g + o_c) * KH + ky) * KW + kx, mask=m_c, other=0)
            b_nf_all += tl.where(inside, b_nf_tap, 0)
            for j in range(0, cnt):
                c = grp * cing + tl.load(p_idx + row * cing + j).to(tl.int64)
                b_w = tl.load(p_wt + ((c * KH + ky) * KW + kx) * cout_g + o_c, mask=m_c, other=0.0).to(tl.float32)
                b_acc += b_w
                b_nf += ((b_w - b_w) != 0.0).to(tl.int32)
    b_acc = tl.where((b_nf < b_nf_all) | (bad != 0), float("nan"), b_acc)
    OHW = tl.cast(OH, tl.int64) * OW
    tl.store(p_out + ((b * G + grp) * cout_g + o_c) * OHW + oy * OW + ox, b_acc, mask=m_c)


@triton.jit
def conv2d_gw_kernel(p_bits, p_g, p_gw, B, Cin, H, W, Cout, OH, OW, KH, KW, sh, sw, ph, pw, dh, dw, cing, cout_g,
                     BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    # gw[o, c - grp*cing, ky, kx] = sum of g[b, o, oy, ox] over the output pixels whose tap (ky, kx) input of c fired
    c = tl.program_id(0).to(tl.int64)
    tap = tl.program_id(1).to(tl.int64)
    pid_o = tl.program_id(2).to(tl.int64)
    ky = tap // KW
    kx = tap % KW
    grp = c // cing
    o_o = pid_o * BLOCK_C + tl.arange(0, BLOCK_C).to(tl.int64)
    m_o = o_o < cout_g
    o_glob = grp * cout_g + o_o
    OHW = tl.cast(OH, tl.int64) * OW
    P = OHW * B
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
        pos = tl.where(m_in, ((b * Cin + c) * H + iy) * W + ix, 0)
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


def _launch(kernel, launch):
    return kernel if launch is None else launch(kernel)


def spike_lists(x2: torch.Tensor, launch=None):
    """x2 [rows, cols] contiguous -> (idx int32 [rows * cols]: row r's active columns from r * cols on, cnt int32
    [rows], bad int32 [rows]: 1 where a value is neither 0 nor 1)."""
    rows, cols = x2.shape
    idx = torch.empty((max(1, rows * cols),), dtype=torch.int32, device=x2.device)
    cnt = torch.empty((rows,), dtype=torch.int32, device=x2.device)
    bad = torch.empty((rows,), dtype=torch.int32, device=x2.device)
    if rows:
        block = _pow2(cols, 16, COMPACT_BLOCK)
        _launch(compact_rows_kernel, launch)[(rows,)](x2, idx, cnt, bad, cols, BLOCK=block)
    return idx, cnt, bad


def nonfinite_per_output(w: torch.Tensor) -> torch.Tensor:
    """Linear W [N, K] -> int32 [N]: how many weights of each output are not finite. Conv2d W [Cout, Cin/G, KH,
    KW] -> int32 [Cout, KH, KW]: the same per output channel and tap."""
    bad = ~torch.isfinite(w.detach())
    return bad.sum(1, dtype=torch.int32).contiguous()


def linear_weight_t(w: torch.Tensor) -> torch.Tensor:
    """W [N, K] -> W^T [K, N] float32 contiguous (the caller may cache it per weight version)."""
    return w.detach().t().to(torch.float32).contiguous()


def conv2d_weight_t(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[Cout, Cin/G, KH, KW] -> [Cin][KH][KW][Cout/G] float32 contiguous."""
    Cout, cing, KH, KW = w.shape
    return (w.detach().to(torch.float32).reshape(groups, Cout // groups, cing, KH, KW)
            .permute(0, 2, 3, 4, 1).contiguous())


def linear_forward(x2: torch.Tensor, b, wt: torch.Tensor, nf: torch.Tensor, launch=None):
    """x2 [M, K] contiguous, wt = W^T [K, N] fp32, nf = nonfinite_per_output(W) -> (out fp32 [M, N], bad int32
    [M]: rows that held a value other than 0 and 1, whose outputs are NaN)."""
    M, K = x2.shape
    N = wt.shape[1]
    idx, cnt, bad = spike_lists(x2, launch)
    out = torch.empty((M, N), dtype=torch.float32, device=x2.device)
    bias = b.detach().to(torch.float32).contiguous() if b is not None else out
    block_n = _pow2(N, 16, BLOCK_N)
    if M and N:
        _launch(linear_fwd_kernel, launch)[(M, triton.cdiv(N, block_n))](
            idx, cnt, bad, wt, nf, bias, out, K, N, HAS_BIAS=b is not None, BLOCK_N=block_n)
    return out, bad


def linear_grad_weight(bits: torch.Tensor, g: torch.Tensor, K: int, launch=None) -> torch.Tensor:
    """bits [M, ceil(K/8)] of x, g [M, N] contiguous fp32 -> dL/dW fp32 [N, K]."""
    M, N = g.shape
    gw = torch.empty((N, K), dtype=torch.float32, device=g.device)
    if N * K:
        bm, bk, bn = 32, _pow2(K, 16, 32), _pow2(N, 16, 64)
        _launch(linear_gw_kernel, launch)[(triton.cdiv(K, bk), triton.cdiv(N, bn))](
            bits, g, gw, M, K, N, bits.shape[1], BLOCK_M=bm, BLOCK_K=bk, BLOCK_N=bn)
    return gw


def conv2d_forward(x: torch.Tensor, b, wt: torch.Tensor, nf: torch.Tensor, w_shape, s, p, d, groups: int,
                   launch=None):
    """x [B, Cin, H, W], wt = conv2d_weight_t(W), nf = nonfinite_per_output(W) ([Cout, KH, KW]) -> (out fp32
    [B, Cout, OH, OW], bad int32 [B * H * W * groups]: input pixels that held a value other than 0 and 1, whose
    outputs are NaN)."""
    B, Cin, H, W = x.shape
    Cout, cing, KH, KW = w_shape
    cout_g = Cout // groups
    OH = (H + 2 * p[0] - d[0] * (KH - 1) - 1) // s[0] + 1
    OW = (W + 2 * p[1] - d[1] * (KW - 1) - 1) // s[1] + 1
    # spike lists per (input pixel, group) over the group's channels: NHWC rows of cing values
    nhwc = x.permute(0, 2, 3, 1).contiguous().view(B * H * W * groups, cing)
    idx, cnt, bad = spike_lists(nhwc, launch)
    out = torch.empty((B, Cout, OH, OW), dtype=torch.float32, device=x.device)
    bias = b.detach().to(torch.float32).contiguous() if b is not None else out
    block_c = _pow2(cout_g, 16, 128)
    if out.numel():
        grid = (B * OH * OW, groups, triton.cdiv(cout_g, block_c))
        _launch(conv2d_fwd_kernel, launch)[grid](
            idx, cnt, bad, wt, nf, bias, out, H, W, OH, OW, KH, KW, s[0], s[1], p[0], p[1], d[0], d[1], groups,
            cing, cout_g, HAS_BIAS=b is not None, BLOCK_C=block_c)
    return out, bad


def conv2d_grad_weight(bits, x_shape, g, w_shape, s, p, d, groups: int, launch=None):
    """bits: all of x [B, Cin, H, W] packed as one row; g [B, Cout, OH, OW] contiguous fp32 -> dL/dW fp32."""
    B, Cin, H, W = x_shape
    Cout, cing, KH, KW = w_shape
    cout_g = Cout // groups
    _, _, OH, OW = g.shape
    gw = torch.empty((Cout, cing, KH, KW), dtype=torch.float32, device=g.device)
    if gw.numel():
        # 32 output channels a program: with 64, a [64 pixels, 64 channels] tile of g and its int64 offsets
        # exceed 255 registers on sm_80/sm_90 and spill (checked by compiling for those targets)
        block_c = _pow2(cout_g, 16, 32)
        grid = (Cin, KH * KW, triton.cdiv(cout_g, block_c))
        _launch(conv2d_gw_kernel, launch)[grid](
            bits, g, gw, B, Cin, H, W, Cout, OH, OW, KH, KW, s[0], s[1], p[0], p[1], d[0], d[1], cing, cout_g,
            BLOCK_P=64, BLOCK_C=block_c)
    return gw




# every specialisation the launchers above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI)
_I32 = "*i32"
_CONV_INTS = ("H", "W", "OH", "OW", "KH", "KW", "sh", "sw", "ph", "pw", "dh", "dw")
COMPILE_SPECS = [
    KernelSpec(compact_rows_kernel, data=("p_x",), pointers={"p_idx": _I32, "p_cnt": _I32, "p_bad": _I32},
               ints=("cols",), constexprs={"BLOCK": (16, 32, 64, 128, COMPACT_BLOCK)}),
    KernelSpec(linear_fwd_kernel, pointers={"p_idx": _I32, "p_cnt": _I32, "p_bad": _I32, "p_nf": _I32},
               ints=("K", "N"), constexprs={"HAS_BIAS": (False, True), "BLOCK_N": (16, 32, BLOCK_N)}),
    KernelSpec(linear_gw_kernel, pointers={"p_bits": "*u8"}, ints=("M", "K", "N", "nb"),
               constexprs={"BLOCK_M,BLOCK_K,BLOCK_N": ((32, 16, 16), (32, 32, 64), (32, 16, 64), (32, 32, 16))}),
    KernelSpec(conv2d_fwd_kernel, pointers={"p_idx": _I32, "p_cnt": _I32, "p_bad": _I32, "p_nf": _I32},
               ints=_CONV_INTS + ("G", "cing", "cout_g"),
               constexprs={"HAS_BIAS": (False, True), "BLOCK_C": (16, 32, 64, 128)}),
    KernelSpec(conv2d_gw_kernel, pointers={"p_bits": "*u8"}, ints=("B", "Cin", "Cout") + _CONV_INTS + ("cing",
                                                                                                       "cout_g"),
               constexprs={"BLOCK_P": (64,), "BLOCK_C": (16, 32)}),
]
