"""The layers of SpikingJelly 2.0.0's ``activation_based.layer`` added for issue 20: attention (TA, MA, QK, SDSA),
NeuNorm, DropConnectLinear, PrintShapeModule, SpikeCountToBinary, TemporalBinSum and the OTTT helpers.

Closed-form checks run everywhere; the ``peers`` tests build the same layer in SpikingJelly, load its state_dict
into ours (same keys, strict) and compare outputs, input gradients and parameter gradients.
"""
import logging

import pytest
import torch
import torch.nn as nn

from fastspike import functional, layer, neuron

from helpers import DEVICE, assert_close

TOL = 1e-5


@pytest.fixture(scope="module")
def sj():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based import functional as sf
    from spikingjelly.activation_based import layer as sl

    return sl, sf


def _randomise(module: nn.Module, scale: float = 0.5) -> None:
    """Parameters away from their (often constant) initial values; BN scales stay positive."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g).to(p)
            p.copy_(1.0 + 0.3 * r if name.endswith(("bn.weight", ".1.weight")) and p.dim() == 1 else scale * r)


def _pair(ref: nn.Module, ours: nn.Module):
    """Same weights in both: SpikingJelly's state_dict loaded into ours (keys must match exactly)."""
    _randomise(ref)
    ref.to(DEVICE)
    assert list(ref.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours.to(DEVICE)


def _compare(name, ref, ours, x, spikes_out=False, grad=True, tol=TOL):
    """Forward both from the same input, then backward the same non-contiguous upstream gradient."""
    xr = x.clone().requires_grad_(grad)
    xo = x.clone().requires_grad_(grad)
    yr, yo = ref(xr), ours(xo)
    if spikes_out:
        assert torch.equal(yr, yo), f"{name}: spikes differ in {(yr != yo).sum().item()} places"
        assert 0 < yo.sum() < yo.numel(), f"{name}: degenerate spike output"
    else:
        assert_close(f"{name} output", yr, yo, tol)
    if not grad:
        return yr, yo
    g = torch.randn(*yr.shape[:-1], yr.shape[-1] * 2, device=DEVICE)[..., ::2]
    yr.backward(g)
    yo.backward(g)
    assert_close(f"{name} input grad", xr.grad, xo.grad, tol)
    pr, po = dict(ref.named_parameters()), dict(ours.named_parameters())
    assert pr.keys() == po.keys()
    for k in pr:
        if pr[k].grad is None:
            assert po[k].grad is None or not po[k].grad.any(), f"{name}: {k} has a gradient only here"
            continue
        if pr[k].grad.abs().max() < 1e-3:  # zero up to rounding (a bias followed by BatchNorm): noise both sides
            assert po[k].grad.abs().max() < 1e-3, f"{name}: grad {k} should vanish"
            continue
        assert_close(f"{name} grad {k}", pr[k].grad, po[k].grad, tol)
    return yr, yo


# -------------------------------------------------------------------------------------------- attention
@pytest.mark.peers
@pytest.mark.parametrize("dimension,shape", [(4, (8, 3, 4, 5, 5)), (2, (8, 3, 7))])
def test_temporal_wise_attention_matches_spikingjelly(sj, dimension, shape):
    sl, _ = sj
    ref, ours = _pair(sl.TemporalWiseAttention(8, reduction=4, dimension=dimension),
                      layer.TemporalWiseAttention(8, reduction=4, dimension=dimension))
    assert ours.step_mode == "m"
    _compare(f"TA dim {dimension}", ref, ours, torch.randn(shape, device=DEVICE))


@pytest.mark.peers
@pytest.mark.parametrize("kwargs", [dict(), dict(kernel_size=7), dict(use_temporal=False),
                                    dict(use_channel=False, use_spatial=False), dict(use_temporal=False,
                                                                                     use_channel=False)],
                         ids=["all", "k7", "CSA", "TA", "SA"])
def test_multi_dimensional_attention_matches_spikingjelly(sj, kwargs):
    sl, _ = sj
    ref, ours = _pair(sl.MultiDimensionalAttention(4, 8, reduction_t=2, reduction_c=4, **kwargs),
                      layer.MultiDimensionalAttention(4, 8, reduction_t=2, reduction_c=4, **kwargs))
    for axis in ("ta", "ca", "sa"):
        assert (getattr(ours, axis) is None) == (getattr(ref, axis) is None)
    _compare("MA", ref, ours, torch.randn(4, 2, 8, 6, 6, device=DEVICE))


@pytest.mark.peers
@pytest.mark.parametrize("cls,kwargs", [("QKAttention", {}), ("QKAttention", {"qka_type": "channel"}),
                                        ("TokenQKAttention", {}), ("ChannelQKAttention", {}),
                                        ("SpikingSelfAttention", {})])
def test_qk_attention_matches_spikingjelly(sj, cls, kwargs):
    sl, _ = sj
    ref, ours = _pair(getattr(sl, cls)(16, 4, **kwargs), getattr(layer, cls)(16, 4, **kwargs))
    if hasattr(ours, "qka_type"):
        assert ours.qka_type == ref.qka_type and ours.sum_dim == ref.sum_dim
    x = torch.randn(3, 2, 16, 10, device=DEVICE)
    _compare(cls, ref, ours, x, spikes_out=True)
    # the neurons keep their state: a second call continues from it, in both
    with torch.no_grad():
        assert torch.equal(ref(x), ours(x))


@pytest.mark.peers
def test_qk_attention_custom_neuron_matches_spikingjelly(sj):
    sl, _ = sj
    from spikingjelly.activation_based import neuron as sn

    ref, ours = _pair(sl.QKAttention(8, 2, spiking_neuron=sn.IFNode, v_threshold=0.7),
                      layer.QKAttention(8, 2, spiking_neuron=neuron.IFNode, v_threshold=0.7))
    assert isinstance(ours.attn_lif, neuron.IFNode) and ours.attn_lif.v_threshold == 0.7
    _compare("QKA IF", ref, ours, torch.randn(2, 2, 8, 6, device=DEVICE), spikes_out=True)


@pytest.mark.peers
def test_spike_driven_self_attention_matches_spikingjelly(sj):
    sl, _ = sj
    ref, ours = _pair(sl.SpikeDrivenSelfAttention(16, 4), layer.SpikeDrivenSelfAttention(16, 4))
    assert ours.attn_lif.v_threshold == 0.5 and ours.q_lif.detach_reset
    _compare("SDSA", ref, ours, torch.randn(3, 2, 16, 4, 4, device=DEVICE) * 2)


def test_attention_bad_arguments():
    with pytest.raises(ValueError, match="divisible"):
        layer.QKAttention(10, 4)
    with pytest.raises(ValueError, match="qka_type"):
        layer.QKAttention(8, 2, qka_type="row")
    with pytest.raises(ValueError, match="step_mode"):
        layer.SpikeDrivenSelfAttention(8, 2, step_mode="s")
    with pytest.raises(ValueError, match=r"\[T, N, C, H, W\]"):
        layer.SpikeDrivenSelfAttention(8, 2)(torch.zeros(2, 8, 4, 4))
    # SpikingJelly asserts these: both exception types are caught
    with pytest.raises(AssertionError):
        layer.TemporalWiseAttention(4, reduction=8)
    with pytest.raises(ValueError, match="dimension"):
        layer.TemporalWiseAttention(8, 2, dimension=3)
    with pytest.raises(ValueError, match="at least one"):
        layer.MultiDimensionalAttention(4, 8, use_temporal=False, use_channel=False, use_spatial=False)
    with pytest.raises(AssertionError):
        layer.MultiDimensionalAttention(4, 8, kernel_size=5)
    with pytest.raises(AssertionError, match=r"\[T, N, L\]"):
        layer.TemporalWiseAttention(4, 2)(torch.zeros(4, 2, 3, 3))


def test_temporal_wise_attention_closed_form():
    ta = layer.TemporalWiseAttention(4, reduction=2, dimension=2).to(DEVICE)
    x = torch.randn(4, 3, 5, device=DEVICE)
    w1, w2 = ta.sharedMLP[0].weight, ta.sharedMLP[2].weight
    mlp = lambda v: torch.relu(v @ w1.t()) @ w2.t()  # noqa: E731
    xt = x.transpose(0, 1)  # [N, T, L]
    score = torch.sigmoid(mlp(xt.mean(-1)) + mlp(xt.amax(-1)))  # [N, T]
    assert_close("TA closed form", x * score.t().unsqueeze(-1), ta(x), TOL)


# -------------------------------------------------------------------------------------------- NeuNorm
@pytest.mark.peers
@pytest.mark.parametrize("shared", [False, True])
def test_neunorm_matches_spikingjelly_both_step_modes(sj, shared):
    sl, sf = sj
    x = (torch.rand(5, 2, 3, 4, 4, device=DEVICE) > 0.5).float()
    for mode in ("s", "m"):
        ref, ours = _pair(sl.NeuNorm(3, 4, 4, k=0.8, shared_across_channels=shared, step_mode=mode),
                          layer.NeuNorm(3, 4, 4, k=0.8, shared_across_channels=shared, step_mode=mode))
        assert ours.w.shape == ((1 if shared else 3), 4, 4) and ours.k1 == ref.k1
        for call in range(2):  # the state carries into a second call
            if mode == "m":
                yr, yo = ref(x), ours(x)
            else:
                yr = torch.stack([ref(xt) for xt in x])
                yo = torch.stack([ours(xt) for xt in x])
            assert_close(f"NeuNorm {mode} call {call}", yr, yo, TOL)
            assert_close("NeuNorm state", ref.x, ours.x, TOL)
        sf.reset_net(ref)
        functional.reset_net(ours)
        assert ours.x == 0.0
        _compare(f"NeuNorm {mode} grad", ref if mode == "m" else _Looped(ref), ours if mode == "m" else _Looped(ours),
                 x)


class _Looped(nn.Module):
    """Run a single-step module over the first axis."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return torch.stack([self.m(xt) for xt in x])


def test_neunorm_closed_form():
    nn_ = layer.NeuNorm(2, 3, 3, k=0.5, step_mode="m").to(DEVICE)
    x = torch.rand(3, 1, 2, 3, 3, device=DEVICE)
    s, ref = torch.zeros(1, 1, 3, 3, device=DEVICE), []
    for t in range(3):
        s = 0.5 * s + 0.5 / 4 * x[t].sum(1, keepdim=True)
        ref.append(x[t] - nn_.w * s)
    assert_close("NeuNorm closed form", torch.stack(ref), nn_(x), TOL)
    with pytest.raises(ValueError, match=r"\[T, N, C, H, W\]"):
        nn_(x[0])


# ---------------------------------------------------------------------------------------- DropConnect
@pytest.mark.peers
@pytest.mark.parametrize("bias,invariant", [(True, False), (True, True), (False, False)])
def test_drop_connect_linear_matches_spikingjelly(sj, bias, invariant):
    sl, sf = sj
    x = torch.rand(4, 3, 6, device=DEVICE)
    for mode in ("s", "m"):
        ref, ours = _pair(sl.DropConnectLinear(6, 5, bias=bias, p=0.4, invariant=invariant, step_mode=mode),
                          layer.DropConnectLinear(6, 5, bias=bias, p=0.4, invariant=invariant, step_mode=mode))
        outs = []
        for m in (ref, ours):  # the same seed draws the same masks
            torch.manual_seed(5)
            xx = x.clone().requires_grad_()
            y = m(xx) if mode == "m" else torch.stack([m(xt) for xt in xx])
            y.backward(torch.ones_like(y))
            outs.append((y, xx.grad, m.weight.grad, m.dropped_w))
        for (a, b, name) in zip(outs[0], outs[1], ("output", "input grad", "weight grad", "dropped_w")):
            assert_close(f"DropConnect {mode} {name}", a, b, TOL)
        assert outs[1][3].shape == (3, 5, 6)
        if invariant:  # one draw kept over all steps: the outputs at step 0 and 1 use the same weights
            assert_close("invariant", outs[1][0][0], torch.relu(torch.bmm(outs[1][3], x[0].unsqueeze(-1)).squeeze(-1)
                                                                + (ours.dropped_b if bias else 0)), TOL)
        sf.reset_net(ref)
        functional.reset_net(ours)
        assert ours.dropped_w is None
        # eval: the mean of samples_num Gaussian draws through the activation, same seed, same numbers
        ref.eval()
        ours.eval()
        got = []
        for m in (ref, ours):
            torch.manual_seed(7)
            got.append(m(x) if mode == "m" else m(x[0]))
        assert_close(f"DropConnect eval {mode}", got[0], got[1], TOL)


def test_drop_connect_linear_eval_statistics_and_zero_variance():
    m = layer.DropConnectLinear(3, 2, bias=False, p=0.5, samples_num=20000, activation=None).to(DEVICE).eval()
    x = torch.rand(4, 3, device=DEVICE)
    mean = 0.5 * x @ m.weight.t()
    assert_close("DropConnect eval mean", mean, m(x), 3e-2)
    zero = torch.zeros(2, 3, device=DEVICE)  # zero variance: the mean itself (SpikingJelly raises here)
    assert torch.equal(m(zero), torch.zeros(2, 2, device=DEVICE))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        m(torch.zeros(2, 4, device=DEVICE))
    assert m(torch.rand(2, 5, 3, device=DEVICE)).shape == (2, 5, 2)  # eval takes any leading shape, like F.linear
    m.train()
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        m(torch.zeros(2, 5, 3, device=DEVICE))


# ------------------------------------------------------------------------------------------------ misc
def test_print_shape_module_logs_and_is_identity(caplog):
    m = layer.PrintShapeModule("probe")
    x = torch.rand(2, 3, device=DEVICE)
    with caplog.at_level(logging.DEBUG, logger="fastspike.layer.misc"):
        assert m(x) is x
    assert "probe shape=torch.Size([2, 3])" in caplog.text


@pytest.mark.peers
def test_spike_count_converters_match_spikingjelly(sj):
    sl, _ = sj
    counts = torch.randint(0, 4, (5, 2, 3), device=DEVICE).float()
    for name, args in (("SpikeCountToBinary", (3,)), ("TemporalBinSum", (2,)), ("TemporalBinSum", (5,)),
                       ("SpikeCountToBinary", (1,))):
        ref, ours = getattr(sl, name)(*args, always_convert=True), getattr(layer, name)(*args, always_convert=True)
        assert ours.step_mode == "m"
        _compare(name, ref, ours, counts)
        ref.eval()
        ours2 = getattr(layer, name)(*args).eval()  # converts in eval mode by default
        assert torch.equal(ref(counts), ours2(counts))
        ours2.train()
        assert ours2(counts) is counts  # and passes through in training


def test_spike_count_converters_closed_form_and_errors():
    s2b = layer.SpikeCountToBinary(3, always_convert=True)
    counts = torch.tensor([[2.0, 0.0], [3.0, 1.0]], device=DEVICE, requires_grad=True)
    y = s2b(counts)
    assert y.shape == (6, 2)
    assert torch.equal(y.detach(), torch.tensor([[1, 0], [1, 0], [0, 0], [1, 1], [1, 0], [1, 0]],
                                                device=DEVICE, dtype=torch.float))
    y.sum().backward()
    assert torch.equal(counts.grad, torch.ones_like(counts))  # 3 slots x 1/3 each
    tbs = layer.TemporalBinSum(2, always_convert=True)
    assert torch.equal(tbs(y.detach()), torch.tensor([[2, 0], [1, 1], [2, 0]], device=DEVICE, dtype=torch.float))
    for cls in (layer.SpikeCountToBinary, layer.TemporalBinSum):
        with pytest.raises(ValueError, match="num_slots"):
            cls(0)
        with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
            cls(2, always_convert=True)(torch.zeros(4, device=DEVICE))


# ------------------------------------------------------------------------------------------------ OTTT
class _PairSource(nn.Module):
    """Stands in for an online neuron in training: returns [spike, trace] (a plain module, so the same
    instance runs in SpikingJelly's container and in ours)."""

    def forward(self, x):
        spike = (x > 0.2).float() + 0.0 * x  # keeps x in the graph for the trace path
        return [spike, torch.sigmoid(x)]


@pytest.mark.peers
def test_ottt_sequential_and_helpers_match_spikingjelly(sj):
    sl, _ = sj
    x = torch.randn(4, 6, device=DEVICE)
    ref = sl.OTTTSequential(_PairSource(), nn.Linear(6, 4), _PairSource(), nn.AvgPool1d(2), nn.Linear(2, 3),
                            _PairSource(), nn.Flatten(0))
    ours = layer.OTTTSequential(*ref)  # same child instances: same weights
    assert list(ours.state_dict()) == list(ref.state_dict())
    grads = []
    for net in (ref, ours):
        net.zero_grad()
        xx = x.clone().requires_grad_()
        out = net(xx)
        assert isinstance(out, list)
        (out[0].sum() + 0 * out[1].sum()).backward()
        grads.append((out[0].detach(), out[1], xx.grad, net[1].weight.grad.clone(), net[4].weight.grad.clone()))
    for a, b in zip(*grads):
        assert_close("OTTTSequential", a, b, TOL)
    # GradwithTrace: forward value from the spikes, gradient from the trace
    lin = nn.Linear(4, 2).to(DEVICE)
    spike = (torch.rand(3, 4, device=DEVICE) > 0.5).float()
    trace = torch.rand(3, 4, device=DEVICE, requires_grad=True)
    for cls in (sl.GradwithTrace, layer.GradwithTrace):
        lin.zero_grad()
        tr = trace.detach().clone().requires_grad_()
        y = cls(lin)([spike, tr])
        assert_close("GradwithTrace value", lin(spike), y, TOL)
        y.sum().backward()
        assert_close("GradwithTrace weight grad", torch.ones(2, 1, device=DEVICE) * tr.detach().sum(0), lin.weight.grad,
                     TOL)
        assert_close("GradwithTrace trace grad", lin.weight.sum(0).expand(3, 4), tr.grad, TOL)
    for cls in (sl.SpikeTraceOp, layer.SpikeTraceOp):
        s, t = cls(nn.AvgPool1d(2))([spike, trace])
        assert_close("SpikeTraceOp", nn.functional.avg_pool1d(spike, 2), s, TOL)
        assert not t.requires_grad
    a = torch.rand(3, device=DEVICE, requires_grad=True)
    b = torch.rand(3, device=DEVICE, requires_grad=True)
    y = layer.ReplaceforGrad.apply(a, b)
    assert torch.equal(y, b)
    (y * torch.arange(3.0, device=DEVICE)).sum().backward()
    assert torch.equal(a.grad, torch.arange(3.0, device=DEVICE)) and torch.equal(b.grad, a.grad)


def test_ottt_sequential_passes_tensors_like_sequential():
    net = layer.OTTTSequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(DEVICE)
    x = torch.randn(5, 3, device=DEVICE)
    assert torch.equal(net(x), nn.Sequential(*net)(x))
