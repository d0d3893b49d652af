"""fastspike.learning against SpikingJelly 2.0.0: the STDP learners update a Linear and a Conv2d synapse's weights
as SpikingJelly's do over several optimizer steps, in step modes 's' and 'm' (where fastspike's traces run on
linear_scan); MSTDP / MSTDPET learners and the OTTT / FPTT loops likewise."""
import pytest
import torch
import torch.nn as nn

from fastspike import functional, layer, learning, neuron
from fastspike.ops import scan as ops_scan
from helpers import DEVICE, assert_close


def _sj():
    # SpikingJelly's learning imports its monitor module, which needs tensorboard
    pytest.importorskip("spikingjelly.activation_based.learning")
    from spikingjelly.activation_based import functional as sjf
    from spikingjelly.activation_based import layer as sjl
    from spikingjelly.activation_based import learning as sjlearn
    from spikingjelly.activation_based import neuron as sjn
    return sjf, sjl, sjlearn, sjn


def f_weight(w):
    return torch.clamp(w, -1.0, 1.0)


def _pair(kind, step_mode, dtype):
    """The same two-layer net (synapse -> IF neurons) in fastspike and in SpikingJelly, equal weights."""
    sjf, sjl, _, sjn = _sj()
    torch.manual_seed(0)
    if kind == "linear":
        ours = nn.Sequential(layer.Linear(12, 6, bias=False), neuron.IFNode(v_threshold=0.6))
        theirs = nn.Sequential(sjl.Linear(12, 6, bias=False), sjn.IFNode(v_threshold=0.6))
    else:
        ours = nn.Sequential(layer.Conv2d(2, 4, 3, stride=2, padding=1, bias=False), neuron.IFNode(v_threshold=0.6))
        theirs = nn.Sequential(sjl.Conv2d(2, 4, 3, stride=2, padding=1, bias=False), sjn.IFNode(v_threshold=0.6))
    theirs.load_state_dict(ours.state_dict())
    ours, theirs = ours.to(DEVICE, dtype), theirs.to(DEVICE, dtype)
    functional.set_step_mode(ours, step_mode)
    sjf.set_step_mode(theirs, step_mode)
    return ours, theirs


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_stdp_learner_matches_spikingjelly(kind, step_mode, dtype):
    sjf, _, sjlearn, _ = _sj()
    ours, theirs = _pair(kind, step_mode, dtype)
    kw = dict(tau_pre=2.0, tau_post=3.0, f_pre=f_weight, f_post=f_weight)
    lo = learning.STDPLearner(step_mode, ours[0], ours[1], **kw)
    lt = sjlearn.STDPLearner(step_mode, theirs[0], theirs[1], **kw)
    opt_o = torch.optim.SGD(ours.parameters(), lr=0.05)
    opt_t = torch.optim.SGD(theirs.parameters(), lr=0.05)
    shape = (8, 12) if kind == "linear" else (8, 2, 9, 9)
    T = 5
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    g = torch.Generator().manual_seed(1)
    for it in range(4):  # four optimizer steps, the traces carried across them
        x = (torch.rand((T,) + shape, generator=g) < 0.4).to(DEVICE, dtype)
        for net in (ours, theirs):
            opt = opt_o if net is ours else opt_t
            opt.zero_grad()
            with torch.no_grad():
                if step_mode == "m":
                    net(x)
                else:
                    for t in range(T):
                        net(x[t])
        lo.step(on_grad=True)
        lt.step(on_grad=True)
        assert_close(f"grad {it}", theirs[0].weight.grad, ours[0].weight.grad, tol)
        opt_o.step()
        opt_t.step()
        assert_close(f"weight {it}", theirs[0].weight, ours[0].weight, tol)
        assert_close(f"trace_pre {it}", lt.trace_pre, lo.trace_pre, tol)
        assert_close(f"trace_post {it}", lt.trace_post, lo.trace_post, tol)
        functional.reset_net(ours[1:])
        sjf.reset_net(theirs[1:])
    assert ours[0].weight.grad.abs().sum() > 0  # spikes happened: the comparison was not of zeros


def test_stdp_learner_multi_step_runs_linear_scan(monkeypatch):
    calls = []
    real = ops_scan.linear_scan
    import fastspike.functional.learning as fl
    monkeypatch.setattr(fl, "linear_scan", lambda *a, **k: calls.append(a[1].shape) or real(*a, **k))
    net = nn.Sequential(layer.Linear(12, 6, step_mode="m"), neuron.IFNode(step_mode="m")).to(DEVICE)
    lrn = learning.STDPLearner("m", net[0], net[1], 2.0, 2.0)
    with torch.no_grad():
        net((torch.rand(7, 4, 12, device=DEVICE) < 0.5).float())
    dw = lrn.step(on_grad=False)
    assert dw.shape == (6, 12)
    assert calls == [(7, 4, 12), (7, 4, 6)]  # one scan per trace over all T steps


def test_learner_lifecycle_and_errors():
    net = nn.Sequential(layer.Linear(4, 3), neuron.IFNode()).to(DEVICE)
    lrn = learning.STDPLearner("s", net[0], net[1], 2.0, 2.0)
    assert lrn.step() is None  # nothing recorded
    lrn.disable()
    net(torch.ones(2, 4, device=DEVICE))
    assert lrn.step() is None
    lrn.enable()
    net(torch.ones(2, 4, device=DEVICE))
    assert lrn.step(on_grad=False).shape == (3, 4)
    functional.reset_net(lrn)
    assert lrn.trace_pre is None
    lrn.close()
    with pytest.raises(RuntimeError, match="closed"):
        lrn.step()
    with pytest.raises(ValueError, match="tau_pre"):
        learning.STDPLearner("s", net[0], net[1], 0.5, 2.0)
    with pytest.raises(ValueError, match="step_mode"):
        learning.STDPLearner("x", net[0], net[1], 2.0, 2.0)
    with pytest.raises(NotImplementedError, match="Linear, Conv1d or Conv2d"):
        learning.STDPLearner("s", nn.Conv3d(1, 1, 1), net[1], 2.0, 2.0)
    with pytest.raises(NotImplementedError, match="groups=1"):
        learning.STDPLearner("s", nn.Conv2d(2, 2, 3, groups=2), net[1], 2.0, 2.0)
    with pytest.raises(ValueError, match="step_mode must be 's'"):
        learning.MSTDPLearner("m", net[0], net[1], 2.0, 2.0)
    with pytest.raises(NotImplementedError, match="Linear"):
        learning.MSTDPETLearner("s", nn.Conv2d(1, 1, 1), net[1], 2.0, 2.0, 2.0)


@pytest.mark.peers
@pytest.mark.parametrize("which", ["MSTDPLearner", "MSTDPETLearner"])
def test_reward_learners_match_spikingjelly(which):
    sjf, sjl, sjlearn, sjn = _sj()
    torch.manual_seed(0)
    batch = 3 if which == "MSTDPLearner" else None
    ours = nn.Sequential(nn.Linear(10, 5, bias=False), neuron.LIFNode(tau=2.0, v_threshold=0.4)).to(DEVICE,
                                                                                                    torch.float64)
    theirs = nn.Sequential(nn.Linear(10, 5, bias=False), sjn.LIFNode(tau=2.0, v_threshold=0.4)).to(DEVICE,
                                                                                                   torch.float64)
    theirs.load_state_dict(ours.state_dict())
    extra = (4.0,) if which == "MSTDPETLearner" else ()
    lo = getattr(learning, which)("s", ours[0], ours[1], 2.0, 3.0, *extra, f_pre=f_weight)
    lt = getattr(sjlearn, which)("s", theirs[0], theirs[1], 2.0, 3.0, *extra, f_pre=f_weight)
    opt_o, opt_t = torch.optim.SGD(ours.parameters(), lr=0.1), torch.optim.SGD(theirs.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(2)
    for t in range(8):
        shape = (batch, 10) if batch else (10,)
        x = (torch.rand(shape, generator=g) < 0.5).to(DEVICE, torch.float64)
        reward = torch.rand(batch, generator=g).to(DEVICE) if batch and t % 2 else 0.5 - t * 0.1
        for net, lrn, opt in ((ours, lo, opt_o), (theirs, lt, opt_t)):
            opt.zero_grad()
            with torch.no_grad():
                net(x)
            lrn.step(reward)
            opt.step()
        assert_close(f"{which} weight {t}", theirs[0].weight, ours[0].weight, 1e-12)
    if which == "MSTDPLearner":
        with pytest.raises(ValueError, match="reward must be a scalar or of shape"):
            ours(x)
            lo.step(torch.zeros(batch + 1, device=DEVICE))
    else:
        with pytest.raises(ValueError, match="reward must be a scalar"):
            ours(x)
            lo.step(torch.zeros(2, device=DEVICE))


def _online_nets():
    sjf, sjl, _, sjn = _sj()
    torch.manual_seed(0)
    ours = nn.Sequential(layer.Linear(6, 8), neuron.LIFNode(), layer.Linear(8, 3))
    theirs = nn.Sequential(sjl.Linear(6, 8), sjn.LIFNode(), sjl.Linear(8, 3))
    theirs.load_state_dict(ours.state_dict())
    return ours.to(DEVICE), theirs.to(DEVICE)


@pytest.mark.peers
@pytest.mark.parametrize("online", [True, False])
def test_ottt_online_training_matches_spikingjelly(online):
    pytest.importorskip("spikingjelly.activation_based.learning")
    from spikingjelly.activation_based.learning import online_learning as sj_online

    ours, theirs = _online_nets()
    x = torch.rand(4, 5, 6, device=DEVICE)  # [N, T, *]
    target = torch.randint(0, 3, (4, 5), device=DEVICE)
    loss_t = nn.functional.cross_entropy
    results = []
    for net, fn in ((ours, learning.online_learning.ottt_online_training), (theirs, sj_online.ottt_online_training)):
        opt = torch.optim.SGD(net.parameters(), lr=0.2)
        results.append(fn(net, opt, x, target, loss_t, online))
    assert_close("loss", results[1][0], results[0][0], 1e-5)
    assert_close("outputs", results[1][1], results[0][1], 1e-5)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert_close("param", b, a, 1e-5)


@pytest.mark.peers
def test_fptt_online_training_matches_spikingjelly():
    pytest.importorskip("spikingjelly.activation_based.learning")
    from spikingjelly.activation_based.learning import online_learning as sj_online

    ours, theirs = _online_nets()
    x = torch.rand(5, 4, 6, device=DEVICE)  # [T, N, *]
    target = torch.randint(0, 3, (5, 4), device=DEVICE)
    w_ras = []
    for net, mod in ((ours, learning.online_learning), (theirs, sj_online)):
        opt = torch.optim.SGD(net.parameters(), lr=0.2)
        w_ra = mod.fptt_online_training_init_w_ra(opt)
        mod.fptt_online_training(net, opt, x, target, nn.functional.cross_entropy, 0.5, w_ra)
        w_ras.append(w_ra)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert_close("param", b, a, 1e-5)
    for a, b in zip(*w_ras):
        assert_close("w_ra", b, a, 1e-5)
    with pytest.raises(ValueError, match="alpha"):
        learning.online_learning.fptt_online_training(ours, torch.optim.SGD(ours.parameters(), lr=0.1), x, target,
                                                      nn.functional.cross_entropy, 0.0, w_ras[0])
