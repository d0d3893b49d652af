"""fastspike.nir_exchange: SpikingJelly 2.0's export_to_nir / import_from_nir names and calling convention on
fastspike's NIR exporter; the same NIR values and the same spikes as SpikingJelly's exchange, both directions."""
import numpy as np
import pytest
import torch
import torch.nn as nn

nir = pytest.importorskip("nir")

from fastspike import functional, layer, neuron, nir_exchange  # noqa: E402

DT = 1e-4


def _net(lib_neuron, lib_layer):
    torch.manual_seed(0)
    net = nn.Sequential(lib_layer.Conv2d(1, 4, 3, padding=1), lib_neuron.IFNode(v_threshold=0.6),
                        lib_layer.AvgPool2d(2), lib_layer.Flatten(), lib_layer.Linear(4 * 3 * 3, 6),
                        lib_neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=0.4),
                        lib_layer.Linear(6, 3, bias=False), lib_neuron.LIFNode(tau=3.0, v_threshold=0.2))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.abs_().mul_(1.5)
    return net


def _spikes(T=10, n=3):
    return (torch.rand(T, n, 1, 6, 6, generator=torch.Generator().manual_seed(1)) < 0.5).float()


def _run_stateful(model, xs):
    state, outs = None, []
    with torch.no_grad():
        for x in xs:
            out, state = model(x, state)
            outs.append(out)
    return torch.stack(outs)


def _values(graph):
    """(type, sorted (field, array)) per node in edge order, names left out."""
    order, seen = [], set()
    for a, b in graph.edges:
        for k in (a, b):
            if k not in seen:
                seen.add(k)
                order.append(k)
    out = []
    for k in order:
        node = graph.nodes[k]
        if isinstance(node, (nir.Input, nir.Output)):
            continue
        fields = {f: np.asarray(getattr(node, f), dtype=np.float64) for f in
                  ("weight", "bias", "tau", "r", "v_leak", "v_threshold", "v_reset", "stride", "padding", "kernel_size",
                   "start_dim", "end_dim") if getattr(node, f, None) is not None}
        if isinstance(node, nir.Flatten):  # -1 and the last dim are the same flatten
            rank = len(np.asarray(node.input_type["input"]))
            fields = {f: v % rank if f.endswith("_dim") else v for f, v in fields.items()}
        out.append((type(node).__name__, fields))
    return out


@pytest.mark.peers
def test_export_gives_spikingjelly_values_and_both_importers_the_same_spikes(tmp_path):
    sjx = pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    from spikingjelly.activation_based import layer as sj_layer, neuron as sj_neuron

    ours_net, sj_net = _net(neuron, layer), _net(sj_neuron, sj_layer)
    sj_net.load_state_dict(ours_net.state_dict())
    x = _spikes()
    g_ours = nir_exchange.export_to_nir(ours_net, x[0], save_path=tmp_path / "ours.nir", dt=DT)
    g_sj = sjx.export_to_nir(sj_net, x[0], dt=DT)
    assert (tmp_path / "ours.nir").is_file()
    vo, vs = _values(g_ours), _values(g_sj)
    assert [t for t, _ in vo] == [t for t, _ in vs]
    for (t, fo), (_, fs) in zip(vo, vs):
        for f in fs:
            np.testing.assert_allclose(fo[f], fs[f], rtol=1e-6, err_msg=f"{t}.{f}")
    # every importer on every graph: the same spikes as the fastspike model
    functional.reset_net(ours_net)
    with torch.no_grad():
        ref = torch.stack([ours_net(xt) for xt in x])
    assert ref.sum() > 0
    for graph in (g_ours, g_sj, str(tmp_path / "ours.nir")):
        mine = nir_exchange.import_from_nir(graph, dt=DT)
        assert torch.equal(_run_stateful(mine, x), ref)
        if not isinstance(graph, str):
            theirs = sjx.import_from_nir(graph, dt=DT)
            assert torch.equal(_run_stateful(theirs, x), ref)


def test_stateful_calling_convention_and_step_modes(tmp_path):
    net = _net(neuron, layer)
    x = _spikes()
    model = nir_exchange.import_from_nir(nir_exchange.export_to_nir(net, x[0], dt=DT), dt=DT)
    y = _run_stateful(model, x)
    # state=None restarts: the first step again
    out, state = model(x[0])
    assert torch.equal(out, y[0]) and set(state) == {"1", "5", "7"}
    # a saved state resumes where it was, also after other calls
    state = None
    with torch.no_grad():
        for t in range(3):
            _, state = model(x[t], state)
        first, _ = model(x[3], state)
        model(x[5])
        again, _ = model(x[3], state)
    assert torch.equal(first, y[3]) and torch.equal(again, y[3])
    # multi-step import
    seq = nir_exchange.import_from_nir(nir_exchange.export_to_nir(net, x[0], dt=DT), dt=DT, step_mode="m")
    out, _ = seq(x)
    assert torch.equal(out, y)
    functional.set_step_mode(seq, "s")
    functional.reset_net(seq)
    assert torch.equal(_run_stateful(seq, x), y)
    with pytest.raises(TypeError, match="state must be None or the dict"):
        model(x[0], state=[1])
    with pytest.raises(ValueError, match="dt must be a positive number"):
        nir_exchange.export_to_nir(net, x[0], dt=0)
    with pytest.raises(ValueError, match="step_mode must be 's' or 'm'"):
        nir_exchange.import_from_nir(nir_exchange.export_to_nir(net, x[0]), step_mode="x")


@pytest.mark.peers
def test_signatures_match_spikingjelly():
    import inspect

    sjx = pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    for name in sjx.__dict__.get("__all__", ["export_to_nir", "import_from_nir"]):
        pa = inspect.signature(getattr(nir_exchange, name)).parameters
        pb = inspect.signature(getattr(sjx, name)).parameters
        assert [(k, v.default) for k, v in pa.items()] == [(k, v.default) for k, v in pb.items()], name
