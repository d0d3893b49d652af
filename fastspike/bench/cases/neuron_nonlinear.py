"""Neuron cases: multi-step QIF and EIF (SpikingJelly 2.0's ``neuron.QIFNode`` / ``neuron.EIFNode``), forward +
backward ('train') and forward only ('infer').

Configuration shared by both implementations: every parameter at SpikingJelly's default (QIF: tau=2, v_c=0.8,
a0=1, v_rest=0; EIF: tau=2, delta_T=1, theta_rh=0.8, v_rest=0; threshold 1, hard reset to -0.1,
detach_reset=False), Sigmoid surrogate with alpha = 4, membrane starting at v_reset, input [T, B, N] float32.

* fastspike: ``neuron.QIFNode / EIFNode(step_mode='m')``, which run the fused op (modes 'qif' / 'eif').
* SpikingJelly 2.0.0: the same modules with the same arguments; on the CPU their registered path (a per-step
  PyTorch loop and its own backward through time).
snnTorch and Norse have no quadratic or exponential IF neuron.
"""
from __future__ import annotations


import torch

from ..core import Impl
from ..registry import Case, feature, register
from . import _sj_only
from .neuron import _bytes, _label, SIGMOID_ALPHA, summarize

# SpikingJelly's defaults; the op's p1-p3 order (QIF: a0, v_rest, v_c; EIF: delta_T, theta_rh, v_rest)
TAU = 2.0
V_RESET = -0.1
PARAMS = {"qif": dict(a0=1.0, v_rest=0.0, v_c=0.8), "eif": dict(delta_T=1.0, theta_rh=0.8, v_rest=0.0)}
MODE_ID = {"qif": 3, "eif": 4}


def _available() -> str | None:
    return feature("fastspike.neuron.QIFNode") or feature("fastspike.ops.multistep_neuron")






def _node(package: str, kind: str):
    """The neuron module of ``package`` ('fastspike' or 'spikingjelly') with the shared configuration."""
    if package == "fastspike":
        from ... import neuron, surrogate
    else:
        from spikingjelly.activation_based import neuron, surrogate
    common = dict(tau=TAU, v_threshold=1.0, v_rest=0.0, v_reset=V_RESET,
                  surrogate_function=surrogate.Sigmoid(alpha=SIGMOID_ALPHA), detach_reset=False, step_mode="m")
    if kind == "qif":
        return neuron.QIFNode(v_c=PARAMS["qif"]["v_c"], a0=PARAMS["qif"]["a0"], **common)
    return neuron.EIFNode(delta_T=PARAMS["eif"]["delta_T"], theta_rh=PARAMS["eif"]["theta_rh"], **common)


def _kernel_impl(kind, x, gs, mode):
    """fastspike's C++ kernels called directly on preallocated float32 buffers (no autograd, no allocation)."""
    name = "fastspike kernels (prealloc)"
    if x.is_cuda or x.dtype != torch.float32:
        return Impl(name, None, kind="kernel", status="n/a", reason="the C++ kernels take float32 CPU buffers")
    from ... import _ext
    from ...ops import _backend
    C = _ext.get()
    sid, (a, b) = _node("fastspike", kind).surrogate_function.kernel_spec()
    p = PARAMS[kind]
    p123 = (p["a0"], p["v_rest"], p["v_c"]) if kind == "qif" else (p["delta_T"], p["theta_rh"], p["v_rest"])
    T = x.shape[0]
    x2, g2 = x.reshape(T, -1).clone(), gs.reshape(T, -1).clone()
    n = x2.shape[1]
    spikes, v_last, gx = torch.zeros_like(x2), torch.zeros(n), torch.zeros_like(x2)
    th = _backend.num_threads()

    def fn():
        C.neuron_forward(x2.data_ptr(), 0, V_RESET, spikes.data_ptr(), 0, 0, v_last.data_ptr(), T, n, MODE_ID[kind],
                         TAU, True, 1.0, V_RESET, False, th, *p123)
        if mode != "train":
            return {"spikes": spikes.view_as(x)}
        C.neuron_backward(g2.data_ptr(), 0, 0, x2.data_ptr(), 0, V_RESET, gx.data_ptr(), 0, 0, T, n, MODE_ID[kind],
                          TAU, True, 1.0, V_RESET, False, False, sid, a, b, th, *p123)
        return {"spikes": spikes.view_as(x), "grad_x": gx.view_as(x)}
    return Impl(name, fn, kind="kernel", note="C++ forward" + ("+backward" if mode == "train" else "")
                + " on preallocated float32 buffers")




_DESC = {
    "qif": "QIFNode (SpikingJelly defaults: tau=2, v_c=0.8, a0=1, hard reset to -0.1), Sigmoid(alpha=4)",
    "eif": "EIFNode (SpikingJelly defaults: tau=2, delta_T=1, theta_rh=0.8, hard reset to -0.1), Sigmoid(alpha=4)",
}

for _kind in ("qif", "eif"):
    register(Case(
        name=f"neuron.{_kind}", family="neuron", suites=("default", "full", "neuron"), description=_DESC[_kind],
        points=_sj_only.points, x_axis="T",
        setup=_sj_only.setup(_kind, node=_node, kernel_impl=_kernel_impl, nbytes=_bytes,
                             peer_note="its CPU path (per-step loop + own backward)"),
        available=_available, label=_label, summarize=summarize))
