"""Model zoo: structure, step modes, training, and equality with SpikingJelly 2.0.0 from the same weights."""
import copy
import os
import sys
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import functional, models, neuron

from helpers import assert_close, record_statuses


# --------------------------------------------------------------------------------------------------
# SpikingJelly (optional peer). Its model files import load_state_dict_from_url from torchvision, which
# is not installed here: a stand-in module exposing torch.hub's function is enough for them to import.
def _torchvision_standin():
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass
    import torch.hub

    tv = types.ModuleType("torchvision")
    tv_models = types.ModuleType("torchvision.models")
    tv_utils = types.ModuleType("torchvision.models.utils")
    tv_utils.load_state_dict_from_url = torch.hub.load_state_dict_from_url
    tv.models, tv_models.utils = tv_models, tv_utils
    sys.modules.update({"torchvision": tv, "torchvision.models": tv_models, "torchvision.models.utils": tv_utils})


@pytest.fixture(scope="module")
def sj():
    pytest.importorskip("spikingjelly")
    _torchvision_standin()
    from spikingjelly.activation_based import functional as sf
    from spikingjelly.activation_based import neuron as sn
    from spikingjelly.activation_based.model import (parametric_lif_net, sew_resnet, spiking_resnet, spiking_vgg,
                                                     spikformer)

    return types.SimpleNamespace(functional=sf, neuron=sn, parametric_lif_net=parametric_lif_net,
                                 sew_resnet=sew_resnet, spiking_resnet=spiking_resnet, spiking_vgg=spiking_vgg,
                                 spikformer=spikformer)


def _neurons(sj, name):
    return getattr(sj.neuron, name), getattr(neuron, name)


# builders: (SJ module name, builder name, extra kwargs)
ALL_BUILDERS = (
    [("spiking_resnet", f"spiking_resnet{d}", {}) for d in (18, 34, 50, 101, 152)]
    + [("spiking_resnet", n, {}) for n in ("spiking_resnext50_32x4d", "spiking_resnext101_32x8d",
                                         "spiking_wide_resnet50_2", "spiking_wide_resnet101_2")]
    + [("sew_resnet", f"sew_resnet{d}", {"cnf": "ADD"}) for d in (18, 34, 50, 101, 152)]
    + [("sew_resnet", n, {"cnf": "IAND"}) for n in ("sew_resnext50_32x4d", "sew_resnext101_32x8d",
                                                  "sew_wide_resnet50_2", "sew_wide_resnet101_2")]
    + [("spiking_vgg", f"spiking_vgg{d}{bn}", {}) for d in (11, 13, 16, 19) for bn in ("", "_bn")]
    + [("parametric_lif_net", n, {}) for n in ("MNISTNet", "FashionMNISTNet", "NMNISTNet", "CIFAR10Net",
                                              "CIFAR10DVSNet", "DVSGestureNet")]
    + [("spikformer", n, {}) for n in ("spikformer_ti", "spikformer_s", "spikformer_cifar10")]
)


def test_parameter_counts_and_state_dict_keys_match_spikingjelly(sj, monkeypatch):
    """Every builder: same parameter count, same state_dict keys and shapes (built on the meta device,
    weight initialisers skipped: only structure is compared here)."""
    for fn in ("kaiming_normal_", "normal_", "constant_", "trunc_normal_"):
        monkeypatch.setattr(nn.init, fn, lambda t, *a, **k: t)
    # conftest's NaN-filling torch.empty would allocate real memory here; structure needs none
    monkeypatch.setattr(torch, "empty", torch._C._VariableFunctions.empty)
    monkeypatch.setattr(torch, "empty_like", torch._C._VariableFunctions.empty_like)
    sn_cls, fs_cls = _neurons(sj, "ParametricLIFNode")
    for mod, name, kw in ALL_BUILDERS:
        with torch.device("meta"):
            ref = getattr(getattr(sj, mod), name)(spiking_neuron=sn_cls, **kw)
            ours = getattr(models, name)(spiking_neuron=fs_cls, **kw)
        n_ref = sum(p.numel() for p in ref.parameters())
        n_ours = sum(p.numel() for p in ours.parameters())
        assert n_ours == n_ref, f"{name}: {n_ours} parameters, SpikingJelly has {n_ref}"
        sd_ref, sd_ours = ref.state_dict(), ours.state_dict()
        assert list(sd_ours) == list(sd_ref), f"{name}: state_dict keys differ"
        assert all(sd_ours[k].shape == sd_ref[k].shape for k in sd_ref), f"{name}: a tensor shape differs"


# parity cases: id -> (SJ module, builder, kwargs, neuron, single-step input shape, T, train mode)
PARITY = {
    "spiking_resnet18": ("spiking_resnet", "spiking_resnet18", {"num_classes": 10}, "IFNode", (1, 3, 32, 32), 2, True),
    "sew_resnet18_ADD": ("sew_resnet", "sew_resnet18", {"cnf": "ADD", "num_classes": 10}, "LIFNode", (1, 3, 32, 32), 2,
                         True),
    "sew_resnet18_IAND": ("sew_resnet", "sew_resnet18", {"cnf": "IAND", "num_classes": 10}, "IFNode", (1, 3, 32, 32),
                          2, True),
    "sew_resnet18_AND": ("sew_resnet", "sew_resnet18", {"cnf": "AND", "num_classes": 10}, "IFNode", (1, 3, 32, 32), 2,
                         True),
    "sew_resnet50_IAND": ("sew_resnet", "sew_resnet50", {"cnf": "IAND", "num_classes": 10}, "IFNode", (2, 3, 16, 16),
                          1, True),
    "MNISTNet_plif": ("parametric_lif_net", "MNISTNet", {"channels": 8}, "ParametricLIFNode", (2, 1, 28, 28), 2, False),
    "NMNISTNet": ("parametric_lif_net", "NMNISTNet", {"channels": 8}, "ParametricLIFNode", (2, 2, 34, 34), 2, False),
    "CIFAR10Net": ("parametric_lif_net", "CIFAR10Net", {"channels": 8}, "ParametricLIFNode", (2, 3, 32, 32), 2, False),
    "CIFAR10DVSNet": ("parametric_lif_net", "CIFAR10DVSNet", {"channels": 4}, "LIFNode", (1, 2, 128, 128), 2, False),
    "DVSGestureNet": ("parametric_lif_net", "DVSGestureNet", {"channels": 4}, "ParametricLIFNode", (1, 2, 128, 128), 2,
                      False),
}


def _pair(sj, case):
    mod, name, kw, node, shape, T, train = PARITY[case]
    sn_cls, fs_cls = _neurons(sj, node)
    ref = getattr(getattr(sj, mod), name)(spiking_neuron=sn_cls, **kw)
    ours = getattr(models, name)(spiking_neuron=fs_cls, **kw)
    ours.load_state_dict(ref.state_dict())  # strict: every key matches
    ref.train(train)
    ours.train(train)
    x = torch.rand(T, *shape) * 2.0
    return ref, ours, x


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("case", list(PARITY))
def test_same_outputs_and_gradients_as_spikingjelly_multi_step(sj, case):
    ref, ours, x = _pair(sj, case)
    sj.functional.set_step_mode(ref, "m")
    functional.set_step_mode(ours, "m")
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_ours = ref(xr), ours(xo)
    assert y_ours.shape == y_ref.shape
    assert_close(f"{case} output", y_ref, y_ours, 1e-5)
    g = torch.randn_like(y_ref)
    y_ref.backward(g)
    y_ours.backward(g)
    assert_close(f"{case} input grad", xr.grad, xo.grad, 1e-4)
    gr, go = _grads(ref), _grads(ours)
    assert set(gr) == set(go)
    for k in gr:
        assert_close(f"{case} grad {k}", gr[k], go[k], 1e-4)


@pytest.mark.parametrize("case", ["sew_resnet18_ADD", "MNISTNet_plif"])
def test_single_step_matches_spikingjelly_and_multi_step(sj, case):
    ref, ours, x = _pair(sj, case)
    ref.eval()
    ours.eval()
    with torch.no_grad():
        y_ref = torch.stack([ref(xt) for xt in x])
        y_s = torch.stack([ours(xt) for xt in x])
        functional.reset_net(ours)
        functional.set_step_mode(ours, "m")
        y_m = ours(x)
    assert_close(f"{case} single-step vs SpikingJelly", y_ref, y_s, 1e-5)
    assert_close(f"{case} single-step vs multi-step", y_m, y_s, 1e-5)


def test_spiking_vgg_matches_spikingjelly_both_step_modes(sj):
    """VGG's classifier alone has 120M weights: compare outputs only (gradients are covered above)."""
    ref = sj.spiking_vgg.spiking_vgg11_bn(spiking_neuron=sj.neuron.IFNode, num_classes=10, init_weights=False)
    ours = models.spiking_vgg11_bn(spiking_neuron=neuron.IFNode, num_classes=10, init_weights=False)
    ours.load_state_dict(ref.state_dict())
    ref.eval()
    ours.eval()
    x = torch.rand(2, 1, 3, 32, 32) * 2
    with torch.no_grad():
        y_s = torch.stack([ours(xt) for xt in x])
        y_ref = torch.stack([ref(xt) for xt in x])
        functional.reset_net(ours)
        functional.set_step_mode(ours, "m")
        y_m = ours(x)
    assert y_m.shape == (2, 1, 10)
    assert_close("vgg11_bn single-step vs SpikingJelly", y_ref, y_s, 1e-5)
    assert_close("vgg11_bn multi-step vs single-step", y_s, y_m, 1e-5)


def test_spikformer_matches_spikingjelly(sj):
    kw = dict(T=2, img_size_h=32, img_size_w=32, patch_size=4, num_classes=10, embed_dims=32, num_heads=4, depths=1)
    ref = sj.spikformer.Spikformer(**kw)
    ours = models.Spikformer(**kw)
    ours.load_state_dict(ref.state_dict())
    x = torch.rand(2, 3, 32, 32)
    xr, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y_ours = ref(xr), ours(xo)
    assert y_ours.shape == (2, 2, 10)  # [T, N, classes]
    assert_close("spikformer output", y_ref, y_ours, 1e-5)
    g = torch.randn_like(y_ref)
    y_ref.backward(g)
    y_ours.backward(g)
    assert_close("spikformer input grad", xr.grad, xo.grad, 1e-4)
    gr, go = _grads(ref), _grads(ours)
    for k in gr:
        assert_close(f"spikformer grad {k}", gr[k], go[k], 1e-4)
    # a [T, N, C, H, W] sequence input is used as is
    functional.reset_net(ours)
    assert ours(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).shape == (2, 2, 10)


@pytest.mark.parametrize("ctor,shape,out", [
    (lambda: models.MNISTNet(8, spiking_neuron=neuron.ParametricLIFNode), (1, 28, 28), 10),
    (lambda: models.FashionMNISTNet(8, spiking_neuron=neuron.LIFNode), (1, 28, 28), 10),
    (lambda: models.NMNISTNet(8, spiking_neuron=neuron.IFNode), (2, 34, 34), 10),
    (lambda: models.CIFAR10Net(8, spiking_neuron=neuron.ParametricLIFNode), (3, 32, 32), 10),
    (lambda: models.DVSGestureNet(4, spiking_neuron=neuron.ParametricLIFNode), (2, 128, 128), 11),
    (lambda: models.sew_resnet18(cnf="AND", spiking_neuron=neuron.LIFNode, num_classes=5), (3, 32, 32), 5),
])
def test_forward_backward_shapes_both_step_modes(ctor, shape, out):
    net = ctor()
    T, N = 2, 2
    x = torch.rand(T, N, *shape)
    y = torch.stack([net(xt) for xt in x])  # single step
    assert y.shape == (T, N, out)
    y.sum().backward()
    functional.reset_net(net)
    functional.set_step_mode(net, "m")
    y = net(x)
    assert y.shape == (T, N, out)
    y.sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_deep_models_forward_small_input():
    """Spiking (non-SEW) Bottleneck: one forward at 32x32, batch 1, T=1 (SEW Bottleneck is in the parity test)."""
    net = models.spiking_resnet50(spiking_neuron=neuron.IFNode, num_classes=3).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 32, 32)).shape == (1, 3)


def test_reset_between_batches():
    # train mode: BatchNorm uses batch statistics, so spikes reach the last block
    net = models.sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, num_classes=10)
    functional.set_step_mode(net, "m")
    x = torch.rand(2, 2, 3, 32, 32) * 3
    with torch.no_grad():
        y1 = net(x)
        y_carried = net(x)  # state carried over from the first batch
        functional.reset_net(net)
        y2 = net(x)
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, y_carried)
    assert isinstance(net.sn1.v, torch.Tensor)
    functional.reset_net(net)
    assert not isinstance(net.sn1.v, torch.Tensor)


def test_sew_resnet18_training_step():
    """One full training step: T=4, batch 2, 64x64, multi-step, on the CPU."""
    net = models.sew_resnet18(cnf="ADD", spiking_neuron=neuron.LIFNode, num_classes=10, detach_reset=True)
    functional.set_step_mode(net, "m")
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(2, 3, 64, 64).unsqueeze(0).repeat(4, 1, 1, 1, 1)
    target = torch.tensor([3, 7])
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    losses = []
    for _ in range(2):
        out = net(x).mean(0)
        assert out.shape == (2, 10)
        loss = F.cross_entropy(out, target)
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        assert net.conv1.weight.grad.abs().sum() > 0
        opt.step()
        functional.reset_net(net)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    after = net.state_dict()
    assert not torch.equal(before["conv1.weight"], after["conv1.weight"])
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert after["bn1.num_batches_tracked"].item() == 2


def test_pretrained_raises_clear_error_and_loads_local_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        models.spiking_resnet18(pretrained=True, spiking_neuron=neuron.IFNode)
    expected = os.path.join(str(tmp_path), "hub", "checkpoints", "resnet18-f37072fd.pth")
    assert expected in str(err.value)
    assert models.checkpoint_dir() == os.path.dirname(expected)
    # a checkpoint placed there is loaded
    src = models.spiking_resnet18(spiking_neuron=neuron.IFNode)
    os.makedirs(os.path.dirname(expected))
    torch.save(src.state_dict(), expected)
    net = models.spiking_resnet18(pretrained=True, spiking_neuron=neuron.IFNode)
    assert torch.equal(net.conv1.weight, src.conv1.weight)
    with pytest.raises(FileNotFoundError, match="vgg11_bn-6002323d.pth"):
        models.spiking_vgg11_bn(pretrained=True, spiking_neuron=neuron.IFNode)


def test_bad_arguments():
    with pytest.raises(TypeError, match="spiking_neuron"):
        models.sew_resnet18(cnf="ADD")
    with pytest.raises(ValueError, match="cnf"):
        models.sew_resnet18(cnf="OR", spiking_neuron=neuron.IFNode)
    with pytest.raises(ValueError, match="patch_size"):
        models.Spikformer(patch_size=8)
    with pytest.raises(ValueError, match="step_mode"):
        models.Spikformer(img_size_h=32, img_size_w=32, patch_size=4, embed_dims=32, num_heads=4, depths=1,
                          step_mode="s")
    net = models.Spikformer(T=2, img_size_h=32, img_size_w=32, patch_size=4, embed_dims=32, num_heads=4, depths=1)
    with pytest.raises(ValueError, match="4D image input"):
        net(torch.rand(3, 32, 32))


def test_sew_resnet18_event_driven_auto_training_matches_default(monkeypatch):
    """event_driven='auto' on every layer: the spike-fed convolutions take the event-driven forward (the trained
    weights transposed per call), the spike-count and real-valued ones fall back to the dense path; the step
    matches the default model up to float rounding."""
    from fastspike.ops import synapse as S

    torch.manual_seed(0)
    net = models.sew_resnet18(cnf="ADD", spiking_neuron=neuron.LIFNode, num_classes=10, detach_reset=True)
    functional.set_step_mode(net, "m")
    event = copy.deepcopy(net)
    for m in event.modules():
        if hasattr(m, "event_driven"):
            m.event_driven = "auto"
    statuses = record_statuses(monkeypatch, S.cpu, "conv2d_forward", 1)
    x = torch.rand(2, 3, 64, 64).unsqueeze(0).repeat(4, 1, 1, 1, 1)
    target = torch.tensor([3, 7])
    results = []
    for n in (net, event):
        out = n(x).mean(0)
        F.cross_entropy(out, target).backward()
        results.append((out.detach(), n.conv1.weight.grad, n.layer1[0].conv2.weight.grad,
                        n.layer4[1].conv2.weight.grad))
    assert S.cpu.EVENT in statuses and S.cpu.NOT_BINARY in statuses  # both paths ran
    assert_close("output", results[0][0], results[1][0], 1e-4)
    for name, a, b in zip(("conv1", "layer1.0.conv2", "layer4.1.conv2"), results[0][1:], results[1][1:]):
        assert_close(f"grad {name}", a, b, 1e-4)
