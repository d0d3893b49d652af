"""Neurons defined by SpikingJelly's hooks (neuronal_charge / neuronal_fire / neuronal_reset) run the neuron
compiler's fused kernels (fastspike/neuron/_hook_kernels.py): spikes, states, v_seq and the gradients of the input,
the initial state and learnable parameters equal those of the same hooks run step by step in Python
(backend='torch'), in both step modes, on every kernel backend; SimpleIFNode / SimpleLIFNode match SpikingJelly;
hooks that do not trace keep the Python path; the kernel follows changes of the neuron's attributes."""
import warnings

import pytest
import torch
import torch.nn as nn

from fastspike import compiler, functional, neuron, surrogate
from fastspike.neuron import _hook_kernels
from fastspike.neuron.adapt import AdaptBaseNode
from helpers import KERNEL_BACKENDS, assert_close, device_of

T, B, N = 6, 2, 300  # 600 neurons per step: two blocks of the generated C++ kernel and two Triton programs


class ChargeLIF(neuron.BaseNode):
    """A SpikingJelly-1.x-style custom neuron: only the charge is defined."""

    def __init__(self, tau=2.0, **kw):
        super().__init__(**kw)
        self.tau = tau

    def neuronal_charge(self, x):
        self.v = self.v + (x - (self.v - (0.0 if self.v_reset is None else self.v_reset))) / self.tau


class LearnableTau(neuron.BaseNode):
    """A learnable one-element parameter read by the charge."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.k = nn.Parameter(torch.tensor(0.3))

    def neuronal_charge(self, x):
        self.v = self.v + (x - self.v) * torch.sigmoid(self.k)


class AdaptiveThresholdLIF(AdaptBaseNode):
    """An adaptive-threshold LIF (ALIF) as AdaptBaseNode subclasses write it: the adaptation w raises the threshold
    and grows with every spike."""

    def __init__(self, tau=2.0, **kw):
        super().__init__(**kw)
        self.tau = tau

    def neuronal_charge(self, x):
        self.v = self.v + (x - self.v) / self.tau

    def neuronal_fire(self):
        return self.surrogate_function(self.v - self.v_threshold - self.w)

    def neuronal_reset(self, spike):
        super().neuronal_reset(spike)
        self.w = self.w + (self.a * (self.v - self.v_rest) - self.w) / self.tau_w + self.b * spike


class BranchOnValue(neuron.BaseNode):
    def neuronal_charge(self, x):
        self.v = self.v + x if bool((x > 100).any()) else self.v + 0.5 * x


class AssignsOther(neuron.BaseNode):
    def neuronal_charge(self, x):
        self.last_x = x
        self.v = self.v + x


class _HandWritten(torch.autograd.Function):
    """A surrogate with a hand-written backward: the compiler cannot derive it."""

    @staticmethod
    def forward(ctx, h):
        ctx.save_for_backward(h)
        return (h >= 0).to(h.dtype)

    @staticmethod
    def backward(ctx, grad):
        (h,) = ctx.saved_tensors
        return grad / (1 + h * h)


def _pair(cls, backend, **kw):
    fused, python = cls(**kw), cls(**kw)
    fused.backend, python.backend = backend, "torch"
    python.load_state_dict(fused.state_dict())
    return fused, python


def _run(node, x, step_mode):
    node.step_mode = step_mode
    if step_mode == "m":
        return node(x)
    return torch.stack([node(x_t) for x_t in x])


def _memories(node):
    return {name: value for name, value in node._memories.items()}


CASES = [
    (ChargeLIF, dict(tau=2.0)),
    (ChargeLIF, dict(tau=3.0, v_reset=None, detach_reset=True)),
    (ChargeLIF, dict(tau=2.0, surrogate_function=surrogate.ATan(alpha=3.0))),
    (LearnableTau, dict()),
    (AdaptiveThresholdLIF, dict(a=0.2, b=0.3, tau_w=3.0, v_rest=0.1)),
    (AdaptiveThresholdLIF, dict(a=0.1, b=0.5, tau_w=2.0, v_reset=None)),
]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("step_mode", ["m", "s"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_hooks_run_compiled_and_match_python(case, step_mode, backend):
    cls, kw = CASES[case]
    device = device_of(backend)
    torch.manual_seed(case)
    fused, python = _pair(cls, backend, **kw)
    fused.to(device), python.to(device)
    x = (torch.randn(T, B, N, device=device) * 1.5 + 0.6)
    v0 = torch.rand(B, N, device=device) * 0.5
    fused.v, python.v = v0.clone().requires_grad_(), v0.clone().requires_grad_()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = _run(fused, xa, step_mode), _run(python, xb, step_mode)
    assert isinstance(fused.__dict__.get("_hook_kernel_cache"), _hook_kernels.HookKernel), "the kernels did not run"
    assert 0 < out_b.mean() < 1
    assert torch.equal(out_a, out_b)
    for name, value in _memories(python).items():
        assert_close(name, value, _memories(fused)[name], 1e-5)
    cot = torch.randn_like(out_b)
    loss_a = (out_a * cot).sum() + sum((m * 0.7).sum() for m in _memories(fused).values())
    loss_b = (out_b * cot).sum() + sum((m * 0.7).sum() for m in _memories(python).values())
    wa, wb = list(fused.parameters()), list(python.parameters())
    ga = torch.autograd.grad(loss_a, [xa, *wa])
    gb = torch.autograd.grad(loss_b, [xb, *wb])
    for name, a, b in zip(["x"] + [n for n, _ in fused.named_parameters()], ga, gb):
        assert_close(f"grad {name}", b, a, 1e-4)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_initial_state_gradient_and_v_seq(backend):
    device = device_of(backend)
    fused, python = _pair(ChargeLIF, backend, tau=2.0, step_mode="m", store_v_seq=True)
    x = torch.randn(T, B, N, device=device) + 0.5
    va, vb = torch.rand(B, N, device=device, requires_grad=True), None
    vb = va.detach().clone().requires_grad_()
    fused.v, python.v = va, vb
    sa, sb = fused(x), python(x)
    assert torch.equal(sa, sb)
    assert_close("v_seq", python.v_seq, fused.v_seq, 1e-5)
    (ga,) = torch.autograd.grad((sa * 1.3).sum() + fused.v_seq.sum(), va)
    (gb,) = torch.autograd.grad((sb * 1.3).sum() + python.v_seq.sum(), vb)
    assert_close("grad v0", gb, ga, 1e-4)


@pytest.mark.parametrize("cls_name", ["SimpleIFNode", "SimpleLIFNode"])
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_simple_nodes_match_spikingjelly(cls_name, step_mode):
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    kw = dict(tau=2.0, decay_input=True) if cls_name == "SimpleLIFNode" else {}
    ours, theirs = getattr(neuron, cls_name)(step_mode=step_mode, **kw), getattr(sj, cls_name)(step_mode=step_mode,
                                                                                              **kw)
    torch.manual_seed(1)
    x = torch.randn(T, B, N) + 0.7
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    if step_mode == "m":
        a, b = ours(xa), theirs(xb)
    else:
        a, b = torch.stack([ours(t) for t in xa]), torch.stack([theirs(t) for t in xb])
    assert isinstance(ours.__dict__.get("_hook_kernel_cache"), _hook_kernels.HookKernel)
    assert torch.equal(a, b)
    assert_close("v", theirs.v, ours.v, 1e-6)
    cot = torch.randn_like(a)
    (ga,) = torch.autograd.grad((a * cot).sum(), xa)
    (gb,) = torch.autograd.grad((b * cot).sum(), xb)
    assert_close("grad x", gb, ga, 1e-5)


@pytest.mark.parametrize("make, reason", [
    (lambda: BranchOnValue(step_mode="m"), "bool((x > 100).any())"),
    (lambda: AssignsOther(step_mode="m"), "assign self.last_x"),
    (lambda: ChargeLIF(step_mode="m", surrogate_function=_HandWritten.apply), "_HandWritten"),
])
def test_hooks_that_do_not_trace_keep_the_python_path(make, reason):
    node, ref = make(), make()
    ref.backend = "torch"
    x = torch.randn(T, B, 8)
    for _ in range(2):
        assert torch.equal(node(x), ref(x))
        assert reason in node.__dict__.get("_hook_kernel_failed", ""), node.__dict__.get("_hook_kernel_failed")
        assert "_hook_kernel_cache" not in node.__dict__
        assert torch.equal(node.v, ref.v)


def test_float64_and_backend_torch_use_the_python_hooks():
    node = ChargeLIF(step_mode="m")
    node(torch.randn(T, B, 8, dtype=torch.float64))
    assert "_hook_kernel_cache" not in node.__dict__
    functional.reset_net(node)
    node.backend = "torch"
    node(torch.randn(T, B, 8))
    assert "_hook_kernel_cache" not in node.__dict__


def test_kernel_follows_attribute_and_surrogate_changes():
    # own surrogates: the default argument's Sigmoid() is one object shared by every neuron built without one
    node = ChargeLIF(tau=2.0, step_mode="m", surrogate_function=surrogate.Sigmoid())
    ref = ChargeLIF(tau=2.0, step_mode="m", backend="torch", surrogate_function=surrogate.Sigmoid())
    x = torch.randn(T, B, 64) + 0.8
    assert torch.equal(node(x), ref(x))
    first = node.__dict__["_hook_kernel_cache"]
    for m in (node, ref):
        functional.reset_net(m)
        m.tau = 5.0  # assigned: the kernel is traced again with the new constant
    assert torch.equal(node(x), ref(x))
    assert node.__dict__["_hook_kernel_cache"] is not first
    second = node.__dict__["_hook_kernel_cache"]
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    for m in (node, ref):
        functional.reset_net(m)
        m.surrogate_function.alpha = 1.0  # not an assignment on the neuron: found through the surrogate's settings
    (ga,) = torch.autograd.grad(node(xa).sum(), xa)
    (gb,) = torch.autograd.grad(ref(xb).sum(), xb)
    assert node.__dict__["_hook_kernel_cache"] is not second
    assert_close("grad x", gb, ga, 1e-5)


def test_batch_change_without_reset_is_an_error():
    node = ChargeLIF(step_mode="m")
    node(torch.randn(T, B, 8))
    with pytest.raises(RuntimeError, match="reset_net"):
        node(torch.randn(T, B + 1, 8))


def test_no_compiler_warns_once_and_runs_the_python_hooks(monkeypatch):
    def fail(*args, **kwargs):
        raise compiler.KernelBuildError("no C++ compiler found (looked for c++, g++)")

    node, ref = ChargeLIF(step_mode="m", tau=4.0), ChargeLIF(step_mode="m", tau=4.0, backend="torch")
    kernel = _hook_kernels.hook_kernel(node, torch.randn(T, B, 8))
    monkeypatch.setattr(type(kernel.compiled), "__call__", lambda self, *a, **k: fail())
    _hook_kernels._warned.discard(ChargeLIF)
    x = torch.randn(T, B, 8)
    with pytest.warns(RuntimeWarning, match="cannot be built"):
        out = node(x)
    assert torch.equal(out, ref(x))
    assert "no C++ compiler" in node.__dict__["_hook_kernel_failed"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        node(x)


def test_traced_inside_a_checkpointed_forward():
    """Tracing may start inside another autograd.Function's forward (reentrant checkpointing): only the frames of
    the hooks themselves decide whether a custom Function is being traced."""
    from torch.utils.checkpoint import checkpoint
    node, ref = ChargeLIF(step_mode="m"), ChargeLIF(step_mode="m", backend="torch")
    x = torch.randn(T, B, 64) + 0.5
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()

    def run(t):  # the recomputation in backward starts from the same state
        node.reset()
        return node(t) * 1.0

    a = checkpoint(run, xa, use_reentrant=True)
    b = ref(xb)
    assert isinstance(node.__dict__.get("_hook_kernel_cache"), _hook_kernels.HookKernel)
    assert torch.equal(a, b)
    a.sum().backward()
    b.sum().backward()
    assert_close("grad x", xb.grad, xa.grad, 1e-5)


def test_torch_compile_traces_the_hooks_without_graph_breaks():
    node, ref = ChargeLIF(step_mode="m"), ChargeLIF(step_mode="m")
    x = torch.randn(T, B, 16) + 0.5
    explanation = torch._dynamo.explain(node)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    node.reset()
    compiled = torch.compile(node, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(x), ref(x))
    assert_close("v", ref.v, node.v, 1e-6)
