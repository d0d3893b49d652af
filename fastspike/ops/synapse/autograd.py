"""The synapse ops under the op contract (ops/_contract.py): ``fastspike::synapse_linear_<backend>`` and
``fastspike::synapse_conv2d_<backend>`` for backend cpp, triton and torch, each a forward and a weight-gradient
custom op joined by one autograd formula.

Forward inputs: x (Linear: [M, K]; Conv2d: [B, Cin, H, W]), weight, bias or None, ``mode`` (formula.DENSE,
EVENT_MODE or AUTO), ``train`` (grad mode is on and the weight requires a gradient), ``want_bits`` (return x's
packed bits for the weight gradient: asked in EVENT_MODE, and in eager AUTO, where the C++ Linear packs them
while it builds its spike lists; not in AUTO under torch.compile, where the formula keeps x instead), then
Conv2d's stride, padding, dilation and groups. Outputs: the result (the weight's dtype), x's bits
([M, ceil(K / 8)] or [1, ceil(numel / 8)]; empty unless ``want_bits``; meaningless when the status says
NOT_BINARY) and the status (int32 [1] on x's device, formula's EVENT / NOT_BINARY / TOO_DENSE / UNKNOWN).

Backends:

* cpp: the C++ event kernels (csrc/linear.cpp, csrc/conv2d_forward.cpp) for EVENT_MODE and AUTO (the kernel counts
  spikes while it builds its lists and hands over to torch's GEMM / convolution past the calibrated crossover or at
  the first non-binary value); EVENT_MODE raises ValueError for a non-binary x. A weight that is not all finite takes
  torch's dense layer (the result F.* gives: 0 * inf = nan), checked once per weight version on the host.
* triton: EVENT_MODE only (on CUDA 'auto' and the dense path are torch's own layer, which needs no custom op):
  kernels/synapse.py, sync-free; the status is computed on the device and the public op reads it only when it
  may synchronise.
* torch: torch's dense layer; it classifies x on the host (CPU; CUDA only for EVENT_MODE outside graph capture)
  so that a binary x is kept as bits.

The formula computes the input gradient with torch (dense) and calls the weight-gradient custom op, whose
route ``formula.weight_grad_route`` picks.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ... import _ext
from .. import _alloc, _backend, _kernels, reference
from .._contract import Op, launcher, opaque
from ..bits import cpu as bits_cpu
from . import cpu, dense, formula, weights
from .crossover_store import crossover
from .formula import DENSE, EVENT, EVENT_MODE, KNOWN_BINARY, NOT_BINARY, SPIKES, UNCLASSIFIED, UNKNOWN, SavedInput

__all__ = ["LINEAR", "CONV2D", "NOT_BINARY_MESSAGE"]

NOT_BINARY_MESSAGE = ("{}: event_driven=True needs binary spikes (every value 0 or 1), but x holds other values; "
                      "use event_driven=False or 'auto' for real-valued input.")

_Fwd = Tuple[Tensor, Tensor, Tensor]


def _status(value: int) -> Tensor:
    """The status of the C++ and torch paths: known on the host, kept on the host (reading it back is free)."""
    return torch.full((1,), value, dtype=torch.int32)


def _no_bits(x: Tensor) -> Tensor:
    return x.new_empty((0,), dtype=torch.uint8)


def _bits_shape(op: str, x: Tensor) -> Tuple[int, int]:
    if op == "linear":
        return x.shape[0], (x.shape[1] + 7) // 8
    return 1, (x.numel() + 7) // 8


def _bits_or_placeholder(op: str, x: Tensor, want_bits: bool, status: int, backend: str) -> Tensor:
    """x's bits when wanted and x is known to be binary; an unwritten buffer of their shape when wanted but x is not
    known to be binary (the formula then keeps x otherwise)."""
    if not want_bits:
        return _no_bits(x)
    if not formula.binary(op, status):
        return x.new_empty(_bits_shape(op, x), dtype=torch.uint8)
    rows = x if op == "linear" else x.reshape(1, -1)
    if backend == "cpp":
        return bits_cpu.pack(rows)[0]
    return reference.pack_bits(rows)


def _binary_on_host(x: Tensor) -> Optional[bool]:
    """Whether x is binary, when that can be learnt without a device synchronisation in graph capture (None)."""
    if x.is_cuda and torch.cuda.is_current_stream_capturing():
        return None
    if x.is_cpu and x.dtype == torch.float32 and _ext.available():
        return bits_cpu.stats(x)[1]
    return reference.is_binary(x)


def _check_event(op: str, x: Tensor) -> int:
    """EVENT_MODE without the event kernel: check x's binarity (raises) -> the status."""
    ok = _binary_on_host(x)
    if ok is False:
        raise ValueError(NOT_BINARY_MESSAGE.format(op))
    return EVENT


# -------------------------------------------------------------------------------------------- forward kernels
def _cpp_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], mode: int, train: bool, want_bits: bool) -> _Fwd:
    N = weight.shape[0]
    out, kbits, status = None, None, UNKNOWN
    if mode != DENSE:
        if weights.finite(weight):
            limit = -1 if mode == EVENT_MODE else int(crossover("linear", "cpu", "train" if train else "infer")
                                                      * x.numel())
            wt = _alloc.f32(weight.detach()) if train else weights.linear_blocked(weight)
            out, kbits, status = cpu.linear_forward(x, wt, bias, N, want_bits, limit, torch_layout=train)
            if status == NOT_BINARY and mode == EVENT_MODE:
                raise ValueError(NOT_BINARY_MESSAGE.format("synapse_linear"))
        elif mode == EVENT_MODE:
            status = _check_event("synapse_linear", x)
    if out is None:
        out = F.linear(x if x.dtype == weight.dtype else x.to(weight.dtype), weight, bias)
    if kbits is None:
        kbits = _bits_or_placeholder("linear", x, want_bits, status, "cpp")
    return out.to(weight.dtype), kbits, _status(status)


def _cpp_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], mode: int, train: bool, want_bits: bool,
                stride: List[int], padding: List[int], dilation: List[int], groups: int) -> _Fwd:
    out, status = None, UNKNOWN
    if mode != DENSE:
        if weights.finite(weight):
            limit = -1 if mode == EVENT_MODE else int(crossover("conv2d", "cpu", "train" if train else "infer")
                                                      * x.numel())
            wt = _alloc.f32(weight.detach()) if train else weights.conv_transposed(weight, groups)
            out, status = cpu.conv2d_forward(x, wt, bias, weight.shape, stride, padding, dilation, groups, limit,
                                             torch_layout=train)
            if status == NOT_BINARY and mode == EVENT_MODE:
                raise ValueError(NOT_BINARY_MESSAGE.format("synapse_conv2d"))
        elif mode == EVENT_MODE:
            status = _check_event("synapse_conv2d", x)
    if out is None:
        out = F.conv2d(x.to(weight.dtype), weight, bias, stride, padding, dilation, groups)
    kbits = _bits_or_placeholder("conv2d", x, want_bits, status, "cpp")
    return out.to(weight.dtype), kbits, _status(status)


def _known_binary_dense(x: Tensor, out: Tensor, want_bits: bool, rows: Tensor) -> _Fwd:
    """CUDA's dense path for spikes a fastspike neuron produced (ops.bits.known): torch's layer for the output,
    and the input's bits for the weight gradient, packed without a check (no host synchronisation)."""
    kbits = _kernels.load("bits").pack_bits(rows.contiguous(), launch=launcher(x))[0] if want_bits else _no_bits(x)
    return out, kbits, torch.full((1,), KNOWN_BINARY, dtype=torch.int32, device=x.device)


def _triton_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], mode: int, train: bool,
                   want_bits: bool) -> _Fwd:
    if mode == DENSE:
        out = F.linear(x if x.dtype == weight.dtype else x.to(weight.dtype), weight, bias)
        return _known_binary_dense(x, out, want_bits, x)
    K = _kernels.load("synapse")
    launch = launcher(x)
    x = x.contiguous()
    wt = weights.cached(weight, "linear_triton", K.linear_weight_t, keep=not train)
    nf = weights.cached(weight, "nonfinite", K.nonfinite_per_output)
    out, bad = K.linear_forward(x, bias, wt, nf, launch=launch)
    kbits = _kernels.load("bits").pack_bits(x, launch=launch)[0] if want_bits else _no_bits(x)
    status = (bad.amax(0, keepdim=True) == 0).to(torch.int32)  # EVENT (1) or NOT_BINARY (0), on the device
    return out.to(weight.dtype), kbits, status


def _triton_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], mode: int, train: bool, want_bits: bool,
                   stride: List[int], padding: List[int], dilation: List[int], groups: int) -> _Fwd:
    if mode == DENSE:
        out = F.conv2d(x.to(weight.dtype), weight, bias, stride, padding, dilation, groups)
        return _known_binary_dense(x, out, want_bits, x.reshape(1, -1))
    K = _kernels.load("synapse")
    launch = launcher(x)
    wt = weights.cached(weight, f"conv_triton_g{groups}", lambda w: K.conv2d_weight_t(w, groups), keep=not train)
    nf = weights.cached(weight, "nonfinite", K.nonfinite_per_output)
    out, bad = K.conv2d_forward(x, bias, wt, nf, weight.shape, stride, padding, dilation, groups, launch=launch)
    kbits = (_kernels.load("bits").pack_bits(x.reshape(1, -1).contiguous(), launch=launch)[0] if want_bits
             else _no_bits(x))
    status = (bad.amax(0, keepdim=True) == 0).to(torch.int32)
    return out.to(weight.dtype), kbits, status


def _torch_status(op: str, x: Tensor, mode: int, train: bool) -> int:
    if mode == EVENT_MODE:
        return _check_event(op, x)
    if train and x.is_cpu:  # classify, so that a binary x is kept as bits (free of synchronisation on the CPU)
        return EVENT if reference.is_binary(x) else NOT_BINARY
    return UNKNOWN


def _torch_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], mode: int, train: bool,
                  want_bits: bool) -> _Fwd:
    status = _torch_status("synapse_linear", x, mode, train)
    out = F.linear(x if x.dtype == weight.dtype else x.to(weight.dtype), weight, bias)
    return out, _bits_or_placeholder("linear", x, want_bits, status, "torch"), _status(status)


def _torch_conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], mode: int, train: bool, want_bits: bool,
                  stride: List[int], padding: List[int], dilation: List[int], groups: int) -> _Fwd:
    status = _torch_status("synapse_conv2d", x, mode, train)
    out = F.conv2d(x.to(weight.dtype), weight, bias, stride, padding, dilation, groups)
    return out, _bits_or_placeholder("conv2d", x, want_bits, status, "torch"), _status(status)


def _fake_status(x: Tensor, backend: str) -> Tensor:
    if backend == "triton":
        return x.new_empty((1,), dtype=torch.int32)
    return torch.empty((1,), dtype=torch.int32, device="cpu")


def _fake_linear(backend: str):
    def fake(x, weight, bias, mode, train, want_bits):
        out = x.new_empty((x.shape[0], weight.shape[0]), dtype=weight.dtype)
        kbits = x.new_empty(_bits_shape("linear", x), dtype=torch.uint8) if want_bits else _no_bits(x)
        return out, kbits, _fake_status(x, backend)
    return fake


def _fake_conv2d(backend: str):
    def fake(x, weight, bias, mode, train, want_bits, stride, padding, dilation, groups):
        B, _, H, W = x.shape
        Cout, _, KH, KW = weight.shape
        OH, OW = cpu.conv_out_hw(H, W, KH, KW, stride, padding, dilation)
        out = x.new_empty((B, Cout, OH, OW), dtype=weight.dtype)
        kbits = x.new_empty(_bits_shape("conv2d", x), dtype=torch.uint8) if want_bits else _no_bits(x)
        return out, kbits, _fake_status(x, backend)
    return fake


# ------------------------------------------------------------------------------------ weight-gradient kernels
# ``status``: the forward's status tensor (kept under torch.compile) or None, then ``known`` is its value (read in
# eager mode by setup_context, where it costs nothing: it is a host tensor). The Triton path never reads it (that
# would synchronise): its forward ran the event kernel.
def _known(status: Optional[Tensor], known: int) -> int:
    return known if status is None else int(status[0])


def _linear_gw(backend: str):
    def grad_weight(g: Tensor, payload: Tensor, status: Optional[Tensor], known: int, kind: int, nnz: int,
                    in_features: int) -> Tensor:
        return formula.linear_grad_weight(g, payload, SavedInput(kind, nnz), _known(status, known), backend,
                                          in_features)
    return grad_weight


def _conv2d_gw(backend: str):
    def grad_weight(g: Tensor, payload: Tensor, status: Optional[Tensor], known: int, kind: int, nnz: int,
                    x_shape: List[int], w_shape: List[int], stride: List[int], padding: List[int],
                    dilation: List[int], groups: int) -> Tensor:
        return formula.conv2d_grad_weight(g, payload, SavedInput(kind, nnz), _known(status, known), backend,
                                          x_shape, w_shape, stride, padding, dilation, groups)
    return grad_weight


def _fake_linear_gw(g, payload, status, known, kind, nnz, in_features):
    return g.new_empty((g.shape[1], in_features))


def _fake_conv2d_gw(g, payload, status, known, kind, nnz, x_shape, w_shape, stride, padding, dilation, groups):
    return g.new_empty(tuple(w_shape))


# ------------------------------------------------------------------------------------------------ formula
def _setup(op: str, backend: str):
    def setup_context(ctx, inputs, output):
        x, weight, bias, mode, train, want_bits = inputs[:6]
        _, kbits, status = output
        ctx.set_materialize_grads(False)
        ctx.conf = tuple(inputs[6:])
        ctx.x_shape, ctx.x_dtype = tuple(x.shape), x.dtype
        payload, saved = None, SavedInput(formula.RAW)
        traced = opaque(x)  # torch.compile, or a torch.func transform: x is not read here
        # what the forward learnt: read now in eager mode (a host tensor), in the backward kernel when traced
        if backend == "triton":  # the Triton forward ran the event kernel, or (DENSE) was given known spikes
            ctx.known = KNOWN_BINARY if mode == DENSE else EVENT
        else:
            ctx.known = UNKNOWN if traced else int(status[0])
        keep_status = traced and backend != "triton"
        if train:
            if kbits.numel() and (traced or formula.binary(op, ctx.known)):
                payload, saved = kbits, SavedInput(SPIKES)
            elif traced:  # under torch.compile: x as it is, classified by the backward kernel
                payload, saved = x, SavedInput(UNCLASSIFIED)
            else:
                payload, saved = formula.keep_input(x, ctx.known, op, backend)
        ctx.kept = saved
        ctx.save_for_backward(weight, payload, status if keep_status else None)
    return setup_context


def _linear_backward(ctx, grads, kernel):
    g = grads[0]
    need = ctx.needs_input_grad
    if g is None:
        return (None,) * 6
    weight, payload, status = ctx.saved_tensors
    gf = g if g.dtype == torch.float64 else g.float()
    gx = gf.mm(weight.to(gf.dtype)).to(ctx.x_dtype) if need[0] else None
    gw = None
    if need[1]:
        gw = kernel(gf, payload, status, ctx.known, ctx.kept.kind, ctx.kept.nnz, ctx.x_shape[1]).to(weight.dtype)
    gb = gf.sum(0).to(weight.dtype) if need[2] else None
    return gx, gw, gb, None, None, None


def _conv2d_backward(ctx, grads, kernel):
    g = grads[0]
    need = ctx.needs_input_grad
    if g is None:
        return (None,) * 10
    weight, payload, status = ctx.saved_tensors
    s, p, d, groups = ctx.conf
    gf = g if g.dtype == torch.float64 else g.float()
    gx = None
    if need[0]:
        gx = dense.conv2d_grad_input(gf, ctx.x_shape, weight.to(gf.dtype), s, p, d, groups).to(ctx.x_dtype)
    gw = None
    if need[1]:
        gw = kernel(gf, payload, status, ctx.known, ctx.kept.kind, ctx.kept.nnz, list(ctx.x_shape),
                    list(weight.shape), list(s), list(p), list(d), groups).to(weight.dtype)
    gb = gf.sum((0, 2, 3)).to(weight.dtype) if need[2] else None
    return (gx, gw, gb) + (None,) * 7


def _ops(op: str, forwards, fake, grad_weight, fake_gw, backward):
    triton = not _backend.triton_interpret()  # the interpreter cannot run on traced (fake) tensors
    return {be: Op(f"synapse_{op}_{be}", forward=fwd, fake_forward=fake(be), backward_kernel=grad_weight(be),
                   fake_backward=fake_gw, setup_context=_setup(op, be), backward=backward,
                   triton=be == "triton" and triton)
            for be, fwd in forwards.items()}


LINEAR = _ops("linear", {"cpp": _cpp_linear, "triton": _triton_linear, "torch": _torch_linear}, _fake_linear,
              _linear_gw, _fake_linear_gw, _linear_backward)
CONV2D = _ops("conv2d", {"cpp": _cpp_conv2d, "triton": _triton_conv2d, "torch": _torch_conv2d}, _fake_conv2d,
              _conv2d_gw, _fake_conv2d_gw, _conv2d_backward)
