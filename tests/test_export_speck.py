"""Speck / DYNAP-CNN: every hardware constraint violated once and reported with layer, limit and value; valid
networks accepted; BatchNorm folding, LIF -> IAF and AvgPool folding; JSON configuration; the integer IAF
simulator against the float model (exact on representable networks, close otherwise, reproducible)."""
import json

import pytest
import torch
import torch.nn as nn

from fastspike import neuron
from fastspike.export import SumPool2d, check_speck, fold_batchnorm, speck, to_speck
from fastspike.functional import reset_net as reset_states


def _run(model, xs):
    reset_states(model)
    with torch.no_grad():
        return torch.stack([model(x) for x in xs])


def _spikes(shape, T=10, p=0.3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, *shape, generator=g) < p).float()


def _valid_net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), neuron.IFNode(), SumPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), neuron.IFNode(v_reset=None), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10), neuron.IFNode(),
    )


def test_valid_network_is_accepted_and_configured(tmp_path):
    net = _valid_net()
    report = check_speck(net, (2, 32, 32), fold_bn=True)
    assert report.ok, str(report)
    assert len(report.cores) == 3 and sorted(report.assignment) == sorted(set(report.assignment))
    cfg = to_speck(net, (2, 32, 32), path=tmp_path / "speck.json")
    d = json.loads((tmp_path / "speck.json").read_text())
    assert [c["layer"] for c in d["cores"]] == [0, 1, 2]
    c0, c1, c2 = d["cores"]
    assert c0["kernel_size"] == 3 and c0["stride"] == {"y": 1, "x": 1} and c0["padding"] == {"y": 1, "x": 1}
    assert c0["destinations"] == [{"layer": 1, "chip_core": cfg.assignment[1], "pooling": 2, "enable": True}]
    assert c1["destinations"][0]["pooling"] == 2 and c1["return_to_zero"] is False and c0["return_to_zero"] is True
    assert c2["kernel_size"] == 4 and c2["output_shape"] == {"channels": 10, "height": 1, "width": 1}
    assert c2["destinations"] == [{"layer": None, "chip_core": None, "pooling": 1, "enable": True}]
    for c in d["cores"]:
        w = torch.tensor(c["weights"])
        assert w.dtype == torch.int64 and int(w.min()) >= -128 and int(w.max()) <= 127
        b = torch.tensor(c["biases"])
        # one scale per core: the weights or the bias use the full 8-bit range (or the threshold its 16 bits)
        assert max(int(w.abs().max()), int(b.abs().max())) >= 127 or c["threshold_high"] >= 2 ** 15 - 2
        assert 1 <= c["threshold_high"] <= 2 ** 15 - 1 and c["threshold_low"] == -(2 ** 15)
        assert all(-128 <= b <= 127 for b in c["biases"])
    # kernel memory formula: c * 2^(ceil log2(k*k) + ceil log2 f)
    assert c0["kernel_memory"] == 2 * 2 ** (4 + 3) and c1["kernel_memory"] == 8 * 2 ** (4 + 4)
    assert c0["neuron_memory"] == 8 * 2 ** (5 + 5)
    # the JSON alone reproduces the simulation
    xs = _spikes((2, 2, 32, 32), T=6)
    assert torch.equal(speck.simulate(tmp_path / "speck.json", xs), cfg.simulate(xs))


def _chain(n_layers, c=4, hw=8):
    layers = [nn.Conv2d(1, c, 3, padding=1), neuron.IFNode()]
    for _ in range(n_layers - 1):
        layers += [nn.Conv2d(c, c, 1), neuron.IFNode()]
    return nn.Sequential(*layers), (1, hw, hw)


class _FanOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0, self.s0 = nn.Conv2d(1, 4, 3, padding=1), neuron.IFNode()
        self.a, self.sa = nn.Conv2d(4, 4, 1), neuron.IFNode()
        self.b, self.sb = nn.Conv2d(4, 4, 1), neuron.IFNode()
        self.c, self.sc = nn.Conv2d(4, 4, 1), neuron.IFNode()
        self.d, self.sd = nn.Conv2d(4, 4, 1), neuron.IFNode()

    def forward(self, x):
        h = self.s0(self.c0(x))
        return self.sd(self.d(self.sa(self.a(h)) + self.sb(self.b(h)) + self.sc(self.c(h))))


CASES = {
    "cores": (lambda: _chain(10), "model", "number of cores", 9, 10),
    "kernel_size": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 17), neuron.IFNode()), (1, 20, 20)),
                    "0", "kernel size", "<= 16", "17x17"),
    "square_kernel": (lambda: (nn.Sequential(nn.Conv2d(1, 2, (3, 5)), neuron.IFNode()), (1, 8, 8)),
                      "0", "square kernel", "kx == ky", "3x5"),
    "stride": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3, stride=3), neuron.IFNode()), (1, 9, 9)),
               "0", "stride", (1, 2, 4, 8), (3, 3)),
    "padding": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 16, padding=8), neuron.IFNode()), (1, 8, 8)),
                "0", "padding", "<= 7", (8, 8)),
    "pooling": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), neuron.IFNode(), SumPool2d(3),
                                       nn.Conv2d(2, 2, 1), neuron.IFNode()), (1, 9, 9)),
                "1", "pooling 1, 2 or 4", (1, 2, 4), 3),
    "channels": (lambda: (nn.Sequential(nn.Conv2d(1, 1025, 1), neuron.IFNode()), (1, 2, 2)),
                 "0", "output channels", "<= 1024", 1025),
    "input_size": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3, stride=4), neuron.IFNode()), (1, 130, 130)),
                   "0", "input size", "<= 128x128", "130x130"),
    "output_size": (lambda: (nn.Sequential(nn.Conv2d(1, 1, 1), neuron.IFNode()), (1, 65, 65)),
                    "1", "output (neuron map) size", "<= 64x64", "65x65"),
    "kernel_memory": (lambda: (nn.Sequential(nn.Conv2d(64, 64, 16), neuron.IFNode()), (64, 16, 16)),
                      "0", "kernel memory (entries)", 65536, 64 * 2 ** (8 + 6)),
    "neuron_memory": (lambda: (nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), neuron.IFNode()), (1, 64, 64)),
                      "1", "neuron memory (entries)", 65536, 32 * 2 ** 12),
    "assignment": (lambda: _chain(4, c=16, hw=64), "model",
                   "core memory assignment (kernel and neuron memory per core)", None, None),
    "fan_out": (lambda: (_FanOut(), (1, 6, 6)), "s0", "fan-out (destinations per core)", 2, 3),
    "dilation": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3, dilation=2), neuron.IFNode()), (1, 9, 9)),
                 "0", "dilation", "1", (2, 2)),
    "leaky": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3), neuron.LIFNode()), (1, 6, 6)),
              "1", "non-leaky IAF neurons only", "IFNode", "LIFNode (leaky)"),
    "batchnorm": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), neuron.IFNode()), (1, 6, 6)),
                  "1", "no BatchNorm unless folded", "folded into the convolution", "BatchNorm2d"),
    "reset_value": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3), neuron.IFNode(v_reset=0.5)), (1, 6, 6)),
                    "1", "reset value", "0 (return to zero) or None (subtract)", 0.5),
    "max_pool": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3), neuron.IFNode(), nn.MaxPool2d(2),
                                        nn.Conv2d(2, 2, 1), neuron.IFNode()), (1, 6, 6)),
                 "2", "sum pooling only", "SumPool2d/AvgPool2d", "MaxPool2d"),
    "unsupported_layer": (lambda: (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), neuron.IFNode()), (1, 6, 6)),
                          "0", "each core is Conv2d -> IAF", "a spiking neuron right after the layer", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_constraint_violation_is_reported(case):
    build, layer, constraint, limit, value = CASES[case]
    net, shape = build()
    report = check_speck(net, shape)
    assert not report.ok
    hits = [v for v in report.violations if v.constraint == constraint]
    assert hits, f"expected a '{constraint}' violation, got: {report}"
    v = hits[0]
    assert v.layer == layer
    if limit is not None:
        assert v.limit == limit
    if value is not None:
        assert v.value == value
    assert f"layer '{layer}': {constraint}" in str(report)
    with pytest.raises(ValueError, match="Speck check failed"):
        to_speck(net, shape, convert_lif=False, fold_bn=False)


def test_bit_width_violations_for_integer_models():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), neuron.IFNode(v_threshold=40000.0))
    with torch.no_grad():
        net[0].weight.fill_(3.0)
        net[0].weight[0, 0, 0, 0] = 200.0
    report = check_speck(net, (1, 6, 6), quantized=True)
    got = {v.constraint: v for v in report.violations}
    assert got["8-bit weights"].limit == "[-128, 127]" and got["8-bit weights"].value == "[3, 200]"
    assert got["16-bit threshold"].value == 40000.0
    with torch.no_grad():
        net[0].weight[0, 0, 0, 0] = 2.5
    report = check_speck(net, (1, 6, 6), quantized=True)
    assert any(v.constraint.startswith("weights must be integers") for v in report.violations)


def test_batchnorm_folding_preserves_outputs():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 3, bias=False),
                        nn.BatchNorm1d(3))
    with torch.no_grad():
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    net.eval()
    folded = fold_batchnorm(net)
    assert isinstance(folded[1], nn.Identity) and isinstance(folded[4], nn.Identity)
    assert isinstance(net[1], nn.BatchNorm2d)  # the original is untouched
    x = torch.randn(5, 2, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_lif_to_iaf_and_avgpool_rules():
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), neuron.LIFNode(tau=4.0, decay_input=True), nn.AvgPool2d(2),
                        nn.Conv2d(2, 3, 2), neuron.LIFNode(tau=2.0, decay_input=False, v_reset=None))
    cfg = to_speck(net, (1, 6, 6))
    c0, c1 = cfg.cores
    torch.testing.assert_close(c0.weight, net[0].weight.double() / 4.0)  # input gain 1/tau folded
    torch.testing.assert_close(c0.bias, net[0].bias.double() / 4.0)
    torch.testing.assert_close(c1.weight, net[3].weight.double() / 4.0)  # AvgPool(2) = SumPool(2) / 4
    assert c1.reset == "subtract" and c0.reset == "zero" and c0.destinations == [(1, 2)]


def test_simulator_exact_on_representable_network():
    """Weights m/128 with max m = 127 quantize to exactly m (scale 128) and thresholds k/128 to k; sums of
    such numbers are exact in float32, so the integer simulator equals the float IFNode model spike for spike
    (hard and soft reset)."""
    g = torch.Generator().manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), neuron.IFNode(v_threshold=65 / 128),
                        SumPool2d(2), nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False),
                        neuron.IFNode(v_threshold=90 / 128, v_reset=None))
    with torch.no_grad():
        for conv in (net[0], net[3]):
            m = torch.randint(-40, 128, conv.weight.shape, generator=g).double()
            m.view(-1)[0] = 127
            conv.weight.copy_((m / 128).float())
    xs = _spikes((3, 2, 8, 8), T=12, p=0.4)
    cfg = to_speck(net, (2, 8, 8))
    out, layers = speck.simulate(cfg, xs, return_all=True)
    acts = []
    h = net[1].register_forward_hook(lambda m, a, o: acts.append(o))
    ref = _run(net, xs)
    h.remove()
    assert torch.stack(acts).sum() > 0 and ref.sum() > 0
    assert torch.equal(layers[0], torch.stack(acts)) and torch.equal(out, ref)
    assert cfg.cores[0].scale == 128.0 and cfg.cores[0].threshold_q == 65


def test_simulator_close_to_float_model_and_reproducible():
    torch.manual_seed(4)
    net = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), neuron.IFNode(), SumPool2d(2),
                        nn.Conv2d(8, 8, 3, padding=1), neuron.IFNode(v_reset=None), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 10), neuron.IFNode())
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.abs_()
                m.weight.sub_(m.weight.mean() * 0.5)
                m.weight.mul_(1.5)
    xs = _spikes((4, 2, 8, 8), T=16)
    cfg = to_speck(net, (2, 8, 8))
    out1, all1 = speck.simulate(cfg, xs, return_all=True)
    out2, all2 = speck.simulate(cfg, xs, return_all=True)
    assert all(torch.equal(a, b) for a, b in zip(all1, all2))
    acts = {}
    hooks = [net[i].register_forward_hook(lambda m, a, o, i=i: acts.setdefault(i, []).append(o)) for i in (1, 4, 7)]
    _run(net, xs)
    for h in hooks:
        h.remove()
    for i, q in zip((1, 4, 7), all1):
        ref = torch.stack(acts[i]).reshape(q.shape)
        assert ref.sum() > 0, f"layer {i} is silent"
        agree = float((ref == q).float().mean())
        assert agree > 0.95, f"layer {i}: {agree:.3f} of the spikes agree"
        assert abs(float(q.mean()) - float(ref.mean())) <= 0.1 * float(ref.mean()) + 0.01


def test_simulator_rejects_bad_input():
    cfg = to_speck(nn.Sequential(nn.Conv2d(1, 2, 3), neuron.IFNode()), (1, 6, 6))
    with pytest.raises(ValueError, match="non-negative integer"):
        speck.simulate(cfg, torch.full((2, 1, 1, 6, 6), 0.5))
    with pytest.raises(ValueError, match="per-sample shape"):
        speck.simulate(cfg, torch.zeros(2, 1, 1, 7, 7))
    with pytest.raises(ValueError, match="input_shape"):
        check_speck(nn.Sequential(nn.Conv2d(1, 2, 3), neuron.IFNode()), (6, 6))


def test_sum_pool_module_sums():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert SumPool2d(2)(x).flatten().tolist() == [10.0, 18.0, 42.0, 50.0]


def test_multi_step_wrappers_are_checked_like_plain_layers():
    layer = pytest.importorskip("fastspike.layer")
    net = nn.Sequential(layer.Conv2d(2, 4, 3, stride=3, step_mode="m"), neuron.IFNode(step_mode="m"))
    report = check_speck(net, (2, 9, 9))
    assert [v.constraint for v in report.violations] == ["stride"]


class _Residual(nn.Module):
    """Two cores feeding one destination (allowed on the chip) and a core with two destinations."""

    def __init__(self):
        super().__init__()
        self.c0, self.s0 = nn.Conv2d(2, 4, 3, padding=1, bias=False), neuron.IFNode(v_threshold=65 / 128)
        self.a, self.sa = nn.Conv2d(4, 4, 1, bias=False), neuron.IFNode(v_threshold=40 / 128)
        self.b = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.sb = neuron.IFNode(v_threshold=52 / 128, v_reset=None)
        self.d, self.sd = nn.Conv2d(4, 3, 3, stride=2, padding=1, bias=False), neuron.IFNode(v_threshold=78 / 128)

    def forward(self, x):
        h = self.s0(self.c0(x))
        return self.sd(self.d(self.sa(self.a(h)) + self.sb(self.b(h))))


def test_residual_network_is_accepted_and_simulated_exactly():
    g = torch.Generator().manual_seed(5)
    net = _Residual()
    with torch.no_grad():
        for conv in (net.c0, net.a, net.b, net.d):
            m = torch.randint(-40, 128, conv.weight.shape, generator=g).double()
            m.view(-1)[0] = 127
            conv.weight.copy_((m / 128).float())
    report = check_speck(net, (2, 8, 8))
    assert report.ok, str(report)
    c0, ca, cb, cd = report.cores
    assert c0.destinations == [(1, 1), (2, 1)] and sorted(cd.sources) == [(1, 1), (2, 1)]
    xs = _spikes((2, 2, 8, 8), T=10, p=0.4)
    out = speck.simulate(to_speck(net, (2, 8, 8)), xs)
    ref = _run(net, xs)
    assert ref.sum() > 0 and torch.equal(out, ref)
