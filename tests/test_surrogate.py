"""fastspike.surrogate: every class, lowercase autograd Function and *_backward of SpikingJelly 2.0.0's surrogate
module gives SpikingJelly's spikes, primitive values and gradients; the fused-kernel interface is unchanged; bad
arguments raise SpikingJelly's exception types."""
import math

import pytest
import torch

from fastspike import surrogate
from helpers import DEVICE, assert_close



def _sj():
    return pytest.importorskip("spikingjelly.activation_based.surrogate")


# class name -> constructor kwargs to test (non-default values exercise the parameters)
CLASSES = {
    "Sigmoid": {"alpha": 3.0}, "ATan": {"alpha": 2.5}, "PiecewiseQuadratic": {"alpha": 1.5},
    "PiecewiseExp": {"alpha": 2.0}, "SoftSign": {"alpha": 3.0}, "SuperSpike": {"alpha": 1.2}, "Erf": {"alpha": 1.7},
    "PiecewiseLeakyReLU": {"w": 0.7, "c": 0.05}, "Rect": {"alpha": 1.3}, "S2NN": {"alpha": 3.0, "beta": 0.8},
    "QPseudoSpike": {"alpha": 2.5}, "LeakyKReLU": {"leak": 0.1, "k": 0.9}, "LogTailedReLU": {"alpha": 0.2},
    "NonzeroSignLogAbs": {"alpha": 1.4}, "SquarewaveFourierSeries": {"n": 4, "T_period": 6.0},
    "FakeNumericalGradient": {"alpha": 0.4}, "DeterministicPass": {},
    "MultiLevelSpikeCount": {"max_spike_count": 3, "grad_window": (-0.5, 2.5)},
}
NO_PRIMITIVE = {"SuperSpike", "FakeNumericalGradient"}  # SpikingJelly defines none for these


def _x(n=257):
    # avoids x == 0 exactly (FakeNumericalGradient's 1/x) and includes both tails
    return torch.linspace(-3.0, 3.0, n, device=DEVICE, dtype=torch.float64) + 1e-3


def _run(module, x):
    x = x.clone().requires_grad_(True)
    y = module(x)
    g = torch.linspace(0.5, 1.5, x.numel(), device=x.device, dtype=x.dtype)
    (y * g).sum().backward()
    return y.detach(), x.grad


@pytest.mark.peers
@pytest.mark.parametrize("name", list(CLASSES))
def test_class_matches_spikingjelly(name):
    sjs = _sj()
    kw = CLASSES[name]
    ours, theirs = getattr(surrogate, name)(**kw), getattr(sjs, name)(**kw)
    y, g = _run(ours, _x())
    y_ref, g_ref = _run(theirs, _x())
    assert torch.equal(y, y_ref), f"{name}: spikes differ"
    assert_close(f"{name} grad", g_ref, g, 1e-12)
    if name not in NO_PRIMITIVE and "spiking" in getattr(surrogate, name).__init__.__code__.co_varnames:
        ours.set_spiking_mode(False)
        theirs.set_spiking_mode(False)
        y, g = _run(ours, _x())
        y_ref, g_ref = _run(theirs, _x())
        assert_close(f"{name} primitive", y_ref, y, 1e-12)
        assert_close(f"{name} primitive grad", g_ref, g, 1e-10)


@pytest.mark.peers
def test_poisson_pass_matches_spikingjelly_for_a_seed():
    sjs = _sj()
    p = torch.rand(1000, device=DEVICE)
    torch.manual_seed(3)
    y, g = _run(surrogate.PoissonPass(), p)
    torch.manual_seed(3)
    y_ref, g_ref = _run(sjs.PoissonPass(), p)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref)
    assert torch.equal(surrogate.PoissonPass(spiking=False)(p), p)


def test_poisson_pass_is_bernoulli():
    p = torch.full((20000,), 0.3, device=DEVICE)
    y = surrogate.poisson_pass.apply(p)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert abs(y.mean().item() - 0.3) < 0.02  # 6 standard deviations of the mean of 20000 Bernoulli(0.3)


# lowercase Function name -> (its class's kwargs in positional order, the *_backward name or None)
FUNCTIONS = {
    "piecewise_quadratic": ((1.5,), True), "piecewise_exp": ((2.0,), True), "sigmoid": ((3.0,), True),
    "soft_sign": ((3.0,), True), "super_spike": ((1.2,), True), "atan": ((2.5,), True),
    "nonzero_sign_log_abs": ((1.4,), True), "erf": ((1.7,), True), "piecewise_leaky_relu": ((0.7, 0.05), True),
    "squarewave_fourier_series": ((4, 6.0), False), "s2nn": ((3.0, 0.8), False), "q_pseudo_spike": ((2.5,), False),
    "leaky_k_relu": ((0.1, 0.9), True), "fake_numerical_gradient": ((0.4,), True), "log_tailed_relu": ((0.2,), True),
    "deterministic_pass": ((), False), "rect": ((1.3,), True),
}


@pytest.mark.peers
@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_function_and_backward_match_spikingjelly(name):
    sjs = _sj()
    args, has_backward = FUNCTIONS[name]
    y, g = _run(lambda x: getattr(surrogate, name).apply(x, *args), _x())
    y_ref, g_ref = _run(lambda x: getattr(sjs, name).apply(x, *args), _x())
    assert torch.equal(y, y_ref)
    assert_close(f"{name} grad", g_ref, g, 1e-12)
    if has_backward:
        go = torch.rand(_x().shape, device=DEVICE, dtype=torch.float64)
        out, out_ref = getattr(surrogate, f"{name}_backward")(go, _x(), *args), getattr(sjs, f"{name}_backward")(go,
                                                                                                                 _x(),
                                                                                                                 *args)
        assert len(out) == len(out_ref) and all(o is None for o in out[1:])
        assert_close(f"{name}_backward", out_ref[0], out[0], 1e-12)


def test_function_defaults_and_arity():
    x = _x().requires_grad_(True)
    surrogate.piecewise_leaky_relu.apply(x).sum().backward()  # w=1, c=0.01 by default
    expect = torch.where(x.detach().abs() < 1, torch.full_like(x, 0.5), torch.full_like(x, 0.01))
    assert torch.equal(x.grad, expect)
    with pytest.raises(TypeError):
        surrogate.sigmoid.apply(x)  # alpha is required


def test_class_backward_staticmethods():
    x = _x()
    go = torch.ones_like(x)
    assert torch.equal(surrogate.Sigmoid.backward(go, x, 4.0), surrogate.sigmoid_backward(go, x, 4.0)[0])
    assert torch.equal(surrogate.DeterministicPass.backward(go * 2, x, None), go * 2)


def test_spiking_function_takes_keywords():
    x = _x().requires_grad_(True)
    surrogate.Sigmoid.spiking_function(x, alpha=2.0).sum().backward()
    g_kw = x.grad.clone()
    x.grad = None
    surrogate.Sigmoid.spiking_function(x, 2.0).sum().backward()
    assert torch.equal(g_kw, x.grad)


# ---------------------------------------------------------------------------------------------------------
# SpikingJelly 2.0-style custom surrogates (kwargs to the base class, own spiking_function)
# ---------------------------------------------------------------------------------------------------------
def _custom(mod):
    class triangle(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, width, height):
            ctx.save_for_backward(x)
            ctx.width, ctx.height = width, height
            return mod.heaviside(x)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * (ctx.height * (1 - x.abs() / ctx.width)).clamp_min(0), None, None

    class Triangle(mod.SurrogateFunctionBase):
        def __init__(self, width=1.0, height=1.0, spiking=True):
            super().__init__(spiking=spiking, width=width, height=height)

        @staticmethod
        def spiking_function(x, width, height):
            return triangle.apply(x, width, height)

        @staticmethod
        def primitive_function(x, width, height):
            return (x / width + 0.5).clamp(0, 1) * height

    return Triangle


@pytest.mark.peers
def test_custom_surrogate_in_spikingjelly_style():
    sjs = _sj()
    ours, theirs = _custom(surrogate)(0.5, 2.0), _custom(sjs)(0.5, 2.0)
    assert ours.params == (0.5, 2.0) and "width=0.5, height=2.0" in repr(ours)
    assert not ours.fusable() and ours.kernel_spec() is None
    for spiking in (True, False):
        ours.set_spiking_mode(spiking)
        theirs.set_spiking_mode(spiking)
        y, g = _run(ours, _x())
        y_ref, g_ref = _run(theirs, _x())
        assert_close(f"custom spiking={spiking}", y_ref, y, 1e-12)
        assert_close(f"custom grad spiking={spiking}", g_ref, g, 1e-12)


def test_custom_surrogate_drives_a_neuron():
    from fastspike import neuron

    node = neuron.LIFNode(surrogate_function=_custom(surrogate)(1.0, 1.0), step_mode="m")
    x = torch.rand(6, 4, 5, device=DEVICE, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="Triangle is not fused"):
        node(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------
# the fused-kernel interface and the errors
# ---------------------------------------------------------------------------------------------------------
def test_kernel_interface_unchanged():
    names = ["Sigmoid", "ATan", "PiecewiseQuadratic", "PiecewiseExp", "SoftSign", "SuperSpike", "Erf",
             "PiecewiseLeakyReLU", "Rect", "S2NN", "QPseudoSpike", "LeakyKReLU", "LogTailedReLU", "NonzeroSignLogAbs"]
    assert [c.__name__ for c in surrogate._BUILTINS] == names
    assert surrogate.KERNEL_IDS == {n: i for i, n in enumerate(names)}
    for cls in surrogate._BUILTINS:
        m = cls()
        assert m.fusable() and m.kernel_spec() == (cls.kernel_id, m.kernel_params())
    m = surrogate.PiecewiseLeakyReLU(w=0.5, c=0.1)
    assert m.kernel_spec() == (7, (0.5, 0.1))
    m.set_spiking_mode(False)
    assert m.kernel_spec() is None  # the cached spec follows attribute changes
    for extra in (surrogate.SquarewaveFourierSeries(), surrogate.FakeNumericalGradient(), surrogate.DeterministicPass(),
                  surrogate.MultiLevelSpikeCount(2), surrogate.PoissonPass()):
        assert not extra.fusable() and extra.kernel_spec() is None


@pytest.mark.parametrize("make, exc, match", [
    (lambda: surrogate.SoftSign(alpha=0.0), AssertionError, "alpha"),
    (lambda: surrogate.SoftSign(alpha=-1.0), ValueError, "alpha"),
    (lambda: surrogate.PiecewiseLeakyReLU(w=0.0), AssertionError, "w must be"),
    (lambda: surrogate.SquarewaveFourierSeries(n=2.5), AssertionError, "n must be an int"),
    (lambda: surrogate.SquarewaveFourierSeries(T_period=0), ValueError, "T_period"),
    (lambda: surrogate.MultiLevelSpikeCount(2.0), TypeError, "max_spike_count"),
    (lambda: surrogate.MultiLevelSpikeCount(True), TypeError, "max_spike_count"),
    (lambda: surrogate.MultiLevelSpikeCount(0), ValueError, "max_spike_count"),
    (lambda: surrogate.MultiLevelSpikeCount(2, grad_window=(1.0, 0.0)), ValueError, "grad_window"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.peers
@pytest.mark.parametrize("make", [lambda s: s.SoftSign(alpha=0.0), lambda s: s.PiecewiseLeakyReLU(w=0.0),
                                  lambda s: s.MultiLevelSpikeCount(2.0), lambda s: s.MultiLevelSpikeCount(0)])
def test_bad_arguments_raise_what_spikingjelly_raises(make):
    sjs = _sj()
    with pytest.raises(Exception) as theirs:
        make(sjs)
    with pytest.raises(type(theirs.value)):
        make(surrogate)


def test_multi_level_spike_count_values():
    m = surrogate.MultiLevelSpikeCount(3)
    x = torch.tensor([-1.0, 0.4, 0.6, 1.5, 2.49, 7.0], device=DEVICE, requires_grad=True)
    y = m(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 2.0, 2.0, 3.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # identity inside the default window [0, 3]
    m.set_spiking_mode(False)
    assert m(x).tolist() == [0.0, 0.4000000059604645, 0.6000000238418579, 1.5, 2.490000009536743, 3.0]


# ---------------------------------------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------------------------------------
def test_check_manual_grad(capsys):
    err = surrogate.check_manual_grad(surrogate.ATan.primitive_function, surrogate.atan.apply, alpha=3.0)
    assert err < 1e-5
    out = capsys.readouterr().out
    assert "maximum error" in out
    wrong = surrogate.check_manual_grad(surrogate.Sigmoid.primitive_function, surrogate.atan.apply, alpha=3.0)
    assert wrong > 0.1
    with pytest.raises(TypeError, match="primitive_function"):
        surrogate.check_manual_grad(None, surrogate.atan.apply, alpha=1.0)


def test_plot_surrogate_function(tmp_path, monkeypatch):
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    monkeypatch.chdir(tmp_path)
    sg = surrogate.ATan(alpha=3.0)
    surrogate.plot_surrogate_function(sg)
    assert (tmp_path / "ATan.pdf").stat().st_size > 0 and (tmp_path / "ATan.svg").stat().st_size > 0
    assert sg.spiking is True  # restored
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    with pytest.raises(TypeError, match="SurrogateFunctionBase"):
        surrogate.plot_surrogate_function(lambda x: x)


def test_squarewave_gradient_is_the_primitive_derivative():
    sg = surrogate.SquarewaveFourierSeries(n=5, T_period=4.0)
    x = _x().requires_grad_(True)
    sg.primitive_function(x, 5, 4.0).sum().backward()
    assert_close("d primitive", x.grad, surrogate.functions.squarewave_fourier_series_grad(x.detach(), 5, 4.0), 1e-12)
    assert math.isclose(sg.primitive_function(torch.tensor(1.0), 200, 4.0).item(), 1.0, abs_tol=0.01)
