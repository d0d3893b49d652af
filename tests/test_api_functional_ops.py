"""fastspike.functional's spike, layer, learning, net_config and conv_bn_fusion submodules against SpikingJelly
2.0.0 (peers) and against closed forms."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as TF

from fastspike import functional as F
from fastspike import layer, neuron, surrogate
from fastspike.functional import conv_bn_fusion
from helpers import DEVICE, assert_close


def _sjf():
    return pytest.importorskip("spikingjelly.activation_based.functional")


def _spikes(*shape, p=0.3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < p).to(dtype).to(DEVICE)


# ---------------------------------------------------------------------------------------------------------
# spike
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.peers
@pytest.mark.parametrize("shape", [(13,), (4, 3, 5), (2, 8)])
def test_bit_spike_compress_matches_spikingjelly(shape):
    sjf = _sjf()
    s = _spikes(*shape)
    s[tuple(0 for _ in shape)] = 2.5  # nonzero counts as a spike
    packed = F.bit_spike_compress(s)
    assert packed.dtype == torch.uint8 and packed.shape == ((s.numel() + 7) // 8,)
    assert torch.equal(packed.cpu(), sjf.bit_spike_compress(s.cpu()))
    for dtype in (torch.uint8, torch.float32):
        back = F.bit_spike_decompress(packed, s.shape, dtype)
        assert back.dtype == dtype and torch.equal(back, (s != 0).to(dtype))
        assert torch.equal(back.cpu(), sjf.bit_spike_decompress(packed.cpu(), s.shape, dtype))


def test_bit_spike_decompress_checks():
    with pytest.raises(ValueError, match="needs 2"):
        F.bit_spike_decompress(torch.zeros(3, dtype=torch.uint8), (3, 5))
    with pytest.raises(ValueError, match="uint8"):
        F.bit_spike_decompress(torch.zeros(2), (3, 5))
    with pytest.raises(TypeError, match="spike must be a torch.Tensor"):
        F.bit_spike_compress([1, 0])


def test_packed_and_sparse_linear():
    s = _spikes(6, 19, p=0.4)
    s[0, 0] = 0.7  # > 0.5: a spike for the packed/sparse forms
    w = torch.randn(5, 19, device=DEVICE, requires_grad=True)
    b = torch.randn(5, device=DEVICE, requires_grad=True)
    binary = (s > 0.5).float()
    packed = F.bit_pack_spike_dense(s)
    assert packed.shape == (6, 3) and packed.dtype == torch.uint8
    # bit j of byte b is column 8 b + j
    assert torch.equal(((packed[:, 0:1].int() >> torch.arange(8, device=DEVICE)) & 1).float(), binary[:, :8])
    y = F.packed_spike_linear(packed, w, b)
    ref = TF.linear(binary, w, b)
    assert_close("packed", ref, y, 1e-6)
    gw, gb = torch.autograd.grad(y.square().sum(), (w, b))
    gw_ref, gb_ref = torch.autograd.grad(ref.square().sum(), (w, b))
    assert_close("packed grad w", gw_ref, gw, 1e-6)
    assert_close("packed grad b", gb_ref, gb, 1e-6)

    x = s.clone().requires_grad_(True)
    for strategy in ("torch", "sparse"):
        y = F.sparse_linear(x, w, b, strategy)
        assert_close(strategy, TF.linear(binary if strategy == "sparse" else s, w, b), y, 1e-6)
        gx, gw = torch.autograd.grad(y.sum(), (x, w))
        assert_close(f"{strategy} grad x", torch.ones(6, 5, device=DEVICE) @ w, gx, 1e-6)  # reaches the spikes
    with pytest.raises(ValueError, match="strategy"):
        F.sparse_linear(x, w, b, "dense")
    with pytest.raises(ValueError, match="2-D"):
        F.bit_pack_spike_dense(s[0])


@pytest.mark.peers
@pytest.mark.parametrize("single", [False, True])
def test_if_lif_linear_are_neuron_then_linear(single):
    sjf = _sjf()
    sjs = pytest.importorskip("spikingjelly.activation_based.surrogate")
    T, M, K, Nout = 5, 4, 9, 6
    x = (torch.rand(T, M, K, device=DEVICE) * 1.5).requires_grad_(True)
    v = torch.zeros(M, K, device=DEVICE)
    wt = torch.randn(K, Nout, device=DEVICE, requires_grad=True)
    b = torch.randn(Nout, device=DEVICE, requires_grad=True)
    xin = x[0] if single else x
    for fs_fn, sj_multi, kw in ((F.if_linear, sjf.if_multi_step, {}),
                                (F.lif_linear, sjf.lif_multi_step, {"tau": 3.0, "decay_input": False})):
        y, v_last = fs_fn(xin, v, wt, b, v_threshold=0.9, v_reset=None, surrogate_function=surrogate.ATan(), **kw)
        xs = xin.unsqueeze(0) if single else xin
        args = (kw["tau"], kw["decay_input"]) if kw else ()
        spikes, v_ref, _ = sj_multi(xs, v, *args, 0.9, None, sjs.ATan())
        ref = spikes @ wt + b
        ref = ref[0] if single else ref
        assert_close("y", ref, y, 1e-5)
        assert_close("v", v_ref, v_last, 1e-5)
        for a, c in zip(torch.autograd.grad(y.sum() + v_last.sum(), (x, wt, b)),
                        torch.autograd.grad(ref.sum() + v_ref.sum(), (x, wt, b))):
            assert_close("grad", c, a, 1e-4)
    with pytest.raises(ValueError, match="threads"):
        F.if_linear(xin, v, wt, threads=64)
    with pytest.raises(ValueError, match="weight_t"):
        F.lif_linear(xin, v, wt.t())


# ---------------------------------------------------------------------------------------------------------
# layer
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.peers
def test_layer_steps_match_spikingjelly():
    sjf = _sjf()
    xs = [torch.randn(2, 3, device=DEVICE) for _ in range(6)]
    for d in (0, 1, 3):
        q, q_ref = (), ()
        for x in xs:
            y, q = F.delay_step(x, q, d)
            y_ref, q_ref = sjf.delay_step(x, q_ref, d)
            assert torch.equal(y, y_ref) and len(q) == len(q_ref)
    with pytest.raises(ValueError, match="delay_steps"):
        F.delay_step(xs[0], (), -1)
    s = _spikes(4, 6, 5, 5)
    state, w = torch.rand(4, 1, 5, 5, device=DEVICE), torch.rand(6, 5, 5, device=DEVICE)
    for a, b in zip(F.neunorm_step(s, state, w, 0.9, 0.3), sjf.neunorm_step(s, state, w, 0.9, 0.3)):
        assert_close("neunorm", b, a, 1e-6)
    out_i = torch.rand(4, 6, device=DEVICE)
    for rtau in (0.25, torch.rand(6, device=DEVICE)):
        assert_close("filter", sjf.synapse_filter_step(s[:, :, 0, 0], out_i, rtau),
                     F.synapse_filter_step(s[:, :, 0, 0], out_i, rtau), 1e-7)


# ---------------------------------------------------------------------------------------------------------
# learning (one step)
# ---------------------------------------------------------------------------------------------------------
def _f_pre(w):
    return w.clamp(0.0, 1.0)


def _f_post(w):
    return 1.0 - w


@pytest.mark.peers
def test_stdp_steps_match_spikingjelly():
    sjf = _sjf()
    d = torch.float64
    w = torch.rand(5, 7, dtype=d, device=DEVICE)
    tr = (torch.rand(3, 7, dtype=d, device=DEVICE), torch.rand(3, 5, dtype=d, device=DEVICE))
    pre, post = _spikes(3, 7, dtype=d, seed=1), _spikes(3, 5, dtype=d, seed=2)
    kw = dict(tau_pre=2.0, tau_post=3.0, f_pre=_f_pre, f_post=_f_post)
    for fn in ("stdp_linear_step", "mstdp_linear_step"):
        out, ref = getattr(F, fn)(pre, post, tr, w, **kw), getattr(sjf, fn)(pre, post, tr, w, **kw)
        assert_close(fn, ref[0], out[0], 1e-12)
        for a, b in zip(out[1], ref[1]):
            assert_close(f"{fn} trace", b, a, 1e-12)
    out = F.mstdpet_linear_step(pre[0], post[0], (tr[0][0], tr[1][0]), w, **kw)
    ref = sjf.mstdpet_linear_step(pre[0], post[0], (tr[0][0], tr[1][0]), w, **kw)
    assert_close("mstdpet", ref[0], out[0], 1e-12)
    e, te = torch.rand(5, 7, dtype=d, device=DEVICE), torch.rand(5, 7, dtype=d, device=DEVICE)
    for a, b in zip(F.mstdpet_reward_step(0.7, e, te, tau_trace=4.0), sjf.mstdpet_reward_step(0.7, e, te,
                                                                                              tau_trace=4.0)):
        assert_close("reward", b, a, 1e-12)

    for nd, stride in ((2, (2, 1)), (1, (2,))):
        spatial_in, spatial_k = (9, 8)[:nd], (3, 2)[:nd]
        w = torch.rand(4, 3, *spatial_k, dtype=d, device=DEVICE)
        pre = _spikes(2, 3, *spatial_in, dtype=d, seed=3)
        out_sp = tuple((i - k) // s + 1 for i, k, s in zip(spatial_in, spatial_k, stride))
        post = _spikes(2, 4, *out_sp, dtype=d, seed=4)
        tr = (torch.rand_like(pre), torch.rand_like(post))
        fn = "stdp_conv2d_step" if nd == 2 else "stdp_conv1d_step"
        out = getattr(F, fn)(pre, post, tr, w, stride=stride, **kw)
        ref = getattr(sjf, fn)(pre, post, tr, w, stride=stride, **kw)
        assert_close(fn, ref[0], out[0], 1e-12)
        with pytest.raises(ValueError, match="out_spike's spatial shape"):
            getattr(F, fn)(pre, post[..., :-1], (tr[0], tr[1][..., :-1]), w, stride=stride, **kw)


@pytest.mark.parametrize("kw, match", [
    (dict(tau_pre=0.5, tau_post=2.0), "tau_pre must be finite and >= 1"),
    (dict(tau_pre=2.0, tau_post=math.inf), "tau_post"),
])
def test_stdp_step_checks(kw, match):
    w = torch.rand(5, 7)
    pre, post = torch.zeros(3, 7), torch.zeros(3, 5)
    with pytest.raises(ValueError, match=match):
        F.stdp_linear_step(pre, post, (pre, post), w, **kw)
    with pytest.raises(ValueError, match="trace\\[1\\]"):
        F.stdp_linear_step(pre, post, (pre, post[:2]), w, tau_pre=2.0, tau_post=2.0)
    with pytest.raises(ValueError, match="do not match weight"):
        F.stdp_linear_step(pre, post, (pre, post), w.t(), tau_pre=2.0, tau_post=2.0)
    with pytest.raises(ValueError, match="tau_pre must be finite and > 0"):
        F.mstdp_linear_step(pre, post, (pre, post), w, tau_pre=0.0, tau_post=2.0)


def test_multi_step_delta_is_the_sum_of_steps():
    """stdp_multi_step_delta (linear_scan + one contraction) equals T calls of the one-step rule."""
    from fastspike.functional.learning import stdp_multi_step_delta
    T = 6
    for w, shape_in, shape_out, fn, stride in (
            (torch.rand(5, 7), (T, 3, 7), (T, 3, 5), F.stdp_linear_step, None),
            (torch.rand(4, 2, 3, 3), (T, 2, 2, 7, 7), (T, 2, 4, 5, 5), F.stdp_conv2d_step, (1, 1))):
        pre, post = _spikes(*shape_in, seed=5).cpu(), _spikes(*shape_out, seed=6).cpu()
        kw = dict(tau_pre=2.0, tau_post=4.0, f_pre=_f_pre, f_post=_f_post)
        tr = (torch.rand(shape_in[1:]), torch.rand(shape_out[1:]))
        dw, tr_last = stdp_multi_step_delta(pre, post, tr, w, stride=stride, **kw)
        acc, trs = torch.zeros_like(w), tr
        for t in range(T):
            extra = {"stride": stride} if stride else {}
            d, trs = fn(pre[t], post[t], trs, w, **extra, **kw)
            acc += d
        assert_close("sum", acc, dw, 1e-5)
        assert_close("trace pre", trs[0], tr_last[0], 1e-5)
        assert_close("trace post", trs[1], tr_last[1], 1e-5)


# ---------------------------------------------------------------------------------------------------------
# net_config
# ---------------------------------------------------------------------------------------------------------
def test_reset_net_without_cache_and_helpers():
    net = nn.Sequential(neuron.LIFNode(), nn.Linear(3, 3))
    net(torch.ones(2, 3) * 5)
    modules = F.collect_reset_modules(net)
    assert modules == (net[0],)
    F.reset_collected_modules(modules)
    assert net[0].v == 0.0
    with pytest.raises(TypeError, match="modules\\[0\\]"):
        F.reset_collected_modules([nn.Linear(2, 2)])
    F.reset_net(net)
    net[1] = neuron.IFNode()  # a module swap: reset_net resets it without invalidate_reset_cache
    net(torch.ones(2, 3) * 5)
    assert isinstance(net[1].v, torch.Tensor)
    F.reset_net(net)
    assert net[1].v == 0.0
    F.invalidate_reset_cache(net)
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        F.invalidate_reset_cache("net")


def test_set_step_mode_follows_children_keep_step_mode():
    class Keeps(nn.Sequential):
        children_keep_step_mode = True

    net = nn.Sequential(layer.Linear(3, 3), Keeps(layer.Linear(3, 3)))
    F.set_step_mode(net, "m")
    assert net[0].step_mode == "m" and net[1][0].step_mode == "s"


# ---------------------------------------------------------------------------------------------------------
# conv_bn_fusion
# ---------------------------------------------------------------------------------------------------------
def _conv_bn_net():
    net = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), layer.BatchNorm2d(4), neuron.IFNode(),
                        layer.Conv2d(4, 4, 3), layer.BatchNorm2d(4), layer.Flatten(), layer.Linear(4 * 4 * 4, 3))
    F.set_step_mode(net, "m")
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return net


def test_fuse_conv_bn_eval_modules():
    net = _conv_bn_net().to(DEVICE).eval()
    x = torch.rand(3, 2, 2, 6, 6, device=DEVICE)
    ref = net(x)
    F.reset_net(net)
    fused = conv_bn_fusion.fuse_conv_bn_eval_modules(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert_close("fused", ref, fused(x), 1e-5)
    with pytest.raises(ValueError, match="eval mode"):
        conv_bn_fusion.fuse_conv_bn_eval_modules(net.train())


def test_pack_conv_bn_train_modules():
    net = _conv_bn_net().to(DEVICE).train()
    x = torch.rand(3, 2, 2, 6, 6, device=DEVICE)
    packed = conv_bn_fusion.pack_conv_bn_train_modules(net)
    assert sum(type(m).__name__ == "_PackedConvBN" for m in packed.modules()) == 2
    y = packed(x)
    F.reset_net(net)
    ref = net(x)
    assert_close("packed", ref, y, 1e-5)
    g = torch.autograd.grad(y.sum(), net[0].weight)[0]
    F.reset_net(net)
    g_ref = torch.autograd.grad(net(x).sum(), net[0].weight)[0]
    assert_close("packed grad", g_ref, g, 1e-4)
    with pytest.raises(ValueError, match="train mode"):
        conv_bn_fusion.pack_conv_bn_train_modules(net.eval())


def test_reset_net_walk_matches_modules_and_getattr():
    """reset_net's own walk visits what net.modules() visits, in its order (a shared module once, None children
    skipped), and finds reset() where getattr finds it: on the class, on the instance, or not at all."""
    from fastspike.functional import net_config
    shared = neuron.LIFNode()
    inner = nn.Sequential(nn.Linear(2, 2), shared, nn.Identity())
    net = nn.Sequential(inner, shared, nn.ModuleList([nn.ReLU(), inner]), neuron.IFNode())
    net.add_module("gap", None)
    assert list(net_config._modules(net)) == list(net.modules())
    plain = nn.Linear(2, 2)
    calls = []
    plain.reset = lambda: calls.append(1)  # an instance attribute counts, as getattr sees it
    net.add_module("plain", plain)
    for m in net.modules():
        assert net_config._reset_method(m) == getattr(m, "reset", None)
    assert F.collect_reset_modules(net) == tuple(m for m in net.modules() if callable(getattr(m, "reset", None)))
    shared.v = torch.ones(2)
    F.reset_net(net)
    assert calls == [1] and shared.v == 0.0
    order = []  # reset_net's inlined walk resets in net.modules() order, each module once
    for i, m in enumerate(net.modules()):
        m.reset = lambda i=i: order.append(i)
    F.reset_net(net)
    assert order == list(range(len(list(net.modules()))))
