"""Neuron case: a QIF neuron written as a Python step function and built by the neuron compiler
(``fastspike.compiler.compile_neuron``) against the hand-written fused QIF op (``ops.multistep_neuron``,
mode='qif'), forward + backward ('train') and forward only ('infer').

Same configuration as ``neuron.qif`` (SpikingJelly's defaults: tau=2, v_c=0.8, a0=1, v_rest=0, threshold 1, hard
reset to -0.1, Sigmoid(alpha=4), membrane starting at v_reset), input [T, B, N] float32. Issue 19's target: the
compiled neuron within 1.5x of the hand-written kernel on the CPU (1.3x on a GPU). The generated kernel is built
(or loaded from the disk cache) during setup, never inside the timing.
"""
from __future__ import annotations

from typing import List

import torch

from ..core import Impl
from ..registry import Case, Ctx, feature, register
from .neuron import SIGMOID_ALPHA, _floor, _label
from ._sj_only import inputs as _inputs, points as _points
from .neuron import _bytes
from .neuron_nonlinear import PARAMS, TAU, V_RESET

_P = PARAMS["qif"]


def _available() -> str | None:
    return feature("fastspike.compiler.compile_neuron") or feature("fastspike.ops.multistep_neuron")


def _compiled_qif():
    from ...compiler import compile_neuron
    from ...surrogate import Sigmoid
    sg = Sigmoid(alpha=SIGMOID_ALPHA)
    a0, v_rest, v_c = _P["a0"], _P["v_rest"], _P["v_c"]

    def qif(x, v):
        h = v + (x + a0 * (v - v_rest) * (v - v_c)) / TAU
        s = sg(h - 1.0)
        return s, s * V_RESET + (1.0 - s) * h

    return compile_neuron(qif, num_states=1), sg


def _fn(run, x, gs, mode):
    if mode == "infer":
        def infer():
            with torch.no_grad():
                return {"spikes": run(x)}
        return infer
    xr = x.detach().requires_grad_(True)

    def train():
        s = run(xr)
        (gx,) = torch.autograd.grad(s, [xr], gs)
        return {"spikes": s, "grad_x": gx}
    return train


def _setup(p, mode, ctx: Ctx) -> List[Impl]:
    from ...ops import multistep_neuron
    x, gs = _inputs(p["T"], p["B"], p["N"], torch.float32, ctx.device, ctx.seed)
    nbytes = _bytes("qif", mode, x.numel(), torch.float32)
    neuron, sg = _compiled_qif()
    backend = "triton" if x.is_cuda else "cpp"
    neuron((x[:1],), (V_RESET,), backend=backend)  # build or load the kernel now

    def compiled(xx):
        return neuron((xx,), (V_RESET,), backend=backend)[0][0]

    def hand_written(xx):
        return multistep_neuron(xx, V_RESET, mode="qif", tau=TAU, v_threshold=1.0, v_reset=V_RESET,
                                surrogate_function=sg, backend=backend, **_P)[0]

    return [Impl("fastspike compiled QIF", _fn(compiled, x, gs, mode), kind="fastspike", bytes_moved=nbytes,
                 note=f"compile_neuron(step function), {backend} kernels generated from the traced step"),
            Impl("fastspike hand-written QIF", _fn(hand_written, x, gs, mode), kind="kernel", bytes_moved=nbytes,
                 note=f"ops.multistep_neuron(mode='qif', backend={backend!r})"),
            _floor(x, mode)]


def summarize(tables) -> List[str]:
    """The compiled neuron's time over the hand-written op's (target: <= 1.5x on the CPU, 1.3x on a GPU)."""
    lines = []
    for t in tables:
        if t.case != "neuron.compiled_qif" or t.error:
            continue
        fast = next((r for r in t.rows if r.kind == "fastspike" and r.status == "ok" and r.median_ms), None)
        hand = next((r for r in t.rows if r.kind == "kernel" and r.status == "ok" and r.median_ms), None)
        if fast is not None and hand is not None:
            lines.append(f"{t.case} {t.mode} {t.label}: compiled/hand-written {fast.median_ms / hand.median_ms:.2f}x")
    return lines


register(Case(
    name="neuron.compiled_qif", family="neuron", suites=("full", "neuron"),
    description="QIF written as a step function and compiled (fastspike.compiler) vs the hand-written QIF op",
    points=_points, setup=_setup, x_axis="T", available=_available, label=_label, summarize=summarize))
