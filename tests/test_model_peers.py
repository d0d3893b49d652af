"""The models of SpikingJelly 2.0.0's ``activation_based.model`` added for issue 20 (MS-ResNet, MaxResNet, MA-SNN,
Att-MS-ResNet, MaxFormer, QKFormer, Spike-driven Transformer, SNASNet, SpikeDHS, the OTTT VGGs) and the
``fastspike.model`` import path.

``peers`` tests build each model in SpikingJelly and in fastspike (small widths), load SpikingJelly's state_dict
into ours (same keys, strict), run the same input and compare every neuron layer's spikes exactly, the output,
the input gradient and every parameter gradient to fp32 rounding.
"""
import types

import pytest
import torch
import torch.nn as nn

import fastspike
from fastspike import functional, model, neuron, surrogate

from helpers import DEVICE, assert_close
from test_models import _torchvision_standin

TOL = 1e-4  # deep networks: gradients accumulate rounding through many layers


@pytest.fixture(scope="module")
def sj():
    pytest.importorskip("spikingjelly")
    _torchvision_standin()
    import importlib

    from spikingjelly.activation_based import functional as sf
    from spikingjelly.activation_based import neuron as sn

    mods = {name: importlib.import_module(f"spikingjelly.activation_based.model.{name}") for name in model.SUBMODULES}
    return types.SimpleNamespace(functional=sf, neuron=sn, **mods)


def _is_neuron(m: nn.Module) -> bool:
    return type(m).__name__.endswith("Node")


def _record_spikes(net: nn.Module) -> dict:
    """Every neuron's outputs, by module name, in call order."""
    record = {}
    for name, m in net.named_modules():
        if _is_neuron(m):
            m.register_forward_hook(lambda mod, i, o, name=name: record.setdefault(name, []).append(o.detach()))
    return record


def _randomise_affine(net: nn.Module, scales=(0.6, 1.4), gain: float = 1.0) -> None:
    """Give BatchNorm scales/shifts and biases non-trivial values (several start at 0 or 1); ``scales`` bounds the
    BN scales, ``gain`` multiplies weight-standardised layers' gains (deep stacks need more drive to fire)."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("gain"):
                p.mul_(gain)
            if p.dim() != 1:
                continue
            r = torch.rand(p.shape, generator=g).to(p)
            p.copy_(scales[0] + (scales[1] - scales[0]) * r if name.endswith("weight") else 0.4 * (r - 0.5))


def _parity(name, ref, ours, x, train=True, forward=None, tol=TOL, min_active=1.0, **randomise):
    """Same weights, same input: spikes of every neuron layer equal, output and gradients close; at least
    ``min_active`` of the neuron layers emit some spikes but not only spikes (else the test shows little)."""
    forward = forward or (lambda net, inp: net(inp))
    _randomise_affine(ref, **randomise)
    ref.to(DEVICE)
    assert list(ref.state_dict()) == list(ours.state_dict()), f"{name}: state_dict keys differ"
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.to(DEVICE)
    ref.train(train)
    ours.train(train)
    spikes_r, spikes_o = _record_spikes(ref), _record_spikes(ours)
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.manual_seed(11)
    yr = forward(ref, xr)
    torch.manual_seed(11)
    yo = forward(ours, xo)
    assert spikes_r.keys() == spikes_o.keys() and spikes_o, f"{name}: neuron layers differ"
    active = 0
    for k in spikes_r:
        for a, b in zip(spikes_r[k], spikes_o[k], strict=True):
            assert torch.equal(a, b), f"{name}: spikes of {k} differ in {(a != b).sum().item()} of {a.numel()}"
        active += any(0 < float(s.mean()) < 1 for s in spikes_o[k])
    assert active >= min_active * len(spikes_o), f"{name}: only {active} of {len(spikes_o)} neuron layers fire"
    assert_close(f"{name} output", yr, yo, tol)
    g = torch.randn_like(yr)
    yr.backward(g)
    yo.backward(g)
    assert_close(f"{name} input grad", xr.grad, xo.grad, tol)
    # parameter gradients: relative to each tensor, or to the largest gradient of its module's parameters (or 1% of
    # the model's largest) where that is larger: a conv bias followed by BatchNorm has gradient 0 up to rounding
    pr, po = dict(ref.named_parameters()), dict(ours.named_parameters())

    def rms(t):
        return float(t.double().pow(2).mean().sqrt())

    largest = max(rms(p.grad) for p in pr.values() if p.grad is not None)
    for k in pr:
        gr, go = pr[k].grad, po[k].grad
        assert (gr is None) == (go is None), f"{name}: {k} has a gradient on one side only"
        if gr is None:
            continue
        owner = k.rsplit(".", 1)[0]
        siblings = [rms(p.grad) for n, p in pr.items() if n.rsplit(".", 1)[0] == owner and p.grad is not None]
        err = rms(gr - go)
        assert err <= tol * max(rms(gr), max(siblings), 1e-2 * largest), f"{name}: grad {k}: RMS error {err:.3g}, " \
            f"reference {rms(gr):.3g}, its module's largest {max(siblings):.3g}"
    return yo


def _both(sj, module, builder, *args, **kwargs):
    return getattr(getattr(sj, module), builder)(*args, **kwargs), getattr(getattr(model, module), builder)(
        *args, **kwargs)


# ------------------------------------------------------------------------------------------------ import path
def test_models_and_model_are_one_implementation():
    import fastspike.models.sew_resnet as old_path

    assert old_path is fastspike.model.sew_resnet
    for name in model.SUBMODULES:
        assert getattr(fastspike.models, name) is getattr(model, name)
    assert fastspike.models.sew_resnet18 is model.sew_resnet.sew_resnet18
    from fastspike.models.spike_dhs import SpikeDHS  # noqa: F401  (every submodule under the old name)


@pytest.mark.peers
def test_every_public_name_of_spikingjelly_model_package_exists(sj):
    import inspect

    from spikingjelly.activation_based import model as sj_model

    missing = [n for n in sj_model.__all__ if not hasattr(model, n)]
    for name in model.SUBMODULES:
        sj_mod, ours = getattr(sj, name), getattr(model, name)
        public = [n for n, o in vars(sj_mod).items() if not n.startswith("_") and not inspect.ismodule(o)
                  and getattr(o, "__module__", None) == sj_mod.__name__]
        missing += [f"{name}.{n}" for n in public + list(getattr(sj_mod, "__all__", [])) if not hasattr(ours, n)]
    assert not missing, f"missing: {missing}"


# ------------------------------------------------------------------------------------------------ structure
STRUCTURE = [
    ("ms_resnet", "ms_resnet18", {}), ("ms_resnet", "ms_resnet34", {}), ("ms_resnet", "max_resnet18", {}),
    ("masnn", "masnn_dvs128_gesture", {}), ("masnn", "att_ms_resnet18", {}),
    ("maxformer", "maxformer_10_384", {}), ("maxformer", "maxformer_cifar", {}),
    ("qkformer", "qkformer_10_384", {}), ("spike_driven_transformer", "sdt_8_384", {}),
    ("spiking_vggws_ottt", "ottt_spiking_vggws", {"neuron": True}),
    ("spiking_vggws_ottt", "ottt_spiking_vgg11", {"neuron": True}),
    ("spiking_vggws_ottt", "ottt_spiking_vgg16_ws", {"neuron": True}),
]


@pytest.mark.peers
def test_builders_have_spikingjelly_state_dict_keys_and_shapes(sj, monkeypatch):
    for fn in ("kaiming_normal_", "kaiming_uniform_", "normal_", "constant_", "trunc_normal_", "zeros_", "uniform_"):
        monkeypatch.setattr(nn.init, fn, lambda t, *a, **k: t)
    monkeypatch.setattr(torch, "empty", torch._C._VariableFunctions.empty)
    monkeypatch.setattr(torch, "empty_like", torch._C._VariableFunctions.empty_like)
    for mod, name, kw in STRUCTURE:
        kw = {"spiking_neuron": (sj.neuron.LIFNode, neuron.LIFNode)} if kw.get("neuron") else {}
        with torch.device("meta"):
            ref = getattr(getattr(sj, mod), name)(**{k: v[0] for k, v in kw.items()})
            ours = getattr(getattr(model, mod), name)(**{k: v[1] for k, v in kw.items()})
        sr, so = ref.state_dict(), ours.state_dict()
        assert list(sr) == list(so), f"{name}: keys differ: {set(sr) ^ set(so)}"
        assert all(sr[k].shape == so[k].shape for k in sr), name


# ------------------------------------------------------------------------------------------------ MS-ResNet
@pytest.mark.peers
def test_ms_resnet_matches_spikingjelly(sj):
    ref, ours = _both(sj, "ms_resnet", "ms_resnet18", T=2, num_classes=5, base_channels=8)
    assert isinstance(ours.layer1[0].spike1.surrogate_function, surrogate.Rect) and ours.layer1[0].spike1.tau == 4 / 3
    _parity("ms_resnet18", ref, ours, torch.randn(2, 3, 16, 16, device=DEVICE))


@pytest.mark.peers
def test_max_resnet_and_custom_neuron_match_spikingjelly(sj):
    kw = dict(T=2, in_channels=3, num_classes=4, layers=(2, 1, 1), stage_channels=(8, 16, 16), stem_kernel_size=3,
              stem_stride=1)
    _parity("MaxResNet", sj.ms_resnet.MaxResNet(**kw), model.ms_resnet.MaxResNet(**kw),
            torch.randn(2, 2, 3, 12, 12, device=DEVICE))
    ref = sj.ms_resnet.MSResNet(layers=(1, 1, 1), base_channels=8, num_classes=3, T=2,
                                spiking_neuron=sj.neuron.ParametricLIFNode, v_threshold=0.5)
    ours = model.ms_resnet.MSResNet(layers=(1, 1, 1), base_channels=8, num_classes=3, T=2,
                                    spiking_neuron=neuron.ParametricLIFNode, v_threshold=0.5)
    assert ours.head_lif.step_mode == "m" and "head_lif.w" in ours.state_dict()
    _parity("MSResNet PLIF", ref, ours, torch.randn(2, 3, 16, 16, device=DEVICE))


# ------------------------------------------------------------------------------------------- MA-SNN family
@pytest.mark.peers
def test_masnn_matches_spikingjelly(sj):
    kw = dict(T=4, in_channels=2, num_classes=3, input_size=(8, 8), channels=(8, 8), pools=(1, 2), fc_hidden=8,
              reduction_t=2, reduction_c=4)
    ref, ours = sj.masnn.MASNN(**kw), model.masnn.MASNN(**kw)
    assert ours.conv_blocks[0].cell.v_threshold == 0.3
    _parity("MASNN", ref, ours, torch.rand(4, 2, 2, 8, 8, device=DEVICE), scales=(1.0, 3.0))
    with pytest.raises(ValueError, match="T=4"):
        ours(torch.rand(3, 2, 2, 8, 8, device=DEVICE))


@pytest.mark.peers
def test_att_ms_resnet_matches_spikingjelly(sj):
    kw = dict(T=2, num_classes=5, layers=(1, 1, 1), base_channels=8, reduction_c=4)
    ref, ours = sj.masnn.AttMSResNet(**kw), model.masnn.AttMSResNet(**kw)
    assert isinstance(ours.head, nn.Linear) and ours.layer2[0].downsample[0].ceil_mode
    _parity("AttMSResNet", ref, ours, torch.randn(2, 3, 32, 32, device=DEVICE), train=True,
            forward=lambda net, x: net(x) if net.training else net(x))


# ------------------------------------------------------------------------------------------ transformers
@pytest.mark.peers
@pytest.mark.parametrize("cifar", [False, True])
def test_maxformer_matches_spikingjelly(sj, cifar):
    kw = dict(T=2, num_classes=5, embed_dims=64 if cifar else 32, depths=(1, 1, 1), mlp_ratio=2.0, cifar=cifar)
    ref, ours = sj.maxformer.MaxFormer(**kw), model.maxformer.MaxFormer(**kw)
    _parity(f"MaxFormer cifar={cifar}", ref, ours, torch.randn(2, 3, 16, 16, device=DEVICE) * 2, min_active=0.8)


@pytest.mark.peers
@pytest.mark.parametrize("qka_type", ["token", "channel"])
def test_qkformer_matches_spikingjelly(sj, qka_type):
    kw = dict(T=2, num_classes=5, embed_dims=32, num_heads=(2, 2, 2), depths=(1, 1, 1), mlp_ratio=2.0,
              qka_type=qka_type)
    ref, ours = sj.qkformer.QKFormer(**kw), model.qkformer.QKFormer(**kw)
    _parity(f"QKFormer {qka_type}", ref, ours, torch.randn(2, 3, 16, 16, device=DEVICE) * 2, min_active=0.8)


@pytest.mark.peers
def test_spike_driven_transformer_matches_spikingjelly(sj):
    kw = dict(T=2, num_classes=5, embed_dims=32, num_heads=4, depths=1, mlp_ratio=2.0, pooling_stat="1100")
    ref, ours = sj.spike_driven_transformer.SpikeDrivenTransformer(**kw), \
        model.spike_driven_transformer.SpikeDrivenTransformer(**kw)
    _parity("SDT", ref, ours, torch.randn(2, 2, 3, 8, 8, device=DEVICE) * 2, scales=(1.0, 2.5))


def test_transformer_bad_arguments():
    with pytest.raises(ValueError, match="pooling_stat"):
        model.SpikeDrivenTransformer(pooling_stat="11")
    with pytest.raises(ValueError, match="embed_dims"):
        model.QKFormer(embed_dims=30)
    with pytest.raises(ValueError, match="depths"):
        model.MaxFormer(depths=(1, 2))
    with pytest.raises(ValueError, match="layers"):
        model.MSResNet(layers=(1, 1))
    with pytest.raises(ValueError, match="4D image"):
        model.MSResNet(layers=(1, 1, 1), base_channels=8)(torch.zeros(3, 16, 16, device=DEVICE))


# -------------------------------------------------------------------------------------------------- SNASNet
def _snas_args(celltype):
    return types.SimpleNamespace(timestep=2 if celltype == "backward" else 1, second_avgpooling=4, dataset="cifar100",
                                 celltype=celltype, threshold=0.5, tau=4.0 / 3.0)


CON_MAT = torch.tensor([[0, 2, 1, 4],
                        [2, 0, 0, 2],
                        [1, 4, 0, 2],
                        [0, 2, 1, 0]])


@pytest.mark.peers
@pytest.mark.parametrize("celltype", ["forward", "backward"])
def test_snasnet_matches_spikingjelly(sj, celltype):
    ref = sj.snas_net.SNASNet(_snas_args(celltype), CON_MAT)
    ours = model.snas_net.SNASNet(_snas_args(celltype), CON_MAT)
    _parity(f"SNASNet {celltype}", ref, ours, torch.randn(1, 3, 32, 32, device=DEVICE))
    if celltype == "backward":
        assert isinstance(ours.cell1.last_xin, torch.Tensor)  # the backward edges carried a value
        ours.neuron_init()
        assert ours.cell1.last_xin == 0.0


# -------------------------------------------------------------------------------------------------- SpikeDHS
DHS_ARGS = types.SimpleNamespace(fea_step=3, fea_num_layers=8, fea_block_multiplier=3, fea_filter_multiplier=48)


@pytest.mark.peers
@pytest.mark.filterwarnings("ignore:DSpike is not fused")
def test_spike_dhs_matches_spikingjelly(sj):
    ref, ours = sj.spike_dhs.SpikeDHS(3, DHS_ARGS), model.spike_dhs.SpikeDHS(3, DHS_ARGS)
    sj.functional.set_step_mode(ref, "m")
    functional.set_step_mode(ours, "m")
    # eval mode: in training the auxiliary head needs CIFAR's 32x32 inputs, too slow here (checked on its own below)
    _parity("SpikeDHS", ref, ours, torch.randn(1, 3, 4, 4, device=DEVICE) * 2, train=False,
            forward=lambda net, x: net(x)[0])


@pytest.mark.peers
@pytest.mark.filterwarnings("ignore:DSpike is not fused")
def test_spike_dhs_parts_match_spikingjelly(sj):
    sr, so = sj.spike_dhs, model.spike_dhs
    ref, ours = sr.AuxiliaryHeadCIFAR(576, 10), so.AuxiliaryHeadCIFAR(576, 10)
    for net in (ref, ours):
        (sj.functional if net is ref else functional).set_step_mode(net, "m")
    _parity("AuxiliaryHeadCIFAR", ref, ours, torch.randn(2, 1, 576, 8, 8, device=DEVICE) * 2)
    # differentiable gradient search: three alpha-shifted copies mixed by softmax(dgs_alpha)
    ref, ours = sr.SearchSpikingConv2d_stem(3, 8), so.SearchSpikingConv2d_stem(3, 8)
    for net in (ref, ours):
        net.dgs_init_stage()
    assert ours.spike_b.surrogate_function.alpha == 3 + 0.2 and ours.is_DGS
    _parity("DGS stem", ref, ours, torch.randn(2, 3, 6, 6, device=DEVICE) * 2)
    for net in (ref, ours):
        net.dgs_finish_stage(0)
    assert ours.spike_m.surrogate_function.alpha == ref.spike_m.surrogate_function.alpha and not ours.is_DGS
    x = torch.randn(4, 2, 5, device=DEVICE)
    cell_r, cell_o = sr.SearchSpikingConv2d_cell([[3, 4, "snn_b3"], [2, 4, "snn_b3"]]), \
        so.SearchSpikingConv2d_cell([[3, 4, "snn_b3"], [2, 4, "snn_b3"]])
    _parity("DGS cell", cell_r, cell_o, torch.randn(2, 3, 6, 6, device=DEVICE) * 2,
            forward=lambda net, a: net(a, a[:, :2] * 2))
    assert torch.equal(torch.as_tensor(sr.network_layer_to_space([0, 0, 1, 2, 1])),
                       torch.as_tensor(so.network_layer_to_space([0, 0, 1, 2, 1])))
    # the DSpike surrogate and save_v_LIFNode
    for alpha in (1.0, 3.0):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = sr.DSpike(alpha)(a), so.DSpike(alpha)(b)
        assert torch.equal(ya, yb)
        ya.sum().backward()
        yb.sum().backward()
        assert_close("DSpike grad", a.grad, b.grad, 1e-6)
    ref, ours = sr.save_v_LIFNode(tau=1.25, step_mode="m", store_v_seq=True), \
        so.save_v_LIFNode(tau=1.25, step_mode="m", store_v_seq=True)
    assert torch.equal(ref(x * 2), ours(x * 2))
    assert_close("v_before_spike", ref.v_before_spike, ours.v_before_spike, 1e-6)
    assert_close("v_seq", ref.v_seq, ours.v_seq, 1e-6)
    assert_close("v", ref.v, ours.v, 1e-6)
    with pytest.raises(AssertionError):
        so.DSpike(alpha=0.0)


# -------------------------------------------------------------------------------------------------- OTTT VGG
@pytest.mark.peers
def test_ottt_vggws_matches_spikingjelly_with_lif(sj):
    kw = dict(num_classes=5, tau=2.0)
    ref = sj.spiking_vggws_ottt.ottt_spiking_vggws(spiking_neuron=sj.neuron.LIFNode, **kw)
    ours = model.spiking_vggws_ottt.ottt_spiking_vggws(spiking_neuron=neuron.LIFNode, **kw)
    assert isinstance(ours.features, fastspike.layer.OTTTSequential)

    def two_steps(net, x):
        return torch.stack([net(x), net(x * 0.5)])

    _parity("OTTT VGG-WS", ref, ours, torch.randn(2, 3, 16, 16, device=DEVICE) * 4, forward=two_steps, gain=3.0)


def test_ottt_vgg_needs_a_neuron_until_fastspike_has_otttlifnode():
    if getattr(neuron, "OTTTLIFNode", None) is None:
        assert model.spiking_vggws_ottt.DEFAULT_NEURON is None
        with pytest.raises(TypeError, match="spiking_neuron"):
            model.ottt_spiking_vggws()
    else:
        assert model.spiking_vggws_ottt.DEFAULT_NEURON is neuron.OTTTLIFNode


# -------------------------------------------------------------------------------------------- config classes
def _build_kw(**kw):
    base = dict(process_group=None, memopt_process_group=None, pipeline_rank=0, pipeline_size=1,
                pipeline_microbatches=2, device=torch.device("meta"), micro_batch_size=4, memopt_level=0,
                memopt_compress_inputs=False, memopt_checkpoint_budget="auto")
    base.update(kw)
    return base


@pytest.mark.peers
@pytest.mark.parametrize("module,cls,kwargs", [
    ("sew_resnet", "SEWResNet34Config", dict(num_classes=10, image_size=64, connection="IAND", tau=3.0)),
    ("spikformer", "SpikformerCIFAR10Config", dict(time_steps=2)),
    ("spikformer", "SpikformerConfig", dict(num_classes=7, image_height=64, image_width=32)),
])
def test_configs_round_trip_and_build_what_spikingjelly_builds(sj, module, cls, kwargs, monkeypatch):
    monkeypatch.setattr(torch, "empty", torch._C._VariableFunctions.empty)
    monkeypatch.setattr(torch, "empty_like", torch._C._VariableFunctions.empty_like)
    ref_cfg = getattr(getattr(sj, module), cls)(**kwargs)
    ours_cfg = getattr(getattr(model, module), cls).from_dict(ref_cfg.as_dict())  # SpikingJelly's dict, read here
    assert ours_cfg == getattr(model, cls)(**kwargs)
    assert type(ours_cfg).from_dict(ours_cfg.as_dict()) == ours_cfg
    rb, ob = ref_cfg.get_builder_cls()(ref_cfg), ours_cfg.get_builder_cls()(ours_cfg)
    with torch.device("meta"):
        ref_net, ours_net = rb._build_canonical_model(), ob._build_canonical_model()
    assert [(k, v.shape) for k, v in ref_net.state_dict().items()] == \
        [(k, v.shape) for k, v in ours_net.state_dict().items()]
    for size in (2, 4) if module == "sew_resnet" or cls == "SpikformerConfig" else (2,):
        for rank in range(size):
            with torch.device("meta"):
                assert rb._canonical_key_map(rank, size) == ob._canonical_key_map(rank, size)
                r, o = rb.build(**_build_kw(pipeline_rank=rank, pipeline_size=size)), \
                    ob.build(**_build_kw(pipeline_rank=rank, pipeline_size=size))
            assert r[1:] == o[1:], f"{cls} stage {rank}/{size}: FSDP roots or shapes differ"
    with torch.device("meta"):
        r, o = rb.build(**_build_kw()), ob.build(**_build_kw())
    assert r[1:] == o[1:]
    with pytest.raises(NotImplementedError, match="memopt"):
        ob.build(**_build_kw(memopt_level=1))


@pytest.mark.peers
def test_config_validation_matches_spikingjelly(sj):
    bad = [("sew_resnet", "SEWResNet34Config", dict(connection="OR")),
           ("sew_resnet", "SEWResNet34Config", dict(tau=1.0)),
           ("sew_resnet", "SEWResNet34Config", dict(in_channels=2)),
           ("spikformer", "SpikformerConfig", dict(step_mode="s")),
           ("spikformer", "SpikformerCIFAR10Config", dict(time_steps=0))]
    for module, cls, kw in bad:
        with pytest.raises(ValueError):
            getattr(getattr(sj, module), cls)(**kw)
        with pytest.raises(ValueError):
            getattr(getattr(model, module), cls)(**kw)
    from fastspike.model._config import NeuronConfig

    with pytest.raises(ValueError, match="step_mode"):
        NeuronConfig("fastspike.neuron.LIFNode", {"step_mode": "s"})
    with pytest.raises(TypeError, match="JSON"):
        NeuronConfig("fastspike.neuron.LIFNode", {"tau": (2.0,)})
    with pytest.raises(ValueError, match="Unregistered neuron"):
        NeuronConfig("my.pkg.MyNode").resolve()
    cls, kw = NeuronConfig("spikingjelly.activation_based.neuron.ParametricLIFNode", {"init_tau": 3.0},
                           "fastspike.surrogate.ATan", {"alpha": 2.0}).resolve()
    assert cls is neuron.ParametricLIFNode and kw["init_tau"] == 3.0 and kw["surrogate_function"].alpha == 2.0
