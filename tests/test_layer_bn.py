"""``fastspike.layer.bn.BatchNorm1d/2d/3d`` against SpikingJelly 2.0.0's ``activation_based.layer.bn`` classes:
the same module path, constructor, state_dict keys, outputs, input and parameter gradients and running statistics
in single-step ('s') and multi-step ('m') mode, train and eval; errors for inputs of the wrong rank."""
import re

import pytest
import torch

from fastspike import layer
from fastspike.layer import bn

from helpers import DEVICE, assert_close, noncontiguous

pytestmark = pytest.mark.peers

TOL = 1e-5
T, N = 3, 4
CASES = [  # name, kwargs, one-step shape
    ("BatchNorm1d", {}, (N, 5)),
    ("BatchNorm1d", {"momentum": 0.3}, (N, 5, 6)),
    ("BatchNorm2d", {}, (N, 5, 3, 2)),
    ("BatchNorm2d", {"affine": False, "eps": 1e-3}, (N, 5, 3, 3)),
    ("BatchNorm3d", {"momentum": None}, (N, 5, 2, 3, 2)),
    ("BatchNorm3d", {"track_running_stats": False}, (N, 5, 2, 2, 3)),
]
IDS = [f"{c[0]}-{'-'.join(f'{k}={v}' for k, v in c[1].items()) or 'default'}-{len(c[2])}d" for c in CASES]


@pytest.fixture(scope="module")
def sj_bn():
    return pytest.importorskip("spikingjelly.activation_based.layer.bn")


def test_layer_names_are_the_bn_module_classes():
    for name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"):
        cls = getattr(bn, name)
        assert getattr(layer, name) is cls and cls.__module__ == "fastspike.layer.bn" and name in bn.__all__
        assert issubclass(cls, getattr(torch.nn, name))


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=IDS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_batchnorm_matches_spikingjelly(sj_bn, name, kwargs, shape, step_mode, train):
    ref = getattr(sj_bn, name)(5, **kwargs, step_mode=step_mode).to(DEVICE)
    ours = getattr(bn, name)(5, **kwargs, step_mode=step_mode).to(DEVICE)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.rand(p.shape, generator=g).to(p) + 0.5)
        if ref.running_mean is not None:
            ref.running_mean.copy_(torch.randn(5, generator=g).to(DEVICE))
            ref.running_var.copy_(torch.rand(5, generator=g).to(DEVICE) + 0.5)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    ref.train(train)
    ours.train(train)
    x = torch.randn((T, *shape) if step_mode == "m" else shape, device=DEVICE) * 2 + 0.7
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y = ref(x_ref), ours(x_ours)
    assert_close(f"{name} output", y_ref, y, TOL)
    grad = noncontiguous(torch.randn_like(y))
    y_ref.backward(grad)
    y.backward(grad)
    assert_close(f"{name} input gradient", x_ref.grad, x_ours.grad, TOL)
    for (k, p_ref), (_, p) in zip(ref.named_parameters(), ours.named_parameters()):
        assert_close(f"{name} {k} gradient", p_ref.grad, p.grad, TOL)
    for (k, a), (_, b) in zip(ref.state_dict().items(), ours.state_dict().items()):
        assert_close(f"{name} {k} after forward", a.double(), b.double(), TOL)
    # the same module, now with the state_dict written by ours, loads back into SpikingJelly's
    ref.load_state_dict(ours.state_dict(), strict=True)
    assert ours.step_mode == ref.step_mode == step_mode
    assert repr(ours).endswith(f"step_mode={step_mode})")


@pytest.mark.parametrize("name,shape", [("BatchNorm1d", (N, 5, 6)), ("BatchNorm2d", (N, 5, 3, 3)),
                                        ("BatchNorm3d", (N, 5, 2, 2, 2))])
def test_multi_step_statistics_over_time_and_batch(sj_bn, name, shape):
    """'m' normalises [T, N, ...] as one batch of T*N samples, as SpikingJelly does, not per step."""
    ours = getattr(bn, name)(5, step_mode="m").to(DEVICE)
    x = torch.randn(T, *shape, device=DEVICE) + torch.arange(T, device=DEVICE).view(T, *[1] * len(shape))
    y = ours(x)
    dims = [0, 1] + list(range(3, x.dim()))
    assert_close("mean over T, N", torch.zeros(5, device=DEVICE), y.mean(dim=dims), 1e-4)
    plain = getattr(torch.nn, name)(5).to(DEVICE)
    assert_close("folded batch", plain(x.flatten(0, 1)).view_as(y), y, TOL)
    assert_close("super_forward", plain(x[0]), ours.super_forward(x[0]), TOL)
    assert not torch.allclose(y[0], plain(x[0]))  # per-step statistics would give a different answer


@pytest.mark.parametrize("name,bad_s,bad_m", [
    ("BatchNorm1d", (N, 5, 2, 2), (T, N, 5, 2, 2)),
    ("BatchNorm2d", (N, 5, 3), (T, N, 5, 3)),
    ("BatchNorm3d", (N, 5, 3, 3), (T, N, 5, 3, 3)),
])
def test_wrong_rank_errors_name_the_layer_and_shape(sj_bn, name, bad_s, bad_m):
    for mode, shape in (("s", bad_s), ("m", bad_m)):
        ours = getattr(bn, name)(5, step_mode=mode)
        ref = getattr(sj_bn, name)(5, step_mode=mode)
        x = torch.randn(shape)
        with pytest.raises(ValueError):
            ref(x)
        with pytest.raises(ValueError, match=re.escape(f"{name} (step_mode='{mode}'") + ".*" + re.escape(str(shape))):
            ours(x)
