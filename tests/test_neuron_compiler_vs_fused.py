"""Generated kernels against hand-written ones: every fused neuron that is not a plain IF/LIF/PLIF/QIF/EIF
(those are in test_neuron_compiler.py), written as fastspike's own step function (neuron/dynamics.py), compiled
with ``compile_neuron`` and run on a backend, against the hand-written fused op on the same backend:
``multistep_neuron``'s fire variants (KLIF, ILIF, LIAF, ActivationAwareIF) and ``multistep_neuron2``'s two-state
neurons (Izhikevich, CUBA-LIF, CLIF). Outputs and final states must agree (spikes exactly), and so must the
gradients of the input, of every initial state and of KLIF's learnable k, for random cotangents."""
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
