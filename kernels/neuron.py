"""Fused multi-step IF / LIF / ParametricLIF / QIF / EIF / KLIF / ILIF / LIAF kernels (Triton) and their launchers.

One program owns BLOCK neurons and runs the whole time loop, keeping V in registers. Forward reads X
and writes S (and H for the backward, in X's dtype, V_seq only when asked); backward runs the reverse-time loop
with the surrogate gradient computed inline and writes dL/dX, dL/dV0 and, for ParametricLIF, one
partial sum of dL/dk per program (summed afterwards: deterministic, no float atomics).

MODE: 0 IF, 1 LIF (divides by tau, as the reference), 2 ParametricLIF (multiplies by k = sigmoid(w),
read from a 1-element tensor so no host sync is needed), 3 QIF (p1, p2, p3 = a0, v_rest, v_c), 4 EIF (p1, p2, p3 =
delta_T, theta_rh, v_rest), 5 leaky (H = p1 V + X; ILIF). QIF's and EIF's dH/dV depends on V[t-1]: the backward
recomputes it from H[t-1] (or V0). FIRE (csrc/neuron_fire.h): 0 spike, 1 KLIF (F = relu(k H) fires and is reset; k
read from p_k; H stores F), 2 KLIF with scale_reset, 3 count (ILIF; H stored in fp32 so the gradient window is
exact), 4 analog output act(H - q1) (LIAF; ACT 0 identity, 1 relu, 2 sigmoid), 5 offset (ActivationAwareIF:
S = H + q1 >= v_th, reset on H; H stores H + q1). HAS_V0: V0 is a tensor; otherwise
every neuron starts at the scalar ``v0_value`` (no [N] buffer is made for it). PER_CHANNEL (the offset fire): v_th
and q1 come per neuron from p_pc = [thresholds C | offsets C], neuron n in channel (n // inner) % C, loaded once
per program before the time loop (H is then stored in fp32: no per-channel nudge).

Compiled-code rules (checked for sm_80/sm_90 by tests/test_triton_compile.py): T is never specialised (Triton
turns an int argument equal to 1 into a constant, and single-step mode is T = 1), offsets are int64 from the
start, and float arguments are cast to fp32 on entry (torch.compile passes Python floats as fp64).
"""
import functools
import math

import torch
import triton
import triton.language as tl

from ._spec import KernelSpec
from .surrogate import surrogate_grad

BLOCK = 1024


@triton.jit
def _charge(b_v, b_x, decay, v_reset_decay, p1, p2, p3, MODE: tl.constexpr, DECAY_INPUT: tl.constexpr):
    if MODE == 0:
        b_h = b_v + b_x
    elif MODE == 3:
        b_h = b_v + (b_x + p1 * (b_v - p2) * (b_v - p3)) / decay
    elif MODE == 4:
        b_h = b_v + (b_x + p3 - b_v + p1 * tl.exp((b_v - p2) / p1)) / decay
    elif MODE == 5:
        b_h = p1 * b_v + b_x
    elif MODE == 1:
        if DECAY_INPUT:
            b_h = b_v + (b_x - (b_v - v_reset_decay)) / decay
        else:
            b_h = b_v - (b_v - v_reset_decay) / decay + b_x
    else:
        if DECAY_INPUT:
            b_h = b_v + (b_x - (b_v - v_reset_decay)) * decay
        else:
            b_h = b_v - (b_v - v_reset_decay) * decay + b_x
    return b_h


@triton.jit
def _reset(b_h, b_s, v_th, v_reset, SOFT_RESET: tl.constexpr):
    if SOFT_RESET:
        b_v = b_h - v_th * b_s
    else:
        b_v = b_s * v_reset + (1.0 - b_s) * b_h
    return b_v


@triton.jit
def _act(z, ACT: tl.constexpr):
    if ACT == 0:
        y = z
    elif ACT == 1:
        y = tl.maximum(z, 0.0)
    else:
        y = 1.0 / (1.0 + tl.exp(-z))
    return y


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    if ACT == 0:
        g = 1.0 + 0.0 * z
    elif ACT == 1:
        g = (z > 0.0).to(tl.float32)
    else:
        y = 1.0 / (1.0 + tl.exp(-z))
        g = y * (1.0 - y)
    return g


@triton.jit
def _fire(b_h, kk, v_th, v_reset, q1, SOFT_RESET: tl.constexpr, FIRE: tl.constexpr, ACT: tl.constexpr):
    """(value the backward reads, output, V after reset) of one step; csrc/neuron_fire.h has the variants."""
    if FIRE == 3:  # count: round half to even of clamp(H / thr, 0, q1), exact (c - floor(c) does not round)
        c = tl.minimum(tl.maximum(b_h / v_th, 0.0), q1)
        fl = tl.floor(c)
        fr = c - fl
        odd = fl - 2.0 * tl.floor(0.5 * fl)
        b_out = fl + ((fr > 0.5) | ((fr == 0.5) & (odd == 1.0))).to(tl.float32)
        b_q = b_h
        b_v = b_h - b_out * v_th
    elif FIRE == 1 or FIRE == 2:
        b_q = tl.maximum(kk * b_h, 0.0)
        b_s = (b_q >= v_th).to(tl.float32)
        if FIRE == 2:
            b_v = _reset(b_q / kk, b_s, v_th / kk, v_reset, SOFT_RESET)
        else:
            b_v = _reset(b_q, b_s, v_th, v_reset, SOFT_RESET)
        b_out = b_s
    else:
        if FIRE == 5:
            b_q = b_h + q1  # the compared value; V resets from H
        else:
            b_q = b_h
        b_s = (b_q >= v_th).to(tl.float32)
        b_v = _reset(b_h, b_s, v_th, v_reset, SOFT_RESET)
        if FIRE == 4:
            b_out = _act(b_h - q1, ACT)
        else:
            b_out = b_s
    return b_q, b_out, b_v


@triton.jit
def _initial_v(p_v0, v0_value, o_n, m_n, HAS_V0: tl.constexpr, BLOCK: tl.constexpr):
    if HAS_V0:
        b_v = tl.load(p_v0 + o_n, mask=m_n, other=0.0).to(tl.float32)
    else:
        b_v = tl.zeros([BLOCK], dtype=tl.float32) + v0_value
    return b_v


@triton.jit
def _channels(p_pc, C, inner, v_th, q1, o_n, m_n, PER_CHANNEL: tl.constexpr):
    """(threshold, offset) of each neuron: the scalars, or with PER_CHANNEL its channel's from p_pc."""
    if PER_CHANNEL:
        o_c = (o_n // inner) % C
        thr = tl.load(p_pc + o_c, mask=m_n, other=1.0)
        off = tl.load(p_pc + C + o_c, mask=m_n, other=0.0)
    else:
        thr = v_th
        off = q1
    return thr, off


@triton.jit
def _saved_h(b_h, b_s, th_up, th_down, NUDGE: tl.constexpr):
    """H as stored for the backward, which recomputes S = (H >= v_th) from it. In a 16-bit dtype rounding could
    move H across the threshold; there the stored value becomes th_up (the smallest stored value >= v_th) for a
    spike, th_down (the largest < v_th) for none, so the backward sees the forward's spikes exactly. NaN stays."""
    if NUDGE:
        b_h = tl.where((b_s > 0.0) & (b_h < th_up), th_up, tl.where((b_s == 0.0) & (b_h > th_down), th_down, b_h))
    return b_h


@triton.jit(do_not_specialize=["T"])
def neuron_fwd_kernel(
    p_x, p_v0, p_s, p_h, p_vseq, p_vlast, p_k, p_pc,
    T, N, C, inner, tau, v_th, v_reset, v0_value, th_up, th_down, p1, p2, p3, q1,
    MODE: tl.constexpr, DECAY_INPUT: tl.constexpr, SOFT_RESET: tl.constexpr, HAS_V0: tl.constexpr,
    STORE_H: tl.constexpr, STORE_V_SEQ: tl.constexpr, NUDGE: tl.constexpr, FIRE: tl.constexpr, ACT: tl.constexpr,
    PER_CHANNEL: tl.constexpr, BLOCK: tl.constexpr,
):
    th_up = tl.cast(th_up, tl.float32)
    th_down = tl.cast(th_down, tl.float32)
    tau = tl.cast(tau, tl.float32)
    v_th = tl.cast(v_th, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    v0_value = tl.cast(v0_value, tl.float32)
    p1 = tl.cast(p1, tl.float32)
    p2 = tl.cast(p2, tl.float32)
    p3 = tl.cast(p3, tl.float32)
    q1 = tl.cast(q1, tl.float32)
    pid = tl.program_id(0).to(tl.int64)
    o_n = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_n = o_n < N
    if MODE == 2:
        decay = tl.load(p_k).to(tl.float32)
    else:
        decay = tau
    if FIRE == 1 or FIRE == 2:
        kk = tl.load(p_k).to(tl.float32)
    else:
        kk = 1.0
    v_reset_decay = 0.0 if SOFT_RESET else v_reset
    thr, off = _channels(p_pc, C, inner, v_th, q1, o_n, m_n, PER_CHANNEL)
    b_v = _initial_v(p_v0, v0_value, o_n, m_n, HAS_V0, BLOCK)
    o_t = o_n  # int64 running offset: t * N never evaluated in 32 bits
    for t in range(0, T):
        b_x = tl.load(p_x + o_t, mask=m_n, other=0.0).to(tl.float32)
        b_h = _charge(b_v, b_x, decay, v_reset_decay, p1, p2, p3, MODE, DECAY_INPUT)
        b_q, b_out, b_v = _fire(b_h, kk, thr, v_reset, off, SOFT_RESET, FIRE, ACT)
        tl.store(p_s + o_t, b_out.to(p_s.dtype.element_ty), mask=m_n)
        if STORE_H:
            b_q = _saved_h(b_q, (b_q >= thr).to(tl.float32), th_up, th_down, NUDGE)
            tl.store(p_h + o_t, b_q.to(p_h.dtype.element_ty), mask=m_n)
        if STORE_V_SEQ:
            tl.store(p_vseq + o_t, b_v.to(p_vseq.dtype.element_ty), mask=m_n)
        o_t += N
    tl.store(p_vlast + o_n, b_v.to(p_vlast.dtype.element_ty), mask=m_n)


@triton.jit
def _grad_h(b_q, b_go, b_gv, kk, v_th, vr, sg_a, sg_b, q1, q2, q3, SOFT_RESET: tl.constexpr,
            DETACH_RESET: tl.constexpr, FIRE: tl.constexpr, ACT: tl.constexpr, SG: tl.constexpr):
    """(dL/dH, KLIF's per-element dL/dk) from the stored value b_q (H, or F for KLIF), dL/d(output) b_go and
    dL/dV b_gv."""
    det = 0.0 if DETACH_RESET else 1.0
    b_gk = 0.0 * b_q
    if FIRE == 3:
        b_sc = b_q / v_th
        b_win = ((b_sc >= q2) & (b_sc <= q3)).to(tl.float32)
        b_gh = b_go * b_win / v_th + b_gv * (1.0 - det * b_win)
    else:
        b_s = (b_q >= v_th).to(tl.float32)
        b_sg = surrogate_grad(b_q - v_th, sg_a, sg_b, SG)
        if FIRE == 1 or FIRE == 2:  # b_q = F = relu(k H)
            if FIRE == 2:
                b_r = b_q / kk
                thr = v_th / kk
                drdf = 1.0 / kk
            else:
                b_r = b_q
                thr = v_th
                drdf = 1.0
            if SOFT_RESET:
                b_dvdr = 1.0 + 0.0 * b_q
                b_dvds = -thr + 0.0 * b_q
            else:
                b_dvdr = 1.0 - b_s
                b_dvds = vr - b_r
            b_gf = b_go * b_sg + b_gv * (det * b_dvds * b_sg + b_dvdr * drdf)
            pos = b_q > 0.0
            b_gk = tl.where(pos, b_gf * (b_q / kk), 0.0)  # dF/dk = H = F / k where F > 0
            if FIRE == 2:  # V's own 1/k
                if SOFT_RESET:
                    b_gk -= b_gv * (b_r - b_s * thr) / kk
                else:
                    b_gk -= b_gv * b_dvdr * b_r / kk
            b_gh = tl.where(pos, b_gf * kk, 0.0)
        else:
            if SOFT_RESET:
                b_dvdh = 1.0 - det * v_th * b_sg
            elif FIRE == 5:  # b_q = H + v_offset
                b_dvdh = (1.0 - b_s) + det * (vr - (b_q - q1)) * b_sg
            else:
                b_dvdh = (1.0 - b_s) + det * (vr - b_q) * b_sg
            if FIRE == 4:
                b_gh = b_go * _act_grad(b_q - q1, ACT) + b_gv * b_dvdh
            else:
                b_gh = b_go * b_sg + b_gv * b_dvdh
    return b_gh, b_gk


@triton.jit(do_not_specialize=["T"])
def neuron_bwd_kernel(
    p_gs, p_gvseq, p_gvlast, p_h, p_x, p_v0, p_gx, p_gv0, p_gk, p_k, p_pc,
    T, N, C, inner, tau, v_th, v_reset, v0_value, sg_a, sg_b, p1, p2, p3, q1, q2, q3,
    MODE: tl.constexpr, DECAY_INPUT: tl.constexpr, SOFT_RESET: tl.constexpr, DETACH_RESET: tl.constexpr,
    HAS_V0: tl.constexpr, NEED_GV0: tl.constexpr, HAS_GS: tl.constexpr, HAS_GVSEQ: tl.constexpr,
    HAS_GVLAST: tl.constexpr, SG: tl.constexpr, FIRE: tl.constexpr, ACT: tl.constexpr, PER_CHANNEL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    tau = tl.cast(tau, tl.float32)
    v_th = tl.cast(v_th, tl.float32)
    v_reset = tl.cast(v_reset, tl.float32)
    v0_value = tl.cast(v0_value, tl.float32)
    sg_a = tl.cast(sg_a, tl.float32)
    sg_b = tl.cast(sg_b, tl.float32)
    p1 = tl.cast(p1, tl.float32)
    p2 = tl.cast(p2, tl.float32)
    p3 = tl.cast(p3, tl.float32)
    q1 = tl.cast(q1, tl.float32)
    q2 = tl.cast(q2, tl.float32)
    q3 = tl.cast(q3, tl.float32)
    pid = tl.program_id(0).to(tl.int64)
    o_n = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_n = o_n < N
    vr = 0.0 if SOFT_RESET else v_reset
    if MODE == 2:
        k = tl.load(p_k).to(tl.float32)
        dh_dv = 1.0 - k
    elif MODE == 1:
        k = 1.0 / tau
        dh_dv = 1.0 - 1.0 / tau
    elif MODE == 3 or MODE == 4:  # dH/dV from V[t-1], below
        k = 1.0 / tau
        dh_dv = 1.0
    elif MODE == 5:
        k = 1.0
        dh_dv = p1
    else:
        k = 1.0
        dh_dv = 1.0
    if FIRE == 1 or FIRE == 2:
        kk = tl.load(p_k).to(tl.float32)
    else:
        kk = 1.0
    if HAS_GVLAST:
        b_carry = tl.load(p_gvlast + o_n, mask=m_n, other=0.0).to(tl.float32)
    else:
        b_carry = tl.zeros([BLOCK], dtype=tl.float32)
    b_gk = tl.zeros([BLOCK], dtype=tl.float32)
    thr, off = _channels(p_pc, C, inner, v_th, q1, o_n, m_n, PER_CHANNEL)
    o_t = o_n + tl.cast(T - 1, tl.int64) * N  # int64 offsets (T may be a compile-time 1 under other launchers)
    for i in range(0, T):
        t = T - 1 - i
        b_h = tl.load(p_h + o_t, mask=m_n, other=0.0).to(tl.float32)
        b_gv = b_carry
        if HAS_GVSEQ:
            b_gv += tl.load(p_gvseq + o_t, mask=m_n, other=0.0).to(tl.float32)
        if HAS_GS:
            b_go = tl.load(p_gs + o_t, mask=m_n, other=0.0).to(tl.float32)
        else:
            b_go = tl.zeros([BLOCK], dtype=tl.float32)
        b_gh, b_gkf = _grad_h(b_h, b_go, b_gv, kk, thr, vr, sg_a, sg_b, off, q2, q3, SOFT_RESET, DETACH_RESET, FIRE,
                              ACT, SG)
        if FIRE == 1 or FIRE == 2:
            b_gk += tl.where(m_n, b_gkf, 0.0)
        if MODE == 3 or MODE == 4:
            b_gx = b_gh / tau
        elif MODE == 5:
            b_gx = b_gh
        elif DECAY_INPUT:
            if MODE == 1:
                b_gx = b_gh / tau
            else:
                b_gx = b_gh * k
        else:
            b_gx = b_gh
        tl.store(p_gx + o_t, b_gx.to(p_gx.dtype.element_ty), mask=m_n)
        if MODE >= 2 and MODE <= 4:  # V[t-1]: reset(H[t-1]), or V0 at t = 0
            if t > 0:
                b_hp = tl.load(p_h + o_t - N, mask=m_n, other=0.0).to(tl.float32)
                b_vp = _reset(b_hp, (b_hp >= v_th).to(tl.float32), v_th, v_reset, SOFT_RESET)
            else:
                b_vp = _initial_v(p_v0, v0_value, o_n, m_n, HAS_V0, BLOCK)
        if MODE == 3:
            b_carry = b_gh * (1.0 + p1 * (2.0 * b_vp - p2 - p3) / tau)
        elif MODE == 4:
            b_carry = b_gh * (1.0 + (tl.exp((b_vp - p2) / p1) - 1.0) / tau)
        else:
            b_carry = b_gh * dh_dv
        if MODE == 2:
            if DECAY_INPUT:
                b_factor = tl.load(p_x + o_t, mask=m_n, other=0.0).to(tl.float32) - (b_vp - vr)
            else:
                b_factor = vr - b_vp
            b_gk += tl.where(m_n, b_gh * b_factor, 0.0)
        o_t -= N
    if NEED_GV0:
        tl.store(p_gv0 + o_n, b_carry.to(p_gv0.dtype.element_ty), mask=m_n)
    if MODE == 2 or FIRE == 1 or FIRE == 2:
        tl.store(p_gk + pid, tl.sum(b_gk, axis=0))


def _grid(N, block):
    return (triton.cdiv(N, block),)


@functools.lru_cache(maxsize=64)
def threshold_neighbours(v_th: float, dtype: torch.dtype):
    """(smallest value >= v_th, largest value < v_th) representable in ``dtype`` (16-bit), as floats."""
    r = torch.tensor(v_th, dtype=torch.float32).to(dtype)
    bits = int(r.view(torch.int16))
    neg = bits < 0 or (bits == 0 and math.copysign(1.0, float(r)) < 0)

    def step(up: bool) -> float:
        if float(r) == 0.0:
            return float(torch.tensor(1 if up else -32767, dtype=torch.int16).view(dtype))
        b = bits + (1 if up != neg else -1)
        return float(torch.tensor(b, dtype=torch.int16).view(dtype))

    rf = float(r)
    return (rf if rf >= v_th else step(True)), (rf if rf < v_th else step(False))


def neuron_forward(x, v0, k, v0_value: float, mode: int, tau: float, decay_input: bool, v_th: float,
                   v_reset: float, soft_reset: bool, store_h: bool, store_v_seq: bool, block: int = BLOCK,
                   launch=None, params=(0.0, 0.0, 0.0), fire=(0, 0, 0.0, 0.0, 0.0), pc=None, inner: int = 1):
    """x [T, N] contiguous (fp32/fp16/bf16), v0 [N] or None (every neuron starts at ``v0_value``), k a
    1-element decay tensor (ParametricLIF) or None; ``params``: QIF's (a0, v_rest, v_c) or EIF's (delta_T,
    theta_rh, v_rest); ``pc``: None or [2, C] fp32 per-channel thresholds and offsets (the offset fire; neuron n
    in channel (n // inner) % C). Returns (spikes, h or None, v_seq or None, v_last); h is in
    x's dtype (16-bit H keeps the forward's spikes exactly: ``_saved_h``; fp32 for the count and per channel).
    ``launch(kernel)`` wraps the kernel (torch.library.wrap_triton under torch.compile)."""
    T, N = x.shape
    spikes = torch.empty_like(x)
    h_dtype = torch.float32 if (fire[0] == 3 or pc is not None) else x.dtype
    h = torch.empty((T, N), dtype=h_dtype, device=x.device) if store_h else None
    nudge = store_h and h_dtype is not torch.float32
    th_up, th_down = threshold_neighbours(float(v_th), x.dtype) if nudge else (float(v_th), float(v_th))
    v_seq = torch.empty_like(x) if store_v_seq else None
    v_last = torch.empty((N,), dtype=x.dtype, device=x.device)
    kernel = neuron_fwd_kernel if launch is None else launch(neuron_fwd_kernel)
    kernel[_grid(N, block)](
        x, v0 if v0 is not None else x, spikes, h if store_h else x, v_seq if store_v_seq else x, v_last,
        k if k is not None else x, pc if pc is not None else x,
        T, N, pc.shape[1] if pc is not None else 1, inner, float(tau), float(v_th), float(v_reset), float(v0_value),
        th_up, th_down, *map(float, params), float(fire[2]), MODE=mode, DECAY_INPUT=decay_input,
        SOFT_RESET=soft_reset, HAS_V0=v0 is not None, STORE_H=store_h, STORE_V_SEQ=store_v_seq, NUDGE=nudge,
        FIRE=int(fire[0]), ACT=int(fire[1]), PER_CHANNEL=pc is not None, BLOCK=block,
    )
    return spikes, h, v_seq, v_last


def neuron_backward(gs, gv_seq, gv_last, h, x, v0, k, v0_value: float, mode: int, tau: float, decay_input: bool,
                    v_th: float, v_reset: float, soft_reset: bool, detach_reset: bool, sg: int, sg_a: float,
                    sg_b: float, need_gv0: bool, block: int = BLOCK, launch=None, params=(0.0, 0.0, 0.0),
                    fire=(0, 0, 0.0, 0.0, 0.0), pc=None, inner: int = 1):
    """Reverse-time backward; every tensor [T, N] / [N] contiguous; gs, gv_seq, gv_last may be None (zero),
    x is needed for ParametricLIF only; ``pc`` / ``inner`` as the forward's. Returns (grad_x in h's dtype, grad_v0
    in v0's dtype or None, grad_k [1] fp32: ParametricLIF's decay or KLIF's scale, else None); the arithmetic is
    fp32, only the stores are in the tensors' dtype (no cast pass after)."""
    T, N = h.shape
    gx = torch.empty((T, N), dtype=h.dtype, device=h.device)
    gv0 = torch.empty((N,), dtype=v0.dtype if v0 is not None else h.dtype, device=h.device) if need_gv0 else None
    nprog = triton.cdiv(N, block)
    has_gk = mode == 2 or fire[0] in (1, 2)
    gk = torch.empty((nprog,), dtype=torch.float32, device=h.device) if has_gk else None
    kernel = neuron_bwd_kernel if launch is None else launch(neuron_bwd_kernel)
    kernel[(nprog,)](
        gs if gs is not None else h, gv_seq if gv_seq is not None else h, gv_last if gv_last is not None else h,
        h, x if x is not None else h, v0 if v0 is not None else h, gx, gv0 if need_gv0 else h,
        gk if gk is not None else h, k if k is not None else h, pc if pc is not None else h,
        T, N, pc.shape[1] if pc is not None else 1, inner, float(tau), float(v_th), float(v_reset), float(v0_value),
        float(sg_a), float(sg_b), *map(float, params), *map(float, fire[2:]), MODE=mode, DECAY_INPUT=decay_input,
        SOFT_RESET=soft_reset, DETACH_RESET=detach_reset, HAS_V0=v0 is not None, NEED_GV0=need_gv0,
        HAS_GS=gs is not None, HAS_GVSEQ=gv_seq is not None, HAS_GVLAST=gv_last is not None, SG=sg,
        FIRE=int(fire[0]), ACT=int(fire[1]), PER_CHANNEL=pc is not None, BLOCK=block,
    )
    return gx, gv0, (gk.sum(0, keepdim=True) if gk is not None else None)


# every specialisation the launchers above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI)
_FLAGS = (False, True)
MODES = (0, 1, 2, 3, 4, 5)  # IF, LIF, PLIF, QIF, EIF, leaky (ops/neuron/__init__.py's _MODES)
FIRES = (0, 1, 2, 3, 4, 5)  # spike, KLIF, KLIF scale_reset, count, analog, offset (csrc/neuron_fire.h)
ACTS = (0, 1, 2)  # the analog output's identity, relu, sigmoid
COMPILE_SPECS = [
    KernelSpec(neuron_fwd_kernel, data=("p_x", "p_v0", "p_s", "p_h", "p_vseq", "p_vlast"),
               ints=("T", "N", "C", "inner"),
               floats=("tau", "v_th", "v_reset", "v0_value", "th_up", "th_down", "p1", "p2", "p3", "q1"),
               constexprs=dict(MODE=MODES, DECAY_INPUT=_FLAGS, SOFT_RESET=_FLAGS, HAS_V0=_FLAGS, STORE_H=_FLAGS,
                               STORE_V_SEQ=_FLAGS, NUDGE=_FLAGS, FIRE=FIRES, ACT=ACTS, PER_CHANNEL=_FLAGS,
                               BLOCK=(BLOCK,))),
    KernelSpec(neuron_bwd_kernel, data=("p_gs", "p_gvseq", "p_gvlast", "p_h", "p_x", "p_v0", "p_gx", "p_gv0"),
               ints=("T", "N", "C", "inner"),
               floats=("tau", "v_th", "v_reset", "v0_value", "sg_a", "sg_b", "p1", "p2", "p3", "q1", "q2", "q3"),
               constexprs=dict(MODE=MODES, DECAY_INPUT=_FLAGS, SOFT_RESET=_FLAGS, DETACH_RESET=_FLAGS,
                               HAS_V0=_FLAGS, NEED_GV0=_FLAGS, HAS_GS=_FLAGS, HAS_GVSEQ=_FLAGS, HAS_GVLAST=_FLAGS,
                               SG=tuple(range(14)), FIRE=FIRES, ACT=ACTS, PER_CHANNEL=_FLAGS, BLOCK=(BLOCK,))),
]
