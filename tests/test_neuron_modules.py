"""Neuron modules: step modes, state, errors, and SpikingJelly 2.0.0 numerical compatibility."""
import pytest
import torch

from fastspike import neuron, surrogate
from helpers import assert_close

BACKENDS = ["torch", "cpp", "triton"]


def _make(cls, backend, **kw):
    if cls is neuron.LIFNode:
        return cls(tau=2.5, backend=backend, **kw)
    if cls is neuron.ParametricLIFNode:
        return cls(init_tau=3.0, backend=backend, **kw)
    return cls(backend=backend, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls", [neuron.IFNode, neuron.LIFNode, neuron.ParametricLIFNode], ids=lambda c: c.__name__)
def test_single_and_multi_step_agree(cls, backend):
    x = torch.randn(6, 3, 11) + 0.5
    m = _make(cls, backend, step_mode="m", store_v_seq=True)
    s = _make(cls, backend, step_mode="s", store_v_seq=True)
    xm = x.clone().requires_grad_()
    xs = x.clone().requires_grad_()
    out_m = m(xm)
    out_s = torch.stack([s(xt) for xt in xs])
    assert torch.equal(out_m, out_s)
    assert torch.equal(m.v, s.v)
    assert torch.equal(m.v_seq, s.v_seq) and m.v_seq.shape == x.shape
    (out_m.sum() + m.v.sum()).backward()
    (out_s.sum() + s.v.sum()).backward()
    assert_close("grad_x", xm.grad, xs.grad, 1e-5)
    if cls is neuron.ParametricLIFNode:
        assert_close("grad_w", m.w.grad, s.w.grad, 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_persists_until_reset(backend):
    n = neuron.LIFNode(step_mode="m", backend=backend)
    x = torch.rand(4, 2, 5) * 0.9
    a = n(x)
    v_after = n.v.clone()
    b = n(x)  # continues from v_after
    whole = neuron.LIFNode(step_mode="m", backend=backend)(torch.cat([x, x]))
    assert torch.equal(torch.cat([a, b]), whole)
    assert not torch.equal(n.v, v_after)
    n.reset()
    assert n.v == 0.0 and n.v_seq is None
    assert torch.equal(n(x), a)


def test_state_dict_keys_and_memories_not_saved():
    p = neuron.ParametricLIFNode()
    p(torch.randn(2, 3))
    assert list(p.state_dict().keys()) == ["w"]
    assert list(neuron.LIFNode().state_dict().keys()) == []
    assert abs(1 / torch.sigmoid(p.w).item() - 2.0) < 1e-6


def test_custom_subclass_uses_its_own_charge():
    class Quadratic(neuron.BaseNode):
        def neuronal_charge(self, x):
            self.v = self.v + x * x

    n = Quadratic(step_mode="m")
    x = torch.tensor([[0.6], [0.6], [0.6]])
    assert n(x).flatten().tolist() == [0.0, 0.0, 1.0]  # 0.36, 0.72, 1.08 -> fires at t=2

    class ShiftedLIF(neuron.LIFNode):  # overriding the charge of a fused neuron must be honoured
        def neuronal_charge(self, x):
            self.v = self.v + x + 1.0

    assert ShiftedLIF(step_mode="m")(torch.zeros(2, 3)).sum() == 6


def test_errors():
    with pytest.raises(ValueError, match="tau must be a finite number > 1"):
        neuron.LIFNode(tau=1.0)
    with pytest.raises(ValueError, match="init_tau must be a finite number > 1"):
        neuron.ParametricLIFNode(init_tau=0.5)
    with pytest.raises(ValueError, match="backend must be one of"):
        neuron.IFNode(backend="cupy2")
    with pytest.raises(ValueError, match="step_mode"):
        neuron.IFNode(step_mode="x")
    with pytest.raises(TypeError, match="v_reset must be"):
        neuron.IFNode(v_reset="0")
    n = neuron.IFNode(step_mode="m")
    with pytest.raises(ValueError, match=r"expects input of shape \[T, N, \*\]"):
        n(torch.randn(5))
    with pytest.raises(TypeError, match="floating-point"):
        n(torch.ones(2, 3, dtype=torch.int64))
    n(torch.randn(2, 4, 3))
    with pytest.raises(RuntimeError, match="functional.reset_net"):
        n(torch.randn(2, 5, 3))
    n.reset()
    assert n(torch.randn(2, 5, 3)).shape == (2, 5, 3)


def test_detach_cuts_history():
    n = neuron.LIFNode(step_mode="m", store_v_seq=True)
    x = torch.randn(3, 4, requires_grad=True)
    n(x)
    n.detach()
    assert not n.v.requires_grad and not n.v_seq.requires_grad


# ---------------------------------------------------------------------------------------------
# SpikingJelly 2.0.0: same configuration, same numbers
# ---------------------------------------------------------------------------------------------
SJ_CONFIGS = [
    ("IFNode", {}, {}),
    ("IFNode", {"v_reset": None, "detach_reset": True}, {}),
    ("LIFNode", {"tau": 2.0}, {}),
    ("LIFNode", {"tau": 3.0, "decay_input": False, "v_reset": None}, {}),
    ("LIFNode", {"tau": 2.0, "v_threshold": 0.5, "v_reset": -0.1, "detach_reset": True}, {}),
    ("ParametricLIFNode", {"init_tau": 2.0}, {}),
    ("ParametricLIFNode", {"init_tau": 4.0, "decay_input": False, "v_reset": None}, {}),
]
SJ_SURROGATES = ["Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "Erf", "SuperSpike",
                 "PiecewiseLeakyReLU", "Rect", "S2NN", "QPseudoSpike", "LeakyKReLU", "LogTailedReLU",
                 "NonzeroSignLogAbs"]


def _sj():
    return pytest.importorskip("spikingjelly.activation_based.neuron"), \
        pytest.importorskip("spikingjelly.activation_based.surrogate")


def _compare_with_sj(name, kw, sg_name, backend, step_mode, store_v_seq=True):
    sj_neuron, sj_surrogate = _sj()
    torch.manual_seed(1)
    ref = getattr(sj_neuron, name)(surrogate_function=getattr(sj_surrogate, sg_name)(), step_mode=step_mode,
                                   store_v_seq=store_v_seq, **kw)
    ours = getattr(neuron, name)(surrogate_function=getattr(surrogate, sg_name)(), step_mode=step_mode,
                                 store_v_seq=store_v_seq, backend=backend, **kw)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(8, 4, 33) * 1.2 + 0.4
    g = torch.randn_like(x)
    outs = []
    for node in (ref, ours):
        xi = x.clone().requires_grad_()
        if step_mode == "m":
            s = node(xi)
        else:
            s = torch.stack([node(xt) for xt in xi])
        loss = (s * g).sum() + node.v.sum() * 0.5 + (node.v_seq.sum() * 0.1 if store_v_seq else 0)
        loss.backward()
        grad_w = node.w.grad.clone() if hasattr(node, "w") else None
        outs.append((s.detach(), node.v.detach(), node.v_seq.detach() if store_v_seq else None, xi.grad, grad_w))
    (s0, v0, vs0, gx0, gw0), (s1, v1, vs1, gx1, gw1) = outs
    assert torch.equal(s0, s1), f"{name} {kw} {sg_name}: spikes differ from SpikingJelly"
    assert_close("v", v0, v1, 1e-6)
    if store_v_seq:
        assert_close("v_seq", vs0, vs1, 1e-6)
    assert_close("grad_x", gx0, gx1, 1e-5)
    if gw0 is not None:
        assert_close("grad_w", gw0, gw1, 1e-5)


@pytest.mark.peers
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,kw,_", SJ_CONFIGS, ids=[f"{c[0]}-{i}" for i, c in enumerate(SJ_CONFIGS)])
def test_matches_spikingjelly_configs(name, kw, _, backend):
    _compare_with_sj(name, kw, "Sigmoid", backend, "m")
    _compare_with_sj(name, kw, "ATan", backend, "s", store_v_seq=False)


@pytest.mark.peers
@pytest.mark.parametrize("sg_name", SJ_SURROGATES)
def test_matches_spikingjelly_surrogates(sg_name):
    for backend in ("torch", "cpp"):
        _compare_with_sj("LIFNode", {"tau": 2.0}, sg_name, backend, "m")
        _compare_with_sj("ParametricLIFNode", {"v_reset": None}, sg_name, backend, "m")


@pytest.mark.peers
@pytest.mark.parametrize("sg_name", SJ_SURROGATES)
def test_surrogate_modules_match_spikingjelly(sg_name):
    _, sj_surrogate = _sj()
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for spiking in (True, False):
        ref = getattr(sj_surrogate, sg_name)(spiking=spiking)
        ours = getattr(surrogate, sg_name)(spiking=spiking)
        if not spiking:
            try:
                yr = ref(x)
            except NotImplementedError:  # SpikingJelly defines no primitive for this one
                continue
            assert_close(f"{sg_name} primitive", yr, ours(x), 1e-10)
            continue
        xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        yr, yo = ref(xr), ours(xo)
        assert torch.equal(yr, yo)
        yr.sum().backward()
        yo.sum().backward()
        assert_close(f"{sg_name} grad", xr.grad, xo.grad, 1e-10)
        assert repr(ours.params) and ours.spiking


def test_surrogates_spiking_false_primitive_derivative_matches_grad():
    # where a primitive exists, its autograd derivative is the surrogate gradient
    x = torch.linspace(-2.9, 2.9, 117, dtype=torch.float64)
    x = x[(x.abs() - 1.0).abs() > 1e-3]  # avoid kinks of the piecewise ones
    for cls in surrogate._BUILTINS:
        s = cls()
        xp = x.clone().requires_grad_()
        s.set_spiking_mode(False)
        s(xp).sum().backward()
        expect = cls.grad(x, *s.params)
        mask = (x.abs() - 0.5 / max(s.kernel_params()[0], 1e-3)).abs() > 1e-2  # Rect's window edges
        assert_close(cls.__name__, expect[mask], xp.grad[mask], 1e-4)  # S2NN's primitive has a 1e-5 offset in its log


@pytest.mark.parametrize("backend", ["cpp", "torch"])
def test_changed_attributes_take_effect(backend):
    # the fused path caches its configuration per module; assigning any attribute (or a surrogate's) must
    # show in the next call exactly as in a neuron built with the new values
    x = torch.randn(5, 2, 17) * 1.5 + 0.6
    g = torch.randn(5, 2, 17)

    def run(node):
        node.reset()
        xr = x.clone().requires_grad_()
        s = node(xr)
        (s * g).sum().backward()
        return s, xr.grad

    node = neuron.LIFNode(tau=2.0, step_mode="m", backend=backend, surrogate_function=surrogate.ATan())
    run(node)
    changes = [("tau", 4.0), ("v_threshold", 0.7), ("v_reset", None), ("detach_reset", True), ("decay_input", False)]
    kw = dict(tau=2.0, surrogate_function=surrogate.ATan())
    for name, value in changes:
        setattr(node, name, value)
        kw[name] = value
        fresh = neuron.LIFNode(step_mode="m", backend=backend, **kw)
        for a, b in zip(run(node), run(fresh)):
            assert torch.equal(a, b), name
    node.surrogate_function.alpha = 5.0  # an attribute of the surrogate, not of the neuron
    fresh = neuron.LIFNode(step_mode="m", backend=backend, **dict(kw, surrogate_function=surrogate.ATan(alpha=5.0)))
    for a, b in zip(run(node), run(fresh)):
        assert torch.equal(a, b)
    node.surrogate_function = surrogate.Sigmoid(alpha=3.0)
    fresh = neuron.LIFNode(step_mode="m", backend=backend, **dict(kw, surrogate_function=surrogate.Sigmoid(alpha=3.0)))
    for a, b in zip(run(node), run(fresh)):
        assert torch.equal(a, b)


def test_plif_parameter_replaced_by_conversion_is_used():
    # module conversions may swap a Parameter without __setattr__ (load_state_dict(assign=True), _apply with
    # overwrite): the neuron must use the parameter it holds now, not one it cached
    p = neuron.ParametricLIFNode(init_tau=2.0, step_mode="m")
    x = torch.randn(4, 3) + 1.0
    p(x)
    p.load_state_dict({"w": torch.tensor(1.5)}, assign=True)
    p.reset()
    q = neuron.ParametricLIFNode(init_tau=1.0 + float(torch.exp(torch.tensor(-1.5))), step_mode="m")
    assert torch.equal(p(x), q(x))
    p.reset()
    s = p(x.clone().requires_grad_())
    s.sum().backward()
    assert p.w.grad is not None


def test_channels_last_network_keeps_its_layout():
    """Conv -> BN -> LIF -> Conv -> IF -> max pool, multi-step, channels_last weights and input: every activation
    stays channels_last (no NCHW round trip at the neurons) and the numbers equal the NCHW network's."""
    from torch import nn

    from fastspike import functional, layer

    torch.manual_seed(0)
    T, N = 3, 2

    def build():
        torch.manual_seed(1)
        net = nn.Sequential(layer.Conv2d(3, 8, 3, padding=1), layer.BatchNorm2d(8), neuron.LIFNode(),
                            layer.Conv2d(8, 8, 3, padding=1), neuron.IFNode(), layer.MaxPool2d(2))
        functional.set_step_mode(net, "m")
        return net

    x = torch.randn(T * N, 3, 12, 12) * 2
    net_cl, net = build().to(memory_format=torch.channels_last), build()
    x_cl = x.to(memory_format=torch.channels_last).view(T, N, 3, 12, 12).requires_grad_()
    x_nchw = x.view(T, N, 3, 12, 12).clone().requires_grad_()
    y_cl, y = net_cl(x_cl), net(x_nchw)
    def nhwc(t):
        return t.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)

    assert nhwc(y_cl) and nhwc(net_cl[2].v.unsqueeze(0)) and not x_cl.is_contiguous()
    assert torch.equal(y_cl, y)
    g = torch.randn_like(y)
    (gx_cl,), (gx,) = torch.autograd.grad(y_cl, [x_cl], g), torch.autograd.grad(y, [x_nchw], g)
    assert nhwc(gx_cl)
    assert torch.allclose(gx_cl, gx, rtol=1e-4, atol=1e-5)
