"""fastspike.ops.multistep_neuron2 (Izhikevich, CUBA-LIF, CLIF): every backend against the pure-PyTorch reference
(outputs, and gradients w.r.t. x and both initial states by autograd through the reference), and the modules
that use it against SpikingJelly 2.0.0."""
import itertools

import pytest
import torch

from fastspike import neuron, surrogate as sg
from fastspike.neuron import _two_state
from fastspike.ops import multistep_neuron2
from helpers import KERNEL_BACKENDS, TOL, assert_close, device_of, noncontiguous
from test_neuron_sj_helpers import compare, pair

SURROGATES = [cls() for cls in sg._BUILTINS]
MODEL_KW = {
    "izhikevich": dict(tau=2.5, a0=0.6, v_rest=-0.1, v_c=0.7, tau_w=3.0, a=0.2, b=0.15),
    "cuba": dict(c_decay=0.6, v_decay=0.7),
    "clif": dict(tau=2.5),
}


def _inputs(T, shape, device, dtype=torch.float32, scale=0.8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, *shape, generator=g) * scale + 0.3
    v0 = torch.rand(*shape, generator=g) * 0.5
    u0 = torch.rand(*shape, generator=g) * 0.3
    grads = [torch.randn(T, *shape, generator=g), torch.randn(*shape, generator=g), torch.randn(*shape, generator=g),
             torch.randn(T, *shape, generator=g), torch.randn(T, *shape, generator=g)]
    to = dict(device=device, dtype=dtype)
    return x.to(**to), v0.to(**to), u0.to(**to), [t.to(**to) for t in grads]


def _run(backend, x, v0, u0, grads, store_seq=True, **kw):
    """Forward + backward with fixed upstream gradients (of spikes, v_last, u_last and the sequences); returns the
    five outputs and the gradients of x, v0, u0 (None for an initial state given as a number)."""
    x = x.detach().clone().requires_grad_()
    v0 = v0.detach().clone().requires_grad_() if isinstance(v0, torch.Tensor) else v0
    u0 = u0.detach().clone().requires_grad_() if isinstance(u0, torch.Tensor) else u0
    out = multistep_neuron2(x, v0, u0, store_seq=store_seq, backend=backend, **kw)
    assert (out[3] is None) == (out[4] is None) == (not store_seq)
    loss = sum((o * g).sum() for o, g in zip(out, grads) if o is not None)
    loss.backward()
    return (*out, x.grad, *(t.grad if isinstance(t, torch.Tensor) else None for t in (v0, u0)))


def _compare(backend, x, v0, u0, grads, store_seq=True, tol=1e-5, **kw):
    ref = _run("torch", x, v0, u0, grads, store_seq, **kw)
    out = _run(backend, x, v0, u0, grads, store_seq, **kw)
    assert out[0].dtype == x.dtype and torch.equal(ref[0], out[0]), "spikes differ from the reference"
    assert 0 < out[0].float().mean() < 1, "the test inputs should make some neurons fire and some not"
    names = ["v_last", "u_last", "v_seq", "u_seq", "grad_x", "grad_v0", "grad_u0"]
    for name, r, o in zip(names, ref[1:], out[1:]):
        if r is None:
            assert o is None, name
            continue
        assert o is not None and o.dtype == r.dtype, f"{name}: {o if o is None else o.dtype} != {r.dtype}"
        assert_close(f"{backend}:{name}", r, o, tol)


FLAGS = [("izhikevich", vr, det) for vr, det in itertools.product([0.0, -0.2, None], [False, True])]
FLAGS += [("cuba", vr, det) for vr, det in itertools.product([0.0, None], [False, True])]
FLAGS += [("clif", None, False)]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("store_seq", [True, False], ids=["seq", "noseq"])
@pytest.mark.parametrize("model,v_reset,detach", FLAGS, ids=[f"{m}-vr{r}-det{d}" for m, r, d in FLAGS])
def test_flags(backend, model, v_reset, detach, store_seq):
    x, v0, u0, grads = _inputs(6, (3, 37), device_of(backend))
    _compare(backend, x, v0, u0, grads, store_seq, model=model, v_threshold=0.9, v_reset=v_reset,
             detach_reset=detach, surrogate_function=sg.Sigmoid(), **MODEL_KW[model])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=[type(s).__name__ for s in SURROGATES])
def test_every_surrogate_fused(backend, surrogate):
    assert surrogate.fusable()
    x, v0, u0, grads = _inputs(5, (2, 29), device_of(backend), scale=1.2)
    for model in MODEL_KW:
        _compare(backend, x, v0, u0, grads, model=model, v_reset=None if model == "clif" else 0.0,
                 surrogate_function=surrogate, **MODEL_KW[model])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("model", list(MODEL_KW))
@pytest.mark.parametrize("T,shape", [(1, (4, 5)), (9, (600,)), (3, (2, 3, 5, 7))], ids=["T1", "T9-N600", "T3-4d"])
def test_odd_shapes(backend, model, T, shape):
    """T = 1 (single-step mode), N = 600 (two Triton programs of 512 and three C++ blocks of 256, the last partial)
    and a 4-d step."""
    x, v0, u0, grads = _inputs(T, shape, device_of(backend), seed=T)
    v_reset = None if model == "clif" else 0.0
    _compare(backend, x, v0, u0, grads, True, model=model, v_reset=v_reset, surrogate_function=sg.ATan(),
             **MODEL_KW[model])


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("model", list(MODEL_KW))
def test_number_initial_states_and_noncontiguous_grads(backend, model):
    """Initial states given as numbers (no tensor, no gradient) equal filled tensors; non-contiguous inputs and
    upstream gradients are read correctly."""
    x, v0, u0, grads = _inputs(5, (4, 9), device_of(backend))
    grads = [noncontiguous(g) if g.ndim > 1 else g for g in grads]
    kw = dict(model=model, v_reset=None if model == "clif" else 0.0, surrogate_function=sg.Erf(), **MODEL_KW[model])
    _compare(backend, noncontiguous(x), 0.25, -0.1, grads, **kw)
    filled = _run(backend, x, torch.full_like(v0, 0.25), torch.full_like(u0, -0.1), grads, **kw)
    number = _run(backend, x, 0.25, -0.1, grads, **kw)
    assert number[6] is None and number[7] is None
    for name, a, b in zip(["spikes", "v_last", "u_last", "v_seq", "u_seq", "grad_x"], filled, number):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("model", list(MODEL_KW))
def test_half_precision(backend, dtype, model):
    """16-bit inputs: fp32 arithmetic inside, outputs and gradients in the inputs' dtype."""
    x, v0, u0, grads = _inputs(4, (2, 33), device_of(backend), dtype)
    kw = dict(model=model, v_reset=None if model == "clif" else 0.0, **MODEL_KW[model])
    ref = _run("torch", x, v0, u0, grads, True, **kw)
    out = _run(backend, x, v0, u0, grads, True, **kw)
    assert all(o.dtype == dtype for o in out)
    assert torch.equal(ref[0], out[0])
    for name, r, o in zip(["v_last", "u_last", "v_seq", "u_seq", "grad_x", "grad_v0", "grad_u0"], ref[1:], out[1:]):
        assert_close(name, r, o, TOL[dtype])


def test_float64_auto_uses_reference_and_unfused_surrogates_warn(monkeypatch):
    """float64 and surrogates the kernels do not fuse run the reference under backend 'auto' (the kernels never
    see them); naming a kernel backend for an unfused surrogate is an error."""
    from fastspike.ops import _backend
    from fastspike.ops.neuron2 import autograd

    monkeypatch.setattr(_backend, "_warned_unfused", set())  # warned once per class and session

    def boom(*a):
        raise AssertionError("a kernel ran")

    monkeypatch.setattr(autograd.OPS["cpp"], "forward_kernel", boom)
    monkeypatch.setattr(autograd.OPS["cpp"], "function", None)
    x = torch.randn(3, 4, dtype=torch.float64)
    s, v, u, _, _ = multistep_neuron2(x, 0.0, 0.0, model="cuba")
    assert s.dtype == v.dtype == u.dtype == torch.float64
    with pytest.warns(RuntimeWarning, match="not fused"):
        multistep_neuron2(x.float(), 0.0, 0.0, surrogate_function=sg.Sigmoid(spiking=False))
    with pytest.raises(ValueError, match="fuses only the built-in surrogates"):
        multistep_neuron2(x.float(), 0.0, 0.0, surrogate_function=sg.Sigmoid(spiking=False), backend="cpp")


def test_bad_input():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="model must be one of"):
        multistep_neuron2(x, 0.0, 0.0, model="adex")
    with pytest.raises(ValueError, match="model='clif' has its own soft reset"):
        multistep_neuron2(x, 0.0, 0.0, model="clif", v_reset=0.0)
    with pytest.raises(ValueError, match=r"u_init must be a tensor of shape \(4,\).*reset_net"):
        multistep_neuron2(x, 0.0, torch.zeros(5))
    with pytest.raises(ValueError, match="tau must be > 1"):
        multistep_neuron2(x, 0.0, 0.0, tau=0.5)
    with pytest.raises(ValueError, match="tau_w must be > 0"):
        multistep_neuron2(x, 0.0, 0.0, tau_w=0.0)
    with pytest.raises(TypeError, match="floating-point"):
        multistep_neuron2(torch.ones(3, 4, dtype=torch.long), 0.0, 0.0)


def test_cpp_threads_agree():
    x, v0, u0, grads = _inputs(8, (3000,), torch.device("cpu"), scale=1.0)
    kw = dict(model="izhikevich", **MODEL_KW["izhikevich"])
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("cpp", x, v0, u0, grads, **kw)
        torch.set_num_threads(2)
        two = _run("cpp", x, v0, u0, grads, **kw)
    finally:
        torch.set_num_threads(old)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------- modules
MODULES = [
    ("IzhikevichNode", {"a": 0.2, "b": 0.1}, "Sigmoid"),
    ("IzhikevichNode", {"v_reset": None, "a": 0.1, "b": 0.05, "tau_w": 3.0, "w_rest": 0.05}, "ATan"),
    ("IzhikevichNode", {"detach_reset": True, "a": 0.2, "v_c": 0.6}, "PiecewiseQuadratic"),
    ("CUBALIFNode", {}, None),
    ("CUBALIFNode", {"v_reset": None, "c_decay": 0.3, "v_threshold": 0.7}, "Sigmoid"),
    ("ComplementaryLIFNode", {}, None),
    ("ComplementaryLIFNode", {"tau": 3.0, "v_threshold": 0.8}, "Erf"),
]


def _count_calls(monkeypatch):
    calls = []
    real = _two_state.multistep_neuron2

    def spy(*args, **kwargs):
        calls.append(args[0].shape[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(_two_state, "multistep_neuron2", spy)
    return calls


@pytest.mark.peers
@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize("name,kw,surrogate", MODULES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MODULES)])
def test_modules_match_spikingjelly_through_the_fused_op(monkeypatch, name, kw, surrogate, mode):
    """Spikes exactly, states (v and w / c / m), v_seq and input gradients to rounding, over two calls (the
    second starts from the first's states), with the fused op doing the work in both step modes."""
    calls = _count_calls(monkeypatch)
    extra = {} if name == "CUBALIFNode" else {"step_mode": mode}
    if name == "IzhikevichNode":
        extra["store_v_seq"] = mode == "m"
    ref, ours = pair(name, sg=surrogate, **extra, **kw)
    ref.step_mode = ours.step_mode = mode
    torch.manual_seed(3)
    xs = [torch.randn(5, 3, 300) * 1.2 + 0.4 for _ in range(2)]
    compare(ref, ours, xs, mode)
    assert calls == ([5, 5] if mode == "m" else [1] * 10), calls


@pytest.mark.peers
def test_clif_state_seqs_and_eval_mode(monkeypatch):
    calls = _count_calls(monkeypatch)
    ref, ours = pair("ComplementaryLIFNode", step_mode="m", store_state_seqs=True)
    x = torch.randn(6, 2, 40) + 0.5
    assert torch.equal(ref(x), ours(x))
    for a, b in zip(ref.state_seqs, ours.state_seqs):
        assert_close("state_seqs", a, b, 1e-6)
    assert calls == [6]
    ref.eval(), ours.eval()
    ref.reset(), ours.reset()
    with torch.no_grad():  # eval mode fires with the plain Heaviside: the same forward, fused
        assert torch.equal(ref(x), ours(x))
    assert calls == [6, 6]
    ref.reset(), ours.reset()
    xg = x.clone().requires_grad_()
    assert torch.equal(ref(x), ours(xg))  # with grad enabled, the Heaviside (no surrogate gradient) runs in Python
    assert calls == [6, 6]


def test_modules_fall_back_for_unfused_configurations(monkeypatch):
    calls = _count_calls(monkeypatch)
    x = torch.randn(4, 2, 8)

    class Custom(neuron.IzhikevichNode):  # redefines the dynamics: its own Python step must run
        def single_step_functional_forward(self, inputs, states, **kwargs):
            return (torch.zeros_like(inputs[0]),), states

    assert not Custom(step_mode="m")(x).any()
    node = neuron.CUBALIFNode(surrogate_function=sg.Sigmoid(spiking=False))
    node.step_mode = "m"
    node(x)
    assert calls == []
    node = neuron.CUBALIFNode()
    node.step_mode = "m"
    node(x)
    assert calls == [4]
    node.c_decay = torch.tensor(0.5)  # a tensor parameter: the Python path broadcasts it
    node.reset()
    node(x)
    assert calls == [4]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_channels_last_in_channels_last_out(backend):
    """A [T, N, C, H, W] input stored channels_last runs on its memory order: outputs, states and gradients come
    back in that layout with the reference's values."""
    dev = device_of(backend)
    x = (torch.randn(3, 2, 5, 4, 3) + 0.5).to(dev)
    x_cl = torch.stack([step.contiguous(memory_format=torch.channels_last) for step in x])
    assert not x_cl.is_contiguous()
    v0 = (torch.rand(2, 5, 4, 3) * 0.5).to(dev).contiguous(memory_format=torch.channels_last)
    grads = [torch.randn(3, 2, 5, 4, 3, device=dev), torch.randn(2, 5, 4, 3, device=dev),
             torch.randn(2, 5, 4, 3, device=dev), torch.randn(3, 2, 5, 4, 3, device=dev),
             torch.randn(3, 2, 5, 4, 3, device=dev)]
    kw = dict(model="izhikevich", **MODEL_KW["izhikevich"])
    ref = _run("torch", x, v0.contiguous(), 0.1, grads, **kw)
    out = _run(backend, x_cl, v0, 0.1, grads, **kw)
    assert out[0].stride() == x_cl.stride() and out[1].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(ref[0], out[0])
    for name, r, o in zip(["v_last", "u_last", "v_seq", "u_seq", "grad_x", "grad_v0"], ref[1:7], out[1:7]):
        assert_close(name, r, o, 1e-5)
