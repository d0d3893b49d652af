"""Compact storage of saved activations (fastspike.ops._saved, csrc/saved.cpp) and the layers that use it:
layer.Conv2d / layer.Linear in training (input kept as bits or bytes, event-driven weight gradient for sparse
inputs, GEMM weight gradient on tiny maps) and the max-pooling layers (int16 indices, csrc/pool.cpp)."""
import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import _ext, layer
from fastspike.ops import _saved
from fastspike.ops import synapse as S
from helpers import assert_close, noncontiguous, saved_bytes

pytestmark = pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")


def _counts(shape, density, top=3):
    return torch.randint(1, top + 1, shape).float() * (torch.rand(shape) < density)


# -- compact / restore ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 4096, 100_003, 3_000_001], ids=lambda n: f"n{n}")
def test_classification_matches_the_torch_oracle(n):
    C = _ext.get()
    cases = {"binary": (torch.rand(n) < 0.1).float(), "counts": _counts((n,), 0.3, 255),
             "zeros": torch.zeros(n), "real": torch.randn(n)}
    if n > 1:
        late = (torch.rand(n) < 0.2).float()
        late[-1] = 2.0  # a count in the very last element: the early-exit pass must still see it
        cases["count_at_end"] = late
        frac = late.clone()
        frac[-1] = 0.5
        cases["fraction_at_end"] = frac
    for name, t in cases.items():
        bits, values = torch.empty((n + 7) // 8, dtype=torch.uint8), torch.empty(n, dtype=torch.uint8)
        kind, nnz = C.compact_saved(t.data_ptr(), n, bits.data_ptr(), values.data_ptr(), torch.get_num_threads())
        want = _saved._kind_torch(t)
        assert (kind, nnz if kind else 0) == want, name
        if kind == _saved.BITS:  # the same pass wrote both forms
            assert torch.equal(bits, S.pack_bits(t.reshape(1, -1), backend="torch").reshape(-1)), name
        if kind:
            assert torch.equal(values, t.to(torch.uint8)), name


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.5, 255.5, 256.0, -float("inf")])
def test_values_that_are_neither_spikes_nor_counts_are_kept(value):
    t = (torch.rand(5000) < 0.3).float()
    t[1234] = value
    assert _saved.compact(t) is t
    assert _saved.compact(t.double(), sync_ok=True) is not None
    assert isinstance(_saved.compact(t.double(), sync_ok=True), torch.Tensor)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["binary", "counts"])
def test_round_trip_is_exact(dtype, kind):
    x = ((torch.rand(3, 50, 41) < 0.2).float() if kind == "binary" else _counts((3, 50, 41), 0.4, 255)).to(dtype)
    fast = dtype is torch.float32
    p = _saved.compact(x, sync_ok=not fast)
    assert not isinstance(p, torch.Tensor), "should have been compacted"
    assert p[0] == (_saved.BITS if kind == "binary" else _saved.BYTES)
    assert p[1].dtype == torch.uint8
    assert p[1].numel() == (x.numel() + 7) // 8 if kind == "binary" else x.numel()
    assert p[3] == int((x != 0).sum())
    y = _saved.restore(p)
    assert y.dtype == dtype and y.shape == x.shape and torch.equal(x, y)
    if not fast:  # without sync_ok only contiguous CPU float32 is looked at
        assert _saved.compact(x) is x


def test_small_noncontiguous_and_grad_tensors():
    x = (torch.rand(64, 128) < 0.2).float()
    small = x[:10]  # 1280 elements, contiguous
    assert _saved.compact(small) is small
    assert not isinstance(_saved.compact(small, min_numel=1), torch.Tensor)
    nc = noncontiguous(x)
    assert _saved.compact(nc) is nc
    p = _saved.compact(nc, sync_ok=True)
    assert torch.equal(_saved.restore(p), nc)
    with pytest.raises(AssertionError, match="does not require grad"):
        _saved.compact(x.clone().requires_grad_())
    z = torch.zeros(5000)
    z[7] = -0.0
    assert torch.equal(_saved.restore(_saved.compact(z)), z)


def test_index_narrowing():
    idx = torch.randint(0, 1000, (50,))
    assert _saved.narrow_indices(idx, 1000).dtype == torch.int16
    assert _saved.narrow_indices(idx, 40000).dtype == torch.int32
    assert _saved.narrow_indices(idx, 2 ** 40).dtype == torch.int64
    assert torch.equal(_saved.widen_indices(_saved.narrow_indices(idx, 1000)), idx)


# -- synapse layers in training ------------------------------------------------------------------------
CONV_CASES = [dict(k=3, stride=1, padding=1, dilation=1, groups=1), dict(k=3, stride=2, padding=1, dilation=1, groups=1),
              dict(k=1, stride=2, padding=0, dilation=1, groups=1), dict(k=3, stride=1, padding=2, dilation=2, groups=2),
              dict(k=5, stride=3, padding=1, dilation=1, groups=1)]


def _conv_pair(c, cin=8, cout=12, bias=True):
    ours = layer.Conv2d(cin, cout, c["k"], c["stride"], c["padding"], c["dilation"], c["groups"], bias=bias)
    ref = nn.Conv2d(cin, cout, c["k"], c["stride"], c["padding"], c["dilation"], c["groups"], bias=bias)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "k{k}s{stride}p{padding}d{dilation}g{groups}".format(**c))
@pytest.mark.parametrize("kind", ["spikes-sparse", "spikes-dense", "counts-sparse", "counts-dense", "real"])
def test_conv2d_training_matches_nn_conv2d(case, kind):
    shape = (3, 8, 13, 11)
    x = {"spikes-sparse": lambda: (torch.rand(shape) < 0.03).float(),
         "spikes-dense": lambda: (torch.rand(shape) < 0.5).float(),
         "counts-sparse": lambda: _counts(shape, 0.05),
         "counts-dense": lambda: _counts(shape, 0.6),
         "real": lambda: torch.randn(shape)}[kind]()
    ours, ref = _conv_pair(case)
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yr = ours(xo), ref(xr)
    assert torch.equal(yo, yr), "the forward must be torch's convolution itself"
    g = noncontiguous(torch.randn(yr.shape))
    yo.backward(g)
    yr.backward(g)
    assert torch.equal(xo.grad, xr.grad), "the input gradient must be torch's own"
    assert_close("grad_w", ref.weight.grad, ours.weight.grad, 1e-5)
    assert_close("grad_b", ref.bias.grad, ours.bias.grad, 1e-5)
    # what is kept for the weight gradient: 1 bit per spike input element, 1 byte per count, 4 per real
    ours.weight.grad = None
    n = saved_bytes(lambda: ours(x), [ours.weight, ours.bias])
    expect = {"spikes": (x.numel() + 7) // 8, "counts": x.numel(), "real": 4 * x.numel()}[kind.split("-")[0]]
    assert n == expect, (n, expect)


@pytest.mark.parametrize("maps", [(2, 2), (4, 4), (1, 3)])
def test_conv2d_tiny_maps_gemm_weight_gradient(maps):
    # output maps of <= 4 positions take the weight gradient as one GEMM of the unfolded input
    H, W = maps
    x = torch.randn(6, 16, H, W)
    ours, ref = _conv_pair(dict(k=3, stride=1, padding=1, dilation=1, groups=1), 16, 24)
    assert (H * W <= S._GEMM_WEIGHT_GRAD_MAX_POSITIONS) == (H * W <= 4)
    yo, yr = ours(x), ref(x)
    g = torch.randn(yr.shape)
    yo.backward(g)
    yr.backward(g)
    assert_close("grad_w", ref.weight.grad, ours.weight.grad, 1e-5)


def test_conv2d_event_weight_gradient_from_bytes_matches_reference():
    # the C++ event-driven weight gradient with one uint8 value per input element (spike counts up to 255)
    x = _counts((4, 6, 9, 10), 0.1, 255)
    w = torch.randn(8, 3, 3, 3)
    for s, p, d, groups in [((1, 1), (1, 1), (1, 1), 2), ((2, 1), (0, 2), (1, 2), 1)]:
        wg = w if groups == 2 else torch.randn(8, 6, 3, 3)
        y = F.conv2d(x, wg, None, s, p, d, groups)
        g = torch.randn(y.shape)
        packed = _saved.compact(x, min_numel=1)  # 2160 elements
        assert packed[0] == _saved.BYTES
        got = S._cpp_conv2d_grad_weight(packed[1], x.shape, g, wg.shape, s, p, d, groups, values=True)
        ref = torch.nn.grad.conv2d_weight(x, wg.shape, g, s, p, d, groups)
        assert_close("grad_w", ref, got, 1e-5)


@pytest.mark.parametrize("kind", ["spikes", "counts", "real"])
def test_linear_training_matches_nn_linear(kind):
    shape = (4, 5, 37)
    x = {"spikes": (torch.rand(shape) < 0.1).float(), "counts": _counts(shape, 0.2), "real": torch.randn(shape)}[kind]
    ours = layer.Linear(37, 9, step_mode="m")
    ref = nn.Linear(37, 9)
    ref.load_state_dict(ours.state_dict())
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yr = ours(xo), ref(xr)
    assert torch.equal(yo, yr)
    g = torch.randn(yr.shape)
    yo.backward(g)
    yr.backward(g)
    assert_close("grad_x", xr.grad, xo.grad, 1e-6)
    assert_close("grad_w", ref.weight.grad, ours.weight.grad, 1e-5)
    n = saved_bytes(lambda: ours(x), [ours.weight, ours.bias])
    assert n == {"spikes": (x.numel() + 7) // 8, "counts": x.numel(), "real": 4 * x.numel()}[kind]


# -- max pooling ---------------------------------------------------------------------------------------
POOL = list(itertools.product([1, 2, 3, 5], [1, 2, 3], [0, 1, 2], [1, 2], [False, True]))


@pytest.mark.parametrize("shape", [(2, 3, 9, 11), (3, 7, 8), (1, 2, 13, 40), (1, 1, 1, 1)], ids=str)
def test_max_pool2d_equals_torch(shape):
    checked = 0
    for i, (k, s, p, d, ceil) in enumerate(POOL):
        if p > k // 2:
            continue
        x = torch.randn(*shape)
        if i % 3 == 0:
            x = (x > 0.3).float()  # spikes: ties everywhere, the first maximum must win
        if i % 5 == 0:
            x.view(-1)[:: 7] = float("nan")
        try:
            out_ref, idx_ref = F.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
        except RuntimeError:  # torch rejects the configuration (output too small)
            continue
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        out = layer.MaxPool2d(k, s, p, d, ceil_mode=ceil)(xo)
        assert torch.equal(out.nan_to_num(7.0), out_ref.nan_to_num(7.0)), (k, s, p, d, ceil)
        g = torch.randn(out.shape)
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


def test_max_pool_1d_3d_and_empty_windows():
    for cls, ref_cls, shape in ((layer.MaxPool1d, nn.MaxPool1d, (2, 3, 17)), (layer.MaxPool3d, nn.MaxPool3d, (2, 2, 5, 6, 7))):
        x = torch.randn(*shape)
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        yo, yr = cls(3, 2, 1)(xo), ref_cls(3, 2, 1)(xr)
        assert torch.equal(yo, yr)
        g = torch.randn(yo.shape)
        yo.backward(g)
        yr.backward(g)
        assert torch.equal(xo.grad, xr.grad)
    # dilation 2 on a 1x1 map: every window misses the input; -inf out, no gradient anywhere, no crash
    x = torch.randn(1, 2, 1, 1, requires_grad=True)
    out = layer.MaxPool2d(2, 1, 1, 2)(x)
    assert torch.isinf(out).all()
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


def test_max_pool_keeps_only_narrow_indices():
    x = (torch.rand(4, 8, 32, 32) < 0.2).float().requires_grad_()
    m = layer.MaxPool2d(3, 2, 1)
    n = saved_bytes(lambda: m(x), [])
    assert n == 4 * 8 * 16 * 16 * 2  # int16 indices only (torch keeps the float input and int64 indices)
    # outside training, and with return_indices, it is torch's layer unchanged
    with torch.no_grad():
        assert torch.equal(m(x), F.max_pool2d(x, 3, 2, 1))
    out, idx = layer.MaxPool2d(3, 2, 1, return_indices=True)(x)
    assert idx.dtype == torch.int64


def test_max_pool_backward_kernel_rejects_out_of_range_indices():
    if not _ext.available():
        pytest.skip("the C++ extension is not built")
    g = torch.randn(2, 3)
    gx = torch.empty(2, 4)
    ok = torch.tensor([[0, 3, 3], [1, 1, 2]], dtype=torch.int16)
    _ext.get().max_pool_backward(ok.data_ptr(), 2, g.data_ptr(), gx.data_ptr(), 2, 3, 4, 1)
    assert torch.equal(gx, torch.zeros(2, 4).scatter_add_(1, ok.long(), g))
    bad = torch.tensor([[0, 4, 3], [1, -1, 2]], dtype=torch.int32)
    with pytest.raises(ValueError, match="outside"):
        _ext.get().max_pool_backward(bad.data_ptr(), 4, g.data_ptr(), gx.data_ptr(), 2, 3, 4, 1)
