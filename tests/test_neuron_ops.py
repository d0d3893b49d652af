"""fastspike.ops.multistep_neuron: every backend against the pure-PyTorch reference."""
import itertools

import pytest
import torch

from fastspike import surrogate as sg
from fastspike.ops import multistep_neuron
from fastspike.ops import reference
from helpers import TOL, assert_close, noncontiguous

KERNEL_BACKENDS = ["cpp", "triton"]
SURROGATES = [cls() for cls in sg._BUILTINS]


def _run(backend, x, v0, w, grads, store_v_seq=True, **kw):
    """Forward + backward with fixed upstream gradients; returns outputs and input gradients."""
    x = x.detach().clone().requires_grad_()
    v0 = v0.detach().clone().requires_grad_()
    w = w.detach().clone().requires_grad_() if w is not None else None
    s, v, v_seq = multistep_neuron(x, v0, w=w, store_v_seq=store_v_seq, backend=backend, **kw)
    g_s, g_v, g_vseq = grads
    loss = (s * g_s).sum() + (v * g_v).sum()
    if store_v_seq:
        loss = loss + (v_seq * g_vseq).sum()
    loss.backward()
    return s, v, v_seq, x.grad, v0.grad, (w.grad if w is not None else None)


def _inputs(T, shape, dtype=torch.float32, scale=1.5):
    x = torch.randn(T, *shape) * scale + 0.3
    v0 = torch.rand(*shape) * 0.5
    grads = (torch.randn(T, *shape), torch.randn(*shape), torch.randn(T, *shape))
    return x.to(dtype), v0.to(dtype), grads


def _compare(backend, x, v0, w, grads, store_v_seq=True, tol=1e-5, **kw):
    ref = _run("torch", x, v0, w, grads, store_v_seq, **kw)
    out = _run(backend, x, v0, w, grads, store_v_seq, **kw)
    names = ["spikes", "v_last", "v_seq", "grad_x", "grad_v0", "grad_w"]
    assert torch.equal(ref[0], out[0]), "spikes differ from the reference"
    for name, r, o in zip(names[1:], ref[1:], out[1:]):
        if r is None:
            assert o is None or name == "grad_w", name
            continue
        assert o is not None, f"{name} missing"
        assert o.dtype == r.dtype, f"{name}: dtype {o.dtype} != {r.dtype}"
        assert_close(f"{backend}:{name}", r, o, tol)


MODES = ["if", "lif", "plif"]
# IF has no decay_input flag, so it is listed once
FLAGS = [f for f in itertools.product(MODES, [None, 0.0, -0.2], [False, True], [True, False], [True, False])
         if f[0] != "if" or f[3]]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode,v_reset,detach,decay_input,store_v_seq", FLAGS,
                         ids=[f"{m}-vr{r}-det{d}-di{di}-vseq{s}" for m, r, d, di, s in FLAGS])
def test_flags(backend, mode, v_reset, detach, decay_input, store_v_seq):
    x, v0, grads = _inputs(6, (3, 37))
    w = torch.tensor(0.4) if mode == "plif" else None
    _compare(backend, x, v0, w, grads, store_v_seq, mode=mode, tau=2.5, decay_input=decay_input, v_threshold=0.9,
             v_reset=v_reset, detach_reset=detach, surrogate_function=sg.Sigmoid())


@pytest.mark.parametrize("tau", [2.0, 4.0, 2.0 ** 20, 2.5, 3.0])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [None, -0.2])
def test_lif_forward_is_bit_exact_for_every_tau(tau, decay_input, v_reset):
    """The C++ LIF charge multiplies by 1 / tau where tau is a power of two (csrc/neuron.cpp's kLifExact) and divides
    otherwise: both must give the reference's states bit for bit, forward and the backward's recomputation."""
    x, v0, grads = _inputs(9, (4, 301), scale=2.0)
    kw = dict(mode="lif", tau=tau, decay_input=decay_input, v_threshold=0.9, v_reset=v_reset,
              surrogate_function=sg.ATan())
    ref, out = _run("torch", x, v0, None, grads, **kw), _run("cpp", x, v0, None, grads, **kw)
    for name, r, o in zip(["spikes", "v_last", "v_seq"], ref[:3], out[:3]):
        assert torch.equal(r, o), f"tau={tau}: {name} differs from the reference"
    # the backward recomputes H with the same charge: a wrong recomputation would move spikes' surrogate gradients
    assert_close("grad_x", ref[3], out[3], 1e-5)
    assert_close("grad_v0", ref[4], out[4], 1e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=[type(s).__name__ for s in SURROGATES])
def test_every_surrogate_fused(backend, surrogate):
    assert surrogate.fusable()
    x, v0, grads = _inputs(5, (2, 29), scale=2.0)
    for mode in MODES:
        w = torch.tensor(-0.3) if mode == "plif" else None
        _compare(backend, x, v0, w, grads, True, mode=mode, tau=3.0, v_reset=0.0, surrogate_function=surrogate)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("T,shape", [(1, (4, 5)), (63, (1000,)), (7, (2, 3, 5, 7)), (3, (1,))],
                         ids=["T1", "T63-N1000", "T7-4d", "T3-N1"])
def test_odd_shapes(backend, T, shape):
    if backend == "triton" and T * max(shape) > 10000:
        shape = (257,)  # keep the interpreter quick
    x, v0, grads = _inputs(T, shape)
    _compare(backend, x, v0, torch.tensor(0.1), grads, True, mode="plif", v_reset=None, surrogate_function=sg.ATan())
    _compare(backend, x, v0, None, grads, False, mode="lif", tau=2.0, surrogate_function=sg.ATan())


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_noncontiguous_inputs_and_grads(backend):
    x, v0, (g_s, g_v, g_vseq) = _inputs(5, (4, 9))
    grads = (noncontiguous(g_s), g_v.t().contiguous().t() if g_v.ndim == 2 else g_v, noncontiguous(g_vseq))
    _compare(backend, noncontiguous(x), v0, torch.tensor(0.2), grads, True, mode="plif", surrogate_function=sg.Erf())
    # expanded (stride-0) upstream gradient, as produced by .sum() / .mean() backward
    x = torch.randn(4, 3, 8).requires_grad_()
    s, _, _ = multistep_neuron(x, torch.zeros(3, 8), mode="lif", backend=backend)
    s.mean().backward()
    x_ref = x.detach().clone().requires_grad_()
    s_ref, _, _ = multistep_neuron(x_ref, torch.zeros(3, 8), mode="lif", backend="torch")
    s_ref.mean().backward()
    assert_close("grad_x(expanded grad)", x_ref.grad, x.grad, 1e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(backend, dtype):
    x, v0, grads = _inputs(4, (2, 33), dtype)
    grads = tuple(g.to(dtype) for g in grads)
    ref = _run("torch", x, v0, None, grads, True, mode="lif")
    out = _run(backend, x, v0, None, grads, True, mode="lif")
    assert out[0].dtype == dtype and out[3].dtype == dtype
    assert torch.equal(ref[0], out[0])
    for name, r, o in zip(["v_last", "v_seq", "grad_x", "grad_v0"], ref[1:5], out[1:5]):
        assert_close(name, r, o, TOL[dtype])


def test_reference_gradcheck_float64():
    # a smooth surrogate and inputs away from the threshold kink: gradcheck of the reference itself
    T, N = 4, 6
    x = (torch.randn(T, N, dtype=torch.float64) * 0.3).requires_grad_()
    v0 = (torch.rand(N, dtype=torch.float64) * 0.2).requires_grad_()
    w = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)

    def f(x, v0, w):
        s, v, vs = reference.multistep_neuron(x, v0, "plif", w=w, v_reset=None, surrogate_function=sg.Sigmoid(),
                                              v_threshold=5.0, store_v_seq=True)
        return v, vs

    assert torch.autograd.gradcheck(f, (x, v0, w))


def test_float64_auto_uses_reference():
    x = torch.randn(3, 5, dtype=torch.float64)
    s, v, _ = multistep_neuron(x, torch.zeros(5, dtype=torch.float64), mode="if")
    assert s.dtype == torch.float64 and v.dtype == torch.float64


def test_long_sequence_no_nan():
    x = torch.randn(4096, 64) * 0.8
    for backend in ["cpp", "torch"]:
        xr = x.clone().requires_grad_()
        s, v, _ = multistep_neuron(xr, torch.zeros(64), mode="lif", backend=backend, surrogate_function=sg.ATan())
        s.sum().backward()
        assert torch.isfinite(xr.grad).all() and torch.isfinite(v).all()
    # cpp and torch agree on the long run too
    a = multistep_neuron(x, torch.zeros(64), mode="lif", backend="cpp")[0]
    b = multistep_neuron(x, torch.zeros(64), mode="lif", backend="torch")[0]
    assert torch.equal(a, b)


class _Custom(sg.SurrogateFunctionBase):
    @staticmethod
    def grad(x, alpha):
        return torch.exp(-x * x) * alpha

    def __init__(self):
        super().__init__(True, alpha=1.0)


def test_custom_surrogate_falls_back_with_warning():
    x, v0, grads = _inputs(4, (2, 5))
    from fastspike.ops import _backend
    _backend._warned_unfused.discard("_Custom")
    with pytest.warns(RuntimeWarning, match="not fused"):
        out = _run("auto", x, v0, None, grads, True, mode="lif", surrogate_function=_Custom())
    ref = _run("torch", x, v0, None, grads, True, mode="lif", surrogate_function=_Custom())
    for r, o in zip(ref[:5], out[:5]):
        assert torch.equal(r, o)
    with pytest.raises(ValueError, match="fuses only the built-in"):
        multistep_neuron(x, v0, mode="lif", surrogate_function=_Custom(), backend="cpp")
    # spiking=False also runs the reference (its output is the smooth primitive, not spikes)
    s, _, _ = multistep_neuron(x, v0, mode="lif", surrogate_function=sg.Sigmoid(spiking=False))
    assert ((s > 0) & (s < 1)).any()


def test_bad_input():
    x = torch.randn(3, 4)
    with pytest.raises(TypeError, match="floating-point"):
        multistep_neuron(x.long(), torch.zeros(4))
    with pytest.raises(ValueError, match="tau must be a finite number > 1"):
        multistep_neuron(x, torch.zeros(4), mode="lif", tau=1.0)
    with pytest.raises(ValueError, match="reset_net"):
        multistep_neuron(x, torch.zeros(5))
    with pytest.raises(ValueError, match="mode must be"):
        multistep_neuron(x, torch.zeros(4), mode="izh")
    with pytest.raises(ValueError, match="backend must be one of"):
        multistep_neuron(x, torch.zeros(4), backend="cuda")
    with pytest.raises(ValueError, match="w must be"):
        multistep_neuron(x, torch.zeros(4), mode="plif")


def test_triton_on_cpu_without_interpreter_is_an_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="runs CUDA tensors"):
        multistep_neuron(torch.randn(2, 3), torch.zeros(3), backend="triton")


def test_cpp_threads_agree():
    x = torch.randn(16, 3000)
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = multistep_neuron(x, torch.zeros(3000), mode="plif", w=torch.tensor(0.3), backend="cpp")
        torch.set_num_threads(2)
        b = multistep_neuron(x, torch.zeros(3000), mode="plif", w=torch.tensor(0.3), backend="cpp")
    finally:
        torch.set_num_threads(n)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


SCALAR_FLAGS = [("if", 0.0), ("if", None), ("lif", 0.0), ("lif", None), ("plif", -0.2), ("plif", None)]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode,v_reset", SCALAR_FLAGS, ids=[f"{m}-vr{r}" for m, r in SCALAR_FLAGS])
@pytest.mark.parametrize("v_start", [0.0, 0.35])
def test_number_v_init_equals_a_filled_tensor(backend, mode, v_reset, v_start):
    # A number as v_init (what a freshly reset neuron passes) must act exactly like a tensor filled with it.
    x, _, (g_s, g_v, _) = _inputs(7, (3, 41))
    w = torch.tensor(0.3) if mode == "plif" else None
    kw = dict(mode=mode, tau=2.5, v_reset=v_reset, surrogate_function=sg.ATan(), backend=backend)
    outs = []
    for v_init in (v_start, torch.full((3, 41), v_start)):
        xr = x.clone().requires_grad_()
        wr = w.clone().requires_grad_() if w is not None else None
        s, v, _ = multistep_neuron(xr, v_init, w=wr, **kw)
        ((s * g_s).sum() + (v * g_v).sum()).backward()
        outs.append((s, v, xr.grad, wr.grad if wr is not None else None))
    ref_x = x.clone().requires_grad_()
    ref_w = w.clone().requires_grad_() if w is not None else None
    s, v, _ = multistep_neuron(ref_x, torch.full((3, 41), v_start), w=ref_w, **dict(kw, backend="torch"))
    ((s * g_s).sum() + (v * g_v).sum()).backward()
    for out in outs:
        assert torch.equal(out[0], s)
        assert_close("v_last", v, out[1], 1e-6)
        assert_close("grad_x", ref_x.grad, out[2], 1e-5)
        if w is not None:
            assert_close("grad_w", ref_w.grad, out[3], 1e-5)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][2], outs[1][2])


def test_number_v_init_errors_and_reference():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="v_init must be a tensor of shape \\(4,\\).*or a number"):
        multistep_neuron(x, "0")
    with pytest.raises(ValueError, match="v_init must be"):
        multistep_neuron(x, True)
    s, v, _ = multistep_neuron(x.double(), 0.25, mode="if")  # float64: the reference, which needs a tensor
    s_ref, v_ref, _ = multistep_neuron(x.double(), torch.full((4,), 0.25, dtype=torch.float64), mode="if")
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)


def test_large_outputs_are_hugepage_advised_and_correct():
    from fastspike import _ext
    from fastspike.ops import _alloc
    C = _ext.get()
    # the advice covers whole 2 MiB pages inside the range, never more than the range
    assert C.advise_hugepages(4096, 100) == 0
    buf = torch.empty(3 << 20)  # 12 MiB
    advised = C.advise_hugepages(buf.data_ptr(), buf.numel() * 4)
    assert advised % (1 << 21) == 0 and advised <= buf.numel() * 4
    t = _alloc.empty_like(torch.empty(2, 3).t())
    assert t.shape == (3, 2) and t.is_contiguous()
    # a neuron layer whose outputs pass the huge-page threshold gives the reference's numbers
    T, N = 4, (_alloc.HUGEPAGE_MIN_BYTES // 4) // 4 + 4099
    x = torch.randn(T, N) + 0.5
    g = torch.randn(T, N)
    out = []
    for backend in ("cpp", "torch"):
        xr = x.clone().requires_grad_()
        s, _, _ = multistep_neuron(xr, 0.0, mode="lif", backend=backend)
        (s * g).sum().backward()
        out.append((s, xr.grad))
    assert torch.equal(out[0][0], out[1][0])
    assert_close("grad_x", out[1][1], out[0][1], 1e-5)


@pytest.mark.parametrize("backend", ["torch", *KERNEL_BACKENDS])
@pytest.mark.parametrize("v0_kind", ["tensor", "number"])
def test_channels_last_in_channels_last_out(backend, v0_kind):
    """[T, N, C, H, W] activations stored channels_last (T x N x H x W x C, what a channels_last convolution gives)
    run in memory order: outputs and input gradients keep that layout (no NCHW copy) and equal the contiguous run."""
    from helpers import device_of

    dev = device_of(backend)
    T, N, C, H, W = 3, 2, 5, 4, 7
    base = torch.randn(T * N, C, H, W, device=dev) * 1.5
    x = base.to(memory_format=torch.channels_last).view(T, N, C, H, W).requires_grad_()
    assert not x.is_contiguous()
    v0 = (torch.rand(N, C, H, W, device=dev).to(memory_format=torch.channels_last).requires_grad_()
          if v0_kind == "tensor" else 0.25)
    kw = dict(mode="plif", w=torch.tensor(0.3, device=dev), surrogate_function=sg.ATan(), store_v_seq=True,
              backend=backend)
    s, v, vs = multistep_neuron(x, v0, **kw)
    assert s.stride() == x.stride() and vs.stride() == x.stride() and v.stride() == x.stride()[1:]
    xc = x.detach().contiguous().requires_grad_()
    v0c = v0.detach().contiguous().requires_grad_() if v0_kind == "tensor" else v0
    sc, vc, vsc = multistep_neuron(xc, v0c, **kw)
    assert torch.equal(s, sc)
    assert_close("v_last", vc, v, TOL[torch.float32])
    assert_close("v_seq", vsc, vs, TOL[torch.float32])
    gs, gv = torch.randn_like(sc), torch.randn_like(vc)
    leaves = [x, v0] if v0_kind == "tensor" else [x]
    leaves_c = [xc, v0c] if v0_kind == "tensor" else [xc]
    grads = torch.autograd.grad([s, v], leaves, [gs, gv])
    grads_c = torch.autograd.grad([sc, vc], leaves_c, [gs, gv])
    assert grads[0].stride() == x.stride()
    for g, gc in zip(grads, grads_c):
        assert_close("grad", gc, g, TOL[torch.float32])


# ---------------------------------------------------------------------------------------- fire variants
# (id, op keyword arguments): KLIF (fire='klif', learnable k), ILIF (mode 'leaky', fire='count'), LIAF (analog)
FIRES = [
    ("klif", dict(mode="lif", fire="klif", tau=2.5)),
    ("klif-di0", dict(mode="lif", fire="klif", tau=3.0, decay_input=False)),
    ("klif-scaled", dict(mode="lif", fire="klif", tau=2.5, scale_reset=True)),
    ("ilif", dict(mode="leaky", fire="count", tau=4.0 / 3.0)),
    ("ilif-window", dict(mode="leaky", fire="count", tau=2.0, max_spike_count=2, grad_window=(0.5, 1.5))),
    ("liaf-relu", dict(mode="lif", fire="analog", tau=2.5, act="relu")),
    ("liaf-sigmoid-h", dict(mode="lif", fire="analog", tau=2.0, act="sigmoid", threshold_related=False)),
    ("liaf-identity-di0", dict(mode="lif", fire="analog", tau=2.0, act="identity", decay_input=False)),
    ("aaif", dict(mode="if", fire="offset", v_offset=0.15)),
    ("aaif-neg", dict(mode="if", fire="offset", v_offset=-0.3)),
]
FIRE_IDS = [f[0] for f in FIRES]


def _run_fire(backend, x, v0, k, grads, store_v_seq=True, **kw):
    """_run for the fire variants: k (KLIF's scale) in place of w; returns (..., grad_k)."""
    x = x.detach().clone().requires_grad_()
    v0 = v0.detach().clone().requires_grad_() if isinstance(v0, torch.Tensor) else v0
    k = k.detach().clone().requires_grad_() if k is not None else None
    s, v, v_seq = multistep_neuron(x, v0, k=k, store_v_seq=store_v_seq, backend=backend, **kw)
    g_s, g_v, g_vseq = (g.to(x.dtype) for g in grads)
    loss = (s * g_s).sum() + (v * g_v).sum()
    if store_v_seq:
        loss = loss + (v_seq * g_vseq).sum()
    loss.backward()
    return s, v, v_seq, x.grad, (v0.grad if isinstance(v0, torch.Tensor) else None), (k.grad if k is not None
                                                                                      else None)


def _compare_fire(backend, x, v0, grads, kw, store_v_seq=True, tol=1e-5, k_value=1.2):
    k = torch.tensor(k_value) if kw["fire"] == "klif" else None
    ref = _run_fire("torch", x, v0, k, grads, store_v_seq, **kw)
    out = _run_fire(backend, x, v0, k, grads, store_v_seq, **kw)
    assert torch.equal(ref[0], out[0]) if kw["fire"] != "analog" else True, "outputs differ from the reference"
    if kw["fire"] == "analog":
        assert_close(f"{backend}:output", ref[0], out[0], tol)
    else:
        assert 0 < (ref[0] > 0).sum() < ref[0].numel(), "test data fires never or always"
    for name, r, o in zip(["v_last", "v_seq", "grad_x", "grad_v0", "grad_k"], ref[1:], out[1:]):
        if r is None:
            assert o is None, name
            continue
        assert o is not None and o.dtype == r.dtype, f"{name} missing or of dtype {o.dtype if o else None}"
        # dL/dk is one sum over every element and step, reduced in another order than the reference's
        assert_close(f"{backend}:{name}", r, o, tol * 10 if name == "grad_k" else tol)
    return ref


# every reset the variant has (the count resets softly only) with and without detach_reset
FIRE_FLAGS = [(f, kw, vr, det) for f, kw in FIRES for vr in (0.0, -0.2, None) for det in (False, True)
              if kw["fire"] != "count" or vr is None]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("fire_id,kw,v_reset,detach", FIRE_FLAGS,
                         ids=[f"{f}-vr{vr}-det{d}" for f, _, vr, d in FIRE_FLAGS])
def test_fire_variants(backend, fire_id, kw, v_reset, detach):
    x, v0, grads = _inputs(6, (3, 37))
    ref = _compare_fire(backend, x, v0, grads, dict(kw, v_threshold=0.9, v_reset=v_reset, detach_reset=detach,
                                                    surrogate_function=sg.Sigmoid()))
    if kw["fire"] == "count":
        assert ref[0].max() > 1, "no multi-level spike"


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("k_value", [0.7, -0.6])
def test_klif_k_values(backend, k_value):
    """A k below 1 and a negative k (relu(k H) then fires for H < 0), hard and soft scaled reset."""
    x, v0, grads = _inputs(5, (2, 31), scale=2.5)
    x = x - 0.6
    for v_reset in (0.0, None):
        _compare_fire(backend, x, v0, grads, dict(mode="lif", fire="klif", scale_reset=True, v_reset=v_reset,
                                                  v_threshold=0.5), k_value=k_value)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=[type(s).__name__ for s in SURROGATES])
def test_fire_variants_every_surrogate(backend, surrogate):
    x, v0, grads = _inputs(5, (2, 29), scale=2.0)
    for _, kw in (FIRES[0], FIRES[2], FIRES[5], FIRES[8]):  # KLIF, scaled KLIF, LIAF, AAIF: surrogate gradients
        _compare_fire(backend, x, v0, grads, dict(kw, v_reset=0.0, surrogate_function=surrogate))


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("T,shape", [(1, (4, 5)), (3, (1100,))], ids=["T1", "T3-N1100"])
@pytest.mark.parametrize("fire_id,kw", [FIRES[0], FIRES[3], FIRES[6], FIRES[9]], ids=["klif", "ilif", "liaf", "aaif"])
def test_fire_variants_shapes_and_number_v0(backend, T, shape, fire_id, kw):
    """T = 1 (single-step mode), N past one Triton program (1024) and one C++ block (256), V0 a number."""
    x, v0, grads = _inputs(T, shape)
    kw = dict(kw, v_reset=None if kw["fire"] == "count" else 0.0, surrogate_function=sg.ATan())
    _compare_fire(backend, x, v0, grads, kw)
    _compare_fire(backend, x, 0.25, grads, kw, store_v_seq=False)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fire_id,kw", [FIRES[0], FIRES[2], FIRES[3], FIRES[5], FIRES[8]],
                         ids=["klif", "klif-scaled", "ilif", "liaf", "aaif"])
def test_fire_variants_half_precision(backend, dtype, fire_id, kw):
    x, v0, grads = _inputs(4, (2, 33), dtype)
    kw = dict(kw, v_reset=None if kw["fire"] == "count" else -0.1, surrogate_function=sg.Sigmoid())
    k = torch.tensor(1.2) if kw["fire"] == "klif" else None
    ref, out = _run_fire("torch", x, v0, k, grads, **kw), _run_fire(backend, x, v0, k, grads, **kw)
    assert out[0].dtype == dtype and out[3].dtype == dtype and out[4].dtype == dtype
    if kw["fire"] == "analog":
        assert_close("output", ref[0], out[0], TOL[dtype])
    else:
        assert torch.equal(ref[0], out[0])
    for name, r, o in zip(["v_last", "v_seq", "grad_x", "grad_v0", "grad_k"], ref[1:], out[1:]):
        if r is not None:
            assert_close(name, r, o, TOL[dtype])


def test_fire_variants_cpp_threads_agree():
    x, v0, grads = _inputs(8, (40000,))
    for _, kw in (FIRES[2], FIRES[3]):
        k = torch.tensor(1.1) if kw["fire"] == "klif" else None
        kw = dict(kw, v_reset=None)
        n = torch.get_num_threads()
        try:
            torch.set_num_threads(1)
            one = _run_fire("cpp", x, v0, k, grads, **kw)
            torch.set_num_threads(2)
            two = _run_fire("cpp", x, v0, k, grads, **kw)
        finally:
            torch.set_num_threads(n)
        for a, b in zip(one, two):
            assert (a is None and b is None) or torch.equal(a, b)


@pytest.mark.parametrize("kw,match", [
    (dict(fire="spark"), "fire must be one of"),
    (dict(fire="klif"), "k must be a 1-element tensor"),
    (dict(fire="klif", k=torch.ones(2)), "k must be a 1-element tensor"),
    (dict(fire="klif", k=torch.tensor(1.0), mode="if"), "fire='klif' takes mode 'lif'"),
    (dict(fire="count", mode="lif", v_reset=None), "fire='count' takes mode 'leaky'"),
    (dict(fire="count", mode="leaky"), "v_reset must be None"),
    (dict(fire="count", mode="leaky", v_reset=None, max_spike_count=0), "max_spike_count"),
    (dict(fire="count", mode="leaky", v_reset=None, grad_window=(0.0, float("nan"))), "grad_window"),
    (dict(fire="analog", act="tanh"), "act must be one of"),
    (dict(fire="spike", mode="leaky"), "fire='spike' takes mode"),
    (dict(fire="offset", mode="lif"), "fire='offset' takes mode 'if'"),
    (dict(fire="offset", mode="if", v_offset=float("inf")), "v_offset"),
    (dict(fire="count", mode="leaky", v_reset=None, tau=1.0), "tau must be"),
])
def test_fire_bad_arguments(kw, match):
    kw = dict(dict(mode="lif"), **kw)
    with pytest.raises(ValueError, match=match):
        multistep_neuron(torch.zeros(2, 3), 0.0, backend="cpp", **kw)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("fire_id,kw", [FIRES[2], FIRES[3], FIRES[5]], ids=["klif-scaled", "ilif", "liaf"])
def test_fire_variants_under_torch_compile(backend, fire_id, kw):
    """The registered custom ops take the fire configuration (schema, fake forward and backward)."""
    torch._dynamo.reset()
    x, v0, grads = _inputs(5, (3, 11))
    kw = dict(kw, v_reset=None, backend=backend)
    k0 = torch.tensor(1.2) if kw["fire"] == "klif" else None

    def f(x, v0, k):
        s, v, v_seq = multistep_neuron(x, v0, k=k, store_v_seq=True, **kw)
        return (s * grads[0]).sum() + (v * grads[1]).sum() + (v_seq * grads[2]).sum(), s

    outs = []
    for fn in (f, torch.compile(f, fullgraph=True)):
        xr, vr = x.clone().requires_grad_(), v0.clone().requires_grad_()
        kr = k0.clone().requires_grad_() if k0 is not None else None
        loss, s = fn(xr, vr, kr)
        loss.backward()
        outs.append((s, loss, xr.grad, vr.grad, kr.grad if kr is not None else None))
    for a, b in zip(*outs):
        assert (a is None and b is None) or torch.allclose(a, b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------- ActivationAwareIF's per-channel thresholds / offsets
def _channel_kw(C, channel_dim=2, thr=True, off=True, seed=3):
    """fire='offset' with 1-D thresholds in [0.5, 1.5) and offsets in [-0.3, 0.3) (or scalars) along channel_dim."""
    g = torch.Generator().manual_seed(seed)
    return dict(mode="if", fire="offset", channel_dim=channel_dim,
                v_threshold=torch.rand(C, generator=g) + 0.5 if thr else 0.9,
                v_offset=torch.rand(C, generator=g) * 0.6 - 0.3 if off else 0.1)


def test_per_channel_reference_equals_one_scalar_run_per_channel():
    """The reference with 1-D thresholds / offsets equals the scalar op run on each channel alone."""
    x, v0, grads = _inputs(5, (2, 4, 6))
    kw = _channel_kw(4)
    for v_reset in (None, 0.0):
        s, v, vs = multistep_neuron(x, v0, store_v_seq=True, backend="torch", v_reset=v_reset, **kw)
        for c in range(4):
            sc, vc, vsc = multistep_neuron(x[:, :, c], v0[:, c], mode="if", fire="offset", store_v_seq=True,
                                           backend="torch", v_reset=v_reset, v_threshold=float(kw["v_threshold"][c]),
                                           v_offset=float(kw["v_offset"][c]))
            assert torch.equal(s[:, :, c], sc) and torch.equal(v[:, c], vc) and torch.equal(vs[:, :, c], vsc)


PC_FLAGS = [(vr, det) for vr in (0.0, -0.2, None) for det in (False, True)]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("v_reset,detach", PC_FLAGS, ids=[f"vr{vr}-det{d}" for vr, d in PC_FLAGS])
def test_per_channel_offset(backend, v_reset, detach):
    """Per-channel thresholds and offsets on the fused kernels: soft and hard reset, detach_reset, outputs, states
    and gradients of x and V0 against the reference."""
    x, v0, grads = _inputs(6, (3, 5, 9))
    ref = _compare_fire(backend, x, v0, grads, dict(_channel_kw(5), v_reset=v_reset, detach_reset=detach,
                                                    surrogate_function=sg.Sigmoid()))
    # a channel-dependent result: the same input with the mean threshold fires differently
    mean = multistep_neuron(x, v0, mode="if", fire="offset", v_threshold=0.9, v_offset=0.0, v_reset=v_reset,
                            backend="torch")[0]
    assert not torch.equal(ref[0], mean)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=[type(s).__name__ for s in SURROGATES])
def test_per_channel_every_surrogate(backend, surrogate):
    x, v0, grads = _inputs(4, (2, 3, 11), scale=2.0)
    for v_reset in (0.0, None):
        _compare_fire(backend, x, v0, grads, dict(_channel_kw(3), v_reset=v_reset, surrogate_function=surrogate))


PC_SHAPES = [(1, (4, 5), 1), (3, (2, 3, 700), 2), (2, (1300, 3), -1), (1, (2, 3, 4, 100), 2), (3, (5, 2, 7), 1)]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("T,shape,channel_dim", PC_SHAPES,
                         ids=["T1-dim1", "T3-N4200-dim2", "T2-N3900-last", "T1-N2400-4d", "T3-batch-dim"])
def test_per_channel_shapes(backend, T, shape, channel_dim):
    """T = 1, more neurons than one Triton program (1024) and several C++ blocks (256), the channel axis first,
    inner or last, V0 a tensor or a number, one of threshold / offset a number."""
    x, v0, grads = _inputs(T, shape)
    C = shape[channel_dim if channel_dim < 0 else channel_dim - 1]
    for thr, off in ((True, True), (True, False), (False, True)):
        kw = dict(_channel_kw(C, channel_dim, thr, off), v_reset=0.0, surrogate_function=sg.ATan())
        _compare_fire(backend, x, v0, grads, kw)
    _compare_fire(backend, x, 0.25, grads, dict(kw, v_reset=None), store_v_seq=False)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_per_channel_half_precision(backend, dtype):
    x, v0, grads = _inputs(4, (2, 3, 33), dtype)
    kw = dict(_channel_kw(3), v_reset=-0.1, surrogate_function=sg.Sigmoid())
    for v_reset in (-0.1, None):
        kw["v_reset"] = v_reset
        ref, out = _run_fire("torch", x, v0, None, grads, **kw), _run_fire(backend, x, v0, None, grads, **kw)
        assert out[0].dtype == dtype and out[3].dtype == dtype and out[4].dtype == dtype
        assert torch.equal(ref[0], out[0])
        for name, r, o in zip(["v_last", "v_seq", "grad_x", "grad_v0"], ref[1:5], out[1:5]):
            assert_close(name, r, o, TOL[dtype])


@pytest.mark.parametrize("backend", ["torch", *KERNEL_BACKENDS])
def test_per_channel_channels_last(backend):
    """channels_last [T, N, C, H, W] (C innermost in memory) with thresholds along C: outputs keep the layout and
    equal the contiguous run."""
    T, N, C, H, W = 3, 2, 5, 4, 7
    x = (torch.randn(T * N, C, H, W) * 1.5 + 0.3).to(memory_format=torch.channels_last).view(T, N, C, H, W)
    assert not x.is_contiguous()
    kw = dict(_channel_kw(C), v_reset=None, surrogate_function=sg.ATan(), store_v_seq=True, backend=backend)
    xl, xc = x.clone().requires_grad_(), x.contiguous().requires_grad_()
    s, v, vs = multistep_neuron(xl, 0.1, **kw)
    sc, vc, vsc = multistep_neuron(xc, 0.1, **kw)
    assert s.stride() == x.stride()
    assert torch.equal(s, sc) and 0 < s.sum() < s.numel()
    assert_close("v_last", vc, v, TOL[torch.float32])
    assert_close("v_seq", vsc, vs, TOL[torch.float32])
    g = torch.randn_like(sc)
    (gl,) = torch.autograd.grad((s * g).sum() + vs.sum(), xl)
    (gc,) = torch.autograd.grad((sc * g).sum() + vsc.sum(), xc)
    assert_close("grad_x", gc, gl, TOL[torch.float32])


@pytest.mark.parametrize("backend", ["torch", *KERNEL_BACKENDS])
@pytest.mark.parametrize("thr,off", [(torch.tensor(0.9), torch.tensor(0.1)), (torch.tensor([0.9]), 0.1),
                                     (0.9, torch.tensor(0.1)), (torch.tensor(0.9), "per-channel")],
                         ids=["both-0d", "thr-1elem", "off-0d", "0d-beside-per-channel"])
def test_per_channel_one_element_tensors_are_one_value(backend, thr, off):
    """A 1-element threshold / offset tensor (0-d or 1-D) is the same value for every neuron (what
    ActivationAwareIFNode passes for its 0-d buffers on an accelerator, read there without a host sync): equal to the
    numbers, outputs, states and gradients, on every backend; beside a per-channel tensor it fills every channel.
    The shape reaches a second Triton program and several C++ blocks."""
    x, v0, grads = _inputs(4, (3, 5, 300))
    C = 5
    per_channel = _channel_kw(C, channel_dim=2)["v_offset"]
    off = per_channel if isinstance(off, str) else off
    kw = dict(mode="if", fire="offset", channel_dim=2, v_reset=None, surrogate_function=sg.ATan())
    as_numbers = dict(kw, v_threshold=float(thr), v_offset=off if isinstance(off, torch.Tensor) and off.numel() == C
                      else float(off))
    ref = _run_fire("torch", x, v0, None, grads, **as_numbers)
    out = _run_fire(backend, x, v0, None, grads, **dict(kw, v_threshold=thr, v_offset=off))
    assert torch.equal(ref[0], out[0]) and 0 < ref[0].sum() < ref[0].numel()
    for name, r, o in zip(["v_last", "v_seq", "grad_x", "grad_v0"], ref[1:5], out[1:5]):
        assert_close(f"{backend}:{name}", r, o, 1e-5)


@pytest.mark.parametrize("kw,match", [
    (dict(fire="spike", v_threshold=torch.ones(3)), "take fire='offset'"),
    (dict(v_threshold=torch.ones(4)), "v_threshold must be a number, a 1-element tensor or a 1-D tensor of 3"),
    (dict(v_offset=torch.zeros(1, 3)), "v_offset must be a number, a 1-element tensor or a 1-D tensor"),
    (dict(v_threshold=torch.ones(1, 1)), r"a 1-D tensor of 3 values .* shape \(1, 1\)"),
    (dict(v_threshold=torch.ones(3), channel_dim=0), "channel_dim=0"),
    (dict(v_threshold=torch.ones(3), channel_dim=3), "channel_dim=3"),
    (dict(v_threshold=torch.ones(3), v_offset=float("nan")), "v_offset"),
])
def test_per_channel_bad_arguments(kw, match):
    kw = dict(dict(mode="if", fire="offset", channel_dim=-1), **kw)
    with pytest.raises(ValueError, match=match):
        multistep_neuron(torch.zeros(2, 4, 3), 0.0, backend="cpp", **kw)
    with pytest.raises(TypeError, match="channel_dim"):
        multistep_neuron(torch.zeros(2, 4, 3), 0.0, backend="cpp", mode="if", fire="offset",
                         v_threshold=torch.ones(3), channel_dim=2.0)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_per_channel_under_torch_compile(backend):
    """The custom ops take the per-channel tensor and its inner size (schema, fakes, backward)."""
    torch._dynamo.reset()
    x, v0, grads = _inputs(4, (2, 3, 5))
    kw = dict(_channel_kw(3), v_reset=None, backend=backend)

    def f(x, v0, thr):
        s, v, v_seq = multistep_neuron(x, v0, store_v_seq=True, **dict(kw, v_threshold=thr))
        return (s * grads[0]).sum() + (v * grads[1]).sum() + (v_seq * grads[2]).sum(), s

    outs = []
    for fn in (f, torch.compile(f, fullgraph=True)):
        xr, vr = x.clone().requires_grad_(), v0.clone().requires_grad_()
        loss, s = fn(xr, vr, kw["v_threshold"])
        loss.backward()
        outs.append((s, loss, xr.grad, vr.grad))
    for a, b in zip(*outs):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-6)
