"""The ST-BIF op under the op contract (ops/_contract.py) as a forward-only ``InferenceOp`` per backend (custom ops
``fastspike::stbif_cpp`` / ``fastspike::stbif_triton``): SpikeZIP's neuron is an inference transition, so there is
no backward, and a call with an input that requires grad raises (``_contract.inference_only``).

Inputs: x [T, *], q [*], acc_q [*], then q_threshold, pos_max, neg_min as one-element float32 tensors on x's
device. Outputs: event * q_threshold [T, *] in x's dtype, q and acc_q after the last step in their own dtypes, the
last step's event in q's dtype. Both kernels compute in float32.
"""
from __future__ import annotations

from typing import Tuple

from torch import Tensor

from .. import _alloc, _kernels
from .._contract import InferenceOp, launcher
from . import cpu

__all__ = ["OPS"]

_Fwd = Tuple[Tensor, Tensor, Tensor, Tensor]


def _cast(out, x: Tensor, q: Tensor, acc: Tensor) -> _Fwd:
    o, qn, an, e = out
    return o.to(x.dtype), qn.to(q.dtype), an.to(acc.dtype), e.to(q.dtype)


def _cpp_forward(x: Tensor, q: Tensor, acc: Tensor, q_threshold: Tensor, pos_max: Tensor, neg_min: Tensor) -> _Fwd:
    f32 = _alloc.f32
    out = cpu.forward(f32(x), f32(q), f32(acc), float(q_threshold), float(pos_max), float(neg_min))
    return _cast(out, x, q, acc)


def _triton_forward(x: Tensor, q: Tensor, acc: Tensor, q_threshold: Tensor, pos_max: Tensor,
                    neg_min: Tensor) -> _Fwd:
    K = _kernels.load("stbif")
    T = x.shape[0]
    N = q.numel()
    out, qn, an, e = K.stbif_forward(x.reshape(T, N).contiguous(), q.reshape(N).contiguous(),
                                     acc.reshape(N).contiguous(), q_threshold, pos_max, neg_min, launch=launcher(x))
    step = x.shape[1:]
    return _cast((out.view(x.shape), qn.view(step), an.view(step), e.view(step)), x, q, acc)


def _fake_forward(x, q, acc, q_threshold, pos_max, neg_min) -> _Fwd:
    return x.new_empty(x.shape), q.new_empty(q.shape), acc.new_empty(acc.shape), q.new_empty(q.shape)


OPS = {
    "cpp": InferenceOp("stbif_cpp", forward=_cpp_forward, fake_forward=_fake_forward),
    "triton": InferenceOp("stbif_triton", forward=_triton_forward, fake_forward=_fake_forward, triton=True),
}
