"""ANN-to-SNN conversion: accuracy on scikit-learn's digits, per-site activations, QCFS, errors."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import ann2snn, neuron
from fastspike.ann2snn import ConversionError, ReLUConverter, QCFS, simulate

sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # these nets are tiny: intra-op threads only add synchronisation (20x slower on a busy 2-core machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------------
# digits: data, a small CNN, training
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    d = sklearn_datasets.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1300], perm[1300:]
    return x[tr], y[tr], x[te], y[te]


def _cnn(act):
    # BatchNorm (folded), AvgPool, MaxPool (spike-gated), Flatten, Dropout (removed) all on the conversion path
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), act(), nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 32), act(), nn.Linear(32, 10))


def _train(model, x, y, epochs=15, seed=0):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            F.cross_entropy(model(x[b]), y[b]).backward()
            opt.step()
    return model.eval()


def _accuracy(out, y):
    return (out.argmax(1) == y).float().mean().item() * 100.0


def _loader(x, batch=256):
    return [(x[i:i + batch], None) for i in range(0, len(x), batch)]


@pytest.fixture(scope="module")
def relu_cnn(digits):
    torch.manual_seed(0)
    xtr, ytr, xte, yte = digits
    ann = _train(_cnn(nn.ReLU), xtr, ytr)
    with torch.no_grad():
        acc = _accuracy(ann(xte), yte)
    assert acc > 95.0, f"the ANN itself should learn digits, got {acc:.1f}%"
    return ann, acc


@pytest.fixture(scope="module")
def qcfs_cnn(digits):
    torch.manual_seed(0)
    xtr, ytr, xte, yte = digits
    ann = _train(_cnn(lambda: QCFS(L=8, threshold=8.0)), xtr, ytr)
    with torch.no_grad():
        acc = _accuracy(ann(xte), yte)
    assert acc > 95.0, f"the QCFS ANN itself should learn digits, got {acc:.1f}%"
    return ann, acc


@pytest.mark.parametrize("mode", ["max", "99.9%"])
def test_digits_relu_conversion_within_1_point_at_T64(digits, relu_cnn, mode):
    xtr, _, xte, yte = digits
    ann, ann_acc = relu_cnn
    snn = ReLUConverter(_loader(xtr), mode=mode)(ann)
    snn_acc = _accuracy(simulate(snn, xte, 64), yte)
    assert abs(snn_acc - ann_acc) <= 1.0, f"mode={mode}: ANN {ann_acc:.2f}% vs SNN(T=64) {snn_acc:.2f}%"
    kinds = [type(m) for m in snn.modules()]
    assert nn.ReLU not in kinds and nn.BatchNorm2d not in kinds and nn.Dropout not in kinds
    assert nn.MaxPool2d not in kinds and ann2snn.SpikeMaxPool in kinds
    assert sum(isinstance(m, neuron.IFNode) for m in snn.modules()) == 3


def test_digits_qcfs_conversion(digits, qcfs_cnn):
    _, _, xte, yte = digits
    ann, ann_acc = qcfs_cnn
    snn = ReLUConverter(mode="qcfs")(ann)  # no dataloader: thresholds come from the trained QCFS layers
    means = simulate(snn, xte, 64, return_all=True)
    acc8, acc64 = _accuracy(means[7], yte), _accuracy(means[63], yte)
    assert abs(acc8 - ann_acc) <= 2.0, f"QCFS ANN {ann_acc:.2f}% vs SNN(T=8) {acc8:.2f}%"
    assert abs(acc64 - ann_acc) <= 1.0, f"QCFS ANN {ann_acc:.2f}% vs SNN(T=64) {acc64:.2f}%"
    ifs = [m for m in snn.modules() if isinstance(m, neuron.IFNode)]
    qs = [m for m in ann.modules() if isinstance(m, QCFS)]
    assert [n.v_threshold for n in ifs] == pytest.approx([float(q.threshold.detach()) for q in qs])


def test_user_stats_replace_the_dataloader(digits, relu_cnn):
    xtr, _, xte, _ = digits
    ann, _ = relu_cnn
    conv = ReLUConverter(_loader(xtr), mode="max")
    stats = conv.collect_stats(ann)
    assert list(stats) == conv.sites(ann) == ["2", "5", "10"]
    ref = simulate(conv(ann), xte[:50], 16)
    assert conv.thresholds == pytest.approx(stats)
    out = simulate(ReLUConverter(stats=stats)(ann), xte[:50], 16)
    assert torch.equal(ref, out)
    # fx node names work as keys too; a missing site without a dataloader is an error naming it
    by_node = {"_2": stats["2"], "_5": stats["5"]}
    with pytest.raises(ConversionError, match="'10'"):
        ReLUConverter(stats=by_node)(ann)


def test_ann_is_left_untouched(relu_cnn, digits):
    ann, _ = relu_cnn
    x = digits[2][:20]
    before = ann(x).detach().clone()
    state = {k: v.clone() for k, v in ann.state_dict().items()}
    ReLUConverter(stats={"2": 1.0, "5": 1.0, "10": 1.0})(ann)
    assert torch.equal(ann(x), before)
    assert all(torch.equal(state[k], v) for k, v in ann.state_dict().items())
    assert not ann.training


# ------------------------------------------------------------------------------------------------
# activations: firing rate x lambda approximates the ANN, error shrinking with T
# ------------------------------------------------------------------------------------------------
def _rate_errors(ann, x, Ts=(8, 32, 128), **kw):
    snn = ReLUConverter([x], **kw)(ann)
    ref = ann(x).detach()
    means = simulate(snn, x, max(Ts), return_all=True)
    return [((means[T - 1] - ref).norm() / ref.norm()).item() for T in Ts]


class FunctionalRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3, self.fc4, self.fc5, self.fc6 = (nn.Linear(12, 12) for _ in range(6))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        x = self.fc3(x).relu()
        y = self.fc4(x)
        F.relu(y, inplace=True)  # in-place: later readers of y see the rectified value
        z = self.fc5(y)
        self.act(z)  # the same through an in-place module
        return self.fc6(z)


def test_functional_relu_rates():
    torch.manual_seed(1)
    ann = FunctionalRelu().eval()
    x = torch.rand(64, 12) * 2
    conv = ReLUConverter([x])
    assert conv.sites(ann) == ["relu", "relu_1", "relu_2", "relu_3", "act"]
    errs = _rate_errors(ann, x, v_init=0.5)
    assert errs[-1] < 0.03 and errs[-1] < errs[0] / 3, errs


def test_clipped_relus_rates():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.fc3, self.fc4 = (nn.Linear(12, 12) for _ in range(4))
            self.act1, self.act2 = nn.ReLU6(), nn.Hardtanh(0.0, 0.3)

        def forward(self, x):
            x = self.act1(self.fc1(x) * 8)  # drives the clip at 6
            x = F.relu6(self.fc2(x))
            x = F.hardtanh(self.fc3(x), 0.0, 0.5)
            return self.fc4(self.act2(x))

    torch.manual_seed(8)
    ann = Net().eval()
    x = torch.rand(64, 12) * 2
    conv = ReLUConverter([x], v_init=0.5)
    errs = _rate_errors(ann, x, v_init=0.5)
    assert errs[-1] < 0.03 and errs[-1] < errs[0] / 3, errs
    conv(ann)
    assert conv.thresholds["act1"] == 6.0 and conv.thresholds["act2"] <= 0.3
    conv = ReLUConverter(stats={"act1": 9.0, "relu6": 2.0, "hardtanh": 1.0, "act2": 0.2})
    conv(ann)
    assert conv.thresholds == {"act1": 6.0, "relu6": 2.0, "hardtanh": 0.5, "act2": 0.2}
    with pytest.raises(ConversionError, match=r"Hardtanh\) at graph node"):
        ReLUConverter(stats={})(nn.Sequential(nn.Hardtanh()))  # clips at -1: not a ReLU


class ResBlock(nn.Module):
    def __init__(self, cin, c, stride=1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)  # shared by two call sites, as in torchvision's BasicBlock
        self.downsample = None
        if stride != 1 or cin != c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:  # a Python attribute test: fine for torch.fx
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.block = ResBlock(6, 6)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.down = ResBlock(6, 8, stride=2)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.pool(self.block(self.stem(x)))
        x = self.down(x)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def test_residual_block_with_batchnorm_rates():
    torch.manual_seed(2)
    ann = _randomize_bn(ResNetTiny()).eval()
    x = torch.rand(16, 2, 8, 8)
    conv = ReLUConverter([x])
    assert conv.sites(ann) == ["stem.2", "block_relu", "block_relu_1", "down_relu", "down_relu_1"]
    snn = conv(ann)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in snn.modules())  # incl. the downsample's
    assert sum(isinstance(m, neuron.IFNode) for m in snn.modules()) == 5  # one neuron per call of a shared ReLU
    errs = _rate_errors(ann, x, v_init=0.5)
    assert errs[-1] < 0.05 and errs[-1] < errs[0] / 2, errs


def test_maxpool_and_functional_ops_rates():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(32, 3)
            self.drop = nn.Dropout(0.5)
            self.gain = nn.Parameter(torch.tensor(0.8))

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.c1(x)), 2)
            a = F.relu(self.c2(x))
            x = torch.cat([a, x], 1) * 0.5 * torch.sigmoid(self.gain)  # constants: any op on parameters is fine
            x = F.dropout(x, 0.3, self.training)
            x = F.avg_pool2d(x, 2).view(x.size(0), -1)
            return self.fc(self.drop(x))

    torch.manual_seed(3)
    ann = Net().eval()
    x = torch.rand(32, 1, 10, 10)
    errs = _rate_errors(ann, x, v_init=0.5)
    assert errs[-1] < 0.05 and errs[-1] < errs[0], errs


def test_spike_max_pool_follows_the_highest_rate():
    T, rates = 400, torch.tensor([0.2, 0.55, 0.35, 0.1])
    pool = ann2snn.SpikeMaxPool(nn.MaxPool2d(2))
    phase = torch.rand(4)
    spikes = [((t + 1) * rates + phase).floor() - (t * rates + phase).floor() for t in range(T)]
    out = sum(pool(s.view(1, 1, 2, 2)) for s in spikes).item() / T
    naive = sum(F.max_pool2d(s.view(1, 1, 2, 2), 2) for s in spikes).item() / T
    assert abs(out - 0.55) < 0.02, out
    assert naive > 0.7  # plain max pooling of spikes counts the union of spike trains
    pool.reset()
    assert pool.acc == 0.0
    adaptive = ann2snn.SpikeMaxPool(nn.AdaptiveMaxPool2d(1))
    out = sum(adaptive(s.view(1, 1, 2, 2)) for s in spikes).item() / T
    assert abs(out - 0.55) < 0.02, out


def test_statistics_modes():
    x = torch.arange(1000.0).view(10, 100) - 1.0  # the ReLU output is 0, 0, 1, ..., 998
    obs = ann2snn.StatisticObserver
    assert obs.statistic(F.relu(x), "max") == 998.0
    assert obs.statistic(F.relu(x), 0.5) == 499.0
    assert obs.statistic(F.relu(x), "99.9%") == pytest.approx(997.0, abs=1.0)
    assert obs.statistic(F.relu(x), "50%") == pytest.approx(498.5, abs=1.0)
    # through the converter: max over batches, percentiles averaged over batches
    net = nn.Sequential(nn.Identity(), nn.ReLU())
    batches = [torch.full((4, 3), 2.0), torch.full((4, 3), 6.0)]
    assert ReLUConverter(batches, mode="max").collect_stats(net) == {"1": 6.0}
    assert ReLUConverter(batches, mode="Max").collect_stats(net) == {"1": 6.0}
    assert ReLUConverter(batches, mode="99%").collect_stats(net) == {"1": 4.0}
    assert ReLUConverter(batches, mode=0.5).collect_stats(net) == {"1": 3.0}
    assert ReLUConverter(batches, mode="max", momentum=0.1).collect_stats(net) == {"1": pytest.approx(2.4)}
    with pytest.raises(ValueError, match="momentum"):
        ReLUConverter(momentum=0.0)


def test_batchnorm_folding_is_exact():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv1d(3, 5, 3, bias=False), nn.BatchNorm1d(5)
            self.c2, self.b2 = nn.Conv2d(5, 4, 1), nn.BatchNorm2d(4)
            self.b3 = nn.BatchNorm2d(4)  # follows a ReLU: becomes a fixed channel affine map
            self.fc, self.b4 = nn.Linear(4 * 6, 7), nn.BatchNorm1d(7)

        def forward(self, x):
            x = self.b1(self.c1(x))
            x = self.b2(self.c2(x.unsqueeze(-1)))
            x = self.b3(F.relu(x))
            return self.b4(self.fc(x.flatten(1)))

    torch.manual_seed(4)
    ann = _randomize_bn(Net()).eval()
    x = torch.randn(9, 3, 8)
    fused = ann2snn.fuse_batchnorm(ann)
    assert sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules()) == 0
    assert sum(isinstance(m, ann2snn.ChannelAffine) for m in fused.modules()) == 1
    torch.testing.assert_close(fused(x), ann(x), rtol=1e-5, atol=1e-5)
    # the same network through the whole converter: rates approach the ANN
    errs = _rate_errors(ann, x, v_init=0.5)
    assert errs[-1] < 0.05 and errs[-1] < errs[0], errs


def test_export_and_ann2snn_fold_batchnorm_with_one_rule():
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from fastspike.export import fold_batchnorm, fold_bn_weights

    torch.manual_seed(5)
    net = _randomize_bn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())).eval()
    by_export = fold_batchnorm(net)[0]
    by_ann2snn = ann2snn.fuse_batchnorm(net).get_submodule("0")
    assert torch.equal(by_export.weight, by_ann2snn.weight) and torch.equal(by_export.bias, by_ann2snn.bias)
    w, b = fold_bn_weights(net[0].weight, net[0].bias, net[1])
    assert torch.equal(w, by_export.weight) and torch.equal(b, by_export.bias)
    ref = fuse_conv_bn_eval(net[0], net[1])  # torch's fusion, which SpikingJelly uses: bit for bit
    assert torch.equal(w, ref.weight) and torch.equal(b, ref.bias)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(ann2snn.ChannelAffine.from_batchnorm(net[1])(x), net[1](x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="num_features=4"):
        fold_bn_weights(torch.ones(3, 2), None, net[1])


# ------------------------------------------------------------------------------------------------
# QCFS
# ------------------------------------------------------------------------------------------------
def test_qcfs_forward_and_gradients():
    q = QCFS(L=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.0, 0.24, 0.26, 0.74, 0.76, 1.3, 1.9, 2.0, 5.0], requires_grad=True)
    y = q(x)
    expected = 2.0 * torch.floor(torch.clamp(x.detach() / 2.0, 0, 1) * 4 + 0.5) / 4
    assert torch.equal(y.detach(), expected)
    assert torch.equal(y.detach(), torch.tensor([0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.5, 2.0, 2.0, 2.0]))
    y.sum().backward()
    # straight-through floor: d/dx = 1 on [0, lambda] (torch.clamp passes its bounds), 0 where clamped;
    # d/dlambda = y/lambda - x/lambda there, 1 above lambda, 0 below 0
    inside = (x.detach() >= 0) & (x.detach() <= 2.0)
    torch.testing.assert_close(x.grad, inside.float())
    lam_grad = torch.where(inside, y.detach() / 2.0 - x.detach() / 2.0, (x.detach() > 2.0).float()).sum()
    torch.testing.assert_close(q.threshold.grad, lam_grad)
    with pytest.raises(ValueError, match="L"):
        QCFS(L=0)
    with pytest.raises(ValueError, match="threshold"):
        QCFS(threshold=-1.0)


def test_qcfs_conversion_is_exact_for_constant_input_at_T_equal_L():
    torch.manual_seed(5)
    L = 4
    ann = nn.Sequential(nn.Linear(10, 40), QCFS(L=L, threshold=1.3)).eval()
    x = torch.randn(50, 10)
    snn = ReLUConverter(mode="qcfs")(ann)
    node = snn.get_submodule("1")[0]
    assert isinstance(node, neuron.IFNode) and node.v_reset is None and node.v_threshold == pytest.approx(1.3)
    assert node.v == pytest.approx(0.65)  # initial membrane potential: half the threshold
    out = simulate(snn, x, L)
    ref = ann(x).detach()
    mismatch = (out - ref).abs() > 1e-5
    assert mismatch.sum() <= 2, f"{int(mismatch.sum())} of {ref.numel()} differ"  # 0 here; ties may round apart


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.Sigmoid()

    def forward(self, x):
        return self.act(self.fc(x)) * torch.tanh(x)


def test_unsupported_ops_are_named_with_their_place():
    ann = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), Gate())
    with pytest.raises(ConversionError) as info:
        ReLUConverter(stats={"1": 1.0})(ann)
    msg = str(info.value)
    assert "3 operation(s)" in msg
    assert "module '2.act' (torch.nn.modules.activation.Sigmoid) at graph node '_2_act'" in msg
    assert "function 'torch.tanh' at graph node 'tanh' inside module '2' (Gate)" in msg
    assert "function 'operator.mul' at graph node 'mul'" in msg and "not linear" in msg
    assert "test_ann2snn.py" in msg and "torch.tanh(x)" in msg  # the user's source line
    assert "Traceback" not in msg


def test_data_dependent_control_flow_gets_a_readable_error():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:
                return self.fc(x).relu()
            return x

    with pytest.raises(ConversionError) as info:
        ReLUConverter(stats={})(Branchy())
    msg = str(info.value)
    assert "could not trace Branchy" in msg and "control flow" in msg
    assert "test_ann2snn.py" in msg and "if x.sum() > 0" in msg
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        ReLUConverter(mode="mean")
    with pytest.raises(ValueError, match="mode"):
        ReLUConverter(mode=1.5)
    with pytest.raises(ValueError, match="stats"):
        ReLUConverter(stats={"relu": -1.0})
    with pytest.raises(TypeError, match="nn.Module"):
        ReLUConverter(stats={})(lambda x: x)
    with pytest.raises(ConversionError, match="return_indices"):
        ReLUConverter(stats={})(nn.Sequential(nn.MaxPool2d(2, return_indices=True)))
    with pytest.raises(ConversionError, match="no dataloader"):
        ReLUConverter()(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    with pytest.raises(ValueError, match="T"):
        simulate(nn.Identity(), torch.zeros(1), 0)


def test_converted_snn_runs_on_every_backend():
    torch.manual_seed(6)
    ann = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 16, 4), nn.ReLU(),
                        nn.Linear(4, 2)).eval()
    x = torch.rand(5, 1, 6, 6)
    snn = ReLUConverter([x], v_init=0.5)(ann)
    outs = {}
    for backend in ("torch", "cpp", "triton"):
        # triton runs CUDA tensors, or CPU tensors under TRITON_INTERPRET=1 (set by conftest without a GPU)
        dev = "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"
        for m in snn.modules():
            if isinstance(m, neuron.IFNode):
                m.backend = backend
        outs[backend] = simulate(snn.to(dev), x.to(dev), 8).cpu()
        snn.cpu()
    torch.testing.assert_close(outs["cpp"], outs["torch"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outs["triton"], outs["torch"], rtol=1e-5, atol=1e-5)
    ref = ann(x).detach()
    assert ((outs["torch"] - ref).norm() / ref.norm()).item() < 0.3  # already near the ANN at T=8
    assert math.isfinite(outs["torch"].sum().item())


def test_fold_scale_gives_bare_neurons_and_exports():
    torch.manual_seed(7)
    ann = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2))
    ann = _randomize_bn(ann).eval()
    x = torch.rand(8, 1, 6, 6)
    scaled = ReLUConverter([x], v_init=0.5)(ann)
    bare = ReLUConverter([x], v_init=0.5, fold_scale=True)(ann)
    assert not any(isinstance(m, ann2snn.VoltageScaler) for m in bare.modules())
    assert sum(isinstance(m, neuron.IFNode) for m in bare.modules()) == 2
    torch.testing.assert_close(simulate(bare, x, 32), simulate(scaled, x, 32), rtol=1e-4, atol=1e-5)
    # functional.reset_net resets the converted SNN like any fastspike model
    from fastspike import functional
    bare(x)
    functional.reset_net(bare)
    assert all(m.v == pytest.approx(0.5 * m.v_threshold) for m in bare.modules() if isinstance(m, neuron.IFNode))
    pytest.importorskip("nir")
    from fastspike import export
    graph = export.to_nir(bare, x)
    assert {"2", "6"} <= set(graph.nodes)  # the neurons, at the ReLUs' module paths
    # the stem's output also feeds a residual addition: it keeps its scale; the other neurons fold into
    # conv2 / down.conv1 and down.downsample.0 (through the max pool) / the head (through adaptive_avg_pool2d
    # and flatten)
    res_ann = _randomize_bn(ResNetTiny()).eval()
    xr = torch.rand(4, 2, 8, 8)
    res = ReLUConverter([xr], fold_scale=True)(res_ann)
    scalers = [name for name, m in res.named_modules() if isinstance(m, ann2snn.VoltageScaler)]
    assert scalers == ["stem.2.1"]
    torch.testing.assert_close(simulate(res, xr, 16), simulate(ReLUConverter([xr])(res_ann), xr, 16),
                               rtol=1e-4, atol=1e-5)
