"""Backend selection shared by every op.

Every op has three implementations that must agree: ``torch`` (ops/reference.py, any device and dtype),
``triton`` (kernels/, CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``) and ``cpp``
(csrc/, CPU tensors). ``auto`` picks triton for CUDA tensors and cpp for CPU tensors, and the reference
for dtypes the kernels do not take (float64). Naming a backend that cannot run the given tensors raises
instead of silently falling back.
"""
from __future__ import annotations

import functools
import os
import warnings
from typing import Iterable, Optional

import torch

from .. import _ext

BACKENDS = ("auto", "torch", "triton", "cpp")
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_default_backend = "auto"


def set_default_backend(name: str) -> None:
    """Process-wide default used when an op or module is given ``backend=None``."""
    global _default_backend
    check_backend_name(name)
    _default_backend = name


def get_default_backend() -> str:
    return _default_backend


def check_backend_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, but got {name!r}.")


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def gpu_build() -> bool:
    """Whether this torch was built for CUDA or ROCm, i.e. could ever run a compiled Triton kernel (a build
    question only: no driver call, so importing fastspike does not touch the GPU)."""
    return torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None


@functools.lru_cache(maxsize=None)
def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve(backend: Optional[str], tensors: Iterable[torch.Tensor], op: str,
            dtypes: tuple = KERNEL_DTYPES, cpp_dtypes: tuple = KERNEL_DTYPES) -> str:
    """Return the concrete backend ('torch', 'triton' or 'cpp') that runs ``op`` on ``tensors``.

    ``dtypes`` are the dtypes the triton kernel accepts, ``cpp_dtypes`` those the C++ kernel accepts
    (the launcher may convert); ``auto`` falls back to 'torch' for anything else (e.g. float64).
    """
    name = _default_backend if backend is None else backend
    first = tensors[0] if type(tensors) is tuple and tensors and isinstance(tensors[0], torch.Tensor) else \
        next(t for t in tensors if isinstance(t, torch.Tensor))
    dtype = first.dtype
    if name == "auto":  # the common case, kept short: ops call this on every forward
        if first.is_cuda:
            return "triton" if dtype in dtypes and triton_available() else "torch"
        if first.is_cpu and dtype in cpp_dtypes and _ext.available():
            return "cpp"
        return "torch"
    check_backend_name(name)
    device = first.device
    if name == "triton":
        if not triton_available():
            raise RuntimeError(f"{op}: backend='triton' needs the triton package (`pip install triton`).")
        if device.type != "cuda" and not (device.type == "cpu" and triton_interpret()):
            raise RuntimeError(
                f"{op}: backend='triton' runs CUDA tensors, but the input is on {device}. Move it to a CUDA device, "
                "use backend='cpp' or 'auto' on the CPU (or set TRITON_INTERPRET=1 to run Triton's interpreter, for "
                "tests).")
        if dtype not in dtypes:
            raise TypeError(f"{op}: backend='triton' takes {[str(d) for d in dtypes]}, but the input is {dtype}.")
        return "triton"
    if name == "cpp":
        if device.type != "cpu":
            raise RuntimeError(f"{op}: backend='cpp' runs CPU tensors, but the input is on {device}. "
                               "Use backend='triton' or 'auto' for CUDA tensors.")
        if dtype not in cpp_dtypes:
            raise TypeError(f"{op}: backend='cpp' takes {[str(d) for d in cpp_dtypes]}, but the input is {dtype}.")
        _ext.get()  # raises with the rebuild hint when missing
        return "cpp"
    return "torch"


def num_threads() -> int:
    return max(1, torch.get_num_threads())


_warned_unfused: set = set()


def unfused_surrogate(op: str, surrogate_function, backend: Optional[str], resolved: str) -> str:
    """The backend for a surrogate the kernels do not fuse (a custom class, spiking=False, tensor parameters):
    'torch' with a one-time warning per surrogate class when the backend was left to 'auto'; a ValueError when a
    kernel backend was named (never a silent fallback)."""
    if resolved == "torch":
        return "torch"
    if backend not in (None, "auto"):
        raise ValueError(f"{op}: backend={backend!r} fuses only the built-in surrogates with spiking=True and float "
                         f"parameters; {surrogate_function!r} needs backend='torch' or 'auto'.")
    key = type(surrogate_function).__name__
    if key not in _warned_unfused:
        _warned_unfused.add(key)
        warnings.warn(f"{key} is not fused into fastspike's kernels (custom class, spiking=False or tensor "
                      "parameters); using the slower pure-PyTorch path.", RuntimeWarning, stacklevel=4)
    return "torch"
