"""Neuron case: the multi-step gated LIF (SpikingJelly 2.0's ``neuron.GatedLIFNode``, GLIF), forward + backward
('train') and forward only ('infer').

Configuration shared by both implementations: SpikingJelly's defaults (init_tau=0.25, init_v_threshold=0.5,
init_conduct=0.5, linear decay v_threshold / 2T, sub-reset v_threshold, gates drawn from numpy's generator seeded
with 0 on both sides), per-channel parameters (inplane=16), Sigmoid(alpha=4). The case's input [T, B, N] runs as
[T, B, 16, 1, N / 16] (GLIF's per-channel parameters broadcast over a 4-d step); the timed call includes the
gradients of every parameter.

* fastspike: the module, which runs the fused op ``ops.multistep_gated_lif``.
* SpikingJelly 2.0.0: the same module; a per-step PyTorch loop with autograd on every device.
snnTorch and Norse have no GLIF neuron.
"""
from __future__ import annotations

import torch

from ..core import Impl
from ..registry import Case, feature, register
from . import _sj_only
from .neuron import _label, _module_fn, SIGMOID_ALPHA, summarize

CHANNELS = 16
SHIFT = 0.3  # input mean: the neurons fire on a fraction of the steps


def _available() -> str | None:
    return feature("fastspike.neuron.GatedLIFNode") or feature("fastspike.ops.multistep_gated_lif")


class _Lazy(torch.nn.Module):
    """GatedLIFNode needs T at construction: the case builds it in the timed call's setup, for the input's T."""

    def __init__(self, package: str):
        super().__init__()
        self.package = package


def _node(package: str, kind: str):
    return _Lazy(package)


def _build(package: str, T: int, device):
    import numpy as np
    if package == "fastspike":
        from ... import neuron, surrogate
    else:
        from spikingjelly.activation_based import neuron, surrogate
    state = np.random.get_state()
    np.random.seed(0)  # the same gates on both sides
    try:
        node = neuron.GatedLIFNode(T, inplane=CHANNELS, surrogate_function=surrogate.Sigmoid(alpha=SIGMOID_ALPHA))
    finally:
        np.random.set_state(state)
    return node.to(device)


def _view(t: torch.Tensor) -> torch.Tensor:
    T, B, N = t.shape
    return t.view(T, B, CHANNELS, 1, N // CHANNELS)


def _call(lazy, x, gs, mode, kind):
    node = _build(lazy.package, x.shape[0], x.device)
    fn = _module_fn(node, _view(x), _view(gs), mode, node.reset,
                    params=list(node.parameters()) if mode == "train" else ())

    def call():
        out = fn()
        return {k: (v.reshape(x.shape) if k != "grad_w" else v) for k, v in out.items()}
    return call


def _bytes(kind, mode, numel, dtype):
    e = torch.empty((), dtype=dtype).element_size()
    if mode == "infer":
        return numel * 2 * e  # read X, write S
    return numel * (4 * e + 2 * 4)  # X, S, dS, dX; V after every step written and read back in fp32


def _kernel_impl(kind, x, gs, mode):
    """fastspike's C++ kernels called directly on preallocated float32 buffers (no autograd, no allocation)."""
    name = "fastspike kernels (prealloc)"
    if x.is_cuda or x.dtype != torch.float32:
        return Impl(name, None, kind="kernel", status="n/a", reason="the C++ kernels take float32 CPU buffers")
    from ... import _ext
    from ...ops import _backend
    node = _build("fastspike", x.shape[0], x.device)
    with torch.no_grad():
        a, b, g, ta, th, ld, sr = (p.sigmoid() for p in (node.alpha, node.beta, node.gamma, node.tau,
                                                          node.v_threshold, node.linear_decay, node.v_subreset))
        coef = torch.stack([1 - a * (1 - ta), (1 - a) * ld, g, (1 - g) * sr, th]).contiguous()
        inc = (1 - b * (1 - node.conduct.sigmoid())).contiguous()
    T, B, N = x.shape
    M = B * N
    x2, g2 = x.reshape(T, M).clone(), gs.reshape(T, M).clone()
    spikes, v_seq, v_last, gx = torch.zeros_like(x2), torch.zeros_like(x2), torch.zeros(M), torch.zeros_like(x2)
    gcoef, ginc = torch.zeros_like(coef), torch.zeros_like(inc)
    dims = (B, CHANNELS, N // CHANNELS)
    C = _ext.get()
    th_n = _backend.num_threads()
    sid, (sa, sb) = node.surrogate_function.kernel_spec()

    def fn():
        C.gated_lif_forward(x2.data_ptr(), 0, 0.0, coef.data_ptr(), inc.data_ptr(), spikes.data_ptr(),
                            v_seq.data_ptr() if mode == "train" else 0, v_last.data_ptr(), T, *dims, th_n)
        if mode != "train":
            return {"spikes": spikes.view_as(x)}
        C.gated_lif_backward(g2.data_ptr(), 0, x2.data_ptr(), v_seq.data_ptr(), 0, 0.0, coef.data_ptr(),
                             inc.data_ptr(), gx.data_ptr(), 0, gcoef.data_ptr(), ginc.data_ptr(), T, *dims, sid, sa,
                             sb, th_n)
        # dL/d(alpha's raw parameter), through L = 1 - a (1 - tau), K = (1 - a) linear_decay, a = sigmoid(alpha)
        grad_a = (gcoef[0] * (ta - 1) - gcoef[1] * ld) * a * (1 - a)
        return {"spikes": spikes.view_as(x), "grad_x": gx.view_as(x), "grad_w": grad_a}
    return Impl(name, fn, kind="kernel", note="C++ forward" + ("+backward (every parameter's gradient)"
                                                               if mode == "train" else "")
                + " on preallocated float32 buffers")


register(Case(
    name="neuron.glif", family="neuron", suites=("default", "full", "neuron"),
    description="GatedLIFNode (SpikingJelly defaults, inplane=16, input [T, B, 16, 1, N/16]), Sigmoid(alpha=4)",
    points=_sj_only.points, x_axis="T",
    setup=_sj_only.setup("glif", node=_node, kernel_impl=_kernel_impl, nbytes=_bytes, call=_call, shift=SHIFT,
                         peer_note="its per-step PyTorch loop"),
    available=_available, label=_label, summarize=summarize))
