"""KLIFNode, LIAFNode, ILIFNode and ActivationAwareIFNode on the fused single-state op (multistep_neuron's fire
variants 'klif', 'analog', 'count', 'offset'): the fused op runs in both step modes, equals the modules' per-step
Python functions, and matches SpikingJelly 2.0.0 (outputs exactly, states and gradients, KLIF's k included, to
rounding) on each backend."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastspike import neuron, surrogate as sg
from fastspike.ops.neuron import autograd as neuron_autograd
from helpers import DEVICE, assert_close, spy_op_calls
from test_neuron_sj_helpers import compare, pair

FIRE_ARG = 4 + neuron_autograd.CONFIG.index("fire")  # position of 'fire' in the op's arguments (x, v0, k, pc, ...)
MODE_ARG = 4 + neuron_autograd.CONFIG.index("mode")


@pytest.fixture
def op_calls(monkeypatch):
    """(mode, fire) of every call into the fused op."""
    calls = []
    spy_op_calls(monkeypatch, neuron_autograd.OPS.values(), lambda args: calls.append((args[MODE_ARG], args[FIRE_ARG])))
    return calls


def _inputs(seed=0, shape=(7, 4, 9), scale=1.5, shift=0.4):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(*shape, generator=g) * scale + shift).to(DEVICE) for _ in range(2)]


def _build(name, backend=None, **kw):
    if name == "KLIFNode":
        node = neuron.KLIFNode(**kw)
    elif name == "ILIFNode":
        node = neuron.ILIFNode(**kw)
    elif name == "ActivationAwareIFNode":
        node = neuron.ActivationAwareIFNode(**kw)
    else:
        node = neuron.LIAFNode(kw.pop("act", F.relu), kw.pop("threshold_related", True), **kw)
    if backend is not None:
        node.backend = backend
    return node.to(DEVICE)


def _module_run(node, xs, step_mode):
    """Two calls (the state carries over), then backward through outputs, v and v_seq; returns the outputs, v,
    v_seq, the input gradients and the parameter gradients."""
    leaves = [x.clone().requires_grad_() for x in xs]
    outs = [node(x) if step_mode == "m" else torch.stack([node(t) for t in x]) for x in leaves]
    w = [torch.cos(torch.arange(o.numel(), dtype=o.dtype) * 0.7).view(o.shape) for o in outs]
    loss = sum((o * wi).sum() for o, wi in zip(outs, w)) + 0.5 * node.v.sum()
    if isinstance(node.v_seq, torch.Tensor):
        loss = loss + 0.1 * node.v_seq.sum()
    loss.backward()
    return (outs, node.v.detach(), node.v_seq, [x.grad for x in leaves],
            {k: p.grad.clone() for k, p in node.named_parameters()})


def _assert_same(ref, out, exact_outputs=True):
    for a, b in zip(ref[0], out[0]):
        if exact_outputs:
            assert torch.equal(a, b)
        else:
            assert_close("output", a, b, 1e-5)
    assert_close("v", ref[1], out[1], 1e-5)
    if ref[2] is None:
        assert out[2] is None
    else:
        assert_close("v_seq", ref[2], out[2], 1e-5)
    for a, b in zip(ref[3], out[3]):
        assert_close("grad_x", a, b, 1e-5)
    assert list(ref[4]) == list(out[4])
    for key in ref[4]:
        assert_close(f"grad {key}", ref[4][key], out[4][key], 1e-4)


MODULES = [
    ("KLIFNode", dict(), 1),
    ("KLIFNode", dict(scale_reset=True, v_reset=None, surrogate_function=sg.ATan()), 2),
    ("KLIFNode", dict(scale_reset=True, decay_input=False, detach_reset=True, tau=3.0), 2),
    ("ILIFNode", dict(), 3),
    ("ILIFNode", dict(tau=2.0, v_threshold=0.5, detach_reset=True,
                      surrogate_function=neuron.ilif.MultiLevelSpikeCount(3, grad_window=(0.5, 2.5))), 3),
    ("LIAFNode", dict(act=F.relu, threshold_related=True, tau=2.0), 4),
    ("LIAFNode", dict(act=nn.Sigmoid(), threshold_related=False, v_reset=None, tau=3.0), 4),
    ("LIAFNode", dict(act=nn.Identity(), threshold_related=True, detach_reset=True,
                      surrogate_function=sg.Erf()), 4),
    ("ActivationAwareIFNode", dict(v_offset=0.2), 5),
    ("ActivationAwareIFNode", dict(v_threshold=0.8, v_offset=-0.1, v_reset=0.0, detach_reset=True,
                                   surrogate_function=sg.ATan()), 5),
    # per-channel thresholds / offsets: along the last axis of a step [4, 9], then along its first (N)
    ("ActivationAwareIFNode", dict(v_threshold=torch.linspace(0.5, 1.5, 9), v_offset=torch.linspace(-0.3, 0.3, 9)),
     5),
    ("ActivationAwareIFNode", dict(v_threshold=torch.tensor([0.6, 1.2, 0.9, 1.4]), v_offset=0.1, channel_dim=0,
                                   v_reset=0.0, detach_reset=True, surrogate_function=sg.ATan()), 5),
]
MODULE_IDS = [f"{n}-{i}" for i, (n, _, _) in enumerate(MODULES)]


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("name,kw,fire", MODULES, ids=MODULE_IDS)
def test_module_fused_matches_python_path(op_calls, step_mode, name, kw, fire):
    xs = _inputs(3)
    fused = _build(name, step_mode=step_mode, store_v_seq=True, **dict(kw))
    if name == "KLIFNode":
        with torch.no_grad():
            fused.k.fill_(1.3)
    out = _module_run(fused, xs, step_mode)
    assert op_calls and {c[1] for c in op_calls} == {fire}, op_calls  # the fused op ran, with this fire variant
    op_calls.clear()
    loop = _build(name, step_mode=step_mode, store_v_seq=True, **dict(kw))
    loop.load_state_dict(fused.state_dict())
    loop._fused = loop._op_kwargs = lambda: None  # the per-step Python functions
    ref = _module_run(loop, xs, step_mode)
    assert not op_calls
    if name == "ILIFNode":  # multi-level counts
        assert max(o.max() for o in out[0]) > 1
    _assert_same(ref, out, exact_outputs=name != "LIAFNode")


def test_unfused_configurations_take_the_python_path(op_calls):
    aaif = neuron.ActivationAwareIFNode(v_threshold=torch.tensor([0.5, 1.0, 1.5, 0.8, 1.2]), step_mode="m",
                                        surrogate_function=sg.Sigmoid(spiking=False))
    aaif.to(DEVICE)(torch.randn(3, 2, 5, device=DEVICE))  # an unfused surrogate: the Python step
    assert not op_calls
    x = torch.randn(3, 2, 5, device=DEVICE) + 0.5
    for node in (neuron.LIAFNode(torch.tanh, True, step_mode="m"), neuron.LIAFNode(nn.ReLU(inplace=True), False),
                 neuron.KLIFNode(surrogate_function=sg.Sigmoid(spiking=False), step_mode="m")):
        node.to(DEVICE)(x if node.step_mode == "m" else x[0])
    assert not op_calls
    node = neuron.LIAFNode(torch.tanh, True, step_mode="m")
    node.act = torch.sigmoid  # assigning an attribute drops the cached configuration
    node(x)
    assert op_calls == [(1, 4)]


@pytest.mark.peers
@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("name,kw,sgspec", [
    ("KLIFNode", {}, "Sigmoid"),
    ("KLIFNode", {"scale_reset": True, "v_reset": None}, "ATan"),
    ("KLIFNode", {"scale_reset": True, "v_reset": -0.1, "detach_reset": True}, "PiecewiseQuadratic"),
    ("KLIFNode", {"decay_input": False, "v_reset": None, "tau": 3.0}, "Erf"),
    ("ILIFNode", {}, None),
    ("ILIFNode", {"tau": 2.0, "v_threshold": 0.5}, ("MultiLevelSpikeCount", {"max_spike_count": 2})),
    ("ILIFNode", {"detach_reset": True}, ("MultiLevelSpikeCount", {"max_spike_count": 3, "grad_window": (0.5, 2.5)})),
    ("ActivationAwareIFNode", {"v_offset": 0.2}, "Sigmoid"),
    ("ActivationAwareIFNode", {"v_offset": -0.1, "v_reset": 0.0, "detach_reset": True}, "ATan"),
    ("ActivationAwareIFNode", {"v_threshold": torch.linspace(0.5, 1.5, 7), "v_offset": torch.linspace(-0.2, 0.2, 7)},
     "Sigmoid"),
    ("ActivationAwareIFNode", {"v_threshold": torch.tensor([0.7, 1.0, 1.3]), "v_offset": -0.1, "channel_dim": 0,
                               "v_reset": 0.0, "detach_reset": True}, "PiecewiseQuadratic"),
])
def test_module_matches_spikingjelly(op_calls, backend, step_mode, name, kw, sgspec):
    ref, ours = pair(name, sg=sgspec, step_mode=step_mode, store_v_seq=step_mode == "m", **kw)
    if name == "KLIFNode":  # a k away from 1, trained by both
        with torch.no_grad():
            ref.k.fill_(1.25)
            ours.k.fill_(1.25)
    ours.backend = backend
    xs = [x.to(DEVICE) for x in _inputs(5, (6, 3, 7))]
    out = compare(ref, ours, xs, step_mode)
    assert op_calls, "the fused op did not run"
    if name == "KLIFNode":
        assert out[4]["k"] is not None and out[4]["k"].abs() > 0


@pytest.mark.peers
@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("act,threshold_related,kw", [(F.relu, True, {}), (torch.sigmoid, False, {"v_reset": None}),
                                                      (nn.Identity(), True, {"detach_reset": True})])
def test_liaf_matches_spikingjelly_single_step(op_calls, backend, act, threshold_related, kw):
    """SpikingJelly's LIAFNode in step_mode 's' (its step_mode 'm' returns LIF spikes, see test_neuron_sj_special)."""
    ref, ours = pair("LIAFNode", act, threshold_related, 2.5, **kw)
    ours.backend = backend
    compare(ref, ours, [x.to(DEVICE) for x in _inputs(7, (6, 3, 7))], "s", exact=False)
    assert op_calls


def test_liaf_multi_step_equals_single_steps(op_calls):
    x = _inputs(9)[0]
    m = neuron.LIAFNode(torch.sigmoid, False, 2.0, step_mode="m").to(DEVICE)(x)
    s_node = neuron.LIAFNode(torch.sigmoid, False, 2.0).to(DEVICE)
    s = torch.stack([s_node(t) for t in x])
    assert_close("outputs", m, s, 1e-6)
    assert {c[1] for c in op_calls} == {4} and len(op_calls) == 1 + x.shape[0]


def _pc_call(args):
    return args[FIRE_ARG], None if args[3] is None else tuple(args[3].shape), args[-1]


@pytest.fixture
def pc_calls(monkeypatch):
    """For every call into the fused op: (fire, the per-channel [2, C] tensor's shape or None, inner)."""
    calls = []
    spy_op_calls(monkeypatch, neuron_autograd.OPS.values(), lambda args: calls.append(_pc_call(args)))
    return calls


@pytest.mark.peers
@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("channel_dim,v_reset", [(1, None), (-3, 0.0)])
def test_aaif_per_channel_conv_layout_matches_spikingjelly(pc_calls, backend, step_mode, channel_dim, v_reset):
    """Per-channel thresholds and offsets of a conv activation [N, C, H, W] (channel_dim 1, or -3 from the end) on
    the fused op (the spy sees the [2, C] tensor and the inner size H W), equal to SpikingJelly's Python step."""
    C = 4
    ref, ours = pair("ActivationAwareIFNode", sg="ATan", step_mode=step_mode, store_v_seq=step_mode == "m",
                     v_threshold=torch.linspace(0.6, 1.4, C), v_offset=torch.tensor([0.1, -0.2, 0.0, 0.25]),
                     channel_dim=channel_dim, v_reset=v_reset)
    ours.backend = backend
    xs = [x.to(DEVICE) for x in _inputs(11, (5, 2, C, 3, 5))]
    compare(ref, ours, xs, step_mode)
    steps = 2 * 5 if step_mode == "s" else 2
    assert pc_calls == [(5, (2, C), 15)] * steps, pc_calls


def test_aaif_per_channel_module_errors():
    """The module's own checks of the channel axis (as SpikingJelly words them), before the fused op."""
    node = neuron.ActivationAwareIFNode(v_threshold=torch.ones(3), channel_dim=2, step_mode="m")
    with pytest.raises(ValueError, match="channel_dim=2 is out of range"):
        node(torch.zeros(2, 4, 3))
    node = neuron.ActivationAwareIFNode(v_offset=torch.zeros(5), step_mode="s")
    with pytest.raises(ValueError, match="v_offset has length 5"):
        node(torch.zeros(4, 3))


@pytest.mark.peers
@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("v_threshold,v_offset,table", [
    (torch.tensor(0.9), torch.tensor(0.15), (2, 1)),  # both 0-d: one value for every neuron
    (torch.tensor(1.1), torch.tensor([0.1, -0.2, 0.0, 0.25]), (2, 4)),  # a 0-d one beside a per-channel one
])
def test_aaif_scalar_buffers_read_on_device_match_spikingjelly(monkeypatch, pc_calls, backend, step_mode,
                                                                v_threshold, v_offset, table):
    """0-d threshold / offset buffers on an accelerator go to the op as tensors (the kernels read them there: no host
    synchronisation). Forced here on the CPU: the spy sees the [2, C] table (C = 1 when neither buffer is per
    channel), and the module still equals SpikingJelly's Python step."""
    monkeypatch.setattr("fastspike.neuron.integrate_and_fire._read_on_device", lambda buf: True)
    ref, ours = pair("ActivationAwareIFNode", sg="ATan", step_mode=step_mode, store_v_seq=step_mode == "m",
                     v_threshold=v_threshold, v_offset=v_offset, channel_dim=1, v_reset=None)
    ours.backend = backend
    compare(ref, ours, [x.to(DEVICE) for x in _inputs(13, (5, 2, 4, 3))], step_mode)
    steps = 2 * 5 if step_mode == "s" else 2
    assert pc_calls == [(5, table, 3)] * steps, pc_calls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="counts device-to-host synchronisations: needs CUDA")
def test_aaif_scalar_buffers_never_synchronise_on_cuda():
    node = neuron.ActivationAwareIFNode(v_threshold=0.8, v_offset=0.1, step_mode="m").cuda()
    x = torch.randn(4, 8, 64, device="cuda", requires_grad=True)
    node(x)  # the first call may initialise things that are allowed to synchronise
    node.reset()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        node(x).sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x.grad is not None
