"""torch.compile of the synapse, bit-packing and max-pooling ops (fastspike::synapse_*_<backend>, pack_bits_*,
unpack_bits_*, max_pool_*): whole graphs (fullgraph=True, 0 graph breaks by torch._dynamo.explain), and compiled
outputs and gradients equal to eager ones. The C++ ops on the CPU go through Inductor; the Triton ops run under
``backend='aot_eager'`` (on a CPU machine through Triton's interpreter, which cannot run inside Inductor)."""
import pytest
import torch

from fastspike import _ext, layer
from fastspike.ops import bits
from fastspike.ops import synapse as S
from fastspike.ops.synapse import cpu as C
from helpers import DEVICE, ON_CUDA, assert_close, record_statuses, triton_runs_here

needs_cpp = pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")
needs_triton = pytest.mark.skipif(not triton_runs_here(), reason="needs CUDA or TRITON_INTERPRET=1")
EVENT_DRIVEN = [False, True, "auto"]
pytestmark = pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _spikes(shape, density=0.2, device="cpu"):
    return (torch.rand(shape, device=device) < density).float()


def _no_breaks(fn, *args):
    explained = torch._dynamo.explain(fn)(*args)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1
    torch._dynamo.reset()


def _compare(fn, args, params, backend="inductor", tol=1e-6):
    """Compiled (fullgraph) against eager: the outputs and the gradients of every argument and parameter."""
    compiled = torch.compile(fn, fullgraph=True, backend=backend)
    leaves = [a for a in args if a.requires_grad] + list(params)
    got = compiled(*args)
    want = fn(*args)
    assert_close("out", want, got, tol)
    if not leaves:
        return
    g = torch.randn_like(want)
    for name, a, b in zip(range(len(leaves)), torch.autograd.grad(want, leaves, g),
                          torch.autograd.grad(got, leaves, g)):
        assert_close(f"grad {name}", a, b, tol)


@needs_cpp
@pytest.mark.parametrize("grad", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("event_driven", EVENT_DRIVEN)
def test_layers_compile_whole(event_driven, grad):
    torch.manual_seed(0)
    lin = layer.Linear(40, 12, step_mode="m", event_driven=event_driven)
    conv = layer.Conv2d(4, 6, 3, padding=1, step_mode="m", event_driven=event_driven)
    for p in list(lin.parameters()) + list(conv.parameters()):
        p.requires_grad_(grad)
    x = _spikes((3, 5, 40)).requires_grad_(grad)
    xc = _spikes((2, 3, 4, 7, 6)).requires_grad_(grad)
    for fn, arg, params in ((lin, x, lin.parameters()), (conv, xc, conv.parameters())):
        _no_breaks(fn, arg)
        _compare(fn, (arg,), params if grad else ())


@needs_cpp
def test_compiled_auto_runs_the_event_kernel_and_its_weight_gradient(monkeypatch, tmp_path):
    # 'auto' decides inside the C++ custom op at run time: with the crossover at 1 the compiled graph runs the
    # event kernel, at 0 the dense GEMM; the weight gradient is computed from the input the compiled forward kept
    # as it was, classified in the backward exactly as eager does
    monkeypatch.setenv("FASTSPIKE_CACHE_DIR", str(tmp_path))
    statuses = record_statuses(monkeypatch, C, "linear_forward", 2)
    lin = layer.Linear(64, 8, event_driven="auto")
    x = _spikes((16, 64), 0.1)
    for cross, status in ((1.0, C.EVENT), (0.0, C.TOO_DENSE)):
        S.save_crossover("linear", cross, mode="train")
        torch._dynamo.reset()
        statuses.clear()
        _compare(lin, (x,), lin.parameters())
        assert statuses and set(statuses) == {status}
    conv = layer.Conv2d(3, 5, 3, padding=1, event_driven="auto")
    counts = _spikes((2, 3, 8, 8), 0.05) * 3.0  # spike counts: the dense path's event weight gradient on bytes
    S.save_crossover("conv2d", 1.0, mode="train")
    _compare(conv, (counts,), conv.parameters(), tol=1e-5)


@needs_cpp
def test_compiled_event_driven_true_still_refuses_non_binary_input():
    lin = layer.Linear(16, 4, event_driven=True)
    compiled = torch.compile(lin, fullgraph=True)
    x = _spikes((5, 16))
    compiled(x)
    with pytest.raises(ValueError, match="binary"):
        compiled(x * 0.5)


@needs_cpp
@pytest.mark.parametrize("cls,shape", [(layer.MaxPool1d, (2, 3, 17)), (layer.MaxPool2d, (2, 3, 9, 11)),
                                       (layer.MaxPool3d, (2, 2, 5, 6, 7))], ids=["1d", "2d", "3d"])
def test_max_pool_layers_compile_whole(cls, shape):
    pool = cls(3, 2, 1)
    x = torch.randn(shape, requires_grad=True)
    _no_breaks(pool, x)
    compiled = torch.compile(pool, fullgraph=True)
    out, ref = compiled(x), pool(x)
    assert torch.equal(out, ref)
    g = torch.randn_like(ref)
    assert torch.equal(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0])


@needs_cpp
def test_pack_and_unpack_compile_whole():
    def round_trip(x):
        return bits.unpack_bits(bits.pack_bits(x), x.shape[-1])

    x = _spikes((6, 37))
    _no_breaks(round_trip, x)
    compiled = torch.compile(round_trip, fullgraph=True)
    assert torch.equal(compiled(x), x)
    packed = torch.compile(bits.pack_bits, fullgraph=True)
    assert torch.equal(packed(x), bits.pack_bits(x, backend="torch"))
    with pytest.raises(ValueError, match="binary"):  # the C++ op checks inside the compiled graph too
        packed(x * 2)


@needs_triton
@pytest.mark.parametrize("event_driven", EVENT_DRIVEN)
def test_triton_ops_trace_whole(event_driven):
    # aot_eager: the custom ops' fake implementations and registered autograd, traced (on a CPU machine the
    # Triton ops are plain custom ops running the interpreter)
    dev = DEVICE
    torch.manual_seed(0)
    x = _spikes((5, 24), 0.3, dev)
    w = torch.randn(9, 24, device=dev, requires_grad=True)
    b = torch.randn(9, device=dev, requires_grad=True)
    xc = _spikes((1, 3, 5, 6), 0.3, dev)
    wc = torch.randn(4, 3, 3, 3, device=dev, requires_grad=True)

    def lin(x, w, b):
        return S.synapse_linear(x, w, b, event_driven=event_driven, backend="triton")

    def conv(x, w):
        return S.synapse_conv2d(x, w, None, padding=1, event_driven=event_driven, backend="triton")

    _no_breaks(lin, x, w, b)
    _compare(lin, (x, w, b), (), backend="aot_eager", tol=1e-5)
    _no_breaks(conv, xc, wc)
    _compare(conv, (xc, wc), (), backend="aot_eager", tol=1e-5)


@needs_triton
def test_triton_bits_trace_whole():
    x = _spikes((4, 21), 0.4, DEVICE)

    def round_trip(x):
        return bits.unpack_bits(bits.pack_bits(x, backend="triton"), x.shape[-1], backend="triton")

    _no_breaks(round_trip, x)
    assert torch.equal(torch.compile(round_trip, fullgraph=True, backend="aot_eager")(x), x)


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA (Inductor compiling the Triton kernels)")
@pytest.mark.parametrize("event_driven", EVENT_DRIVEN)
def test_cuda_layers_compile_whole_with_inductor(event_driven):
    lin = layer.Linear(64, 32, event_driven=event_driven).cuda()
    conv = layer.Conv2d(8, 8, 3, padding=1, event_driven=event_driven).cuda()
    for fn, x in ((lin, _spikes((16, 64), 0.1, "cuda")), (conv, _spikes((2, 8, 9, 9), 0.1, "cuda"))):
        _no_breaks(fn, x)
        _compare(fn, (x,), fn.parameters(), tol=1e-5)


def test_dense_layers_compile_on_any_device():
    # the layers' default (event_driven=False) outside CPU training is torch's own layer: no custom op at all
    lin = layer.Linear(10, 3).to(DEVICE)
    x = torch.randn(4, 10, device=DEVICE)
    with torch.no_grad():
        _no_breaks(lin, x)
        assert_close("out", lin(x), torch.compile(lin, fullgraph=True)(x), 1e-6)


@needs_cpp
def test_compiled_strided_conv_backward_on_a_small_map_does_not_corrupt_memory(tmp_path):
    """layer.Conv2d 3x3, stride 2, padding 1 on a 2x2 map (SEW ResNet-18's layer4 at 32x32 input) trained through
    torch.compile: Inductor (torch 2.13, CPU) miscompiled the eager-only GEMM + fold route of the input gradient and
    wrote out of bounds (glibc aborted: "double free or corruption"). Run in a child process with glibc's heap checks
    and Inductor's caches off (a cached graph from an older fastspike could mask a regression), compared with eager."""
    import os
    import subprocess
    import sys
    code = """
import torch
from fastspike import functional, layer
torch.manual_seed(0)
conv = layer.Conv2d(16, 32, 3, stride=2, padding=1, bias=False, step_mode="m")
x = torch.rand(2, 2, 16, 2, 2).requires_grad_(True)
g = torch.randn(2, 2, 32, 1, 1)
def grads(m):
    x.grad, conv.weight.grad = None, None
    (m(x) * g).sum().backward()
    return x.grad.clone(), conv.weight.grad.clone()
want = grads(conv)
c = torch.compile(conv, fullgraph=True)
for _ in range(3):
    got = grads(c)
for a, b in zip(want, got):
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), float((a - b).abs().max())
print("agree")
"""
    env = dict(os.environ, MALLOC_CHECK_="3", MALLOC_PERTURB_="165", TORCHINDUCTOR_FORCE_DISABLE_CACHES="1",
               TORCHINDUCTOR_CACHE_DIR=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "agree" in p.stdout, (p.returncode, p.stdout[-500:], p.stderr[-2000:])
