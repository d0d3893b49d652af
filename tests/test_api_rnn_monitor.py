"""fastspike.rnn against SpikingJelly 2.0.0 (state_dict keys, outputs, states, gradients) and monitor.GPUMonitor
(without a GPU: a clear error and no samples; with a stand-in nvidia-smi: parsed samples)."""
import sys
import time

import pytest
import torch

from fastspike import monitor, rnn, surrogate
from helpers import DEVICE, assert_close


def _sjr():
    return pytest.importorskip("spikingjelly.activation_based.rnn")


CASES = [
    ("SpikingLSTM", dict(num_layers=2, bidirectional=False), {}),
    ("SpikingLSTM", dict(num_layers=2, bidirectional=True), {"surrogate_function2": "ATan"}),
    ("SpikingGRU", dict(num_layers=3, bidirectional=False), {}),
    ("SpikingGRU", dict(num_layers=1, bidirectional=True), {"surrogate_function2": "Sigmoid"}),
    ("SpikingVanillaRNN", dict(num_layers=2, bidirectional=True), {}),
]


@pytest.mark.peers
@pytest.mark.parametrize("name, cfg, sg", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("with_states", [False, True])
def test_spiking_rnns_match_spikingjelly(name, cfg, sg, with_states):
    sjr = _sjr()
    from spikingjelly.activation_based import surrogate as sjs

    kw_ours = {k: getattr(surrogate, v)() for k, v in sg.items()}
    kw_theirs = {k: getattr(sjs, v)() for k, v in sg.items()}
    ours = getattr(rnn, name)(5, 7, **cfg, **kw_ours).to(DEVICE)
    theirs = getattr(sjr, name)(5, 7, **cfg, **kw_theirs).to(DEVICE)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, 4, 5, device=DEVICE, requires_grad=True)
    states = None
    if with_states:
        n = cfg["num_layers"] * (2 if cfg["bidirectional"] else 1)
        h = torch.rand(n, 4, 7, device=DEVICE)
        states = (h, torch.rand_like(h)) if name == "SpikingLSTM" else h
    y, s = ours(x, states)
    y_ref, s_ref = theirs(x, states)
    assert_close("y", y_ref, y, 1e-6)
    for a, b in zip(s if isinstance(s, tuple) else (s,), s_ref if isinstance(s_ref, tuple) else (s_ref,)):
        assert_close("state", b, a, 1e-6)
    g = torch.autograd.grad(y.sum(), [x] + list(ours.parameters()))
    g_ref = torch.autograd.grad(y_ref.sum(), [x] + list(theirs.parameters()))
    for a, b in zip(g, g_ref):
        assert_close("grad", b, a, 1e-5)


@pytest.mark.peers
def test_dropout_with_invariant_mask_matches_for_a_seed():
    sjr = _sjr()
    ours = rnn.SpikingGRU(5, 7, 3, dropout_p=0.3, invariant_dropout_mask=True).to(DEVICE)
    theirs = sjr.SpikingGRU(5, 7, 3, dropout_p=0.3, invariant_dropout_mask=True).to(DEVICE)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, 4, 5, device=DEVICE)
    torch.manual_seed(5)
    y = ours(x)[0]
    torch.manual_seed(5)
    assert torch.equal(y, theirs(x)[0])


def test_rnn_cells_and_errors():
    cell = rnn.SpikingLSTMCell(3, 4).to(DEVICE)
    h, c = cell(torch.randn(2, 3, device=DEVICE))
    assert h.shape == c.shape == (2, 4) and c.max() <= 1.0
    assert cell.weight_ih().shape == (16, 3) and cell.bias_hh().shape == (16,)
    bound = 1 / 4 ** 0.5
    assert all(p.abs().max() <= bound for p in cell.parameters())
    net = rnn.SpikingVanillaRNN(3, 4, 2).to(DEVICE)
    with pytest.raises(ValueError, match=r"states must have shape \[1, 2, batch_size, hidden_size\]"):
        net(torch.randn(5, 2, 3, device=DEVICE), torch.zeros(3, 2, 4, device=DEVICE))
    with pytest.raises(TypeError, match="states must be None"):
        net(torch.randn(5, 2, 3, device=DEVICE), [torch.zeros(2, 2, 4)])
    with pytest.raises(AssertionError, match="both be spiking"):
        rnn.SpikingGRUCell(3, 4, surrogate_function1=surrogate.Erf(), surrogate_function2=surrogate.Erf(spiking=False))
    with pytest.raises(ValueError, match="states must be a 2-D"):
        rnn.directional_rnn_cell_forward(cell, torch.randn(2, 2, 3), torch.zeros(4))


# ---------------------------------------------------------------------------------------------------------
# GPUMonitor
# ---------------------------------------------------------------------------------------------------------
def test_gpu_monitor_without_nvidia_smi_stops_with_an_error():
    mon = monitor.GPUMonitor(interval=0.01, start_now=False)
    mon.command = ["/nonexistent/nvidia-smi"]
    mon.start()
    mon.join(10)
    assert not mon.is_alive() and mon.samples == [] and "FileNotFoundError" in mon.error


def test_gpu_monitor_parses_samples_until_stopped():
    script = "print('0, 37, 1024'); print('1, 5, 20')"
    mon = monitor.GPUMonitor(gpu_ids=(0, 1), interval=0.01, start_now=False)
    assert mon.command[-1] == "0,1"
    mon.command = [sys.executable, "-c", script]
    mon.start()
    deadline = time.time() + 20
    while len(mon.samples) < 4 and time.time() < deadline:
        time.sleep(0.01)
    mon.stop()
    mon.join(10)
    assert not mon.is_alive() and mon.error is None
    assert mon.samples[:4] == [(0, "0", 37, 1024), (0, "1", 5, 20), (1, "0", 37, 1024), (1, "1", 5, 20)]


def test_gpu_monitor_malformed_output_and_arguments():
    mon = monitor.GPUMonitor(interval=0.01, start_now=False)
    mon.command = [sys.executable, "-c", "print('garbage')"]
    mon.start()
    mon.join(10)
    assert "malformed" in mon.error and mon.samples == []
    with pytest.raises(ValueError, match="gpu_ids"):
        monitor.GPUMonitor(gpu_ids=(), start_now=False)
    with pytest.raises(ValueError, match="interval"):
        monitor.GPUMonitor(interval=0, start_now=False)


def test_gpu_monitor_writes_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    mon = monitor.GPUMonitor(log_dir=str(tmp_path), interval=0.01, start_now=False)
    mon.command = [sys.executable, "-c", "print('0, 50, 300')"]
    mon.start()
    deadline = time.time() + 20
    while not mon.samples and time.time() < deadline:
        time.sleep(0.01)
    mon.stop()
    mon.join(10)
    assert mon.samples and any((tmp_path / "gpu_monitor").iterdir())
