"""SpikingJelly 2.0's functional-state API (MemoryModule / BaseNode / PSN functional forwards, base's
whole-network helpers), neurons written in SpikingJelly 2.0's style, and the behaviour of the new neuron classes
that needs no SpikingJelly: single vs multi step, state, errors, hand-computed steps."""
import pytest
import torch
import torch.nn as nn

from fastspike import base, functional, layer, neuron, surrogate
from fastspike.neuron import dynamics
from helpers import DEVICE, assert_close
from test_neuron_sj_helpers import sj


def _x(*shape, seed=1, scale=1.5, shift=0.5):
    torch.manual_seed(seed)
    return torch.randn(*shape, device=DEVICE) * scale + shift


# every neuron with a membrane state, built with defaults (or the arguments it needs)
STATEFUL = {
    "IFNode": lambda **k: neuron.IFNode(**k),
    "LIFNode": lambda **k: neuron.LIFNode(tau=3.0, **k),
    "ParametricLIFNode": lambda **k: neuron.ParametricLIFNode(**k),
    "QIFNode": lambda **k: neuron.QIFNode(**k),
    "EIFNode": lambda **k: neuron.EIFNode(**k),
    "IzhikevichNode": lambda **k: neuron.IzhikevichNode(a=0.2, b=0.1, **k),
    "ILIFNode": lambda **k: neuron.ILIFNode(**k),
    "HalfThresholdIFNode": lambda **k: neuron.HalfThresholdIFNode(**k),
    "ActivationAwareIFNode": lambda **k: neuron.ActivationAwareIFNode(v_offset=0.1, **k),
    "RAFNode": lambda **k: neuron.RAFNode(**k),
    "TernaryIFNode": lambda **k: neuron.TernaryIFNode(**k),
    "TernaryLIFNode": lambda **k: neuron.TernaryLIFNode(**k),
    "KLIFNode": lambda **k: neuron.KLIFNode(**k),
    "ComplementaryLIFNode": lambda **k: neuron.ComplementaryLIFNode(**k),
    "LIAFNode": lambda **k: neuron.LIAFNode(torch.tanh, True, 2.0, **k),
    "MPBNLIFNode": lambda **k: neuron.MPBNLIFNode(out_features=7, **k),
}


@pytest.mark.parametrize("name", list(STATEFUL))
def test_single_and_multi_step_and_functional_forward_agree(name):
    x = _x(6, 3, 7)
    m = STATEFUL[name](step_mode="m").to(DEVICE)
    s = STATEFUL[name](step_mode="s").to(DEVICE)
    s.load_state_dict(m.state_dict())
    xm, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_m = m(xm)
    out_s = torch.stack([s(t) for t in xs])
    assert torch.equal(out_m, out_s)
    assert list(m._memories) == list(s._memories)
    for key in m._memories:
        assert_close(key, getattr(m, key), getattr(s, key), 1e-6)
    (out_m.sum() + m.v.sum()).backward()
    (out_s.sum() + s.v.sum()).backward()
    assert_close("grad x", xm.grad, xs.grad, 1e-5)
    for (k, a), (_, b) in zip(m.named_parameters(), s.named_parameters()):
        assert_close(f"grad {k}", a.grad, b.grad, 1e-5)
    # the functional forward from the initial states gives the same result and leaves the module as it was
    f = STATEFUL[name](step_mode="m").to(DEVICE)
    f.load_state_dict(m.state_dict())
    before = dict(f._memories)
    (out_f,), states = f.functional_forward((x,), tuple(f._memories.values()))
    assert torch.equal(out_f, out_m.detach())
    assert dict(f._memories) == before
    for key, value in zip(f._memories, states):
        assert_close(key, getattr(m, key), value, 1e-6)


@pytest.mark.parametrize("name", ["QIFNode", "IzhikevichNode", "KLIFNode", "IFNode", "LIFNode"])
def test_store_v_seq(name):
    x = _x(5, 2, 4)
    m = STATEFUL[name](step_mode="m", store_v_seq=True).to(DEVICE)
    s = STATEFUL[name](step_mode="s", store_v_seq=True).to(DEVICE)
    m(x)
    for t in x:
        s(t)
    assert m.v_seq.shape == x.shape and torch.equal(m.v_seq[-1], m.v)
    assert_close("v_seq", m.v_seq, s.v_seq, 1e-6)
    m.reset()
    assert m.v_seq is None


@pytest.mark.parametrize("name", ["QIFNode", "IzhikevichNode", "RAFNode", "ComplementaryLIFNode"])
def test_batch_change_without_reset_raises(name):
    n = STATEFUL[name](step_mode="m").to(DEVICE)
    n(_x(3, 2, 4))
    with pytest.raises(RuntimeError, match="reset_net"):
        n(_x(3, 5, 4))
    functional.reset_net(n)
    assert n(_x(3, 5, 4)).shape == (3, 5, 4)


def test_sj2_style_custom_neuron():
    """A neuron written in SpikingJelly 2.0's style: only single_step_functional_forward."""

    class Quadratic(neuron.BaseNode):
        def __init__(self, tau=2.0, **kw):
            super().__init__(**kw)
            self.tau = tau

        def single_step_functional_forward(self, inputs, states, **kwargs):
            x, v = inputs[0], states[0]
            h = v + (x + v * v) / self.tau
            s = self.surrogate_function(h - self.v_threshold)
            return (s,), (self.apply_hard_reset(h, s, self.v_reset),)

    x = _x(5, 3, 4, scale=1.0)
    # the same dynamics written out by hand
    v, ref = torch.zeros_like(x[0]), []
    for t in x:
        h = v + (t + v * v) / 2.0
        s = (h >= 1.0).float()
        ref.append(s)
        v = h * (1 - s)
    ref = torch.stack(ref)
    for mode in ("s", "m"):
        n = Quadratic(step_mode=mode, store_v_seq=True)
        out = n(x) if mode == "m" else torch.stack([n(t) for t in x])
        assert torch.equal(out, ref) and 0 < ref.mean() < 1
        assert_close("v", v, n.v, 1e-6)
        assert n.v_seq.shape == x.shape
    (out,), (v2,) = Quadratic(step_mode="m").functional_forward((x,), (0.0,))
    assert torch.equal(out, ref)

    class ShiftedIF(neuron.IFNode):  # overriding the functional step of a fused neuron is honoured
        def single_step_functional_forward(self, inputs, states, **kwargs):
            return super().single_step_functional_forward((inputs[0] + 1.0,), states, **kwargs)

    assert ShiftedIF(step_mode="m")(torch.zeros(2, 3, device=DEVICE)).sum() == 6
    assert ShiftedIF(step_mode="s")(torch.zeros(3, device=DEVICE)).sum() == 3


def test_sj1_style_neuron_functional_forward():
    class Quadratic(neuron.BaseNode):
        def neuronal_charge(self, x):
            self.v = self.v + x * x

    n = Quadratic(step_mode="m")
    x = torch.tensor([[0.6], [0.6], [0.6]], device=DEVICE)
    (out,), (v,) = n.functional_forward((x,), (0.0,))
    assert out.flatten().tolist() == [0.0, 0.0, 1.0] and n.v == 0.0
    assert torch.equal(n(x), out) and torch.equal(n.v, v)
    with pytest.raises(NotImplementedError, match="single_step_functional_forward.*neuronal_charge"):
        neuron.BaseNode()(torch.zeros(2, device=DEVICE))


def test_memory_module_functional_api():
    n = neuron.IzhikevichNode(w_rest=0.25)
    assert n.get_reset_value("w") == 0.25 and n.get_reset_value("v") == 0.0
    with pytest.raises(KeyError, match="not a registered memory"):
        n.get_reset_value("u")
    v, s = torch.tensor([0.5, 2.0], device=DEVICE), torch.tensor([0.0, 1.0], device=DEVICE)
    assert neuron.BaseNode.apply_hard_reset(v, s, -0.5).tolist() == [0.5, -0.5]
    assert neuron.BaseNode.apply_soft_reset(v, s, 1.0).tolist() == [0.5, 1.0]
    with pytest.raises(TypeError, match="inputs must be a tuple"):
        n.functional_forward(torch.zeros(2, device=DEVICE), (0.0, 0.0))
    # a module written the older way (single_step_forward only) gets a functional forward too
    filt = layer.SynapseFilter(tau=2.0, step_mode="m").to(DEVICE)
    x = _x(4, 2, 3)
    (y,), (state,) = filt.functional_forward((x,), (0.0,))
    assert torch.equal(y, filt(x)) and torch.equal(state, filt._memories[list(filt._memories)[0]])


@pytest.mark.parametrize("cls", ["MaskedPSN", "SlidingPSN"])
def test_psn_functional_forward(cls):
    n = neuron.MaskedPSN(2, 4, lambda_init=1.0) if cls == "MaskedPSN" else neuron.SlidingPSN(3)
    x = _x(4, 2, 5)
    states = tuple(n._memories.values())
    outs = []
    for t in x:
        (o,), states = n.functional_forward((t,), states)
        outs.append(o)
    assert list(n._memories.values()) == [0, []][-len(states):]  # unchanged
    n.step_mode = "m"
    (om,), _ = n.functional_forward((x,), tuple(n._memories.values()))
    assert torch.equal(torch.stack(outs), om)
    n.step_mode = "s"
    assert torch.equal(torch.stack([n(t) for t in x]), om)


def test_network_memories_and_to_functional_forward():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), neuron.LIFNode(), nn.Linear(4, 3), neuron.IzhikevichNode(a=0.1))
    assert [k for k, _ in base.named_memories(net)] == ["1.v", "3.v", "3.w"]
    fwd = base.to_functional_forward(net)
    x = _x(2, 5)
    (y,), states = fwd((x,), (0.0, 0.0, 0.0))
    assert base.extract_memories(net) == [0.0, 0.0, 0.0]
    assert torch.equal(y, net(x))
    for a, b in zip(states, base.extract_memories(net)):
        assert torch.equal(a, b)
    (y2,), states2 = fwd((x,), states)  # continue from the returned states
    assert torch.equal(y2, net(x))
    with pytest.raises(ValueError, match="expected 3 states"):
        fwd((x,), (0.0,))
    base.load_memories(net, [1.0, 2.0, 3.0])
    assert list(base.memories(net)) == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="Memory length mismatch"):
        base.load_memories(net, [1.0])
    # a callable using the network: its memories are swapped in and restored
    functional.reset_net(net)
    fwd2 = base.to_functional_forward(net, lambda x: net(x) * 2)
    (y3,), _ = fwd2((x,), (0.0, 0.0, 0.0))
    assert torch.equal(y3, 2 * y) and base.extract_memories(net) == [0.0, 0.0, 0.0]
    # a single neuron
    n = neuron.QIFNode(step_mode="m")
    (s,), (v,) = base.to_functional_forward(n)((x.unsqueeze(0),), (-0.1,))
    assert torch.equal(s, n(x.unsqueeze(0)))


# -- hand-computed steps -------------------------------------------------------------------------
def test_dynamics_by_hand():
    hs = surrogate.heaviside
    x, v = torch.tensor([0.5, 2.0], device=DEVICE), torch.tensor([0.2, 0.4], device=DEVICE)
    s, v2 = dynamics.qif_step(x, v, 2.0, 1.0, 0.0, 0.8, 1.0, -0.1, hs)
    h = v + (x + v * (v - 0.8)) / 2.0  # [0.29, 1.12]
    assert s.tolist() == [0.0, 1.0] and torch.allclose(v2, torch.stack([h[0], torch.tensor(-0.1, device=DEVICE)]))
    s, v2 = dynamics.ternary_if_step(torch.tensor([1.5, -1.5, 0.2], device=DEVICE), torch.zeros(3, device=DEVICE), 1.0,
                                     None, hs)
    assert s.tolist() == [1.0, -1.0, 0.0] and torch.allclose(v2, torch.tensor([0.5, -0.5, 0.2], device=DEVICE))
    s, v2 = dynamics.ilif_step(torch.tensor([2.6, -1.0], device=DEVICE), torch.zeros(2, device=DEVICE), 4.0 / 3.0, 1.0,
                               4.0, 0.0, 4.0)
    assert s.tolist() == [3.0, 0.0] and torch.allclose(v2, torch.tensor([-0.4, -1.0], device=DEVICE))
    out, q, acc, spike = dynamics.stbif_step(torch.tensor([0.2, -0.2], device=DEVICE), torch.full((2,), 0.5,
                                                                                                  device=DEVICE),
                                                                                                  torch.zeros(2,
                                                                                                              device=DEVICE),
                                             torch.tensor(0.25), torch.tensor(3.0), torch.tensor(-3.0))
    assert spike.tolist() == [1.0, -1.0] and out.tolist() == [0.25, -0.25] and acc.tolist() == [1.0, -1.0]
    assert torch.allclose(q, torch.tensor([0.3, 0.7], device=DEVICE))


def test_ilif_gradient_window():
    x = torch.tensor([0.5, 1.5, 3.0, 5.0, -0.5], device=DEVICE, requires_grad=True)
    n = neuron.ILIFNode(surrogate_function=neuron.ilif.MultiLevelSpikeCount(4, grad_window=(0.0, 3.0)))
    n(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]  # d spike / d x inside [0, 3] only (tau enters via v)


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,exc,match", [
    (lambda: neuron.QIFNode(tau=1.0), ValueError, "tau must be > 1"),
    (lambda: neuron.QIFNode(v_reset=1.5), ValueError, "v_threshold must be > v_reset"),
    (lambda: neuron.EIFNode(delta_T=0.0), ValueError, "delta_T"),
    (lambda: neuron.IzhikevichNode(tau_w="2"), TypeError, "tau_w must be a number"),
    (lambda: neuron.RAFNode(b=0.1), ValueError, "b must be < 0"),
    (lambda: neuron.TernaryIFNode(v_reset=1.0), ValueError, "strictly between"),
    (lambda: neuron.TernaryLIFNode(tau=2), TypeError, "tau must be a float"),
    (lambda: neuron.HalfThresholdIFNode(v_threshold=-1.0), ValueError, "finite and positive"),
    (lambda: neuron.HalfThresholdIFNode(v_threshold="1"), TypeError, "real number"),
    (lambda: neuron.ILIFNode(surrogate_function=surrogate.Sigmoid()), ValueError, "MultiLevelSpikeCount"),
    (lambda: neuron.ActivationAwareIFNode(v_threshold=[[1.0]]), ValueError, "scalar or 1D"),
    (lambda: neuron.ActivationAwareIFNode(v_threshold=[1.0, 0.0]), ValueError, "finite positive"),
    (lambda: neuron.STBIFNode(0.1, level=1), ValueError, "level"),
    (lambda: neuron.DSRIFNode(step_mode="s"), ValueError, "multi-step mode only"),
    (lambda: neuron.DSRLIFNode(alpha=1.5), ValueError, "alpha"),
    (lambda: neuron.GatedLIFNode(4, init_tau=1.5), ValueError, "init_tau"),
    (lambda: neuron.OTTTLIFNode(step_mode="m"), ValueError, "single-step"),
    (lambda: neuron.MPBNLIFNode(), ValueError, "exactly one of out_features or out_channels"),
    (lambda: neuron.FewSpikeTable([1.0, 2.0], [1.0], [1.0, 2.0]), ValueError, "same shape"),
    (lambda: neuron.HGNode([], []), ValueError, "at least one"),
    (lambda: neuron.FlexSN(lambda x, v: (x, v), 1, static_inputs=(1.0,)), TypeError, "must contain tensors"),
    (lambda: neuron.FlexSN(nn.Identity(), 0), TypeError, "pure callable"),
    (lambda: neuron.FlexSN(lambda x, v: v, 2), ValueError, "at least one step input"),
    (lambda: neuron.FlexSN(lambda x, v: 1 / 0, 1), RuntimeError, "infer its output arity"),
    (lambda: neuron.powerlaw_psd_gaussian(1.0, 8.5), ValueError, "Size must be"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_flexsn_rejects_captured_tensors_and_bad_states():
    w = torch.ones(1)
    with pytest.raises(TypeError, match="capture tensors"):
        neuron.FlexSN(lambda x, v: (x * w, v), 1)
    n = neuron.FlexSN(lambda x, v: (x + v, x + v), 1, step_mode="s")
    with pytest.raises(ValueError, match="expected 1 states"):
        n.functional_forward((torch.zeros(2, device=DEVICE),), ())
    with pytest.raises(ValueError, match="time dimension"):
        n.step_mode = "m"
        n(torch.tensor(1.0, device=DEVICE))
    with pytest.raises(ValueError, match="Unsupported FlexSN step_mode"):
        n.step_mode = "x"


# -- SpikingJelly's own functional forwards ------------------------------------------------------
@pytest.mark.peers
@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize("name,kw", [("IFNode", {}), ("LIFNode", {"tau": 3.0}), ("ParametricLIFNode", {}),
                                     ("QIFNode", {}), ("IzhikevichNode", {"a": 0.2, "b": 0.1}),
                                     ("CUBALIFNode", {}), ("RAFNode", {}), ("MaskedPSN", {"k": 2, "T": 4,
                                                                                          "lambda_init": 1.0}),
                                     ("SlidingPSN", {"k": 3})])
def test_functional_forward_matches_spikingjelly(name, kw, mode):
    sj_neuron, _ = sj()
    torch.manual_seed(0)
    ref = getattr(sj_neuron, name)(**kw).to(DEVICE)
    ours = getattr(neuron, name)(**kw).to(DEVICE)
    ours.load_state_dict(ref.state_dict())
    ref.step_mode = ours.step_mode = mode
    x = _x(4, 3, 5)
    inputs = (x,) if mode == "m" else (x[0],)
    oa, sa = ref.functional_forward(inputs, tuple(ref._memories.values()))
    ob, sb = ours.functional_forward(inputs, tuple(ours._memories.values()))
    assert torch.equal(oa[0], ob[0])
    assert len(sa) == len(sb)
    for a, b in zip(sa, sb):
        if isinstance(a, torch.Tensor):
            assert_close("state", a, b, 1e-6)
        elif isinstance(a, (list, tuple)):
            assert all(torch.equal(p, q) for p, q in zip(a, b)) and len(a) == len(b)
        else:
            assert a == b


@pytest.mark.peers
def test_sj2_style_neuron_matches_spikingjelly():
    sj_neuron, _ = sj()

    def make(module):
        class Quadratic(module.BaseNode):
            def single_step_functional_forward(self, inputs, states, **kwargs):
                x, v = inputs[0], states[0]
                h = v + (x + v * v) / 2.0
                s = self.surrogate_function(h - self.v_threshold)
                return (s,), (self.apply_soft_reset(h, s, self.v_threshold),)
        return Quadratic

    from test_neuron_sj_helpers import compare

    for mode in ("s", "m"):
        ref = make(sj_neuron)(v_reset=None, step_mode=mode, store_v_seq=True)
        ours = make(neuron)(v_reset=None, step_mode=mode, store_v_seq=True)
        compare(ref, ours, [_x(5, 3, 4, scale=1.0, seed=s) for s in (1, 2)], mode)
