"""fastspike.ops.stbif (SpikeZIP's ST-BIF neuron, forward only): every backend against the pure-PyTorch reference
(events exact, states exact: the kernels compute in fp32 in the reference's order of operations), T = 1, sizes that
reach a second Triton program, fp16/bf16, the error under autograd and on bad input; STBIFNode against SpikingJelly
2.0.0's in both step modes; and the functional routings (stbif_multi_step to ops.stbif, izhikevich_multi_step to
ops.multistep_neuron2) against SpikingJelly's functions."""
import sys

import pytest
import torch

import fastspike.functional.neuron as fn
import fastspike.neuron.spikezip as spikezip
from fastspike import functional as F, neuron, surrogate
from fastspike.ops import reference, stbif
from helpers import DEVICE, KERNEL_BACKENDS, assert_close, device_of

ALL_BACKENDS = ["torch", *KERNEL_BACKENDS]
PARAMS = (0.25, 3.0, -4.0)  # q_threshold, pos_max, neg_min
_OPMOD = sys.modules["fastspike.ops.stbif"]


def _inputs(T, shape, device, dtype=torch.float32, seed=0, ties=False):
    """x around the thresholds, q anywhere in [-0.5, 1.5), acc_q integers inside and at the bounds (with ties
    acc_q also takes halves, to check the round half to even)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, *shape, generator=g) * 0.3
    q = torch.rand(*shape, generator=g) * 2 - 0.5
    acc = torch.randint(-4, 4, shape, generator=g).float()
    if ties:
        acc = acc + 0.5 * (torch.rand(*shape, generator=g) < 0.5)
    return x.to(device, dtype), q.to(device), acc.to(device)


def _equal(name, ref, out):
    assert out.dtype == ref.dtype and out.shape == ref.shape, f"{name}: {out.dtype}{tuple(out.shape)}"
    assert torch.equal(out, ref), f"{name}: max |diff| {(out.float() - ref.float()).abs().max().item()}"


@pytest.mark.parametrize("backend", ALL_BACKENDS)
@pytest.mark.parametrize("T,shape", [(1, (3, 7)), (9, (1031,)), (5, (2, 3, 173))], ids=["T1", "T9-N1031", "T5-odd"])
def test_matches_reference(backend, T, shape):
    dev = device_of(backend)
    x, q, acc = _inputs(T, shape, dev, ties=True)
    ref = reference.stbif(x, q, acc, *PARAMS)
    out = stbif(x, q, acc, *PARAMS, backend=backend)
    for name, r, o in zip(("out", "q", "acc_q", "event"), ref, out):
        _equal(f"{backend} {name}", r, o)
    assert set(ref[3].unique().tolist()) <= {-1.0, 0.0, 1.0}
    if T > 1:  # the case exercises both events and both bounds
        counts = (ref[0] != 0).sum()
        assert counts > 0 and (ref[0] > 0).any() and (ref[0] < 0).any()
        assert (ref[2] == PARAMS[1]).any() and (ref[2] == PARAMS[2]).any()


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("state_dtype", ["fp32", "same"])
def test_half_precision_computes_in_fp32(backend, dtype, state_dtype):
    dev = device_of(backend)
    x, q, acc = _inputs(6, (1030,), dev, dtype=dtype, seed=1)
    if state_dtype == "same":
        q, acc = q.to(dtype), acc.to(dtype)
    ref = reference.stbif(x, q, acc, *PARAMS)
    out = stbif(x, q, acc, *PARAMS, backend=backend)
    for name, r, o in zip(("out", "q", "acc_q", "event"), ref, out):
        _equal(f"{backend} {dtype} {name}", r, o)
    assert out[0].dtype == dtype and out[1].dtype == q.dtype and out[2].dtype == acc.dtype
    # the same numbers as the fp32 computation on the rounded inputs, cast at the end
    f32 = reference.stbif(x.float(), q.float(), acc.float(), *PARAMS)
    _equal("fp32 out", f32[0].to(dtype), out[0])


def test_float64_runs_the_reference_and_matches_spikingjelly():
    sjf = pytest.importorskip("spikingjelly.activation_based.functional")
    x, q, acc = _inputs(7, (4, 9), DEVICE, dtype=torch.float64)
    q, acc = q.double(), acc.double()
    params = [torch.tensor(v, device=DEVICE) for v in PARAMS]
    out = stbif(x, q, acc, *params)
    ref = sjf.stbif_multi_step(x, q, acc, *params)
    for name, r, o in zip(("out", "q", "acc_q", "event"), ref, out):
        _equal(f"fp64 {name}", r, o)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_parameters_as_numbers_or_tensors(backend):
    dev = device_of(backend)
    x, q, acc = _inputs(4, (37,), dev)
    a = stbif(x, q, acc, *PARAMS, backend=backend)
    b = stbif(x, q, acc, *(torch.tensor([v], dtype=torch.float64, device=dev) for v in PARAMS), backend=backend)
    for r, o in zip(a, b):
        assert torch.equal(r, o)


@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_inputs_that_require_grad_raise(backend):
    dev = device_of(backend)
    x, q, acc = _inputs(3, (11,), dev)
    for args in ((x.requires_grad_(), q, acc), (x.detach(), q.requires_grad_(), acc)):
        with pytest.raises(RuntimeError, match="stbif.*forward-only"):
            stbif(*args, *PARAMS, backend=backend)
        with torch.no_grad():  # the same tensors run under no_grad
            stbif(*args, *PARAMS, backend=backend)
    thr = torch.tensor(0.25, device=dev, requires_grad=True)
    with pytest.raises(RuntimeError, match="forward-only"):
        stbif(x.detach(), q.detach(), acc, thr, 3.0, -4.0, backend=backend)


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_inference_op_raises_naming_the_custom_op(backend):
    """The registered op itself (ops/_contract.py InferenceOp) refuses inputs that require grad."""
    dev = device_of(backend)
    x, q, acc = _inputs(2, (5,), dev)
    params = [torch.tensor([v], device=dev) for v in PARAMS]
    with pytest.raises(RuntimeError, match=f"fastspike::stbif_{backend} is forward-only"):
        _OPMOD.OPS[backend](x.requires_grad_(), q, acc, *params)


def test_bad_input_is_named():
    x, q, acc = _inputs(3, (2, 5), DEVICE)
    with pytest.raises(TypeError, match="x_seq"):
        stbif(x.numpy(), q, acc, *PARAMS)
    with pytest.raises(TypeError, match="x_seq"):
        stbif(x.int(), q, acc, *PARAMS)
    with pytest.raises(ValueError, match="x_seq.*T >= 1"):
        stbif(x[:0], q, acc, *PARAMS)
    with pytest.raises(ValueError, match="q must have shape"):
        stbif(x, q[:1], acc, *PARAMS)
    with pytest.raises(ValueError, match="acc_q must have shape"):
        stbif(x, q, acc.reshape(-1), *PARAMS)
    with pytest.raises(TypeError, match="acc_q"):
        stbif(x, q, acc.long(), *PARAMS)
    with pytest.raises(ValueError, match="q_threshold.*one-element"):
        stbif(x, q, acc, torch.ones(2), 3.0, -4.0)
    with pytest.raises(ValueError, match="pos_max"):
        stbif(x, q, acc, 0.25, float("nan"), -4.0)
    with pytest.raises(ValueError, match="neg_min"):
        stbif(x, q, acc, 0.25, 3.0, "low")
    with pytest.raises(ValueError, match="backend"):
        stbif(x, q, acc, *PARAMS, backend="cuda")


def test_traces_as_one_custom_op():
    """torch.compile(fullgraph=True) sees the custom op (fake implementation for the shapes), with eager's numbers."""
    captured = []

    def backend(gm, example_inputs):
        captured.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    x, q, acc = _inputs(4, (3, 29), DEVICE)
    params = [torch.tensor(v, device=DEVICE) for v in PARAMS]
    fn_ = torch.compile(lambda *a: stbif(*a), fullgraph=True, backend=backend)
    with torch.no_grad():
        out = fn_(x, q, acc, *params)
    want = "fastspike.stbif_triton" if DEVICE.type == "cuda" else "fastspike.stbif_cpp"
    assert any(want in t for t in captured), captured
    for r, o in zip(stbif(x, q, acc, *params), out):
        assert torch.equal(r, o)


# ------------------------------------------------------------------------------------- the module
def _sj_pair(step_mode, **kw):
    sjn = pytest.importorskip("spikingjelly.activation_based.neuron")
    ref = sjn.STBIFNode(step_mode=step_mode, **kw).to(DEVICE)
    ours = neuron.STBIFNode(step_mode=step_mode, **kw).to(DEVICE)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _count_op_calls(monkeypatch):
    calls = []
    real = spikezip.stbif
    monkeypatch.setattr(spikezip, "stbif", lambda *a, **k: calls.append(a[0].shape[0]) or real(*a, **k))
    return calls


@pytest.mark.peers
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("kw", [dict(q_threshold=0.3, level=8, sym=True), dict(q_threshold=0.2, level=4),
                                dict(q_threshold=0.5, level=16, pos_max=5.0, neg_min=-2.0)],
                         ids=["sym", "unsym", "bounds"])
def test_module_matches_spikingjelly(step_mode, kw, monkeypatch):
    calls = _count_op_calls(monkeypatch)
    ref, ours = _sj_pair(step_mode, **kw)
    g = torch.Generator().manual_seed(2)
    xs = (torch.randn(2, 5, 3, 67, generator=g) * 0.4).to(DEVICE)  # two calls of T = 5 (or 5 single steps each)
    with torch.no_grad():
        for chunk in xs:
            if step_mode == "s":
                a = torch.stack([ours(x) for x in chunk])
                b = torch.stack([ref(x) for x in chunk])
            else:
                a, b = ours(chunk), ref(chunk)
            _equal("output", b, a)
            for name in ("q", "acc_q", "cur_output"):
                _equal(name, getattr(ref, name), getattr(ours, name))
            _equal("accumulated", ref.accumulated, ours.accumulated)
    assert calls == ([1] * 10 if step_mode == "s" else [5, 5])  # the op ran every step / sequence
    assert (ours.acc_q != 0).any()
    F.reset_net(ours)
    assert ours.q is None


@pytest.mark.peers
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_module_half_precision(dtype):
    """fp16/bf16: fastspike computes in fp32 within a call (SpikingJelly in the input dtype, so its q rounds to
    that dtype every step). One multi-step call therefore equals SpikingJelly's fp32 numbers on the same inputs."""
    ref, ours = _sj_pair("m", q_threshold=0.3, level=8, sym=True)
    x = (torch.randn(6, 2, 45) * 0.4).to(DEVICE, dtype)
    with torch.no_grad():
        out = ours(x)
        want = ref(x.float())
    assert out.dtype == dtype and ours.q.dtype == dtype
    _equal("output", want.to(dtype), out)
    _equal("acc_q", ref.acc_q.to(dtype), ours.acc_q)
    assert_close("q", ref.q, ours.q.float(), 1e-2)


def test_module_under_autograd_raises():
    node = neuron.STBIFNode(0.3, 8, step_mode="m")
    with pytest.raises(RuntimeError, match="inference"):
        node(torch.randn(2, 3, device=DEVICE, requires_grad=True).unsqueeze(0).expand(2, 2, 3))


def test_subclass_with_its_own_step_keeps_it(monkeypatch):
    calls = _count_op_calls(monkeypatch)

    class Doubled(neuron.STBIFNode):
        def single_step_functional_forward(self, inputs, states, **kwargs):
            (out,), new = super().single_step_functional_forward(inputs, states, **kwargs)
            return (2 * out,), new

    node = Doubled(0.3, 8, step_mode="m").to(DEVICE)
    base = neuron.STBIFNode(0.3, 8, step_mode="m").to(DEVICE)
    x = torch.randn(4, 2, 9, device=DEVICE)
    with torch.no_grad():
        assert torch.equal(node(x), 2 * base(x))
    assert calls == [4]  # only the plain neuron's call; the subclass looped its own single step


# ----------------------------------------------------------------------------------- functional routings
@pytest.mark.peers
@pytest.mark.parametrize("T", [1, 6])
def test_stbif_multi_step_routes_to_the_op(T, monkeypatch):
    sjf = pytest.importorskip("spikingjelly.activation_based.functional")
    calls = []
    real = fn.stbif
    monkeypatch.setattr(fn, "stbif", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, q, acc = _inputs(T, (3, 41), DEVICE, seed=4)
    params = [torch.tensor(v, device=DEVICE) for v in PARAMS]
    out = F.stbif_multi_step(x, q, acc, *params)
    ref = sjf.stbif_multi_step(x, q, acc, *params)
    assert calls == [1]
    for name, r, o in zip(("out", "q", "acc_q", "event"), ref, out):
        _equal(name, r, o)
    # per-neuron thresholds (broadcast tensors) keep the step loop
    thr = torch.full((41,), 0.25, device=DEVICE)
    loop = F.stbif_multi_step(x, q, acc, thr, *params[1:])
    assert calls == [1]
    for name, r, o in zip(("out", "q", "acc_q", "event"), ref, loop):
        _equal(f"loop {name}", r, o)
    with pytest.raises(RuntimeError, match="autograd"):
        F.stbif_multi_step(x.requires_grad_(), q, acc, *params)


@pytest.mark.peers
@pytest.mark.parametrize("T,v_reset,store", [(1, 0.0, True), (7, None, False), (7, -0.1, True)],
                         ids=["T1-hard-seq", "soft", "hard-seq"])
def test_izhikevich_multi_step_routes_to_neuron2(T, v_reset, store, monkeypatch):
    sjf = pytest.importorskip("spikingjelly.activation_based.functional")
    sjs = pytest.importorskip("spikingjelly.activation_based.surrogate")
    calls = []
    real = fn.multistep_neuron2
    monkeypatch.setattr(fn, "multistep_neuron2", lambda *a, **k: calls.append(k["model"]) or real(*a, **k))
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(T, 4, 33, generator=g) * 0.8 + 0.3).to(DEVICE).requires_grad_()
    v = (torch.rand(4, 33, generator=g) * 0.5).to(DEVICE).requires_grad_()
    w = (torch.rand(4, 33, generator=g) * 0.2).to(DEVICE).requires_grad_()
    args = (2.5, 1.0, v_reset, -0.1, 0.2, 0.15, 3.0, 0.7, 0.6, False)
    out = F.izhikevich_multi_step(x, v, w, *args, surrogate.ATan(), store)
    ref = sjf.izhikevich_multi_step(x, v, w, *args, sjs.ATan(), store)
    assert calls == ["izhikevich"]
    assert torch.equal(out[0], ref[0]) and out[0].sum() > 0
    for a, b in zip(out[1:], ref[1:]):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close("state", b, a, 1e-5)
    outs = [t for t in out if t is not None]
    refs = [t for t in ref if t is not None]
    cot = [torch.randn(t.shape, generator=g).to(DEVICE) for t in outs]
    ga = torch.autograd.grad(outs, (x, v, w), cot, allow_unused=True)
    gb = torch.autograd.grad(refs, (x, v, w), cot, allow_unused=True)
    for a, b in zip(ga, gb):
        assert_close("grad", b, a, 1e-4)
    # a tensor parameter or a surrogate the kernels do not fuse keeps the loop, with the same numbers
    with torch.no_grad():
        loop = F.izhikevich_multi_step(x, v, w, 2.5, 1.0, v_reset, -0.1, torch.tensor(0.2, device=DEVICE), 0.15,
                                       3.0, 0.7, 0.6, False, surrogate.ATan(), store)
        loop2 = F.izhikevich_multi_step(x, v, w, *args, lambda z: (z >= 0).to(z), store)
    assert calls == ["izhikevich"]
    assert torch.equal(loop[0], out[0]) and torch.equal(loop2[0], out[0])
    assert_close("loop v", out[1].detach(), loop[1], 1e-5)


def test_neuron_implementation_names_the_kernels():
    from fastspike import _ext
    for name in ("izhikevich", "stbif"):
        assert F.neuron_implementation(name, torch.device("cpu"))["implementation"] == (
            "cpp" if _ext.available() else "torch-reference")
        assert F.neuron_implementation(name, torch.device("cuda"))["implementation"] == "triton"
