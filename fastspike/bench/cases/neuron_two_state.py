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


import torch

from ..core import Impl
from ..registry import Case, feature, register
from . import _sj_only
from .neuron import _label, summarize

IZHIKEVICH = dict(tau=2.0, v_c=0.8, a0=1.0, v_threshold=1.0, v_reset=0.0, v_rest=-0.1, w_rest=0.0, tau_w=2.0, a=0.1,
                  b=0.2)
CUBA = dict(c_decay=0.5, v_decay=0.75, v_threshold=0.5, v_reset=0.0)
CLIF = dict(tau=2.0, v_threshold=1.0)
SHIFT = {"izhikevich": 0.6, "cubalif": 0.0, "clif": 0.8}  # input mean: each fires on a fraction of the steps


def _available() -> str | None:
    return feature("fastspike.neuron.IzhikevichNode") or feature("fastspike.ops.multistep_neuron2")




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


def _bytes(kind, mode, numel, dtype):
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




_DESC = {
    "izhikevich": "IzhikevichNode (tau=2, v_c=0.8, a0=1, v_rest=-0.1, tau_w=2, a=0.1, b=0.2, hard reset to 0), "
                  "Sigmoid(alpha=4)",
    "cubalif": "CUBALIFNode (SpikingJelly defaults: c_decay=0.5, v_decay=0.75, threshold 0.5, hard reset), Rect",
    "clif": "ComplementaryLIFNode (SpikingJelly defaults: tau=2, threshold 1), Rect(alpha=1)",
}

for _kind in ("izhikevich", "cubalif", "clif"):
    register(Case(
        name=f"neuron.{_kind}", family="neuron", suites=("default", "full", "neuron"), description=_DESC[_kind],
        points=_sj_only.points, x_axis="T",
        setup=_sj_only.setup(_kind, node=_node, kernel_impl=_kernel_impl, nbytes=_bytes, shift=SHIFT[_kind]),
        available=_available, label=_label, summarize=summarize))
