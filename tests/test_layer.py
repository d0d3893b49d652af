"""fastspike.layer: step-mode wrappers, dropout and containers.

Every wrapper is checked in 's' and 'm' mode against the plain torch layer applied per step (outputs,
input and parameter gradients, non-contiguous inputs and upstream gradients), and against SpikingJelly
2.0.0's layer of the same name (state_dict keys, a loaded state_dict, outputs) when it is installed.
"""
import pytest
import torch
import torch.nn as nn

from fastspike import base, functional, layer
from helpers import DEVICE, assert_close, noncontiguous

T, N = 3, 2
TOL = 1e-5

# name -> (fastspike factory, torch factory, one-step input shape [N, ...]); same positional arguments
WRAPPERS = {
    "Conv1d": (lambda: layer.Conv1d(3, 4, 3, padding=1), lambda: nn.Conv1d(3, 4, 3, padding=1), (N, 3, 7)),
    "Conv2d": (lambda: layer.Conv2d(3, 5, 3, stride=2, padding=1, bias=False),
               lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=False), (N, 3, 7, 5)),
    "Conv3d": (lambda: layer.Conv3d(2, 3, (2, 3, 3), padding_mode="zeros"), lambda: nn.Conv3d(2, 3, (2, 3, 3)),
               (N, 2, 3, 5, 4)),
    "ConvTranspose2d": (lambda: layer.ConvTranspose2d(3, 2, 3, stride=2), lambda: nn.ConvTranspose2d(3, 2, 3, stride=2),
                        (N, 3, 4, 3)),
    "Linear": (lambda: layer.Linear(7, 5), lambda: nn.Linear(7, 5), (N, 7)),
    "Linear3d": (lambda: layer.Linear(7, 5), lambda: nn.Linear(7, 5), (N, 4, 7)),
    "GroupNorm": (lambda: layer.GroupNorm(2, 4), lambda: nn.GroupNorm(2, 4), (N, 4, 3, 3)),
    "MaxPool1d": (lambda: layer.MaxPool1d(2), lambda: nn.MaxPool1d(2), (N, 3, 7)),
    "MaxPool2d": (lambda: layer.MaxPool2d(3, 2, 1, ceil_mode=True), lambda: nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                  (N, 3, 7, 6)),
    "MaxPool3d": (lambda: layer.MaxPool3d(2), lambda: nn.MaxPool3d(2), (N, 2, 4, 4, 5)),
    "AvgPool1d": (lambda: layer.AvgPool1d(3, 2, 1), lambda: nn.AvgPool1d(3, 2, 1), (N, 3, 7)),
    "AvgPool2d": (lambda: layer.AvgPool2d(2, divisor_override=3), lambda: nn.AvgPool2d(2, divisor_override=3),
                  (N, 3, 6, 5)),
    "AvgPool3d": (lambda: layer.AvgPool3d(2), lambda: nn.AvgPool3d(2), (N, 2, 4, 4, 5)),
    "AdaptiveAvgPool1d": (lambda: layer.AdaptiveAvgPool1d(3), lambda: nn.AdaptiveAvgPool1d(3), (N, 3, 7)),
    "AdaptiveAvgPool2d": (lambda: layer.AdaptiveAvgPool2d((2, 3)), lambda: nn.AdaptiveAvgPool2d((2, 3)),
                          (N, 3, 7, 5)),
    "AdaptiveAvgPool3d": (lambda: layer.AdaptiveAvgPool3d(1), lambda: nn.AdaptiveAvgPool3d(1), (N, 2, 3, 4, 5)),
    "Flatten": (lambda: layer.Flatten(), lambda: nn.Flatten(), (N, 3, 4, 2)),
    "Upsample": (lambda: layer.Upsample(scale_factor=2), lambda: nn.Upsample(scale_factor=2), (N, 2, 3, 3)),
    # BatchNorm in eval mode is per-sample, so per-step application is the reference (train mode below)
    "BatchNorm1d": (lambda: layer.BatchNorm1d(4).eval(), lambda: nn.BatchNorm1d(4).eval(), (N, 4, 5)),
    "BatchNorm1d_NC": (lambda: layer.BatchNorm1d(4).eval(), lambda: nn.BatchNorm1d(4).eval(), (N, 4)),
    "BatchNorm2d": (lambda: layer.BatchNorm2d(4).eval(), lambda: nn.BatchNorm2d(4).eval(), (N, 4, 3, 2)),
    "BatchNorm3d": (lambda: layer.BatchNorm3d(4).eval(), lambda: nn.BatchNorm3d(4).eval(), (N, 4, 2, 3, 2)),
}


@pytest.fixture(autouse=True)
def _exact_gpu_math():
    """cuBLAS / cuDNN's TF32 would differ from torch's float32 CPU results by 1e-4: compare in full float32."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _pair(name):
    make_ours, make_ref, shape = WRAPPERS[name]
    ours, ref = make_ours().to(DEVICE), make_ref().to(DEVICE)
    with torch.no_grad():  # non-trivial parameters and running statistics
        for p in ref.parameters():
            p.copy_(torch.randn_like(p))
        for b_name, b in ref.named_buffers():
            if b.is_floating_point():
                b.copy_(torch.rand_like(b) + 0.5)
    ours.load_state_dict(ref.state_dict())
    return ours, ref, shape


def _grads(module, x):
    return [x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("name", list(WRAPPERS))
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_wrapper_matches_torch_per_step(name, step_mode):
    ours, ref, shape = _pair(name)
    assert isinstance(ours, base.StepModule) and isinstance(ours, type(ref))
    ours.step_mode = step_mode
    full = (T, *shape) if step_mode == "m" else shape
    x = noncontiguous(torch.randn(full, device=DEVICE)).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y = ours(x)
    y_ref = torch.stack([ref(x_ref[t]) for t in range(T)]) if step_mode == "m" else ref(x_ref)
    assert_close(f"{name} {step_mode} out", y_ref, y, TOL)
    g = noncontiguous(torch.randn_like(y_ref))
    y.backward(g)
    y_ref.backward(g)
    for i, (a, b) in enumerate(zip(_grads(ref, x_ref), _grads(ours, x))):
        assert_close(f"{name} {step_mode} grad {i}", a, b, TOL)


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchNorm1d_NC", "BatchNorm2d", "BatchNorm3d"])
def test_batchnorm_train_multistep_statistics_over_T_times_N(name):
    ours, ref, shape = _pair(name)
    ours.train(), ref.train()
    ours.step_mode = "m"
    x = torch.randn(T, *shape, requires_grad=True, device=DEVICE)
    x_ref = x.detach().clone().requires_grad_()
    y = ours(x)
    y_ref = ref(x_ref.flatten(0, 1)).unflatten(0, (T, N))
    assert_close(f"{name} out", y_ref, y, TOL)
    assert_close(f"{name} running_mean", ref.running_mean, ours.running_mean, TOL)
    assert_close(f"{name} running_var", ref.running_var, ours.running_var, TOL)
    assert int(ours.num_batches_tracked) == 1
    g = torch.randn_like(y)
    y.backward(g), y_ref.backward(g)
    for i, (a, b) in enumerate(zip(_grads(ref, x_ref), _grads(ours, x))):
        assert_close(f"{name} grad {i}", a, b, TOL)


def test_maxpool_return_indices_and_unpool_multistep():
    pool = layer.MaxPool2d(2, return_indices=True, step_mode="m").to(DEVICE)
    unpool = layer.MaxUnpool2d(2, step_mode="m").to(DEVICE)
    x = torch.randn(T, N, 3, 4, 6, device=DEVICE)
    y, idx = pool(x)
    assert y.shape == idx.shape == (T, N, 3, 2, 3)
    for t in range(T):
        y_t, idx_t = nn.MaxPool2d(2, return_indices=True)(x[t])
        assert torch.equal(y[t], y_t) and torch.equal(idx[t], idx_t)
        assert torch.equal(unpool(y, idx)[t], nn.MaxUnpool2d(2)(y_t, idx_t))
    with pytest.raises(ValueError, match="indices"):
        unpool(y, idx[:, :1])


def test_ws_layers_standardise_weight():
    conv = layer.WSConv2d(3, 4, 3, step_mode="m").to(DEVICE)
    w = conv.get_weight()
    assert_close("WSConv2d mean", torch.zeros(4, device=DEVICE), w.mean(dim=(1, 2, 3)), 1e-5)
    assert_close("WSConv2d var*fan_in", torch.ones(4, device=DEVICE), w.var(dim=(1, 2, 3)) * 27, 1e-3)
    x = torch.randn(T, N, 3, 5, 5, device=DEVICE)
    ref = torch.stack([nn.functional.conv2d(x[t], w, conv.bias) for t in range(T)])
    assert_close("WSConv2d out", ref, conv(x), TOL)
    lin = layer.WSLinear(6, 3).to(DEVICE)
    xl = torch.randn(N, 6, device=DEVICE)
    assert_close("WSLinear out", nn.functional.linear(xl, lin.get_weight(), lin.bias), lin(xl), TOL)


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls,args,one_step", [
    (layer.Conv1d, (3, 4, 3), (N, 3, 7)),
    (layer.Conv2d, (3, 4, 3), (N, 3, 7, 7)),
    (layer.Conv3d, (3, 4, 3), (N, 3, 5, 5, 5)),
    (layer.MaxPool2d, (2,), (N, 3, 4, 4)),
    (layer.AvgPool3d, (2,), (N, 3, 4, 4, 4)),
    (layer.AdaptiveAvgPool1d, (2,), (N, 3, 4)),
    (layer.BatchNorm2d, (3,), (N, 3, 4, 4)),
    (layer.BatchNorm3d, (3,), (N, 3, 4, 4, 4)),
])
def test_wrong_ndim_names_module_and_shape(cls, args, one_step):
    m = cls(*args, step_mode="m").to(DEVICE)
    with pytest.raises(ValueError,
                       match=rf"{cls.__name__} \(step_mode='m'\) expects x with shape \[T, N, C.*step_mode='s'"):
        m(torch.randn(one_step, device=DEVICE))
    m.step_mode = "s"
    with pytest.raises(ValueError,
                       match=rf"{cls.__name__} \(step_mode='s'\) expects x with shape \[N, C.*step_mode='m'"):
        m(torch.randn(T, *one_step, device=DEVICE))


def test_batchnorm1d_accepted_ranks():
    bn = layer.BatchNorm1d(3, step_mode="m").to(DEVICE)
    assert bn(torch.randn(T, N, 3, device=DEVICE)).shape == (T, N, 3)
    assert bn(torch.randn(T, N, 3, 4, device=DEVICE)).shape == (T, N, 3, 4)
    with pytest.raises(ValueError, match=r"\[T, N, C\] or \[T, N, C, L\]"):
        bn(torch.randn(T, N, 3, 4, 5, device=DEVICE))


def test_unknown_step_mode_and_bad_input_type():
    with pytest.raises(ValueError, match="step_mode"):
        layer.Conv2d(3, 4, 3, step_mode="x")
    conv = layer.Linear(3, 4)
    with pytest.raises(ValueError, match="step_mode"):
        conv.step_mode = "multi"
    with pytest.raises(TypeError, match="torch.Tensor"):
        conv([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="step_mode"):
        layer.Dropout(step_mode="t")


# ------------------------------------------------------------------------------------------------
# dropout
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [layer.Dropout, layer.Dropout2d])
def test_dropout_mask_constant_over_time_single_step(cls):
    d = cls(p=0.5)
    x = torch.rand(4, 8, 3, 3, device=DEVICE) + 0.5  # strictly positive: zeros are dropped elements
    outs = [d(x) for _ in range(4)]
    mask0 = outs[0] != 0
    assert 0 < mask0.float().mean() < 1
    for y in outs[1:]:
        assert torch.equal(y, outs[0])
    kept = outs[0][mask0]
    assert_close("dropout scale", x[mask0] * 2.0, kept, 1e-6)
    if cls is layer.Dropout2d:  # whole channels dropped together
        per_channel = mask0.flatten(2).float()
        assert torch.all((per_channel.amin(-1) == per_channel.amax(-1)))
    functional.reset_net(d)
    assert d.mask is None
    assert not torch.equal(d(x) != 0, mask0)  # a new mask after reset (p=0.5, 288 elements)


@pytest.mark.parametrize("cls", [layer.Dropout, layer.Dropout2d])
def test_dropout_multistep_one_mask_for_all_steps(cls):
    d = cls(p=0.3, step_mode="m")
    x_seq = (torch.rand(5, 4, 6, 2, 2, device=DEVICE) + 0.5).requires_grad_()
    y = d(x_seq)
    mask = d.mask
    assert mask.shape == x_seq.shape[1:]
    assert_close("dropout m", x_seq * mask, y, 1e-6)
    for t in range(1, 5):
        assert torch.equal(y[t] != 0, y[0] != 0)
    # the mask is kept for the next call until reset
    assert torch.equal(d(x_seq) != 0, y != 0)
    y.sum().backward()
    assert_close("dropout grad", mask.expand_as(x_seq), x_seq.grad, 1e-6)
    with pytest.raises(ValueError, match="reset_net"):
        d(torch.rand(5, 3, 6, 2, 2, device=DEVICE))
    functional.reset_net(d)
    assert d(torch.rand(5, 3, 6, 2, 2, device=DEVICE)).shape == (5, 3, 6, 2, 2)


def test_dropout_eval_is_identity_and_bad_p():
    d = layer.Dropout(0.9, step_mode="m").eval()
    x = torch.randn(3, 4, 5, device=DEVICE)
    assert d(x) is x and d.mask is None
    d.step_mode = "s"
    x0 = x[0]
    assert d(x0) is x0 and d.mask is None
    with pytest.raises(ValueError, match="0 <= p < 1"):
        layer.Dropout(1.0)
    assert layer.Dropout2d().p == 0.2 and layer.Dropout().p == 0.5
    assert list(layer.Dropout().state_dict()) == []


# ------------------------------------------------------------------------------------------------
# containers
# ------------------------------------------------------------------------------------------------
class Integrator(base.MemoryModule):
    """v[t] = v[t-1] + x[t] (a minimal stateful single-step module for the tests)."""

    def __init__(self):
        super().__init__()
        self.register_memory("v", 0.0)

    def single_step_forward(self, x):
        self.v = self.v + x
        return self.v


def test_multistep_and_seq_to_ann_containers():
    x = torch.randn(T, N, 5, device=DEVICE)
    lin = nn.Linear(5, 3).to(DEVICE)
    ms = layer.MultiStepContainer(lin, Integrator())
    assert ms.step_mode == "m"
    ref = torch.cumsum(torch.stack([lin(x[t]) for t in range(T)]), 0)
    assert_close("MultiStepContainer", ref, ms(x), TOL)
    s2a = layer.SeqToANNContainer(lin, nn.ReLU())
    assert_close("SeqToANNContainer", torch.relu(lin(x)), s2a(x), TOL)
    tl = layer.TLastSeqToANNContainer(nn.Flatten())
    xt = torch.randn(N, 2, 3, T, device=DEVICE)
    assert_close("TLastSeqToANNContainer", xt.flatten(1, 2), tl(xt), 0)
    tm = layer.TLastMultiStepContainer(Integrator())
    assert_close("TLastMultiStepContainer", xt.cumsum(-1), tm(xt), TOL)
    with pytest.raises(ValueError, match="child 1 .*Linear.*step_mode='m'"):
        layer.SeqToANNContainer(nn.ReLU(), layer.Linear(2, 2, step_mode="m"))
    with pytest.raises(ValueError, match=r"\[T, N, \.\.\.\]"):
        s2a(torch.randn(5, device=DEVICE))


def test_step_mode_container():
    x = torch.randn(T, N, 4, device=DEVICE)
    c = layer.StepModeContainer(True, "s", Integrator())
    assert_close("StepModeContainer s", x[0], c(x[0]), 0)
    functional.reset_net(c)
    c.step_mode = "m"
    assert_close("StepModeContainer m stateful", x.cumsum(0), c(x), TOL)
    c2 = layer.StepModeContainer(False, "m", nn.Linear(4, 2)).to(DEVICE)
    assert_close("StepModeContainer m stateless", c2[0](x), c2(x), TOL)


def test_recurrent_containers():
    x = torch.randn(T, N, 3, device=DEVICE)
    ew = layer.ElementWiseRecurrentContainer(nn.Tanh(), lambda y, x: y + x, step_mode="m")
    y, outs = torch.zeros(N, 3, device=DEVICE), []
    for t in range(T):
        y = torch.tanh(y + x[t])
        outs.append(y)
    assert_close("ElementWiseRecurrentContainer", torch.stack(outs), ew(x), TOL)
    functional.reset_net(ew)
    assert ew.y is None
    lr = layer.LinearRecurrentContainer(nn.Sequential(nn.Linear(3, 2), nn.Tanh()), 3, 2, step_mode="m").to(DEVICE)
    y, outs = torch.zeros(N, 2, device=DEVICE), []
    for t in range(T):
        y = lr.sub_module(lr.rc(torch.cat((x[t], y), -1)))
        outs.append(y)
    assert_close("LinearRecurrentContainer", torch.stack(outs), lr(x), TOL)
    with pytest.raises(ValueError, match="reset_net"):
        lr(torch.randn(T, N + 1, 3, device=DEVICE))


# ------------------------------------------------------------------------------------------------
# SpikingJelly 2.0.0 compatibility
# ------------------------------------------------------------------------------------------------
SJ_CASES = [
    ("Conv1d", (3, 4, 3), {"padding": 1}, (N, 3, 7)),
    ("Conv2d", (3, 4, 3), {"stride": 2, "bias": False}, (N, 3, 7, 6)),
    ("Conv3d", (2, 3, 2), {}, (N, 2, 3, 4, 4)),
    ("ConvTranspose1d", (3, 2, 3), {"stride": 2}, (N, 3, 5)),
    ("Linear", (6, 4), {}, (N, 6)),
    ("BatchNorm1d", (4,), {}, (N, 4, 5)),
    ("BatchNorm2d", (4,), {"momentum": 0.3}, (N, 4, 3, 3)),
    ("BatchNorm3d", (4,), {"affine": False}, (N, 4, 2, 3, 3)),
    ("GroupNorm", (2, 4), {}, (N, 4, 3)),
    ("MaxPool1d", (2,), {}, (N, 3, 6)),
    ("MaxPool2d", (2,), {"stride": 1}, (N, 3, 5, 4)),
    ("MaxPool3d", (2,), {}, (N, 2, 4, 4, 4)),
    ("AvgPool1d", (3,), {"padding": 1}, (N, 3, 6)),
    ("AvgPool2d", (2,), {}, (N, 3, 5, 4)),
    ("AvgPool3d", (2,), {}, (N, 2, 4, 4, 4)),
    ("AdaptiveAvgPool1d", (2,), {}, (N, 3, 6)),
    ("AdaptiveAvgPool2d", (2,), {}, (N, 3, 5, 4)),
    ("AdaptiveAvgPool3d", (2,), {}, (N, 2, 4, 4, 4)),
    ("Flatten", (), {}, (N, 3, 2, 2)),
    ("Upsample", (), {"scale_factor": 2}, (N, 3, 2, 2)),
    ("WSConv2d", (3, 4, 3), {}, (N, 3, 5, 5)),
    ("WSLinear", (6, 4), {}, (N, 6)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", SJ_CASES, ids=[c[0] for c in SJ_CASES])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_matches_spikingjelly(name, args, kwargs, shape, step_mode):
    sj_layer = pytest.importorskip("spikingjelly.activation_based.layer")
    sj = getattr(sj_layer, name)(*args, **kwargs, step_mode=step_mode)
    ours = getattr(layer, name)(*args, **kwargs, step_mode=step_mode).to(DEVICE)
    sj = sj.to(DEVICE)
    with torch.no_grad():
        for p in sj.parameters():
            p.copy_(torch.randn_like(p))
    assert list(ours.state_dict()) == list(sj.state_dict())
    ours.load_state_dict(sj.state_dict(), strict=True)
    x = torch.randn((T, *shape) if step_mode == "m" else shape, device=DEVICE)
    y_sj, y = sj(x), ours(x)  # BatchNorm: train mode, so the running statistics update too
    assert_close(f"{name} vs SpikingJelly", y_sj, y, TOL)
    for (k, a), (_, b) in zip(sj.state_dict().items(), ours.state_dict().items()):
        assert_close(f"{name} {k} after forward", a.float(), b.float(), TOL)
    assert ours.step_mode == sj.step_mode


@pytest.mark.parametrize("cls_name", ["Dropout", "Dropout2d"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_dropout_matches_spikingjelly_same_seed(cls_name, step_mode):
    sj_layer = pytest.importorskip("spikingjelly.activation_based.layer")
    sj, ours = getattr(sj_layer, cls_name)(0.4, step_mode=step_mode), getattr(layer, cls_name)(0.4, step_mode=step_mode)
    x = torch.rand(T, N, 6, 3, 3, device=DEVICE) + 0.1
    steps = [x] if step_mode == "m" else list(x)
    torch.manual_seed(7)
    y_sj = [sj(s) for s in steps]
    torch.manual_seed(7)
    y = [ours(s) for s in steps]
    for a, b in zip(y_sj, y):
        assert torch.equal(a, b)
    assert repr(ours) == repr(sj)


def test_container_state_dict_loads_from_spikingjelly():
    sj_layer = pytest.importorskip("spikingjelly.activation_based.layer")
    sj = nn.Sequential(sj_layer.SeqToANNContainer(sj_layer.Conv2d(2, 4, 3), sj_layer.BatchNorm2d(4)),
                       sj_layer.Flatten(step_mode="m"), sj_layer.Linear(4 * 9, 3, step_mode="m"))
    ours = nn.Sequential(layer.SeqToANNContainer(layer.Conv2d(2, 4, 3), layer.BatchNorm2d(4)),
                         layer.Flatten(step_mode="m"), layer.Linear(4 * 9, 3, step_mode="m"))
    assert list(ours.state_dict()) == list(sj.state_dict())
    ours.load_state_dict(sj.state_dict())
    sj, ours = sj.to(DEVICE).eval(), ours.to(DEVICE).eval()
    x = torch.randn(T, N, 2, 5, 5, device=DEVICE)
    assert_close("container vs SpikingJelly", sj(x), ours(x), TOL)
