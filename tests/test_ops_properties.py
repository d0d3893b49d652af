"""Property-based tests of the kernel-backed ops (hypothesis): random shapes including zero-size dims and T in
{0, 1, 2, ...}, random non-contiguous views, dtypes and flags, on every backend that runs here, against the
reference -- equal results, or the same exception type as the reference. Bounded: a fixed number of examples
per op (``FASTSPIKE_HYPOTHESIS_EXAMPLES`` raises it for a longer campaign), no deadline, seeded (derandomized)
so CI runs are reproducible.
"""
import math
import os

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from fastspike import surrogate as sg  # noqa: E402
from fastspike.ops import linear_scan, multistep_neuron, psn, reference  # noqa: E402
from helpers import KERNEL_BACKENDS, TOL, assert_close, device_of  # noqa: E402

EXAMPLES = int(os.environ.get("FASTSPIKE_HYPOTHESIS_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
SURROGATES = sg._BUILTINS


def _layout(t: torch.Tensor, kind: int) -> torch.Tensor:
    """The same values as ``t`` in one of three layouts: contiguous, a strided slice, a transposed copy."""
    if kind == 0 or t.dim() < 2:
        return t
    if kind == 1:
        big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
        big[..., ::2] = t
        return big[..., ::2]
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


def _close(name, ref, out, tol):
    assert ref.shape == out.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    if ref.numel():
        assert_close(name, ref, out, tol)


def _outcome(fn):
    """(result, None) or (None, exception type)."""
    try:
        return fn(), None
    except (ValueError, TypeError, RuntimeError) as e:
        return None, type(e)


def _grads(outs, inputs, seed):
    """Gradients of a fixed random combination of ``outs`` w.r.t. ``inputs`` (None where unused)."""
    g = torch.Generator().manual_seed(seed)
    total = 0
    for o in outs:
        if o is not None and o.requires_grad and o.numel():
            total = total + (o.float() * torch.randn(o.shape, generator=g).to(o.device)).sum()
    if not isinstance(total, torch.Tensor):
        return [None] * len(inputs)
    need = [t for t in inputs if t is not None and t.requires_grad]
    got = iter(torch.autograd.grad(total, need, allow_unused=True))
    return [next(got) if (t is not None and t.requires_grad) else None for t in inputs]


neuron_cases = st.fixed_dictionaries({
    "T": st.integers(0, 6), "shape": st.lists(st.integers(0, 9), min_size=1, max_size=3),
    "mode": st.sampled_from(["if", "lif", "plif"]), "v_reset": st.sampled_from([None, 0.0, -0.3]),
    "detach": st.booleans(), "decay_input": st.booleans(), "store_v_seq": st.booleans(),
    "tensor_v0": st.booleans(), "layout": st.integers(0, 2), "sg": st.integers(0, len(SURROGATES) - 1),
    "dtype": st.sampled_from([torch.float32, torch.float16, torch.bfloat16]), "seed": st.integers(0, 2**16),
})


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@SETTINGS
@given(case=neuron_cases)
def test_multistep_neuron_property(backend, case):
    dev = device_of(backend)
    if backend == "cpp" and case["dtype"] is not torch.float32 and not case["shape"]:
        return
    g = torch.Generator().manual_seed(case["seed"])
    shape = (case["T"], *case["shape"])
    x = (torch.randn(shape, generator=g) * 1.5 + 0.4).to(case["dtype"]).to(dev)
    x = _layout(x, case["layout"]).requires_grad_()
    v0 = (torch.rand(shape[1:], generator=g) * 0.5).to(case["dtype"]).to(dev).requires_grad_() \
        if case["tensor_v0"] else 0.1
    w = torch.tensor(-0.2, device=dev, requires_grad=True) if case["mode"] == "plif" else None
    kw = dict(mode=case["mode"], tau=2.5, w=w, decay_input=case["decay_input"], v_threshold=0.8,
              v_reset=case["v_reset"], surrogate_function=SURROGATES[case["sg"]](), detach_reset=case["detach"],
              store_v_seq=case["store_v_seq"])
    ref, ref_err = _outcome(lambda: multistep_neuron(x, v0, backend="torch", **kw))
    out, out_err = _outcome(lambda: multistep_neuron(x, v0, backend=backend, **kw))
    assert ref_err == out_err, (ref_err, out_err)
    if ref_err is not None:
        return
    tol = TOL[case["dtype"]] * (5 if case["dtype"] is not torch.float32 else 1)
    assert out[0].shape == ref[0].shape and out[1].shape == ref[1].shape
    # spikes exactly, except where H sits within rounding of the threshold (low precision)
    mismatch = (out[0] != ref[0]).float().mean().item() if ref[0].numel() else 0.0
    assert mismatch <= (0 if case["dtype"] is torch.float32 else 0.02), f"spikes differ at {mismatch:.3%}"
    if mismatch == 0:
        for name, r, o in (("v_last", ref[1], out[1]), ("v_seq", ref[2], out[2])):
            if r is None:
                assert o is None, name
            else:
                _close(name, r, o, tol)
        inputs = [x, v0 if isinstance(v0, torch.Tensor) else None, w]
        for name, r, o in zip(("grad_x", "grad_v0", "grad_w"), _grads(ref, inputs, case["seed"]),
                              _grads(out, inputs, case["seed"])):
            assert (r is None) == (o is None), name
            if r is not None:
                _close(name, r, o, tol * 10)


psn_cases = st.fixed_dictionaries({
    "T": st.integers(1, 9), "shape": st.lists(st.integers(0, 12), min_size=1, max_size=2),
    "band": st.integers(0, 4), "sg": st.integers(0, len(SURROGATES) - 1), "layout": st.integers(0, 2),
    "seed": st.integers(0, 2**16),
})


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@SETTINGS
@given(case=psn_cases)
def test_psn_property(backend, case):
    dev = device_of(backend)
    g = torch.Generator().manual_seed(case["seed"])
    T = case["T"]
    x = _layout((torch.randn((T, *case["shape"]), generator=g)).to(dev), case["layout"]).requires_grad_()
    w = (torch.randn(T, T, generator=g) / math.sqrt(T)).to(dev).requires_grad_()
    b = (torch.randn(T, generator=g) * 0.1).to(dev).requires_grad_()
    surrogate = SURROGATES[case["sg"]]()
    ref, ref_err = _outcome(lambda: reference.psn(x, w, b, surrogate, case["band"]))
    out, out_err = _outcome(lambda: psn(x, w, b, surrogate, case["band"], backend=backend))
    assert ref_err == out_err
    if ref_err is not None:
        return
    # spikes may differ only where H is within float rounding of the threshold (summation order)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    assert ref.numel() == 0 or (out != ref).float().mean().item() <= 0.01
    if torch.equal(out, ref):
        for name, r, o in zip(("grad_x", "grad_w", "grad_b"), _grads([ref], [x, w, b], case["seed"]),
                              _grads([out], [x, w, b], case["seed"])):
            if r is not None:
                _close(name, r, o, 1e-4)


scan_cases = st.fixed_dictionaries({
    "T": st.integers(0, 9), "shape": st.lists(st.integers(0, 9), min_size=1, max_size=2),
    "a_kind": st.sampled_from(["float", "scalar_tensor", "per_step", "full"]), "h0": st.booleans(),
    "layout": st.integers(0, 2), "dtype": st.sampled_from([torch.float32, torch.bfloat16]),
    "seed": st.integers(0, 2**16),
})


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@SETTINGS
@given(case=scan_cases)
def test_linear_scan_property(backend, case):
    dev = device_of(backend)
    g = torch.Generator().manual_seed(case["seed"])
    shape = (case["T"], *case["shape"])
    b = _layout(torch.randn(shape, generator=g).to(case["dtype"]).to(dev), case["layout"]).requires_grad_()
    kind = case["a_kind"]
    if kind == "float":
        a = 0.7
    elif kind == "scalar_tensor":
        a = torch.tensor(0.6, device=dev, requires_grad=True)
    elif kind == "per_step":
        a = torch.rand((case["T"],) + (1,) * len(case["shape"]), generator=g).to(dev).requires_grad_()
    else:
        a = torch.rand(shape, generator=g).to(dev).requires_grad_()
    h0 = torch.randn(shape[1:], generator=g).to(dev).requires_grad_() if case["h0"] else None
    ref, ref_err = _outcome(lambda: reference.linear_scan(a, b, h0) if case["T"] else
                            linear_scan(a, b, h0, backend="torch"))
    out, out_err = _outcome(lambda: linear_scan(a, b, h0, backend=backend))
    assert ref_err == out_err, (ref_err, out_err)
    if ref_err is not None:
        return
    tol = TOL[case["dtype"]] * 2
    _close("h", ref, out, tol)
    inputs = [b, a if isinstance(a, torch.Tensor) else None, h0]
    for name, r, o in zip(("grad_b", "grad_a", "grad_h0"), _grads([ref], inputs, case["seed"]),
                          _grads([out], inputs, case["seed"])):
        assert (r is None) == (o is None), name
        if r is not None:
            _close(name, r, o, tol * 10)
