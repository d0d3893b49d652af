"""Max pooling that keeps only narrow argmax indices (fastspike.ops.max_pool, ops/pool/, csrc/pool.cpp) and the
layers that use it in training: torch's outputs and gradients to the bit, on every backend this machine runs."""
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import _ext, layer
from fastspike.ops.pool import max_pool
from helpers import DEVICE, ON_CUDA, saved_bytes

POOL = list(itertools.product([1, 2, 3, 5], [1, 2, 3], [0, 1, 2], [1, 2], [False, True]))
# the C++ op runs CPU tensors; 'torch' runs the device's (CUDA when there is one)
POOL_BACKENDS = [pytest.param("cpp", marks=pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")),
                 "torch"]


def _device(backend):
    return torch.device("cpu") if backend == "cpp" else DEVICE


@pytest.mark.parametrize("backend", POOL_BACKENDS)
@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (3, 7, 8), (1, 2, 13, 40), (1, 1, 1, 1)], ids=str)
def test_max_pool2d_equals_torch(shape, backend):
    dev = _device(backend)
    checked = 0
    for i, (k, s, p, d, ceil) in enumerate(POOL):
        if p > k // 2:
            continue
        x = torch.randn(*shape, device=dev)
        if i % 3 == 0:
            x = (x > 0.3).float()  # spikes: ties everywhere, the first maximum must win
        if i % 5 == 0:
            x.view(-1)[:: 7] = float("nan")
        try:
            out_ref, idx_ref = F.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        except RuntimeError:  # torch rejects the configuration (output too small)
            continue
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        out = max_pool(xo, 2, k, s, p, d, ceil, backend=backend)
        assert torch.equal(out.nan_to_num(7.0), out_ref.nan_to_num(7.0)), (k, s, p, d, ceil)
        g = torch.randn(out.shape, device=dev)
        out.backward(g)
        plane = shape[-1] * shape[-2]
        if idx_ref.numel() and int(idx_ref.max()) >= plane:
            # a window with no element inside the input: torch's index points past the plane (its own backward
            # writes out of bounds there); fastspike drops that output's gradient
            continue
        nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)(xr).backward(g)
        assert torch.equal(xo.grad.nan_to_num(), xr.grad.nan_to_num()), (k, s, p, d, ceil)
        checked += 1
    assert checked > 20


def test_max_pool_layers_1d_3d_and_empty_windows():
    for cls, ref_cls, shape in ((layer.MaxPool1d, nn.MaxPool1d, (2, 3, 17)),
                                (layer.MaxPool3d, nn.MaxPool3d, (2, 2, 5, 6, 7))):
        x = torch.randn(*shape, device=DEVICE)
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        yo, yr = cls(3, 2, 1)(xo), ref_cls(3, 2, 1)(xr)
        assert torch.equal(yo, yr)
        g = torch.randn(yo.shape, device=DEVICE)
        yo.backward(g)
        yr.backward(g)
        assert torch.equal(xo.grad, xr.grad)
    # dilation 2 on a 1x1 map: every window misses the input; -inf out, no gradient anywhere, no crash
    x = torch.randn(1, 2, 1, 1, device=DEVICE, requires_grad=True)
    out = layer.MaxPool2d(2, 1, 1, 2)(x)
    assert torch.isinf(out).all()
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_max_pool_keeps_only_narrow_indices():
    x = (torch.rand(4, 8, 32, 32, device=DEVICE) < 0.2).float().requires_grad_()
    m = layer.MaxPool2d(3, 2, 1)
    n = saved_bytes(lambda: m(x), [])
    assert n == 4 * 8 * 16 * 16 * 2  # int16 indices only (torch keeps the float input and int64 indices)
    # outside training, and with return_indices, it is torch's layer unchanged
    with torch.no_grad():
        assert torch.equal(m(x), F.max_pool2d(x, 3, 2, 1))
    out, idx = layer.MaxPool2d(3, 2, 1, return_indices=True)(x)
    assert idx.dtype == torch.int64


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_max_pool_batch_zero_and_large_planes(backend):
    dev = _device(backend)
    # batch 0: torch's empty result and an empty gradient (an earlier version raised a reshape error)
    x = torch.randn(0, 3, 8, 8, device=dev, requires_grad=True)
    out = max_pool(x, 2, 2, backend=backend)
    assert out.shape == (0, 3, 4, 4)
    out.sum().backward()
    assert x.grad.shape == x.shape
    for cls in (layer.MaxPool1d, layer.MaxPool2d, layer.MaxPool3d):
        dims = {layer.MaxPool1d: 1, layer.MaxPool2d: 2, layer.MaxPool3d: 3}[cls]
        xe = torch.randn((0, 2) + (6,) * dims, device=dev, requires_grad=True)
        cls(2)(xe).sum().backward()
        assert torch.equal(xe.grad, torch.zeros_like(xe))
    # a plane of more than 32767 elements: int32 indices, same result and gradient as torch
    x = torch.randn(1, 2, 200, 170, device=dev)
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = max_pool(xo, 2, 3, 2, 1, backend=backend)
    ref = F.max_pool2d(xr, 3, 2, 1)
    assert torch.equal(out, ref)
    g = torch.randn(out.shape, device=dev)
    out.backward(g)
    ref.backward(g)
    assert torch.equal(xo.grad, xr.grad)
    n = saved_bytes(lambda: max_pool(xo, 2, 3, 2, 1, backend=backend), [])
    assert n == out.numel() * 4


def test_max_pool_errors_name_the_argument():
    x = torch.randn(1, 2, 8, 8, device=DEVICE, requires_grad=True)
    with pytest.raises(ValueError, match="dims"):
        max_pool(x, 4, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        max_pool(x, 2, 0)
    with pytest.raises(ValueError, match="stride"):
        max_pool(x, 2, 2, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="dilation"):
        max_pool(x, 2, 2, dilation=0)
    with pytest.raises(ValueError, match="x must have 3 or 4 dimensions"):
        max_pool(x[0, 0], 2, 2)
    with pytest.raises(ValueError, match="no Triton kernel"):
        max_pool(x, 2, 2, backend="triton")
    with pytest.raises(TypeError, match="x must be"):
        max_pool([1.0], 2, 2)
    # a huge dilation: torch's own error about the output size (no int32 overflow, no reshape error)
    with pytest.raises(RuntimeError, match="[Oo]utput size is too small"):
        max_pool(x, 2, 2, dilation=2 ** 30)


def test_max_pool_is_a_public_op_with_a_reference():
    from fastspike.ops import reference
    x = torch.randn(2, 3, 9, 9, device=DEVICE, requires_grad=True)
    assert torch.equal(max_pool(x, 2, 3, 2, 1), reference.max_pool(x, 2, 3, 2, 1))


@pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")
def test_max_pool_backward_kernel_rejects_out_of_range_indices():
    g = torch.randn(2, 3)
    gx = torch.empty(2, 4)
    ok = torch.tensor([[0, 3, 3], [1, 1, 2]], dtype=torch.int16)
    _ext.get().max_pool_backward(ok.data_ptr(), 2, g.data_ptr(), gx.data_ptr(), 2, 3, 4, 1)
    assert torch.equal(gx, torch.zeros(2, 4).scatter_add_(1, ok.long(), g))
    bad = torch.tensor([[0, 4, 3], [1, -1, 2]], dtype=torch.int32)
    with pytest.raises(ValueError, match="outside"):
        _ext.get().max_pool_backward(bad.data_ptr(), 4, g.data_ptr(), gx.data_ptr(), 2, 3, 4, 1)


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA (the 'auto' backend of a CUDA tensor)")
def test_cuda_runs_torch_kernels():
    x = torch.randn(2, 3, 8, 8, device="cuda", requires_grad=True)
    out = max_pool(x, 2, 2)
    assert out.is_cuda and torch.equal(out, F.max_pool2d(x, 2))
