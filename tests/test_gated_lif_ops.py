"""fastspike.ops.multistep_gated_lif (GLIF): every backend against the pure-PyTorch reference (outputs, final
potential, and gradients w.r.t. x, the initial potential and every gate and coefficient, by autograd through the
reference), bad input, and GatedLIFNode (which runs the op) against SpikingJelly 2.0.0's GatedLIFNode."""
import pytest
import torch

from fastspike import functional, neuron
from fastspike import surrogate as sg
from fastspike.neuron import lif_variants
from fastspike.ops import multistep_gated_lif
from fastspike.ops.bits import known_binary
from helpers import KERNEL_BACKENDS, TOL, assert_close, device_of, noncontiguous
from test_neuron_sj_helpers import compare, pair

SURROGATES = [cls() for cls in sg._BUILTINS]
NAMES = ["alpha", "beta", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset", "conduct"]


def _inputs(T, shape, channels, device, dtype=torch.float32, seed=0, scale=0.8):
    """x [T, *shape], v0, the 7 gates ([channels] or 0-d) and conduct, all in (0, 1) as after a sigmoid, and
    upstream gradients of the spikes and the final potential."""
    g = torch.Generator().manual_seed(seed)
    p = () if channels is None else (channels,)
    x = torch.randn(T, *shape, generator=g) * scale + 0.3
    v0 = torch.rand(*shape, generator=g) * 0.5
    gates = [torch.rand(p, generator=g) * 0.8 + 0.1 for _ in range(7)]
    gates[4] = gates[4] * 0.5 + 0.2  # the threshold: some neurons fire, some do not
    conduct = torch.rand((T, *p), generator=g) * 0.8 + 0.1
    grads = [torch.randn(T, *shape, generator=g), torch.randn(*shape, generator=g)]
    return (x.to(device, dtype), v0.to(device, dtype), [t.to(device) for t in gates], conduct.to(device),
            [t.to(device, dtype) for t in grads])


def _run(backend, x, v0, gates, conduct, grads, surrogate=None):
    """Spikes, v_last and the gradients of x, v0 (None for a number), the 7 gates and conduct."""
    x = x.detach().clone().requires_grad_()
    v0 = v0.detach().clone().requires_grad_() if isinstance(v0, torch.Tensor) else v0
    params = [t.detach().clone().requires_grad_() for t in (*gates, conduct)]
    spikes, v = multistep_gated_lif(x, v0, *params, surrogate_function=surrogate, backend=backend)
    ((spikes * grads[0]).sum() + (v * grads[1]).sum()).backward()
    return [spikes, v, x.grad, v0.grad if isinstance(v0, torch.Tensor) else None] + [p.grad for p in params]


def _compare(backend, x, v0, gates, conduct, grads, surrogate=None, tol=1e-5, param_tol=1e-4):
    ref = _run("torch", x, v0, gates, conduct, grads, surrogate)
    out = _run(backend, x, v0, gates, conduct, grads, surrogate)
    assert out[0].dtype == x.dtype and torch.equal(ref[0], out[0]), "spikes differ from the reference"
    assert 0 < out[0].float().mean() < 1, "the test inputs should make some neurons fire and some not"
    for name, r, o in zip(["v_last", "grad_x", "grad_v0"] + NAMES, ref[1:], out[1:]):
        if r is None:
            assert o is None, name
            continue
        assert o is not None and o.dtype == r.dtype and o.shape == r.shape, name
        # the per-channel sums of the gradients of the gates add terms of both signs: fp32 summation order
        assert_close(f"{backend}:{name}", r, o, param_tol if name in NAMES else tol)
    return out


CASES = [(None, (3, 37)), (4, (2, 4, 3, 5)), (3, (2, 3, 11))]


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("channels,shape", CASES, ids=["layerwise", "channelwise-4d", "channelwise-3d"])
@pytest.mark.parametrize("T", [1, 6], ids=["T1", "T6"])
def test_matches_reference(backend, channels, shape, T):
    x, v0, gates, conduct, grads = _inputs(T, shape, channels, device_of(backend), seed=T)
    _compare(backend, x, v0, gates, conduct, grads, sg.Sigmoid())


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("channels,shape", [(None, (2, 700)), (2, (3, 2, 600))], ids=["layerwise", "channelwise"])
def test_second_program(backend, channels, shape):
    """More neurons per channel than a Triton program (512) or a C++ unit (256) holds: the per-channel gradient
    sums add several programs' partial rows, the last one partial."""
    x, v0, gates, conduct, grads = _inputs(4, shape, channels, device_of(backend), seed=3)
    _compare(backend, x, v0, gates, conduct, grads, sg.ATan())


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("surrogate", SURROGATES, ids=[type(s).__name__ for s in SURROGATES])
def test_every_surrogate_fused(backend, surrogate):
    assert surrogate.fusable()
    x, v0, gates, conduct, grads = _inputs(4, (2, 3, 9), 3, device_of(backend), scale=1.2)
    _compare(backend, x, v0, gates, conduct, grads, surrogate)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_number_initial_potential_and_noncontiguous(backend):
    """v_init given as a number equals a filled tensor (and has no gradient); non-contiguous x and upstream
    gradients are read correctly."""
    x, v0, gates, conduct, grads = _inputs(5, (4, 2, 9), 2, device_of(backend))
    grads = [noncontiguous(g) for g in grads]
    _compare(backend, noncontiguous(x), 0.25, gates, conduct, grads, sg.Erf())
    filled = _run(backend, x, torch.full_like(v0, 0.25), gates, conduct, grads, sg.Erf())
    number = _run(backend, x, 0.25, gates, conduct, grads, sg.Erf())
    assert number[3] is None
    for i, (a, b) in enumerate(zip(filled, number)):
        if i != 3:
            assert torch.equal(a, b), i


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_spikes_are_recorded_as_binary(backend):
    x, v0, gates, conduct, _ = _inputs(3, (2, 4, 5), 4, device_of(backend))
    spikes, v = multistep_gated_lif(x, v0, *gates, conduct, backend=backend)
    assert known_binary(spikes) and not known_binary(v)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_parameter_gradients_are_deterministic(backend):
    x, v0, gates, conduct, grads = _inputs(5, (3, 2, 700), 2, device_of(backend), seed=5)
    first = _run(backend, x, v0, gates, conduct, grads)
    second = _run(backend, x, v0, gates, conduct, grads)
    for name, a, b in zip(NAMES, first[4:], second[4:]):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(backend, dtype):
    """16-bit x: fp32 arithmetic inside, spikes and v_last in x's dtype, gradients of x and v0 in theirs, the
    gates' gradients in the gates' dtype (fp32)."""
    x, v0, gates, conduct, grads = _inputs(4, (2, 3, 11), 3, device_of(backend), dtype)
    ref = _run("torch", x, v0, gates, conduct, grads)
    out = _run(backend, x, v0, gates, conduct, grads)
    assert out[0].dtype == out[1].dtype == out[2].dtype == out[3].dtype == dtype
    assert all(g.dtype == torch.float32 for g in out[4:])
    mismatch = (ref[0] != out[0]).float().mean().item()
    assert mismatch == 0.0, f"{mismatch:.2%} of spikes differ"
    for name, r, o in zip(["v_last", "grad_x", "grad_v0"] + NAMES, ref[1:], out[1:]):
        assert_close(f"{backend}:{dtype}:{name}", r, o, TOL[dtype])


@pytest.mark.parametrize("backend", ["torch", *KERNEL_BACKENDS])
def test_empty_inputs(backend):
    dev = device_of(backend)
    x, v0, gates, conduct, _ = _inputs(3, (0, 2, 4), 2, dev)
    spikes, v = multistep_gated_lif(x, v0, *gates, conduct, backend=backend)
    assert spikes.shape == x.shape and v.shape == v0.shape


def _bad_calls():
    x, v0, gates, conduct, _ = _inputs(3, (2, 4, 5), 4, "cpu")
    ok = dict(x_seq=x, v_init=v0, **dict(zip(NAMES, (*gates, conduct))))
    two_d = gates[0].expand(2, 4)
    return [
        (dict(ok, x_seq=x.numpy()), TypeError, "x_seq must be a torch.Tensor"),
        (dict(ok, x_seq=x.long()), TypeError, "x_seq must be a floating-point"),
        (dict(ok, beta=0.5), TypeError, "beta must be a torch.Tensor"),
        (dict(ok, gamma=two_d), ValueError, "gamma must be 0-d"),
        (dict(ok, tau=gates[3][:3]), ValueError, "share one shape"),
        (dict(ok, conduct=conduct[:2]), ValueError, "conduct must have shape"),
        (dict(ok, x_seq=x[:, :, :3], v_init=v0[:, :3]), ValueError, "channels at dim 2"),
        (dict(ok, v_init=v0[:1]), ValueError, "v_init must be a tensor of shape"),
        (dict(ok, v_init=float("nan")), ValueError, "v_init must be"),
    ]


@pytest.mark.parametrize("kwargs,exc,match", _bad_calls(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        multistep_gated_lif(**kwargs)


def test_unfused_surrogate_with_a_kernel_backend_raises():
    x, v0, gates, conduct, _ = _inputs(3, (2, 4, 5), 4, "cpu")
    with pytest.raises(ValueError, match="backend='cpp'"):
        multistep_gated_lif(x, v0, *gates, conduct, surrogate_function=sg.Sigmoid(spiking=False), backend="cpp")


# ------------------------------------------------------------------------------------ the module
def _xs(shape, calls=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) * 1.5 + 0.3 for _ in range(calls)]


@pytest.fixture
def op_calls(monkeypatch):
    """How many times GatedLIFNode called the fused op."""
    calls = []
    real = lif_variants.multistep_gated_lif

    def counting(*args, **kwargs):
        calls.append(kwargs.get("backend"))
        return real(*args, **kwargs)

    monkeypatch.setattr(lif_variants, "multistep_gated_lif", counting)
    return calls


MODULE_CASES = [(None, (5, 2, 3, 4, 4)), (3, (5, 2, 3, 4, 4)), (None, (5, 3, 7)), (1, (5, 2, 3, 2, 2))]


@pytest.mark.peers
@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("inplane,shape", MODULE_CASES, ids=["layerwise-5d", "channelwise", "layerwise-3d",
                                                             "inplane1"])
@pytest.mark.parametrize("surrogate", ["Sigmoid", "ATan", ("PiecewiseLeakyReLU", {"w": 0.6, "c": 0.05})],
                         ids=["Sigmoid", "ATan", "PiecewiseLeakyReLU"])
def test_module_matches_spikingjelly(backend, inplane, shape, surrogate, op_calls):
    """Spikes bit for bit, states and every gradient (x, each parameter) to fp32 rounding, over two calls that
    carry the state (SpikingJelly's GatedLIFNode is multi-step only)."""
    ref, ours = pair("GatedLIFNode", shape[0], inplane=inplane, sg=surrogate)
    functional.set_backend(ours, backend)
    ref.to(device_of(backend))
    ours.to(device_of(backend))
    xs = [x.to(device_of(backend)) for x in _xs(shape)]
    compare(ref, ours, xs, "m", tol=2e-5)
    assert op_calls == [backend, backend], "GatedLIFNode did not run the fused op"


@pytest.mark.peers
def test_module_longer_input_and_half_input(op_calls):
    """An input with more steps than T runs its first T (as SpikingJelly's loop does); an fp16 input computes in
    fp32 against the fp32 parameters and returns fp32, as SpikingJelly's type promotion does."""
    ref, ours = pair("GatedLIFNode", 4, inplane=3)
    x = _xs((6, 2, 3, 4, 4), 1)[0]
    compare(ref, ours, [x], "m")
    functional.reset_net(ref)
    functional.reset_net(ours)
    compare(ref, ours, [x.half()], "m")
    assert len(op_calls) == 2


@pytest.mark.peers
def test_module_unfused_configurations_run_the_loop(op_calls):
    """A surrogate without a kernel, or float64 parameters, run the Python loop with SpikingJelly's numbers."""
    ref, ours = pair("GatedLIFNode", 4, inplane=2, sg=("Sigmoid", {"spiking": False}))
    compare(ref, ours, _xs((4, 2, 2, 3, 3)), "m", exact=False)
    ref, ours = pair("GatedLIFNode", 4)
    compare(ref.double(), ours.double(), [x.double() for x in _xs((4, 2, 5))], "m", tol=1e-10)
    assert op_calls == []


def test_module_state_dict_and_shapes():
    node = neuron.GatedLIFNode(4, inplane=3)
    assert list(node.state_dict()) == ["alpha", "beta", "gamma", "tau", "v_threshold", "linear_decay", "v_subreset",
                                       "conduct"]
    assert node.conduct.shape == (4, 3) and node.alpha.shape == (3,)
    assert node.backend == "auto"
