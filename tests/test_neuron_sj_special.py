"""SpikingJelly 2.0.0's neurons with their own forward (few-spike coding, DSR, intra-layer connections, GLIF,
MPBN, SpikeZIP, Noisy*, LIAF, online learning, the Simple* and FlexSN neurons) against fastspike's."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastspike import neuron as fs_neuron
from fastspike import surrogate as fs_surrogate
from helpers import DEVICE, assert_close
from test_neuron_sj_helpers import compare, pair, sj


def _x(*shape, scale=1.5, shift=0.5, seed=1):
    torch.manual_seed(seed)
    return [torch.randn(*shape, device=DEVICE) * scale + shift for _ in range(2)]


# -- few-spike coding ----------------------------------------------------------------------------
def _tables(module, K=4):
    g = torch.Generator().manual_seed(7)
    return [module.FewSpikeTable(torch.rand(K, generator=g) * 2 - 0.5, torch.rand(K, generator=g),
                                 torch.rand(K, generator=g) * 2) for _ in range(3)]


def _few_spike(module, kind, mode):
    t1, t2, t3 = _tables(module)
    if kind == "FewSpikeNode":
        return module.FewSpikeNode(t1, step_mode=mode)
    if kind == "OutlierAwareThresholdNode":
        return module.OutlierAwareThresholdNode(t1, t2, 0.5, 2.0, step_mode=mode)
    return module.HGNode([t1, t2, t3], [-0.2, 0.4], step_mode=mode)


@pytest.mark.peers
@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize("kind", ["FewSpikeNode", "OutlierAwareThresholdNode", "HGNode"])
def test_few_spike_nodes(kind, mode):
    sj_neuron, _ = sj()
    ref = _few_spike(sj_neuron, kind, mode).to(DEVICE)
    ours = _few_spike(fs_neuron, kind, mode).to(DEVICE)
    assert list(ours.state_dict()) == list(ref.state_dict())
    torch.manual_seed(2)
    x = torch.randn(4, 3, 5, device=DEVICE)
    inputs = [x] if mode == "m" else list(x)  # one [K, N, *] call, or K independent single-step calls
    for step in inputs:
        outs = []
        for node in (ref, ours):
            xi = step.clone().requires_grad_()
            y = node(xi)
            (y * torch.cos(torch.arange(y.numel(), device=DEVICE) * 0.7).view(y.shape)).sum().backward()
            outs.append((y.detach(), xi.grad))
        assert torch.equal(outs[0][0], outs[1][0])
        assert_close("grad", outs[0][1], outs[1][1], 1e-5)
    if mode == "m":
        with pytest.raises(ValueError, match="K=4"):
            ours(torch.zeros(3, 2, device=DEVICE))


# -- DSR, ILC, GLIF, MPBN ------------------------------------------------------------------------
@pytest.mark.peers
@pytest.mark.parametrize("name,kw", [("DSRIFNode", {"T": 6, "v_threshold": 1.0}),
                                     ("DSRIFNode", {"T": 6, "v_threshold": 0.8, "alpha": 1.0,
                                                    "v_threshold_grad_scaling": 0.5}),
                                     ("DSRLIFNode", {"T": 6}), ("DSRLIFNode", {"T": 6, "v_threshold_training": False})])
def test_dsr_nodes(name, kw):
    ref, ours = pair(name, **kw)
    compare(ref, ours, [x.abs() * 2 for x in _x(6, 3, 7)], "m", exact=False)
    with pytest.raises(ValueError, match="T=6"):
        ours(torch.zeros(5, 2, device=DEVICE))


@pytest.mark.peers
@pytest.mark.parametrize("name,kw", [("ILCIFNode", {}), ("ILCLIFNode", {"v_decay": 0.6, "v_reset": 0.1}),
                                     ("ILCCUBALIFNode", {}), ("ILCCUBALIFNode", {"c_decay": 0.3, "v_threshold": 0.8})])
def test_inter_layer_connection_nodes(name, kw):
    torch.manual_seed(3)  # conn is initialised from torch's generator: the same weights on both sides
    ref, ours = pair(name, 2, 4, **kw)
    compare(ref, ours, _x(5, 3, 8), "m")


@pytest.mark.peers
@pytest.mark.parametrize("inplane", [None, 3])
def test_gated_lif(inplane):
    sj_neuron, _ = sj()
    np.random.seed(0)
    ref = sj_neuron.GatedLIFNode(4, inplane=inplane).to(DEVICE)
    np.random.seed(0)  # the gates are drawn from numpy's generator, as in SpikingJelly
    ours = fs_neuron.GatedLIFNode(4, inplane=inplane).to(DEVICE)
    for (k, a), (k2, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    shape = (4, 2, 3, 5, 5) if inplane else (4, 2, 6)
    compare(ref, ours, _x(*shape), "m")


@pytest.mark.peers
@pytest.mark.parametrize("kw", [{"out_features": 7}, {"out_features": 7, "learnable_vth": True},
                                {"out_features": 7, "v_reset": None, "decay_input": True},
                                {"out_channels": 3, "mpbn": True}])
def test_mpbn_lif(kw):
    shape = (4, 2, 3, 5, 5) if "out_channels" in kw else (6, 3, 7)
    ref, ours = pair("MPBNLIFNode", step_mode="s", **kw)
    compare(ref, ours, _x(*shape, seed=3), "s")
    ref, ours = pair("MPBNLIFNode", step_mode="m", **kw)
    compare(ref, ours, _x(*shape), "m")
    if "out_channels" not in kw:
        assert torch.equal(ref.vbn.running_mean, ours.vbn.running_mean)
        assert int(ours.vbn.num_batches_tracked) == int(ref.vbn.num_batches_tracked) == 12  # once per step
    for node in (ref, ours):
        node.re_parameterize_v_threshold(normalize_residual=True, running_stats=True)
        node.reset()
    assert list(ours.state_dict()) == list(ref.state_dict())
    compare(ref, ours, _x(*shape, seed=4), "m")
    assert_close("mu", ref.mu, ours.mu, 1e-5)
    assert ours.bn_momentum == pytest.approx(ref.bn_momentum)
    for node in (ref, ours):
        node.eval()
        node.reset()
        node.step_mode = "s"
    compare(ref, ours, _x(*shape, seed=5), "s")


@pytest.mark.peers
@pytest.mark.parametrize("decode", [None, "max-mem", "max-abs-mem", "mean-mem", "last_mem"])
def test_non_spiking_base_node_subclass(decode):
    """A readout written by subclassing NonSpikingBaseNode (SpikingJelly's extension point)."""
    sj_neuron, _ = sj()

    def make(base_cls):
        class Leaky(base_cls):
            def neuronal_charge(self, x):
                self.v = 0.5 * self.v + x
        return Leaky(decode=decode)

    x = _x(5, 3, 4)[0]
    outs = []
    for node in (make(sj_neuron.NonSpikingBaseNode), make(fs_neuron.NonSpikingBaseNode)):
        xi = x.clone().requires_grad_()
        y = node(xi)
        y = torch.stack(y) if isinstance(y, list) else y
        y.pow(2).sum().backward()
        outs.append((y.detach(), xi.grad))
    for a, b in zip(*outs):
        assert_close("non-spiking", a, b, 1e-6)


# -- SpikeZIP, LIAF, online learning, Simple* ----------------------------------------------------
@pytest.mark.peers
@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize("kw", [{"sym": True}, {"sym": False}, {"pos_max": 3.0, "neg_min": -2.0}])
def test_stbif(kw, mode):
    ref, ours = pair("STBIFNode", 0.3, 8, step_mode=mode, **kw)
    torch.manual_seed(2)
    x = torch.randn(12, 4, 5, device=DEVICE) * 0.4
    with torch.no_grad():
        outs = [n(x) if mode == "m" else torch.stack([n(t) for t in x]) for n in (ref, ours)]
    assert torch.equal(outs[0], outs[1]) and outs[1].abs().sum() > 0
    for key in ("q", "acc_q", "cur_output"):
        assert torch.equal(getattr(ref, key), getattr(ours, key)), key
    assert torch.equal(ref.accumulated, ours.accumulated)
    with pytest.raises(RuntimeError, match="autograd"):
        ours(x.clone().requires_grad_() if mode == "m" else x[0].clone().requires_grad_())


@pytest.mark.peers
@pytest.mark.parametrize("threshold_related", [True, False])
def test_liaf_single_step(threshold_related):
    sj_neuron, _ = sj()
    ref = sj_neuron.LIAFNode(F.relu, threshold_related, 2.5).to(DEVICE)
    ours = fs_neuron.LIAFNode(F.relu, threshold_related, 2.5).to(DEVICE)
    compare(ref, ours, _x(6, 3, 7), "s", exact=False)


def test_liaf_multi_step_is_the_single_step_loop():
    """SpikingJelly 2.0.0's LIAFNode in step_mode='m' returns LIF spikes (its LIFNode fused path ignores act);
    fastspike's returns act(...) in both modes."""
    x = _x(6, 3, 7)[0]
    m = fs_neuron.LIAFNode(torch.tanh, False, 2.0, step_mode="m")(x)
    s_node = fs_neuron.LIAFNode(torch.tanh, False, 2.0)
    s = torch.stack([s_node(t) for t in x])
    assert torch.equal(m, s) and (m.abs() < 1).all() and m.unique().numel() > 10


@pytest.mark.peers
@pytest.mark.parametrize("name,kw", [("OTTTLIFNode", {}), ("OTTTLIFNode", {"decay_input": True, "v_reset": 0.0}),
                                     ("SLTTLIFNode", {}), ("SLTTLIFNode", {"detach_reset": False, "tau": 3.0})])
def test_online_learning_nodes(name, kw):
    ref, ours = pair(name, sg="Sigmoid", **kw)
    o = compare(ref, ours, _x(6, 3, 7), "s")
    if name == "OTTTLIFNode":
        assert_close("trace", ref.trace, ours.trace, 1e-5)
        x = _x(1, 3, 7)[0][0]
        assert isinstance(ours(x), list) and isinstance(ref(x), list)
    for node in (ref, ours):
        node.eval()
        node.reset()
    compare(ref, ours, _x(6, 3, 7, seed=3), "s")
    assert o is not None


@pytest.mark.peers
@pytest.mark.parametrize("name,kw", [("SimpleIFNode", {}), ("SimpleIFNode", {"v_reset": None, "detach_reset": True}),
                                     ("SimpleLIFNode", {"tau": 2.0, "decay_input": True}),
                                     ("SimpleLIFNode", {"tau": 3.0, "decay_input": False, "v_reset": -0.2})])
def test_simple_nodes(name, kw):
    ref, ours = pair(name, sg="ATan", **kw)
    compare(ref, ours, _x(6, 3, 7), "s")
    for node in (ref, ours):
        node.reset()
        node.step_mode = "m"
    compare(ref, ours, _x(6, 3, 7, seed=2), "m")


# -- Noisy nodes ---------------------------------------------------------------------------------
@pytest.mark.peers
@pytest.mark.parametrize("size,fmin", [(16, 0.0), ([3, 17], 0.0), ((2, 3, 10), 0.2)])
@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_powerlaw_psd_gaussian_matches_for_a_seed(exponent, size, fmin):
    sj_neuron, _ = sj()
    a = sj_neuron.powerlaw_psd_gaussian(exponent, size, fmin, random_state=5)
    b = fs_neuron.powerlaw_psd_gaussian(exponent, size, fmin, random_state=5)
    assert np.array_equal(a, b)
    g1, g2 = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(sj_neuron.powerlaw_psd_gaussian(exponent, size, fmin, g1),
                          fs_neuron.powerlaw_psd_gaussian(exponent, size, fmin, g2))


@pytest.mark.peers
@pytest.mark.parametrize("name,args", [("NoisyCUBALIFNode", (6,)), ("NoisyILCCUBALIFNode", (2, 3))])
def test_noisy_spiking_nodes(name, args):
    sj_neuron, _ = sj()
    torch.manual_seed(4)
    ref = getattr(sj_neuron, name)(*args, T=4, beta=1.0).to(DEVICE)
    torch.manual_seed(4)
    ours = getattr(fs_neuron, name)(*args, T=4, beta=1.0).to(DEVICE)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.reset_noise(3)
    ours.reset_noise(3)
    ours.eps_v_seq, ours.eps_s_seq = ref.eps_v_seq.clone(), ref.eps_s_seq.clone()  # SpikingJelly draws unseeded
    xs = _x(4, 2, 6)
    compare(ref, ours, xs, "m", exact=False)  # noisy spikes are not 0/1
    assert ours.noise_step == ref.noise_step == 1
    assert torch.equal(ours.get_colored_noise(), ref.get_colored_noise())
    cn = torch.randn(2, 4, 12, device=DEVICE)
    for node in (ref, ours):
        node.load_colored_noise(cn)
    compare(ref, ours, xs, "m", exact=False)
    assert ours.noise_step == 1  # replayed noise does not advance the episode
    for node in (ref, ours):
        node.cancel_load()
        node.is_training = False
    compare(ref, ours, xs, "m")


@pytest.mark.peers
@pytest.mark.parametrize("decode", [None, "max-mem", "max-abs-mem", "mean-mem", "last-me"])
def test_noisy_non_spiking(decode):
    sj_neuron, _ = sj()
    ref = sj_neuron.NoisyNonSpikingIFNode(6, T=4, decode=decode).to(DEVICE)
    ours = fs_neuron.NoisyNonSpikingIFNode(6, T=4, decode=decode).to(DEVICE)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["sigma"]
    ref.reset_noise(2)
    ours.reset_noise(2)
    ours.eps_seq = ref.eps_seq.clone()
    x = _x(4, 2, 6)[0]
    outs = []
    for node in (ref, ours):
        xi = x.clone().requires_grad_()
        y = node(xi)
        y = torch.stack(y) if isinstance(y, list) else y
        y.pow(2).sum().backward()
        outs.append((y.detach(), xi.grad, node.sigma.grad))
    for a, b in zip(*outs):
        assert_close("noisy non-spiking", a, b, 1e-6)


def test_powerlaw_noise_statistics():
    """The part that varies over time has unit variance, and the spectrum falls as 1/f**exponent (slope of log
    power against log frequency)."""
    for exponent in (0.0, 1.0, 2.0):
        y = fs_neuron.powerlaw_psd_gaussian(exponent, (200, 1024), random_state=0)
        assert y.shape == (200, 1024)
        assert abs((y - y.mean(-1, keepdims=True)).var() - 1.0) < 0.05
        power = (np.abs(np.fft.rfft(y, axis=-1)) ** 2).mean(0)[1:]
        freqs = np.fft.rfftfreq(1024)[1:]
        slope = np.polyfit(np.log(freqs), np.log(power), 1)[0]
        assert abs(slope + exponent) < 0.1, (exponent, slope)
    with pytest.raises(ValueError, match="fmin"):
        fs_neuron.powerlaw_psd_gaussian(1.0, 8, fmin=0.7)
    with pytest.raises(RuntimeError, match="reset_noise"):
        fs_neuron.NoisyCUBALIFNode(4, T=2)(torch.zeros(2, 1, 4, device=DEVICE))


# -- FlexSN --------------------------------------------------------------------------------------
_SJ_SG = None
_FS_SG = fs_surrogate.Sigmoid()


def _core_sj(x, v, tau, th):
    h = v + (x - v) / tau
    s = _SJ_SG(h - th)
    return s, h * (1 - s)


def _core_fs(x, v, tau, th):
    h = v + (x - v) / tau
    s = _FS_SG(h - th)
    return s, h * (1 - s)


@pytest.mark.peers
@pytest.mark.parametrize("mode", ["s", "m"])
def test_flexsn_matches_spikingjelly(mode):
    global _SJ_SG
    sj_neuron, sj_sg = sj()
    _SJ_SG = sj_sg.Sigmoid()
    nodes = []
    for cls, core in ((sj_neuron.FlexSN, _core_sj), (fs_neuron.FlexSN, _core_fs)):
        tau = torch.nn.Parameter(torch.tensor([2.0], device=DEVICE))
        nodes.append(cls(core, 1, (tau, torch.tensor([1.0], device=DEVICE)), step_mode=mode, store_state_seqs=True))
    ref, ours = nodes
    assert list(ours.state_dict()) == list(ref.state_dict()) == ["_static_input_0", "_static_input_1"]
    assert ours._num_outputs == ref._num_outputs == 1
    compare(ref, ours, _x(5, 3, 4), mode)
    if mode == "m":
        assert_close("state_seqs", ref.state_seqs[0], ours.state_seqs[0], 1e-6)
    x = _x(5, 3, 4)[0]
    inputs = (x,) if mode == "m" else (x[0],)
    states = (torch.zeros_like(x[0]),)
    (oa,), (sa,) = ref.functional_forward(inputs, states, static_inputs=ref.static_inputs)
    (ob,), (sb,) = ours.functional_forward(inputs, states, static_inputs=ours.static_inputs)
    assert torch.equal(oa, ob)
    assert_close("functional state", sa, sb, 1e-6)
