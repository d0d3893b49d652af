"""Spikes known to be binary from their producer (ops/bits/known.py): what is recognised, what is not, and the
synapse layers on the Triton backend keeping such an input as bits for the weight gradient (CUDA's dense path,
which would otherwise keep the float input: learning binarity from the data would synchronise with the host)."""
import gc
import warnings

import pytest
import torch
import torch.nn.functional as F

from fastspike import layer, neuron, surrogate
from fastspike.ops import bits, max_pool, multistep_neuron, synapse_conv2d, synapse_linear
from helpers import DEVICE, KERNEL_BACKENDS, assert_close, device_of, triton_runs_here

needs_triton = pytest.mark.skipif(not triton_runs_here(), reason="needs CUDA or TRITON_INTERPRET=1")


@pytest.mark.parametrize("backend", ["torch", *KERNEL_BACKENDS])
def test_neuron_spikes_are_known_and_views_follow(backend):
    dev = device_of(backend)
    s, v, _ = multistep_neuron(torch.randn(3, 2, 40, device=dev) * 2, 0.0, backend=backend)
    assert bits.known_binary(s) and bits.known_binary(s[1]) and bits.known_binary(s.flatten(0, 1))
    assert bits.known_binary(s.permute(1, 0, 2)) and bits.known_binary(s[:, :, 3:7])
    assert not bits.known_binary(v)                     # the membrane potential is not binary
    assert not bits.known_binary(s.clone())             # a copy is a new storage nobody vouched for
    assert not bits.known_binary(s.view(torch.int32))   # 1.0 reinterpreted as an int is not 1
    s[0, 0, 0] = 0.5                                    # an in-place change ends the fact, for every view
    assert not bits.known_binary(s) and not bits.known_binary(s[1])


def test_fact_dies_with_the_producer_and_is_not_made_up():
    import copy
    import weakref

    s = neuron.LIFNode(step_mode="m")(torch.randn(2, 3, 8) * 3)
    owner = weakref.ref(s)
    keep = s[0]  # a view keeps its base (the recorded tensor) alive: the fact stays true and stays known
    del s
    gc.collect()
    assert bits.known_binary(keep) and owner() is not None
    # copies of the tensor's Python attributes are not the spikes' storage; a detached alias has no base to ask
    assert not bits.known_binary(copy.deepcopy(keep)) and not bits.known_binary(keep.detach())
    del keep     # nothing else holds the spikes: the record goes with them (it keeps no tensor alive)
    gc.collect()
    assert owner() is None
    # a surrogate the kernels do not fuse (its forward may not be Heaviside) and spiking=False outputs are not
    # recorded
    class Custom(surrogate.SurrogateFunctionBase):
        @staticmethod
        def grad(x, alpha):
            return torch.exp(-x * x) * alpha

        def __init__(self):
            super().__init__(True, alpha=1.0)

    x = torch.randn(2, 3, 8) * 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "not fused": the reference path
        assert not bits.known_binary(neuron.LIFNode(step_mode="m", surrogate_function=Custom())(x))
        smooth = neuron.LIFNode(step_mode="m", surrogate_function=surrogate.Sigmoid(spiking=False))
        assert not bits.known_binary(smooth(x))
    assert not bits.known_binary(torch.ones(4))


def test_max_pool_of_known_spikes_is_known():
    s = neuron.IFNode(step_mode="m")(torch.randn(2, 3, 4, 8, 8, device=DEVICE) * 2).flatten(0, 1)
    assert bits.known_binary(s)
    assert bits.known_binary(max_pool(s, 2, 2))
    assert not bits.known_binary(max_pool(s.clone(), 2, 2))


def _saved_tensors(fn):
    """The tensors autograd saves while ``fn()`` runs, and fn's result."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return saved, out


@needs_triton
@pytest.mark.parametrize("op", ["linear", "conv2d"])
def test_triton_dense_layer_keeps_known_spikes_as_bits(op):
    torch.manual_seed(0)
    dev = device_of("triton")
    T, B = 2, 3
    if op == "linear":
        s = neuron.LIFNode(step_mode="m")(torch.randn(T, B, 37, device=dev) * 2).flatten(0, 1)
        w = torch.randn(11, 37, device=dev, requires_grad=True)

        def run(x):
            return synapse_linear(x, w, None, event_driven=False, backend="triton")

        def ref(x):
            return F.linear(x, w)
    else:
        s = neuron.LIFNode(step_mode="m")(torch.randn(T, B, 3, 9, 10, device=dev) * 2).flatten(0, 1)
        w = torch.randn(4, 3, 3, 3, device=dev, requires_grad=True)

        def run(x):
            return synapse_conv2d(x, w, None, padding=1, event_driven=False, backend="triton")

        def ref(x):
            return F.conv2d(x, w, padding=1)
    saved, y = _saved_tensors(lambda: run(s))
    assert any(t.dtype == torch.uint8 for t in saved), "the known spikes were not kept as bits"
    assert not any(t.dtype == torch.float32 and t.numel() == s.numel() for t in saved), "the float input was kept"
    assert torch.equal(y, ref(s))
    g = torch.randn_like(y)
    assert_close("grad_w", torch.autograd.grad(ref(s), w, g)[0], torch.autograd.grad(y, w, g)[0], 1e-5)
    # the same values without the producer's word: kept as torch keeps them (no data-dependent decision)
    saved_plain, _ = _saved_tensors(lambda: run(s.clone()))
    assert not any(t.dtype == torch.uint8 for t in saved_plain)


@needs_triton
def test_known_spikes_through_layers_train_like_dense():
    """layer.Linear (event_driven=False, the default) fed by a neuron, on the Triton backend: outputs and every
    gradient equal the plain network's."""
    torch.manual_seed(0)
    dev = device_of("triton")
    x = torch.randn(3, 4, 20, device=dev) * 2
    lin = layer.Linear(20, 6, step_mode="m").to(dev)
    plain = torch.nn.Linear(20, 6).to(dev)
    plain.load_state_dict(lin.state_dict())
    lif = neuron.LIFNode(step_mode="m", backend="triton" if dev.type == "cuda" else "cpp")
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = lin(lif(xa))
    lif.reset()
    yb = plain(lif(xb))
    assert torch.equal(ya, yb)
    g = torch.randn_like(ya)
    ga = torch.autograd.grad(ya, [xa, lin.weight, lin.bias], g)
    gb = torch.autograd.grad(yb, [xb, plain.weight, plain.bias], g)
    for a, b in zip(ga, gb):
        assert_close("grad", b, a, 1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="counts device-to-host synchronisations: needs CUDA")
def test_cuda_known_spikes_path_never_synchronises():
    lif = neuron.LIFNode(step_mode="m")
    lin = layer.Linear(64, 32, step_mode="m").cuda()
    x = torch.randn(4, 8, 64, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        y = lin(lif(x))
        y.sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert lin.weight.grad is not None
