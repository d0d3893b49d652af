"""Compact storage of saved activations (fastspike.ops.bits.compact / restore, csrc/saved.cpp) and the layers that
use it on the CPU: layer.Conv2d / layer.Linear in training (input kept as bits or bytes, event-driven weight
gradient for sparse inputs, GEMM weight gradient on tiny maps). The compaction is the C++ backend's: these tests
run CPU tensors (tests/test_pool.py has the max-pooling layers, on every device)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import _ext, layer
from fastspike.ops import bits
from fastspike.ops.bits import saved as compact_module
from fastspike.ops.synapse import cpu as C
from fastspike.ops.synapse import dense
from helpers import assert_close, noncontiguous, saved_bytes

pytestmark = pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")


def _counts(shape, density, top=3):
    return torch.randint(1, top + 1, shape).float() * (torch.rand(shape) < density)


# -- compact / restore ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 7, 4096, 100_003, 3_000_001], ids=lambda n: f"n{n}")
def test_classification_matches_the_torch_oracle(n):
    ext = _ext.get()
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
        packed, values = torch.empty((n + 7) // 8, dtype=torch.uint8), torch.empty(n, dtype=torch.uint8)
        kind, nnz = ext.compact_saved(t.data_ptr(), n, packed.data_ptr(), values.data_ptr(), torch.get_num_threads())
        want = compact_module._kind_torch(t)
        assert (kind, nnz if kind else 0) == want, name
        if kind == bits.BITS:  # the same pass wrote both forms
            assert torch.equal(packed, bits.pack_bits(t.reshape(1, -1), backend="torch").reshape(-1)), name
        if kind:
            assert torch.equal(values, t.to(torch.uint8)), name


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.5, 255.5, 256.0, -float("inf")])
def test_values_that_are_neither_spikes_nor_counts_are_kept(value):
    t = (torch.rand(5000) < 0.3).float()
    t[1234] = value
    assert bits.compact(t) is t
    assert bits.compact(t.double(), sync_ok=True) is not None
    assert isinstance(bits.compact(t.double(), sync_ok=True), torch.Tensor)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", ["binary", "counts"])
def test_round_trip_is_exact(dtype, kind):
    x = ((torch.rand(3, 50, 41) < 0.2).float() if kind == "binary" else _counts((3, 50, 41), 0.4, 255)).to(dtype)
    fast = dtype is torch.float32
    p = bits.compact(x, sync_ok=not fast)
    assert isinstance(p, bits.Compacted), "should have been compacted"
    assert p.kind == (bits.BITS if kind == "binary" else bits.BYTES)
    assert p.payload.dtype == torch.uint8
    assert p.payload.numel() == (x.numel() + 7) // 8 if kind == "binary" else x.numel()
    assert p.nnz == int((x != 0).sum()) and p.shape == x.shape and p.dtype == x.dtype
    y = bits.restore(p)
    assert y.dtype == dtype and y.shape == x.shape and torch.equal(x, y)
    if not fast:  # without sync_ok only contiguous CPU float32 is looked at
        assert bits.compact(x) is x


def test_small_noncontiguous_and_grad_tensors():
    x = (torch.rand(64, 128) < 0.2).float()
    small = x[:10]  # 1280 elements, contiguous
    assert bits.compact(small) is small
    assert not isinstance(bits.compact(small, min_numel=1), torch.Tensor)
    nc = noncontiguous(x)
    assert bits.compact(nc) is nc
    p = bits.compact(nc, sync_ok=True)
    assert torch.equal(bits.restore(p), nc)
    with pytest.raises(AssertionError, match="does not require grad"):
        bits.compact(x.clone().requires_grad_())
    z = torch.zeros(5000)
    z[7] = -0.0
    assert torch.equal(bits.restore(bits.compact(z)), z)


def test_index_narrowing():
    idx = torch.randint(0, 1000, (50,))
    assert bits.narrow_indices(idx, 1000).dtype == torch.int16
    assert bits.narrow_indices(idx, 40000).dtype == torch.int32
    assert bits.narrow_indices(idx, 2 ** 40).dtype == torch.int64
    assert torch.equal(bits.widen_indices(bits.narrow_indices(idx, 1000)), idx)


# -- synapse layers in training ------------------------------------------------------------------------
CONV_CASES = [dict(k=3, stride=1, padding=1, dilation=1, groups=1),
              dict(k=3, stride=2, padding=1, dilation=1, groups=1),
              dict(k=1, stride=2, padding=0, dilation=1, groups=1),
              dict(k=3, stride=1, padding=2, dilation=2, groups=2),
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
    assert (H * W <= dense.GEMM_MAX_POSITIONS) == (H * W <= 4)
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
        packed = bits.compact(x, min_numel=1)  # 2160 elements
        assert packed.kind == bits.BYTES
        got = C.conv2d_grad_weight(packed.payload, x.shape, g, wg.shape, s, p, d, groups, values=True)
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
