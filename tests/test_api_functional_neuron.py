"""fastspike.functional.neuron: the 32 neuron functions of SpikingJelly 2.0.0's functional.neuron.

IF / LIF / ParametricLIF run on fastspike's fused kernel (checked by counting kernel calls); every function's
spikes, states and gradients are compared with SpikingJelly's (tests marked peers).
"""
import pytest
import torch

from fastspike import functional as F
from fastspike import surrogate
from fastspike.ops import neuron as ops_neuron
from helpers import DEVICE, assert_close, spy_op_calls

T, N, C = 7, 3, 10


def _sjf():
    return pytest.importorskip("spikingjelly.activation_based.functional")


def _sjs():
    return pytest.importorskip("spikingjelly.activation_based.surrogate")


def _inputs(*shape, scale=1.5, grad=True, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(*shape, generator=g, dtype=dtype) * scale).to(DEVICE)
    return x.requires_grad_(grad)


def _grads(outputs, inputs):
    """Gradients of a weighted sum of the outputs (fixed weights, so every output's gradient path counts)."""
    total = 0
    for i, o in enumerate(outputs):
        if o is not None and o.requires_grad:
            total = total + (o * torch.linspace(0.5, 1.5, o.numel(), device=o.device).view(o.shape) * (i + 1)).sum()
    return torch.autograd.grad(total, inputs, allow_unused=True)


KERNEL_CONFIGS = [
    dict(v_reset=0.0, detach_reset=False),
    dict(v_reset=None, detach_reset=False),
    dict(v_reset=-0.2, detach_reset=True),
]


@pytest.mark.peers
@pytest.mark.parametrize("cfg", KERNEL_CONFIGS, ids=["hard", "soft", "hard-detach"])
@pytest.mark.parametrize("sg", ["Sigmoid", "ATan", "PiecewiseLeakyReLU"])
@pytest.mark.parametrize("store", [False, True])
def test_lif_if_plif_multi_step_match_spikingjelly(cfg, sg, store):
    sjf, sjs = _sjf(), _sjs()
    x = _inputs(T, N, C)
    v0 = _inputs(N, C, scale=0.5, seed=1)
    w = torch.tensor(0.3, device=DEVICE, requires_grad=True)
    cases = {
        "lif": (lambda f, s: f.lif_multi_step(x, v0, 3.0, False, 1.0, cfg["v_reset"], s, cfg["detach_reset"], store)),
        "if": (lambda f, s: f.if_multi_step(x, v0, 1.0, cfg["v_reset"], s, cfg["detach_reset"], store)),
        "plif": (lambda f, s: f.plif_multi_step(x, v0, w, True, 1.0, cfg["v_reset"], s, cfg["detach_reset"], store)),
    }
    for name, call in cases.items():
        out = call(F, getattr(surrogate, sg)())
        ref = call(sjf, getattr(sjs, sg)())
        assert torch.equal(out[0], ref[0]), f"{name}: spikes differ"
        assert_close(f"{name} v_last", ref[1], out[1], 1e-5)
        assert (out[2] is None) == (ref[2] is None) == (not store)
        if store:
            assert_close(f"{name} v_seq", ref[2], out[2], 1e-5)
        ins = (x, v0, w) if name == "plif" else (x, v0)
        for a, b, what in zip(_grads(out, ins), _grads(ref, ins), ("x", "v", "w")):
            assert_close(f"{name} grad {what}", b, a, 1e-4)


def test_multi_step_runs_the_fused_kernel(monkeypatch):
    calls = []
    op = ops_neuron.OPS["cpp" if DEVICE.type == "cpu" else "triton"]
    spy_op_calls(monkeypatch, [op], lambda args: calls.append(1))
    x, v = _inputs(T, N, C), torch.zeros(N, C, device=DEVICE)
    F.lif_multi_step(x, v)
    F.if_step(x[0], v, 1.0, 0.0, surrogate.Sigmoid())
    F.plif_step(x[0], v, torch.tensor(0.0, device=DEVICE), True, 1.0, 0.0, surrogate.ATan())
    assert len(calls) == 3  # per-step functions are the kernel's T = 1 case


@pytest.mark.peers
def test_single_steps_match_spikingjelly():
    sjf, sjs = _sjf(), _sjs()
    x, v = _inputs(N, C), _inputs(N, C, scale=0.5, seed=2)
    w = torch.tensor(-0.4, device=DEVICE, requires_grad=True)
    for call in (lambda f, s: f.lif_step(x, v, 2.5, True, 1.0, 0.0, s, False),
                 lambda f, s: f.if_step(x, v, 1.0, None, s, True),
                 lambda f, s: f.plif_step(x, v, w, False, 1.0, 0.1, s, False)):
        out, ref = call(F, surrogate.Erf()), call(sjf, sjs.Erf())
        assert torch.equal(out[0], ref[0])
        assert_close("v", ref[1], out[1], 1e-5)
        for a, b in zip(_grads(out, (x, v)), _grads(ref, (x, v))):
            assert_close("grad", b, a, 1e-4)
    # a 0-d input (one neuron) works as in SpikingJelly
    s, v1 = F.lif_step(torch.tensor(1.5, device=DEVICE), torch.tensor(0.2, device=DEVICE), 2.0, True, 0.5, 0.0,
                       surrogate.Sigmoid())
    s_ref, v1_ref = sjf.lif_step(torch.tensor(1.5), torch.tensor(0.2), 2.0, True, 0.5, 0.0, sjs.Sigmoid())
    assert s.shape == () and s.item() == s_ref.item() and abs(v1.item() - v1_ref.item()) < 1e-6


def test_precision_arguments_are_refused():
    x, v = _inputs(T, N, C, grad=False), torch.zeros(N, C, device=DEVICE)
    with pytest.raises(ValueError, match="neuron_storage"):
        F.lif_multi_step(x, v, neuron_storage=torch.float16)
    with pytest.raises(ValueError, match="neuron_fwd"):
        F.if_multi_step(x, v, neuron_fwd="bf16")
    with pytest.raises(ValueError, match="v must have shape"):
        F.lif_multi_step(x, torch.zeros(N + 1, C, device=DEVICE))
    with pytest.raises(ValueError, match="w must be a 1-element tensor"):
        F.plif_multi_step(x, v, torch.zeros(2, device=DEVICE))


# ---------------------------------------------------------------------------------------------------------
# models without a fused kernel
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.peers
@pytest.mark.parametrize("store", [False, True])
def test_qif_eif_izhikevich_multi_step_match_spikingjelly(store):
    sjf, sjs = _sjf(), _sjs()
    x, v = _inputs(T, N, C), _inputs(N, C, scale=0.3, seed=3)
    wr = _inputs(N, C, scale=0.1, seed=4)
    calls = [
        (lambda f, s: f.qif_multi_step(x, v, 2.5, 1.0, -0.1, 0.05, 0.7, 0.9, False, s, store), (x, v)),
        (lambda f, s: f.eif_multi_step(x, v, 2.5, 1.2, None, 0.0, 0.8, 0.7, True, s, store), (x, v)),
        (lambda f, s: f.izhikevich_multi_step(x, v, wr, 2.0, 1.0, 0.0, 0.0, 0.1, 0.2, 2.0, 0.8, 1.0, False, s, store),
         (x, v, wr)),
    ]
    for call, ins in calls:
        out, ref = call(F, surrogate.ATan()), call(sjf, sjs.ATan())
        assert len(out) == len(ref)
        assert torch.equal(out[0], ref[0])
        for a, b in zip(out[1:], ref[1:]):
            assert (a is None) == (b is None)
            if a is not None:
                assert_close("state", b, a, 1e-5)
        for a, b in zip(_grads(out, ins), _grads(ref, ins)):
            assert_close("grad", b, a, 1e-4)


def test_qif_eif_multi_step_run_the_fused_op_for_numbers(monkeypatch):
    """Number parameters inside the kernels' domain take ops.multistep_neuron's 'qif' / 'eif' modes; a tensor
    parameter or tau <= 1 keeps the step loop. Both give the same numbers."""
    from fastspike.functional import neuron as fn

    modes = []
    real = fn.multistep_neuron
    monkeypatch.setattr(fn, "multistep_neuron", lambda *a, **k: modes.append(k["mode"]) or real(*a, **k))
    x, v = _inputs(T, N, C), _inputs(N, C, scale=0.3, seed=3)
    fused_q = F.qif_multi_step(x, v, 2.5, 1.0, -0.1, 0.05, 0.7, 0.9, False, surrogate.ATan(), True)
    fused_e = F.eif_multi_step(x, v, 2.5, 1.2, None, 0.0, 0.8, 0.7, True, surrogate.ATan(), True)
    assert modes == ["qif", "eif"]
    loop_q = F.qif_multi_step(x, v, 2.5, 1.0, -0.1, torch.tensor(0.05, device=DEVICE), 0.7, 0.9, False,
                              surrogate.ATan(), True)
    loop_e = F.eif_multi_step(x, v, 1.0, 1.2, None, 0.0, 0.8, 0.7, True, surrogate.ATan(), True)
    assert modes == ["qif", "eif"]  # the loop ran for these
    assert torch.equal(fused_q[0], loop_q[0])
    assert_close("qif v_seq", loop_q[2], fused_q[2], 1e-5)
    for a, b in zip(_grads(fused_q, (x, v)), _grads(loop_q, (x, v))):
        assert_close("qif grad", b, a, 1e-4)
    # tau = 1 is outside the op's domain (it raises there): the loop computes it, as SpikingJelly does
    assert loop_e[0].shape == fused_e[0].shape and bool(torch.isfinite(loop_e[2]).all())


@pytest.mark.peers
def test_ilif_activation_aware_stbif_match_spikingjelly():
    sjf, sjs = _sjf(), _sjs()
    x, v = _inputs(T, N, C, scale=3.0), _inputs(N, C, scale=0.5, seed=5)
    out = F.ilif_multi_step(x, v, 2.0, 0.8, surrogate.MultiLevelSpikeCount(4), False, True)
    ref = sjf.ilif_multi_step(x, v, 2.0, 0.8, sjs.MultiLevelSpikeCount(4), False, True)
    assert torch.equal(out[0], ref[0]) and out[0].max() > 1  # multi-level counts
    assert_close("ilif v_seq", ref[2], out[2], 1e-5)
    for a, b in zip(_grads(out, (x, v)), _grads(ref, (x, v))):
        assert_close("ilif grad", b, a, 1e-4)
    with pytest.raises(TypeError, match="MultiLevelSpikeCount"):
        F.ilif_multi_step(x, v, surrogate_function=surrogate.Sigmoid())

    with torch.no_grad():
        xs, v0 = x.detach() - 1.0, torch.zeros(N, C, device=DEVICE)
        thr = torch.tensor([0.5, 1.0, 1.5], device=DEVICE)
        off = torch.tensor([0.0, 0.2, -0.1], device=DEVICE)
        # neuron i of the 30 has channel i % 3 (inner_size 1): three thresholds and offsets
        out = F.activation_aware_if_multi_step(xs, v0, thr, off, 3, 1, None, True)
        ref = sjf.activation_aware_if_multi_step(xs.cpu(), v0.cpu(), thr.cpu(), off.cpu(), 3, 1, None, True)
        assert torch.equal(out[0].cpu(), ref[0]) and torch.allclose(out[2].cpu(), ref[2], atol=1e-6)

        q, acc = torch.zeros(N, C, device=DEVICE), torch.zeros(N, C, device=DEVICE)
        params = (torch.tensor(0.5), torch.tensor(3.0), torch.tensor(-2.0))
        out = F.stbif_multi_step(xs, q, acc, *[p.to(DEVICE) for p in params])
        ref = sjf.stbif_multi_step(xs.cpu(), q.cpu(), acc.cpu(), *params)
        for a, b in zip(out, ref):
            assert torch.allclose(a.cpu(), b, atol=1e-6)
    with pytest.raises(RuntimeError, match="autograd"):
        F.stbif_multi_step(x, q, acc, *params)


@pytest.mark.peers
def test_one_step_models_match_spikingjelly():
    sjf, sjs = _sjf(), _sjs()
    x, v = _inputs(N, C, scale=2.0) - 0.5, _inputs(N, C, scale=0.5, seed=6)
    u = _inputs(N, C, scale=0.5, seed=7)
    k = torch.tensor(1.3, device=DEVICE, requires_grad=True)
    cases = {
        "ternary_if": lambda f, s: f.ternary_if_step(x, v, 0.7, None, s),
        "ternary_lif": lambda f, s: f.ternary_lif_step(x, v, 2.0, True, 0.7, 0.0, s, True),
        "qif": lambda f, s: f.qif_step(x, v, 2.0, 1.0, 0.0, 0.8, 1.0, 0.0, s),
        "eif": lambda f, s: f.eif_step(x, v, 2.0, 1.0, 1.0, 0.0, 1.0, None, s),
        "aaif": lambda f, s: f.activation_aware_if_step(x, v, 1.0, 0.1, 0.0, s),
        "liaf": lambda f, s: f.liaf_step(x, v, 2.0, False, 1.0, 0.0, torch.relu, True, s),
        "ilif": lambda f, s: f.ilif_step(x, v, 2.0, 0.9, s),
        "izhikevich": lambda f, s: f.izhikevich_step(x, v, u, 2.0, 1.0, 0.0, 0.8, 2.0, 0.1, 0.2, 1.0, 0.0, s),
        "raf": lambda f, s: f.raf_step(x, u, v, -0.1, 2.0, 0.1, 0.5, 0.0, s),
        "klif": lambda f, s: f.klif_step(x, v, k, 2.0, True, True, 1.0, 0.0, s),
        "klif_noscale": lambda f, s: f.klif_step(x, v, k, 2.0, False, False, 1.0, None, s),
        "cuba": lambda f, s: f.cuba_lif_step(x, u, v, 0.5, 0.75, 1.0, 0.0, s),
        "clif": lambda f, s: f.clif_step(x, v, u, 2.0, 1.0, s),
        "voltage_reset": lambda f, s: (f.voltage_reset(v, (x > 0.5).float(), 1.0, 0.2, False),),
        "lif_charge": lambda f, s: (f.lif_charge(x, v, 2.0, False, None),),
    }
    for name, call in cases.items():
        out, ref = call(F, surrogate.Sigmoid()), call(sjf, sjs.Sigmoid())
        for a, b in zip(out, ref):
            assert_close(f"{name} output", b, a, 1e-6)
        ins = (x, v, u, k)
        for a, b in zip(_grads(out, ins), _grads(ref, ins)):
            assert (a is None) == (b is None), name
            if a is not None:
                assert_close(f"{name} grad", b, a, 1e-5)


@pytest.mark.peers
def test_psn_gated_lava_steps_match_spikingjelly():
    sjf, sjs = _sjf(), _sjs()
    x = [_inputs(N, C, seed=s) for s in range(5)]
    weight = torch.randn(3, device=DEVICE, requires_grad=True)
    bias = torch.tensor(-0.2, device=DEVICE)
    masked = torch.randn(5, 5, device=DEVICE).tril().requires_grad_(True)
    bias_t = torch.randn(5, device=DEVICE)
    for f, s in ((F, surrogate.ATan()), (sjf, sjs.ATan())):
        q, outs = (), []
        for xt in x:
            spike, q = f.sliding_psn_step(xt, q, weight, bias, s)
            outs.append(spike)
        qm, t, outs_m = (), 0, []
        for xt in x:
            spike, t, qm = f.masked_psn_step(xt, t, qm, masked, bias_t, 2, s)
            outs_m.append(spike)
        if f is F:
            ours = (torch.stack(outs), torch.stack(outs_m))
        else:
            theirs = (torch.stack(outs), torch.stack(outs_m))
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    for a, b in zip(_grads(ours, (weight, masked, *x)), _grads(theirs, (weight, masked, *x))):
        assert_close("psn grad", b, a, 1e-5)

    gates = [torch.rand(C, device=DEVICE, requires_grad=True) for _ in range(8)]
    spike0 = (x[1] > 0.7).float()
    g_out = F.gated_lif_step(x[0], x[2], spike0, *gates, surrogate.Sigmoid())
    g_ref = sjf.gated_lif_step(x[0], x[2], spike0, *gates, sjs.Sigmoid())
    for a, b in zip(g_out, g_ref):
        assert_close("gated", b, a, 1e-6)
    for a, b in zip(_grads(g_out, gates), _grads(g_ref, gates)):
        assert_close("gated grad", b, a, 1e-5)

    cur, vol = _inputs(N, C, scale=0.5, seed=11), _inputs(N, C, scale=0.5, seed=12)
    cd = torch.tensor(4096 * 0.25, device=DEVICE, requires_grad=True)
    vd = torch.tensor(4096 * 0.03, device=DEVICE, requires_grad=True)
    args = (x[0], cur, vol, cd, vd, 64 * 64, 1.0, 0.01 / 4096, 0.0)
    l_out, l_ref = F.lava_cuba_lif_step(*args, surrogate.Sigmoid()), sjf.lava_cuba_lif_step(*args, sjs.Sigmoid())
    for a, b in zip(l_out, l_ref):
        assert_close("lava", b, a, 1e-6)
    for a, b in zip(_grads(l_out, (x[0], cur, vol, cd, vd)), _grads(l_ref, (x[0], cur, vol, cd, vd))):
        assert_close("lava grad", b, a, 1e-5)


def test_neuron_implementation():
    cpu = F.neuron_implementation("lif", torch.device("cpu"))
    from fastspike import _ext
    assert cpu["implementation"] == ("cpp" if _ext.available() else "torch-reference")
    assert F.neuron_implementation("plif", torch.device("cuda"))["implementation"] == "triton"
    assert F.neuron_implementation("qif", torch.device("cpu"),
                                   execution="compile")["implementation"] == "torch-reference"
    with pytest.raises(ValueError, match="neuron_type"):
        F.neuron_implementation("hh", torch.device("cpu"))
    with pytest.raises(ValueError, match="execution"):
        F.neuron_implementation("lif", torch.device("cpu"), execution="graph")
    with pytest.raises(ValueError, match="device"):
        F.neuron_implementation("lif", torch.device("meta"))
