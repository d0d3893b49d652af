"""PSN family: the psn op on every backend against its reference, the modules against SpikingJelly 2.0.0,
the linear-scan neurons (NonSpikingIF/LIF, NoResetLIFNode), and bad input."""
import warnings

import pytest
import torch

from fastspike import surrogate
from fastspike.neuron import (PSN, MaskedPSN, NonSpikingIFNode, NonSpikingLIFNode, NoResetLIFNode,
                              SlidingPSN)
from fastspike.ops.psn import band_mask, psn
from fastspike.ops.reference import psn as reference_psn
from helpers import assert_close, noncontiguous

BACKENDS = ["cpp", "triton"]
SURROGATES = [surrogate.ATan(), surrogate.Sigmoid(), surrogate.PiecewiseLeakyReLU(w=0.7, c=0.05)]


def near_threshold(x, w, b, band, eps=1e-4):
    """Where H = band(W) X + B is within rounding of 0 (a spike there may legitimately flip)."""
    T = x.shape[0]
    w = w.double() * (band_mask(T, band, dtype=torch.float64) if band else 1.0)
    h = b.double().reshape(T, 1) + w @ x.double().reshape(T, -1)
    return (h.abs() < eps).view(x.shape)


def check_spikes(ref, out, flip_ok):
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(ref[~flip_ok], out[~flip_ok])


# -- the op --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T", [1, 7, 16, 33])
@pytest.mark.parametrize("band", [0, 1, 3])
@pytest.mark.parametrize("sg", SURROGATES, ids=lambda s: type(s).__name__)
def test_psn_op_matches_reference(backend, T, band, sg):
    x = torch.randn(T, 3, 13, requires_grad=True)  # N = 39 columns: not a multiple of any block
    w = (torch.randn(T, T) / T ** 0.5).requires_grad_()
    b = torch.randn(T, 1).requires_grad_()
    g = torch.randn(T, 3, 13)
    compare_with_reference(x, w, b, g, sg, band, backend)


def compare_with_reference(x, w, b, g, sg, band, backend):
    """psn() on ``backend`` against reference_psn: spikes (except within rounding of the threshold), the three
    gradients, and no gradient outside the band."""
    T = x.shape[0]
    out = psn(x, w, b, sg, band, backend=backend)
    ref = reference_psn(x, w, b, sg, band)
    assert out.shape == x.shape and out.dtype == x.dtype
    check_spikes(ref, out, near_threshold(x, w, b, band))
    go = torch.autograd.grad(out, [x, w, b], g)
    gr = torch.autograd.grad(ref, [x, w, b], g)
    for name, r, o in zip(["grad_x", "grad_w", "grad_b"], gr, go):
        assert_close(name, r, o, 1e-5)
    if band:
        assert (go[1][band_mask(T, band) == 0] == 0).all()


@pytest.mark.parametrize("T,band", [(48, 0), (64, 60)])
def test_psn_cpp_large_T_gemm_weight_gradient(T, band):
    # dW's lane sums would exceed _LANE_SUM_MAX_BYTES, so the C++ backward stores dH and dW is a GEMM
    from fastspike.ops.psn.cpu import _LANE_SUM_MAX_BYTES
    pairs = T * T if band == 0 else sum(min(t + 1, band) for t in range(T))
    assert pairs * 64 > _LANE_SUM_MAX_BYTES
    x = torch.randn(T, 2, 37, requires_grad=True)
    w = (torch.randn(T, T) / T ** 0.5).requires_grad_()
    b = torch.randn(T).requires_grad_()
    g = torch.randn(T, 2, 37)
    compare_with_reference(x, w, b, g, surrogate.Sigmoid(), band, "cpp")


@pytest.mark.parametrize("backend", BACKENDS)
def test_psn_op_noncontiguous(backend):
    T = 9
    x = noncontiguous(torch.randn(T, 21)).requires_grad_()
    w = noncontiguous(torch.randn(T, T) / 3).requires_grad_()
    b = torch.randn(T, 1).requires_grad_()
    g = noncontiguous(torch.randn(T, 21))
    sg = surrogate.ATan()
    out = psn(x, w, b, sg, 0, backend=backend)
    ref = reference_psn(x, w, b, sg, 0)
    check_spikes(ref, out, near_threshold(x, w, b, 0))
    for name, r, o in zip(["grad_x", "grad_w", "grad_b"], torch.autograd.grad(ref, [x, w, b], g),
                          torch.autograd.grad(out, [x, w, b], g)):
        assert_close(name, r, o, 1e-5)


def test_psn_op_known_answer():
    """Identity W, bias -0.5: spikes exactly where x >= 0.5; dX = dS * surrogate'(x - 0.5)."""
    T, sg = 5, surrogate.ATan()
    x = torch.linspace(-1, 2, T * 8).view(T, 8).requires_grad_()
    b = torch.full((T,), -0.5)
    s = psn(x, torch.eye(T), b, sg, 0, backend="cpp")
    assert torch.equal(s, (x >= 0.5).float())
    s.sum().backward()
    assert_close("grad_x", surrogate.ATan.grad(x.detach() - 0.5, 2.0), x.grad, 1e-6)


def test_psn_custom_surrogate_falls_back_with_warning():
    class MySG(surrogate.ATan):
        @staticmethod
        def grad(x, alpha):
            return torch.ones_like(x)

    x = torch.randn(4, 6, requires_grad=True)
    w, b = torch.randn(4, 4), torch.randn(4)
    from fastspike.ops import _backend
    _backend._warned_unfused.discard("MySG")
    with pytest.warns(RuntimeWarning, match="not fused"):
        out = psn(x, w, b, MySG(), 0, backend="auto")
    out.sum().backward()
    with pytest.raises(ValueError, match="backend='cpp' fuses only the built-in surrogates"):
        psn(x, w, b, MySG(), 0, backend="cpp")  # a named kernel backend never falls back silently
    assert_close("grad_x", w.t() @ torch.ones(4, 6), x.grad, 1e-6)


def test_psn_op_bad_input():
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match=r"weight must have shape \[T, T\]"):
        psn(x, torch.randn(3, 3), torch.randn(4), surrogate.ATan())
    with pytest.raises(ValueError, match="bias must have T = 4"):
        psn(x, torch.randn(4, 4), torch.randn(3), surrogate.ATan())
    with pytest.raises(ValueError, match="band must be an int"):
        psn(x, torch.randn(4, 4), torch.randn(4), surrogate.ATan(), band=-1)
    with pytest.raises(ValueError, match=r"shape \[T, N, \*\]"):
        psn(torch.randn(4), torch.randn(4, 4), torch.randn(4), surrogate.ATan())


# -- modules against SpikingJelly 2.0.0 ------------------------------------------------------------------
def sj_neuron():
    return pytest.importorskip("spikingjelly.activation_based.neuron")


def run_pair(ours, theirs, x):
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    return ya, yb, xa.grad, xb.grad


def assert_same_as_sj(ours, theirs, x):
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict().keys()) == list(theirs.state_dict().keys())
    ya, yb, gxa, gxb = run_pair(ours, theirs, x)
    assert torch.equal(ya, yb)
    assert_close("grad_x", gxb, gxa, 1e-5)
    for (name, pa), (_, pb) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert_close(f"grad_{name}", pb.grad, pa.grad, 1e-5)


@pytest.mark.parametrize("backend", ["cpp", "torch", "triton"])
def test_psn_module_vs_spikingjelly(backend):
    sjn = sj_neuron()
    T = 8
    assert_same_as_sj(PSN(T, backend=backend), sjn.PSN(T), torch.randn(T, 4, 11))


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0])
def test_masked_psn_vs_spikingjelly(backend, lam):
    sjn = sj_neuron()
    T, k = 8, 3
    theirs = sjn.MaskedPSN(k, T, lambda_init=lam, step_mode="m")
    ours = MaskedPSN(k, T, lambda_init=lam, step_mode="m", backend=backend)
    assert_same_as_sj(ours, theirs, torch.randn(T, 2, 9))
    ours.lambda_ = 0.5
    assert float(ours.lambda_) == 0.5


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("k,T,exp_init", [(3, 8, True), (4, 8, False), (10, 6, True), (1, 5, True)])
def test_sliding_psn_vs_spikingjelly(backend, k, T, exp_init):
    sjn = sj_neuron()
    torch.manual_seed(1)
    theirs = sjn.SlidingPSN(k, exp_init=exp_init, step_mode="m")
    torch.manual_seed(1)
    ours = SlidingPSN(k, exp_init=exp_init, step_mode="m", backend=backend)
    assert torch.equal(ours.weight, theirs.weight)  # same initialisation (same RNG draws for Kaiming)
    assert torch.equal(ours.gen_gemm_weight(T), theirs.gen_gemm_weight(T))
    assert_same_as_sj(ours, theirs, torch.randn(T, 3, 7))


def test_single_step_vs_spikingjelly():
    sjn = sj_neuron()
    T, k = 6, 3
    x = torch.randn(T, 4, 5)
    for ours, theirs in [(SlidingPSN(k), sjn.SlidingPSN(k)), (MaskedPSN(k, T, lambda_init=1.0),
                                                             sjn.MaskedPSN(k, T, lambda_init=1.0))]:
        ours.load_state_dict(theirs.state_dict())
        for t in range(T):
            assert torch.equal(ours(x[t]), theirs(x[t]))
        # single-step over the sequence equals multi-step
        ours.reset()
        seq = torch.stack([ours(x[t]) for t in range(T)])
        ours.reset()
        ours.step_mode = "m"
        assert torch.equal(seq, ours(x))


def test_psn_errors():
    with pytest.raises(ValueError, match="built with T=4"):
        PSN(4)(torch.randn(5, 3))
    with pytest.raises(ValueError, match="built with T=4"):
        MaskedPSN(2, 4, step_mode="m")(torch.randn(3, 3))
    with pytest.raises(ValueError, match="k=5 is larger than"):
        MaskedPSN(5, 4)
    with pytest.raises(ValueError, match="k \\(the order\\) must be an int >= 1"):
        SlidingPSN(0)
    with pytest.raises(ValueError, match="T \\(the number of time steps\\)"):
        PSN(0)
    with pytest.raises(ValueError, match="step_mode must be one of"):
        PSN(4).step_mode = "s"
    with pytest.raises(ValueError, match="step_mode must be one of"):
        SlidingPSN(2, step_mode="x")
    with pytest.raises(ValueError, match=r"expects input of shape \[T, N, \*\]"):
        PSN(4)(torch.randn(4))
    with pytest.raises(ValueError, match="lambda_ >= 1"):
        MaskedPSN(2, 4, lambda_init=0.5)(torch.randn(3))
    m = MaskedPSN(2, 2, lambda_init=1.0)
    m(torch.randn(3))
    m(torch.randn(3))
    with pytest.raises(OverflowError, match="has run 3 time steps"):
        m(torch.randn(3))
    with pytest.raises(ValueError, match="backend must be one of"):
        PSN(3, backend="gpu")


# -- linear-scan neurons ---------------------------------------------------------------------------------
@pytest.mark.parametrize("decode", [None, "max-mem", "max-abs-mem", "mean-mem", "last_mem"])
@pytest.mark.parametrize("cls", ["NonSpikingIFNode", "NonSpikingLIFNode"])
@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_nonspiking_vs_spikingjelly(decode, cls, backend):
    sjn = sj_neuron()
    kw = {"tau": 3.0} if cls == "NonSpikingLIFNode" else {}
    ours = {"NonSpikingIFNode": NonSpikingIFNode, "NonSpikingLIFNode": NonSpikingLIFNode}[cls](
        decode=decode, backend=backend, **kw)
    theirs = getattr(sjn, cls)(decode=decode, **kw)
    x = torch.randn(11, 2, 5)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    if decode is None:
        assert isinstance(ya, list) and len(ya) == 11
        ya, yb = torch.stack(ya), torch.stack(yb)
    assert_close("v", yb, ya, 1e-6)
    assert_close("last v", theirs.v, ours.v, 1e-6)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    assert_close("grad_x", xb.grad, xa.grad, 1e-6)


def no_reset_lif_loop(x, tau, decay_input, v_th, v_rest, v0):
    v, spikes, vs = v0, [], []
    for xt in x:
        v = v + (xt - (v - v_rest)) / tau if decay_input else v - (v - v_rest) / tau + xt
        spikes.append(surrogate.Sigmoid()(v - v_th))
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs)


@pytest.mark.parametrize("backend", ["cpp", "torch", "triton"])
@pytest.mark.parametrize("decay_input,v_reset", [(True, 0.0), (False, None), (True, -0.3)])
def test_no_reset_lif(backend, decay_input, v_reset):
    T = 10
    x = torch.randn(T, 3, 4) + 0.5
    node = NoResetLIFNode(tau=2.5, decay_input=decay_input, v_reset=v_reset, step_mode="m", backend=backend,
                          store_v_seq=True)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    v_rest = 0.0 if v_reset is None else v_reset
    # two calls: the membrane state carries over
    s1 = node(xa[:6])
    s2 = node(xa[6:])
    ref_s, ref_v = no_reset_lif_loop(xb, 2.5, decay_input, 1.0, v_rest, torch.full((3, 4), v_rest))
    out = torch.cat([s1, s2])
    assert torch.equal(out, ref_s) and out.sum() > 0
    assert_close("v_seq", ref_v[6:], node.v_seq, 1e-6)
    g = torch.randn_like(out)
    out.backward(g)
    ref_s.backward(g)
    assert_close("grad_x", xb.grad, xa.grad, 1e-5)
    # single-step mode gives the same sequence
    node.reset()
    node.step_mode = "s"
    s_single = torch.stack([node(x[t]) for t in range(T)])
    assert torch.equal(s_single, ref_s.detach())
    node.reset()
    assert node.v == v_rest
    with pytest.raises(RuntimeError, match="reset_net"):
        node(x[0])
        node(torch.randn(2, 2))


def test_no_reset_lif_bad_tau():
    with pytest.raises(ValueError, match="tau must be a finite number > 1"):
        NoResetLIFNode(tau=0.5)
    with pytest.raises(ValueError, match="decode must be one of"):
        NonSpikingIFNode(decode="sum")


def test_neurons_warn_nothing_on_default_path():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PSN(4)(torch.randn(4, 3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_psn_op_wide_band_spans_tiles(backend):
    """A band (20) wider than a Triton time tile (16/32) and T = 40 (two tiles, ragged)."""
    T, band, sg = 40, 20, surrogate.ATan()
    x = torch.randn(T, 17, requires_grad=True)
    w = (torch.randn(T, T) / 5).requires_grad_()
    b = torch.randn(T).requires_grad_()
    g = torch.randn(T, 17)
    out = psn(x, w, b, sg, band, backend=backend)
    ref = reference_psn(x, w, b, sg, band)
    check_spikes(ref, out, near_threshold(x, w, b, band))
    for name, r, o in zip(["grad_x", "grad_w", "grad_b"], torch.autograd.grad(ref, [x, w, b], g),
                          torch.autograd.grad(out, [x, w, b], g)):
        assert_close(name, r, o, 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("T", [63, 257])
@pytest.mark.parametrize("band", [0, 5])
def test_psn_op_long_T(backend, T, band):
    sg = surrogate.ATan()
    x = torch.randn(T, 19, requires_grad=True)
    w = (torch.randn(T, T) / T ** 0.5).requires_grad_()
    b = torch.randn(T, 1).requires_grad_()
    g = torch.randn(T, 19)
    out = psn(x, w, b, sg, band, backend=backend)
    ref = reference_psn(x, w, b, sg, band)
    check_spikes(ref, out, near_threshold(x, w, b, band))
    for name, r, o in zip(["grad_x", "grad_w", "grad_b"], torch.autograd.grad(ref, [x, w, b], g),
                          torch.autograd.grad(out, [x, w, b], g)):
        assert_close(name, r, o, 1e-5)


def test_nonspiking_subclass_charge_runs_step_by_step():
    class Doubling(NonSpikingIFNode):
        def neuronal_charge(self, x):
            self.v = self.v + 2 * x

    x = torch.randn(6, 3)
    out = torch.stack(Doubling()(x))
    assert_close("v", 2 * x.cumsum(0), out, 1e-6)
    assert_close("v", x.cumsum(0), torch.stack(NonSpikingIFNode()(x)), 1e-6)
