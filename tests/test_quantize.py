"""fastspike.quantize: forward values and straight-through gradients; SpikingJelly parity when installed."""
import pytest
import torch

from fastspike import quantize as q
from helpers import noncontiguous


def _x(*shape, scale=3.0):
    return (torch.randn(*shape, dtype=torch.float64) * scale).requires_grad_()


def _grad(fn, x, g):
    x = x.detach().requires_grad_()
    fn(x).backward(g)
    return x.grad


@pytest.mark.parametrize("name,ref", [("round", torch.round), ("ceil", torch.ceil), ("floor", torch.floor)])
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous"])
def test_rounding_forward_and_straight_through(name, ref, layout):
    fn = getattr(q, name)
    x = _x(7, 13)
    g = torch.randn(7, 13, dtype=torch.float64)
    if layout == "noncontiguous":
        x, g = noncontiguous(x.detach()).requires_grad_(), noncontiguous(g)
    y = fn(x)
    assert torch.equal(y, ref(x.detach()))
    assert torch.equal(_grad(fn, x, g), g)  # d out / d x = 1


def test_round_halves_go_to_even():
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5])
    assert torch.equal(q.round(x), torch.tensor([-2.0, -2.0, -0.0, 0.0, 2.0, 2.0]))


def test_clamp_gradient_mask_is_inclusive():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.7, 1.0, 1.5], requires_grad=True)
    y = q.clamp(x, -1.0, 1.0)
    assert torch.equal(y.detach(), torch.clamp(x.detach(), -1.0, 1.0))
    g = torch.arange(1.0, 8.0)
    y.backward(g)
    assert torch.equal(x.grad, g * torch.tensor([0.0, 1, 1, 1, 1, 1, 0]))
    with pytest.raises(ValueError, match="min_value"):
        q.clamp(x, 1.0, -1.0)
    lo, hi = torch.tensor([-1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]), torch.full((7,), 0.8)  # tensor bounds
    assert torch.equal(q.clamp(x.detach(), lo, hi), torch.clamp(x.detach(), lo, hi))


def test_step_quantize():
    x = _x(101)
    for step in (1.0, 0.25, 3.0):
        y = q.step_quantize(x, step)
        torch.testing.assert_close(y, torch.round(x.detach() / step) * step)
        codes = y.detach() / step
        assert torch.allclose(codes, codes.round())  # integer multiples of step
        g = torch.randn(101, dtype=torch.float64)
        assert torch.equal(_grad(lambda t: q.step_quantize(t, step), x, g), g)
    assert torch.equal(q.step_quantize(torch.tensor([0.74, 0.76])), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="step"):
        q.step_quantize(x, 0.0)


@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_k_bit_quantize(k):
    x = torch.rand(257, dtype=torch.float64, requires_grad=True)
    y = q.k_bit_quantize(x, k)
    levels = 2**k - 1
    codes = y.detach() * levels
    assert torch.allclose(codes, codes.round())  # on the grid i / (2^k - 1)
    assert codes.min() >= 0 and codes.max() <= levels
    assert (y.detach() - x.detach()).abs().max() <= 0.5 / levels + 1e-12  # nearest grid point
    g = torch.randn(257, dtype=torch.float64)
    assert torch.equal(_grad(lambda t: q.k_bit_quantize(t, k), x, g), g)
    if k == 1:
        assert torch.equal(q.k_bit_quantize(torch.tensor([0.2, 0.6]), 1), torch.tensor([0.0, 1.0]))


def test_k_bit_quantize_rejects_bad_k():
    with pytest.raises(ValueError, match="k"):
        q.k_bit_quantize(torch.rand(3), 0)
    with pytest.raises(TypeError, match="k"):
        q.k_bit_quantize(torch.rand(3), 2.0)
    np = pytest.importorskip("numpy")
    assert torch.equal(q.k_bit_quantize(torch.tensor([0.4]), np.int64(1)), torch.tensor([0.0]))
    with pytest.raises(TypeError, match="x"):
        q.k_bit_quantize([0.5], 2)
    with pytest.raises(TypeError, match="floating"):
        q.floor(torch.arange(3))


def test_affine_k_bit_quantize_trains_w_and_b():
    x = torch.rand(4, 5, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-0.5, dtype=torch.float64, requires_grad=True)
    y = q.affine_k_bit_quantize(x, 3, w, b)
    quant = torch.round(x.detach() * 7) / 7
    torch.testing.assert_close(y, 2.5 * quant - 0.5)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.5))  # straight-through times w
    torch.testing.assert_close(w.grad, quant.sum())
    torch.testing.assert_close(b.grad, torch.tensor(20.0, dtype=torch.float64))


def test_clamp_by_linear():
    x = _x(33)
    y = q.clamp_by_linear(x)
    lo, hi = x.detach().min(), x.detach().max()
    torch.testing.assert_close(y, (x.detach() - lo) / (hi - lo + 1e-5))
    assert y.min() == 0 and y.max() < 1
    y.sum().backward()  # ordinary autograd through min/max
    assert torch.isfinite(x.grad).all()


def test_multi_level_spike_count():
    x = torch.tensor([-1.0, 0.0, 0.4, 0.6, 2.5, 3.5, 7.9, 8.0, 9.0], requires_grad=True)
    y = q.multi_level_spike_count(x, 8)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0, 0, 1, 2, 4, 8, 8, 8]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1, 1, 1, 1, 1, 1, 1, 0]))
    x.grad = None
    q.multi_level_spike_count(x, 8, grad_window=(0.5, 4.0)).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 0, 0, 1, 1, 1, 0, 0, 0]))
    with pytest.raises(ValueError, match="grad_window"):
        q.multi_level_spike_count(x, 8, grad_window=(1.0,))


def test_matches_spikingjelly():
    sj = pytest.importorskip("spikingjelly.activation_based.quantize")
    torch.manual_seed(0)
    x = torch.randn(6, 9, dtype=torch.float64) * 3
    u = torch.rand(6, 9, dtype=torch.float64)
    w, b = torch.tensor(1.7, dtype=torch.float64), torch.tensor(0.2, dtype=torch.float64)
    cases = [
        ("round", (x,)), ("ceil", (x,)), ("floor", (x,)), ("clamp", (x, -1.0, 2.0)), ("step_quantize", (x, 0.7)),
        ("multi_level_spike_count", (x, 4)), ("k_bit_quantize", (u, 3)), ("affine_k_bit_quantize", (u, 2, w, b)),
        ("clamp_by_linear", (x,)),
    ]
    for name, args in cases:
        outs, grads = [], []
        for mod in (q, sj):
            a0 = args[0].detach().clone().requires_grad_()
            y = getattr(mod, name)(a0, *args[1:])
            y.backward(torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y))
            outs.append(y.detach())
            grads.append(a0.grad)
        torch.testing.assert_close(outs[0], outs[1], msg=name)
        torch.testing.assert_close(grads[0], grads[1], msg=name)
    assert set(sj.__all__) <= set(q.__all__)


def test_one_straight_through_function():
    functions = [v for v in vars(q).values()
                 if isinstance(v, type) and issubclass(v, torch.autograd.Function) and v.__module__ == q.__name__]
    assert functions == [q.StraightThroughATGF]


def test_spikingjelly_function_names_apply_like_spikingjelly():
    sj = pytest.importorskip("spikingjelly.activation_based.quantize")
    x = torch.randn(5, 7, dtype=torch.float64) * 3
    u = torch.rand(5, 7, dtype=torch.float64)
    cases = [("RoundATGF", (x,)), ("CeilATGF", (x,)), ("FloorATGF", (x,)), ("ClampATGF", (x, -1.0, 1.5)),
             ("StepQuantizeATGF", (x, 0.4)), ("MultiLevelSpikeCountATGF", (x, 3, 0.5, 2.5)),
             ("KBitQuantizeATGF", (u, 2))]
    g = torch.linspace(-1, 1, 35, dtype=torch.float64).view(5, 7)
    for name, args in cases:
        res = []
        for mod in (q, sj):
            a0 = args[0].detach().clone().requires_grad_()
            y = getattr(mod, name).apply(a0, *args[1:])
            y.backward(g)
            res.append((y.detach(), a0.grad))
        torch.testing.assert_close(res[0][0], res[1][0], msg=name, rtol=0, atol=0)
        torch.testing.assert_close(res[0][1], res[1][1], msg=name, rtol=0, atol=0)
