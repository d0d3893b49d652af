"""The Open Neuromorphic framework benchmark configuration (``--suite open-neuromorphic``).

One fully connected layer (n -> n) followed by a LIF layer, batch 16, T = 500, n in {4096, 8192, 16384},
fp32, forward + backward (gradients of the weights and bias), peak memory. ``--quick`` scales it down to
T = 50, n in {512, 1024, 2048} (on the CPU the full size takes many minutes per call). Input: random
binary spikes (rate 0.3); weights scaled so that the LIF layer fires.

Each framework in its own idiom: fastspike and SpikingJelly ``layer.Linear(step_mode='m')`` +
``LIFNode(step_mode='m')``; snnTorch a per-step loop ``cur = fc(x[t]); spk, mem = lif(cur, mem)`` with the
weights divided by tau (its Leaky does not scale the input; see cases/neuron.py for the mapping, which also
makes its reset detached, so it is checked against fastspike with detach_reset=True); Norse the Linear over
the whole sequence and ``Lift(LIFBoxCell)``.

The published figures (RTX 4090, n = 16384, forward + backward) are shown beside ours, labelled as such:
they come from other hardware and are not comparable with times measured on this machine.
"""
from __future__ import annotations

import math
from typing import Dict, List

import torch

from ..core import Impl
from ..registry import Case, Ctx, PEERS, feature, peer_status, register
from .neuron import SIGMOID_ALPHA, TAU, V_TH, snntorch_beta

PUBLISHED_16K = [  # (label, ms) Open Neuromorphic framework benchmark, RTX 4090, 16k neurons, fwd+bwd
    ("SpikingJelly CuPy (published, RTX 4090, n=16k T=500)", 118.0),
    ("Norse compiled (published, RTX 4090, n=16k T=500)", 110.0),
    ("Spyx fp16 (published, RTX 4090, n=16k T=500)", 47.0),
]


def _available():
    return feature("fastspike.neuron.LIFNode")


def _points(ctx: Ctx) -> List[Dict]:
    if ctx.quick:
        # the published n=16k figures are listed under the largest table for reference (their size is in the label)
        return [dict(T=50, B=16, N=n, published=(n == 2048)) for n in (512, 1024, 2048)]
    # the 16k table shows the published RTX 4090 figures beside ours
    return [dict(T=500, B=16, N=n, published=(n == 16384)) for n in (4096, 8192, 16384)]


def _label(p):
    return f"Linear({p['N']}->{p['N']}) + LIF, T={p['T']} B={p['B']} fp32"


def _data(p, device, seed):
    T, B, N = p["T"], p["B"], p["N"]
    g = torch.Generator(device=device).manual_seed(seed)
    x = (torch.rand(T, B, N, generator=g, device=device) < 0.3).float()
    w = torch.randn(N, N, generator=g, device=device) * (2.5 / math.sqrt(0.3 * N))
    b = torch.randn(N, generator=g, device=device) * 0.1 + 0.5
    gs = torch.randn(T, B, N, generator=g, device=device)
    return x, w, b, gs


def _fs_net(w, b, detach_reset=False):
    from ... import neuron, surrogate
    try:
        from ... import layer
        fc = layer.Linear(w.shape[1], w.shape[0], step_mode="m")
    except (ImportError, AttributeError, TypeError):
        fc = torch.nn.Linear(w.shape[1], w.shape[0])  # acts on [T, B, N] directly
    with torch.no_grad():
        fc.weight.copy_(w)
        fc.bias.copy_(b)
    lif = neuron.LIFNode(tau=TAU, v_threshold=V_TH, v_reset=0.0, detach_reset=detach_reset,
                         surrogate_function=surrogate.Sigmoid(alpha=SIGMOID_ALPHA), step_mode="m")
    return torch.nn.Sequential(fc, lif).to(w.device), lif.reset


def _train_fn(forward, params, gs, scale=1.0):
    def fn():
        s = forward()
        gw, gb = torch.autograd.grad(s, params, gs)
        return {"spikes": s, "grad_weight": gw, "grad_bias": gb}
    return fn


def _setup(p, mode, ctx: Ctx) -> List[Impl]:
    x, w, b, gs = _data(p, ctx.device, ctx.seed)
    net, reset = _fs_net(w, b)

    def fs_fwd():
        reset()
        return net(x)
    impls = [Impl("fastspike", _train_fn(fs_fwd, [net[0].weight, net[0].bias], gs), kind="fastspike",
                  note="layer.Linear(step_mode='m') + LIFNode(step_mode='m', backend='auto')")]
    for peer in ctx.peers:
        ok, info = peer_status(peer)
        label = PEERS[peer].label
        if not ok:
            impls.append(Impl(label, None, status="skipped",
                              reason=f"not installed ({info}); install: {PEERS[peer].pip}"))
            continue
        try:
            impls.append(_PEER_SETUP[peer](x, w, b, gs))
        except Exception as e:
            impls.append(Impl(label, None, status="error", reason=f"setup failed: {type(e).__name__}: {e}"[:200]))
    if p.get("published"):
        for label, ms in PUBLISHED_16K:
            impls.append(Impl(label, None, kind="published", published_ms=ms,
                              note="published figure from other hardware (RTX 4090), not measured here"))
    return impls


def _sj(x, w, b, gs):
    from spikingjelly.activation_based import layer, neuron, surrogate
    fc = layer.Linear(w.shape[1], w.shape[0], step_mode="m")
    with torch.no_grad():
        fc.weight.copy_(w)
        fc.bias.copy_(b)
    lif = neuron.LIFNode(tau=TAU, v_threshold=V_TH, v_reset=0.0,
                         surrogate_function=surrogate.Sigmoid(alpha=SIGMOID_ALPHA),
                         step_mode="m")
    net = torch.nn.Sequential(fc, lif).to(x.device)

    def fwd():
        lif.reset()
        return net(x)
    return Impl(PEERS["spikingjelly"].label, _train_fn(fwd, [fc.weight, fc.bias], gs), kind="peer",
                note="layer.Linear + LIFNode, step_mode='m'")


def _snntorch(x, w, b, gs):
    import snntorch as snn
    from snntorch import surrogate as sts
    fc = torch.nn.Linear(w.shape[1], w.shape[0]).to(x.device)
    with torch.no_grad():  # Leaky adds its input unscaled: fold SpikingJelly's 1/tau into the layer
        fc.weight.copy_(w / TAU)
        fc.bias.copy_(b / TAU)
    lif = snn.Leaky(beta=snntorch_beta(TAU), threshold=V_TH, spike_grad=sts.sigmoid(slope=SIGMOID_ALPHA),
                    reset_mechanism="zero").to(x.device)
    T = x.shape[0]

    def fwd():
        mem = lif.reset_mem()
        spk_rec = []
        for t in range(T):
            spk, mem = lif(fc(x[t]), mem)
            spk_rec.append(spk)
        return torch.stack(spk_rec)

    def canon(out):
        return dict(out, grad_weight=out["grad_weight"] / TAU, grad_bias=out["grad_bias"] / TAU)

    def expect():
        net, reset = _fs_net(w, b, detach_reset=True)

        def f():
            reset()
            return net(x)
        return _train_fn(f, [net[0].weight, net[0].bias], gs)()
    return Impl(PEERS["snntorch"].label, _train_fn(fwd, [fc.weight, fc.bias], gs), kind="peer", canon=canon,
                expect=expect, note="per-step nn.Linear + Leaky loop (weights / tau, detached reset)")


def _norse(x, w, b, gs):
    import norse.torch as nt
    fc = torch.nn.Linear(w.shape[1], w.shape[0]).to(x.device)
    with torch.no_grad():
        fc.weight.copy_(w)
        fc.bias.copy_(b)
    dev = x.device
    p = nt.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / TAU, device=dev), v_leak=torch.as_tensor(0.0, device=dev),
                            v_th=torch.as_tensor(V_TH, device=dev), v_reset=torch.as_tensor(0.0, device=dev),
                            method="tanh", alpha=torch.as_tensor(SIGMOID_ALPHA / 2, device=dev))
    lif = nt.Lift(nt.LIFBoxCell(p, dt=1.0)).to(x.device)

    def fwd():
        return lif(fc(x))[0]
    return Impl(PEERS["norse"].label, _train_fn(fwd, [fc.weight, fc.bias], gs), kind="peer",
                note="nn.Linear over the sequence + Lift(LIFBoxCell)")


_PEER_SETUP = {"spikingjelly": _sj, "snntorch": _snntorch, "norse": _norse}

register(Case(
    name="open-neuromorphic", family="open-neuromorphic", suites=("open-neuromorphic",),
    description="Linear(n->n) + LIF, batch 16, T=500, n=4k/8k/16k, fp32, fwd+bwd (Open Neuromorphic configuration)",
    points=_points, setup=_setup, modes=("train",), x_axis="N", available=_available, label=_label))
