"""fastspike.cuda_graph: recorded training steps, their rules, and the sync-free GPU paths they rely on.

The recording and replay need a CUDA device (those tests run on a GPU machine); the rules, the argument checks
and the reset that records as nothing are tested everywhere.
"""
import pytest
import torch
import torch.nn as nn

from fastspike import cuda_graph, functional, layer, neuron
from fastspike.ops import neuron as ops_neuron
from helpers import DEVICE, ON_CUDA, assert_close

needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="records CUDA graphs: needs a CUDA device")


def _net(store_v_seq=False):
    return nn.Sequential(nn.Flatten(1), nn.Linear(64, 32), neuron.LIFNode(store_v_seq=store_v_seq),
                         nn.Linear(32, 10), neuron.IFNode())


def test_store_v_seq_is_refused_by_name():
    with pytest.raises(ValueError, match=r"store_v_seq=False.*'2'.*LIFNode"):
        cuda_graph.check_graph_safe(_net(store_v_seq=True))
    cuda_graph.check_graph_safe(_net())
    with pytest.raises(ValueError, match="store_v_seq"):
        cuda_graph.training_step(_net(store_v_seq=True), nn.functional.cross_entropy,
                                 torch.optim.SGD(_net().parameters(), lr=0.1))


def test_bad_arguments():
    with pytest.raises(TypeError, match="fn must be callable"):
        cuda_graph.CudaGraphStep(3)
    with pytest.raises(ValueError, match="warmup must be an int >= 1"):
        cuda_graph.CudaGraphStep(lambda x: x, warmup=0)
    with pytest.raises(ValueError, match="max_graphs"):
        cuda_graph.CudaGraphStep(lambda x: x, max_graphs=0)
    step = cuda_graph.CudaGraphStep(lambda x: x * 2)
    with pytest.raises(ValueError, match="CUDA graphs record CUDA work, but argument 0 is on cpu"):
        step(torch.ones(3))
    with pytest.raises(TypeError, match="argument 0 must be a tensor"):
        step(3.0)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        cuda_graph.training_step(_net(), nn.functional.cross_entropy, None)


def test_reset_records_as_nothing(monkeypatch):
    """After reset_net every neuron state is a number and the next step's kernel takes V0 as that number: no tensor
    is made for the reset (inside a recorded step it records no work)."""
    net = _net().to(DEVICE)
    x = torch.rand(4, 1, 8, 8, device=DEVICE)
    net(x)
    assert isinstance(net[2].v, torch.Tensor)
    made = []
    for name in ("zeros", "full", "empty", "zeros_like", "full_like"):
        real = getattr(torch, name)
        monkeypatch.setattr(torch, name, lambda *a, _r=real, _n=name, **k: made.append(_n) or _r(*a, **k))
    functional.reset_net(net)
    assert made == [] and net[2].v == 0.0 and net[4].v == 0.0
    monkeypatch.undo()
    v0s = []
    op = ops_neuron.OPS["triton" if ON_CUDA else "cpp"]
    real_apply = op.apply_eager  # what Op.__call__ enters autograd through (Function.apply only under functorch)
    monkeypatch.setattr(op, "apply_eager", lambda *a: v0s.append(a[1]) or real_apply(*a))
    net(x)
    assert v0s == [None, None]  # V0 as the number v_reset, not a tensor


@needs_cuda
def test_recorded_training_step_matches_eager():
    torch.manual_seed(0)
    eager, graphed = _net().cuda(), _net().cuda()
    graphed.load_state_dict(eager.state_dict())
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9)
    opt_g = torch.optim.SGD(graphed.parameters(), lr=0.05, momentum=0.9)
    batches = [(torch.rand(16, 1, 8, 8, device="cuda") * 3, torch.randint(0, 10, (16,), device="cuda"))
               for _ in range(4)]
    step = cuda_graph.training_step(graphed, nn.functional.cross_entropy, opt_g, warmup=2)
    losses_g = [step(x, y).clone() for x, y in batches]
    losses_e = []
    for i, (x, y) in enumerate(batches):
        for _ in range(3 if i == 0 else 1):  # the first call: 2 warm-up steps and the replay
            opt_e.zero_grad(set_to_none=True)
            functional.reset_net(eager)
            loss = nn.functional.cross_entropy(eager(x), y)
            loss.backward()
            opt_e.step()
        losses_e.append(loss.detach())
    assert step.stats.captures == 1 and step.stats.replays == 4
    for e, g in zip(losses_e, losses_g):
        assert_close("loss", e, g, 1e-5)
    for (n, pe), pg in zip(eager.named_parameters(), graphed.parameters()):
        assert_close(n, pe, pg, 1e-5)


@needs_cuda
def test_sew_resnet_training_step_never_syncs():
    """A full eager training step of SEW ResNet-18 under torch.cuda.set_sync_debug_mode('error')."""
    from fastspike.model import sew_resnet

    net = sew_resnet.sew_resnet18(spiking_neuron=neuron.IFNode, cnf="ADD", num_classes=10).cuda()
    functional.set_step_mode(net, "m")
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.rand(2, 4, 3, 32, 32, device="cuda")
    y = torch.randint(0, 10, (4,), device="cuda")
    for _ in range(2):  # the first call may initialise things (cuDNN handles) that are allowed to sync
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.zero_grad(set_to_none=True)
            functional.reset_net(net)
            nn.functional.cross_entropy(net(x).mean(0), y).backward()
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")


@needs_cuda
def test_compile_reduce_overhead_trains_like_eager():
    torch.manual_seed(0)
    eager = nn.Sequential(layer.Linear(64, 32), neuron.LIFNode(step_mode="m"), layer.Linear(32, 10),
                          neuron.LIFNode(step_mode="m")).cuda()
    compiled_net = nn.Sequential(layer.Linear(64, 32), neuron.LIFNode(step_mode="m"), layer.Linear(32, 10),
                                 neuron.LIFNode(step_mode="m")).cuda()
    compiled_net.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_net, mode="reduce-overhead")
    x = torch.rand(4, 8, 64, device="cuda") * 2
    for model, net in ((eager, eager), (compiled, compiled_net)):
        for _ in range(3):
            functional.reset_net(net)
            model(x).sum().backward()
    for (n, a), b in zip(eager.named_parameters(), compiled_net.parameters()):
        assert_close(n, a.grad, b.grad, 1e-5)
