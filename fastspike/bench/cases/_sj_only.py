"""What the neuron cases whose only peer is SpikingJelly share (neuron_nonlinear, neuron_fire, neuron_two_state):
their sizes, their inputs, and the rows of a table (fastspike's module, its C++ kernels on preallocated buffers,
SpikingJelly's module with the same arguments, the memory floor; snnTorch and Norse marked n/a)."""
from __future__ import annotations

from typing import Callable, Dict, List

import torch

from ..core import Impl
from ..registry import Ctx, PEERS, peer_status
from .neuron import _dtype, _floor, _module_fn, _peer_skip, LOW_PRECISION_TOL


def points(ctx: Ctx) -> List[Dict]:
    if ctx.quick:
        return [dict(T=16, B=4, N=512, dtype="fp32")]
    if ctx.device.startswith("cuda"):
        return [dict(T=T, B=64, N=65536, dtype="fp32") for T in (16, 256)]
    return [dict(T=64, B=16, N=4096, dtype="fp32")]


def inputs(T, B, N, dtype, device, seed, shift: float = 1.0):
    """X ~ N(shift, 1) (so the neuron fires on a fraction of the steps) and an upstream gradient ~ N(0, 1)."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(T, B, N, generator=g, device=device).add_(shift)
    gs = torch.randn(T, B, N, generator=g, device=device)
    return x.to(dtype), gs.to(dtype)


def module_call(node, x, gs, mode, kind):
    """The default timed call: reset, forward (and the gradient of x)."""
    return _module_fn(node, x, gs, mode, node.reset)


def setup(kind: str, *, node: Callable, kernel_impl: Callable, nbytes: Callable, call: Callable = module_call,
          shift: float = 1.0, peer_note: str = "its CPU path (per-step loop)"):
    """A case's setup: ``node(package, kind)`` builds the module of 'fastspike' or 'spikingjelly',
    ``call(node, x, gs, mode, kind)`` the timed function, ``kernel_impl(kind, x, gs, mode)`` the kernels' row,
    ``nbytes(kind, mode, numel, dtype)`` the bytes a fused kernel must move."""
    def run(p, mode, ctx: Ctx) -> List[Impl]:
        dtype = _dtype(p["dtype"])
        x, gs = inputs(p["T"], p["B"], p["N"], dtype, ctx.device, ctx.seed, shift)
        moved = nbytes(kind, mode, x.numel(), dtype)
        mine = node("fastspike", kind).to(ctx.device)
        impls = [Impl("fastspike", call(mine, x, gs, mode, kind), kind="fastspike", bytes_moved=moved,
                      note="module, backend='auto' (" + ("triton" if x.is_cuda else "cpp") + "), autograd")]
        try:
            k = kernel_impl(kind, x, gs, mode)
        except Exception as e:  # the op's internals moved: report, keep going
            k = Impl("fastspike kernels", None, kind="kernel", status="error", reason=f"{type(e).__name__}: {e}"[:200])
        k.bytes_moved = moved
        impls.append(k)
        for peer in ctx.peers:
            if peer != "spikingjelly":
                impls.append(_peer_skip(peer, f"no equivalent: {PEERS[peer].label} has no {kind.upper()} neuron",
                                        "n/a"))
                continue
            ok, info = peer_status(peer)
            if not ok:
                impls.append(_peer_skip(peer, f"not installed ({info}); install: {PEERS[peer].pip}"))
                continue
            try:
                sj = node("spikingjelly", kind).to(ctx.device)
                impl = Impl(PEERS[peer].label, call(sj, x, gs, mode, kind), kind="peer", bytes_moved=moved,
                            note=peer_note if not x.is_cuda else "its CUDA implementation")
                if dtype != torch.float32:
                    impl.tol = dict(LOW_PRECISION_TOL)
            except Exception as e:
                impl = Impl(PEERS[peer].label, None, kind="peer", status="error",
                            reason=f"setup failed: {type(e).__name__}: {e}"[:200])
            impls.append(impl)
        impls.append(_floor(x, mode))
        return impls
    return run
