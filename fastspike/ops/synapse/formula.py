"""What the synapse ops keep of their input for the weight gradient, and the weight-gradient decision.

The forward keeps x in the smallest exact form it can know without a pass of its own (``keep_input``):

* ``SPIKES``: packed bits of a binary x, produced by the synapse path (the C++ event kernel packs while it
  builds its spike lists; the Triton and torch paths pack after their binarity check);
* ``BITS`` / ``BYTES``: x compacted by ``ops.bits.compact`` (the C++ dense path in training: one pass classifies
  x as spikes, spike counts or neither);
* ``RAW``: x as it is (real values, or a device where classifying would cost a host synchronisation);
* ``UNCLASSIFIED``: x as it is, kept under torch.compile, where a data-dependent storage cannot be traced; the
  backward kernel (an opaque custom op, running on real tensors) classifies it then, by the same rules, so
  compiled gradients equal eager ones (the memory saving is what tracing gives up).

``weight_grad_route`` then picks one of three ways to compute dL/dW (``Route``), and ``linear_grad_weight`` /
``conv2d_grad_weight`` run it. ``status`` is what the forward learnt: ``EVENT`` (x binary; on the kernel
backends the event kernel ran), ``NOT_BINARY``, ``TOO_DENSE`` (the C++ kernel counted more spikes than the
'auto' crossover and stopped; for Linear it has seen every value, so x is binary) or ``UNKNOWN`` (nothing
looked at x).
"""
from __future__ import annotations

import enum
import math
from typing import NamedTuple, Sequence, Tuple

import torch
from torch import Tensor

from .._contract import launcher

from .. import _kernels, bits, reference
from ..bits import cpu as bits_cpu
from . import cpu, dense

__all__ = ["DENSE", "EVENT_MODE", "AUTO", "EVENT", "NOT_BINARY", "TOO_DENSE", "UNKNOWN", "KNOWN_BINARY", "RAW",
           "SPIKES", "UNCLASSIFIED", "SavedInput", "Route", "weight_grad_route", "keep_input", "linear_grad_weight",
           "conv2d_grad_weight", "EVENT_GRAD_MAX_DENSITY", "launcher", "binary"]

# event_driven, as the custom ops take it
DENSE, EVENT_MODE, AUTO = 0, 1, 2
# what the forward learnt about x (the C++ kernels' statuses, and UNKNOWN)
NOT_BINARY, EVENT, TOO_DENSE = cpu.NOT_BINARY, cpu.EVENT, cpu.TOO_DENSE
UNKNOWN = 3
KNOWN_BINARY = 4  # x is (a view of) spikes recorded by ops.bits.known: binary without a look at the data
# how x is kept (BITS and BYTES are ops.bits.compact's kinds)
RAW, SPIKES, UNCLASSIFIED = 0, 3, 4
assert (bits.BITS, bits.BYTES) == (1, 2)

# The dense path takes the event-driven weight gradient (accumulated over the nonzeros of its compactly saved
# input only) up to this spike density. Its time grows with the number of nonzeros, the GEMM's does not:
# measured on the 2-core Xeon VM at 3.4% density (T*B = 32, 3x3 convolutions), 2.0 ms against 6.0 ms
# (64 channels, 16x16), 0.9 against 6.0 (256, 4x4), 1.5 against 7.6 (512, 2x2); the two meet between 10%
# and 20% density.
EVENT_GRAD_MAX_DENSITY = 0.1


class SavedInput(NamedTuple):
    """How the forward kept x for the weight gradient; the tensor itself (the payload) goes through
    save_for_backward. ``kind``: RAW, ops.bits.BITS / BYTES, SPIKES or UNCLASSIFIED; ``nnz``: x's nonzeros
    (BITS / BYTES; -1 when not counted)."""
    kind: int
    nnz: int = -1


class Route(enum.Enum):
    EVENT = "event"    # the backend's event-driven kernel over the saved nonzeros (bits, or bytes for conv2d)
    UNPACK = "unpack"  # unpack the bits, then torch's gradient (GEMM / convolution)
    DENSE = "dense"    # the input as it was (restored), then the dense gradient (with the CPU GEMM workarounds)


def weight_grad_route(op: str, saved: SavedInput, status: int, backend: str, dtype: torch.dtype,
                      numel: int) -> Route:
    """The one decision of how dL/dW is computed: ``op`` 'linear' or 'conv2d', ``saved`` what the forward kept,
    ``status`` what it learnt, ``dtype`` the upstream gradient's compute dtype, ``numel`` x's size."""
    kernels = backend in ("cpp", "triton") and dtype == torch.float32
    if saved.kind == SPIKES:  # binary x, bits from the synapse path
        return Route.EVENT if kernels and status == EVENT else Route.UNPACK
    if (saved.kind in (bits.BITS, bits.BYTES) and op == "conv2d" and kernels and backend == "cpp"
            and saved.nnz <= EVENT_GRAD_MAX_DENSITY * numel):
        return Route.EVENT  # a sparse input of the dense path: the event kernel over its bits or bytes
    return Route.DENSE


def binary(op: str, status: int) -> bool:
    """Whether a forward status says x is binary (the C++ Linear kernel has seen every value when it stops at the
    crossover; the Conv2d kernel has not; KNOWN_BINARY: the producer said so)."""
    return status in (EVENT, KNOWN_BINARY) or (status == TOO_DENSE and op == "linear")


def _pack_rows(x2: Tensor, backend: str) -> Tensor:
    """Bits of a binary 2-D tensor (its binarity is known: no check)."""
    if backend == "cpp":
        return bits_cpu.pack(x2)[0]
    if backend == "triton":
        return _kernels.load("bits").pack_bits(x2.contiguous(), launch=launcher(x2))[0]
    return reference.pack_bits(x2)


def keep_input(x: Tensor, status: int, op: str, backend: str) -> Tuple[Tensor, SavedInput]:
    """(payload, SavedInput) for x (real tensors only: this may look at the data). Linear keeps x [M, K] as bits
    of its rows; Conv2d keeps all of x as one row of bits."""
    x = x.detach()
    rows = x if op == "linear" else x.reshape(1, -1)
    if binary(op, status):
        return _pack_rows(rows, backend), SavedInput(SPIKES)
    if backend == "cpp":
        kept = bits.compact(x, min_numel=1)
        if isinstance(kept, bits.Compacted):
            return kept.payload, SavedInput(kept.kind, kept.nnz)
    return x, SavedInput(RAW)


def _restore(payload: Tensor, saved: SavedInput, shape) -> Tensor:
    if saved.kind in (bits.BITS, bits.BYTES):  # only the C++ path compacts, and only float32 tensors
        return bits.restore(bits.Compacted(saved.kind, payload, torch.Size(shape), saved.nnz, torch.float32))
    return payload


def _unpack(payload: Tensor, n: int, dtype: torch.dtype, backend: str) -> Tensor:
    b2 = payload.reshape(-1, payload.shape[-1])
    if backend == "cpp" and dtype == torch.float32:
        return bits_cpu.unpack(b2, n)
    if backend == "triton" and dtype == torch.float32:
        return _kernels.load("bits").unpack_bits(b2.contiguous(), n, dtype, launch=launcher(b2))
    return reference.unpack_bits(b2, n, dtype)


def _classified(payload: Tensor, saved: SavedInput, status: int, op: str, backend: str):
    if saved.kind == UNCLASSIFIED:
        return keep_input(payload, status, op, backend)
    return payload, saved


def linear_grad_weight(g: Tensor, payload: Tensor, saved: SavedInput, status: int, backend: str,
                       in_features: int) -> Tensor:
    """dL/dW [N, K] of x [M, K] @ W^T from g [M, N] (fp32 or fp64) and what the forward kept of x."""
    payload, saved = _classified(payload, saved, status, "linear", backend)
    M = g.shape[0]
    route = weight_grad_route("linear", saved, status, backend, g.dtype, M * in_features)
    if route is Route.EVENT:
        if backend == "cpp":
            return cpu.linear_grad_weight(payload, g.contiguous(), in_features)
        return _kernels.load("synapse").linear_grad_weight(payload, g.contiguous(), in_features, launch=launcher(g))
    if route is Route.UNPACK:
        return g.t().mm(_unpack(payload, in_features, g.dtype, backend))
    return g.t().mm(_restore(payload, saved, (M, in_features)).to(g.dtype))


def conv2d_grad_weight(g: Tensor, payload: Tensor, saved: SavedInput, status: int, backend: str,
                       x_shape: Sequence[int], w_shape: Sequence[int], s, p, d, groups: int) -> Tensor:
    """dL/dW of F.conv2d(x, W, None, s, p, d, groups) from g (fp32 or fp64) and what the forward kept of x."""
    payload, saved = _classified(payload, saved, status, "conv2d", backend)
    numel = math.prod(x_shape)
    route = weight_grad_route("conv2d", saved, status, backend, g.dtype, numel)
    if route is Route.EVENT:
        if backend == "cpp":
            return cpu.conv2d_grad_weight(payload, x_shape, g, w_shape, s, p, d, groups,
                                          values=saved.kind == bits.BYTES)
        return _kernels.load("synapse").conv2d_grad_weight(payload, x_shape, g.contiguous(), w_shape, s, p, d,
                                                           groups, launch=launcher(g))
    if route is Route.UNPACK:
        x = _unpack(payload, numel, g.dtype, backend).reshape(x_shape)
        return torch.nn.grad.conv2d_weight(x, w_shape, g, s, p, d, groups)
    return dense.conv2d_grad_weight(_restore(payload, saved, x_shape).to(g.dtype), w_shape, g, s, p, d, groups)
