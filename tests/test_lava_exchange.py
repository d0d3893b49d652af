"""fastspike.lava_exchange: SpikingJelly 2.0's lava_exchange names (numbers checked against SpikingJelly where it
defines them without Lava), Lava blocks that run bit-exactly like fastspike's Loihi simulator once exported to
netx, and the lava-dl builders' error without lava-dl."""
import pytest
import torch
import torch.nn as nn

from fastspike import functional, lava_exchange as L, neuron
from fastspike.export import loihi


def _sj():
    return pytest.importorskip("spikingjelly.activation_based.lava_exchange")


@pytest.mark.peers
def test_quantizers_and_integer_steps_match_spikingjelly():
    sj = _sj()
    x = torch.randn(50) * 3
    for scale in (64, 1 << 6, 17):
        for descale in (False, True):
            assert torch.equal(L.quantize_8b(x, scale, descale), sj.quantize_8b(x, scale, descale))
    i = torch.randint(-10 ** 6, 10 ** 6, (100,), dtype=torch.int64)
    assert torch.equal(L.right_shift_to_zero(i, 5), sj.right_shift_to_zero(i, 5))
    assert torch.equal(L.right_shift_to_zero(i.int(), 12), sj.right_shift_to_zero(i.int(), 12))
    with pytest.raises(TypeError, match="int32 or int64"):
        L.right_shift_to_zero(x, 3)
    g = torch.randn(40)
    results = []
    for mod in (L, sj):
        torch.manual_seed(3)
        xs = (torch.randn(40) * 0.4).requires_grad_()
        st = (torch.rand(40) - 0.5).requires_grad_()
        decay = torch.tensor(300.0, requires_grad=True)
        y = mod.LeakyIntegratorStep.apply(xs, decay, st, 64 * 64)
        (y * g).sum().backward()
        results.append((y.detach(), xs.grad, st.grad, decay.grad))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.peers
@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize("requires_grad", [False, True])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_cuba_lif_node_matches_spikingjelly(norm, requires_grad, step_mode):
    sj = _sj()
    torch.manual_seed(0)
    x = torch.randn(6, 2, 3, 4, 4) * 0.6
    g = torch.randn_like(x)
    out = []
    for mod in (L, sj):
        n = mod.CubaLIFNode(0.3, 0.1, v_threshold=0.5, requires_grad=requires_grad,
                            norm=mod.BatchNorm2d(3) if norm else None, step_mode=step_mode, store_v_seq=True,
                            store_i_seq=True)
        xx = x.clone().requires_grad_()
        y = n(xx) if step_mode == "m" else torch.stack([n(xx[t]) for t in range(6)])
        (y * g).sum().backward()
        grads = (xx.grad,) + ((n.current_decay.grad, n.voltage_decay.grad) if requires_grad else ())
        out.append((y.detach(), n.current_state.detach(), n.voltage_state.detach(), n.v_seq.detach(), grads,
                    sorted(n.state_dict()), {k: v.clone() for k, v in n.state_dict().items()}))
    ours, theirs = out
    assert ours[0].sum() > 0
    for a, b in zip(ours[:4], theirs[:4]):
        assert torch.equal(a, b)
    for a, b in zip(ours[4], theirs[4]):  # the surrogate's backward may differ in the last bit
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert ours[5] == theirs[5]
    for k in ours[6]:
        assert torch.equal(ours[6][k], theirs[6][k]), k


@pytest.mark.peers
def test_weight_scale_batchnorm_matches_spikingjelly():
    sj = _sj()
    torch.manual_seed(1)
    x = torch.randn(4, 3, 5, 5) * 2 + 0.5
    a, b = L.BatchNorm2d(3, momentum=0.3), sj.BatchNorm2d(3, momentum=0.3)
    for m in (a, b):
        m.train()
        m(x)
        m(x * 0.5)
    assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)
    assert torch.equal(a(x), b(x))
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))


def _blocks(seed=1):
    torch.manual_seed(seed)
    return nn.Sequential(
        L.BlockContainer(nn.Conv2d(2, 4, 3, padding=1, bias=False), neuron.IFNode(v_threshold=0.5)),
        L.BlockContainer(nn.Conv2d(4, 4, 2, stride=2, bias=False),
                         neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=0.5)),
        L.BlockContainer(nn.Flatten(), None),
        L.BlockContainer(nn.Linear(4 * 4 * 4, 5, bias=False), neuron.IFNode(v_threshold=0.3)))


def test_blocks_exported_to_netx_run_bit_exactly_in_the_loihi_simulator(tmp_path):
    net = _blocks()
    functional.set_step_mode(net, "m")
    x = (torch.rand(12, 3, 2, 8, 8, generator=torch.Generator().manual_seed(2)) < 0.4).float()
    with torch.no_grad():
        ys, h = [], x
        for b in net:
            h = b(h)
            if b.neuron is not None:
                ys.append(h)
    path = tmp_path / "blocks.net"
    exported = L.export_netx(list(net), path, (2, 8, 8))
    assert [b.kind for b in exported.blocks] == ["conv", "conv", "dense"] and exported.blocks[2].flatten_before
    assert exported.blocks[1].v_decay == 2048 and exported.blocks[0].i_decay == 4096
    out, every, _ = loihi.simulate(path, x, return_all=True)
    assert all(y.sum() > 0 for y in ys)
    for y, s in zip(ys, every):
        assert torch.equal(y, s)
    # single-step mode gives the same spikes
    functional.set_step_mode(net, "s")
    functional.reset_net(net)
    with torch.no_grad():
        assert torch.equal(torch.stack([net(x[t]) for t in range(12)]), ys[-1])


def test_blocks_quantize_weights_straight_through_and_train():
    net = _blocks()
    functional.set_step_mode(net, "m")
    x = torch.rand(4, 2, 2, 8, 8)
    net(x).sum().backward()
    w = net[0].synapse.weight
    assert w.grad is not None and w.grad.abs().sum() > 0
    q = net[0].neuron.quantize_8bit(w.detach())
    assert torch.equal(q * 32, torch.round(q * 32)) and q.abs().max() <= 256 / 64


def test_layouts_and_errors():
    x = torch.rand(5, 2, 3, 4)
    assert L.TNX_to_NXT(x).shape == (2, 3, 4, 5) and torch.equal(L.NXT_to_TNX(L.TNX_to_NXT(x)), x)
    with pytest.raises(ValueError, match="v_reset must be 0.0, but got 0.5"):
        L.CubaLIFNode(0.1, 0.1, v_reset=0.5)
    with pytest.raises(ValueError, match="have no bias"):
        L.BlockContainer(nn.Linear(3, 2), neuron.IFNode())
    with pytest.raises(ValueError, match="v_reset=None"):
        L.BlockContainer(nn.Linear(3, 2, bias=False), neuron.IFNode(v_reset=None))
    with pytest.raises(ValueError, match="decay_input=True"):
        L.BlockContainer(nn.Linear(3, 2, bias=False), neuron.LIFNode(tau=2.0))
    with pytest.raises(ValueError, match="start_dim=2"):
        L.BlockContainer(nn.Flatten(2), None)
    with pytest.raises(ValueError, match="step_mode must be one of"):
        L.BlockContainer(nn.Flatten(), None, step_mode="x")
    with pytest.raises(TypeError, match=r"blocks\[0\] must be a BlockContainer"):
        L.export_netx([nn.Linear(2, 2)], "unused.net", (2,))
    params = L.to_lava_neuron_param_dict(neuron.LIFNode(tau=4.0, decay_input=False))
    assert params["voltage_decay"] == 0.25 and params["current_decay"] == 1.0 and params["scale"] == 64


def test_lava_dl_builders_say_lava_dl_is_needed():
    try:
        import lava.lib.dl.slayer  # noqa: F401
        pytest.skip("lava-dl is installed: the builders run")
    except (ImportError, OSError):
        pass
    for call in (lambda: L.to_lava_neuron(neuron.IFNode()),
                 lambda: L.linear_to_lava_synapse_dense(nn.Linear(2, 2, bias=False)),
                 lambda: L.to_lava_blocks([nn.Linear(2, 2, bias=False), neuron.IFNode()]),
                 lambda: L.BlockContainer(nn.Linear(2, 2, bias=False), neuron.IFNode()).to_lava_block()):
        with pytest.raises(ImportError, match="needs lava-dl"):
            call()


@pytest.mark.peers
def test_names_spikingjelly_defines_without_lava_exist_with_the_same_signatures():
    import inspect

    sj = _sj()
    names = [n for n in vars(sj) if not n.startswith("_") and callable(getattr(sj, n))
             and getattr(getattr(sj, n), "__module__", "") == sj.__name__]
    assert names, "SpikingJelly's lava_exchange defines public names"
    for n in names + ["step_quantize", "quantize_8bit"]:
        assert hasattr(L, n), n
        a, b = getattr(L, n), getattr(sj, n)
        if inspect.isclass(b) and not issubclass(b, torch.autograd.Function):
            a, b = a.__init__, b.__init__
        if not inspect.isclass(b):
            pa = [(k, v.default) for k, v in inspect.signature(a).parameters.items()]
            pb = [(k, v.default) for k, v in inspect.signature(b).parameters.items()]
            assert [k for k, _ in pa] == [k for k, _ in pb], n
