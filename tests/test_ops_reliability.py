"""Regression tests of issue 18 for the neuron, PSN and scan ops: edge inputs give the reference's answer or a
named error, on every backend."""
import math

import pytest
import torch

from fastspike import neuron
from fastspike.ops import linear_scan, multistep_neuron, psn
from fastspike import surrogate as sg
from helpers import KERNEL_BACKENDS, device_of


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["torch"])
@pytest.mark.parametrize("v_init", [0.25, "tensor"])
def test_zero_steps_return_the_initial_state(backend, v_init):
    """T = 0: no step runs, V stays V0 (the C++ path used to return uninitialised memory as v_last)."""
    dev = device_of(backend)
    v0 = torch.full((4,), 0.25, device=dev) if v_init == "tensor" else v_init
    s, v, v_seq = multistep_neuron(torch.zeros(0, 4, device=dev), v0, store_v_seq=True, backend=backend)
    assert s.shape == (0, 4) and v_seq.shape == (0, 4)
    assert torch.equal(v, torch.full((4,), 0.25, device=dev))
    if isinstance(v0, torch.Tensor):
        assert v.data_ptr() != v0.data_ptr()  # a new tensor, never the caller's


@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["torch"])
def test_zero_neurons(backend):
    dev = device_of(backend)
    x = torch.zeros(3, 0, device=dev, requires_grad=True)
    s, v, _ = multistep_neuron(x, 0.0, backend=backend)
    assert s.shape == (3, 0) and v.shape == (0,)
    s.sum().backward()
    assert x.grad.shape == (3, 0)


@pytest.mark.parametrize("bad", [dict(v_threshold=math.nan), dict(v_threshold=math.inf), dict(v_reset=math.nan),
                                 dict(tau=math.inf), dict(tau=math.nan)],
                         ids=["vth-nan", "vth-inf", "vreset-nan", "tau-inf", "tau-nan"])
@pytest.mark.parametrize("backend", KERNEL_BACKENDS + ["torch"])
def test_non_finite_parameters_are_refused_by_name(backend, bad):
    x = torch.rand(2, 3, device=device_of(backend))
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        multistep_neuron(x, 0.0, mode="lif", backend=backend, **bad)


def test_non_finite_initial_value_and_modules():
    with pytest.raises(ValueError, match="v_init must be a finite number"):
        multistep_neuron(torch.rand(2, 3), math.nan)
    with pytest.raises(ValueError, match="tau"):
        neuron.LIFNode(tau=math.inf)


def test_plif_nan_w_is_refused_on_the_cpu():
    x = torch.rand(2, 3)
    with pytest.raises(ValueError, match="w must be finite"):
        multistep_neuron(x, 0.0, mode="plif", w=torch.tensor(math.nan), backend="cpp")


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
def test_zero_size_psn_and_scan(backend):
    dev = device_of(backend)
    x = torch.zeros(4, 0, 3, device=dev)
    out = psn(x, torch.eye(4, device=dev), torch.zeros(4, device=dev), sg.ATan(), backend=backend)
    assert out.shape == x.shape
    h = linear_scan(torch.rand(4, 0, device=dev), torch.zeros(4, 0, device=dev), backend=backend)
    assert h.shape == (4, 0)
    with pytest.raises(ValueError, match="T >= 1"):
        linear_scan(0.5, torch.zeros(0, 3, device=dev), backend=backend)
    with pytest.raises(ValueError, match="psn: x must have shape"):
        psn(torch.zeros(4, device=dev), torch.eye(4, device=dev), torch.zeros(4, device=dev), sg.ATan(),
            backend=backend)


@pytest.mark.skipif("triton" not in [getattr(b, "values", [b])[0] for b in KERNEL_BACKENDS] or
                    not __import__("helpers").triton_runs_here(), reason="needs CUDA or TRITON_INTERPRET=1")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_saved_h_keeps_the_forward_spikes(dtype):
    """The Triton forward saves H in the input dtype; where rounding would carry H across the threshold it is
    nudged back, so the backward's recomputed spikes -- and the reset's derivative (1 - S) -- are the forward's.
    Inputs are chosen so that many H land within rounding of the threshold."""
    dev = device_of("triton")
    g = torch.Generator().manual_seed(3)
    n = 20000
    x = (2.9 + 0.2 * torch.rand(1, n, generator=g)).to(dtype).to(dev).requires_grad_()
    v0 = (torch.rand(n, generator=g) * 0.2).to(dtype).to(dev)
    g_v = torch.randn(n, generator=g).to(dev)
    kw = dict(mode="lif", tau=3.0, v_threshold=1.0, v_reset=0.0, surrogate_function=sg.ATan())
    h32 = v0.float() + (x.detach().float()[0] - v0.float()) / 3.0
    crossing = ((h32 >= 1.0) != (h32.to(dtype).float() >= 1.0)).sum().item()
    assert crossing > 10  # the case is really exercised
    grads = []
    for backend in ("torch", "triton"):
        xb = x.detach().clone().requires_grad_()
        s, v, _ = multistep_neuron(xb, v0, backend=backend, **kw)
        (s.float().sum() + (v.float() * g_v).sum()).backward()
        grads.append(xb.grad.float())
    # without the nudge the crossing elements differ by about |g_v| / tau (0.3); rounding alone is ~1e-2
    assert (grads[0] - grads[1]).abs().max().item() < 0.05
