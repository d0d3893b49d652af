"""Triton kernel of SpikeZIP's signed, bounded IF neuron (ST-BIF), forward only (an inference transition), and its
launcher. Equations: fastspike/ops/reference/stbif.py.

One program owns BLOCK neurons and runs the whole time loop with q and acc_q in fp32 registers. It reads X
(fp32/fp16/bf16) and the initial states (any of those dtypes), writes the outputs event * q_threshold in X's dtype
and the final q, acc_q and last event in fp32. q_threshold, pos_max and neg_min are read from one-element fp32
tensors (no host synchronisation to turn a module's buffers into numbers). acc_q is rounded half to even by
floor arithmetic, which is exact for any float (as csrc/neuron_fire.h's round_even).

Compiled-code rules (checked for sm_80/sm_90 by tests/test_triton_compile.py): T is never specialised and may be 1,
offsets are int64 from the start.
"""
import torch
import triton
import triton.language as tl

from ._spec import KernelSpec

BLOCK = 1024


@triton.jit
def _round_even(c):
    fl = tl.floor(c)
    fr = c - fl
    odd = fl - 2.0 * tl.floor(0.5 * fl)
    return fl + (fr > 0.5).to(tl.float32) + (fr == 0.5).to(tl.float32) * odd


@triton.jit(do_not_specialize=["T"])
def stbif_fwd_kernel(
    p_x, p_q0, p_acc0, p_thr, p_pos, p_neg, p_out, p_q, p_acc, p_event, T, N, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    o_n = pid * BLOCK + tl.arange(0, BLOCK).to(tl.int64)
    m_n = o_n < N
    thr = tl.load(p_thr).to(tl.float32)
    pos_max = tl.load(p_pos).to(tl.float32)
    neg_min = tl.load(p_neg).to(tl.float32)
    b_thr = tl.zeros([BLOCK], dtype=tl.float32) + thr
    b_q = tl.load(p_q0 + o_n, mask=m_n, other=0.0).to(tl.float32)
    b_a = tl.load(p_acc0 + o_n, mask=m_n, other=0.0).to(tl.float32)
    b_e = tl.zeros([BLOCK], dtype=tl.float32)
    o_t = o_n  # int64 running offset: t * N never evaluated in 32 bits
    for t in range(0, T):
        b_x = tl.load(p_x + o_t, mask=m_n, other=0.0).to(tl.float32)
        b_q = b_q + tl.math.div_rn(b_x, b_thr)  # IEEE division, as torch's ('/' is approximate on GPUs)
        b_a = _round_even(b_a)
        b_up = ((b_q >= 1.0) & (b_a < pos_max)).to(tl.float32)
        b_down = ((b_q < 0.0) & (b_a > neg_min)).to(tl.float32)
        b_e = b_up - b_down
        b_a = b_a + b_e
        b_q = b_q - b_up + b_down
        tl.store(p_out + o_t, (b_e * thr).to(p_out.dtype.element_ty), mask=m_n)
        o_t += N
    tl.store(p_q + o_n, b_q, mask=m_n)
    tl.store(p_acc + o_n, b_a, mask=m_n)
    tl.store(p_event + o_n, b_e, mask=m_n)


def stbif_forward(x, q0, acc0, thr, pos_max, neg_min, block: int = BLOCK, launch=None):
    """x [T, N] contiguous (fp32/fp16/bf16), q0 / acc0 [N] contiguous (any of those dtypes), thr / pos_max /
    neg_min one-element fp32 tensors on x's device. Returns (out [T, N] in x's dtype, q [N], acc_q [N], event [N]
    in fp32). ``launch(kernel)`` wraps the kernel (torch.library.wrap_triton under torch.compile)."""
    T, N = x.shape
    out = torch.empty_like(x)
    q, acc, event = (torch.empty((N,), dtype=torch.float32, device=x.device) for _ in range(3))
    if N:
        kernel = stbif_fwd_kernel if launch is None else launch(stbif_fwd_kernel)
        kernel[(triton.cdiv(N, block),)](x, q0, acc0, thr, pos_max, neg_min, out, q, acc, event, T, N, BLOCK=block)
    return out, q, acc, event


# every specialisation the launcher above can produce (kernels/_spec.py; compiled for sm_80/sm_90 in CI)
_FP32 = "*fp32"
COMPILE_SPECS = [
    KernelSpec(stbif_fwd_kernel, data=("p_x", "p_q0", "p_acc0", "p_out"),
               pointers=dict(p_thr=_FP32, p_pos=_FP32, p_neg=_FP32, p_q=_FP32, p_acc=_FP32, p_event=_FP32),
               ints=("T", "N"), constexprs=dict(BLOCK=(BLOCK,))),
]
