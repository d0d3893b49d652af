"""Neuron case: a custom neuron written the way SpikingJelly's users write one, a ``SimpleBaseNode`` subclass that
defines only ``neuronal_charge`` (a LIF charge: H = V + (X - (V - v_reset)) / tau, threshold 1, hard reset to 0,
Sigmoid(alpha=4)), forward + backward ('train') and forward only ('infer').

* fastspike: the same class body on ``fastspike.neuron.SimpleBaseNode``; its hooks are traced once and run as
  generated fused kernels (fastspike/neuron/_hook_kernels.py).
* fastspike, Python hooks: the same module with ``backend = 'torch'`` (the per-step loop, for reference).
* kernels row: the hand-written fused LIF op (``ops.multistep_neuron``, mode 'lif') on the same input: what the
  generated kernels are compared against.
* SpikingJelly 2.0: the same class body on its ``SimpleBaseNode`` (a per-step loop on every device).
The generated kernel is built (or loaded from the disk cache) during setup, never inside the timing.
"""
from __future__ import annotations

from typing import List

import torch

from ..core import Impl
from ..registry import Case, Ctx, PEERS, feature, peer_status, register
from .neuron import SIGMOID_ALPHA, TAU, _bytes, _floor, _label, _module_fn, _peer_skip
from ._sj_only import inputs as _inputs, points as _points


def _available() -> str | None:
    return feature("fastspike.neuron.SimpleBaseNode")


def _custom_lif(base, surrogate):
    """The user's class: only the charge is defined (SpikingJelly's tutorial style)."""
    class CustomLIF(base):
        def __init__(self):
            super().__init__(v_threshold=1.0, v_reset=0.0, surrogate_function=surrogate.Sigmoid(alpha=SIGMOID_ALPHA),
                             step_mode="m")
            self.tau = TAU

        def neuronal_charge(self, x):
            self.v = self.v + (x - (self.v - self.v_reset)) / self.tau

    return CustomLIF()


def _setup(p, mode, ctx: Ctx) -> List[Impl]:
    from ... import neuron, surrogate
    from ...ops import multistep_neuron
    x, gs = _inputs(p["T"], p["B"], p["N"], torch.float32, ctx.device, ctx.seed)
    nbytes = _bytes("lif", mode, x.numel(), torch.float32)
    mine = _custom_lif(neuron.SimpleBaseNode, surrogate).to(ctx.device)
    with torch.no_grad():
        mine(x[:1])  # trace the hooks and build (or load) the kernels now
    mine.reset()
    python = _custom_lif(neuron.SimpleBaseNode, surrogate).to(ctx.device)
    python.backend = "torch"
    sg = surrogate.Sigmoid(alpha=SIGMOID_ALPHA)
    backend = "triton" if x.is_cuda else "cpp"

    class HandWritten(torch.nn.Module):
        def forward(self, xx):
            return multistep_neuron(xx, 0.0, mode="lif", tau=TAU, decay_input=True, v_threshold=1.0, v_reset=0.0,
                                    surrogate_function=sg, backend=backend)[0]

    impls = [Impl("fastspike", _module_fn(mine, x, gs, mode, mine.reset), kind="fastspike", bytes_moved=nbytes,
                  note=f"SimpleBaseNode subclass, hooks compiled to {backend} kernels"),
             Impl("fastspike kernels (hand-written LIF)", _module_fn(HandWritten(), x, gs, mode, lambda: None),
                  kind="kernel", bytes_moved=nbytes, note=f"ops.multistep_neuron(mode='lif', backend={backend!r})"),
             Impl("fastspike Python hooks", _module_fn(python, x, gs, mode, python.reset), kind="peer",
                  bytes_moved=nbytes, note="the same module with backend='torch' (per-step loop)")]
    for peer in ctx.peers:
        if peer != "spikingjelly":
            impls.append(_peer_skip(peer, f"no equivalent: {PEERS[peer].label} has no hook-style base neuron", "n/a"))
            continue
        ok, info = peer_status(peer)
        if not ok:
            impls.append(_peer_skip(peer, f"not installed ({info}); install: {PEERS[peer].pip}"))
            continue
        from spikingjelly.activation_based import neuron as sjn, surrogate as sjs
        theirs = _custom_lif(sjn.SimpleBaseNode, sjs).to(ctx.device)
        impls.append(Impl(PEERS[peer].label, _module_fn(theirs, x, gs, mode, theirs.reset), kind="peer",
                          bytes_moved=nbytes, note="SimpleBaseNode subclass, per-step loop"))
    impls.append(_floor(x, mode))
    return impls


register(Case(
    name="neuron.hooks", family="neuron", suites=("default", "full", "neuron"),
    description="a custom LIF written as a SimpleBaseNode subclass (neuronal_charge only): compiled hooks vs "
                "SpikingJelly's per-step loop",
    points=_points, setup=_setup, x_axis="T", available=_available, label=_label))
