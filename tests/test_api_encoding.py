"""fastspike.encoding against SpikingJelly 2.0.0: the deterministic encoders give the same spikes; the random ones
the same spikes for a seed (the same generator calls) and the right distribution; population encoders the same
outputs, gradients and state_dict keys."""
import pytest
import torch

from fastspike import encoding, functional
from helpers import DEVICE, assert_close


def _sje():
    return pytest.importorskip("spikingjelly.activation_based.encoding")


def _drive(enc, x, steps):
    out = [enc(x) for _ in range(steps)]
    return torch.stack(out)


@pytest.mark.peers
@pytest.mark.parametrize("fn", ["linear", "log"])
def test_latency_encoder_matches_spikingjelly(fn):
    sje = _sje()
    x = torch.rand(4, 6, device=DEVICE)
    ours, theirs = encoding.LatencyEncoder(8, fn), sje.LatencyEncoder(8, fn)
    a, b = _drive(ours, x, 11), _drive(theirs, x, 11)  # more calls than T: the train repeats
    assert torch.equal(a, b)
    assert torch.equal(a[:8].sum(0), torch.ones_like(x))  # one spike per period
    assert torch.equal(a[8:], a[:3])
    if fn == "linear":
        assert torch.equal(a[:8].argmax(0), ((8 - 1) * (1 - x)).round().long())
    functional.reset_net(ours)
    assert ours.spike is None and ours.t == 0


@pytest.mark.peers
def test_weighted_phase_and_periodic_encoders_match_spikingjelly():
    sje = _sje()
    K = 6
    x = torch.randint(0, 2 ** K - 1, (5, 3), device=DEVICE).float() / 2 ** K
    a, b = _drive(encoding.WeightedPhaseEncoder(K), x, K), _drive(sje.WeightedPhaseEncoder(K), x, K)
    assert torch.equal(a, b)
    weights = 0.5 ** torch.arange(1, K + 1, device=DEVICE).view(K, 1, 1)
    assert_close("binary expansion", x, (a * weights).sum(0), 1e-7)
    with pytest.raises(AssertionError, match="x must lie"):
        encoding.WeightedPhaseEncoder(K)(torch.ones(2, device=DEVICE))

    spike = (torch.rand(4, 3, 2, device=DEVICE) > 0.5).float()
    ours, theirs = encoding.PeriodicEncoder(spike), sje.PeriodicEncoder(spike)
    a, b = _drive(ours, spike, 9), _drive(theirs, spike, 9)
    assert torch.equal(a, b) and torch.equal(a[:4], spike) and torch.equal(a[4:8], spike)


@pytest.mark.peers
def test_poisson_encoder_matches_spikingjelly_for_a_seed_and_in_distribution():
    sje = _sje()
    x = torch.rand(64, 32, device=DEVICE)
    torch.manual_seed(7)
    a = _drive(encoding.PoissonEncoder(), x, 5)
    torch.manual_seed(7)
    b = _drive(sje.PoissonEncoder(), x, 5)
    assert torch.equal(a, b)
    p = torch.full((200, 100), 0.25, device=DEVICE)
    rate = encoding.PoissonEncoder()(p).mean().item()
    assert abs(rate - 0.25) < 0.013  # > 4 standard deviations of the mean of 20000 Bernoulli(0.25)


@pytest.mark.peers
@pytest.mark.parametrize("name", ["PopEncoder", "PopSpikeEncoderDeterministic", "PopSpikeEncoderRandom"])
def test_population_encoders_match_spikingjelly(name):
    sje = _sje()
    args = (3, 5, 4, (-1.0, 1.0), 0.3)
    ours, theirs = getattr(encoding, name)(*args).to(DEVICE), getattr(sje, name)(*args).to(DEVICE)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    obs = torch.rand(6, 3, device=DEVICE) * 2 - 1
    torch.manual_seed(1)
    a = ours(obs)
    torch.manual_seed(1)
    b = theirs(obs)
    assert a.shape == (4, 6, 15) and torch.equal(a, b)
    ga = torch.autograd.grad(a.sum(), (ours.mean, ours.std))
    gb = torch.autograd.grad(b.sum(), (theirs.mean, theirs.std))
    for x, y in zip(ga, gb):
        assert_close(f"{name} grad", y, x, 1e-6)


def test_encoder_arguments():
    with pytest.raises(AssertionError, match="T must be an int"):
        encoding.LatencyEncoder(0)
    with pytest.raises(ValueError, match="T must be an int"):
        encoding.WeightedPhaseEncoder(2.5)
    with pytest.raises(NotImplementedError, match="enc_function"):
        encoding.LatencyEncoder(4, "exp")
    with pytest.raises(ValueError, match="step_mode"):
        encoding.PoissonEncoder(step_mode="x")
    enc = encoding.LatencyEncoder(4)
    with pytest.raises(ValueError, match="needs the input"):
        enc()


def test_stateful_encoder_multi_step():
    x = torch.rand(2, 3, device=DEVICE)
    enc = encoding.LatencyEncoder(4, step_mode="m")
    out = enc(x.unsqueeze(0).repeat(6, 1, 1))  # every element of the sequence is one call
    single = encoding.LatencyEncoder(4)
    assert torch.equal(out, _drive(single, x, 6))
