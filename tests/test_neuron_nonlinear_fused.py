"""Fused QIF / EIF neurons (multistep_neuron modes 'qif' and 'eif', QIFNode / EIFNode): every backend against the
pure-PyTorch reference and the per-step Python functions, and the modules against SpikingJelly 2.0.0."""
import itertools

import pytest
import torch

from fastspike import neuron, surrogate as sg
from fastspike.neuron import dynamics
from fastspike.ops import multistep_neuron
from fastspike.ops.neuron import autograd as neuron_autograd
from helpers import TOL, assert_close, spy_op_calls

MODE_ARG = 4 + neuron_autograd.CONFIG.index("mode")  # position of "mode" in the op's arguments (x, v0, k, pc, ...)

BACKENDS = ["torch", "cpp", "triton"]
KERNEL_BACKENDS = ["cpp", "triton"]
# non-default parameters of each model (the op's keyword names)
PARAMS = {
    "qif": dict(tau=2.5, a0=0.7, v_rest=-0.05, v_c=0.6, v_threshold=0.9),
    "eif": dict(tau=3.0, delta_T=0.6, theta_rh=0.7, v_rest=0.05, v_threshold=1.1),
}
SURROGATES = {"sigmoid": lambda: sg.Sigmoid(alpha=3.0), "atan": lambda: sg.ATan(alpha=1.5),
              "erf": lambda: sg.Erf(alpha=1.5)}
CASES = list(itertools.product(["qif", "eif"], [None, -0.1, 0.05], [False, True], ["sigmoid", "atan"]))
CASE_IDS = [f"{m}-vr{r}-det{d}-{s}" for m, r, d, s in CASES]


def _inputs(T, shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, *shape, generator=g) * 0.8 + 0.35
    v0 = torch.rand(*shape, generator=g) * 0.6 - 0.1
    grads = (torch.randn(T, *shape, generator=g), torch.randn(*shape, generator=g),
             torch.randn(T, *shape, generator=g))
    return x.to(dtype), v0.to(dtype), grads


def _run(backend, x, v0, grads, store_v_seq=True, **kw):
    """Forward + backward of the op with fixed upstream gradients: (spikes, v_last, v_seq, grad_x, grad_v0)."""
    x = x.detach().clone().requires_grad_()
    v0 = v0.detach().clone().requires_grad_()
    s, v, v_seq = multistep_neuron(x, v0, store_v_seq=store_v_seq, backend=backend, **kw)
    g_s, g_v, g_vseq = (g.to(x.dtype) for g in grads)
    loss = (s * g_s).sum() + (v * g_v).sum()
    if store_v_seq:
        loss = loss + (v_seq * g_vseq).sum()
    loss.backward()
    return s, v, v_seq, x.grad, v0.grad


def _python_loop(mode, x, v0, grads, surrogate_function, v_reset, detach_reset, **p):
    """The module's old path: dynamics.qif_step / eif_step over time, differentiated by autograd."""
    x = x.detach().clone().requires_grad_()
    v0 = v0.detach().clone().requires_grad_()
    v, spikes, vs = v0, [], []
    for xt in x:
        if mode == "qif":
            s, v = dynamics.qif_step(xt, v, p["tau"], p["a0"], p["v_rest"], p["v_c"], p["v_threshold"], v_reset,
                                     surrogate_function, detach_reset)
        else:
            s, v = dynamics.eif_step(xt, v, p["tau"], p["delta_T"], p["theta_rh"], p["v_rest"], p["v_threshold"],
                                     v_reset, surrogate_function, detach_reset)
        spikes.append(s)
        vs.append(v)
    s, v_seq = torch.stack(spikes), torch.stack(vs)
    g_s, g_v, g_vseq = grads
    ((s * g_s).sum() + (v * g_v).sum() + (v_seq * g_vseq).sum()).backward()
    return s, v, v_seq, x.grad, v0.grad


def _check(name, ref, out, tol):
    assert torch.isfinite(ref[1]).all() and torch.isfinite(ref[3]).all(), "test data drove the reference to inf"
    assert ref[0].sum() > 0 and ref[0].sum() < ref[0].numel(), "test data fires never or always"
    assert torch.equal(ref[0], out[0]), f"{name}: spikes differ ({int((ref[0] != out[0]).sum())} elements)"
    for what, r, o in zip(["v_last", "v_seq", "grad_x", "grad_v0"], ref[1:], out[1:]):
        assert o is not None and o.dtype == r.dtype, f"{name}: {what} missing or of dtype {o.dtype if o else None}"
        assert_close(f"{name}:{what}", r, o, tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode,v_reset,detach,sgname", CASES, ids=CASE_IDS)
def test_op_matches_reference_and_python_loop(backend, mode, v_reset, detach, sgname):
    x, v0, grads = _inputs(6, (3, 37))
    kw = dict(mode=mode, v_reset=v_reset, detach_reset=detach, surrogate_function=SURROGATES[sgname](), **PARAMS[mode])
    loop = _python_loop(mode, x, v0, grads, SURROGATES[sgname](), v_reset, detach, **PARAMS[mode])
    out = _run(backend, x, v0, grads, **kw)
    _check(f"{backend} vs python loop", loop, out, 1e-5)
    if backend != "torch":
        _check(f"{backend} vs reference", _run("torch", x, v0, grads, **kw), out, 1e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode", ["qif", "eif"])
def test_second_program_number_v0_and_no_v_seq(backend, mode):
    """N past one Triton block (1024) and one C++ block (256); V0 a number; only spikes and V_last used."""
    x, _, grads = _inputs(3, (1100,), seed=3)
    kw = dict(mode=mode, v_reset=-0.1, surrogate_function=sg.Erf(alpha=1.5), **PARAMS[mode])
    outs = []
    for be in ("torch", backend):
        xr = x.clone().requires_grad_()
        s, v, v_seq = multistep_neuron(xr, 0.2, backend=be, **kw)
        assert v_seq is None
        ((s * grads[0]).sum() + (v * grads[1]).sum()).backward()
        outs.append((s, v, xr.grad))
    (s_r, v_r, g_r), (s_o, v_o, g_o) = outs
    assert torch.equal(s_r, s_o)
    assert 0 < s_r[:, 1024:].sum() < s_r[:, 1024:].numel()  # the second program's neurons do something
    assert_close("v_last", v_r, v_o, 1e-5)
    assert_close("grad_x", g_r, g_o, 1e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("mode", ["qif", "eif"])
@pytest.mark.parametrize("T", [1, 9])
def test_single_step_and_erf(backend, mode, T):
    x, v0, grads = _inputs(T, (2, 5, 7), seed=T)
    kw = dict(mode=mode, v_reset=None, surrogate_function=sg.Erf(), **PARAMS[mode])
    ref, out = _run("torch", x, v0, grads, **kw), _run(backend, x, v0, grads, **kw)
    assert torch.equal(ref[0], out[0])
    for what, r, o in zip(["v_last", "v_seq", "grad_x", "grad_v0"], ref[1:], out[1:]):
        assert_close(what, r, o, 1e-5)


@pytest.mark.parametrize("mode", ["qif", "eif"])
def test_cpp_two_threads_match_one_and_the_reference(mode):
    """Enough work for the C++ forward and backward to split the neurons between two OpenMP threads."""
    x, v0, grads = _inputs(8, (40000,), seed=7)
    kw = dict(mode=mode, v_reset=-0.1, surrogate_function=sg.Sigmoid(), **PARAMS[mode])
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("cpp", x, v0, grads, **kw)
        torch.set_num_threads(2)
        two = _run("cpp", x, v0, grads, **kw)
    finally:
        torch.set_num_threads(n)
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    _check("cpp vs reference", _run("torch", x, v0, grads, **kw), two, 1e-5)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", ["qif", "eif"])
def test_half_precision(backend, dtype, mode):
    x, v0, grads = _inputs(4, (2, 33), dtype, seed=5)
    kw = dict(mode=mode, v_reset=-0.1, surrogate_function=sg.Sigmoid(), **PARAMS[mode])
    ref, out = _run("torch", x, v0, grads, **kw), _run(backend, x, v0, grads, **kw)
    assert out[0].dtype == dtype and out[3].dtype == dtype and out[4].dtype == dtype
    assert torch.equal(ref[0], out[0])
    for what, r, o in zip(["v_last", "v_seq", "grad_x", "grad_v0"], ref[1:], out[1:]):
        assert_close(what, r, o, TOL[dtype])


def test_other_modes_keep_their_config():
    """QIF/EIF parameters reach the kernels only in their own modes; IF/LIF/PLIF get zeros."""
    from fastspike.ops.neuron import _config
    lif = _config("lif", 2.0, True, 1.0, 0.0, False, (0, (4.0, 0.0)))
    assert (lif.p1, lif.p2, lif.p3) == (0.0, 0.0, 0.0) and lif.mode == 1
    q = _config("qif", 2.5, True, 1.0, -0.1, False, (0, (4.0, 0.0)), (0.7, 0.6, 1.0, 0.8, -0.05))
    assert (q.mode, q.tau, q.p1, q.p2, q.p3) == (3, 2.5, 0.7, -0.05, 0.6)
    e = _config("eif", 3.0, True, 1.0, -0.1, False, (0, (4.0, 0.0)), (1.0, 0.8, 0.6, 0.7, 0.05))
    assert (e.mode, e.tau, e.p1, e.p2, e.p3) == (4, 3.0, 0.6, 0.7, 0.05)
    assert len(q) == len(neuron_autograd.CONFIG) - 1  # CONFIG starts with v0_value


@pytest.mark.parametrize("kw,match", [
    (dict(mode="qif", tau=1.0), "tau"), (dict(mode="eif", tau=float("nan")), "tau"),
    (dict(mode="qif", a0=0.0), "a0"), (dict(mode="qif", v_c=float("inf")), "v_c"),
    (dict(mode="eif", delta_T=-1.0), "delta_T"), (dict(mode="eif", theta_rh=None), "theta_rh"),
    (dict(mode="eif", v_rest="0"), "v_rest"),
])
def test_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        multistep_neuron(torch.zeros(2, 3), 0.0, backend="cpp", **kw)


# ------------------------------------------------------------------------------------------------ modules
def _module_run(node, x, step_mode, grads):
    """Two calls (state carried over), then backward; returns spikes, v, v_seq and grad_x."""
    xr = x.detach().clone().requires_grad_()
    outs = []
    for chunk in (xr[:3], xr[3:]):
        if step_mode == "m":
            outs.append(node(chunk))
        else:
            outs.extend(node(xt).unsqueeze(0) for xt in chunk)
    s = torch.cat(outs)
    v_seq = node.v_seq
    ((s * grads[0]).sum() + (node.v * grads[1]).sum()).backward()
    return s, node.v.detach(), v_seq, xr.grad


def _fs_module(mode, v_reset, detach, surrogate_function, step_mode):
    if mode == "qif":
        return neuron.QIFNode(tau=2.5, v_c=0.6, a0=0.7, v_threshold=0.9, v_rest=-0.05, v_reset=v_reset,
                              surrogate_function=surrogate_function, detach_reset=detach, step_mode=step_mode,
                              store_v_seq=True)
    return neuron.EIFNode(tau=3.0, delta_T=0.6, theta_rh=0.7, v_threshold=1.1, v_rest=0.05, v_reset=v_reset,
                          surrogate_function=surrogate_function, detach_reset=detach, step_mode=step_mode,
                          store_v_seq=True)


@pytest.fixture
def op_calls(monkeypatch):
    calls = []
    spy_op_calls(monkeypatch, neuron_autograd.OPS.values(), lambda args: calls.append(args[MODE_ARG]))
    return calls


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("mode,v_reset,detach", [("qif", -0.1, False), ("qif", None, True), ("eif", -0.1, True),
                                                 ("eif", None, False)])
def test_module_fused_matches_python_path(op_calls, step_mode, mode, v_reset, detach):
    x, _, grads = _inputs(7, (4, 9), seed=11)
    fused = _fs_module(mode, v_reset, detach, sg.ATan(alpha=1.5), step_mode)
    out = _module_run(fused, x, step_mode, grads)
    assert op_calls and set(op_calls) == {{"qif": 3, "eif": 4}[mode]}  # the fused op ran, in this mode
    op_calls.clear()
    loop = _fs_module(mode, v_reset, detach, sg.ATan(alpha=1.5), step_mode)
    loop._fused = lambda: None  # the per-step Python functions
    ref = _module_run(loop, x, step_mode, grads)
    assert not op_calls
    assert torch.equal(ref[0], out[0])
    for what, r, o in zip(["v", "v_seq", "grad_x"], ref[1:], out[1:]):
        assert_close(what, r, o, 1e-5)


def test_module_unfused_surrogate_and_subclass_take_python_path(op_calls):
    class MySurrogate(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return (x >= 0).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            return g

    x = torch.randn(3, 2, 5) + 0.5
    node = neuron.QIFNode(surrogate_function=MySurrogate.apply, step_mode="m")
    node(x)
    assert not op_calls

    class Custom(neuron.EIFNode):
        def single_step_functional_forward(self, inputs, states, **kwargs):
            return super().single_step_functional_forward(inputs, states, **kwargs)

    Custom(step_mode="m")(x)
    assert not op_calls
    neuron.EIFNode(step_mode="m")(x)
    assert len(op_calls) == 1


@pytest.mark.peers
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("mode,v_reset,detach", [("qif", -0.1, False), ("qif", None, True), ("eif", -0.1, False),
                                                 ("eif", None, True)])
@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_module_matches_spikingjelly(op_calls, backend, step_mode, mode, v_reset, detach):
    from spikingjelly.activation_based import neuron as sjn, surrogate as sjs
    x, _, grads = _inputs(7, (4, 9), seed=17)
    fs = _fs_module(mode, v_reset, detach, sg.Sigmoid(alpha=3.0), step_mode)
    fs.backend = backend
    common = dict(v_reset=v_reset, surrogate_function=sjs.Sigmoid(alpha=3.0), detach_reset=detach,
                  step_mode=step_mode, store_v_seq=True)
    if mode == "qif":
        sj = sjn.QIFNode(tau=2.5, v_c=0.6, a0=0.7, v_threshold=0.9, v_rest=-0.05, **common)
    else:
        sj = sjn.EIFNode(tau=3.0, delta_T=0.6, theta_rh=0.7, v_threshold=1.1, v_rest=0.05, **common)
    assert sorted(fs.state_dict()) == sorted(sj.state_dict())
    out = _module_run(fs, x, step_mode, grads)
    assert op_calls, "the fused op did not run"
    ref = _module_run(sj, x, step_mode, grads)
    assert torch.equal(ref[0], out[0])
    for what, r, o in zip(["v", "v_seq", "grad_x"], ref[1:], out[1:]):
        assert_close(what, r, o, 1e-5)


@pytest.mark.parametrize("mode", ["qif", "eif"])
def test_torch_compile_matches_eager(mode):
    """Under torch.compile the op goes through the registered custom ops (schema with p1-p3, fake forward)."""
    x, v0, grads = _inputs(5, (3, 11), seed=23)
    kw = dict(mode=mode, v_reset=-0.1, surrogate_function=sg.Sigmoid(), backend="cpp", **PARAMS[mode])

    def f(x, v0):
        s, v, v_seq = multistep_neuron(x, v0, store_v_seq=True, **kw)
        return (s * grads[0]).sum() + (v * grads[1]).sum() + (v_seq * grads[2]).sum(), s

    outs = []
    for fn in (f, torch.compile(f)):
        xr, vr = x.clone().requires_grad_(), v0.clone().requires_grad_()
        loss, s = fn(xr, vr)
        loss.backward()
        outs.append((s, loss, xr.grad, vr.grad))
    (s_e, l_e, gx_e, gv_e), (s_c, l_c, gx_c, gv_c) = outs
    assert torch.equal(s_e, s_c) and 0 < s_e.sum() < s_e.numel()
    assert_close("loss", l_e, l_c, 1e-6)
    assert_close("grad_x", gx_e, gx_c, 1e-6)
    assert_close("grad_v0", gv_e, gv_c, 1e-6)
