"""torch.compile of fastspike's neurons: no graph breaks (torch._dynamo.explain), and compiled outputs and
gradients equal to eager ones -- through Inductor with the C++ ops on the CPU, through AOTAutograd
(``backend='aot_eager'``) with the Triton ops under the interpreter, and through Inductor on CUDA when present.

The ops are torch.library custom ops (fastspike/ops/_contract.py): what the compiled graph calls is
``fastspike::neuron_cpp`` / ``fastspike::neuron_triton`` etc., with their fake implementations used for
tracing and their registered autograd formula for the backward.
"""
import pytest
import torch
import torch._dynamo as dynamo
import torch.nn as nn

from fastspike import functional, neuron, surrogate
from helpers import DEVICE, ON_CUDA, assert_close, triton_runs_here

T, B, F = 4, 3, 24


def _neurons(step_mode: str):
    """IF / LIF / ParametricLIF with several flag settings, chained."""
    return nn.Sequential(
        nn.Linear(F, F), neuron.IFNode(step_mode=step_mode),
        nn.Linear(F, F), neuron.LIFNode(tau=2.5, decay_input=False, v_reset=None, step_mode=step_mode,
                                        surrogate_function=surrogate.ATan()),
        nn.Linear(F, F), neuron.ParametricLIFNode(init_tau=3.0, detach_reset=True, step_mode=step_mode),
        nn.Linear(F, F), neuron.LIFNode(step_mode=step_mode, store_v_seq=(step_mode == "m")),
    )


def _parallel():
    """The multi-step-only neurons: the PSN family and the scan-based readouts."""
    return nn.Sequential(
        nn.Linear(F, F), neuron.PSN(T=T), nn.Linear(F, F), neuron.MaskedPSN(k=2, T=T, step_mode="m"),
        nn.Linear(F, F), neuron.SlidingPSN(k=3, step_mode="m"), nn.Linear(F, F), neuron.NonSpikingLIFNode(),
    )


def _two_state(step_mode: str):
    """The neurons of ops.multistep_neuron2 (Izhikevich, CUBA-LIF, CLIF), chained."""
    cuba = neuron.CUBALIFNode(v_threshold=0.4, surrogate_function=surrogate.ATan())
    cuba.step_mode = step_mode
    return nn.Sequential(
        nn.Linear(F, F), neuron.IzhikevichNode(a=0.2, b=0.1, step_mode=step_mode, store_v_seq=(step_mode == "m")),
        nn.Linear(F, F), cuba, nn.Linear(F, F), neuron.ComplementaryLIFNode(step_mode=step_mode),
    )


def _glif():
    """GatedLIFNode (ops.multistep_gated_lif; multi-step only) per channel, then layer-wise, on [T, B, C, H, W]."""
    return nn.Sequential(neuron.GatedLIFNode(T, inplane=3), neuron.GatedLIFNode(T, surrogate_function=surrogate.ATan()))


MODELS = {"neurons-s": lambda: _neurons("s"), "neurons-m": lambda: _neurons("m"), "parallel": _parallel,
          "glif": _glif,
          "two-state-s": lambda: _two_state("s"), "two-state-m": lambda: _two_state("m")}


def _input(name):
    if name == "glif":
        return torch.rand((T, B, 3, 4, 4), device=DEVICE) * 2
    shape = (B, F) if name.endswith("-s") else (T, B, F)
    return torch.rand(shape, device=DEVICE) * 2


def _run(model, x, steps: int):
    """Outputs of ``steps`` calls (state carried between them) and the gradients of their sum."""
    functional.reset_net(model)
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    outs = [model(x) for _ in range(steps)]
    outs = [torch.stack(o) if isinstance(o, (list, tuple)) else o for o in outs]
    sum(o.sum() * (i + 1) for i, o in enumerate(outs)).backward()
    grads = [p.grad.clone() for p in model.parameters()] + [x.grad.clone()]
    return outs, grads


def _check(name, model, compiled, steps=2, tol=1e-5):
    x = _input(name)
    eager_out, eager_grads = _run(model, x, steps)
    comp_out, comp_grads = _run(compiled, x, steps)
    for i, (e, c) in enumerate(zip(eager_out, comp_out)):
        assert_close(f"{name} output {i}", e, c, tol)
    for i, (e, c) in enumerate(zip(eager_grads, comp_grads)):
        assert_close(f"{name} grad {i}", e, c, tol)


@pytest.mark.parametrize("name", list(MODELS))
def test_no_graph_breaks(name):
    model = MODELS[name]().to(DEVICE)
    functional.reset_net(model)
    ex = dynamo.explain(model)(_input(name))
    reasons = [str(b.reason).splitlines()[0] for b in ex.break_reasons]
    assert ex.graph_break_count == 0 and ex.graph_count == 1, reasons


@pytest.mark.parametrize("name", list(MODELS))
def test_inductor_matches_eager(name):
    """torch.compile(fullgraph=True) with Inductor: on the CPU it calls the C++ custom ops, on CUDA the Triton ones."""
    torch._dynamo.reset()
    model = MODELS[name]().to(DEVICE)
    _check(name, model, torch.compile(model, fullgraph=True))


@pytest.mark.skipif(ON_CUDA or not triton_runs_here(), reason="the interpreter case (CUDA runs the Inductor test)")
@pytest.mark.parametrize("name", list(MODELS))
def test_triton_ops_trace_through_aot_autograd(name):
    """The Triton custom ops (fake implementations, registered autograd) under AOTAutograd, run by the interpreter."""
    torch._dynamo.reset()
    model = MODELS[name]()
    functional.set_backend(model, "triton")
    _check(name, model, torch.compile(model, fullgraph=True, backend="aot_eager"))


def test_compiled_graph_calls_the_custom_ops():
    """What Dynamo captures is the custom op, not a graph break around a pybind call."""
    captured = []

    def backend(gm, example_inputs):
        captured.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    model = MODELS["neurons-m"]().to(DEVICE)
    torch.compile(model, fullgraph=True, backend=backend)(_input("neurons-m"))
    want = "fastspike.neuron_triton" if ON_CUDA else "fastspike.neuron_cpp"
    assert any(want in t for t in captured), captured
    captured.clear()
    torch._dynamo.reset()
    model = MODELS["two-state-m"]().to(DEVICE)
    torch.compile(model, fullgraph=True, backend=backend)(_input("two-state-m"))
    want = "fastspike.neuron2_triton" if ON_CUDA else "fastspike.neuron2_cpp"
    assert sum(want in t for t in captured) == 3, captured
    captured.clear()
    torch._dynamo.reset()
    model = MODELS["glif"]().to(DEVICE)
    torch.compile(model, fullgraph=True, backend=backend)(_input("glif"))
    want = "fastspike.gated_lif_triton" if ON_CUDA else "fastspike.gated_lif_cpp"
    assert sum(want in t for t in captured) == 2, captured
