"""fastspike.lava_exchange with lava-dl present: ``lava_exchange.slayer`` and the lava-dl builders, run against a
stand-in ``lava.lib.dl.slayer`` (lava-dl needs Python < 3.11 and is not installed here). The stand-in records how
each slayer object is constructed and holds weight tensors of slayer's shapes (a Conv3d-style
``[out, in / groups, kh, kw, 1]``); SpikingJelly's own lava_exchange is loaded against the same stand-in and must
make the same calls and write the same weights."""
import importlib.util
import sys
import types

import pytest
import torch
import torch.nn as nn

from fastspike import lava_exchange as L, neuron


class _Made:
    """One slayer object: what it was built from, plus the attributes the builders write to."""

    def __init__(self, log, kind, args, kwargs):
        self.kind, self.args, self.kwargs = kind, args, kwargs
        log.append(self)

    def key(self):
        return self.kind, _plain(self.args), _plain(self.kwargs)


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return tuple(_plain(x) for x in v)
    if isinstance(v, torch.Tensor):
        return ("tensor", tuple(v.shape), v.tolist())
    return v


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _fake_slayer(log):
    """A module tree ``lava.lib.dl.slayer`` with neuron.cuba.Neuron, synapse.Dense/Conv/Pool and
    block.cuba.Dense/Conv/Pool/Flatten."""
    def dense_weight(i, o):
        return torch.zeros(o, i, 1, 1, 1)

    def conv_weight(kw):
        kh, kwid = _pair(kw["kernel_size"])
        return torch.zeros(kw["out_features"], kw["in_features"] // kw.get("groups", 1), kh, kwid, 1)

    def maker(kind, weight=None, block=False):
        def make(*args, **kwargs):
            obj = _Made(log, kind, args, kwargs)
            if weight is not None:
                w = weight(args[1:] if block else args, kwargs)
                target = types.SimpleNamespace(weight=nn.Parameter(w)) if block else obj
                if block:
                    obj.synapse = target
                else:
                    obj.weight = nn.Parameter(w)
            return obj
        return make

    def dense_w(args, kwargs):
        return dense_weight(*args[:2])

    def conv_w(args, kwargs):
        return conv_weight(kwargs)

    slayer = types.ModuleType("lava.lib.dl.slayer")
    slayer.neuron = types.SimpleNamespace(cuba=types.SimpleNamespace(Neuron=maker("neuron.cuba.Neuron")))
    slayer.synapse = types.SimpleNamespace(Dense=maker("synapse.Dense", dense_w),
                                           Conv=maker("synapse.Conv", conv_w),
                                           Pool=maker("synapse.Pool"))
    slayer.block = types.SimpleNamespace(cuba=types.SimpleNamespace(
        Dense=maker("block.cuba.Dense", dense_w, block=True), Conv=maker("block.cuba.Conv", conv_w, block=True),
        Pool=maker("block.cuba.Pool"), Flatten=maker("block.cuba.Flatten")))
    return slayer


@pytest.fixture
def fake_lava(monkeypatch):
    log = []
    slayer = _fake_slayer(log)
    lava, lib, dl = (types.ModuleType(n) for n in ("lava", "lava.lib", "lava.lib.dl"))
    lava.lib, lib.dl, dl.slayer = lib, dl, slayer
    for name, mod in (("lava", lava), ("lava.lib", lib), ("lava.lib.dl", dl), ("lava.lib.dl.slayer", slayer)):
        monkeypatch.setitem(sys.modules, name, mod)
    return slayer, log


def _sj_lava_exchange_against(monkeypatch):
    """SpikingJelly's lava_exchange source loaded as a separate module while the stand-in is importable, so its
    lava-dl branch is defined; the real ``spikingjelly.activation_based.lava_exchange`` is left as it was."""
    real = pytest.importorskip("spikingjelly.activation_based.lava_exchange")
    name = "spikingjelly.activation_based._lava_exchange_with_stand_in"
    spec = importlib.util.spec_from_file_location(name, real.__file__)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    assert hasattr(mod, "to_lava_blocks"), "SpikingJelly did not take its lava-dl branch with the stand-in"
    return mod


def test_slayer_is_lava_dl_module_when_installed(fake_lava):
    slayer, _ = fake_lava
    assert L.slayer is slayer
    from fastspike.lava_exchange import slayer as imported
    assert imported is slayer


def test_slayer_without_lava_dl_is_an_attribute_error_naming_lava_dl(monkeypatch):
    monkeypatch.setitem(sys.modules, "lava", None)  # makes `import lava...` raise ImportError
    assert not hasattr(L, "slayer")
    with pytest.raises(AttributeError, match="needs lava-dl"):
        L.slayer
    with pytest.raises(ImportError):
        from fastspike.lava_exchange import slayer  # noqa: F401
    with pytest.raises(AttributeError, match="has no attribute 'not_a_name'"):
        L.not_a_name


def _layers():
    torch.manual_seed(0)
    fc = nn.Linear(6, 5, bias=False)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2, bias=False)
    pool = nn.AvgPool2d(2, 2)
    return fc, conv, pool


def _calls(mod, neurons, log, quantize):
    """Every builder once, on fresh copies of the same layers and the framework's own neurons; the records and
    weights they leave."""
    fc, conv, pool = _layers()
    lif, if_ = neurons.LIFNode(tau=4.0, decay_input=False, v_reset=0.0), neurons.IFNode(v_reset=0.0)
    del log[:]
    made = [mod.to_lava_neuron(lif), mod.to_lava_neuron(if_), mod.linear_to_lava_synapse_dense(fc),
            mod.conv2d_to_lava_synapse_conv(conv), mod.avgpool2d_to_lava_synapse_pool(pool),
            mod.to_lava_block_dense(fc, lif, quantize), mod.to_lava_block_conv(conv, if_, quantize),
            mod.to_lava_block_pool(pool, if_, quantize), mod.to_lava_block_flatten(nn.Flatten())]
    # no pooling here: SpikingJelly 2.0.0's to_lava_blocks reads `kernel_size` from the layer after a pool's neuron
    # (a Flatten or Linear there raises AttributeError); fastspike's pool rule is tested on its own below
    fc2 = nn.Linear(6 * 2 * 2, 3, bias=False)
    net = nn.Sequential(conv, neurons.IFNode(v_reset=0.0), nn.Flatten(), fc2,
                        neurons.LIFNode(tau=2.0, decay_input=False, v_reset=0.0))
    made += mod.to_lava_blocks(net)
    weights = [w.weight.detach().clone() for m in made
               for w in ((m.synapse,) if hasattr(m, "synapse") else (m,) if hasattr(m, "weight") else ())]
    return [m.key() for m in log], weights, made


@pytest.mark.peers
@pytest.mark.parametrize("quantize", [True, False])
def test_builders_make_spikingjelly_calls_and_weights(fake_lava, monkeypatch, quantize):
    _, log = fake_lava
    sj = _sj_lava_exchange_against(monkeypatch)
    from spikingjelly.activation_based import neuron as sj_neuron
    ours, our_w, made = _calls(L, neuron, log, quantize)
    theirs, their_w, _ = _calls(sj, sj_neuron, log, quantize)
    assert ours == theirs
    assert len(our_w) == len(their_w) == 6  # 2 synapses, 2 blocks, 2 in to_lava_blocks
    for a, b in zip(our_w, their_w):
        assert torch.equal(a, b)
    # the weights really were written (not the stand-in's zeros), in slayer's layout
    fc, conv, _ = _layers()
    assert torch.equal(our_w[0][:, :, 0, 0, 0], fc.weight)
    assert torch.equal(our_w[1][..., 0], conv.weight)
    kinds = [m.kind for m in made]
    assert kinds[:9] == ["neuron.cuba.Neuron", "neuron.cuba.Neuron", "synapse.Dense", "synapse.Conv", "synapse.Pool",
                         "block.cuba.Dense", "block.cuba.Conv", "block.cuba.Pool", "block.cuba.Flatten"]
    assert ("pre_hook_fx" in made[5].kwargs) is (not quantize)


def test_blocks_use_the_neuron_parameters(fake_lava):
    _, log = fake_lava
    fc, _, _ = _layers()
    lif = neuron.LIFNode(tau=4.0, decay_input=False, v_reset=0.0)
    block = L.to_lava_block_dense(fc, lif)
    assert block.kind == "block.cuba.Dense" and block.args[1:] == (6, 5)
    assert block.args[0] == L.to_lava_neuron_param_dict(lif)
    assert block.kwargs == {"delay_shift": False}
    # a Linear after an average pool gets its weights divided by the pool area (Lava's pooling sums)
    _, conv, pool = _layers()
    fc2 = nn.Linear(24, 3, bias=False)
    w = fc2.weight.detach().clone()
    blocks = L.to_lava_blocks([conv, neuron.IFNode(v_reset=0.0), pool, neuron.IFNode(v_reset=0.0), nn.Flatten(), fc2,
                               neuron.IFNode(v_reset=0.0)])
    assert [b.kind for b in blocks] == ["block.cuba.Conv", "block.cuba.Pool", "block.cuba.Flatten", "block.cuba.Dense"]
    assert torch.allclose(blocks[-1].synapse.weight[:, :, 0, 0, 0], w / 4)
