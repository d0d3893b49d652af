"""Fused multi-step kernels (Triton) of the neurons with two state variables, V and U, and their launchers.

MODE: 0 Izhikevich (U = w; p0..p6 = tau, a0, v_rest, v_c, tau_w, a, b), 1 CUBA-LIF (U = c; p0, p1 = c_decay,
v_decay), 2 CLIF (U = m; p0 = tau; its own soft reset). Equations: fastspike/ops/reference/neuron2.py.

One program owns BLOCK neurons and runs the whole time loop with V and U in registers. The forward reads X and
writes S (and, for the backward, H in fp32 -- the backward recomputes S = H >= v_th from it exactly, whatever
X's dtype -- and for CLIF M after every step in fp32; the sequences of V and U only when asked). The backward runs
the reverse-time loop: Izhikevich recomputes V[t-1] from H[t-1] (its reset) or V0, CLIF reads M[t-1] or M0.
HAS_V0 / HAS_U0: the initial state is a tensor; otherwise every neuron starts at the scalar ``v0_value`` /
``u0_value``.

Compiled-code rules (checked for sm_80/sm_90 by tests/test_triton_compile.py): T is never specialised, offsets
are int64 from the start, and float arguments are cast to fp32 on entry (torch.compile passes fp64).
"""
import torch
import triton
import triton.language as tl

from ._spec import KernelSpec
from .neuron import _initial_v, _reset  # the same start and reset as the single-state kernels
from .surrogate import surrogate_grad

BLOCK = 512


@triton.jit(do_not_specialize=["T"])
def neuron2_fwd_kernel(
    p_x, p_v0, p_u0, p_s, p_vseq, p_useq, p_vlast, p_ulast, p_h, p_m,
    T, N, v_th, v_reset, v0_value, u0_value, p0, p1, p2, p3, p4, p5, p6,
    MODE: tl.constexpr, SOFT_RESET: tl.constexpr, HAS_V0: tl.constexpr, HAS_U0: tl.constexpr,
    STORE_H: tl.constexpr, STORE_SEQ: tl.constexpr, BLOCK: tl.constexpr,
):
    v_th = tl.cast(v_th, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    v0_value = tl.cast(v0_value, tl.float32)
    u0_value = tl.cast(u0_value, tl.float32)
    p0 = tl.cast(p0, tl.float32)
    p1 = tl.cast(p1, tl.float32)
    p2 = tl.cast(p2, tl.float32)
    p3 = tl.cast(p3, tl.float32)
    p4 = tl.cast(p4, tl.float32)
    p5 = tl.cast(p5, tl.float32)
    p6 = tl.cast(p6, tl.float32)
    pid = tl.program_id(0).to(tl.int64)
    o_n = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_n = o_n < N
    b_v = _initial_v(p_v0, v0_value, o_n, m_n, HAS_V0, BLOCK)
    b_u = _initial_v(p_u0, u0_value, o_n, m_n, HAS_U0, BLOCK)
    o_t = o_n  # int64 running offset
    for t in range(0, T):
        b_x = tl.load(p_x + o_t, mask=m_n, other=0.0).to(tl.float32)
        if MODE == 0:
            b_h = b_v + (b_x + p1 * (b_v - p2) * (b_v - p3) - b_u) / p0
            b_s = (b_h >= v_th).to(tl.float32)
            b_u = b_u + (p5 * (b_h - p2) - b_u) / p4 + p6 * b_s
            b_v = _reset(b_h, b_s, v_th, v_reset, SOFT_RESET)
        elif MODE == 1:
            b_u = b_u * p0 + b_x
            b_h = b_v * p1 + b_u
            b_s = (b_h >= v_th).to(tl.float32)
            b_v = _reset(b_h, b_s, v_th, v_reset, SOFT_RESET)
        else:
            b_h = b_v - b_v / p0 + b_x
            b_s = (b_h >= v_th).to(tl.float32)
            b_u = b_u * tl.sigmoid(b_h / p0) + b_s
            b_v = b_h - b_s * (v_th + tl.sigmoid(b_u))
        tl.store(p_s + o_t, b_s.to(p_s.dtype.element_ty), mask=m_n)
        if STORE_H:
            tl.store(p_h + o_t, b_h, mask=m_n)
            if MODE == 2:
                tl.store(p_m + o_t, b_u, mask=m_n)
        if STORE_SEQ:
            tl.store(p_vseq + o_t, b_v.to(p_vseq.dtype.element_ty), mask=m_n)
            tl.store(p_useq + o_t, b_u.to(p_useq.dtype.element_ty), mask=m_n)
        o_t += N
    tl.store(p_vlast + o_n, b_v.to(p_vlast.dtype.element_ty), mask=m_n)
    tl.store(p_ulast + o_n, b_u.to(p_ulast.dtype.element_ty), mask=m_n)


@triton.jit(do_not_specialize=["T"])
def neuron2_bwd_kernel(
    p_gs, p_gvseq, p_guseq, p_gvlast, p_gulast, p_h, p_m, p_v0, p_u0, p_gx, p_gv0, p_gu0,
    T, N, v_th, v_reset, v0_value, u0_value, sg_a, sg_b, p0, p1, p2, p3, p4, p5, p6,
    MODE: tl.constexpr, SOFT_RESET: tl.constexpr, DETACH_RESET: tl.constexpr, HAS_V0: tl.constexpr,
    HAS_U0: tl.constexpr, NEED_G0: tl.constexpr, HAS_GS: tl.constexpr, HAS_GVSEQ: tl.constexpr,
    HAS_GUSEQ: tl.constexpr, HAS_GVLAST: tl.constexpr, HAS_GULAST: tl.constexpr, SG: tl.constexpr,
    BLOCK: tl.constexpr,
):
    v_th = tl.cast(v_th, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    v0_value = tl.cast(v0_value, tl.float32)
    u0_value = tl.cast(u0_value, tl.float32)
    sg_a = tl.cast(sg_a, tl.float32)
    sg_b = tl.cast(sg_b, tl.float32)
    p0 = tl.cast(p0, tl.float32)
    p1 = tl.cast(p1, tl.float32)
    p2 = tl.cast(p2, tl.float32)
    p3 = tl.cast(p3, tl.float32)
    p4 = tl.cast(p4, tl.float32)
    p5 = tl.cast(p5, tl.float32)
    p6 = tl.cast(p6, tl.float32)
    pid = tl.program_id(0).to(tl.int64)
    o_n = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_n = o_n < N
    b_cv = tl.zeros([BLOCK], dtype=tl.float32)
    b_cu = tl.zeros([BLOCK], dtype=tl.float32)
    if HAS_GVLAST:
        b_cv += tl.load(p_gvlast + o_n, mask=m_n, other=0.0).to(tl.float32)
    if HAS_GULAST:
        b_cu += tl.load(p_gulast + o_n, mask=m_n, other=0.0).to(tl.float32)
    o_t = o_n + tl.cast(T - 1, tl.int64) * N
    for i in range(0, T):
        t = T - 1 - i
        b_h = tl.load(p_h + o_t, mask=m_n, other=0.0)
        b_s = (b_h >= v_th).to(tl.float32)
        b_sg = surrogate_grad(b_h - v_th, sg_a, sg_b, SG)
        b_gv = b_cv
        b_gu = b_cu
        if HAS_GVSEQ:
            b_gv += tl.load(p_gvseq + o_t, mask=m_n, other=0.0).to(tl.float32)
        if HAS_GUSEQ:
            b_gu += tl.load(p_guseq + o_t, mask=m_n, other=0.0).to(tl.float32)
        if HAS_GS:
            b_gs = tl.load(p_gs + o_t, mask=m_n, other=0.0).to(tl.float32)
        else:
            b_gs = tl.zeros([BLOCK], dtype=tl.float32)
        if MODE == 2:
            if t > 0:
                b_mp = tl.load(p_m + o_t - N, mask=m_n, other=0.0)
            else:
                b_mp = _initial_v(p_u0, u0_value, o_n, m_n, HAS_U0, BLOCK)
            b_sh = tl.sigmoid(b_h / p0)
            b_sm = tl.sigmoid(b_mp * b_sh + b_s)
            b_gm = b_gu - b_gv * b_s * b_sm * (1.0 - b_sm)
            b_gsp = b_gs - b_gv * (v_th + b_sm) + b_gm
            b_gh = b_gv + b_gsp * b_sg + b_gm * b_mp * b_sh * (1.0 - b_sh) / p0
            b_gx = b_gh
            b_cv = b_gh * (1.0 - 1.0 / p0)
            b_cu = b_gm * b_sh
        else:
            if SOFT_RESET:
                if DETACH_RESET:
                    b_dvdh = 1.0 + 0.0 * b_h
                else:
                    b_dvdh = 1.0 - v_th * b_sg
            else:
                if DETACH_RESET:
                    b_dvdh = 1.0 - b_s
                else:
                    b_dvdh = (1.0 - b_s) + (v_reset - b_h) * b_sg
            if MODE == 0:
                if t > 0:
                    b_hp = tl.load(p_h + o_t - N, mask=m_n, other=0.0)
                    b_vp = _reset(b_hp, (b_hp >= v_th).to(tl.float32), v_th, v_reset, SOFT_RESET)
                else:
                    b_vp = _initial_v(p_v0, v0_value, o_n, m_n, HAS_V0, BLOCK)
                b_gh = b_gs * b_sg + b_gv * b_dvdh + b_gu * (p5 / p4 + p6 * b_sg)
                b_gx = b_gh / p0
                b_cv = b_gh * (1.0 + p1 * (2.0 * b_vp - p2 - p3) / p0)
                b_cu = b_gu * (1.0 - 1.0 / p4) - b_gh / p0
            else:
                b_gh = b_gs * b_sg + b_gv * b_dvdh
                b_gc = b_gu + b_gh
                b_gx = b_gc
                b_cv = b_gh * p1
                b_cu = b_gc * p0
        tl.store(p_gx + o_t, b_gx, mask=m_n)
        o_t -= N
    if NEED_G0:
        tl.store(p_gv0 + o_n, b_cv, mask=m_n)
        tl.store(p_gu0 + o_n, b_cu, mask=m_n)


def _none_if_empty(t):
    return None if t is None or t.numel() == 0 else t


def neuron2_forward(x, v0, u0, v0_value: float, u0_value: float, mode: int, v_th: float, v_reset: float,
                    soft_reset: bool, params, store_seq: bool, store_h: bool, block: int = BLOCK, launch=None):
    """x [T, N] contiguous (fp32/fp16/bf16), v0 / u0 [N] or None (constant starts), ``params`` the 7 numbers of
    the model. Returns (spikes, v_last, u_last, v_seq or None, u_seq or None, h or None, m or None): h and m
    (CLIF only) fp32 [T, N] for the backward. ``launch(kernel)`` wraps the kernel (torch.library.wrap_triton
    under torch.compile)."""
    T, N = x.shape
    spikes = torch.empty_like(x)
    v_seq = torch.empty_like(x) if store_seq else None
    u_seq = torch.empty_like(x) if store_seq else None
    v_last = torch.empty((N,), dtype=x.dtype, device=x.device)
    u_last = torch.empty((N,), dtype=x.dtype, device=x.device)
    h = torch.empty((T, N), dtype=torch.float32, device=x.device) if store_h else None
    m = torch.empty((T, N), dtype=torch.float32, device=x.device) if store_h and mode == 2 else None
    if N:
        kernel = neuron2_fwd_kernel if launch is None else launch(neuron2_fwd_kernel)
        kernel[(triton.cdiv(N, block),)](
            x, v0 if v0 is not None else x, u0 if u0 is not None else x, spikes, v_seq if store_seq else x,
            u_seq if store_seq else x, v_last, u_last, h if h is not None else v_last, m if m is not None else v_last,
            T, N, float(v_th), float(v_reset), float(v0_value), float(u0_value), *map(float, params),
            MODE=mode, SOFT_RESET=soft_reset or mode == 2, HAS_V0=v0 is not None, HAS_U0=u0 is not None,
            STORE_H=store_h, STORE_SEQ=store_seq, BLOCK=block,
        )
    return spikes, v_last, u_last, v_seq, u_seq, h, m


def neuron2_backward(gs, gv_seq, gu_seq, gv_last, gu_last, h, m, v0, u0, v0_value: float, u0_value: float, mode: int,
                     v_th: float, v_reset: float, soft_reset: bool, detach_reset: bool, sg: int, sg_a: float,
                     sg_b: float, params, need_g0: bool, block: int = BLOCK, launch=None):
    """Reverse-time backward; every tensor [T, N] / [N] contiguous; the gradients may be None (zero). Returns
    (grad_x [T, N], grad_v0 [N] or None, grad_u0 [N] or None), all fp32."""
    T, N = h.shape
    m = _none_if_empty(m)
    assert mode != 2 or m is not None, "CLIF's backward reads M from the forward"
    gx = torch.empty((T, N), dtype=torch.float32, device=h.device)
    gv0 = torch.empty((N,), dtype=torch.float32, device=h.device) if need_g0 else None
    gu0 = torch.empty((N,), dtype=torch.float32, device=h.device) if need_g0 else None
    if N:
        kernel = neuron2_bwd_kernel if launch is None else launch(neuron2_bwd_kernel)
        kernel[(triton.cdiv(N, block),)](
            gs if gs is not None else h, gv_seq if gv_seq is not None else h, gu_seq if gu_seq is not None else h,
            gv_last if gv_last is not None else h, gu_last if gu_last is not None else h, h,
            m if m is not None else h, v0 if v0 is not None else h, u0 if u0 is not None else h, gx,
            gv0 if need_g0 else h, gu0 if need_g0 else h,
            T, N, float(v_th), float(v_reset), float(v0_value), float(u0_value), float(sg_a), float(sg_b),
            *map(float, params), MODE=mode, SOFT_RESET=soft_reset or mode == 2,
            DETACH_RESET=detach_reset and mode != 2, HAS_V0=v0 is not None, HAS_U0=u0 is not None, NEED_G0=need_g0,
            HAS_GS=gs is not None, HAS_GVSEQ=gv_seq is not None, HAS_GUSEQ=gu_seq is not None,
            HAS_GVLAST=gv_last is not None, HAS_GULAST=gu_last is not None, SG=sg, BLOCK=block,
        )
    return gx, gv0, gu0


# every specialisation the launchers above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI)
_FLAGS = (False, True)
_FLOATS = ("v_th", "v_reset", "v0_value", "u0_value", "p0", "p1", "p2", "p3", "p4", "p5", "p6")
_FP32 = "*fp32"
COMPILE_SPECS = [
    KernelSpec(neuron2_fwd_kernel, data=("p_x", "p_v0", "p_u0", "p_s", "p_vseq", "p_useq", "p_vlast", "p_ulast"),
               pointers=dict(p_h=_FP32, p_m=_FP32), ints=("T", "N"), floats=_FLOATS,
               constexprs=dict(MODE=(0, 1, 2), SOFT_RESET=_FLAGS, HAS_V0=_FLAGS, HAS_U0=_FLAGS, STORE_H=_FLAGS,
                               STORE_SEQ=_FLAGS, BLOCK=(BLOCK,))),
    KernelSpec(neuron2_bwd_kernel, data=("p_gs", "p_gvseq", "p_guseq", "p_gvlast", "p_gulast", "p_v0", "p_u0"),
               pointers=dict(p_h=_FP32, p_m=_FP32, p_gx=_FP32, p_gv0=_FP32, p_gu0=_FP32), ints=("T", "N"),
               floats=_FLOATS + ("sg_a", "sg_b"),
               constexprs=dict(MODE=(0, 1, 2), SOFT_RESET=_FLAGS, DETACH_RESET=_FLAGS, HAS_V0=_FLAGS,
                               HAS_U0=_FLAGS, NEED_G0=_FLAGS, HAS_GS=_FLAGS, HAS_GVSEQ=_FLAGS, HAS_GUSEQ=_FLAGS,
                               HAS_GVLAST=_FLAGS, HAS_GULAST=_FLAGS, SG=tuple(range(14)), BLOCK=(BLOCK,))),
]
