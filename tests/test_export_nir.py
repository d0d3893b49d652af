"""NIR export/import: mapping values, exact round trips (sequential, residual, multi-step, Conv1d, file),
interop with snnTorch and Norse (with their documented deviations), and clear errors."""
import logging
import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn

nir = pytest.importorskip("nir")

from fastspike import neuron  # noqa: E402
from fastspike.export import CubaLIFNode, Scale, SumPool2d, from_nir, to_nir  # noqa: E402
from fastspike.functional import reset_net as reset_states  # noqa: E402
from fastspike.export.nir import correct_norse_tau  # noqa: E402

DT = 1e-3


def _run(model, xs):
    reset_states(model)
    with torch.no_grad():
        return torch.stack([model(x) for x in xs])


def _spikes(shape, T=8, p=0.5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, *shape, generator=g) < p).float()


def _scale_(model, k):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.mul_(k)


def _excite_(model, k, f=0.5):
    """Mostly positive weights, so that every layer of a small random network spikes."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.abs_()
                m.weight.sub_(m.weight.mean() * f)
                m.weight.mul_(k)


def _conv_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), neuron.LIFNode(tau=2.0, v_reset=None),
        SumPool2d(2), nn.Conv2d(6, 6, 3, padding=1, bias=False), neuron.IFNode(v_threshold=1.5, v_reset=0.0),
        nn.AvgPool2d(2), nn.Flatten(), nn.Dropout(0.5),
        nn.Linear(24, 10), neuron.LIFNode(tau=3.0, decay_input=False, v_reset=-0.2),
        Scale(torch.linspace(0.5, 1.5, 10)), neuron.ParametricLIFNode(init_tau=2.5),
        nn.Linear(10, 4, bias=False), CubaLIFNode(tau_syn=2.0, tau_mem=4.0, v_threshold=0.5, v_reset=None),
    )
    _scale_(net, 3.0)
    _excite_(net, 2.0)
    return net


def test_mapping_values_follow_the_documented_ode():
    net = _conv_net()
    g = to_nir(net, torch.zeros(1, 2, 8, 8), dt=DT)
    lif, iff, lif2, plif, cuba = g.nodes["1"], g.nodes["4"], g.nodes["9"], g.nodes["11"], g.nodes["13"]
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (6, 8, 8)
    np.testing.assert_allclose(lif.tau, 2.0 * DT, rtol=1e-6)
    np.testing.assert_array_equal(lif.r, 1.0)
    np.testing.assert_array_equal(lif.v_leak, 0.0)  # soft reset leaks to 0
    assert lif.metadata["reset"] == "subtract"
    assert isinstance(iff, nir.IF)
    np.testing.assert_allclose(iff.r * DT, 1.0, rtol=1e-6)
    np.testing.assert_array_equal(iff.v_threshold, 1.5)
    assert "reset" not in iff.metadata
    np.testing.assert_allclose(lif2.tau, 3.0 * DT, rtol=1e-6)
    np.testing.assert_allclose(lif2.r, 3.0)  # decay_input=False: r = tau in steps
    np.testing.assert_allclose(lif2.v_leak, -0.2)
    np.testing.assert_allclose(lif2.v_reset, -0.2)
    np.testing.assert_allclose(plif.tau, 2.5 * DT, rtol=1e-5)
    assert isinstance(cuba, nir.CubaLIF)
    np.testing.assert_allclose(cuba.tau_syn, 2.0 * DT, rtol=1e-6)
    np.testing.assert_allclose(cuba.tau_mem, 4.0 * DT, rtol=1e-6)
    assert isinstance(g.nodes["2"], nir.SumPool2d) and isinstance(g.nodes["5"], nir.AvgPool2d)
    assert isinstance(g.nodes["3"], nir.Conv2d) and isinstance(g.nodes["8"], nir.Affine)
    assert isinstance(g.nodes["12"], nir.Linear) and isinstance(g.nodes["10"], nir.Scale)
    assert "7" not in g.nodes  # dropout is skipped
    assert ("6", "8") in g.edges
    flat = g.nodes["6"]
    assert (flat.start_dim, flat.end_dim) == (0, 2)
    np.testing.assert_array_equal(g.nodes["input"].input_type["input"], [2, 8, 8])


def test_round_trip_through_file_is_exact(tmp_path):
    net = _conv_net()
    xs = _spikes((3, 2, 8, 8), T=10)
    path = tmp_path / "net.nir"
    to_nir(net, xs[0], dt=DT, path=path)
    back = from_nir(path, dt=DT)
    counts = {}
    hooks = [back.node(n).register_forward_hook(
        lambda m, a, o, n=n: counts.__setitem__(n, counts.get(n, 0.0) + float(o.sum())))
        for n in ("1", "4", "9", "11", "13")]
    ref, out = _run(net, xs), _run(back, xs)
    for h in hooks:
        h.remove()
    for name in ("1", "4", "9", "11", "13"):
        assert counts[name] > 0, f"layer {name} is silent: the test would prove nothing"
    assert torch.equal(ref, out)
    assert isinstance(back.node("1"), neuron.LIFNode) and back.node("1").v_reset is None
    assert back.node("9").decay_input is False and back.node("9").tau == 3.0
    assert isinstance(back.node("2"), SumPool2d)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.sn1 = neuron.IFNode()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.sn2 = neuron.LIFNode(tau=2.0)
        self.conv3 = nn.Conv2d(4, 4, 1)
        self.sn3 = neuron.IFNode(v_reset=None)

    def forward(self, x):
        a = self.sn1(self.conv1(x))
        b = self.sn2(self.conv2(a))
        return self.sn3(self.conv3(a) + b)


def test_residual_graph_round_trip():
    torch.manual_seed(3)
    net = _Residual()
    _scale_(net, 3.0)
    xs = _spikes((2, 3, 6, 6), T=8)
    g = to_nir(net, xs[0], dt=DT)
    assert ("sn1", "conv2") in g.edges and ("sn1", "conv3") in g.edges
    assert ("conv3", "sn3") in g.edges and ("sn2", "sn3") in g.edges
    back = from_nir(g, dt=DT)
    ref, out = _run(net, xs), _run(back, xs)
    assert ref.sum() > 0 and torch.equal(ref, out)


def test_conv1d_and_flatten_between_modules_round_trip():
    torch.manual_seed(4)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 3, 3, stride=2, padding=1)
            self.sn = neuron.IFNode()
            self.fc = nn.Linear(3 * 5, 4)
            self.sn2 = neuron.LIFNode(tau=1.5, v_reset=None)

        def forward(self, x):
            y = self.sn(self.conv(x))
            return self.sn2(self.fc(y.view(y.shape[0], -1)))  # a reshape outside a module -> Flatten node

    net = Net()
    _scale_(net, 3.0)
    xs = _spikes((2, 2, 10), T=8)
    g = to_nir(net, xs[0], dt=DT)
    assert isinstance(g.nodes["conv"], nir.Conv1d)
    assert any(isinstance(n, nir.Flatten) for n in g.nodes.values())
    back = from_nir(g, dt=DT)
    ref, out = _run(net, xs), _run(back, xs)
    assert ref.sum() > 0 and torch.equal(ref, out)


def test_multi_step_seq_to_ann_container_round_trip():
    layer = pytest.importorskip("fastspike.layer")
    from fastspike import functional

    torch.manual_seed(5)
    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(2, 4, 3, padding=1), nn.AvgPool2d(2)),
        neuron.LIFNode(tau=2.0, step_mode="m"),
        layer.SeqToANNContainer(nn.Flatten(), nn.Linear(4 * 4 * 4, 5)),
        neuron.IFNode(step_mode="m"),
    )
    _scale_(net, 4.0)
    x_seq = _spikes((2, 2, 8, 8), T=6)
    g = to_nir(net, x_seq, dt=DT)
    np.testing.assert_array_equal(g.nodes["input"].input_type["input"], [2, 8, 8])
    back = from_nir(g, dt=DT, step_mode="m")
    functional.reset_net(net)
    with torch.no_grad():
        ref = net(x_seq)
        out = back(x_seq)
    assert ref.sum() > 0 and torch.equal(ref, out)
    # the imported model also runs step by step
    back.step_mode = "s"
    assert torch.equal(_run(back, x_seq), ref)


def test_export_does_not_touch_model_state():
    net = nn.Sequential(nn.Linear(3, 2), neuron.IFNode())
    net(torch.ones(1, 3))
    v = net[1].v.clone()
    to_nir(net, torch.ones(4, 3))
    assert torch.equal(net[1].v, v)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
def test_unsupported_layer_is_named():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), neuron.IFNode())
    with pytest.raises(ValueError, match=r"layer '1' \(MaxPool2d\)"):
        to_nir(net, torch.zeros(1, 1, 6, 6))
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), neuron.IFNode())
    with pytest.raises(ValueError, match="'1' is a BatchNorm.*fold_batchnorm"):
        to_nir(net, torch.zeros(1, 1, 6, 6))


def test_unsupported_tensor_op_is_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return torch.sigmoid(self.fc(x))

    with pytest.raises(ValueError, match="'sigmoid'"):
        to_nir(Net(), torch.zeros(2, 3))


def test_bad_dt():
    with pytest.raises(ValueError, match="dt"):
        to_nir(nn.Linear(2, 2), torch.zeros(1, 2), dt=0)


def test_malformed_files_and_unsupported_nodes(tmp_path):
    bad = tmp_path / "garbage.nir"
    bad.write_bytes(b"this is not hdf5")
    with pytest.raises(ValueError, match="cannot read"):
        from_nir(bad)
    with pytest.raises(FileNotFoundError):
        from_nir(tmp_path / "missing.nir")
    # a well-formed file with a node type NIR itself does not know
    odd = tmp_path / "odd.nir"
    with h5py.File(odd, "w") as f:
        f.create_dataset("version", data="1.0", dtype=h5py.string_dtype())
        node = f.create_group("node")
        node.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
        nodes = node.create_group("nodes")
        w = nodes.create_group("weird")
        w.create_dataset("type", data="Gizmo", dtype=h5py.string_dtype())
        node.create_dataset("edges", data=np.zeros((0, 2), dtype="S1"))
    with pytest.raises(ValueError, match="odd.nir"):
        from_nir(odd)
    # a node type NIR knows but fastspike does not import: named
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "d": nir.Delay(np.ones(3)),
                            "output": nir.Output(np.array([3]))},
                     edges=[("input", "d"), ("d", "output")], type_check=False)
    with pytest.raises(ValueError, match="node 'd' has type Delay"):
        from_nir(g)
    # heterogeneous thresholds on an IF layer: named
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])),
                            "sn": nir.IF(r=np.ones(2) / DT, v_threshold=np.array([1.0, 2.0])),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "sn"), ("sn", "output")], type_check=False)
    with pytest.raises(ValueError, match="node 'sn' has a different 'v_threshold'"):
        from_nir(g)
    # a cycle
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "a": nir.Linear(np.eye(2)),
                            "b": nir.Linear(np.eye(2)), "output": nir.Output(np.array([2]))},
                     edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")], type_check=False)
    with pytest.raises(ValueError, match="cycle"):
        from_nir(g)
    # an edge to a node that does not exist
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([2])), "a": nir.Linear(np.eye(2)),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "a"), ("a", "ghost"), ("a", "output")], type_check=False)
    with pytest.raises(ValueError, match="'ghost'"):
        from_nir(g)
    with pytest.raises(TypeError):
        from_nir(42)


def test_if_gain_and_lif_r_are_folded_into_the_threshold():
    # IF with r*dt = 0.5 fires like IF with r*dt = 1 and twice the threshold
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])),
                            "sn": nir.IF(r=np.full(3, 0.5 / DT), v_threshold=np.ones(3)),
                            "output": nir.Output(np.array([3]))},
                     edges=[("input", "sn"), ("sn", "output")], type_check=False)
    m = from_nir(g, dt=DT)
    assert m.node("sn").v_threshold == 2.0
    xs = torch.full((4, 1, 3), 1.0)
    assert _run(m, xs)[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]


# ------------------------------------------------------------------------------------------------
# interop
# ------------------------------------------------------------------------------------------------
def _snn_leaky(shape, beta, **kw):
    snn = pytest.importorskip("snntorch")
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.ones(shape), init_hidden=True,
                     reset_mechanism="zero", reset_delay=False, **kw)


def test_snntorch_to_fastspike_same_spikes():
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(6)
    snet = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _snn_leaky((4, 8, 8), 0.5), nn.AvgPool2d(2), nn.Flatten(),
                         nn.Linear(64, 5), _snn_leaky((5,), 0.5, output=True))
    _scale_(snet, 4.0)
    xs = _spikes((3, 2, 8, 8), T=8)
    g = export_to_nir(snet, xs[0], ignore_dims=[0])
    # snnTorch writes tau = dt/(1-beta) and r = tau/dt with its fixed dt = 1e-4
    back = from_nir(g, dt=1e-4)
    assert back.node("1").decay_input is False and math.isclose(back.node("1").tau, 2.0, rel_tol=1e-6)
    for m in snet.modules():
        if isinstance(m, snn.Leaky):
            m.reset_hidden()
    with torch.no_grad():
        ref = torch.stack([snet(x)[0] for x in xs])
    out = _run(back, xs)
    assert ref.sum() > 0 and torch.equal(ref, out)


def test_fastspike_to_snntorch_same_spikes():
    snn = pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    torch.manual_seed(7)
    # no Flatten: snnTorch's importer drops the batch offset of NIR's Flatten dims (see the deviations test)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), neuron.LIFNode(tau=2.0, decay_input=False),
                        nn.AvgPool2d(2), nn.Conv2d(4, 5, 3), neuron.LIFNode(tau=4.0, decay_input=True))
    _scale_(net, 4.0)
    xs = _spikes((3, 2, 8, 8), T=8)
    # snnTorch's importer assumes dt = 1e-4 (beta = 1 - dt/tau); decay_input=True (r = 1) is imported by
    # scaling snnTorch's threshold by tau, which gives the same spikes
    g = to_nir(net, xs[0], dt=1e-4)
    snet = import_from_nir(g)
    for m in snet.modules():
        if isinstance(m, snn.Leaky):
            m.reset_hidden()
    with torch.no_grad():
        out = []
        for x in xs:
            y = snet(x)
            out.append(y[0] if isinstance(y, tuple) else y)
    out = torch.stack(out)
    ref = _run(net, xs)
    assert ref.sum() > 0 and torch.equal(ref, out)


def test_snntorch_known_deviations():
    """snnTorch's exporter writes v_reset = 0 (a hard reset) even for reset_mechanism='subtract'; its
    importer maps every NIR IF node to a *leaky* Leaky(beta=0.9) and requires r == 1, and builds
    nn.Flatten(start_dim, end_dim) from NIR's batch-free dims, so it flattens the batch too."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    sub = nn.Sequential(nn.Linear(3, 2), snn.Leaky(beta=torch.full((2,), 0.5), threshold=torch.ones(2),
                                                   init_hidden=True, reset_mechanism="subtract", output=True))
    g = export_to_nir(sub, torch.zeros(1, 3), ignore_dims=[0])
    assert "reset" not in g.nodes["1"].metadata
    assert isinstance(from_nir(g, dt=1e-4).node("1"), neuron.LIFNode)
    assert from_nir(g, dt=1e-4).node("1").v_reset == 0.0  # imported as a hard reset, as written
    g_if = to_nir(nn.Sequential(nn.Linear(3, 2), neuron.IFNode()), torch.zeros(1, 3), dt=1e-4)
    with pytest.raises(AssertionError, match="r != 1"):
        import_from_nir(g_if)  # r = 1/dt for a spec-conformant IF
    g_flat = to_nir(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), torch.zeros(1, 2, 2), dt=1e-4)
    assert (g_flat.nodes["0"].start_dim, g_flat.nodes["0"].end_dim) == (0, 1)  # per-sample dims, as NIR says
    flat = [m for m in import_from_nir(g_flat).modules() if isinstance(m, nn.Flatten)][0]
    assert flat.start_dim == 0  # snnTorch: torch dim 0 is the batch
    assert from_nir(g_flat).node("0").start_dim == 1  # fastspike adds the batch offset


def test_norse_to_fastspike_with_tau_correction():
    norse = pytest.importorskip("norse.torch")
    from norse.torch.utils.export_nir import to_nir as norse_to_nir

    torch.manual_seed(8)
    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(0.5))
    nnet = norse.SequentialState(nn.Conv2d(2, 4, 3, padding=1), norse.LIFBoxCell(p), nn.Conv2d(4, 3, 3),
                                 norse.LIFBoxCell(p))
    _scale_(nnet, 4.0)
    xs = _spikes((3, 2, 8, 8), T=8)
    g = norse_to_nir(nnet, xs[0], dt=DT)
    # Norse 1.1 writes tau = dt / tau_mem_inv = dt * tau instead of tau (its issue #411): here 5e-3 ms-scale
    # times are off by a factor dt, which fastspike rejects as an unstable step ...
    np.testing.assert_allclose(float(g.nodes["1"].tau), DT * (1 / 500.0), rtol=1e-6)
    with pytest.raises(ValueError, match="tau / dt = 0.002 < 1"):
        from_nir(g, dt=DT)
    # ... and correct_norse_tau (tau <- tau / dt) restores it, after which the spikes are identical
    back = from_nir(correct_norse_tau(g, DT), dt=DT)
    assert math.isclose(back.node("1").tau, 2.0, rel_tol=1e-6)
    state, ref = None, []
    with torch.no_grad():
        for x in xs:
            y, state = nnet(x, state)
            ref.append(y)
    ref = torch.stack(ref)
    out = _run(back, xs)
    assert ref.sum() > 0 and torch.equal(ref, out)


def test_fastspike_to_norse_same_spikes(caplog):
    pytest.importorskip("norse.torch")
    from norse.torch.utils.import_nir import from_nir as norse_from_nir

    torch.manual_seed(9)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), neuron.LIFNode(tau=2.0), nn.Conv2d(4, 3, 3), neuron.IFNode())
    _scale_(net, 4.0)
    xs = _spikes((3, 2, 8, 8), T=8)
    g = to_nir(net, xs[0], dt=DT)
    with caplog.at_level(logging.WARNING):
        nm = norse_from_nir(g, dt=DT)
    # Norse integrates IF per step and ignores r (it warns that r = 1/dt is not 1): the spikes still agree
    assert any("parameter r" in r.getMessage() for r in caplog.records)
    state, out = None, []
    with torch.no_grad():
        for x in xs:
            y, state = nm(x, state)
            out.append(y)
    out = torch.stack(out)
    ref = _run(net, xs)
    assert ref.sum() > 0 and torch.equal(ref, out)


def test_norse_ignores_decay_input_false():
    """Known deviation: Norse's LIF importer ignores r, so decay_input=False (r = tau) is imported as
    decay_input=True -- the input is scaled by 1/tau in Norse."""
    pytest.importorskip("norse.torch")
    from norse.torch.utils.import_nir import from_nir as norse_from_nir

    net = nn.Sequential(nn.Linear(1, 1, bias=False), neuron.LIFNode(tau=2.0, decay_input=False))
    with torch.no_grad():
        net[0].weight.fill_(1.2)
    g = to_nir(net, torch.zeros(1, 1), dt=DT)
    nm = norse_from_nir(g, dt=DT, ignore_warnings=True)
    xs = torch.ones(3, 1, 1)
    ref = _run(net, xs)
    state, out = None, []
    with torch.no_grad():
        for x in xs:
            y, state = nm(x, state)
            out.append(y)
    assert ref[:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # fastspike: H = 1.2 every step after the reset
    assert torch.stack(out)[:, 0, 0].tolist() == [0.0, 0.0, 1.0]  # Norse: v = 0.6, 0.9, 1.05


def test_step_mode_wrappers_multi_step_round_trip():
    layer = pytest.importorskip("fastspike.layer")
    from fastspike import functional

    torch.manual_seed(10)
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m"),
        layer.AvgPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(4 * 4 * 4, 5, step_mode="m"), neuron.LIFNode(tau=2.0, v_reset=None, step_mode="m"),
    )
    _excite_(net, 3.0)
    x_seq = _spikes((2, 2, 8, 8), T=6)
    g = to_nir(net, x_seq, dt=DT)
    assert isinstance(g.nodes["3"], nir.Flatten) and (g.nodes["3"].start_dim, g.nodes["3"].end_dim) == (0, 2)
    back = from_nir(g, dt=DT, step_mode="m")
    functional.reset_net(net)
    with torch.no_grad():
        ref = net(x_seq)
        out = back(x_seq)
    assert ref.sum() > 0 and torch.equal(ref, out)


def test_cubalif_interop_with_snntorch_synaptic_both_ways():
    """snnTorch's Synaptic (syn = alpha syn + x; mem = beta mem + syn) is CubaLIF with tau_syn = 1/(1-alpha),
    tau_mem = 1/(1-beta) steps, w_in = tau_syn, r = tau_mem; exported with its dt = 1e-4."""
    snn = pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    def synaptic(shape, **kw):
        return snn.Synaptic(alpha=torch.full(shape, 0.6), beta=torch.full(shape, 0.8), threshold=torch.ones(shape),
                            init_hidden=True, reset_mechanism="zero", reset_delay=False, **kw)

    torch.manual_seed(11)
    snet = nn.Sequential(nn.Linear(6, 5), synaptic((5,)), nn.Linear(5, 4), synaptic((4,), output=True))
    _excite_(snet, 1.0, f=0.2)
    xs = _spikes((3, 6), T=12)
    back = from_nir(export_to_nir(snet, xs[0], ignore_dims=[0]), dt=1e-4)
    assert isinstance(back.node("1"), CubaLIFNode)
    torch.testing.assert_close(back.node("1").tau_syn, torch.full((5,), 2.5))
    torch.testing.assert_close(back.node("1").r, torch.full((5,), 5.0))

    def run_snn(model):
        for m in model.modules():
            if isinstance(m, snn.Synaptic):
                m.reset_hidden()
        with torch.no_grad():
            outs = [model(x) for x in xs]
        return torch.stack([o[0] if isinstance(o, tuple) else o for o in outs])

    ref = run_snn(snet)
    assert ref.sum() > 0 and torch.equal(ref, _run(back, xs))
    # and back again: fastspike's CubaLIF graph imported by snnTorch
    snet2 = import_from_nir(to_nir(back, xs[0], dt=1e-4))
    assert torch.equal(run_snn(snet2), ref)
