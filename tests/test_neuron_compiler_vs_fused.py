"""Generated kernels against hand-written ones: every fused neuron that is not a plain IF/LIF/PLIF/QIF/EIF
(those are in test_neuron_compiler.py), written as fastspike's own step function (neuron/dynamics.py), compiled
with ``compile_neuron`` and run on a backend, against the hand-written fused op on the same backend:
``multistep_neuron``'s fire variants (KLIF, ILIF, LIAF, ActivationAwareIF with scalar and per-channel thresholds),
``multistep_neuron2``'s two-state neurons (Izhikevich, CUBA-LIF, CLIF), ``multistep_gated_lif`` (GLIF, layer-wise
and per channel, gradients to every gate) and the forward-only ``stbif``. Outputs and final states must agree
(spikes exactly), and so must the gradients of the input, of every initial state and of KLIF's learnable k, for
random cotangents."""
import pytest
import torch

from fastspike import surrogate
from fastspike.compiler import compile_neuron
from fastspike.neuron import dynamics as D
from fastspike.ops import multistep_neuron, multistep_neuron2
from helpers import KERNEL_BACKENDS, assert_close

T, B, C = 7, 2, 150  # N = 300: two blocks of the generated C++ kernel and two Triton programs

ATAN = surrogate.ATan(alpha=2.0)
SIG = surrogate.Sigmoid(alpha=4.0)


def _single_state(name):
    """(step function, number of params, hand-written call (x, v0, params, backend) -> (out, v_last), analog)."""
    if name.startswith("klif"):
        scale_reset = name == "klif-scale-reset"
        kw = dict(tau=2.0, decay_input=True, v_threshold=1.0, v_reset=None if scale_reset else 0.0)

        def step(x, v, k):
            return D.klif_step(x, v, k, kw["tau"], kw["decay_input"], scale_reset, kw["v_threshold"], kw["v_reset"],
                               ATAN)

        def hand(x, v0, params, backend):
            return multistep_neuron(x, v0, mode="lif", fire="klif", k=params[0], scale_reset=scale_reset,
                                    surrogate_function=ATAN, backend=backend, **kw)[:2]
        return step, 1, hand, False
    if name == "ilif":
        tau, vth, count, window = 2.0, 1.0, 4, (0.0, 4.0)

        def step(x, v):
            return D.ilif_step(x, v, tau, vth, float(count), *window)

        def hand(x, v0, params, backend):
            return multistep_neuron(x, v0, mode="leaky", tau=tau, v_threshold=vth, v_reset=None, fire="count",
                                    max_spike_count=count, grad_window=window, backend=backend)[:2]
        return step, 0, hand, False
    if name.startswith("liaf"):
        act_name, related = {"liaf-relu": ("relu", True), "liaf-sigmoid-absolute": ("sigmoid", False),
                             "liaf-identity": ("identity", True)}[name]
        act = {"relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda h: h}[act_name]

        def step(x, v):
            return D.liaf_step(x, v, 2.0, True, 1.0, 0.0, act, related, SIG)

        def hand(x, v0, params, backend):
            return multistep_neuron(x, v0, mode="lif", tau=2.0, v_threshold=1.0, v_reset=0.0, fire="analog",
                                    act=act_name, threshold_related=related, surrogate_function=SIG,
                                    backend=backend)[:2]
        return step, 0, hand, True
    if name == "aaif":
        def step(x, v):
            return D.activation_aware_if_step(x, v, 1.0, 0.25, 0.0, ATAN)

        def hand(x, v0, params, backend):
            return multistep_neuron(x, v0, mode="if", v_threshold=1.0, v_reset=0.0, fire="offset", v_offset=0.25,
                                    surrogate_function=ATAN, backend=backend)[:2]
        return step, 0, hand, False
    raise KeyError(name)


SINGLE = ["klif", "klif-scale-reset", "ilif", "liaf-relu", "liaf-sigmoid-absolute", "liaf-identity", "aaif"]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", SINGLE)
def test_fire_variants_generated_equal_hand_written(name, backend):
    step, n_params, hand, analog = _single_state(name)
    compiled = compile_neuron(step, num_states=1, num_params=n_params)
    torch.manual_seed(1)
    x = (torch.randn(T, B, C) + 0.6).requires_grad_()
    v0 = (0.3 * torch.randn(B, C)).requires_grad_()
    params = (torch.tensor([1.3], requires_grad=True),) if n_params else ()
    (out,), (v,), _ = compiled(x, v0, params, backend=backend)
    out_ref, v_ref = hand(x, v0, params, backend)
    if analog:
        assert_close(f"{name} output", out_ref, out, 1e-5)
    else:
        assert torch.equal(out, out_ref), f"{name}: outputs differ at {(out != out_ref).sum().item()} elements"
        assert 0 < out.sum() and (out == 0).any(), "the inputs must make some neurons fire and some not"
    assert_close(f"{name} v_last", v_ref, v, 1e-5)
    go, gv = torch.randn_like(out), torch.randn_like(v)
    leaves = (x, v0) + params
    want = torch.autograd.grad((out_ref, v_ref), leaves, (go, gv))
    got = torch.autograd.grad((out, v), leaves, (go, gv))
    for label, a, b in zip(("x", "v0", "k"), want, got):
        assert a.abs().sum() > 0, f"{name}: grad {label} is zero, the comparison would be empty"
        assert_close(f"{name} grad {label}", a, b, 5e-5)


TWO = {
    # name: (step function with states in its own order, hand-written model and arguments, state order of the op)
    "izhikevich": (lambda x, v, w: D.izhikevich_step(x, v, w, 2.0, 1.0, -0.1, 0.8, 3.0, 0.3, 0.05, 1.0, -0.1, SIG),
                   dict(model="izhikevich", tau=2.0, a0=1.0, v_rest=-0.1, v_c=0.8, tau_w=3.0, a=0.3, b=0.05,
                        v_threshold=1.0, v_reset=-0.1, surrogate_function=SIG), ("v", "u")),
    "izhikevich-soft-atan": (lambda x, v, w: D.izhikevich_step(x, v, w, 3.0, 0.8, 0.0, 0.7, 2.0, 0.1, 0.2, 1.0, None,
                                                               ATAN),
                             dict(model="izhikevich", tau=3.0, a0=0.8, v_rest=0.0, v_c=0.7, tau_w=2.0, a=0.1, b=0.2,
                                  v_threshold=1.0, v_reset=None, surrogate_function=ATAN), ("v", "u")),
    "cuba": (lambda x, c, v: D.cuba_lif_step(x, c, v, 0.5, 0.75, 1.0, 0.0, SIG),
             dict(model="cuba", c_decay=0.5, v_decay=0.75, v_threshold=1.0, v_reset=0.0, surrogate_function=SIG),
             ("u", "v")),
    "cuba-soft": (lambda x, c, v: D.cuba_lif_step(x, c, v, 0.3, 0.9, 0.8, None, ATAN),
                  dict(model="cuba", c_decay=0.3, v_decay=0.9, v_threshold=0.8, v_reset=None, surrogate_function=ATAN),
                  ("u", "v")),
    "clif": (lambda x, v, m: D.clif_step(x, v, m, 2.0, 1.0, SIG),
             dict(model="clif", tau=2.0, v_threshold=1.0, v_reset=None, surrogate_function=SIG), ("v", "u")),
}


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("name", list(TWO))
def test_two_state_generated_equal_hand_written(name, backend):
    step, kw, order = TWO[name]
    compiled = compile_neuron(step, num_states=2)
    torch.manual_seed(2)
    x = (torch.randn(T, B, C) + 0.5).requires_grad_()
    s0 = {"v": (0.3 * torch.randn(B, C)).requires_grad_(), "u": (0.1 * torch.randn(B, C)).requires_grad_()}
    (s,), states, _ = compiled(x, tuple(s0[k] for k in order), backend=backend)
    got = dict(zip(order, states))
    s_ref, v_ref, u_ref = multistep_neuron2(x, s0["v"], s0["u"], backend=backend, **kw)[:3]
    assert torch.equal(s, s_ref), f"{name}: spikes differ at {(s != s_ref).sum().item()} elements"
    assert 0 < s.sum() < s.numel(), "the inputs must make some neurons fire and some not"
    assert_close(f"{name} v_last", v_ref, got["v"], 1e-5)
    assert_close(f"{name} u_last", u_ref, got["u"], 1e-5)
    gs, gv, gu = torch.randn_like(s), torch.randn_like(v_ref), torch.randn_like(u_ref)
    leaves = (x, s0["v"], s0["u"])
    want = torch.autograd.grad((s_ref, v_ref, u_ref), leaves, (gs, gv, gu))
    have = torch.autograd.grad((s, got["v"], got["u"]), leaves, (gs, gv, gu))
    for label, a, b in zip(("x", "v0", "u0"), want, have):
        assert a.abs().sum() > 0, f"{name}: grad {label} is zero, the comparison would be empty"
        assert_close(f"{name} grad {label}", a, b, 5e-5)


def _glif_params(per_channel: bool, channels: int):
    """The eight GLIF gates/coefficients after the sigmoid (conduct per step), as leaves."""
    g = torch.Generator().manual_seed(7)
    shape = (channels,) if per_channel else ()
    values = [torch.rand(shape, generator=g) * 0.8 + 0.1 for _ in range(7)]
    conduct = torch.rand((T, channels) if per_channel else (T,), generator=g) * 0.8 + 0.1
    return [v.requires_grad_() for v in (*values, conduct)]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("per_channel", [False, True], ids=["layer-wise", "per-channel"])
def test_gated_lif_generated_equal_hand_written(per_channel, backend):
    """GLIF's step function (states V and the previous spike; conduct a per-step input; the seven other gates
    parameters broadcast per channel) against ops.multistep_gated_lif, gradients to every gate included."""
    from fastspike.ops import multistep_gated_lif

    def step(x, c, v, s, alpha, beta, gamma, tau, v_threshold, linear_decay, v_subreset):
        s2, v2 = D.gated_lif_step(x, v, s, alpha, beta, gamma, tau, v_threshold, linear_decay, v_subreset, c, SIG)
        return s2, v2, s2

    channels, length = 6, 50  # x [T, B, 6, 50]: 600 neurons per step, channels at dim 2 as the op expects
    compiled = compile_neuron(step, num_states=2, num_params=7, num_inputs=2)
    torch.manual_seed(3)
    x = (torch.randn(T, B, channels, length) + 0.4).requires_grad_()
    v0 = (0.2 * torch.randn(B, channels, length)).requires_grad_()
    params = _glif_params(per_channel, channels)
    *gates, conduct = params
    as_step = [p.reshape(channels, 1) if per_channel else p.reshape(1) for p in gates]
    c_seq = (conduct.reshape(T, 1, channels, 1) if per_channel else conduct.reshape(T, 1, 1, 1)).expand_as(x)
    (s,), (v, _), _ = compiled((x, c_seq), (v0, 0.0), as_step, backend=backend)
    s_ref, v_ref = multistep_gated_lif(x, v0, *gates, conduct, surrogate_function=SIG, backend=backend)
    assert torch.equal(s, s_ref), f"spikes differ at {(s != s_ref).sum().item()} elements"
    assert 0 < s.sum() < s.numel(), "the inputs must make some neurons fire and some not"
    assert_close("v_last", v_ref, v, 1e-5)
    gs, gv = torch.randn_like(s), torch.randn_like(v)
    leaves = (x, v0, *params)
    want = torch.autograd.grad((s_ref, v_ref), leaves, (gs, gv))
    have = torch.autograd.grad((s, v), leaves, (gs, gv))
    names = ("x", "v0", "alpha", "beta", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset", "conduct")
    for label, a, b in zip(names, want, have):
        assert a.abs().sum() > 0, f"grad {label} is zero, the comparison would be empty"
        assert_close(f"grad {label}", a, b, 1e-4)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_stbif_generated_equal_hand_written(backend):
    """SpikeZIP's ST-BIF step function (states q and the spike count) against the forward-only ops.stbif."""
    from fastspike.ops import stbif

    def step(x, q, acc, q_threshold, pos_max, neg_min):
        out, q2, acc2, _ = D.stbif_step(x, q, acc, q_threshold, pos_max, neg_min)
        return out, q2, acc2

    compiled = compile_neuron(step, num_states=2, num_params=3)
    torch.manual_seed(4)
    x = torch.randn(T, B, C) * 0.6
    q0, acc0 = torch.full((B, C), 0.5), torch.zeros(B, C)
    thresholds = (torch.tensor([0.4]), torch.tensor([3.0]), torch.tensor([-2.0]))
    with torch.no_grad():
        (out,), (q, acc), _ = compiled(x, (q0, acc0), thresholds, backend=backend)
        out_ref, q_ref, acc_ref = stbif(x, q0, acc0, *thresholds, backend=backend)[:3]
    assert torch.equal(out, out_ref), f"outputs differ at {(out != out_ref).sum().item()} elements"
    assert (out > 0).any() and (out < 0).any() and (out == 0).any(), "events of both signs and none are needed"
    assert torch.equal(acc, acc_ref)
    assert_close("q", q_ref, q, 1e-6)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_activation_aware_per_channel_generated_equal_hand_written(backend):
    """ActivationAwareIF with a threshold and an offset per channel (parameters broadcast per channel in the
    compiled kernel; the fused op's per-channel path)."""
    channels = 5

    def step(x, v, v_threshold, v_offset):
        return D.activation_aware_if_step(x, v, v_threshold, v_offset, None, ATAN)

    compiled = compile_neuron(step, num_states=1, num_params=2)
    torch.manual_seed(5)
    x = (torch.randn(T, B, channels, 60) + 0.5).requires_grad_()
    v0 = (0.2 * torch.randn(B, channels, 60)).requires_grad_()
    vth, voff = torch.linspace(0.6, 1.4, channels), torch.linspace(-0.2, 0.3, channels)
    (s,), (v,), _ = compiled(x, v0, (vth.reshape(channels, 1), voff.reshape(channels, 1)), backend=backend)
    s_ref, v_ref, _ = multistep_neuron(x, v0, mode="if", v_threshold=vth, v_reset=None, fire="offset",
                                       v_offset=voff, channel_dim=2, surrogate_function=ATAN, backend=backend)
    assert torch.equal(s, s_ref), f"spikes differ at {(s != s_ref).sum().item()} elements"
    assert 0 < s.sum() < s.numel()
    assert_close("v_last", v_ref, v, 1e-5)
    gs, gv = torch.randn_like(s), torch.randn_like(v)
    want = torch.autograd.grad((s_ref, v_ref), (x, v0), (gs, gv))
    have = torch.autograd.grad((s, v), (x, v0), (gs, gv))
    for label, a, b in zip(("x", "v0"), want, have):
        assert_close(f"grad {label}", a, b, 5e-5)
