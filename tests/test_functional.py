"""fastspike.functional: network configuration helpers, forward-over-time helpers, small utilities and
spike losses (against closed forms, and against SpikingJelly 2.0.0 when it is installed)."""

import pytest
import torch
import torch.nn as nn

from fastspike import base, functional, layer
from fastspike.ops._backend import BACKENDS
from helpers import assert_close

T, N = 4, 3


class Integrator(base.MemoryModule):
    """v[t] = v[t-1] + x[t]."""

    def __init__(self):
        super().__init__()
        self.register_memory("v", 0.0)

    def single_step_forward(self, x):
        self.v = self.v + x
        return self.v


class WithBackend(nn.Module):
    def __init__(self, supported=None):
        super().__init__()
        self.backend = "auto"
        if supported is not None:
            self.supported_backends = supported


def _net():
    return nn.Sequential(
        layer.Linear(5, 4),
        Integrator(),
        nn.Sequential(layer.Dropout(0.5), Integrator()),
        layer.SeqToANNContainer(nn.Linear(4, 4), layer.Flatten()),
        layer.StepModeContainer(True, "s", Integrator()),
    )


# ------------------------------------------------------------------------------------------------
# network configuration
# ------------------------------------------------------------------------------------------------
def test_reset_net_resets_every_memory():
    net = _net()
    functional.set_step_mode(net, "m")
    net(torch.randn(T, N, 5))
    integrators = [m for m in net.modules() if isinstance(m, Integrator)]
    assert len(integrators) == 3 and all(isinstance(m.v, torch.Tensor) for m in integrators)
    assert net[2][0].mask is not None
    assert len(functional.collect_reset_modules(net)) == 4
    functional.reset_net(net)
    assert all(m.v == 0.0 and not isinstance(m.v, torch.Tensor) for m in integrators)
    assert net[2][0].mask is None
    with pytest.raises(TypeError, match="nn.Module"):
        functional.reset_net(torch.zeros(3))


def test_set_step_mode_recurses_but_not_into_containers():
    net = _net()
    functional.set_step_mode(net, "m")
    assert net[0].step_mode == "m" and net[1].step_mode == "m" and net[2][0].step_mode == "m"
    assert net[2][1].step_mode == "m"
    assert net[3].step_mode == "m" and net[3][1].step_mode == "s"  # SeqToANNContainer's children stay 's'
    assert net[4].step_mode == "m" and net[4][0].step_mode == "s"  # StepModeContainer: itself set, not children
    functional.set_step_mode(net, "s")
    assert net[0].step_mode == "s" and net[2][1].step_mode == "s" and net[4].step_mode == "s"
    assert net[3].step_mode == "m"  # fixed multi-step container left unchanged
    with pytest.raises(ValueError, match="step_mode must be 's'.*'m'.*'x'"):
        functional.set_step_mode(net, "x")
    with pytest.raises(ValueError, match="supports step_mode"):
        functional.set_step_mode(nn.Sequential(_SingleOnly()), "m")


class _SingleOnly(nn.Module, base.SingleStepModule):
    def __init__(self):
        super().__init__()
        self.step_mode = "s"


def test_set_step_mode_then_forward_equals_per_step():
    net = nn.Sequential(layer.Conv2d(2, 3, 3, padding=1), layer.BatchNorm2d(3).eval(), layer.MaxPool2d(2),
                        layer.Flatten(), layer.Linear(12, 2), Integrator())
    x = torch.randn(T, N, 2, 4, 4)
    ref = torch.stack([net(x[t]) for t in range(T)])
    functional.reset_net(net)
    functional.set_step_mode(net, "m")
    assert_close("net m vs s", ref, net(x), 1e-5)


def test_set_backend_validates_and_sets():
    net = nn.Sequential(WithBackend(), nn.Sequential(WithBackend()), nn.Linear(2, 2))
    functional.set_backend(net, "torch")
    assert net[0].backend == "torch" and net[1][0].backend == "torch"
    assert not hasattr(net[2], "backend")
    for bad in ("cuda", "cupy", "Torch", None):
        with pytest.raises(ValueError, match=r"backend must be one of .*'cpp'.*but got"):
            functional.set_backend(net, bad)
    assert net[0].backend == "torch"  # unchanged after a rejected name
    functional.set_backend(net, "cpp", instance=type(None))  # nothing matches
    assert net[0].backend == "torch"
    limited = nn.Sequential(WithBackend(supported=("torch",)), WithBackend())
    with pytest.warns(UserWarning, match="supports backends"):
        functional.set_backend(limited, "triton")
    assert limited[0].backend == "auto" and limited[1].backend == "triton"
    assert set(BACKENDS) == {"auto", "torch", "triton", "cpp"}


def test_detach_net_cuts_history_keeps_values():
    net = nn.Sequential(nn.Linear(3, 3), Integrator())
    net(torch.randn(N, 3))
    v = net[1].v
    assert v.grad_fn is not None
    functional.detach_net(net)
    assert net[1].v.grad_fn is None and torch.equal(net[1].v, v.detach())


# ------------------------------------------------------------------------------------------------
# forward over time
# ------------------------------------------------------------------------------------------------
def test_multi_step_forward_module_list_and_callable():
    x = torch.randn(T, N, 2)
    lin = nn.Linear(2, 2)
    y = functional.multi_step_forward(x, [lin, Integrator()])
    assert_close("multi_step_forward list", lin(x).cumsum(0), y, 1e-6)
    assert_close("multi_step_forward callable", x * 2, functional.multi_step_forward(x, lambda v: v * 2), 0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        functional.multi_step_forward([1, 2], lin)


def test_seq_to_ann_forward_shapes_tuple_and_errors():
    x = torch.randn(T, N, 3, 4)
    y = functional.seq_to_ann_forward(x, nn.Flatten())
    assert y.shape == (T, N, 12) and torch.equal(y, x.flatten(2))
    a, b = functional.seq_to_ann_forward((x, x * 2), lambda u, v: (u + v, u - v))
    assert torch.equal(a, x * 3) and torch.equal(b, -x)
    with pytest.raises(ValueError, match=r"\[T, N, \.\.\.\].*\(4,\)"):
        functional.seq_to_ann_forward(torch.randn(4), nn.Identity())
    with pytest.raises(ValueError, match="leading"):
        functional.seq_to_ann_forward((x, x[:, :1]), lambda u, v: u)


def test_chunk_and_t_last_forwards():
    x = torch.randn(7, N, 2)
    ms = layer.MultiStepContainer(Integrator())
    full = ms(x)
    functional.reset_net(ms)
    assert_close("chunk_multi_step_forward", full, functional.chunk_multi_step_forward(3, x, ms), 1e-6)
    with pytest.raises(ValueError, match="split_size"):
        functional.chunk_multi_step_forward(0, x, ms)
    xt = x.permute(1, 2, 0)  # [N, C, T]
    assert_close("t_last_multi_step_forward", xt.cumsum(-1), functional.t_last_multi_step_forward(xt, Integrator()),
                 1e-6)
    lin = nn.Linear(2, 5)
    y = functional.t_last_seq_to_ann_forward(xt.unsqueeze(1), lambda v: lin(v.squeeze(1)))  # [N, 1, C, T] -> [N, 5, T]
    assert_close("t_last_seq_to_ann_forward", lin(x).permute(1, 2, 0), y, 1e-6)


# ------------------------------------------------------------------------------------------------
# utilities and losses
# ------------------------------------------------------------------------------------------------
def test_first_spike_index_delay_one_hot():
    s = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0.5]])
    expected = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(functional.first_spike_index(s), expected)
    x = torch.arange(1.0, 6.0).view(5, 1)
    assert torch.equal(functional.delay(x, 2).flatten(), torch.tensor([0, 0, 1, 2, 3.0]))
    assert functional.delay(x, 0) is x and torch.equal(functional.delay(x, 9), torch.zeros_like(x))
    with pytest.raises(ValueError, match="delay_steps"):
        functional.delay(x, -1)
    oh = functional.redundant_one_hot(torch.tensor([2, 0]), 3, 2)
    assert torch.equal(oh, torch.tensor([[0, 0, 0, 0, 1, 1], [1, 1, 0, 0, 0, 0.0]]))


def test_set_threshold_margin_and_kaiming():
    out = nn.Module()
    out.v_threshold = 1.0
    label = torch.tensor([[0, 1, 0], [1, 0, 0]])
    functional.set_threshold_margin(out, label)
    assert torch.allclose(out.v_threshold, torch.tensor([[0.9, 1.1, 0.9], [1.1, 0.9, 0.9]]))
    out.eval()
    functional.set_threshold_margin(out, label, eval_threshold=0.7)
    assert out.v_threshold == 0.7
    net = nn.Sequential(layer.Conv2d(2, 8, 3), nn.BatchNorm2d(8), nn.Linear(4, 4))
    bn_w = net[1].weight.detach().clone()
    w0 = net[0].weight.detach().clone()
    functional.kaiming_normal_conv_linear_weight(net)
    assert not torch.equal(w0, net[0].weight) and torch.equal(bn_w, net[1].weight)


def test_tet_loss_is_mean_of_per_step_cross_entropy():
    x = torch.randn(T, N, 5, requires_grad=True)
    target = torch.tensor([0, 4, 2])
    loss = functional.temporal_efficient_training_cross_entropy(x, target)
    ref = torch.stack([nn.functional.cross_entropy(x[t], target) for t in range(T)]).mean()
    assert_close("TET loss", ref, loss, 1e-6)
    x2 = torch.randn(T, N, 5, 2, 3)
    t2 = torch.randint(0, 5, (N, 2, 3))
    ref2 = torch.stack([nn.functional.cross_entropy(x2[t], t2) for t in range(T)]).mean()
    assert_close("TET loss dense", ref2, functional.temporal_efficient_training_cross_entropy(x2, t2), 1e-6)
    with pytest.raises(ValueError, match=r"\[T, N, C"):
        functional.temporal_efficient_training_cross_entropy(torch.randn(N, 5), target)


def test_kernels_and_spike_similar_loss():
    x, y = torch.randn(4, 3), torch.randn(5, 3)
    assert_close("gaussian", torch.exp(-torch.cdist(x, y).square() / 2), functional.kernel_dot_product(x, y,
                                                                                                       "gaussian",
                                                                                                       1.0), 1e-5)
    assert_close("polynomial", (x @ y.t()) ** 3, functional.kernel_dot_product(x, y, "polynomial", 3), 1e-6)
    with pytest.raises(ValueError, match="kernel"):
        functional.kernel_dot_product(x, y, "rbf")
    spikes = (torch.rand(4, 2, 6) > 0.5).float()
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]])
    loss = functional.spike_similar_loss(spikes, labels)
    assert loss.dim() == 0 and loss >= 0
    with pytest.raises(ValueError, match="loss_type"):
        functional.spike_similar_loss(spikes, labels, "linear", "hinge")


def test_utilities_match_spikingjelly():
    sjf = pytest.importorskip("spikingjelly.activation_based.functional")
    s = (torch.rand(3, 4, 7) > 0.6).float()
    assert torch.equal(sjf.first_spike_index(s), functional.first_spike_index(s))
    x = torch.randn(6, 2, 3)
    for d in (0, 1, 5, 6, 9):
        assert torch.equal(sjf.delay(x, d), functional.delay(x, d))
    labels = torch.tensor([1, 3, 0])
    assert torch.equal(sjf.redundant_one_hot(labels, 4, 3), functional.redundant_one_hot(labels, 4, 3))
    logits = torch.randn(T, N, 5)
    target = torch.tensor([1, 0, 4])
    assert_close("TET vs SpikingJelly", sjf.temporal_efficient_training_cross_entropy(logits, target),
                 functional.temporal_efficient_training_cross_entropy(logits, target), 1e-6)
    spikes = (torch.rand(4, 10) > 0.5).float()
    lab = torch.tensor([[1, 0], [0, 1], [1, 1], [1, 0]])
    for kernel, loss_type, args in [("linear", "mse", ()), ("gaussian", "l1", (2.0,)), ("sigmoid", "bce", (0.5,))]:
        assert_close(f"spike_similar_loss {kernel}", sjf.spike_similar_loss(spikes, lab, kernel, loss_type, *args),
                     functional.spike_similar_loss(spikes, lab, kernel, loss_type, *args), 1e-6)
    xs = torch.randn(T, N, 2)
    lin = nn.Linear(2, 3)
    assert_close("seq_to_ann vs SpikingJelly", sjf.seq_to_ann_forward(xs, lin), functional.seq_to_ann_forward(xs, lin),
                 0)
    assert_close("multi_step vs SpikingJelly", sjf.multi_step_forward(xs, [lin, nn.ReLU()]),
                 functional.multi_step_forward(xs, [lin, nn.ReLU()]), 0)
    xt = torch.randn(N, 2, T)  # time-last
    assert_close("t_last_seq_to_ann vs SpikingJelly", sjf.t_last_seq_to_ann_forward(xt, lin),
                 functional.t_last_seq_to_ann_forward(xt, lin), 1e-6)
    assert_close("t_last_multi_step vs SpikingJelly", sjf.t_last_multi_step_forward(xt, lin),
                 functional.t_last_multi_step_forward(xt, lin), 0)


# ------------------------------------------------------------------------------------------------
# with fastspike's neurons
# ------------------------------------------------------------------------------------------------
def test_lif_network_integration():
    neuron = pytest.importorskip("fastspike.neuron")
    if not hasattr(neuron, "LIFNode"):
        pytest.skip("fastspike.neuron.LIFNode is not available")

    def make():
        torch.manual_seed(3)
        net = nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), layer.BatchNorm2d(4), neuron.LIFNode(),
                            layer.MaxPool2d(2), layer.Dropout(0.3), layer.Flatten(), layer.Linear(4 * 9, 3),
                            neuron.LIFNode())
        with torch.no_grad():  # weights that make both neuron layers fire sometimes
            net[0].weight.normal_(0, 0.5)
            net[6].weight.normal_(0.1, 0.5)
        return net

    x = torch.rand(T, N, 1, 6, 6) * 3
    net_s, net_m = make(), make()
    functional.set_step_mode(net_m, "m")
    functional.set_backend(net_s, "torch")
    functional.set_backend(net_m, "cpp")
    assert all(m.step_mode == "m" and m.backend == "cpp" for m in net_m if isinstance(m, neuron.LIFNode))
    # train-mode BatchNorm normalises over T*N in 'm' mode but over N per step in 's' mode: compare in eval
    net_s.eval(), net_m.eval()
    out_s = torch.stack([net_s(x[t]) for t in range(T)])
    out_m = net_m(x)
    assert out_m.shape == (T, N, 3)
    assert 0.1 < out_m.mean() < 0.9  # non-trivial activity
    # spikes agree exactly unless a membrane sits within rounding of the threshold (conv on [T*N] vs [N])
    assert (out_s != out_m).float().mean() <= 0.05
    assert net_m[2].v.shape == (N, 4, 6, 6)
    functional.reset_net(net_m)
    assert not isinstance(net_m[2].v, torch.Tensor) or not net_m[2].v.any()
    # gradients flow through the whole multi-step network
    net_m.train()
    functional.reset_net(net_m)
    net_m(x).sum().backward()
    assert net_m[0].weight.grad is not None and net_m[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="backend"):
        functional.set_backend(net_m, "cuda")
