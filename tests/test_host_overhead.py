"""What keeps a neuron layer's per-call host work small (issue 16 item 4); speed itself is measured by the
``neuron.overhead`` case of ``python -m fastspike.bench``, never timed here."""
import math
from typing import Optional

import pytest
import torch
from torch import Tensor

from fastspike import functional, neuron, surrogate
from fastspike.ops import neuron as ops_neuron
from fastspike.ops.bits.known import known_binary
from helpers import DEVICE


def test_op_arguments_are_computed_once_per_configuration(monkeypatch):
    node = neuron.LIFNode(step_mode="m")
    calls = []
    real = type(node)._op_kwargs
    monkeypatch.setattr(type(node), "_op_kwargs", lambda self: calls.append(1) or real(self))
    x = torch.rand(3, 2, 5, device=DEVICE)
    for _ in range(4):
        node(x)  # assigns the state self.v every call
        functional.reset_net(node)
    assert len(calls) == 1
    node.v_threshold = 0.7  # a configuration change is seen
    node(x)
    assert len(calls) == 2


def test_constant_initial_state_makes_no_tensor(monkeypatch):
    """After a reset, V0 reaches the kernel as a number: no torch.full per call."""
    made = []
    real_full = torch.full
    monkeypatch.setattr(torch, "full", lambda *a, **k: made.append(a) or real_full(*a, **k))
    node = neuron.LIFNode(step_mode="m").to(DEVICE)
    node(torch.rand(3, 2, 5, device=DEVICE))
    assert made == []


def test_eager_calls_skip_the_dispatcher(monkeypatch):
    """Eager calls on plain tensors take the autograd.Function directly; the registered custom op is what
    torch.compile sees (tests/test_compile.py)."""
    op = ops_neuron.OPS["triton" if DEVICE.type == "cuda" else "cpp"]
    hits = []
    real = op.custom_forward
    monkeypatch.setattr(op, "custom_forward", lambda *a: hits.append(1) or real(*a))
    neuron.IFNode(step_mode="m").to(DEVICE)(torch.rand(3, 4, device=DEVICE))
    assert hits == []


def test_inference_calls_the_forward_launcher_alone(monkeypatch):
    """With grad mode off nothing is recorded, so the op skips autograd's Function and calls its forward launcher;
    with grad mode on the Function runs, entered through autograd's C entry point (Function.apply's Python preamble
    is only for functorch transforms). Outputs are the same either way."""
    op = ops_neuron.OPS["triton" if DEVICE.type == "cuda" else "cpp"]
    applied = []
    real_apply = op.apply_eager  # autograd's C entry of op.function (ops/_contract.py)
    monkeypatch.setattr(op, "apply_eager", lambda *a: applied.append(1) or real_apply(*a))
    node = neuron.LIFNode(step_mode="m").to(DEVICE)
    x = torch.rand(5, 3, 7, device=DEVICE) * 2
    with torch.no_grad():
        s_infer = node(x)
    functional.reset_net(node)
    assert applied == [] and not s_infer.requires_grad
    s_train = node(x.requires_grad_())
    assert applied == [1] and s_train.requires_grad
    assert torch.equal(s_infer, s_train.detach())


def test_functorch_transforms_take_function_apply(monkeypatch):
    """Inside a functorch transform the op goes through Function.apply, which handles the transform (the fast C entry
    point would hand the kernels wrapper tensors); tests/test_func_transforms.py checks the results."""
    op = ops_neuron.OPS["triton" if DEVICE.type == "cuda" else "cpp"]
    fast = []
    real_apply = op.apply_eager
    monkeypatch.setattr(op, "apply_eager", lambda *a: fast.append(1) or real_apply(*a))
    node = neuron.LIFNode(step_mode="m").to(DEVICE)
    x = (torch.rand(2, 3, 4, device=DEVICE) * 4).requires_grad_()
    with torch.no_grad():  # the no-grad shortcut (forward kernel alone) must not take batched tensors either
        s = torch.func.vmap(lambda xi: (functional.reset_net(node), node(xi))[1])(x)
    assert fast == []
    for i in range(2):
        functional.reset_net(node)
        assert torch.equal(s[i], node(x[i]))
    assert fast == [1, 1] and s.sum() > 0


def test_configuration_is_validated_once_and_follows_changes(monkeypatch):
    """A neuron keeps its op's validated plan between calls (ops.neuron.plan_neuron runs once per configuration),
    and the plan follows every change: an assignment to the neuron, a surrogate setting changed in place, a
    parameter replaced without an assignment (a module conversion), a per-call setting of another object (ILIF's
    spike count). Each result is checked against a neuron built fresh with the new configuration."""
    planned = []
    real_plan = ops_neuron.plan_neuron
    monkeypatch.setattr("fastspike.neuron.node.plan_neuron", lambda **kw: planned.append(kw) or real_plan(**kw))
    torch.manual_seed(0)
    x = (torch.rand(6, 3, 40, device=DEVICE) * 1.5).requires_grad_()
    g = torch.randn(6, 3, 40, device=DEVICE)

    def run(node):
        functional.reset_net(node)
        s = node(x)
        (gx,) = torch.autograd.grad(s, x, g)
        return s, gx

    node = neuron.LIFNode(step_mode="m").to(DEVICE)
    node.surrogate_function = surrogate.Sigmoid(alpha=4.0)  # its own surrogate (the default one is shared)
    for _ in range(3):
        run(node)
    assert len(planned) == 1
    node.surrogate_function.alpha = 2.0  # in place: the neuron is not told
    s, gx = run(node)
    ref_s, ref_gx = run(neuron.LIFNode(surrogate_function=surrogate.Sigmoid(alpha=2.0), step_mode="m").to(DEVICE))
    torch.testing.assert_close((s, gx), (ref_s, ref_gx))
    planned.clear()
    node.v_threshold = 0.5  # an assignment: planned again
    s, gx = run(node)
    assert len(planned) == 1 and planned[0]["v_threshold"] == 0.5
    ref = neuron.LIFNode(v_threshold=0.5, surrogate_function=surrogate.Sigmoid(alpha=2.0), step_mode="m")
    torch.testing.assert_close((s, gx), run(ref.to(DEVICE)))

    plif = neuron.ParametricLIFNode(init_tau=2.0, step_mode="m").to(DEVICE)
    run(plif)
    plif._parameters["w"] = torch.nn.Parameter(torch.tensor(-1.0, device=DEVICE))  # no setattr (as _apply does)
    ref = neuron.ParametricLIFNode(init_tau=1.0 + math.exp(1.0), step_mode="m").to(DEVICE)  # sigmoid(-1) = 1/tau
    torch.testing.assert_close(run(plif), run(ref))

    ilif = neuron.ILIFNode(surrogate_function=surrogate.MultiLevelSpikeCount(4), step_mode="m").to(DEVICE)
    with torch.no_grad():
        assert ilif(x * 8).max() == 4
        functional.reset_net(ilif)
        ilif.surrogate_function.max_spike_count = 2  # in place, read per call
        ilif.surrogate_function.grad_max = 2.0
        assert ilif(x * 8).max() == 2


def test_surrogate_spike_skips_function_apply_preamble(monkeypatch):
    """Surrogate spikes (once per neuron per step on the Python paths) call autograd's C entry point on plain tensors
    (fastspike/_apply.py: Function.apply's preamble cost ~15 us a call for setup_context-style Functions), and
    Function.apply inside torch.func transforms; both give the same spikes and gradients."""
    from fastspike.surrogate import base
    calls = []
    real = base._Spike.apply
    monkeypatch.setattr(base._Spike, "apply", lambda *a: calls.append(1) or real(*a))
    sg = surrogate.ATan()
    x = torch.randn(5, 7, device=DEVICE)
    xr = x.clone().requires_grad_()
    s = sg(xr)
    (g,) = torch.autograd.grad((s * x).sum(), xr)
    assert calls == []
    g_func = torch.func.grad(lambda t: (sg(t) * x).sum())(x)
    assert calls  # (functorch applies it again one level down: how often is torch's business)
    assert torch.equal(s.detach(), (x >= 0).to(x)) and torch.allclose(g, g_func) and g.abs().sum() > 0


def test_eager_function_takes_the_scalars_as_one_tuple(monkeypatch):
    """The eager Function receives the op's tensor arguments, then one tuple of the others (ops/_contract.py: autograd
    examines every argument of a Function per call); the gradient is the reference's."""
    op = ops_neuron.OPS["triton" if DEVICE.type == "cuda" else "cpp"]
    seen = []
    real_apply = op.apply_eager
    monkeypatch.setattr(op, "apply_eager", lambda *a: seen.append(a) or real_apply(*a))
    x = (torch.rand(5, 3, 7, device=DEVICE) * 2).requires_grad_()
    node = neuron.LIFNode(step_mode="m").to(DEVICE)
    s = node(x)
    (gx,) = torch.autograd.grad(s.sum(), x)
    (args,) = seen
    assert len(args) == op.tensors + 1 == 5 and isinstance(args[-1], tuple)
    assert args[0] is x and all(a is None or isinstance(a, torch.Tensor) for a in args[:-1])
    assert not any(isinstance(a, torch.Tensor) for a in args[-1])
    ref_s = neuron.LIFNode(step_mode="m", backend="torch").to(DEVICE)(x)
    (ref_gx,) = torch.autograd.grad(ref_s.sum(), x)
    torch.testing.assert_close((s, gx), (ref_s, ref_gx))
    assert s.sum() > 0 and gx.abs().sum() > 0


def test_op_contract_takes_tensor_arguments_first():
    """An op whose forward lists a tensor after a scalar is refused at definition, naming the argument."""
    from fastspike.ops._contract import _tensor_arguments

    def good(x: Tensor, v0: Optional[Tensor], tau: float, n: int) -> Tensor:
        return x

    def bad(x: Tensor, tau: float, v0: Optional[Tensor]) -> Tensor:
        return x

    assert _tensor_arguments("good", good) == 2
    with pytest.raises(TypeError, match="'v0' follows 'tau'"):
        _tensor_arguments("bad", bad)


# configurations the short path takes (plan.lane): every charge but ParametricLIF's, the fires that need no tensor
_LANE_CONFIGS = [dict(mode="if"), dict(mode="lif", tau=3.0, decay_input=False, v_reset=None),
                 dict(mode="lif", detach_reset=True, surrogate_function=surrogate.ATan(alpha=3.0)),
                 dict(mode="qif", v_reset=-0.1), dict(mode="eif"),
                 dict(mode="leaky", fire="count", v_reset=None, max_spike_count=3),
                 dict(mode="lif", fire="analog", act="sigmoid"), dict(mode="if", fire="offset", v_offset=0.2)]


@pytest.mark.parametrize("v0_kind", ["number", "tensor", "tensor_grad"])
@pytest.mark.parametrize("cfg", _LANE_CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values())[:40])
def test_short_path_equals_the_long_path(monkeypatch, cfg, v0_kind):
    """ops/neuron's short path (``_lane``: no backend choice, layout or conversion decisions) gives the outputs,
    gradients and known-binary record of the long one, for V0 a number or a state tensor (single-step layers)."""
    plan = ops_neuron.plan_neuron(backend="cpp", **cfg)
    assert plan.lane
    taken = []
    real_lane = ops_neuron._lane
    monkeypatch.setattr(ops_neuron, "_lane", lambda *a: taken.append(1) or real_lane(*a))
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(5, 3, 130, generator=g) + 0.6
    v00 = torch.randn(3, 130, generator=g) * 0.3
    gs, gv = torch.randn(5, 3, 130, generator=g), torch.randn(3, 130, generator=g)
    results = []
    for p in (plan, plan._replace(lane=False)):
        x = x0.clone().requires_grad_(True)
        v0 = 0.25 if v0_kind == "number" else v00.clone().requires_grad_(v0_kind == "tensor_grad")
        spikes, v_last, v_seq = ops_neuron.run_neuron(p, x, v0, store_v_seq=True)
        wrt = [x] + ([v0] if v0_kind == "tensor_grad" else [])
        grads = torch.autograd.grad((spikes * gs).sum() + (v_last * gv).sum() + v_seq.sum(), wrt)
        results.append((spikes, v_last, v_seq, *grads, known_binary(spikes)))
    assert taken == [1]  # the first run only
    for a, b in zip(*results):
        assert (a == b) if isinstance(a, bool) else torch.equal(a, b)
    assert results[0][-1] == plan.binary


def test_short_path_is_only_taken_where_it_decides_nothing(monkeypatch):
    """Inputs the short path cannot run as they are take the long path (which converts, permutes or falls back),
    with the same results as a plain input."""
    taken = []
    real_lane = ops_neuron._lane
    monkeypatch.setattr(ops_neuron, "_lane", lambda *a: taken.append(1) or real_lane(*a))
    plan = ops_neuron.plan_neuron(backend="auto")
    x = torch.randn(4, 6, 5) + 0.6
    want = ops_neuron.run_neuron(plan, x, 0.0)
    assert taken == [1]
    taken.clear()
    long_inputs = [(x.transpose(1, 2).contiguous().transpose(1, 2), 0.0),  # not contiguous
                   (x.double(), 0.0), (x.bfloat16(), 0.0),  # another dtype: the reference, the converting launcher
                   (x, torch.zeros(6, 5).t().contiguous().t()),  # a non-contiguous V0
                   (x, torch.zeros(6, 5, dtype=torch.float64)), (x, 0)]  # an int V0: converted by the long path
    for xi, v0 in long_inputs:
        got = ops_neuron.run_neuron(plan, xi, v0)
        if xi.dtype != torch.bfloat16:  # bf16 rounds the input: only the path is checked
            assert torch.equal(got[0].float(), want[0]) and torch.allclose(got[1].float(), want[1], atol=1e-6)
    assert taken == []
    for bad in (float("nan"), float("inf")):  # a number V0 must be finite: the long path says so
        with pytest.raises(ValueError, match="v_init"):
            ops_neuron.run_neuron(plan, x, bad)
    with pytest.raises(ValueError, match="v_init must be a tensor of shape"):
        ops_neuron.run_neuron(plan, x, torch.zeros(5))
    assert taken == []
    for planned in (ops_neuron.plan_neuron(backend="torch"), ops_neuron.plan_neuron(mode="plif"),
                    ops_neuron.plan_neuron(backend=None)):
        assert not planned.lane
