"""Loihi 2 export: netx HDF5 layout, fixed-point formats, the integer simulator (exact on representable
networks, close to the float model otherwise, reproducible), and rejection of what Loihi cannot run."""
import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn

from fastspike import neuron
from fastspike.export import CubaLIFNode, load_loihi, loihi, to_loihi
from fastspike.functional import reset_net as reset_states


def _run(model, xs):
    reset_states(model)
    with torch.no_grad():
        return torch.stack([model(x) for x in xs])


def _spikes(shape, T=12, p=0.4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, *shape, generator=g) < p).float()


def _conv_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1), neuron.IFNode(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), neuron.LIFNode(tau=2.0, decay_input=False),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 10), neuron.LIFNode(tau=4.0, decay_input=True),
        nn.Linear(10, 3, bias=False), CubaLIFNode(tau_syn=2.0, tau_mem=4.0, v_threshold=0.3),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.abs_()
                m.weight.sub_(m.weight.mean() * 0.5)
                m.weight.mul_(2.0)
    return net


# ------------------------------------------------------------------------------------------------
# file layout (lava-dl netx: /layer/<i>/{type, shape, weight, neuron/{type, iDecay, vDecay, vThMant, ...}})
# ------------------------------------------------------------------------------------------------
def _netx_str(ds):
    """What netx's NetDict does for 'type' keys: first element of a 1-D dataset, decoded as ASCII."""
    value = ds[0] if len(ds.shape) > 0 else ds[()]
    return value.decode("ascii")


def test_file_layout_matches_netx(tmp_path):
    path = tmp_path / "net.net"
    qnet = to_loihi(_conv_net(), path, input_shape=(2, 8, 8))
    with h5py.File(path, "r") as f:
        assert list(f.keys()) == ["layer"]
        layers = f["layer"]
        assert sorted(layers.keys(), key=int) == [str(i) for i in range(len(layers))]
        types = [_netx_str(layers[str(i)]["type"]) for i in range(len(layers))]
        assert types == ["input", "conv", "conv", "flatten", "dense", "dense"]
        assert layers["0"]["type"].dtype == np.dtype("S10") and layers["0"]["type"].shape == (1,)
        np.testing.assert_array_equal(layers["0"]["shape"][()], [2, 8, 8])  # (C, H, W); netx reverses to XYZ
        conv = layers["1"]
        np.testing.assert_array_equal(conv["shape"][()], [4, 4, 4])
        assert conv["weight"].shape == (4, 2, 3, 3)  # PyTorch [out, in, kH, kW]
        np.testing.assert_array_equal(conv["stride"][()], [2, 2])
        np.testing.assert_array_equal(conv["padding"][()], [1, 1])
        np.testing.assert_array_equal(conv["dilation"][()], [1, 1])
        assert int(conv["groups"][()]) == 1
        dense = layers["4"]
        np.testing.assert_array_equal(dense["shape"][()], [10])
        assert dense["weight"].shape == (10, 64)
        for i, block in zip((1, 2, 4, 5), qnet.blocks):
            g = layers[str(i)]
            w = g["weight"][()]
            assert np.issubdtype(w.dtype, np.integer)
            # netx's optimize_weight_bits accepts [-256, 254]; slayer's 8-bit mantissa x 2 makes them even
            assert w.min() >= -256 and w.max() <= 254 and np.all(w % 2 == 0)
            assert np.abs(w).max() == 254  # the scale uses the full mantissa range
            n = g["neuron"]
            assert set(n.keys()) == {"type", "iDecay", "vDecay", "vThMant", "refDelay", "gradedSpike"}
            assert _netx_str(n["type"]) == "CUBA"
            assert 0 <= int(n["iDecay"][()]) <= 4096 and 0 <= int(n["vDecay"][()]) <= 4096
            assert 0 < int(n["vThMant"][()]) < 2 ** 17
            assert int(n["iDecay"][()]) == block.i_decay and int(n["vThMant"][()]) == block.vth_mant
        assert "bias" in layers["1"] and "bias" not in layers["2"]
        # IF: iDecay 4096 (current lasts one step), vDecay 0; LIF tau=2: vDecay 2048; CubaLIF: 2048 / 1024
        decays = [(int(layers[str(i)]["neuron"]["iDecay"][()]), int(layers[str(i)]["neuron"]["vDecay"][()]))
                  for i in (1, 2, 4, 5)]
        assert decays == [(4096, 0), (4096, 2048), (4096, 1024), (2048, 1024)]


def test_load_round_trip(tmp_path):
    path = tmp_path / "net.net"
    qnet = to_loihi(_conv_net(), path, input_shape=(2, 8, 8))
    back = load_loihi(path)
    assert back.input_shape == (2, 8, 8)
    for a, b in zip(qnet.blocks, back.blocks):
        np.testing.assert_array_equal(a.weight, b.weight)
        assert (a.kind, a.shape, a.i_decay, a.v_decay, a.vth_mant, a.stride, a.padding, a.flatten_before) == \
            (b.kind, b.shape, b.i_decay, b.v_decay, b.vth_mant, b.stride, b.padding, b.flatten_before)
        assert (a.bias is None) == (b.bias is None)


# ------------------------------------------------------------------------------------------------
# simulator
# ------------------------------------------------------------------------------------------------
def test_simulator_exact_on_representable_if_network(tmp_path):
    """Weights that are multiples of max|W| / 127 quantize exactly; thresholds between representable sums
    avoid Loihi's '>' vs fastspike's '>=': the integer simulator then equals the float model spike for spike."""
    g = torch.Generator().manual_seed(2)
    net = nn.Sequential(nn.Linear(20, 12, bias=False), neuron.IFNode(v_threshold=1.005),
                        nn.Linear(12, 5, bias=False), neuron.IFNode(v_threshold=0.505))
    with torch.no_grad():
        for lin in (net[0], net[2]):
            m = torch.randint(-60, 128, lin.weight.shape, generator=g).double()
            m.view(-1)[0] = 127
            lin.weight.copy_((m * 0.01).float())
    xs = _spikes((4, 20), T=16, p=0.5)
    qnet = to_loihi(net, tmp_path / "if.net")
    out = loihi.simulate(tmp_path / "if.net", xs)
    ref = _run(net, xs)
    assert ref.sum() > 10 and torch.equal(out, ref)
    assert qnet.blocks[0].vth_mant == 201  # 1.005 * (254 / 1.27) = 201


def test_simulator_close_to_float_model_and_reproducible(tmp_path):
    net = _conv_net()
    path = tmp_path / "net.net"
    to_loihi(net, path, input_shape=(2, 8, 8))
    xs = _spikes((4, 2, 8, 8), T=16)
    out1, layers1, _ = loihi.simulate(path, xs, return_all=True)
    out2, layers2, _ = loihi.simulate(path, xs, return_all=True)
    for a, b in zip(layers1, layers2):
        assert torch.equal(a, b)
    # float model, every neuron layer
    acts = {}
    hooks = [net[i].register_forward_hook(lambda m, a, o, i=i: acts.setdefault(i, []).append(o)) for i in (1, 3, 6, 8)]
    _run(net, xs)
    for h in hooks:
        h.remove()
    for i, q in zip((1, 3, 6, 8), layers1):
        ref = torch.stack(acts[i])
        assert ref.sum() > 0, f"layer {i} is silent: the comparison would prove nothing"
        agree = float((ref == q).float().mean())
        rate_ref, rate_q = float(ref.mean()), float(q.mean())
        assert agree > 0.95, f"layer {i}: only {agree:.3f} of the spikes agree"
        assert abs(rate_q - rate_ref) <= 0.1 * rate_ref + 0.01, f"layer {i}: rate {rate_q:.4f} vs {rate_ref:.4f}"


def test_simulator_synaptic_delay_shifts_by_one_step_per_block(tmp_path):
    net = nn.Sequential(nn.Linear(6, 4, bias=False), neuron.IFNode(v_threshold=0.5), nn.Linear(4, 3, bias=False),
                        neuron.IFNode(v_threshold=0.5))  # no bias: with zero input the blocks stay silent
    with torch.no_grad():
        net[0].weight.abs_()
        net[2].weight.abs_()
    to_loihi(net, tmp_path / "d.net")
    xs = torch.cat([_spikes((2, 6), T=10, p=0.6), torch.zeros(2, 2, 6)])
    plain = loihi.simulate(tmp_path / "d.net", xs)
    delayed = loihi.simulate(tmp_path / "d.net", xs, synaptic_delay=True)
    assert plain.sum() > 0
    assert torch.equal(delayed[2:], plain[:-2]) and delayed[:2].sum() == 0


def test_integer_arithmetic_matches_lava_rules():
    # decay rounds toward zero in sign-magnitude; threshold compares with '>' after a 6-bit shift
    x = torch.tensor([-7, -1, 0, 1, 7, 4097], dtype=torch.int64)
    assert loihi._decay(x, 2048).tolist() == [-3, 0, 0, 0, 3, 2048]
    assert loihi._decay(x, 4096).tolist() == [0] * 6
    blk = loihi.LoihiBlock("dense", np.array([[2]], dtype=np.int32), (1,), 4096, 0, 2)
    net = loihi.LoihiNetwork((1,), [blk])
    # a = 2 per input spike -> u = 128 -> v accumulates 128 per step; threshold 2 << 6 = 128, fires when v > 128
    out = loihi.simulate(net, torch.ones(4, 1, 1))
    assert out[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]


# ------------------------------------------------------------------------------------------------
# rejected models and bad input
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layers,match", [
    ([nn.Linear(4, 3), neuron.IFNode(v_reset=None)], "neuron '1' uses a soft reset"),
    ([nn.Linear(4, 3), neuron.LIFNode(v_reset=0.5)], "v_reset=0.5"),
    ([nn.Linear(4, 3), nn.Linear(3, 3), neuron.IFNode()], "layer '1' follows layer '0' without a neuron"),
    ([nn.Linear(4, 3)], "ends with synapse layer '0'"),
    ([nn.Linear(4, 3), neuron.IFNode(), nn.BatchNorm1d(3)], r"layer '2' \(BatchNorm1d\)"),
])
def test_rejects_unsupported_models(tmp_path, layers, match):
    with pytest.raises(ValueError, match=match):
        to_loihi(nn.Sequential(*layers), tmp_path / "x.net")


def test_rejects_pooling_and_missing_input_shape(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), neuron.IFNode(), nn.AvgPool2d(2))
    with pytest.raises(ValueError, match=r"pooling layer '2' \(AvgPool2d\)"):
        to_loihi(net, tmp_path / "x.net", input_shape=(1, 6, 6))
    with pytest.raises(ValueError, match="input_shape"):
        to_loihi(net, tmp_path / "x.net")


def test_rejects_threshold_beyond_17_bits(tmp_path):
    net = nn.Sequential(nn.Linear(4, 3), neuron.IFNode(v_threshold=5000.0))
    with pytest.raises(ValueError, match="17-bit vThMant"):
        to_loihi(net, tmp_path / "x.net")


def test_simulate_rejects_bad_input(tmp_path):
    net = nn.Sequential(nn.Linear(4, 3), neuron.IFNode())
    to_loihi(net, tmp_path / "x.net")
    with pytest.raises(ValueError, match="binary"):
        loihi.simulate(tmp_path / "x.net", torch.full((2, 1, 4), 0.5))
    with pytest.raises(ValueError, match="per-sample shape"):
        loihi.simulate(tmp_path / "x.net", torch.zeros(2, 1, 5))
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_group("nothing")
    with pytest.raises(ValueError, match="no /layer group"):
        load_loihi(bad)


def test_multi_step_model_exports(tmp_path):
    layer = pytest.importorskip("fastspike.layer")
    net = nn.Sequential(layer.SeqToANNContainer(nn.Linear(5, 4)), neuron.IFNode(step_mode="m"))
    q = to_loihi(net, tmp_path / "m.net")
    assert q.blocks[0].weight.shape == (4, 5)
