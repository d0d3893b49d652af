"""Neuron case: SpikeZIP's signed, bounded IF neuron (SpikingJelly 2.0's ``neuron.STBIFNode``), an inference-only
neuron, so forward only ('infer').

Configuration shared by both implementations: q_threshold=0.5, level=16, sym=True (pos_max 7, neg_min -8), input
[T, B, N] float32 ~ N(0, 1), states starting at their reset values (q = 0.5, acc_q = 0), under torch.no_grad().

* fastspike: the module with step_mode='m', which runs the fused forward-only op ``ops.stbif``.
* SpikingJelly 2.0.0: the same module; on the CPU its registered CPU path, a per-step PyTorch loop.
snnTorch and Norse have no such neuron.
"""
from __future__ import annotations

import torch

from ..core import Impl
from ..registry import Case, feature, register
from . import _sj_only
from .neuron import _label, summarize

STBIF = dict(q_threshold=0.5, level=16, sym=True)


def _available() -> str | None:
    return feature("fastspike.neuron.STBIFNode") or feature("fastspike.ops.stbif")


def _node(package: str, kind: str):
    if package == "fastspike":
        from ... import neuron
    else:
        from spikingjelly.activation_based import neuron
    return neuron.STBIFNode(step_mode="m", **STBIF)


def _bytes(kind, mode, numel, dtype):
    return numel * 2 * torch.empty((), dtype=dtype).element_size()  # read X, write the outputs


def _kernel_impl(kind, x, gs, mode):
    """fastspike's C++ kernel called directly on preallocated float32 buffers (no allocation)."""
    name = "fastspike kernels (prealloc)"
    if x.is_cuda or x.dtype != torch.float32:
        return Impl(name, None, kind="kernel", status="n/a", reason="the C++ kernel takes float32 CPU buffers")
    from ... import _ext
    from ...ops import _backend
    C = _ext.get()
    T = x.shape[0]
    x2 = x.reshape(T, -1).clone()
    n = x2.shape[1]
    out = torch.zeros_like(x2)
    q0, acc0 = torch.full((n,), 0.5), torch.zeros(n)
    q, acc, event = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    node = _node("fastspike", kind)
    thr, hi, lo = (float(t) for t in (node.q_threshold, node.pos_max, node.neg_min))
    th = _backend.num_threads()

    def fn():
        C.stbif_forward(x2.data_ptr(), q0.data_ptr(), acc0.data_ptr(), out.data_ptr(), q.data_ptr(), acc.data_ptr(),
                        event.data_ptr(), T, n, thr, hi, lo, th)
        return {"spikes": out.view_as(x)}
    return Impl(name, fn, kind="kernel", note="C++ forward on preallocated float32 buffers")


register(Case(
    name="neuron.stbif", family="neuron", suites=("default", "full", "neuron"),
    description="STBIFNode (SpikeZIP, q_threshold=0.5, level=16, sym=True), inference", modes=("infer",),
    points=_sj_only.points, x_axis="T",
    setup=_sj_only.setup("stbif", node=_node, kernel_impl=_kernel_impl, nbytes=_bytes, shift=0.0),
    available=_available, label=_label, summarize=summarize))
