"""End-to-end: the digits example learns (1 and 2 processes under DistributedDataParallel), and a small
fastspike model runs under torch.compile with the same outputs and gradients as eager."""
import os

import pytest
import torch
import torch.nn as nn

from fastspike import functional, layer, neuron

pytest.importorskip("sklearn")

from fastspike.examples import digits

# shortened run: 2 epochs of 8 steps, global batch 64 (chance level is 10%)
SHORT = ["--epochs", "2", "--max-steps-per-epoch", "8", "--no-progress", "--threads", "1"]


@pytest.fixture(autouse=True)
def _real_empty(monkeypatch):
    # the example is not a kernel test: skip conftest's NaN-filled allocations (spawned ranks do not see them)
    monkeypatch.setattr(torch, "empty", torch._C._VariableFunctions.empty)
    monkeypatch.setattr(torch, "empty_like", torch._C._VariableFunctions.empty_like)


def test_digits_model_shapes():
    model = digits.DigitsSNN(T=4, channels=4)
    out = model(torch.rand(5, 1, 8, 8))
    assert out.shape == (5, 10)
    x_tr, y_tr, x_te, y_te = digits.load_data()
    assert x_tr.shape == (1347, 1, 8, 8) and x_te.shape == (450, 1, 8, 8)
    assert 0.0 <= float(x_tr.min()) and float(x_tr.max()) <= 1.0
    assert set(y_te.tolist()) == set(range(10))


def test_digits_ddp_two_processes_matches_single(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        acc1 = digits.main(SHORT + ["--batch-size", "64"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("test accuracy:")
    assert acc1 > 0.6, f"single-process accuracy {acc1:.3f} is not far above chance (0.1)"

    dump = str(tmp_path / "ddp")
    digits.main(SHORT + ["--batch-size", "32", "--nproc", "2", "--dump-params", dump])
    s0 = torch.load(os.path.join(dump, "rank0.pt"))
    s1 = torch.load(os.path.join(dump, "rank1.pt"))
    params = dict(digits.DigitsSNN().named_parameters())
    assert set(params) <= set(s0)
    for k in params:  # DDP keeps parameters identical (BN running stats are per rank by design)
        assert torch.equal(s0[k], s1[k]), f"parameter {k} differs between ranks"
    assert not torch.equal(s0["body.2.weight"], digits.DigitsSNN().state_dict()["body.2.weight"])
    accs = [float(open(os.path.join(dump, f"acc{r}.txt")).read()) for r in range(2)]
    assert min(accs) > 0.6
    # same global batch and steps as the single-process run: accuracy within noise
    assert abs(accs[0] - acc1) < 0.15, (accs, acc1)


def test_digits_trains_through_torch_compile(capsys):
    """The digits example through torch.compile (Inductor on the CPU, fastspike's ops as custom ops in the graph)
    learns as the eager run does, from the same seed and batches."""
    threads = torch.get_num_threads()
    try:
        eager = digits.main(SHORT)
        compiled = digits.main(SHORT + ["--compile"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "(torch.compile)" in out and out.count("median training step:") == 2
    assert compiled > 0.6 and abs(compiled - eager) < 0.1, (compiled, eager)


def test_torch_compile_small_model():
    """torch.compile works: outputs and gradients equal eager, in one graph (fullgraph=True)."""
    net = nn.Sequential(layer.Linear(16, 32, step_mode="m"), neuron.LIFNode(step_mode="m"),
                        layer.Linear(32, 4, step_mode="m"))
    x = torch.rand(4, 8, 16) * 2
    ref = net(x)
    functional.reset_net(net)
    ref.sum().backward()
    g_ref = net[0].weight.grad.clone()
    net.zero_grad()
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    functional.reset_net(net)
    out.sum().backward()
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(net[0].weight.grad, g_ref, atol=1e-5)
