"""torch.func transforms over fastspike networks: ``grad`` (with ``functional_call``), ``vmap``, per-sample gradients
(``vmap`` of ``grad``) and ``jacrev`` give what eager autograd gives, on every kernel-backed op.

The ops' autograd Functions are written in setup_context style (so the transforms can apply them) and have a vmap
rule that runs the kernels once per batch entry (``_contract.vmap_by_loop``; the kernels read raw memory); inside a
transform their backward goes through the registered backward op, which has the same rule. The networks are those
of tests/test_inference_mode.py: IF/LIF/PLIF chains in both step modes, the PSN family and readouts, the two-state
neurons, GatedLIF, conv/BN/pool/linear stacks with every ``event_driven`` setting, SEW ResNet-18; then every
hand-written autograd Function outside the ops, and every public op of ``fastspike.ops`` on every backend.
"""
import pytest
import torch
import torch.nn as nn

from fastspike import functional, neuron
from fastspike.ops import _contract
from helpers import DEVICE, assert_close
from test_inference_mode import NETS, _x

# a few small inputs per network: the vmap rule loops over the batch, and SEW ResNet-18 is large for the CPU
SMALL = {"sew_resnet18": lambda: torch.rand(2, 3, 16, 16, device=DEVICE)}


def _batch_dim(name):
    """Single-step networks take [B, ...], multi-step ones [T, B, ...]."""
    return 0 if name.endswith("-s") or name == "sew_resnet18" else 1


def _setup(name):
    torch.manual_seed(0)
    net = NETS[name]().to(DEVICE)
    # BatchNorm in eval mode: its running statistics are updated in place, which a transform cannot batch (the
    # other networks train: some neurons, e.g. CLIF, fire through a plain Heaviside in eval mode, as in SpikingJelly)
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules()):
        net.eval()
    return net, SMALL[name]() if name in SMALL else _x(name)


def _flat(y):
    if isinstance(y, (list, tuple)):  # NonSpikingLIFNode returns a list of steps in step mode 'm'
        y = torch.stack(list(y))
    return y


def _loss(net, params, x, weight):
    functional.reset_net(net)
    y = _flat(torch.func.functional_call(net, params, (x,)))
    y = _flat(torch.func.functional_call(net, params, (x,)))  # a second call: the state carried from the first
    return (y * weight).sum()


def _weight(net, x):
    functional.reset_net(net)
    with torch.no_grad():
        y = _flat(net(x))
    functional.reset_net(net)
    return torch.randn(y.shape, generator=torch.Generator().manual_seed(1)).to(y.device)


@pytest.mark.parametrize("name", list(NETS))
def test_grad_matches_autograd(name):
    net, x = _setup(name)
    weight = _weight(net, x)
    params = {k: v.detach() for k, v in net.named_parameters()}
    gp, gx = torch.func.grad(lambda p, x: _loss(net, p, x, weight), argnums=(0, 1))(params, x)
    xr = x.clone().requires_grad_()
    loss = _loss(net, dict(net.named_parameters()), xr, weight)
    want = torch.autograd.grad(loss, [xr, *net.parameters()], allow_unused=True)
    assert_close(f"{name} input gradient", want[0], gx, 1e-5)
    for (k, _), w in zip(net.named_parameters(), want[1:]):
        assert_close(f"{name} gradient of {k}", torch.zeros_like(gp[k]) if w is None else w, gp[k], 1e-5)


@pytest.mark.parametrize("name", list(NETS))
def test_vmap_and_per_sample_gradients(name):
    """vmap over the batch dimension (each sample keeps a batch of one) equals running the samples one by one,
    outputs and per-sample gradients of every parameter."""
    net, x = _setup(name)
    d = _batch_dim(name)
    params = {k: v.detach() for k, v in net.named_parameters()}

    def out(p, xi):
        functional.reset_net(net)
        return _flat(torch.func.functional_call(net, p, (xi.unsqueeze(d),)))

    weight = torch.randn(out(params, x.select(d, 0)).shape, generator=torch.Generator().manual_seed(2)).to(x.device)
    ys = torch.func.vmap(out, in_dims=(None, d))(params, x)
    grads = torch.func.vmap(torch.func.grad(lambda p, xi: (out(p, xi) * weight).sum()), in_dims=(None, d))(params, x)
    for b in range(x.shape[d]):
        functional.reset_net(net)
        y = _flat(net(x.narrow(d, b, 1)))
        assert_close(f"{name} vmapped output of sample {b}", y, ys[b], 1e-5)
        want = torch.autograd.grad((y * weight).sum(), list(net.parameters()), allow_unused=True)
        for (k, prm), w in zip(net.named_parameters(), want):
            assert_close(f"{name} per-sample gradient of {k}, sample {b}", torch.zeros_like(prm) if w is None else w,
                         grads[k][b], 1e-5)


def test_jacrev_of_a_lif_layer():
    node = neuron.LIFNode(step_mode="m", tau=2.0).to(DEVICE)
    ref = neuron.LIFNode(step_mode="m", tau=2.0, backend="torch").to(DEVICE)
    x = torch.rand(4, 3, 5, device=DEVICE) * 2

    def f(n):
        return lambda x: (functional.reset_net(n), n(x))[1].sum(0)
    jac = torch.func.jacrev(f(node))(x)
    assert jac.shape == (3, 5, 4, 3, 5) and jac.abs().sum() > 0
    assert_close("jacrev", torch.func.jacrev(f(ref))(x), jac, 1e-6)


def test_kernels_run_once_per_vmapped_entry(monkeypatch):
    """The vmap rules are loops over the batch entries: each entry's slice reaches the kernels as a plain tensor. In
    per-sample gradients the forward goes through the Function's rule and the backward through the registered
    backward op's."""
    calls = []
    real = _contract.vmap_by_loop
    monkeypatch.setattr(_contract, "vmap_by_loop", lambda fn, info, *a: calls.append(
        (getattr(fn, "__name__", None) or str(fn), info.batch_size)) or real(fn, info, *a))
    node = neuron.LIFNode(step_mode="m").to(DEVICE)
    x = torch.rand(4, 6, 3, device=DEVICE) * 2

    def run(xi):
        functional.reset_net(node)
        return node(xi.unsqueeze(1))
    torch.func.vmap(run, in_dims=1)(x)
    assert calls == [("apply", 6)]
    calls.clear()
    torch.func.vmap(torch.func.grad(lambda xi: run(xi).sum()), in_dims=1)(x)
    assert [n for _, n in calls] == [6, 6] and calls[0][0] == "apply" and "_backward" in calls[1][0], calls


def _functions():
    """Every hand-written torch.autograd.Function outside the kernel ops, as f(x) on [T=4, B=3, N=5] inputs."""
    from fastspike import lava_exchange, quantize, surrogate
    from fastspike.functional import _neuron_models
    from fastspike.layer.online_learning import ReplaceforGrad
    from fastspike.model.spike_dhs import dSpike
    decay = torch.tensor(800.0, device=DEVICE)
    dsrif, dsrlif = neuron.DSRIFNode(T=4, v_threshold=1.0).to(DEVICE), neuron.DSRLIFNode(T=4).to(DEVICE)

    def core(x, v, w):  # a user neuron: FlexSN runs it as generated kernels (an Op like the hand-written ones)
        h = v + (x - v) * torch.sigmoid(w)
        s = surrogate.ATan()(h - 1.0)
        return s, h - s
    flex = neuron.FlexSN(core, num_states=1, static_inputs=(torch.tensor(0.3, device=DEVICE),))
    assert flex.compiled is not None
    return {
        "FlexSN": lambda x: (functional.reset_net(flex), flex(x * 2))[1],
        "surrogate.Sigmoid": lambda x: surrogate.Sigmoid()(x - 1.0),
        "surrogate.sigmoid.apply": lambda x: surrogate.sigmoid.apply(x - 1.0, 4.0),
        "dSpike": lambda x: dSpike.apply(x - 1.0, 3.0),
        "quantize.clamp": lambda x: quantize.clamp(x * 3, -1.0, 2.0),
        "quantize.round": lambda x: quantize.round(x * 3),
        "DSRIFNode": lambda x: dsrif(x * 3),
        "DSRLIFNode": lambda x: dsrlif(x * 3),
        "leaky_integrator_step": lambda x: _neuron_models.leaky_integrator_step(x, decay, x * 0.5, 64),
        "LeakyIntegratorStep": lambda x: lava_exchange.LeakyIntegratorStep.apply(x, decay, x * 0.5, 64),
        "ReplaceforGrad": lambda x: ReplaceforGrad.apply(x, x.square()),
    }


@pytest.mark.parametrize("name", list(_functions()))
def test_hand_written_functions_under_transforms(name):
    """grad equals eager autograd; vmap over the batch dimension equals the per-sample loop (outputs and gradients)."""
    f = _functions()[name]
    torch.manual_seed(0)
    x = torch.rand(4, 3, 5, device=DEVICE) * 2
    w = torch.randn(4, 3, 5, device=DEVICE)
    g = torch.func.grad(lambda x: (f(x) * w).sum())(x)
    xr = x.clone().requires_grad_()
    want = torch.autograd.grad((f(xr) * w).sum(), xr)[0]
    assert_close(f"{name} gradient", want, g, 1e-6)
    ys = torch.func.vmap(lambda xi: f(xi.unsqueeze(1)), in_dims=1)(x)
    per = torch.func.vmap(torch.func.grad(lambda xi, wi: (f(xi.unsqueeze(1)) * wi.unsqueeze(1)).sum()),
                          in_dims=(1, 1))(x, w)
    for b in range(3):
        xb = x[:, b:b + 1].clone().requires_grad_()
        yb = f(xb)
        assert_close(f"{name} vmapped output {b}", yb.detach(), ys[b], 1e-6)
        gb = torch.autograd.grad((yb * w[:, b:b + 1]).sum(), xb)[0]
        assert_close(f"{name} per-sample gradient {b}", gb[:, 0], per[b], 1e-6)


# ------------------------------------------------------------------------------------------ every public op
from test_ops_conformance import CASES  # noqa: E402
from helpers import KERNEL_BACKENDS, device_of  # noqa: E402

NOT_VMAPPABLE = {"spike_stats": "returns Python numbers (host values), which vmap cannot batch"}


@pytest.mark.parametrize("backend", ["torch", *KERNEL_BACKENDS])
@pytest.mark.parametrize("name", sorted(set(CASES) - set(NOT_VMAPPABLE)))
def test_every_op_under_vmap(name, backend):
    """Each public op vmapped over two entries of its first input (the others shared) equals two calls; for a
    floating first input, per-sample gradients (vmap of grad, a random cotangent on every floating output) equal
    two backward passes."""
    torch.manual_seed(0)
    args, kwargs = CASES[name].make(device_of(backend))
    args = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    x, rest = args[0], args[1:]
    xs = torch.stack([x, x.flip(0)])
    fn = getattr(__import__("fastspike").ops, name)
    if backend in CASES[name].no_kernel:  # no implementation: named, it says so under vmap too
        with pytest.raises(ValueError, match=backend.capitalize()):
            torch.func.vmap(lambda xi: fn(xi, *rest, **kwargs, backend=backend))(xs)
        return

    def call(xi):
        out = fn(xi, *rest, **kwargs, backend=backend)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
    batched = torch.func.vmap(call)(xs)
    for i in range(2):
        for j, (b, r) in enumerate(zip(batched, call(xs[i]))):
            assert torch.equal(b[i], r), f"{name}[{backend}] output {j} of entry {i}"
    if not x.is_floating_point() or not any(o.is_floating_point() for o in call(x)):
        return
    gen = torch.Generator().manual_seed(3)
    cots = [torch.randn(o.shape, generator=gen).to(o) if o.is_floating_point() else None for o in call(x)]

    def loss(xi):
        return sum((o * c).sum() for o, c in zip(call(xi), cots) if c is not None)
    if name == "stbif":  # forward-only: inside grad its input requires grad, and it says so
        with pytest.raises(RuntimeError, match="forward-only"):
            torch.func.grad(loss)(x)
        return
    per = torch.func.vmap(torch.func.grad(loss))(xs)
    for i in range(2):
        xi = xs[i].clone().requires_grad_()
        want = torch.autograd.grad(loss(xi), xi, allow_unused=True)[0]
        assert_close(f"{name}[{backend}] per-sample gradient {i}", torch.zeros_like(xi) if want is None else want,
                     per[i], 1e-5)
