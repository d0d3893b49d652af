"""Neuron cases: multi-step KLIF, LIAF, ILIF and ActivationAwareIF (SpikingJelly 2.0's ``neuron.KLIFNode`` /
``LIAFNode`` / ``ILIFNode`` / ``ActivationAwareIFNode``), forward + backward ('train') and forward only ('infer').

Configuration shared by both implementations, SpikingJelly's defaults where it has them:
* KLIF: tau=2, decay_input, threshold 1, hard reset to 0, Sigmoid(alpha=4); k = 1 (its initial value) and its
  gradient is computed too.
* LIAF: act=ReLU, threshold_related=True, tau=2, hard reset to 0, Sigmoid(alpha=4); the output is analog.
* ILIF: tau=4/3, threshold 1, MultiLevelSpikeCount(4) (soft reset by the count).
* ActivationAwareIF: threshold 1, v_offset 0.1, soft reset, Sigmoid(alpha=4); 'aaif_pc' the same with one
  threshold and offset per channel (16 channels, thresholds 0.8..1.2, offsets -0.1..0.1), the input viewed as a
  conv activation [T, B, 16, N / 16] with channel_dim=1.
Input [T, B, N] float32, membrane starting at its reset value.

* fastspike: the modules with step_mode='m', which run the fused op (fire 'klif' / 'analog' / 'count').
* SpikingJelly 2.0.0: the same modules with the same arguments; on the CPU a per-step PyTorch loop (KLIF) or its
  registered ILIF path. Its LIAFNode in step_mode='m' returns LIF spikes (its LIFNode multi-step path ignores act),
  so LIAF runs SpikingJelly's single-step module over the T steps (the analog output both define).
snnTorch and Norse have none of these neurons.
"""
from __future__ import annotations


import torch

from ..core import Impl
from ..registry import Case, feature, register
from . import _sj_only
from .neuron import _bytes, _label, SIGMOID_ALPHA, summarize


def _available() -> str | None:
    return feature("fastspike.neuron.KLIFNode") or feature("fastspike.ops.multistep_neuron")


_CHANNELS = 16  # aaif_pc's channels


def _shaped(kind, t):
    """aaif_pc's view of [T, B, N] as [T, B, 16, N / 16]; the other cases' input as it is."""
    return t.view(*t.shape[:2], _CHANNELS, -1) if kind == "aaif_pc" else t


def _node(package: str, kind: str):
    """The neuron module of ``package`` ('fastspike' or 'spikingjelly') with the shared configuration."""
    if package == "fastspike":
        from ... import neuron, surrogate
        count = neuron.ilif.MultiLevelSpikeCount
    else:
        from spikingjelly.activation_based import neuron, surrogate
        count = surrogate.MultiLevelSpikeCount
    if kind == "ilif":
        return neuron.ILIFNode(surrogate_function=count(4), step_mode="m")
    if kind == "aaif":
        return neuron.ActivationAwareIFNode(v_threshold=1.0, v_offset=0.1,
                                            surrogate_function=surrogate.Sigmoid(alpha=SIGMOID_ALPHA), step_mode="m")
    if kind == "aaif_pc":
        return neuron.ActivationAwareIFNode(v_threshold=torch.linspace(0.8, 1.2, _CHANNELS),
                                            v_offset=torch.linspace(-0.1, 0.1, _CHANNELS), channel_dim=1,
                                            surrogate_function=surrogate.Sigmoid(alpha=SIGMOID_ALPHA), step_mode="m")
    common = dict(tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate_function=surrogate.Sigmoid(alpha=SIGMOID_ALPHA),
                  detach_reset=False, step_mode="m")
    if kind == "klif":
        return neuron.KLIFNode(**common)
    if package == "spikingjelly":
        common["step_mode"] = "s"
    return neuron.LIAFNode(torch.nn.ReLU(), True, **common)


def _forward(node, x):
    if node.step_mode == "s":  # SpikingJelly's LIAF: its single-step module over T
        return torch.stack([node(t) for t in x])
    return node(x)


def _fn(node, x, gs, mode, kind):
    """One call: reset, forward (and backward to x and KLIF's k). LIAF's analog output is named 'out' so that it is
    compared as a value, not as spikes."""
    name = "out" if kind == "liaf" else "spikes"
    x, gs = _shaped(kind, x), _shaped(kind, gs)
    if mode == "infer":
        def fn():
            node.reset()
            with torch.no_grad():
                return {name: _forward(node, x)}
        return fn
    xr = x.detach().requires_grad_(True)
    params = [node.k] if kind == "klif" else []

    def fn():
        node.reset()
        s = _forward(node, xr)
        grads = torch.autograd.grad(s, [xr] + params, gs)
        out = {name: s, "grad_x": grads[0]}
        if params:
            out["grad_w"] = grads[1]
        return out
    return fn


# the C++ kernels' (mode, fire, act, k, q1, q2, q3, tau or decay, v_reset, soft, p1) for each case
_KERNEL_ARGS = {
    "klif": (1, 1, 0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0, False, 0.0),
    "liaf": (1, 4, 1, 1.0, 1.0, 0.0, 0.0, 2.0, 0.0, False, 0.0),
    "ilif": (5, 3, 0, 1.0, 4.0, 0.0, 4.0, 4.0 / 3.0, 0.0, True, 1.0 - 3.0 / 4.0),
    "aaif": (0, 5, 0, 1.0, 0.1, 0.0, 0.0, 1.0, 0.0, True, 0.0),
    "aaif_pc": (0, 5, 0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, True, 0.0),
}


def _kernel_impl(kind, x, gs, mode):
    """fastspike's C++ kernels called directly on preallocated float32 buffers (no autograd, no allocation)."""
    name = "fastspike kernels (prealloc)"
    if x.is_cuda or x.dtype != torch.float32:
        return Impl(name, None, kind="kernel", status="n/a", reason="the C++ kernels take float32 CPU buffers")
    from ... import _ext
    from ...ops import _backend
    C = _ext.get()
    sid, (a, b) = (0, (SIGMOID_ALPHA, 0.0))
    m, fire, act, k, q1, q2, q3, decay, v_reset, soft, p1 = _KERNEL_ARGS[kind]
    T = x.shape[0]
    x2, g2 = x.reshape(T, -1).clone(), gs.reshape(T, -1).clone()
    n = x2.shape[1]
    out, v_last, gx = torch.zeros_like(x2), torch.zeros(n), torch.zeros_like(x2)
    gk = torch.zeros(-(-n // C.NEURON_BLOCK), dtype=torch.float64)
    th = _backend.num_threads()
    x = _shaped(kind, x)
    pc = torch.stack([torch.linspace(0.8, 1.2, _CHANNELS), torch.linspace(-0.1, 0.1, _CHANNELS)])
    chans = dict(pc=pc.data_ptr(), channels=_CHANNELS, inner=x[0, 0, 0].numel()) if kind == "aaif_pc" else {}

    def fn(_keep=pc):  # the default keeps pc (whose address the kernels get) alive
        C.neuron_forward(x2.data_ptr(), 0, v_reset, out.data_ptr(), 0, 0, v_last.data_ptr(), T, n, m, decay, True,
                         1.0, v_reset, soft, th, p1, 0.0, 0.0, fire, act, k, q1, **chans)
        res = {("out" if kind == "liaf" else "spikes"): out.view_as(x)}
        if mode != "train":
            return res
        C.neuron_backward(g2.data_ptr(), 0, 0, x2.data_ptr(), 0, v_reset, gx.data_ptr(), 0, gk.data_ptr(), T, n, m,
                          decay, True, 1.0, v_reset, soft, False, sid, a, b, th, p1, 0.0, 0.0, fire, act, k, q1, q2,
                          q3, **chans)
        res["grad_x"] = gx.view_as(x)
        if kind == "klif":  # dL/dk: the per-block partial sums
            res["grad_w"] = gk.sum().float()
        return res
    return Impl(name, fn, kind="kernel", note="C++ forward" + ("+backward" if mode == "train" else "")
                + " on preallocated float32 buffers")




_DESC = {
    "klif": "KLIFNode (tau=2, hard reset to 0, k=1 learnable), Sigmoid(alpha=4)",
    "liaf": "LIAFNode (ReLU, threshold_related, tau=2, hard reset to 0), Sigmoid(alpha=4)",
    "ilif": "ILIFNode (tau=4/3, MultiLevelSpikeCount(4), soft reset by the count)",
    "aaif": "ActivationAwareIFNode (threshold 1, v_offset 0.1, soft reset), Sigmoid(alpha=4)",
    "aaif_pc": "ActivationAwareIFNode, 16 per-channel thresholds 0.8..1.2 / offsets -0.1..0.1 (input [T, B, 16, "
               "N/16], channel_dim=1), soft reset, Sigmoid(alpha=4)",
}

for _kind in ("klif", "liaf", "ilif", "aaif", "aaif_pc"):
    register(Case(
        name=f"neuron.{_kind}", family="neuron", suites=("default", "full", "neuron"), description=_DESC[_kind],
        points=_sj_only.points, x_axis="T",
        setup=_sj_only.setup(_kind, node=_node, kernel_impl=_kernel_impl, nbytes=_bytes, call=_fn,
                             peer_note="its CPU path"),
        available=_available, label=_label, summarize=summarize))
