"""Shared test helpers: the device and backends this machine can run, and comparisons (fla-style relative RMS
error that also fails on NaN).

Tests create every tensor on ``DEVICE`` (or on ``device_of(backend)`` for one backend's op), so the same test
exercises the real GPU kernels on a CUDA machine and the CPU kernels / Triton's interpreter elsewhere.
"""
import os

import pytest
import torch

#: where tensors live in tests that do not name a backend: the GPU when there is one
DEVICE = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
ON_CUDA = DEVICE.type == "cuda"


def triton_runs_here() -> bool:
    """True when Triton kernels can run: on a CUDA device, or on the CPU under TRITON_INTERPRET=1."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return ON_CUDA or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def device_of(backend: str) -> torch.device:
    """The device whose tensors ``backend`` runs: cpp -> CPU, triton -> CUDA (CPU under the interpreter),
    torch/auto -> DEVICE."""
    if backend == "cpp":
        return torch.device("cpu")
    return DEVICE


#: the kernel backends of every op; tests parametrised over them skip (with the reason) what cannot run here
KERNEL_BACKENDS = [
    "cpp",
    pytest.param("triton", marks=pytest.mark.skipif(not triton_runs_here(), reason="needs CUDA or TRITON_INTERPRET=1")),
]

TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def rel_rms(ref: torch.Tensor, out: torch.Tensor) -> float:
    ref = ref.detach().double()
    out = out.detach().double()
    if torch.isnan(out).any() or torch.isinf(out).any() != torch.isinf(ref).any():
        return float("inf")
    err = (ref - out).pow(2).mean().sqrt()
    base = ref.pow(2).mean().sqrt()
    return float(err / base) if base > 0 else float(err)


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, tol: float) -> None:
    assert ref.shape == out.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    e = rel_rms(ref, out)
    worst = (ref.double() - out.double()).abs().max().item()
    assert e <= tol, f"{name}: relative RMS error {e:.3g} > {tol:.1g} (max abs diff {worst:.3g})"


def noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous layout (a strided view of a larger buffer)."""
    big = torch.zeros(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype, device=t.device)
    big[..., ::2] = t
    out = big[..., ::2]
    assert not out.is_contiguous() or t.numel() <= 1
    return out.requires_grad_(t.requires_grad)


def saved_bytes(fn, exclude=()) -> int:
    """Bytes of the tensors autograd saves for the backward while ``fn()`` runs, those in ``exclude``
    (parameters) left out."""
    ptrs = {t.data_ptr() for t in exclude}
    total = [0]

    def pack(t):
        if t.data_ptr() not in ptrs:
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def record_statuses(monkeypatch, module, name: str, index: int) -> list:
    """Wrap ``module.name`` so that element ``index`` of each result (a C++ forward's status) is appended to the
    returned list."""
    statuses = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        statuses.append(result[index])
        return result

    monkeypatch.setattr(module, name, spy)
    return statuses


def op_arguments(function_args: tuple) -> tuple:
    """An op's arguments in its forward's order, from what ``Op`` hands its autograd Function (``Op.apply_eager`` /
    ``Op.function.apply``): the tensor arguments, then one tuple of the others (fastspike/ops/_contract.py)."""
    return function_args[:-1] + function_args[-1]


def spy_op_calls(monkeypatch, ops, record) -> None:
    """Call ``record(arguments)`` (in the forward's order) on every eager call into each ``Op`` of ``ops``: through its
    autograd Function (``Op.function.apply``, ``Op.apply_eager``) or, with nothing to differentiate, its forward
    launcher alone (``Op.forward_kernel``)."""
    for op in ops:
        for owner, attr, unpack in ((op.function, "apply", op_arguments), (op, "apply_eager", op_arguments),
                                    (op, "forward_kernel", tuple)):
            real = getattr(owner, attr)
            monkeypatch.setattr(owner, attr, lambda *a, _r=real, _u=unpack: record(_u(a)) or _r(*a))
