"""Edges of the synapse and bit-packing ops (issue 18): named errors for bad arguments whatever the backend,
F.linear / F.conv2d's results for NaN / inf weights and zero-size dimensions, and the CUDA paths that must not
synchronise with the host (checked here through the Triton backend, which runs the same code on any device)."""
import math

import pytest
import torch
import torch.nn.functional as F

from fastspike import _ext, layer
from fastspike.ops import bits
from fastspike.ops import synapse as S
from helpers import DEVICE, KERNEL_BACKENDS, ON_CUDA, device_of, triton_runs_here

BACKENDS = ["torch"] + KERNEL_BACKENDS
# Triton's interpreter computes inf - inf with numpy, which warns; that NaN is the point of these tests
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@pytest.fixture(autouse=True)
def _exact_gpu_math():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _spikes(shape, density, device):
    return (torch.rand(shape, device=device) < density).float()


def _same(ref: torch.Tensor, out: torch.Tensor, tol: float = 1e-5) -> None:
    """Equal up to float rounding, with NaN and +-inf in exactly the same places."""
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert torch.equal(torch.isnan(out), torch.isnan(ref)), "NaN in other places than F.* gives"
    assert torch.equal(torch.isposinf(out), torch.isposinf(ref)) and torch.equal(torch.isneginf(out),
                                                                                 torch.isneginf(ref))
    fin = torch.isfinite(ref)
    torch.testing.assert_close(out[fin], ref[fin], rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------- NaN / inf weights
@pytest.mark.parametrize("event_driven", [True, "auto"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_nonfinite_weights_give_f_linear(backend, event_driven):
    dev = device_of(backend)
    x = _spikes((6, 10), 0.4, dev)
    x[0] = 0.0            # a row with no spike at all
    x[1] = 1.0            # a row where every input fired
    x[:, 3] = 0.0         # an input that never fires
    w = torch.randn(5, 10, device=dev)
    w[0, 3] = float("nan")   # NaN on a silent input: NaN * 0 = NaN for every row
    w[1, 2] = float("inf")   # inf: +inf where input 2 fired, NaN where it did not
    w[2, 4], w[2, 5] = float("inf"), -float("inf")  # inf - inf = NaN where both fired
    b = torch.randn(5, device=dev)
    b[4] = float("nan")      # a NaN bias: that output is NaN everywhere
    with torch.no_grad():
        out = S.synapse_linear(x, w, b, event_driven=event_driven, backend=backend)
    _same(F.linear(x, w, b), out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_nonfinite_weights_give_f_conv2d(backend):
    dev = device_of(backend)
    x = _spikes((2, 3, 6, 5), 0.3, dev)
    w = torch.randn(4, 3, 3, 3, device=dev)
    w[0, 1, 1, 1] = float("inf")  # the centre tap: inside the input for every output below
    w[2, 0, 0, 2] = float("nan")
    w[3, 2, 1, 1], w[3, 0, 1, 1] = float("inf"), -float("inf")
    for kw in (dict(padding=0), dict(padding=0, stride=2), dict(padding=0, dilation=(1, 2)), dict(padding=(1, 1))):
        if kw["padding"] != 0:
            w[2, 0, 0, 2] = 0.5  # only the centre taps are not finite: no padded tap meets them
        with torch.no_grad():
            out = S.synapse_conv2d(x, w, None, event_driven=True, backend=backend, **kw)
        _same(F.conv2d(x, w, None, **kw), out)


def _conv_without_padded_taps(x, w, stride, padding, dilation):
    """F.conv2d summed over the taps inside the input only (a non-finite weight on a padded tap adds nothing)."""
    B = x.shape[0]
    Cout, _, KH, KW = w.shape
    kw = dict(dilation=dilation, padding=padding, stride=stride)
    cols = F.unfold(x, (KH, KW), **kw)                                   # [B, C*KH*KW, L]
    inside = F.unfold(torch.ones_like(x), (KH, KW), **kw) > 0
    terms = torch.where(inside.unsqueeze(1), cols.unsqueeze(1) * w.reshape(1, Cout, -1, 1), 0.0)
    out_hw = F.conv2d(x, torch.zeros_like(w), None, stride, padding, dilation).shape[2:]
    return terms.sum(2).reshape(B, Cout, *out_hw)


@pytest.mark.skipif(not triton_runs_here(), reason="needs CUDA or TRITON_INTERPRET=1")
def test_triton_conv2d_skips_padded_taps_of_nonfinite_weights():
    # where a non-finite weight meets zero padding F.conv2d's result depends on the algorithm torch picks (oneDNN
    # and cuDNN skip padded taps, the im2col path multiplies them: nan); the Triton kernel skips them
    x = _spikes((2, 3, 6, 5), 0.3, DEVICE)
    w = torch.randn(4, 3, 3, 3, device=DEVICE)
    w[0, 1, 0, 0] = float("inf")  # reads the top-left padding
    w[2, 0, 2, 1] = float("nan")
    for stride, padding, dilation in (((1, 1), (1, 1), (1, 1)), ((2, 1), (2, 1), (1, 2))):
        with torch.no_grad():
            out = S.synapse_conv2d(x, w, None, stride, padding, dilation, event_driven=True, backend="triton")
        _same(_conv_without_padded_taps(x, w, stride, padding, dilation), out)


@pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")
def test_cpp_nonfinite_check_is_cached_per_weight_version(monkeypatch):
    calls = []
    real = torch.isfinite
    monkeypatch.setattr(torch, "isfinite", lambda t: calls.append(1) or real(t))
    x = _spikes((4, 16), 0.3, "cpu")
    w = torch.randn(8, 16)
    with torch.no_grad():
        for _ in range(3):
            S.synapse_linear(x, w, event_driven=True, backend="cpp")
        assert len(calls) == 1  # one pass per weight version
        w[0, 0] = float("inf")  # an in-place update bumps the version: checked again, and taken into account
        out = S.synapse_linear(x, w, event_driven=True, backend="cpp")
    assert len(calls) == 2
    _same(F.linear(x, w), out)


# ------------------------------------------------------------------------------------------- named errors
@pytest.mark.parametrize("backend", BACKENDS)
def test_tensors_on_another_device_are_refused_by_name(backend):
    dev = device_of(backend)
    x = _spikes((3, 8), 0.5, dev)
    w = torch.randn(4, 8, device=dev)
    with pytest.raises(ValueError, match="bias is on meta"):
        S.synapse_linear(x, w, torch.zeros(4, device="meta"), event_driven=True, backend=backend)
    with pytest.raises(ValueError, match="weight is on meta"):
        S.synapse_linear(x, torch.zeros(4, 8, device="meta"), event_driven=True, backend=backend)
    xc = _spikes((1, 2, 5, 5), 0.5, dev)
    wc = torch.randn(3, 2, 3, 3, device=dev)
    with pytest.raises(ValueError, match="bias is on meta"):
        S.synapse_conv2d(xc, wc, torch.zeros(3, device="meta"), event_driven=True, backend=backend)


@pytest.mark.parametrize("event_driven", [True, False, "auto"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_kernel_shape_errors_are_named(backend, event_driven):
    dev = device_of(backend)
    x = _spikes((1, 2, 4, 4), 0.5, dev)
    big = torch.randn(3, 2, 5, 5, device=dev)
    with pytest.raises(ValueError, match="larger than the padded input"):
        S.synapse_conv2d(x, big, event_driven=event_driven, backend=backend)
    assert S.synapse_conv2d(x, big, padding=1, event_driven=event_driven, backend=backend).shape == (1, 3, 2, 2)
    with pytest.raises(ValueError, match="at least 1x1"):
        S.synapse_conv2d(x, torch.randn(3, 2, 0, 3, device=dev), event_driven=event_driven, backend=backend)
    # a dilation that overflows 32 bits: the same named error, never a negative dimension
    with pytest.raises(ValueError, match="larger than the padded input"):
        S.synapse_conv2d(x, torch.randn(3, 2, 3, 3, device=dev), dilation=2 ** 30, event_driven=event_driven,
                         backend=backend)
    for arg, value in (("stride", 0), ("stride", (1, 2, 3)), ("padding", -1), ("dilation", 0), ("stride", 1.5)):
        with pytest.raises(ValueError, match=arg):
            S.synapse_conv2d(x, torch.randn(3, 2, 3, 3, device=dev), event_driven=event_driven, backend=backend,
                             **{arg: value})
    with pytest.raises(ValueError, match="groups"):
        S.synapse_conv2d(x, torch.randn(3, 2, 3, 3, device=dev), groups=0, backend=backend)
    with pytest.raises(TypeError, match="weight must be a floating-point"):
        S.synapse_conv2d(x, torch.ones(3, 2, 3, 3, dtype=torch.int64, device=dev), backend=backend)


# ------------------------------------------------------------------------------------------- zero sizes
@pytest.mark.parametrize("event_driven", [True, False, "auto"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_size_dims_give_f_linear(backend, event_driven):
    dev = device_of(backend)
    for xs, ws in (((3, 0), (5, 0)), ((0, 7), (5, 7)), ((2, 0, 7), (5, 7)), ((4, 7), (0, 7))):
        x = torch.zeros(xs, device=dev)
        w = torch.randn(ws, device=dev, requires_grad=True)
        b = torch.randn(ws[0], device=dev, requires_grad=True)
        out = S.synapse_linear(x, w, b, event_driven=event_driven, backend=backend)
        ref = F.linear(x, w, b)
        assert out.shape == ref.shape and torch.equal(out, ref)
        if out.numel():
            gw, gb = torch.autograd.grad(out.sum(), (w, b))
            assert torch.equal(gb, torch.full_like(gb, math.prod(xs[:-1])))
            assert gw.shape == w.shape


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_size_bits(backend):
    dev = device_of(backend)
    for shape in ((3, 0), (0, 5), (2, 0, 9)):
        x = torch.zeros(shape, device=dev)
        packed = bits.pack_bits(x, backend=backend)
        assert packed.shape == (*shape[:-1], (shape[-1] + 7) // 8) and packed.dtype == torch.uint8
        assert torch.equal(bits.unpack_bits(packed, shape[-1], backend=backend), x)
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        bits.unpack_bits(torch.zeros(2, 1, dtype=torch.uint8, device=dev), -3)


# ------------------------------------------------------------------------------------ no host synchronisation
_SYNCS = ("item", "__bool__", "__int__", "__float__", "tolist")


def _forbid_syncs(monkeypatch):
    """Reading a tensor value on the host raises (what torch.cuda.set_sync_debug_mode('error') does on CUDA)."""
    def refuse(self, *a, **k):
        raise AssertionError("a tensor value was read on the host")
    for name in _SYNCS:
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.skipif(not triton_runs_here(), reason="needs CUDA or TRITON_INTERPRET=1")
@pytest.mark.parametrize("event_driven", [False, "auto"])
def test_cuda_dense_and_auto_paths_read_nothing_back(monkeypatch, event_driven):
    # the Triton backend's 'auto' and dense paths decide from metadata alone and save the input as torch does
    x = _spikes((6, 20), 0.3, DEVICE)
    w = torch.randn(7, 20, device=DEVICE, requires_grad=True)
    xc = _spikes((1, 3, 6, 6), 0.3, DEVICE)
    wc = torch.randn(4, 3, 3, 3, device=DEVICE, requires_grad=True)
    refs = (F.linear(x, w), F.conv2d(xc, wc, padding=1))
    _forbid_syncs(monkeypatch)
    outs = (S.synapse_linear(x, w, event_driven=event_driven, backend="triton"),
            S.synapse_conv2d(xc, wc, padding=1, event_driven=event_driven, backend="triton"))
    grads = torch.autograd.grad(outs[0].sum() + outs[1].sum(), (w, wc))
    monkeypatch.undo()
    ref_grads = torch.autograd.grad(refs[0].sum() + refs[1].sum(), (w, wc))
    for a, b in zip(refs + ref_grads, outs + grads):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not triton_runs_here(), reason="needs CUDA or TRITON_INTERPRET=1")
def test_cuda_event_path_without_its_check_poisons_non_binary_rows(monkeypatch):
    # while a CUDA graph is captured (or torch.compile traces) the Triton event path may not read its binarity
    # flag back: it then reads nothing, trains as usual on binary input, and a non-binary input gives NaN
    # outputs (the rows, or the output pixels, it feeds) instead of a plausible wrong answer
    import fastspike.ops.synapse as pkg
    x = _spikes((5, 24), 0.3, DEVICE)
    w = torch.randn(6, 24, device=DEVICE, requires_grad=True)
    ref = F.linear(x, w)
    g_ref = torch.autograd.grad(ref.sum(), w)[0]
    monkeypatch.setattr(pkg, "may_sync", lambda t: False)
    _forbid_syncs(monkeypatch)
    out = S.synapse_linear(x, w, event_driven=True, backend="triton")
    g = torch.autograd.grad(out.sum(), w)[0]
    bad = x.clone()
    bad[2, 5] = 0.5
    poisoned = S.synapse_linear(bad, w.detach(), event_driven=True, backend="triton")
    xc = _spikes((1, 2, 5, 5), 0.4, DEVICE)
    xc[0, 1, 2, 2] = 3.0
    conv = S.synapse_conv2d(xc, torch.randn(3, 2, 3, 3, device=DEVICE), event_driven=True, backend="triton")
    monkeypatch.undo()
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)
    assert torch.isnan(poisoned[2]).all() and torch.isfinite(poisoned[[0, 1, 3, 4]]).all()
    # the 3x3 kernel without padding: output pixels (0..2, 0..2) all read input pixel (2, 2)
    assert torch.isnan(conv).all()
    with pytest.raises(ValueError, match="binary"):  # where it may read the flag, the same input is refused
        S.synapse_linear(bad, w, event_driven=True, backend="triton")


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("event_driven", [False, "auto"])
def test_cuda_training_step_never_synchronises(event_driven):
    net = torch.nn.Sequential(layer.Conv2d(3, 8, 3, padding=1, event_driven=event_driven), layer.Flatten(),
                              layer.Linear(8 * 8 * 8, 10, event_driven=event_driven)).cuda()
    x = _spikes((4, 3, 8, 8), 0.2, "cuda")
    net(x).sum().backward()  # warm-up (lazy initialisation may synchronise)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        net(x).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA")
def test_cuda_event_path_captures_in_a_cuda_graph():
    w = torch.randn(16, 64, device="cuda")
    x = _spikes((8, 64), 0.1, "cuda")
    S.synapse_linear(x, w, event_driven=True)  # warm-up: compiles the kernels
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = S.synapse_linear(x, w, event_driven=True)
    fresh = _spikes((8, 64), 0.1, "cuda")
    x.copy_(fresh)
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, F.linear(fresh, w), rtol=1e-5, atol=1e-5)
