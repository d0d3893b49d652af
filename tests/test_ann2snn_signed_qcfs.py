"""``fastspike.ann2snn.qcfs.SignedQCFSSequenceEncoder`` against SpikingJelly 2.0.0's: the same spike sequences,
neuron membranes after encoding, statistics (with and without ``metric_mask``), reconstructions and gradients,
state_dict keys, and errors for bad arguments; inputs on half-levels exercise the count correction."""
import pytest
import torch

from fastspike import ann2snn
from fastspike.ann2snn import qcfs

from helpers import DEVICE

pytestmark = pytest.mark.peers


@pytest.fixture(scope="module")
def sj_qcfs():
    return pytest.importorskip("spikingjelly.activation_based.ann2snn.qcfs")


def _value(shape, channel_dim, scale, seed, on_half_levels=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 3
    if on_half_levels:  # (k + 1/2) * s: the running sum sits on the threshold, rounding decides the count
        k = torch.randint(-5, 5, shape, generator=g).float() + 0.5
        view = [1] * len(shape)
        view[channel_dim] = -1
        x = torch.where(torch.rand(shape, generator=g) < 0.5, k * scale.view(view), x)
    return x


CASES = [  # shape, channel_dim, T, half levels, dtype
    ((5, 3), -1, 4, False, torch.float32),
    ((2, 3, 4), 1, 8, True, torch.float32),
    ((4, 2, 3), -1, 5, True, torch.float64),
    ((6, 3), 1, 1, True, torch.float32),
]


@pytest.mark.parametrize("shape,channel_dim,T,half,dtype", CASES, ids=[str(i) for i in range(len(CASES))])
@pytest.mark.parametrize("collect", [True, False], ids=["stats", "nostats"])
def test_encode_matches_spikingjelly(sj_qcfs, shape, channel_dim, T, half, dtype, collect):
    n = shape[channel_dim]
    scale = torch.tensor([0.5, 1.0, 1.7, 0.3][:n], dtype=dtype)
    ref = sj_qcfs.SignedQCFSSequenceEncoder(scale, T, channel_dim=channel_dim, collect_statistics=collect, name="a")
    ours = qcfs.SignedQCFSSequenceEncoder(scale, T, channel_dim=channel_dim, collect_statistics=collect, name="a")
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref, ours = ref.to(DEVICE), ours.to(DEVICE)
    fixed = []
    for seed in range(3):
        x = _value(shape, channel_dim, scale, seed, half).to(DEVICE, dtype)
        y_ref, y = ref.encode(x), ours.encode(x)
        assert y.shape == (T, *shape) and y.dtype == y_ref.dtype
        assert torch.equal(y_ref, y)
        for a, b in ((ref.positive_neuron, ours.positive_neuron), (ref.negative_neuron, ours.negative_neuron)):
            assert torch.equal(a.v, b.v)
        assert ref.statistics() == ours.statistics()
        recon_ref, recon = ref.reconstruct(x), ours.reconstruct(x)
        assert torch.equal(recon_ref, recon)
        if collect:
            torch.testing.assert_close(y.sum(0), recon)  # the corrected counts are the QCFS quantisation
            fixed.append(ours.statistics()["boundary_correction_fraction"])
    if half and collect:
        assert max(fixed) > 0  # the count correction ran


def test_half_levels_need_and_get_the_correction(sj_qcfs):
    scale = torch.tensor([0.3, 0.7])
    x = torch.tensor([[0.45, -1.05], [2.55, 0.35], [-0.15, 3.85]])  # all on half levels
    ref = sj_qcfs.SignedQCFSSequenceEncoder(scale, 8)
    ours = ann2snn.SignedQCFSSequenceEncoder(scale, 8)
    y_ref, y = ref.encode(x), ours.encode(x)
    assert torch.equal(y_ref, y)
    assert ref.statistics() == ours.statistics() and ours.statistics()["boundary_correction_fraction"] > 0
    torch.testing.assert_close(y.sum(0), ours.reconstruct(x))


def test_forward_metric_mask_and_gradient(sj_qcfs):
    scale = torch.tensor([0.4, 0.9, 1.3])
    ref = sj_qcfs.SignedQCFSSequenceEncoder(scale, 6, channel_dim=1, name="blk")
    ours = qcfs.SignedQCFSSequenceEncoder(scale, 6, channel_dim=1, name="blk")
    seq = torch.randn(3, 4, 3, 5) * 2
    mask = torch.rand(4, 5) < 0.6
    mask[0, 0] = True
    y_ref, y = ref(seq, mask), ours(seq, mask)
    assert torch.equal(y_ref, y)
    assert ref.statistics() == ours.statistics() and ours.statistics()["name"] == "blk"
    # reconstruct has the straight-through gradient of multi_level_spike_count
    x_ref, x = (seq.sum(0).clone().requires_grad_() for _ in range(2))
    g = torch.randn(4, 3, 5)
    (ref.reconstruct(x_ref) * g).sum().backward()
    (ours.reconstruct(x) * g).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0)
    assert x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="metric_mask"):
        ours(seq, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="metric_mask"):
        ours(seq, torch.zeros(4, 5, dtype=torch.bool))


@pytest.mark.parametrize("args,kwargs,exc", [
    (([0.5, 1.0], 4), {}, TypeError),
    ((torch.tensor([[0.5]]), 4), {}, ValueError),
    ((torch.tensor([0.5, -1.0]), 4), {}, ValueError),
    ((torch.tensor([0.5, float("inf")]), 4), {}, ValueError),
    ((torch.tensor([0.5]), 4.0), {}, TypeError),
    ((torch.tensor([0.5]), True), {}, TypeError),
    ((torch.tensor([0.5]), 0), {}, ValueError),
    ((torch.tensor([0.5]), 4), {"channel_dim": 1.0}, TypeError),
])
def test_bad_arguments_rejected_like_spikingjelly(sj_qcfs, args, kwargs, exc):
    with pytest.raises(exc):
        sj_qcfs.SignedQCFSSequenceEncoder(*args, **kwargs)
    with pytest.raises(exc, match="SignedQCFSSequenceEncoder"):
        qcfs.SignedQCFSSequenceEncoder(*args, **kwargs)


def test_bad_inputs(sj_qcfs):
    ours = qcfs.SignedQCFSSequenceEncoder(torch.tensor([0.5, 1.0]), 4)
    for bad in (torch.ones(3, 2, dtype=torch.long), torch.tensor(1.0), torch.ones(3, 3)):
        with pytest.raises(ValueError, match="encode"):
            ours.encode(bad)
        with pytest.raises(ValueError, match="reconstruct"):
            ours.reconstruct(bad)
    with pytest.raises(ValueError, match="value_seq"):
        ours(torch.ones(2))
