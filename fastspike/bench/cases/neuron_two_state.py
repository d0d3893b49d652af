"""Neuron cases: the multi-step neurons with two state variables (SpikingJelly 2.0's ``neuron.IzhikevichNode``,
``neuron.CUBALIFNode`` and ``neuron.ComplementaryLIFNode``), forward + backward ('train') and forward only ('infer').

Configuration shared by both implementations: SpikingJelly's defaults except where noted (Izhikevich: tau=2, v_c=0.8,
a0=1, v_rest=-0.1, tau_w=2, with a=0.1 and b=0.2 so that the adaptation current is not zero; CUBA-LIF: c_decay=0.5,
v_decay=0.75, threshold 0.5, Rect surrogate; CLIF: tau=2, threshold 1, Rect(alpha=1) surrogate), input [T, B, N]
float32, states starting at their reset values.

* fastspike: the modules with step_mode='m', which run the fused op ``ops.multistep_neuron2``.
* SpikingJelly 2.0.0: the same modules with the same arguments; on the CPU a per-step PyTorch loop (Izhikevich: its
  registered CPU path with its own backward through time; CUBA-LIF and CLIF: autograd through the loop).
snnTorch and Norse have none of these three neurons with SpikingJelly's equations.
"""
from __future__ import annotations

from typing import Dict, List

import torch

from ..core import Impl
from ..registry import Case, Ctx, PEERS, feature, peer_status, register
from .neuron import _dtype, _floor, _label, _module_fn, _peer_skip, LOW_PRECISION_TOL, summarize

IZHIKEVICH = dict(tau=2.0, v_c=0.8, a0=1.0, v_threshold=1.0, v_reset=0.0, v_rest=-0.1, w_rest=0.0, tau_w=2.0, a=0.1,
                  b=0.2)
CUBA = dict(c_decay=0.5, v_decay=0.75, v_threshold=0.5, v_reset=0.0)
CLIF = dict(tau=2.0, v_threshold=1.0)
SHIFT = {"izhikevich": 0.6, "cubalif": 0.0, "clif": 0.8}  # input mean: each fires on a fraction of the steps


def _available() -> str | None:
    return feature("fastspike.neuron.IzhikevichNode") or feature("fastspike.ops.multistep_neuron2")


def _points(ctx: Ctx) -> List[Dict]:
    if ctx.quick:
        return [dict(T=16, B=4, N=512, dtype="fp32")]
    if ctx.device.startswith("cuda"):
        return [dict(T=T, B=64, N=65536, dtype="fp32") for T in (16, 256)]
    return [dict(T=64, B=16, N=4096, dtype="fp32")]


def _node(package: str, kind: str):
    """The neuron module of ``package`` ('fastspike' or 'spikingjelly') with the shared configuration."""
    if package == "fastspike":
        from ... import neuron, surrogate
    else:
        from spikingjelly.activation_based import neuron, surrogate
    if kind == "izhikevich":
        return neuron.IzhikevichNode(surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m", **IZHIKEVICH)
    if kind == "cubalif":
        node = neuron.CUBALIFNode(surrogate_function=surrogate.Rect(), **CUBA)
        node.step_mode = "m"
        return node
    return neuron.ComplementaryLIFNode(surrogate_function=surrogate.Rect(alpha=1.0), step_mode="m", **CLIF)


def _bytes(mode, numel, dtype):
    e = torch.empty((), dtype=dtype).element_size()
    if mode == "infer":
        return numel * 2 * e  # read X, write S
    return numel * 4 * e  # X, S forward; dS, dX backward (the C++ backward recomputes H from X)


def _kernel_impl(kind, x, gs, mode):
    """fastspike's C++ kernels called directly on preallocated float32 buffers (no autograd, no allocation)."""
    name = "fastspike kernels (prealloc)"
    if x.is_cuda or x.dtype != torch.float32:
        return Impl(name, None, kind="kernel", status="n/a", reason="the C++ kernels take float32 CPU buffers")
    from ... import _ext
    from ...ops import _backend
    from ...ops.neuron2 import MODELS, _config
    node = _node("fastspike", kind)
    kw = node._op2_kwargs()
    cfg = _config(kw.pop("model").replace("cubalif", "cuba"), kw.pop("v_threshold"), kw.pop("v_reset"),
                  kw.pop("detach_reset", False), node.surrogate_function.kernel_spec(),
                  tuple(kw.get(k, 0.5) for k in ("tau", "a0", "v_rest", "v_c", "tau_w", "a", "b", "c_decay",
                                                   "v_decay")))
    mode_id, v_th, v_reset, soft, detach, sid, sa, sb = cfg[:8]
    assert mode_id == MODELS[{"cubalif": "cuba"}.get(kind, kind)]
    params = cfg[8:]
    v0 = 0.0 if soft else v_reset
    u0 = float(getattr(node, "w_rest", 0.0))
    C = _ext.get()
    T = x.shape[0]
    x2, g2 = x.reshape(T, -1).clone(), gs.reshape(T, -1).clone()
    n = x2.shape[1]
    spikes, v_last, u_last, gx = torch.zeros_like(x2), torch.zeros(n), torch.zeros(n), torch.zeros_like(x2)
    th = _backend.num_threads()

    def fn():
        C.neuron2_forward(x2.data_ptr(), 0, v0, 0, u0, spikes.data_ptr(), 0, 0, v_last.data_ptr(), u_last.data_ptr(),
                          T, n, mode_id, v_th, v_reset, soft, th, *params)
        if mode != "train":
            return {"spikes": spikes.view_as(x)}
        C.neuron2_backward(g2.data_ptr(), 0, 0, 0, 0, x2.data_ptr(), 0, v0, 0, u0, gx.data_ptr(), 0, 0, T, n,
                           mode_id, v_th, v_reset, soft, detach, sid, sa, sb, th, *params)
        return {"spikes": spikes.view_as(x), "grad_x": gx.view_as(x)}
    return Impl(name, fn, kind="kernel", note="C++ forward" + ("+backward" if mode == "train" else "")
                + " on preallocated float32 buffers")


def _setup(kind):
    def setup(p, mode, ctx: Ctx) -> List[Impl]:
        dtype = _dtype(p["dtype"])
        g = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        x = torch.randn(p["T"], p["B"], p["N"], generator=g, device=ctx.device).add_(SHIFT[kind]).to(dtype)
        gs = torch.randn(p["T"], p["B"], p["N"], generator=g, device=ctx.device).to(dtype)
        nbytes = _bytes(mode, x.numel(), dtype)
        node = _node("fastspike", kind).to(ctx.device)
        impls = [Impl("fastspike", _module_fn(node, x, gs, mode, node.reset), kind="fastspike", bytes_moved=nbytes,
                      note="module, backend='auto' (" + ("triton" if x.is_cuda else "cpp") + "), autograd")]
        try:
            k = _kernel_impl(kind, x, gs, mode)
        except Exception as e:  # the op's internals moved: report, keep going
            k = Impl("fastspike kernels", None, kind="kernel", status="error", reason=f"{type(e).__name__}: {e}"[:200])
        k.bytes_moved = nbytes
        impls.append(k)
        for peer in ctx.peers:
            if peer != "spikingjelly":
                impls.append(_peer_skip(peer, f"no equivalent: {PEERS[peer].label} has no {kind} neuron", "n/a"))
                continue
            ok, info = peer_status(peer)
            if not ok:
                impls.append(_peer_skip(peer, f"not installed ({info}); install: {PEERS[peer].pip}"))
                continue
            try:
                sj = _node("spikingjelly", kind).to(ctx.device)
                impl = Impl(PEERS[peer].label, _module_fn(sj, x, gs, mode, sj.reset), kind="peer",
                            bytes_moved=nbytes, note="its CPU path (per-step loop)" if not x.is_cuda
                            else "its CUDA implementation")
                if dtype != torch.float32:
                    impl.tol = dict(LOW_PRECISION_TOL)
            except Exception as e:
                impl = Impl(PEERS[peer].label, None, kind="peer", status="error",
                            reason=f"setup failed: {type(e).__name__}: {e}"[:200])
            impls.append(impl)
        impls.append(_floor(x, mode))
        return impls
    return setup


_DESC = {
    "izhikevich": "IzhikevichNode (tau=2, v_c=0.8, a0=1, v_rest=-0.1, tau_w=2, a=0.1, b=0.2, hard reset to 0), "
                  "Sigmoid(alpha=4)",
    "cubalif": "CUBALIFNode (SpikingJelly defaults: c_decay=0.5, v_decay=0.75, threshold 0.5, hard reset), Rect",
    "clif": "ComplementaryLIFNode (SpikingJelly defaults: tau=2, threshold 1), Rect(alpha=1)",
}

for _kind in ("izhikevich", "cubalif", "clif"):
    register(Case(
        name=f"neuron.{_kind}", family="neuron", suites=("default", "full", "neuron"), description=_DESC[_kind],
        points=_points, setup=_setup(_kind), x_axis="T", available=_available, label=_label, summarize=summarize))
