"""``fastspike.layer.stateless_wrapper`` against SpikingJelly 2.0.0's ``activation_based.layer.stateless_wrapper``:
all 24 names at the same module path, the same constructors and state_dict keys, and, with SpikingJelly's weights
loaded, the same outputs, input gradients and parameter gradients in single-step ('s') and multi-step ('m')
mode (max pooling with indices and unpooling included)."""
import pytest
import torch

from fastspike import layer
from fastspike.layer import stateless_wrapper as sw

from helpers import DEVICE, assert_close, noncontiguous

pytestmark = pytest.mark.peers

TOL = 1e-5
T, N = 3, 2
NAMES = ["Conv1d", "Conv2d", "Conv3d", "Upsample", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
         "GroupNorm", "MaxPool1d", "MaxPool2d", "MaxPool3d", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
         "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
         "Linear", "Flatten", "WSConv2d", "WSLinear"]

CASES = [  # name, args, kwargs, one-step input shape
    ("Conv1d", (3, 4, 3), {"padding": "same", "padding_mode": "reflect"}, (N, 3, 7)),
    ("Conv2d", (3, 4, 3), {"stride": 2, "dilation": 1, "groups": 1, "bias": False}, (N, 3, 7, 6)),
    ("Conv2d", (4, 4, (3, 1)), {"padding": (1, 0), "groups": 2}, (N, 4, 5, 5)),
    ("Conv3d", (2, 3, 2), {"padding": 1, "padding_mode": "circular"}, (N, 2, 3, 4, 4)),
    ("Upsample", (), {"scale_factor": 2}, (N, 3, 2, 2)),
    ("Upsample", (), {"size": (5, 3), "mode": "bilinear", "align_corners": True}, (N, 2, 3, 2)),
    ("ConvTranspose1d", (3, 2, 3), {"stride": 2, "output_padding": 1}, (N, 3, 5)),
    ("ConvTranspose2d", (3, 2, 3), {"stride": 2, "padding": 1, "dilation": 2}, (N, 3, 4, 3)),
    ("ConvTranspose3d", (2, 2, 2), {"stride": (1, 2, 2), "bias": False}, (N, 2, 2, 3, 3)),
    ("GroupNorm", (2, 4), {}, (N, 4, 3)),
    ("GroupNorm", (1, 4), {"affine": False, "eps": 1e-3}, (N, 4, 3, 2)),
    ("MaxPool1d", (2,), {}, (N, 3, 6)),
    ("MaxPool2d", (3,), {"stride": 1, "padding": 1}, (N, 3, 5, 4)),
    ("MaxPool2d", (2,), {"ceil_mode": True, "dilation": 1}, (N, 2, 5, 5)),
    ("MaxPool3d", (2,), {}, (N, 2, 4, 4, 4)),
    ("AvgPool1d", (3,), {"padding": 1, "count_include_pad": False}, (N, 3, 6)),
    ("AvgPool2d", (2,), {"divisor_override": 3}, (N, 3, 5, 4)),
    ("AvgPool3d", (2,), {"ceil_mode": True}, (N, 2, 3, 4, 4)),
    ("AdaptiveAvgPool1d", (2,), {}, (N, 3, 7)),
    ("AdaptiveAvgPool2d", ((2, 3),), {}, (N, 3, 5, 4)),
    ("AdaptiveAvgPool3d", (2,), {}, (N, 2, 3, 4, 5)),
    ("Linear", (6, 4), {}, (N, 6)),
    ("Linear", (6, 4), {"bias": False}, (N, 5, 6)),
    ("Flatten", (), {}, (N, 3, 2, 2)),
    ("Flatten", (), {"start_dim": 2, "end_dim": 3}, (N, 3, 2, 2, 2)),
    ("WSConv2d", (3, 4, 3), {"padding": 1}, (N, 3, 5, 5)),
    ("WSConv2d", (3, 4, 3), {"gain": False, "eps": 1e-3}, (N, 3, 5, 5)),
    ("WSLinear", (6, 4), {}, (N, 6)),
    ("WSLinear", (6, 4), {"gain": False, "bias": False}, (N, 6)),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


@pytest.fixture(scope="module")
def sj_sw():
    return pytest.importorskip("spikingjelly.activation_based.layer.stateless_wrapper")


def _pair(sj_sw, name, args, kwargs, step_mode):
    ref = getattr(sj_sw, name)(*args, **kwargs, step_mode=step_mode).to(DEVICE)
    ours = getattr(sw, name)(*args, **kwargs, step_mode=step_mode).to(DEVICE)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g).to(p))
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _compare_grads(name, ref, ours, y_ref, y, x_ref, x_ours):
    grad = noncontiguous(torch.randn_like(y))
    y_ref.backward(grad)
    y.backward(grad)
    assert_close(f"{name} input gradient", x_ref.grad, x_ours.grad, TOL)
    for (k, p_ref), (_, p) in zip(ref.named_parameters(), ours.named_parameters()):
        assert_close(f"{name} {k} gradient", p_ref.grad, p.grad, TOL)


def test_module_holds_spikingjellys_names(sj_sw):
    assert sorted(sw.__all__) == sorted(NAMES) == sorted(sj_sw.__all__)
    for name in NAMES:
        cls = getattr(sw, name)
        assert getattr(layer, name) is cls and cls.__module__ == "fastspike.layer.stateless_wrapper"
        assert issubclass(cls, getattr(torch.nn, name.replace("WS", "")))


@pytest.mark.parametrize("name,args,kwargs,shape", CASES, ids=IDS)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_matches_spikingjelly(sj_sw, name, args, kwargs, shape, step_mode):
    ref, ours = _pair(sj_sw, name, args, kwargs, step_mode)
    x = torch.randn((T, *shape) if step_mode == "m" else shape, device=DEVICE)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ref, y = ref(x_ref), ours(x_ours)
    assert_close(f"{name} output", y_ref, y, TOL)
    if step_mode == "m":
        assert y.shape[:2] == (T, N)
    _compare_grads(name, ref, ours, y_ref, y, x_ref, x_ours)
    assert ours.step_mode == ref.step_mode == step_mode
    if "step_mode" in repr(ref):  # SpikingJelly's Linear/WSLinear leave it out of the repr; ours always show it
        assert repr(ours) == repr(ref)
    assert repr(ours).endswith(f"step_mode={step_mode})")


@pytest.mark.parametrize("dims,shape", [(1, (N, 3, 6)), (2, (N, 2, 4, 6)), (3, (N, 2, 4, 2, 4))])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_max_pool_indices_and_unpool_match_spikingjelly(sj_sw, dims, shape, step_mode):
    pool_name, unpool_name = f"MaxPool{dims}d", f"MaxUnpool{dims}d"
    ref_pool, ours_pool = _pair(sj_sw, pool_name, (2,), {"return_indices": True}, step_mode)
    ref_unpool, ours_unpool = _pair(sj_sw, unpool_name, (2,), {}, step_mode)
    x = torch.randn((T, *shape) if step_mode == "m" else shape, device=DEVICE)
    x_ref, x_ours = x.clone().requires_grad_(), x.clone().requires_grad_()
    (p_ref, i_ref), (p, i) = ref_pool(x_ref), ours_pool(x_ours)
    assert torch.equal(i_ref, i)
    assert_close(f"{pool_name} output", p_ref, p, TOL)
    size = list(x.shape[-dims:])
    y_ref, y = ref_unpool(p_ref, i_ref, size), ours_unpool(p, i, size)
    assert y.shape == x.shape
    assert_close(f"{unpool_name} output", y_ref, y, TOL)
    _compare_grads(unpool_name, ref_unpool, ours_unpool, y_ref, y, x_ref, x_ours)


@pytest.mark.parametrize("name,args,shape_m", [("Conv2d", (3, 4, 3), (T, N, 3, 5)), ("AvgPool1d", (2,), (T, N, 6)),
                                               ("MaxPool3d", (2,), (T, N, 2, 4, 4)),
                                               ("WSConv2d", (3, 4, 3), (T, N, 3, 5))])
def test_multi_step_rank_errors(sj_sw, name, args, shape_m):
    ref, ours = _pair(sj_sw, name, args, {}, "m")
    x = torch.randn(shape_m, device=DEVICE)
    with pytest.raises(ValueError):
        ref(x)
    with pytest.raises(ValueError, match=rf"{name} \(step_mode='m'\) expects x with shape \[T, N"):
        ours(x)


def test_unpool_indices_shape_error(sj_sw):
    ref, ours = _pair(sj_sw, "MaxUnpool2d", (2,), {}, "m")
    x = torch.randn(T, N, 2, 2, 2, device=DEVICE)
    idx = torch.zeros(T, N, 2, 2, 1, dtype=torch.long, device=DEVICE)
    with pytest.raises(ValueError):
        ref(x, idx)
    with pytest.raises(ValueError, match="indices with the shape of x"):
        ours(x, idx)
