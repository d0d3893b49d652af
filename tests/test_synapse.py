"""Event-driven synapses and bit-packed spike storage against F.linear / F.conv2d on every backend that runs here
(tensors on each backend's device: the real GPU kernels on a CUDA machine, Triton's interpreter elsewhere)."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from fastspike import _ext
from fastspike.bench.cases.synapse import calibrate
from fastspike.ops import bits, reference
from fastspike.ops import synapse as S
from fastspike.ops.synapse import cpu as C
from fastspike.ops.synapse import weights
from helpers import DEVICE, KERNEL_BACKENDS, ON_CUDA, assert_close, device_of, noncontiguous, record_statuses, \
    saved_bytes

DENSITIES = [0.0, 1e-3, 0.05, 0.5, 1.0]
TOL = 1e-5
BACKENDS = ["torch"] + KERNEL_BACKENDS
needs_cpp = pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")


@pytest.fixture(autouse=True)
def _exact_gpu_math():
    """cuBLAS / cuDNN's TF32 would differ from the float32 references by 1e-4 (docs/synapses.md)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _dev(backend):
    return device_of(backend)


def _spikes(shape, density, device=DEVICE):
    x = (torch.rand(shape, device=device) < density).float()
    if density == 1.0:
        assert bool(x.all())
    return x


def _interpreted(backend) -> bool:
    return backend == "triton" and not ON_CUDA


def _linear_shapes(backend):
    # the interpreter is slow: tiny shapes for triton on the CPU
    return (7, 37, 19) if _interpreted(backend) else (67, 301, 133)


@pytest.mark.parametrize("density", DENSITIES, ids=lambda d: f"d{d}")
@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_event_matches_f_linear(backend, density):
    M, K, N = _linear_shapes(backend)
    dev = _dev(backend)
    x = _spikes((M, K), density, dev)
    w = torch.randn(N, K, device=dev, requires_grad=True)
    b = torch.randn(N, device=dev, requires_grad=True)
    xn = noncontiguous(x).requires_grad_()
    out = S.synapse_linear(xn, w, b, event_driven=True, backend=backend)
    xr = x.clone().requires_grad_()
    ref = F.linear(xr, w, b)
    assert_close("out", ref, out, TOL)
    g = noncontiguous(torch.randn_like(ref))
    got = torch.autograd.grad(out, (xn, w, b), g)
    exp = torch.autograd.grad(ref, (xr, w, b), g)
    for name, e, o in zip(("grad_x", "grad_w", "grad_b"), exp, got):
        assert_close(name, e, o, TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_linear_leading_dims_no_bias_and_dense_path(backend):
    dev = _dev(backend)
    x = _spikes((3, 2, 29), 0.2, dev)  # [T, N, K]
    w = torch.randn(11, 29, device=dev, requires_grad=True)
    for ed in (True, False, "auto"):
        out = S.synapse_linear(x, w, None, event_driven=ed, backend=backend)
        ref = F.linear(x, w)
        assert out.shape == (3, 2, 11)
        assert_close(f"out[{ed}]", ref, out, TOL)
        g = torch.randn_like(ref)
        assert_close(f"grad_w[{ed}]", torch.autograd.grad(ref, w, g)[0], torch.autograd.grad(out, w, g)[0], TOL)


def _conv_cases(backend):
    tiny = _interpreted(backend)
    if tiny:
        return [((2, 4, 5, 7), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2))]
    return [((3, 6, 9, 11), (8, 6, 3, 3), dict(stride=1, padding=1, dilation=1, groups=1)),
            ((2, 6, 10, 7), (9, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=3)),
            # outputs in blocks of 16 / 64 / 128 and rows of >= 16 pixels: the register-blocked C++ path and its
            # 16 x 16 transposed store, with ragged tails
            ((1, 3, 5, 17), (48, 3, 3, 3), dict(stride=1, padding=1, dilation=1, groups=1)),
            ((1, 4, 4, 33), (64, 4, 1, 3), dict(stride=1, padding=(0, 1), dilation=1, groups=1)),
            ((1, 2, 3, 16), (128, 2, 3, 3), dict(stride=1, padding=1, dilation=1, groups=1)),
            # the C++ compaction works on bands of input rows: 13 rows of 2 images give a ragged last band
            ((2, 5, 13, 6), (16, 5, 3, 3), dict(stride=1, padding=1, dilation=1, groups=1))]


@pytest.mark.parametrize("density", DENSITIES, ids=lambda d: f"d{d}")
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_event_matches_f_conv2d(backend, density):
    dev = _dev(backend)
    for xs, ws, kw in _conv_cases(backend):
        x = _spikes(xs, density, dev)
        w = torch.randn(ws, device=dev, requires_grad=True)
        b = torch.randn(ws[0], device=dev, requires_grad=True)
        xn = noncontiguous(x).requires_grad_()
        out = S.synapse_conv2d(xn, w, b, event_driven=True, backend=backend, **kw)
        xr = x.clone().requires_grad_()
        ref = F.conv2d(xr, w, b, **kw)
        assert_close(f"out{kw}", ref, out, TOL)
        g = noncontiguous(torch.randn_like(ref))
        got = torch.autograd.grad(out, (xn, w, b), g)
        exp = torch.autograd.grad(ref, (xr, w, b), g)
        for name, e, o in zip(("grad_x", "grad_w", "grad_b"), exp, got):
            assert_close(f"{name}{kw}", e, o, TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_event_inference_uses_cached_weight_copy(backend):
    # without grad the transposed weight is cached per version (training: transposed per call by the kernel);
    # an in-place update of the weight must be seen by the next call
    dev = _dev(backend)
    for xs, ws, kw in _conv_cases(backend):
        x = _spikes(xs, 0.05, dev)
        w = torch.randn(ws, device=dev)
        b = torch.randn(ws[0], device=dev)
        with torch.no_grad():
            for _ in range(2):
                out = S.synapse_conv2d(x, w, b, event_driven=True, backend=backend, **kw)
                assert_close(f"out{kw}", F.conv2d(x, w, b, **kw), out, TOL)
                w.mul_(-0.5)
    x = _spikes((5, 77), 0.1, dev)
    w = torch.randn(70, 77, device=dev)  # 70 outputs: a ragged second tile of 64
    with torch.no_grad():
        for _ in range(2):
            assert_close("linear", F.linear(x, w), S.synapse_linear(x, w, event_driven=True, backend=backend), TOL)
            w.mul_(-0.5)


@needs_cpp
def test_conv2d_auto_stops_early_without_assuming_binary():
    # 'auto' on the C++ backend: the compaction gives up once the spikes exceed the crossover, before it has
    # seen every value; the spike counts of the last image (values 2) must still reach the weight gradient
    x = _spikes((4, 8, 12, 12), 0.9, "cpu")
    x[3] = 2.0 * _spikes((8, 12, 12), 0.3, "cpu")
    w = torch.randn(16, 8, 3, 3, requires_grad=True)
    out = S.synapse_conv2d(x, w, None, padding=1, event_driven="auto", backend="cpp")
    ref = F.conv2d(x, w, None, padding=1)
    assert_close("out", ref, out, TOL)
    g = torch.randn_like(ref)
    assert_close("grad_w", torch.autograd.grad(ref, w, g)[0], torch.autograd.grad(out, w, g)[0], TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_strided_input_gradient_routes(backend, monkeypatch):
    # on the CPU, strided 1x1 convolutions and strided ones onto at most 4 output positions take the input
    # gradient as one GEMM folded onto the input; the rest stays on convolution_backward
    dev = _dev(backend)
    cases = [((3, 8, 4, 4), (6, 8, 3, 3), dict(stride=2, padding=1)),             # 4x4 -> 2x2
             ((2, 5, 3, 6), (7, 5, 3, 3), dict(stride=(2, 3), padding=(1, 0))),    # 3x6 -> 2x2
             ((2, 5, 5, 4), (7, 5, 3, 2), dict(stride=2, padding=(1, 0), dilation=(1, 2))),  # 3x1
             ((2, 6, 7, 5), (9, 6, 3, 3), dict(stride=2, padding=1)),              # 4x3 = 12 positions
             ((2, 6, 7, 5), (9, 6, 1, 1), dict(stride=2)),                         # 1x1, odd sizes
             ((2, 6, 7, 5), (9, 6, 1, 1), dict(stride=(3, 2), padding=(1, 0))),    # 1x1, padded: F.fold
             ((2, 4, 6, 6), (4, 4, 3, 3), dict(stride=1, padding=1)),              # not strided
             ((2, 4, 8, 8), (4, 4, 3, 3), dict(stride=2, padding=1))]              # 4x4 output positions
    folds = []
    fold = F.fold
    monkeypatch.setattr(F, "fold", lambda *a, **k: folds.append(1) or fold(*a, **k))
    for xs, ws, kw in cases:
        for density in (0.05, 1.0):
            x = _spikes(xs, density, dev).requires_grad_()
            w = torch.randn(ws, device=dev, requires_grad=True)
            xr = x.detach().clone().requires_grad_()
            out = S.synapse_conv2d(x, w, None, event_driven=False, backend=backend, **kw)
            ref = F.conv2d(xr, w, None, **kw)
            g = torch.randn_like(ref)
            assert_close(f"grad_x{kw}", torch.autograd.grad(ref, xr, g)[0], torch.autograd.grad(out, x, g)[0], TOL)
    # cases 1-3 and the padded 1x1, twice each; the Triton backend's dense path is torch's own layer
    assert len(folds) == (8 if dev.type == "cpu" and backend != "triton" else 0)


@needs_cpp
def test_cpp_conv2d_event_grad_weight_over_many_spikes_per_map():
    # the C++ weight gradient sorts a map's active pixels into per-tap lists a few hundred at a time: maps of
    # 480 pixels at 90% density take several rounds; spike counts (one byte per element) take the same route
    for cout, kw in ((70, dict(stride=1, padding=1, dilation=1, groups=1)),
                     (36, dict(stride=(2, 1), padding=(2, 1), dilation=(2, 1), groups=3))):
        x = _spikes((2, 6, 24, 20), 0.9, "cpu")
        counts = x * torch.randint(1, 4, x.shape).float()
        w = torch.randn(cout, 6 // kw["groups"], 3, 3)
        g = torch.randn_like(F.conv2d(x, w, **kw))
        conf = [(v, v) if isinstance(v, int) else v for v in (kw["stride"], kw["padding"], kw["dilation"])]
        packed, ok = bits.cpu.pack(x.reshape(1, -1))
        assert ok
        got = C.conv2d_grad_weight(packed, tuple(x.shape), g, w.shape, *conf, kw["groups"])
        assert_close(f"bits{kw}", torch.nn.grad.conv2d_weight(x, w.shape, g, **kw), got, TOL)
        data = counts.to(torch.uint8).reshape(-1)
        got = C.conv2d_grad_weight(data, tuple(x.shape), g, w.shape, *conf, kw["groups"], values=True)
        assert_close(f"counts{kw}", torch.nn.grad.conv2d_weight(counts, w.shape, g, **kw), got, TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_dense_and_auto_paths(backend):
    dev = _dev(backend)
    x = _spikes((2, 3, 6, 5), 0.3, dev)
    w = torch.randn(4, 3, 3, 3, device=dev, requires_grad=True)
    for ed in (False, "auto"):
        out = S.synapse_conv2d(x, w, None, padding=1, event_driven=ed, backend=backend)
        ref = F.conv2d(x, w, None, padding=1)
        assert_close(f"out[{ed}]", ref, out, TOL)
        g = torch.randn_like(ref)
        assert_close(f"grad_w[{ed}]", torch.autograd.grad(ref, w, g)[0], torch.autograd.grad(out, w, g)[0], TOL)
    # unbatched input [C, H, W]
    out = S.synapse_conv2d(x[0], w, None, padding=1, event_driven=True, backend=backend)
    assert_close("unbatched", F.conv2d(x[0:1], w, None, padding=1)[0], out, TOL)


# ---------------------------------------------------------------------------------------------- bit packing
@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 13), (2, 5, 17), (4, 64)], ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_pack_round_trip_exact(backend, shape):
    dev = _dev(backend)
    x = _spikes(shape, 0.4, dev)
    packed = S.pack_bits(x, backend=backend)
    assert packed.dtype == torch.uint8 and packed.shape == (*shape[:-1], (shape[-1] + 7) // 8)
    assert torch.equal(packed, reference.pack_bits(x))  # same layout as the reference
    back = S.unpack_bits(packed, shape[-1], backend=backend)
    assert torch.equal(back, x)
    # the layout is the documented one: bit j of byte b is element 8 b + j
    flat = x.reshape(-1, shape[-1])[0]
    byte0 = int(packed.reshape(-1, packed.shape[-1])[0, 0])
    assert byte0 == sum(int(flat[j]) << j for j in range(min(8, shape[-1])))


@pytest.mark.parametrize("backend", BACKENDS)
def test_pack_rejects_non_binary(backend):
    dev = _dev(backend)
    x = torch.tensor([[0.0, 1.0, 0.5, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0]], device=dev)
    with pytest.raises(ValueError, match="binary"):
        S.pack_bits(x, backend=backend)
    with pytest.raises(ValueError, match="binary"):
        S.pack_bits(torch.tensor([0.0, float("nan")], device=dev), backend=backend)


def test_unpack_errors():
    with pytest.raises(TypeError, match="uint8"):
        S.unpack_bits(torch.zeros(3, device=DEVICE), 8)
    with pytest.raises(ValueError, match="ceil"):
        S.unpack_bits(torch.zeros(2, 3, dtype=torch.uint8, device=DEVICE), 8)


@pytest.mark.parametrize("event_driven", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_for_backward_is_32x_smaller(backend, event_driven):
    dev = _dev(backend)
    # on CUDA the dense path saves its input as torch does (knowing it binary would cost a synchronisation)
    bits_kept = event_driven or backend == "cpp" or dev.type == "cpu" and backend == "torch"
    x = _spikes((64, 256), 0.1, dev)
    w = torch.randn(32, 256, device=dev, requires_grad=True)
    b = torch.randn(32, device=dev, requires_grad=True)
    n = saved_bytes(lambda: S.synapse_linear(x, w, b, event_driven=event_driven, backend=backend), [w, b])
    assert n * (32 if bits_kept else 1) == x.numel() * 4, f"saved {n} bytes for a {x.numel() * 4}-byte input"
    xc = _spikes((2, 16, 8, 8), 0.1, dev)
    wc = torch.randn(16, 16, 3, 3, device=dev, requires_grad=True)
    n = saved_bytes(lambda: S.synapse_conv2d(xc, wc, None, padding=1, event_driven=event_driven, backend=backend),
                     [wc])
    assert n * (32 if bits_kept else 1) == xc.numel() * 4
    # a real-valued input is saved as it is (nothing is lost)
    xr = torch.randn(64, 256, device=dev)
    n = saved_bytes(lambda: S.synapse_linear(xr, w, b, event_driven=False, backend=backend), [w, b])
    assert n == xr.numel() * 4


# ------------------------------------------------------------------------------------------ errors and auto
@pytest.mark.parametrize("backend", BACKENDS)
def test_event_driven_rejects_non_binary(backend):
    dev = _dev(backend)
    x = _spikes((5, 16), 0.5, dev)
    x[2, 3] = 0.7
    w = torch.randn(4, 16, device=dev)
    with pytest.raises(ValueError, match="binary"):
        S.synapse_linear(x, w, event_driven=True, backend=backend)
    xc = _spikes((1, 2, 4, 4), 0.5, dev)
    xc[0, 1, 2, 2] = 3.0
    with pytest.raises(ValueError, match="binary"):
        S.synapse_conv2d(xc, torch.randn(2, 2, 3, 3, device=dev), event_driven=True, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_auto_takes_dense_path_for_real_input(backend):
    dev = _dev(backend)
    x = torch.randn(5, 16, device=dev, requires_grad=True)
    w = torch.randn(4, 16, device=dev, requires_grad=True)
    out = S.synapse_linear(x, w, event_driven="auto", backend=backend)
    ref = F.linear(x, w)
    assert_close("out", ref, out, TOL)
    g = torch.randn_like(ref)
    for name, e, o in zip(("gx", "gw"), torch.autograd.grad(ref, (x, w), g), torch.autograd.grad(out, (x, w), g)):
        assert_close(name, e, o, TOL)


@needs_cpp
def test_auto_follows_the_crossover(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTSPIKE_CACHE_DIR", str(tmp_path))
    # 'auto' hands the C++ kernel the crossover as a spike limit: it counts while it compacts (no separate
    # density pass) and reports TOO_DENSE past it, and the op then takes torch's GEMM
    statuses = record_statuses(monkeypatch, C, "linear_forward", 2)
    x = _spikes((16, 64), 0.05, "cpu")
    x[0, :8] = 1.0  # density above 0.05 for sure
    w = torch.randn(8, 64)
    S.save_crossover("linear", 1.0)
    out = S.synapse_linear(x, w, event_driven="auto", backend="cpp")
    assert statuses == [C.EVENT]
    assert_close("event", F.linear(x, w), out, TOL)
    S.save_crossover("linear", 0.0)
    out = S.synapse_linear(x, w, event_driven="auto", backend="cpp")
    assert statuses == [C.EVENT, C.TOO_DENSE]
    assert torch.equal(F.linear(x, w), out)  # the dense path itself
    S.save_crossover("linear", float(x.mean()))  # exactly at the crossover: still event-driven
    S.synapse_linear(x, w, event_driven="auto", backend="cpp")
    assert statuses[-1] == C.EVENT
    out = S.synapse_linear(x * 2, w, event_driven="auto", backend="cpp")  # not binary: dense
    assert statuses[-1] == C.NOT_BINARY and torch.equal(F.linear(x * 2, w), out)
    # the same for conv2d, and the training path keeps binary inputs as bits whichever path ran
    xc = _spikes((2, 8, 9, 9), 0.1, "cpu")
    wc = torch.randn(4, 8, 3, 3, requires_grad=True)
    for c in (1.0, 0.0):
        S.save_crossover("conv2d", c, mode="train")
        yc = S.synapse_conv2d(xc, wc, padding=1, event_driven="auto", backend="cpp")
        yc.sum().backward()
        assert_close("conv grad_w", torch.nn.grad.conv2d_weight(xc, wc.shape, torch.ones_like(yc), 1, 1),
                     wc.grad, TOL)
        wc.grad = None


def test_bad_arguments():
    x = _spikes((4, 8), 0.5)
    w = torch.randn(3, 8, device=DEVICE)
    with pytest.raises(ValueError, match="event_driven"):
        S.synapse_linear(x, w, event_driven="yes")
    with pytest.raises(ValueError, match="in_features=8"):
        S.synapse_linear(torch.zeros(4, 7, device=DEVICE), w)
    with pytest.raises(ValueError, match="bias"):
        S.synapse_linear(x, w, torch.zeros(4, device=DEVICE))
    with pytest.raises(TypeError, match="x must be"):
        S.synapse_linear([1.0], w)
    z = torch.zeros(1, 4, 5, 5, device=DEVICE)
    with pytest.raises(ValueError, match="Cin=4"):
        S.synapse_conv2d(torch.zeros(1, 3, 5, 5, device=DEVICE), torch.randn(2, 4, 3, 3, device=DEVICE))
    with pytest.raises(ValueError, match="groups"):
        S.synapse_conv2d(z, torch.randn(3, 2, 3, 3, device=DEVICE), groups=2)
    with pytest.raises(ValueError, match="padding"):
        S.synapse_conv2d(z, torch.randn(2, 4, 3, 3, device=DEVICE), padding="same", event_driven=True)
    # padding='same' is fine on the dense path
    xs = _spikes((1, 4, 5, 5), 0.5)
    wc = torch.randn(2, 4, 3, 3, device=DEVICE)
    assert_close("same", F.conv2d(xs, wc, padding="same"), S.synapse_conv2d(xs, wc, padding="same"), TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_cache_follows_in_place_updates(backend):
    dev = _dev(backend)
    x = _spikes((9, 40), 0.3, dev)
    w = torch.randn(70, 40, device=dev, requires_grad=True)
    out1 = S.synapse_linear(x, w, event_driven=True, backend=backend)
    with torch.no_grad():
        w.mul_(2.0)
    out2 = S.synapse_linear(x, w, event_driven=True, backend=backend)
    assert_close("after in-place update", F.linear(x, w), out2, TOL)
    assert_close("scaled", 2 * out1, out2, TOL)
    wc = torch.randn(5, 3, 3, 3, device=dev)
    xc = _spikes((1, 3, 6, 6), 0.3, dev)
    assert_close("conv", F.conv2d(xc, wc), S.synapse_conv2d(xc, wc, event_driven=True, backend=backend), TOL)
    wc.add_(1.0)
    assert_close("conv after update", F.conv2d(xc, wc),
                 S.synapse_conv2d(xc, wc, event_driven=True, backend=backend), TOL)


def test_float64_and_half_inputs():
    x = _spikes((6, 24), 0.3).double()
    w = torch.randn(5, 24, dtype=torch.float64, requires_grad=True)
    out = S.synapse_linear(x, w, event_driven=True)  # auto backend -> torch reference for float64
    assert out.dtype == torch.float64
    assert_close("f64", F.linear(x, w), out, 1e-12)
    if _ext.available():
        xh = _spikes((6, 24), 0.3, "cpu").half()
        wh = torch.randn(5, 24).half()
        out = S.synapse_linear(xh, wh, event_driven=True, backend="cpp")
        assert out.dtype == torch.float16
        assert_close("f16", F.linear(xh.float(), wh.float()), out.float(), 1e-3)


# ----------------------------------------------------------------------------------------- crossover store
def test_crossover_store_round_trip(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTSPIKE_CACHE_DIR", str(tmp_path / "sub"))
    assert S.crossover("linear") == S.DEFAULT_CROSSOVER["cpu"]["linear"]  # nothing stored: built-in default
    path = S.save_crossover("conv2d", 0.125)
    assert path.startswith(str(tmp_path)) and os.path.exists(path)
    assert S.crossover("conv2d") == 0.125
    assert S.crossover("linear") == S.DEFAULT_CROSSOVER["cpu"]["linear"]
    S.save_crossover("linear", 0.3)
    assert (S.crossover("linear"), S.crossover("conv2d")) == (0.3, 0.125)
    assert sorted(os.listdir(os.path.dirname(path))) == ["synapse_crossover.json"]  # no temporary left behind
    with open(path, "w") as f:
        f.write("{not json")
    assert S.crossover("linear") == S.DEFAULT_CROSSOVER["cpu"]["linear"]  # corrupt store: defaults
    with pytest.raises(ValueError, match="density"):
        S.save_crossover("linear", 1.5)
    with pytest.raises(ValueError, match="op"):
        S.crossover("conv3d")


def test_calibrate_stores_a_measured_crossover(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTSPIKE_CACHE_DIR", str(tmp_path))
    cross, rows = calibrate("linear", shape={"M": 16, "K": 64, "N": 32}, densities=(0.01, 0.5), reps=1)
    assert len(rows) == 2 and all(te > 0 and td > 0 for _, te, td in rows)
    assert cross in (0.0, 0.01, 0.5)
    assert S.crossover("linear") == cross


# ----------------------------------------------------------------------------------------------- layers
def test_layers_event_driven_option():
    from fastspike import layer

    torch.manual_seed(1)
    lin = layer.Linear(40, 12, step_mode="m").to(DEVICE)
    assert lin.event_driven is False
    ref = torch.nn.Linear(40, 12).to(DEVICE)
    ref.load_state_dict(lin.state_dict())
    assert set(lin.state_dict()) == {"weight", "bias"}
    x = _spikes((3, 5, 40), 0.1)  # [T, N, K]
    assert torch.equal(lin(x), ref(x))  # default: plain nn.Linear, bit for bit
    for ed in (True, "auto"):
        lin.event_driven = ed
        out = lin(x)
        assert_close(f"linear[{ed}]", ref(x), out, TOL)
        g = torch.randn_like(out)
        gw = torch.autograd.grad(out, lin.weight, g)[0]
        assert_close(f"linear grad_w[{ed}]", torch.autograd.grad(ref(x), ref.weight, g)[0], gw, TOL)
    assert "event_driven='auto'" in repr(lin)
    conv = layer.Conv2d(3, 4, 3, padding=1, step_mode="m", event_driven="auto").to(DEVICE)
    refc = torch.nn.Conv2d(3, 4, 3, padding=1).to(DEVICE)
    refc.load_state_dict(conv.state_dict())
    xc = _spikes((2, 2, 3, 6, 6), 0.2)  # [T, N, C, H, W]
    assert_close("conv m", refc(xc.flatten(0, 1)).reshape(2, 2, 4, 6, 6), conv(xc), TOL)
    conv.step_mode = "s"
    conv.event_driven = True
    assert_close("conv s", refc(xc[0]), conv(xc[0]), TOL)
    with pytest.raises(ValueError, match="binary"):
        conv(xc[0] * 0.5 + 0.25)
    with pytest.raises(ValueError, match="event_driven"):
        layer.Linear(4, 4, event_driven="always")
    with pytest.raises(ValueError, match="padding_mode"):
        layer.Conv2d(3, 4, 3, padding=1, padding_mode="reflect", event_driven=True)


@needs_cpp
def test_auto_uses_the_training_crossover_when_the_weight_needs_a_gradient(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTSPIKE_CACHE_DIR", str(tmp_path))
    statuses = record_statuses(monkeypatch, C, "linear_forward", 2)
    x = _spikes((16, 64), 0.3, "cpu")
    w = torch.randn(8, 64)
    S.save_crossover("linear", 1.0, mode="infer")  # inference: always event-driven
    S.save_crossover("linear", 0.0, mode="train")  # training: always dense
    assert (S.crossover("linear", mode="infer"), S.crossover("linear", mode="train")) == (1.0, 0.0)
    S.synapse_linear(x, w, event_driven="auto", backend="cpp")
    assert statuses == [C.EVENT]
    wg = w.clone().requires_grad_()
    out = S.synapse_linear(x, wg, event_driven="auto", backend="cpp")
    assert statuses == [C.EVENT, C.TOO_DENSE]  # the training crossover sent it to the dense path
    out.sum().backward()
    assert_close("grad_w", x.t() @ torch.ones(16, 8), wg.grad.t(), TOL)
    with pytest.raises(ValueError, match="mode must be one of"):
        S.crossover("linear", mode="fit")


def test_calibrate_training_mode_stores_its_own_crossover(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTSPIKE_CACHE_DIR", str(tmp_path))
    cross, rows = calibrate("linear", shape={"M": 16, "K": 64, "N": 32}, densities=(0.01, 0.5), reps=1,
                            mode="train")
    assert len(rows) == 2 and all(te > 0 and td > 0 for _, te, td in rows)
    assert S.crossover("linear", mode="train") == cross
    assert S.crossover("linear", mode="infer") == S.DEFAULT_CROSSOVER["cpu"]["linear"]


@needs_cpp
def test_cpp_conv2d_event_with_fewer_threads_than_asked():
    # OMP_THREAD_LIMIT=1 gives a team of one although two threads are asked for: the kernel must size its
    # per-thread spike lists for the team it got (an earlier version wrote past them)
    code = (
        "import torch, torch.nn.functional as F\n"
        "from fastspike.ops import synapse as S\n"
        "torch.set_num_threads(2); torch.manual_seed(0)\n"
        "x = (torch.rand(6, 16, 20, 20) < 0.6).float(); w = torch.randn(32, 16, 3, 3)\n"
        "with torch.no_grad():\n"
        "    out = S.synapse_conv2d(x, w, None, padding=1, event_driven=True, backend='cpp')\n"
        "err = (out - F.conv2d(x, w, None, padding=1)).abs().max().item()\n"
        "assert err < 1e-4, err\n"
        "print('ok')\n")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


@needs_cpp
def test_cpp_event_forwards_stop_exactly_past_the_spike_limit():
    # the C++ forwards count spikes while they compact: more than max_nnz -> TOO_DENSE (no output), exactly
    # max_nnz -> done; a non-binary value -> NOT_BINARY, except that a pass that needs no bits may stop at the
    # limit first; the bits, when asked for, are complete whatever the status but NOT_BINARY
    x = _spikes((67, 301), 0.05, "cpu")
    w = torch.randn(133, 301)
    wt, N = weights.linear_blocked(w), w.shape[0]
    nnz = int(x.sum())
    for want in (False, True):
        out, b, st = C.linear_forward(x, wt, None, N, want, max_nnz=nnz - 1)
        assert st == C.TOO_DENSE and out is None
        if want:
            assert torch.equal(b, reference.pack_bits(x))
        out, b, st = C.linear_forward(x, wt, None, N, want, max_nnz=nnz)
        assert st == C.EVENT
        assert_close("linear", F.linear(x, w), out, TOL)
        bad = x.clone()
        bad[-1, -1] = 2.0
        assert C.linear_forward(bad, wt, None, N, True, max_nnz=nnz // 2)[2] == C.NOT_BINARY
        assert C.linear_forward(bad, wt, None, N, want, max_nnz=-1)[2] == C.NOT_BINARY
        # the kernel also takes torch's layout (a weight being trained) and blocks it itself
        out, _, st = C.linear_forward(x, w, None, N, want, max_nnz=-1, torch_layout=True)
        assert st == C.EVENT
        assert_close("linear, torch layout", F.linear(x, w), out, TOL)
    xc = _spikes((3, 6, 9, 11), 0.05, "cpu")
    wc = torch.randn(8, 6, 3, 3)
    wct = weights.conv_transposed(wc, 1)
    nnz = int(xc.sum())
    conf = (wc.shape, (1, 1), (1, 1), (1, 1), 1)
    assert C.conv2d_forward(xc, wct, None, *conf, max_nnz=nnz - 1) == (None, C.TOO_DENSE)
    out, st = C.conv2d_forward(xc, wct, None, *conf, max_nnz=nnz)
    assert st == C.EVENT
    assert_close("conv2d", F.conv2d(xc, wc, None, padding=1), out, TOL)
    bad = xc.clone()
    bad[-1, -1, -1, -1] = 0.5
    assert C.conv2d_forward(bad, wct, None, *conf, max_nnz=-1)[1] == C.NOT_BINARY


@needs_cpp
def test_spiking_conv_stack_auto_takes_both_paths_in_training(monkeypatch, tmp_path):
    # 'auto' on three convolutions in training: the spike-fed one takes the event kernel (the trained weight
    # blocked per call), the one fed spike counts and the real-valued one fall back to the dense path (and keep
    # their input as bytes / as it is); outputs and every weight gradient match the plain torch layers
    from fastspike import layer
    monkeypatch.setenv("FASTSPIKE_CACHE_DIR", str(tmp_path))
    S.save_crossover("conv2d", 1.0, mode="train")
    statuses = record_statuses(monkeypatch, C, "conv2d_forward", 1)
    torch.manual_seed(0)
    convs = [layer.Conv2d(c_in, 6, 3, padding=1, event_driven="auto") for c_in in (3, 6, 6)]
    refs = [torch.nn.Conv2d(c_in, 6, 3, padding=1) for c_in in (3, 6, 6)]
    for ours, ref in zip(convs, refs):
        ref.load_state_dict(ours.state_dict())
    x = torch.rand(4, 3, 8, 8)
    inputs = (x, (torch.rand(4, 6, 8, 8) < 0.1).float(), 2.0 * (torch.rand(4, 6, 8, 8) < 0.1).float())
    out = [c(i) for c, i in zip(convs, inputs)]
    ref = [c(i) for c, i in zip(refs, inputs)]
    assert C.EVENT in statuses and C.NOT_BINARY in statuses  # both paths ran
    assert statuses.count(C.EVENT) == 1  # only the spike-fed layer took the event kernel
    g = [torch.randn_like(r) for r in ref]
    got = torch.autograd.grad(out, [c.weight for c in convs], g)
    want = torch.autograd.grad(ref, [c.weight for c in refs], g)
    for i in range(3):
        assert_close(f"output {i}", ref[i], out[i], 1e-5)
        assert_close(f"grad conv{i}", want[i], got[i], 1e-5)
