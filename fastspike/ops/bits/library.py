"""The bit-packing custom ops (``fastspike::pack_bits_<backend>``, ``fastspike::unpack_bits_<backend>``) and the
per-backend dispatch behind the public ``pack_bits`` / ``unpack_bits``.

The ops take 2-D tensors ([rows, cols] -> uint8 [rows, ceil(cols / 8)] and back) and have no gradient (bits
are not differentiable). C++ ops are ``torch.library.custom_op``s; the C++ pack raises ValueError itself for a
value other than 0 and 1 (on the CPU the check is free). Triton ops are ``torch.library.triton_op``s, so
torch.compile sees the kernels; the Triton pack returns its "not binary" flag as a device tensor and the
public function looks at it only when it may synchronise (eager, not capturing a CUDA graph). Under Triton's
interpreter (TRITON_INTERPRET=1, the CPU tests) and with a torch built for the CPU alone the Triton ops are
registered as plain custom ops (``_contract.register_op``): the interpreter cannot run on the fake tensors
torch.compile traces with, and a CPU build never compiles a Triton kernel.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import _kernels, reference
from .._contract import launcher, register_op
from . import cpu

__all__ = ["pack", "unpack", "NOT_BINARY"]

NOT_BINARY = ("pack_bits: x must be binary (every value 0 or 1), but it holds other values; bit packing keeps "
               "only whether each element is nonzero.")


def _pack_cpp(x2: Tensor) -> Tensor:
    bits, ok = cpu.pack(x2)
    if not ok:
        raise ValueError(NOT_BINARY)
    return bits


def _pack_triton(x2: Tensor) -> Tuple[Tensor, Tensor]:
    return _kernels.load("bits").pack_bits(x2.contiguous(), launch=launcher(x2))


def _unpack_cpp(bits: Tensor, cols: int) -> Tensor:
    return cpu.unpack(bits, cols)


def _unpack_triton(bits: Tensor, cols: int, dtype: torch.dtype) -> Tensor:
    return _kernels.load("bits").unpack_bits(bits.contiguous(), cols, dtype, launch=launcher(bits))


def _fake_bits(x2):
    return x2.new_empty((x2.shape[0], (x2.shape[1] + 7) // 8), dtype=torch.uint8)


pack_bits_cpp = register_op("pack_bits_cpp", _pack_cpp, _fake_bits)
pack_bits_triton = register_op("pack_bits_triton", _pack_triton,
                               lambda x2: (_fake_bits(x2), x2.new_empty((1,), dtype=torch.int32)), triton=True)
unpack_bits_cpp = register_op("unpack_bits_cpp", _unpack_cpp,
                              lambda bits, cols: bits.new_empty((bits.shape[0], cols), dtype=torch.float32))
unpack_bits_triton = register_op("unpack_bits_triton", _unpack_triton,
                                 lambda bits, cols, dtype: bits.new_empty((bits.shape[0], cols), dtype=dtype),
                                 triton=True)


def pack(x2: Tensor, backend: str) -> Tuple[Tensor, Optional[Tensor]]:
    """(bits, flag) of a 2-D tensor: the flag is a 1-element tensor, nonzero if a value is neither 0 nor 1 (Triton),
    or None when the backend checked it already (C++ raises) or cannot say without a host pass (torch)."""
    if backend == "cpp":
        return pack_bits_cpp(x2), None
    if backend == "triton":
        return pack_bits_triton(x2)
    return reference.pack_bits(x2), None


def unpack(b2: Tensor, cols: int, dtype: torch.dtype, backend: str) -> Tensor:
    """uint8 [rows, ceil(cols / 8)] -> [rows, cols] of 0/1 in ``dtype``."""
    if backend == "cpp":
        out = unpack_bits_cpp(b2, cols)
        return out if dtype is torch.float32 else out.to(dtype)
    if backend == "triton":
        return unpack_bits_triton(b2, cols, dtype)
    return reference.unpack_bits(b2, cols, dtype)
