"""linear_scan (h[t] = a[t] h[t-1] + b[t]) on every backend against the plain loop (reference_linear_scan)."""
import pytest
import torch

from fastspike.ops.scan import linear_scan
from fastspike.ops.reference import linear_scan as reference_linear_scan
from helpers import assert_close, noncontiguous

BACKENDS = ["torch", "cpp", "triton"]
DECAYS = ["float", "scalar_tensor", "per_step", "per_neuron", "full"]


def make_decay(kind, T, shape, requires_grad=True):
    if kind == "float":
        return 0.87
    if kind == "scalar_tensor":
        a = torch.tensor(0.9)
    elif kind == "per_step":
        a = torch.rand(T, *[1] * len(shape)) * 0.5 + 0.5
    elif kind == "per_neuron":
        a = torch.rand(1, *shape) * 0.5 + 0.5
    else:
        a = torch.rand(T, *shape) * 0.5 + 0.5
    return a.requires_grad_(requires_grad)


def grads(out, inputs, g):
    inputs = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return torch.autograd.grad(out, inputs, g)


def check_against_reference(a, b, h0, g, backend, tol=1e-5):
    out = linear_scan(a, b, h0, backend=backend)
    ref = reference_linear_scan(a, b, h0)
    assert out.shape == b.shape and out.dtype == b.dtype
    assert_close("h", ref, out, tol)
    inputs = [b, h0, a]
    names = [n for n, t in zip(["grad_b", "grad_h0", "grad_a"], inputs)
             if isinstance(t, torch.Tensor) and t.requires_grad]
    for name, r, o in zip(names, grads(ref, inputs, g), grads(out, inputs, g)):
        assert_close(name, r, o, tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T", [1, 7, 63, 257])
@pytest.mark.parametrize("kind", DECAYS)
def test_scan_matches_loop(backend, T, kind):
    shape = (3, 5)  # M = 15: not a multiple of any block
    b = torch.randn(T, *shape, requires_grad=True)
    h0 = torch.randn(*shape, requires_grad=True)
    a = make_decay(kind, T, shape)
    g = torch.randn(T, *shape)
    check_against_reference(a, b, h0, g, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_scan_without_h0_and_partial_grads(backend):
    T, shape = 9, (4, 3)
    b = torch.randn(T, *shape)  # no grad on b
    a = make_decay("full", T, shape)
    g = torch.randn(T, *shape)
    check_against_reference(a, b, None, g, backend)
    b.requires_grad_(True)
    a = make_decay("per_step", T, shape, requires_grad=False)
    check_against_reference(a, b, None, g, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["per_step", "full", "float"])
def test_scan_noncontiguous(backend, kind):
    T, shape = 13, (2, 7)
    b = noncontiguous(torch.randn(T, *shape)).requires_grad_()
    h0 = noncontiguous(torch.randn(*shape)).requires_grad_()
    a = make_decay(kind, T, shape)
    if isinstance(a, torch.Tensor) and a.shape[-1] > 1:
        a = noncontiguous(a.detach()).requires_grad_()
    g = noncontiguous(torch.randn(T, *shape))
    assert not b.is_contiguous() and not g.is_contiguous()
    check_against_reference(a, b, h0, g, backend)


@pytest.mark.parametrize("backend,kind", [("cpp", "float"), ("cpp", "full"), ("triton", "full")])
def test_scan_long_sequence(backend, kind):
    """T = 4096 with decays up to 1 (a pure integrator for 'float'): finite and equal to the float64 loop."""
    T, shape = 4096, ((2, 8) if backend == "cpp" else (3,))  # the Triton interpreter scans element by element
    b = torch.randn(T, *shape, requires_grad=True)
    a = 1.0 if kind == "float" else (torch.rand(T, *shape) * 0.1 + 0.9).requires_grad_()
    g = torch.randn(T, *shape)
    out = linear_scan(a, b, None, backend=backend)
    a64 = a if not isinstance(a, torch.Tensor) else a.double()
    ref = reference_linear_scan(a64, b.double())
    assert torch.isfinite(out).all()
    assert_close("h", ref, out, 1e-5)
    inputs = [b] + ([a] if isinstance(a, torch.Tensor) else [])
    got = torch.autograd.grad(out, inputs, g)
    want = torch.autograd.grad(ref, [b] + ([a64] if isinstance(a, torch.Tensor) else []), g.double())
    for o, r in zip(got, want):
        assert torch.isfinite(o).all()
        assert_close("grad", r, o, 1e-5)


def test_scan_bfloat16_cpp():
    T, shape = 20, (6,)
    b = torch.randn(T, *shape).bfloat16().requires_grad_()
    a = make_decay("per_step", T, shape).bfloat16().detach().requires_grad_()
    out = linear_scan(a, b, backend="cpp")
    assert out.dtype == torch.bfloat16
    ref = reference_linear_scan(a.float(), b.float())
    assert_close("h", ref, out.float(), 3e-2)
    out.sum().backward()
    assert b.grad.dtype == torch.bfloat16 and a.grad.dtype == torch.bfloat16


def test_scan_float64_auto_uses_reference():
    b = torch.randn(5, 3, dtype=torch.float64)
    assert_close("h", reference_linear_scan(0.5, b), linear_scan(0.5, b), 1e-12)


def test_scan_matches_closed_form():
    """A known answer (not only agreement between implementations): constant drive, scalar decay."""
    T, a = 50, 0.8
    out = linear_scan(a, torch.ones(T, 4), backend="cpp")
    want = torch.tensor([(1 - a ** (t + 1)) / (1 - a) for t in range(T)]).unsqueeze(1).expand(T, 4)
    assert_close("h", want, out, 1e-6)


def test_scan_bad_input():
    b = torch.randn(4, 3)
    with pytest.raises(ValueError, match="does not broadcast"):
        linear_scan(torch.rand(4, 2), b)
    with pytest.raises(ValueError, match="does not broadcast"):
        linear_scan(torch.rand(4), b)
    with pytest.raises(TypeError, match="a must be a float or a tensor"):
        linear_scan("0.5", b)
    with pytest.raises(TypeError, match="a must be a float or a tensor"):
        linear_scan(True, b)
    with pytest.raises(TypeError, match="b must be a floating-point"):
        linear_scan(0.5, torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="T >= 1"):
        linear_scan(0.5, torch.randn(0, 3))
    with pytest.raises(ValueError, match="h0 of shape"):
        linear_scan(0.5, b, torch.randn(4))
    with pytest.raises(ValueError, match="backend must be one of"):
        linear_scan(0.5, b, backend="cuda")


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_sequential_triton_baseline_matches_loop(mode):
    """kernels.scan.scan_forward_sequential (the benchmark's time-loop baseline) computes the same h."""
    from fastspike.kernels import scan as K

    T, M = 23, 10
    b, h0, a = torch.randn(T, M), torch.randn(M), torch.rand(T, M)
    a_k = [None, a[:, 0].contiguous(), a][mode]
    h = torch.empty(T, M)
    K.scan_forward_sequential(a_k, b, h0, h, T, M, mode, 0.7, block_m=4)
    a_ref = [0.7, a[:, :1], a][mode]
    assert_close("h", reference_linear_scan(a_ref, b, h0), h, 1e-6)


@pytest.mark.parametrize("kind", ["float", "per_step", "full"])
def test_scan_cpp_large_streaming_path(kind):
    """Outputs of >= 16 MiB with rows a multiple of 16 take the C++ streaming-store path (where the CPU has
    AVX-512): same results as the loop, for h and every gradient."""
    T, shape = 64, (64, 1024)  # 64 x 65536 floats = 16 MiB per tensor
    b = torch.randn(T, *shape, requires_grad=True)
    h0 = torch.randn(*shape, requires_grad=True)
    a = make_decay(kind, T, shape)
    g = torch.randn(T, *shape)
    check_against_reference(a, b, h0, g, "cpp")
