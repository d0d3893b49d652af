"""Fused multi-step kernels (Triton) of the gated LIF neuron (GLIF, SpikingJelly's GatedLIFNode), and launchers.

Layout: x [T, M], M = NB x C x S (a step is NB rows of C channels of S neurons). Per-channel coefficients (the
caller computes them from the gates, fastspike/ops/gated_lif/__init__.py): coef [5, C] = (L, K, gamma, R, v_th),
inc [T, C]. With S the previous step's spike (0 before the first step):

    V' = (L V - K) + X inc[t];  V' = (V' - L V gamma S) - R S;  S' = (V' - v_th) >= 0

One program owns BLOCK neurons of one row of one channel (program id = row x NSB + block) and runs the whole time
loop with V and S in registers. The forward writes S, V after the last step and, for the backward, V after every
step in fp32 (the backward recomputes the spikes from it exactly). The backward runs the reverse-time loop and
writes its sums of dL/dcoef (5 numbers) and dL/dinc[t] (T numbers) into its own row of a [programs, 5 + T] fp32
buffer, which the launcher sums per channel with torch: no atomics, the same result on every run.

Compiled-code rules (checked for sm_80/sm_90 by tests/test_triton_compile.py): T is never specialised, offsets
are int64 from the start, and float arguments are cast to fp32 on entry (torch.compile passes fp64).
"""
import torch
import triton
import triton.language as tl

from ._spec import KernelSpec
from .neuron import _initial_v
from .surrogate import surrogate_grad

BLOCK = 512
NCOEF = 5


@triton.jit
def _unit(C, S, NSB, BLOCK: tl.constexpr):
    """(offsets of this program's neurons in a step, their mask, its channel) for program (row, block)."""
    pid = tl.program_id(0).to(tl.int64)
    r = pid // NSB
    o_s = (pid % NSB) * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    return r * S + o_s, o_s < S, r % C


@triton.jit(do_not_specialize=["T"])
def gated_lif_fwd_kernel(
    p_x, p_v0, p_s, p_vlast, p_coef, p_inc, p_vseq,
    T, M, C, S, NSB, v0_value,
    HAS_V0: tl.constexpr, STORE_V: tl.constexpr, BLOCK: tl.constexpr,
):
    v0_value = tl.cast(v0_value, tl.float32)
    o_n, m_n, c = _unit(C, S, NSB, BLOCK)
    b_l = tl.load(p_coef + c)
    b_k = tl.load(p_coef + C + c)
    b_g = tl.load(p_coef + 2 * C + c)
    b_r = tl.load(p_coef + 3 * C + c)
    b_th = tl.load(p_coef + 4 * C + c)
    b_v = _initial_v(p_v0, v0_value, o_n, m_n, HAS_V0, BLOCK)
    b_s = tl.zeros([BLOCK], dtype=tl.float32)
    o_t = o_n  # int64 running offset
    o_c = c
    for t in range(0, T):
        b_in = tl.load(p_inc + o_c)
        b_x = tl.load(p_x + o_t, mask=m_n, other=0.0).to(tl.float32)
        b_lv = b_l * b_v
        b_h = (b_lv - b_k) + b_x * b_in
        b_h = (b_h - b_lv * b_g * b_s) - b_r * b_s
        b_s = ((b_h - b_th) >= 0.0).to(tl.float32)
        b_v = b_h
        tl.store(p_s + o_t, b_s.to(p_s.dtype.element_ty), mask=m_n)
        if STORE_V:
            tl.store(p_vseq + o_t, b_v, mask=m_n)
        o_t += M
        o_c += C
    tl.store(p_vlast + o_n, b_v.to(p_vlast.dtype.element_ty), mask=m_n)


@triton.jit(do_not_specialize=["T"])
def gated_lif_bwd_kernel(
    p_gs, p_gvlast, p_x, p_v0, p_vseq, p_coef, p_inc, p_gx, p_gv0, p_part,
    T, M, C, S, NSB, v0_value, sg_a, sg_b,
    HAS_V0: tl.constexpr, HAS_GS: tl.constexpr, HAS_GVLAST: tl.constexpr, NEED_G0: tl.constexpr,
    SG: tl.constexpr, BLOCK: tl.constexpr,
):
    v0_value = tl.cast(v0_value, tl.float32)
    sg_a = tl.cast(sg_a, tl.float32)
    sg_b = tl.cast(sg_b, tl.float32)
    o_n, m_n, c = _unit(C, S, NSB, BLOCK)
    b_l = tl.load(p_coef + c)
    b_g = tl.load(p_coef + 2 * C + c)
    b_r = tl.load(p_coef + 3 * C + c)
    b_th = tl.load(p_coef + 4 * C + c)
    b_gv = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_GVLAST:
        b_gv += tl.load(p_gvlast + o_n, mask=m_n, other=0.0).to(tl.float32)
    b_gsc = tl.zeros([BLOCK], dtype=tl.float32)
    b_al = tl.zeros([BLOCK], dtype=tl.float32)
    b_ak = tl.zeros([BLOCK], dtype=tl.float32)
    b_ag = tl.zeros([BLOCK], dtype=tl.float32)
    b_ar = tl.zeros([BLOCK], dtype=tl.float32)
    b_ath = tl.zeros([BLOCK], dtype=tl.float32)
    width = T + 5
    p_row = p_part + tl.program_id(0).to(tl.int64) * width
    o_t = o_n + tl.cast(T - 1, tl.int64) * M
    o_c = c + tl.cast(T - 1, tl.int64) * C
    for i in range(0, T):
        t = T - 1 - i
        b_v = tl.load(p_vseq + o_t, mask=m_n, other=0.0)
        if t > 0:
            b_vp = tl.load(p_vseq + o_t - M, mask=m_n, other=0.0)
            b_sp = ((b_vp - b_th) >= 0.0).to(tl.float32)
        else:
            b_vp = _initial_v(p_v0, v0_value, o_n, m_n, HAS_V0, BLOCK)
            b_sp = tl.zeros([BLOCK], dtype=tl.float32)
        b_sg = surrogate_grad(b_v - b_th, sg_a, sg_b, SG)
        b_g_s = b_gsc
        if HAS_GS:
            b_g_s += tl.load(p_gs + o_t, mask=m_n, other=0.0).to(tl.float32)
        b_g_v = tl.where(m_n, b_gv + b_g_s * b_sg, 0.0)
        b_keep = 1.0 - b_g * b_sp
        b_in = tl.load(p_inc + o_c)
        b_x = tl.load(p_x + o_t, mask=m_n, other=0.0).to(tl.float32)
        tl.store(p_gx + o_t, b_g_v * b_in, mask=m_n)
        tl.store(p_row + 5 + t, tl.sum(b_g_v * b_x, axis=0))
        b_ath -= tl.where(m_n, b_g_s * b_sg, 0.0)
        b_al += b_g_v * b_vp * b_keep
        b_ak -= b_g_v
        b_ag -= b_g_v * b_l * b_vp * b_sp
        b_ar -= b_g_v * b_sp
        b_gv = b_g_v * b_l * b_keep
        b_gsc = -b_g_v * (b_l * b_vp * b_g + b_r)
        o_t -= M
        o_c -= C
    tl.store(p_row, tl.sum(b_al, axis=0))
    tl.store(p_row + 1, tl.sum(b_ak, axis=0))
    tl.store(p_row + 2, tl.sum(b_ag, axis=0))
    tl.store(p_row + 3, tl.sum(b_ar, axis=0))
    tl.store(p_row + 4, tl.sum(b_ath, axis=0))
    if NEED_G0:
        tl.store(p_gv0 + o_n, b_gv, mask=m_n)


def _grid(NB: int, C: int, S: int, block: int):
    nsb = triton.cdiv(S, block)
    return NB * C * nsb, nsb


def gated_lif_forward(x, v0, v0_value: float, coef, inc, dims, store_v: bool, block: int = BLOCK, launch=None):
    """x [T, M] contiguous (fp32/fp16/bf16), v0 [M] or None (every neuron starts at ``v0_value``), coef [5, C] and
    inc [T, C] fp32, ``dims`` = (NB, C, S). Returns (spikes [T, M] and v_last [M] in x's dtype, v_seq [T, M] fp32
    or None). ``launch(kernel)`` wraps the kernel (torch.library.wrap_triton under torch.compile)."""
    T, M = x.shape
    NB, C, S = dims
    spikes = torch.empty_like(x)
    v_last = torch.empty((M,), dtype=x.dtype, device=x.device)
    v_seq = torch.empty((T, M), dtype=torch.float32, device=x.device) if store_v else None
    programs, nsb = _grid(NB, C, S, block)
    if programs:
        kernel = gated_lif_fwd_kernel if launch is None else launch(gated_lif_fwd_kernel)
        kernel[(programs,)](
            x, v0 if v0 is not None else x, spikes, v_last, coef, inc, v_seq if store_v else coef,
            T, M, C, S, nsb, float(v0_value), HAS_V0=v0 is not None, STORE_V=store_v, BLOCK=block,
        )
    return spikes, v_last, v_seq


def gated_lif_backward(gs, gv_last, x, v_seq, v0, v0_value: float, coef, inc, dims, sg: int, sg_a: float,
                       sg_b: float, need_g0: bool, block: int = BLOCK, launch=None):
    """Reverse-time backward; every tensor contiguous ([T, M] / [M]), gs / gv_last may be None (zero). Returns
    (grad_x [T, M], grad_v0 [M] or None, grad_coef [5, C], grad_inc [T, C]), all fp32; the per-channel sums are
    the per-program rows added by torch."""
    T, M = x.shape
    NB, C, S = dims
    gx = torch.empty((T, M), dtype=torch.float32, device=x.device)
    gv0 = torch.empty((M,), dtype=torch.float32, device=x.device) if need_g0 else None
    programs, nsb = _grid(NB, C, S, block)
    part = torch.zeros((programs, NCOEF + T), dtype=torch.float32, device=x.device)
    if programs:
        kernel = gated_lif_bwd_kernel if launch is None else launch(gated_lif_bwd_kernel)
        kernel[(programs,)](
            gs if gs is not None else x, gv_last if gv_last is not None else x, x, v0 if v0 is not None else x,
            v_seq, coef, inc, gx, gv0 if need_g0 else gx, part,
            T, M, C, S, nsb, float(v0_value), float(sg_a), float(sg_b), HAS_V0=v0 is not None,
            HAS_GS=gs is not None, HAS_GVLAST=gv_last is not None, NEED_G0=need_g0, SG=sg, BLOCK=block,
        )
    sums = part.view(NB, C, nsb, NCOEF + T).sum(dim=(0, 2))  # [C, 5 + T], a fixed-order reduction
    contiguous = torch.contiguous_format  # clones: the two outputs must not share sums' storage (custom-op rule)
    return (gx, gv0, sums[:, :NCOEF].t().clone(memory_format=contiguous),
            sums[:, NCOEF:].t().clone(memory_format=contiguous))


# every specialisation the launchers above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI)
_FLAGS = (False, True)
_INTS = ("T", "M", "C", "S", "NSB")
COMPILE_SPECS = [
    KernelSpec(gated_lif_fwd_kernel, data=("p_x", "p_v0", "p_s", "p_vlast"), ints=_INTS, floats=("v0_value",),
               constexprs=dict(HAS_V0=_FLAGS, STORE_V=_FLAGS, BLOCK=(BLOCK,))),
    KernelSpec(gated_lif_bwd_kernel, data=("p_gs", "p_gvlast", "p_x", "p_v0"), ints=_INTS,
               floats=("v0_value", "sg_a", "sg_b"),
               constexprs=dict(HAS_V0=_FLAGS, HAS_GS=_FLAGS, HAS_GVLAST=_FLAGS, NEED_G0=_FLAGS,
                               SG=tuple(range(14)), BLOCK=(BLOCK,))),
]
