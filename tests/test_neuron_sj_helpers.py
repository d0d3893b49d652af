"""Helpers shared by the tests/test_neuron_sj_*.py files (this file holds no tests): build a SpikingJelly
2.0.0 neuron and fastspike's namesake with the same arguments and weights, run both on the same inputs
(forward and backward) and compare outputs, states and gradients."""
import pytest
import torch

from fastspike import neuron as fs_neuron
from fastspike import surrogate as fs_surrogate
from fastspike.neuron import ilif as fs_ilif
from helpers import DEVICE, TOL, assert_close

F32 = TOL[torch.float32]


def sj():
    """SpikingJelly's (neuron, surrogate) modules; skips the test when SpikingJelly is not installed."""
    return (pytest.importorskip("spikingjelly.activation_based.neuron"),
            pytest.importorskip("spikingjelly.activation_based.surrogate"))


def surrogates(spec):
    """(SpikingJelly's, fastspike's) surrogate for ``spec``: a class name or (name, kwargs)."""
    _, sj_sg = sj()
    name, kw = (spec, {}) if isinstance(spec, str) else spec
    if name == "MultiLevelSpikeCount":
        return sj_sg.MultiLevelSpikeCount(**kw), fs_ilif.MultiLevelSpikeCount(**kw)
    return getattr(sj_sg, name)(**kw), getattr(fs_surrogate, name)(**kw)


def pair(name, *args, sg=None, **kw):
    """(SpikingJelly's, fastspike's) ``name`` built with the same arguments, on DEVICE, fastspike's loaded
    with SpikingJelly's state_dict (strict, so the keys must agree)."""
    sj_neuron, _ = sj()
    ref_kw, our_kw = dict(kw), dict(kw)
    if sg is not None:
        ref_kw["surrogate_function"], our_kw["surrogate_function"] = surrogates(sg)
    ref = getattr(sj_neuron, name)(*args, **ref_kw).to(DEVICE)
    ours = getattr(fs_neuron, name)(*args, **our_kw).to(DEVICE)
    assert list(ours.state_dict()) == list(ref.state_dict()), f"{name}: state_dict keys differ"
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _weight(out: torch.Tensor) -> torch.Tensor:
    """A fixed upstream gradient of both signs, shaped like ``out``."""
    return torch.cos(torch.arange(out.numel(), device=out.device, dtype=out.dtype) * 0.7).view(out.shape)


def run(node, xs, mode):
    """Feed each sequence of ``xs`` ([T, N, *], one call each in mode 'm', T calls in mode 's'); backward
    through sum(out * fixed weights) + 0.5 * (every tensor state) + 0.1 * v_seq. Returns the outputs, the states
    (memory name -> value), v_seq, the input gradients and the parameter gradients."""
    leaves = [x.clone().requires_grad_() for x in xs]
    outs = []
    for x in leaves:
        inp = x * 1.0  # SpikingJelly's ILC nodes write into their input
        out = node(inp) if mode == "m" else torch.stack([_first(node(step)) for step in inp])
        outs.append(_first(out))
    loss = sum((o * _weight(o)).sum() for o in outs)
    states = dict(getattr(node, "_memories", {}))
    for value in states.values():
        if isinstance(value, torch.Tensor) and value.requires_grad:
            loss = loss + 0.5 * value.sum()
    v_seq = getattr(node, "v_seq", None)
    if isinstance(v_seq, torch.Tensor) and v_seq.requires_grad:
        loss = loss + 0.1 * v_seq.sum()
    if loss.requires_grad:
        loss.backward()
    grads = {k: p.grad for k, p in node.named_parameters()}
    return outs, states, v_seq, [x.grad for x in leaves], grads


def _first(out):
    return out[0] if isinstance(out, (list, tuple)) else out


def compare(ref, ours, xs, mode, exact=True, tol=F32):
    """Run ``ref`` and ``ours`` on ``xs`` and assert agreement: outputs bit for bit (``exact``: spikes) or to
    ``tol``, states, v_seq and every gradient to ``tol``."""
    r = run(ref, xs, mode)
    o = run(ours, xs, mode)
    name = type(ours).__name__
    for i, (a, b) in enumerate(zip(r[0], o[0])):
        if exact:
            assert torch.equal(a.detach(), b.detach()), f"{name} {mode}: outputs of call {i} differ from SpikingJelly"
        else:
            assert_close(f"{name} output {i}", a, b, tol)
    assert list(r[1]) == list(o[1]), f"{name}: memories {list(o[1])} != SpikingJelly's {list(r[1])}"
    for key in r[1]:
        a, b = r[1][key], o[1][key]
        if isinstance(a, torch.Tensor):
            assert_close(f"{name} state {key}", a, b, tol)
        else:
            assert a == b, f"{name} state {key}: {b!r} != {a!r}"
    if isinstance(r[2], torch.Tensor):
        assert_close(f"{name} v_seq", r[2], o[2], tol)
    else:
        assert o[2] is None
    for i, (a, b) in enumerate(zip(r[3], o[3])):
        if a is None:
            assert b is None or not b.any()
        else:
            assert_close(f"{name} grad x{i}", a, b, tol)
    assert list(r[4]) == list(o[4])
    for key in r[4]:
        if r[4][key] is None:
            assert o[4][key] is None or not o[4][key].any(), f"{name}: grad of {key}"
        else:
            assert_close(f"{name} grad {key}", r[4][key], o[4][key], tol)
    return o
