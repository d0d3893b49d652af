"""One SEW ResNet-18 training step in the three ways the torch.compile / CUDA-graph issue compares: eager,
``torch.compile(model)`` and captured in a CUDA graph, for fastspike and SpikingJelly 2.0.0 in one run.

Model (the issue's): ``sew_resnet18(cnf='ADD', spiking_neuron=IFNode, surrogate_function=Sigmoid(),
detach_reset=True, num_classes=10)`` in multi-step mode; on CUDA T=4, batch 32, 3x64x64. A step is reset, forward,
cross-entropy of the output averaged over T, backward and an SGD step (lr 0, so that every timed step does the
same work). Each row has its own copy of the model with the same weights (fastspike's state_dict; SpikingJelly's
keys are the same), so one row's gradients never stand in for another's.

Rows: fastspike eager; fastspike ``torch.compile(model)``; fastspike's capture helper
(``fastspike.cuda_graph.training_step``, CUDA only); SpikingJelly eager; SpikingJelly ``torch.compile(model)``;
SpikingJelly captured by hand as in PyTorch's whole-network CUDA-graph recipe (side-stream warm-up, static
input and target, one recorded step; CUDA only). The first call of a compiled row compiles (tens of seconds): it
is the untimed agreement check. Compared: the loss and the first convolution's weight gradient (5% relative RMS,
as in models.sew_resnet18). Not in the default suite (the compilations alone take about a minute): run it with
``--suite graphs`` or ``--case models.sew_resnet18_graphs``.
"""
from __future__ import annotations

from typing import Callable, Dict, List

import torch
import torch.nn.functional as F

from ..core import Impl
from ..registry import Case, Ctx, PEERS, feature, register
from .models import batch, peer_rows

TOL = {"loss": 5e-2, "grad_conv1": 5e-2}
ROWS = ("eager", "torch.compile", "CUDA graph")


def _points(ctx: Ctx) -> List[Dict]:
    if ctx.device.startswith("cuda"):
        return [dict(T=4, B=32, HW=64)]
    # BatchNorm needs more than one value per channel after the last stage: T * B >= 2 at 32x32
    return [dict(T=2, B=2, HW=32)] if ctx.quick else [dict(T=4, B=4, HW=32)]


def _label(p) -> str:
    return f"SEW-ResNet18 ADD IF, T={p['T']} B={p['B']} 3x{p['HW']}x{p['HW']}: eager / torch.compile / CUDA graph"


def _build(sj: bool, state=None):
    if sj:
        from spikingjelly.activation_based import functional, neuron, surrogate

        from .models import _import_sj_sew_resnet
        sew_resnet, _ = _import_sj_sew_resnet()
    else:
        from ... import functional, neuron, surrogate
        from ...models import sew_resnet
    net = sew_resnet.sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, surrogate_function=surrogate.Sigmoid(),
                                  detach_reset=True, num_classes=10)
    if state is not None:
        res = net.load_state_dict(state, strict=False)
        if res.missing_keys or res.unexpected_keys:
            raise RuntimeError(f"state_dict keys differ: {res}")
    functional.set_step_mode(net, "m")
    return net, functional.reset_net


def _outputs(net, loss) -> Dict[str, torch.Tensor]:
    return {"loss": loss.detach().reshape(1), "grad_conv1": net.conv1.weight.grad}


def _loss(out, y):
    return F.cross_entropy(out.mean(0), y)


def _train_step(model, net, reset, opt, x, y) -> torch.Tensor:
    """reset, forward through ``model`` (``net`` or its compiled form), loss, backward, SGD step; returns the loss."""
    opt.zero_grad(set_to_none=True)
    reset(net)
    loss = _loss(model(x), y)
    loss.backward()
    opt.step()
    return loss


def _eager(net, reset, x, y, compiled: bool) -> Callable:
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    model = torch.compile(net) if compiled else net

    def fn():
        return _outputs(net, _train_step(model, net, reset, opt, x, y))
    return fn


def _helper_captured(net, reset, x, y) -> Callable:
    """fastspike's capture helper: records on its first call, replays on the next."""
    from ...cuda_graph import training_step
    net.train()
    step = training_step(net, _loss, torch.optim.SGD(net.parameters(), lr=0.0))

    def fn():
        return _outputs(net, step(x, y))
    return fn


def _hand_captured(net, reset, x, y) -> Callable:
    """PyTorch's whole-network recipe: warm up on a side stream, record one step with static input and target,
    then copy each batch in and replay."""
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    static_x, static_y = x.clone(), y.clone()

    def step():
        return _train_step(net, net, reset, opt, static_x, static_y).detach()

    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(x.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_loss = step()

    def fn():
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        return _outputs(net, static_loss)
    return fn


def _rows(owner: str, kind: str, build: Callable, x, y, note: str) -> List[Impl]:
    """The three rows of one framework; ``build()`` returns a fresh (model, reset) with the shared weights."""
    capture = _helper_captured if owner == "fastspike" else _hand_captured
    makers = {"eager": lambda n, r: _eager(n, r, x, y, False), "torch.compile": lambda n, r: _eager(n, r, x, y, True),
              "CUDA graph": lambda n, r: capture(n, r, x, y)}
    how = {"eager": note, "torch.compile": f"torch.compile(model) (default mode); {note}",
           "CUDA graph": ("fastspike.cuda_graph.training_step" if owner == "fastspike"
                          else "captured by hand (PyTorch's whole-network recipe)") + f"; {note}"}
    out = []
    for row in ROWS:
        name = f"{owner} {row}"
        if row == "CUDA graph" and not x.is_cuda:
            out.append(Impl(name, None, kind=kind, status="n/a", reason="CUDA graphs need a CUDA device"))
            continue
        try:
            net, reset = build()
            out.append(Impl(name, makers[row](net.to(x.device), reset), kind=kind, tol=TOL, note=how[row]))
        except Exception as e:
            out.append(Impl(name, None, kind=kind, status="error",
                            reason=f"setup failed: {type(e).__name__}: {e}"[:200]))
    return out


def _setup(p, mode, ctx: Ctx) -> List[Impl]:
    x, y = batch(p, ctx)
    state = _build(sj=False)[0].state_dict()
    impls = _rows("fastspike", "fastspike", lambda: _build(False, state), x, y, "models.sew_resnet18, backend='auto'")
    return impls + peer_rows(ctx, lambda label: _rows(label, "peer", lambda: _build(True, state), x, y,
                                                       "model.sew_resnet18 with fastspike's weights"))


def summarize(tables) -> List[str]:
    """The issue's ratios from one run: SpikingJelly eager / fastspike eager (target >= 1.3), SpikingJelly compiled /
    fastspike compiled (>= 2), fastspike compiled / fastspike captured (<= 1.2), SpikingJelly captured by hand /
    fastspike's helper (>= 1)."""
    sj = PEERS["spikingjelly"].label
    pairs = [(f"{sj} eager", "fastspike eager", "SpikingJelly eager / fastspike eager", ">= 1.3"),
             (f"{sj} torch.compile", "fastspike torch.compile", "SpikingJelly compiled / fastspike compiled", ">= 2"),
             ("fastspike torch.compile", "fastspike CUDA graph", "fastspike compiled / fastspike captured", "<= 1.2"),
             (f"{sj} CUDA graph", "fastspike CUDA graph", "SpikingJelly hand-captured / fastspike helper", ">= 1")]
    lines = []
    for t in tables:
        if t.case != "models.sew_resnet18_graphs" or t.error:
            continue
        ms = {r.impl: r.median_ms for r in t.rows if r.status == "ok" and r.median_ms}
        parts = [f"{what} {ms[a] / ms[b]:.2f}x (target {target})" for a, b, what, target in pairs
                 if a in ms and b in ms]
        steps = [f"{name} {ms[name]:.1f} ms" for name in ms]
        if steps:
            lines.append(f"models.sew_resnet18_graphs {t.label.split(':')[0]}: " + "; ".join(steps + parts))
    return lines


register(Case(name="models.sew_resnet18_graphs", family="models", suites=("graphs",),
              description="SEW ResNet-18 (ADD, IF) training step, eager / torch.compile / CUDA graph, fastspike and "
                          "SpikingJelly (the torch.compile issue's configuration on CUDA: T=4, batch 32, 64x64)",
              points=_points, setup=_setup, modes=("train",), label=_label, summarize=summarize,
              available=lambda: feature("fastspike.cuda_graph.training_step")))
