"""torch.autocast through fastspike's layers: the synapse ops follow F.linear / F.conv2d's autocast rule (inputs
in the region's dtype, so 16-bit activations stay 16-bit from layer to layer), neurons and pooling keep their
input's dtype, and fp32 parameters get fp32 gradients. The region is for ``DEVICE``'s type, so on a GPU machine
these are CUDA autocast tests."""
import pytest
import torch
import torch.nn.functional as F

from fastspike import functional, layer, neuron
from fastspike.ops import synapse as S
from helpers import DEVICE, KERNEL_BACKENDS, TOL, assert_close, device_of

BACKENDS = ["torch"] + KERNEL_BACKENDS
DTYPES = [torch.bfloat16, torch.float16]
pytestmark = pytest.mark.filterwarnings("ignore:In CPU autocast, but the target dtype is not supported")


def _spikes(shape, device, density=0.3):
    return (torch.rand(shape, device=device) < density).float()


def _region(device, dtype):
    return torch.autocast(device.type, dtype=dtype)


def _check(name, ref_fn, fn, args, dtype):
    """fn and its torch reference inside the same autocast region: output dtype and values, fp32 gradients."""
    device = args[0].device
    with _region(device, dtype):
        want = ref_fn(*args)
        got = fn(*args)
    assert want.dtype == dtype, f"torch's own {name} did not autocast (test setup)"
    assert got.dtype == dtype, f"{name}: output {got.dtype} under autocast to {dtype}"
    assert_close(name, want.float(), got.float(), TOL[dtype])
    leaves = [a for a in args if a.requires_grad]
    g = torch.randn_like(want, dtype=torch.float32)
    for i, (a, b) in enumerate(zip(torch.autograd.grad(want.float(), leaves, g),
                                   torch.autograd.grad(got.float(), leaves, g))):
        assert b.dtype == leaves[i].dtype, f"{name}: gradient {i} is {b.dtype}, its leaf {leaves[i].dtype}"
        assert_close(f"{name} grad {i}", a, b, TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp16"])
@pytest.mark.parametrize("event_driven", ["auto", True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_synapse_linear_autocasts_like_f_linear(backend, event_driven, dtype):
    torch.manual_seed(0)
    dev = device_of(backend)
    x = _spikes((3, 5, 40), dev)
    w = torch.randn(12, 40, device=dev, requires_grad=True)
    b = torch.randn(12, device=dev, requires_grad=True)
    _check("linear", F.linear, lambda x, w, b: S.synapse_linear(x, w, b, event_driven, backend), (x, w, b), dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["bf16", "fp16"])
@pytest.mark.parametrize("event_driven", ["auto", True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_synapse_conv2d_autocasts_like_f_conv2d(backend, event_driven, dtype):
    torch.manual_seed(1)
    dev = device_of(backend)
    x = _spikes((2, 3, 9, 9), dev)
    w = torch.randn(5, 3, 3, 3, device=dev, requires_grad=True)
    b = torch.randn(5, device=dev, requires_grad=True)
    _check("conv2d", lambda x, w, b: F.conv2d(x, w, b, 1, 1),
           lambda x, w, b: S.synapse_conv2d(x, w, b, padding=1, event_driven=event_driven, backend=backend),
           (x, w, b), dtype)


def test_float64_is_left_alone():
    """Autocast never casts float64 (torch's rule); the op then runs in float64."""
    x = _spikes((4, 16), DEVICE).double()
    w = torch.randn(6, 16, device=DEVICE, dtype=torch.float64)
    with _region(DEVICE, torch.bfloat16):
        out = S.synapse_linear(x, w)
    assert out.dtype == torch.float64
    assert_close("f64", F.linear(x, w), out, TOL[torch.float64])


def test_outside_a_region_nothing_is_cast():
    x = _spikes((4, 16), DEVICE)
    w = torch.randn(6, 16, device=DEVICE)
    with _region(DEVICE, torch.bfloat16):
        pass
    assert S.synapse_linear(x, w).dtype == torch.float32


@pytest.mark.parametrize("event_driven", ["auto", True, False])
def test_network_keeps_bf16_end_to_end(event_driven):
    """A SEW-style stack under bf16 autocast: every layer after the first convolution hands on bf16 (no fp32 round
    trip between layers), the loss is finite, and every parameter's gradient is fp32 and finite."""
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        layer.Conv2d(2, 8, 3, padding=1, bias=False), layer.BatchNorm2d(8), neuron.IFNode(),
        layer.Conv2d(8, 8, 3, padding=1, bias=False, event_driven=event_driven), layer.BatchNorm2d(8),
        neuron.LIFNode(), layer.MaxPool2d(2), layer.Flatten(), layer.Linear(8 * 4 * 4, 10, event_driven=event_driven),
        neuron.LIFNode()).to(DEVICE)
    functional.set_step_mode(net, "m")
    seen = []
    for m in net:
        m.register_forward_hook(lambda m, i, o: seen.append((type(m).__name__, o.dtype)))
    x = torch.rand(4, 2, 2, 8, 8, device=DEVICE)
    with _region(DEVICE, torch.bfloat16):
        y = net(x)
        loss = F.mse_loss(y.mean(0), torch.rand(2, 10, device=DEVICE))
    assert [d for _, d in seen] == [torch.bfloat16] * len(net), seen
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32 and bool(torch.isfinite(p.grad).all()), name


@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")
@pytest.mark.parametrize("backend", BACKENDS)
def test_compiled_op_autocasts_as_eager(backend):
    """torch.compile(fullgraph=True) traces the autocast rule: the same dtype and values as eager inside the region,
    fp32 outside it (a guard, not a stale graph)."""
    torch._dynamo.reset()
    dev = device_of(backend)
    x = _spikes((6, 40), dev)
    w = torch.randn(12, 40, device=dev, requires_grad=True)

    def f(x, w):
        return S.synapse_linear(x, w, None, "auto", backend)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    with _region(dev, torch.bfloat16):
        got, want = compiled(x, w), f(x, w)
    assert got.dtype == want.dtype == torch.bfloat16
    assert_close("compiled", want.float(), got.float(), TOL[torch.bfloat16])
    assert compiled(x, w).dtype == torch.float32
    torch._dynamo.reset()
