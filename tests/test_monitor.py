"""Monitors, firing-rate summaries, count_synops and the PNG plots."""
import pytest
import torch
import torch.nn as nn

from fastspike import functional, layer, monitor, neuron, utils, visualizing


def _net(step_mode="s"):
    net = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, bias=False),
        neuron.IFNode(),
        layer.Flatten(),
        layer.Linear(4 * 5 * 5, 3),
        neuron.LIFNode(),
    )
    functional.set_step_mode(net, step_mode)
    return net


def test_output_input_attribute_monitors():
    net = _net()
    x = torch.rand(3, 2, 1, 5, 5) * 2
    with monitor.OutputMonitor(net, neuron.BaseNode) as out_m, \
            monitor.InputMonitor(net, layer.Linear) as in_m, \
            monitor.AttributeMonitor("v", False, net, neuron.IFNode) as v_m:
        outs = [net(xt) for xt in x]
        assert out_m.monitored_layers == ["1", "4"]
        assert len(out_m["1"]) == 3 and len(out_m) == 6
        assert torch.equal(out_m["4"][2], outs[2])
        assert in_m.monitored_layers == ["3"] and in_m["3"][0].shape == (2, 100)
        assert torch.equal(v_m["1"][-1], net[1].v)
        out_m.disable()
        net(x[0])
        assert len(out_m) == 6
        out_m.enable()
        net(x[0])
        assert len(out_m) == 8
        out_m.clear_recorded_data()
        assert len(out_m) == 0 and out_m["1"] == []
    # closed: hooks removed, nothing recorded any more
    net(x[0])
    assert len(out_m) == 0 and out_m.hooks == []
    with pytest.raises(KeyError, match="monitored"):
        out_m["nope"]


def test_function_on_output_and_default_instance():
    net = _net("m")
    x = torch.rand(4, 2, 1, 5, 5) * 2
    m = monitor.OutputMonitor(net, neuron.IFNode, function_on_output=lambda s: s.mean().item())
    net(x)
    assert isinstance(m[0], float) and 0.0 <= m[0] <= 1.0
    m.remove_hooks()
    # default instance = type(net): Sequential -> only the net itself
    m2 = monitor.OutputMonitor(net)
    assert m2.monitored_layers == [""]


def test_grad_monitors():
    net = _net("m")
    x = torch.rand(4, 2, 1, 5, 5) * 2
    go = monitor.GradOutputMonitor(net, neuron.LIFNode)
    gi = monitor.GradInputMonitor(net, layer.Linear)
    y = net(x)
    g = torch.randn_like(y)
    y.backward(g)
    assert torch.equal(go["4"][0], g)
    assert gi["3"][0].shape == (4, 2, 100)
    go.close()
    gi.close()


def test_firing_rate_monitor_and_summary():
    net = _net("m")
    x = torch.rand(4, 2, 1, 5, 5) * 2
    fr = monitor.FiringRateMonitor(net)
    om = monitor.OutputMonitor(net, neuron.BaseNode)
    y = net(x)
    rates = fr.summary()
    assert list(rates) == ["1", "4"]
    assert rates["4"] == pytest.approx(y.mean().item())
    assert monitor.firing_rate_summary(om) == pytest.approx(rates)
    assert 0 < fr.overall() < 1
    text = str(fr)
    assert "firing rate" in text and "4" in text
    fr.clear_recorded_data()
    assert all(v != v for v in fr.summary().values())  # NaN when nothing recorded


def test_count_synops_exact_counts():
    conv = layer.Conv2d(2, 3, 3, padding=1, stride=1, bias=False)
    lin = layer.Linear(12, 5)
    x = (torch.rand(2, 2, 4, 4) > 0.5).float()  # binary -> AC
    rep = utils.count_synops(nn.Sequential(conv), x)
    (rec,) = rep.layers
    assert rec.kind == "AC"
    # exact: each non-zero input drives out_channels * (number of output positions whose window covers it)
    mask = torch.ones(1, 1, 4, 4)
    cover = nn.functional.conv2d(nn.functional.pad(mask, (1, 1, 1, 1)), torch.ones(1, 1, 3, 3)).squeeze()  # 4x4
    expected = int(((x != 0).float() * cover).sum().item()) * 3
    assert rec.ac == expected and rec.mac == 0
    assert rec.dense_ops == int(cover.sum().item()) * 2 * 3 * 2
    assert rep.energy_pj == pytest.approx(expected * 0.9)
    # real-valued input -> dense MACs
    xr = torch.randn(3, 7, 12)
    rep = utils.count_synops(nn.Sequential(lin), xr, batch_size=7)
    assert rep.layers[0].kind == "MAC" and rep.total_mac == 3 * 7 * 12 * 5
    assert rep.energy_pj == pytest.approx(3 * 7 * 12 * 5 * 4.6)
    assert rep.energy_per_sample_mj == pytest.approx(3 * 12 * 5 * 4.6 * 1e-9)
    with pytest.raises(TypeError):
        utils.count_synops(lin, [1, 2])


def test_count_synops_on_snn_multi_step():
    net = _net("m")
    x = torch.rand(4, 2, 1, 5, 5) * 2
    om = monitor.OutputMonitor(net, neuron.IFNode)
    rep = utils.count_synops(net, x, batch_size=2)
    spikes = om["1"][0]
    assert [lay.name for lay in rep.layers] == ["0", "3"]
    assert rep.layers[0].kind == "MAC" and rep.layers[1].kind == "AC"
    assert rep.layers[1].ac == int(spikes.count_nonzero()) * 3
    assert rep.layers[1].input_rate == pytest.approx(spikes.mean().item())
    assert "total" in str(rep) and set(rep.per_layer()) == {"0", "3"}
    assert not isinstance(net[1].v, torch.Tensor)  # states were reset afterwards
    assert utils.E_AC_45NM_PJ == 0.9 and utils.E_MAC_45NM_PJ == 4.6


def test_plots_write_png(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    s = (torch.rand(20, 8) > 0.7).float()
    v = torch.randn(20, 8)
    paths = [tmp_path / n for n in ("raster.png", "heat.png", "bars.png", "one.png")]
    figs = [
        visualizing.plot_spike_raster(s, paths[0]),
        visualizing.plot_membrane_heatmap(v, paths[1]),
        visualizing.plot_firing_rate_bars({"a": 0.1, "b.c": 0.3}, paths[2]),
        visualizing.plot_one_neuron_v_s(v[:, 0], s[:, 0], path=paths[3]),
    ]
    for p, f in zip(paths, figs):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        plt.close(f)
    with pytest.raises(ValueError, match="2 dimensions"):
        visualizing.plot_spike_raster(torch.rand(3))


def test_pack_saved_spikes_same_gradients_less_memory():
    from fastspike import models
    from fastspike.bench.core import peak_memory

    torch.manual_seed(0)
    net = models.sew_resnet18(cnf="ADD", spiking_neuron=neuron.LIFNode, num_classes=4, detach_reset=True)
    functional.set_step_mode(net, "m")
    x = torch.rand(2, 1, 3, 32, 32)

    def step(packed):
        net.zero_grad(set_to_none=True)
        if packed:
            with utils.pack_saved_spikes():
                y = net(x)
        else:
            y = net(x)
        y.square().sum().backward()
        functional.reset_net(net)
        return y.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}

    y0, g0 = step(False)
    y1, g1 = step(True)
    assert torch.equal(y0, y1)
    for k in g0:
        assert torch.equal(g0[k], g1[k]), k
    m0 = peak_memory(lambda: step(False), "cpu")
    m1 = peak_memory(lambda: step(True), "cpu")
    assert m1 < 0.9 * m0, (m1, m0)
    # non-spike tensors are left alone; small integer counts round-trip exactly
    w = torch.randn(5000, 3, requires_grad=True)
    for xx in ((torch.rand(4, 5000) > 0.5).float() * 3, torch.randn(4, 5000), (torch.rand(4, 5000) > 0.5).float() - 1):
        with utils.pack_saved_spikes():
            (xx @ w).sum().backward()
        g = w.grad.clone()
        w.grad = None
        (xx @ w).sum().backward()
        assert torch.equal(g, w.grad)
        w.grad = None


def test_count_synops_matches_spikingjelly_synop_counter():
    pytest.importorskip("spikingjelly")
    from spikingjelly.activation_based.op_counter import SynOpCounter
    from spikingjelly.activation_based.op_counter.base import DispatchCounterMode

    convs = [nn.Conv2d(4, 6, 3, padding=1, stride=2, bias=False), nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
             nn.Conv1d(4, 8, 5, padding=1), nn.Linear(7, 9)]
    inputs = [(torch.rand(2, 4, 9, 9) > 0.7).float(), (torch.rand(2, 4, 9, 9) > 0.7).float(),
              (torch.rand(3, 4, 11) > 0.5).float(), (torch.rand(5, 7) > 0.5).float()]
    for m, x in zip(convs, inputs):
        c = SynOpCounter()
        with DispatchCounterMode([c]):
            m(x)
        rep = utils.count_synops(m, x)
        assert rep.layers[0].kind == "AC"
        assert rep.total_ac == c.get_total() > 0, type(m).__name__
