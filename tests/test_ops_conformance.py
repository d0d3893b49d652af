"""Every public op against its reference, on every backend that runs here: one case per name in
``fastspike.ops.__all__``, outputs and gradients of every floating input compared with ``fastspike.ops.reference``
(the oracle, which imports nothing from the implementations). A new op fails ``test_every_op_has_a_case`` until it
has a reference of the same name and a case here; the op's own test file holds its edge cases and sizes.
"""
from typing import Callable, Dict, NamedTuple

import pytest
import torch

from fastspike import ops, surrogate
from fastspike.ops import reference

from helpers import KERNEL_BACKENDS, assert_close, device_of

NOT_OPS = {"BACKENDS", "get_default_backend", "set_default_backend",  # configuration, not ops
           "empty_cache", "cached_bytes"}  # the CPU block cache of large outputs (ops/_alloc.py)


class Case(NamedTuple):
    make: Callable[[torch.device], tuple]  # device -> (positional args, keyword args)
    tol: float = 1e-5
    no_kernel: tuple = ()  # backends without an implementation: asked by name, they raise a ValueError naming it


def _spikes(*shape, device, p=0.3):
    return (torch.rand(*shape, device=device) < p).float()


def _neuron(dev):
    x = torch.randn(5, 3, 37, device=dev, requires_grad=True)
    v0 = torch.rand(3, 37, device=dev, requires_grad=True)
    return (x, v0), dict(mode="lif", tau=2.0, surrogate_function=surrogate.Sigmoid(), store_v_seq=True)


def _neuron2(dev):
    x = torch.randn(5, 3, 37, device=dev, requires_grad=True)
    v0 = torch.rand(3, 37, device=dev, requires_grad=True)
    u0 = (torch.rand(3, 37, device=dev) * 0.2).requires_grad_()
    return (x, v0, u0), dict(model="izhikevich", a=0.2, b=0.1, surrogate_function=surrogate.Sigmoid(), store_seq=True)


def _gated_lif(dev):
    x = torch.randn(5, 2, 3, 7, device=dev, requires_grad=True)
    v0 = torch.rand(2, 3, 7, device=dev, requires_grad=True)
    gates = [(torch.rand(3, device=dev) * 0.8 + 0.1).requires_grad_() for _ in range(7)]
    conduct = (torch.rand(5, 3, device=dev) * 0.8 + 0.1).requires_grad_()
    return (x, v0, *gates, conduct), dict(surrogate_function=surrogate.Sigmoid())


def _scan(dev):
    b = torch.randn(7, 29, device=dev, requires_grad=True)
    a = torch.rand(7, 29, device=dev, requires_grad=True)
    h0 = torch.randn(29, device=dev, requires_grad=True)
    return (a, b, h0), {}


def _psn(dev):
    x = torch.randn(6, 4, 9, device=dev, requires_grad=True)
    w = torch.randn(6, 6, device=dev, requires_grad=True)
    bias = torch.randn(6, device=dev, requires_grad=True)
    return (x, w, bias, surrogate.ATan()), dict(band=0)


def _linear(dev):
    x = _spikes(6, 33, device=dev).requires_grad_()
    w = torch.randn(10, 33, device=dev, requires_grad=True)
    bias = torch.randn(10, device=dev, requires_grad=True)
    return (x, w, bias), {}


def _conv(dev):
    x = _spikes(2, 3, 9, 8, device=dev).requires_grad_()
    w = torch.randn(4, 3, 3, 3, device=dev, requires_grad=True)
    bias = torch.randn(4, device=dev, requires_grad=True)
    return (x, w, bias), dict(stride=1, padding=1)


def _pack(dev):
    return (_spikes(3, 21, device=dev),), {}


def _unpack(dev):
    return (torch.randint(0, 256, (3, 3), device=dev, dtype=torch.uint8), 21), {}


def _stats(dev):
    return (_spikes(4, 50, device=dev),), {}


def _pool(dev):
    x = torch.randn(2, 3, 9, 10, device=dev, requires_grad=True)
    return (x, 2, 3), dict(stride=2, padding=1)


def _stbif(dev):  # forward-only (inference): no input requires grad
    x = torch.randn(6, 3, 37, device=dev) * 0.3
    q = torch.rand(3, 37, device=dev) * 2 - 0.5
    acc = torch.randint(-4, 4, (3, 37), device=dev).float()
    return (x, q, acc, 0.25, 3.0, -4.0), {}


CASES: Dict[str, Case] = {
    "multistep_neuron": Case(_neuron), "multistep_neuron2": Case(_neuron2), "linear_scan": Case(_scan),
    "multistep_gated_lif": Case(_gated_lif, 1e-4),
    "psn": Case(_psn),
    "synapse_linear": Case(_linear, 1e-5), "synapse_conv2d": Case(_conv, 1e-5), "pack_bits": Case(_pack),
    "unpack_bits": Case(_unpack), "spike_stats": Case(_stats), "max_pool": Case(_pool, no_kernel=("triton",)),
    "stbif": Case(_stbif, 0.0),
}


def test_every_op_has_a_case():
    public = set(ops.__all__) - NOT_OPS
    assert public == set(CASES), (f"ops.__all__ and CASES differ: missing cases {sorted(public - set(CASES))}, "
                                  f"stale cases {sorted(set(CASES) - public)}")
    missing = [n for n in public if not callable(getattr(reference, n, None))]
    assert not missing, f"ops without a reference of the same name in fastspike.ops.reference: {missing}"


def _tensors(out):
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [o for o in out if isinstance(o, torch.Tensor)], [o for o in out if not isinstance(o, torch.Tensor)]


def _run(fn, args, kwargs, seed):
    """fn's outputs and, for a differentiable output, the gradients of the floating inputs under a fixed
    random cotangent."""
    args = [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]
    out = fn(*args, **kwargs)
    tensors, others = _tensors(out)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    diff = [t for t in tensors if t.requires_grad]
    grads = []
    if diff and leaves:
        gen = torch.Generator().manual_seed(seed)
        cot = [torch.randn(t.shape, generator=gen, dtype=torch.float32).to(t.device, t.dtype) for t in diff]
        grads = torch.autograd.grad(diff, leaves, cot, allow_unused=True)
    return [t.detach() for t in tensors], others, grads


@pytest.mark.parametrize("backend", ["torch", *KERNEL_BACKENDS])
@pytest.mark.parametrize("name", sorted(CASES))
def test_op_matches_reference(name, backend):
    case = CASES[name]
    torch.manual_seed(0)
    args, kwargs = case.make(device_of(backend))
    if backend in case.no_kernel:
        with pytest.raises(ValueError, match=backend.capitalize()):
            getattr(ops, name)(*args, **kwargs, backend=backend)
        return
    ref_out, ref_other, ref_grads = _run(getattr(reference, name), args, kwargs, seed=1)
    out, other, grads = _run(getattr(ops, name), args, dict(kwargs, backend=backend), seed=1)
    assert len(out) == len(ref_out) and other == ref_other, f"{name}[{backend}]: {other} != {ref_other}"
    for i, (r, o) in enumerate(zip(ref_out, out)):
        assert o.device == r.device and o.dtype == r.dtype, f"{name}[{backend}] output {i}: {o.device}/{o.dtype}"
        if r.is_floating_point():
            assert_close(f"{name}[{backend}] output {i}", r, o, case.tol)
        else:
            assert torch.equal(r, o), f"{name}[{backend}] output {i}"
    assert len(grads) == len(ref_grads)
    for i, (r, g) in enumerate(zip(ref_grads, grads)):
        assert (r is None) == (g is None), f"{name}[{backend}] gradient {i}: {r is None} vs {g is None}"
        if r is not None:
            assert_close(f"{name}[{backend}] gradient {i}", r, g, case.tol)


def _with_kernel():
    """(name, backend) for every op and every backend that has its kernel (KERNEL_BACKENDS' marks kept)."""
    for name in sorted(CASES):
        for b in ("torch", *KERNEL_BACKENDS):
            backend, marks = (b.values[0], b.marks) if hasattr(b, "values") else (b, ())
            if backend not in CASES[name].no_kernel:
                yield pytest.param(name, backend, marks=marks, id=f"{name}-{backend}")


@pytest.mark.parametrize("name,backend", list(_with_kernel()))
def test_float64_default_dtype_changes_nothing(name, backend):
    """float32 inputs give the same outputs (values and dtypes) and gradients when the user has made float64 the
    default dtype (``torch.set_default_dtype``, common in scientific code): buffers a launcher makes for a kernel
    must not follow the default (a float64 buffer filled by a float32 kernel reads back as garbage)."""
    case = CASES[name]
    torch.manual_seed(0)
    args, kwargs = case.make(device_of(backend))
    fn = getattr(ops, name)
    out, other, grads = _run(fn, args, dict(kwargs, backend=backend), seed=1)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out64, other64, grads64 = _run(fn, args, dict(kwargs, backend=backend), seed=1)
    finally:
        torch.set_default_dtype(saved)
    assert other64 == other and len(out64) == len(out) and len(grads64) == len(grads)
    for i, (a, b) in enumerate(zip(out, out64)):
        assert b.dtype == a.dtype, f"{name}[{backend}] output {i}: {b.dtype} with the float64 default, not {a.dtype}"
        if a.is_floating_point():
            assert_close(f"{name}[{backend}] output {i} (float64 default)", a, b, case.tol)
        else:
            assert torch.equal(a, b), f"{name}[{backend}] output {i} (float64 default)"
    for i, (a, b) in enumerate(zip(grads, grads64)):
        assert (a is None) == (b is None)
        if a is not None:
            assert b.dtype == a.dtype, f"{name}[{backend}] gradient {i}: {b.dtype} with the float64 default"
            assert_close(f"{name}[{backend}] gradient {i} (float64 default)", a, b, case.tol)
