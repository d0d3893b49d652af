"""Neuron cases: multi-step IF / LIF / ParametricLIF, forward + backward ('train') and forward only ('infer').

Configuration shared by every implementation: hard reset to 0, threshold 1, LIF tau = 2 with
decay_input=True (SpikingJelly's default: H = V + (X - V) / tau), Sigmoid surrogate with alpha = 4,
initial membrane potential 0, input [T, B, N] float32 (and bf16 on CUDA).

How each peer is configured to compute the same thing (worked out from each framework's source):

* SpikingJelly 2.0.0: ``neuron.IFNode / LIFNode(tau=2.) / ParametricLIFNode(init_tau=2.)`` with
  ``step_mode='m'``; identical equations, ``detach_reset=False`` as fastspike's row.
* snnTorch 1.0 ``snn.Leaky(beta, threshold=1, spike_grad=surrogate.sigmoid(slope=4), reset_mechanism='zero')``
  in its own per-step loop. Leaky computes U[t] = beta * (1 - R[t-1]) * U[t-1] + I[t] with the reset R taken
  from the previous step's (pre-reset) potential and always detached, and fires when U > threshold. With
  beta = 1 - 1/tau and I = X / tau this is SpikingJelly's LIF with decay_input=True and detach_reset=True
  (the input is pre-scaled once outside the timed call, the gradient compared after multiplying back by
  1/tau); IF is beta = 1, I = X. snnTorch's sigmoid(slope=k) gradient k*s*(1-s) equals SpikingJelly's
  Sigmoid(alpha=k). Its agreement is therefore checked against fastspike run with detach_reset=True (the
  timed fastspike row keeps detach_reset=False; the two differ by one multiply-add in the backward).
* Norse 1.1: ``Lift(LIFBoxCell(LIFBoxParameters(tau_mem_inv=1/tau, v_leak=0, v_th=1, v_reset=0,
  method='tanh', alpha=2)), dt=1)``: v + dt * tau_mem_inv * (x + v_leak - v) is decay_input=True LIF; the
  reset (1 - z) v + z v_reset keeps its gradient (detach_reset=False); the 'tanh' surrogate
  1 - tanh(2x)^2 equals SpikingJelly's Sigmoid(alpha=4) gradient 4 s (1 - s). IF is ``norse.torch.IAF``.
  Norse has no ParametricLIF.

Spikes compare exactly except where H lies within rounding of the threshold (snnTorch and Norse fire on
U > threshold, SpikingJelly and fastspike on H >= threshold; their arithmetic differs in the last bit).
"""
from __future__ import annotations

from typing import Dict, List

import torch

from ..core import Impl, floor_impl
from ..registry import Case, Ctx, PEERS, feature, peer_status, register

TAU = 2.0
V_TH = 1.0
SIGMOID_ALPHA = 4.0
# peers running per-step Python loops take seconds at this many elements: the default suite skips them
# there (named in the table); --suite full runs them.
PEER_DEFAULT_MAX_NUMEL = 20_000_000
# bf16/fp16 inputs: fastspike keeps the state in fp32, peers compute in the 16-bit dtype, so spikes near the
# threshold differ more often; these limits still flag a different neuron model (tens of % of spikes)
LOW_PRECISION_TOL = {"spikes": 0.02, "grad_x": 0.1, "grad_w": 0.1}


def snntorch_beta(tau: float) -> float:
    """snnTorch Leaky's beta for a SpikingJelly LIF of time constant tau (module-level so tests can break it)."""
    return 1.0 - 1.0 / tau


def _available() -> str | None:
    return feature("fastspike.neuron.LIFNode") or feature("fastspike.ops.multistep_neuron")


def _dtype(name: str):
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _points(kind: str):
    def points(ctx: Ctx) -> List[Dict]:
        cuda = ctx.device.startswith("cuda")
        if ctx.quick:
            sizes = [(16, 4, 512), (8, 2, 64)]
            if cuda:
                sizes = [(16, 64, 4096), (64, 64, 4096)]
            return [dict(T=T, B=B, N=N, dtype="fp32") for T, B, N in sizes]
        if cuda:
            # LIF at the GPU target sizes; IF and PLIF at two T (fp32) to keep the GPU run within minutes
            if kind == "lif" or ctx.suite == "full":
                return [dict(T=T, B=64, N=65536, dtype=dt) for dt in ("fp32", "bf16") for T in (4, 16, 64, 256)]
            return [dict(T=T, B=64, N=65536, dtype="fp32") for T in (16, 256)]
        pts = [dict(T=T, B=B, N=N, dtype="fp32") for T, B, N in [(64, 16, 4096), (64, 4, 256)]]
        if kind == "lif":
            # the memory-bound size of the targets; forward+backward only in the default suite (time budget)
            big = dict(T=256, B=32, N=8192, dtype="fp32")
            pts.append(big if ctx.suite == "full" else dict(big, modes=("train",)))
            if ctx.suite == "full":
                pts += [dict(T=T, B=16, N=4096, dtype="fp32") for T in (8, 16, 32, 128, 256)]
        return pts
    return points


def _label(p):
    return f"T={p['T']} B={p['B']} N={p['N']} {p['dtype']}"


# ------------------------------------------------------------------------------------------------ helpers
def _inputs(kind, T, B, N, dtype, device, seed):
    g = torch.Generator(device=device).manual_seed(seed)  # generated where they are used (GPU sizes are GBs)
    x = torch.randn(T, B, N, generator=g, device=device)
    if kind == "if":
        x.mul_(0.5).add_(0.25)
    else:  # LIF/PLIF with decay_input: H = (V + X) / 2 at rest
        x.add_(1.0)
    gs = torch.randn(T, B, N, generator=g, device=device)
    return x.to(dtype), gs.to(dtype)


def _fs_node(kind, detach_reset=False, backend="auto"):
    from ... import neuron, surrogate
    sg = surrogate.Sigmoid(alpha=SIGMOID_ALPHA)
    common = dict(v_threshold=V_TH, v_reset=0.0, surrogate_function=sg, detach_reset=detach_reset,
                  step_mode="m", backend=backend)
    if kind == "if":
        return neuron.IFNode(**common)
    if kind == "lif":
        return neuron.LIFNode(tau=TAU, decay_input=True, **common)
    return neuron.ParametricLIFNode(init_tau=TAU, decay_input=True, **common)


def _module_fn(node, x, gs, mode, reset, params=()):
    """One call of a multi-step module in its own framework: reset state, forward (and backward)."""
    if mode == "infer":
        def fn():
            reset()
            with torch.no_grad():
                s = node(x)
            return {"spikes": s}
        return fn
    xr = x.detach().requires_grad_(True)  # a new leaf on the same storage: no copy
    params = list(params)

    def fn():
        reset()
        s = node(xr)
        if isinstance(s, tuple):
            s = s[0]
        grads = torch.autograd.grad(s, [xr] + params, gs)
        out = {"spikes": s, "grad_x": grads[0]}
        if params:
            out["grad_w"] = grads[1]
        return out
    return fn


def _bytes(kind, mode, numel, dtype):
    e = torch.empty((), dtype=dtype).element_size()
    if mode == "infer":
        return numel * 2 * e  # read X, write S
    b = numel * (4 * e + 2 * 4)  # X, S, dS, dX in the input dtype; H written and read back in fp32
    if kind == "plif":
        b += numel * e  # the w gradient reads X again
    return b


def _floor(x, mode):
    """Copies of the bytes a fused kernel must touch, on preallocated buffers."""
    if mode == "infer":
        return floor_impl(x, 1, "1 copy of X (read X, write S)")
    return floor_impl(x, 3, "3 copies of X (fwd: X->S [+H on GPU]; bwd: dS + H or X -> dX)")


def _kernel_impl(kind, x, gs, mode, device):
    """fastspike's kernels called directly on preallocated buffers (no autograd, no allocation)."""
    name = "fastspike kernels (prealloc)"
    T = x.shape[0]
    if device.startswith("cuda"):
        return _triton_kernel_impl(kind, x, gs, mode)
    if x.dtype != torch.float32:
        return Impl(name, None, kind="kernel", status="n/a", reason="the C++ kernels take float32 buffers")
    from ... import _ext
    from ...ops import _backend
    C = _ext.get()
    mode_id = {"if": 0, "lif": 1, "plif": 2}[kind]
    spec = _fs_node(kind).surrogate_function.kernel_spec()
    sid, (a, b) = spec
    x2 = x.reshape(T, -1).clone()  # own buffers: never write the shared input
    n = x2.shape[1]
    v0 = torch.zeros(n)
    spikes, v_last = torch.empty_like(x2), torch.empty(n)
    train = mode == "train"
    g2 = gs.reshape(T, -1).clone()
    gx, gv0 = torch.empty_like(x2), torch.empty(n)
    nblocks = (n + C.NEURON_BLOCK - 1) // C.NEURON_BLOCK
    gk = torch.empty(nblocks, dtype=torch.float64)
    # LIF: tau; ParametricLIF: k = sigmoid(w) = 1 / init_tau; IF: unused
    decay = {"if": 1.0, "lif": TAU, "plif": 1.0 / TAU}[kind]
    th = _backend.num_threads()
    for t in (v0, spikes, v_last, gx, gv0, gk):
        t.zero_()  # touch every output page once, outside the timing

    def fwd():
        # the C++ forward stores no H: its backward recomputes H from X per block of neurons
        C.neuron_forward(x2.data_ptr(), v0.data_ptr(), 0.0, spikes.data_ptr(), 0, 0,
                         v_last.data_ptr(), T, n, mode_id, decay, True, V_TH, 0.0, False, th)

    def fn():
        fwd()
        if not train:
            return {"spikes": spikes.view_as(x)}
        C.neuron_backward(g2.data_ptr(), 0, 0, x2.data_ptr(), v0.data_ptr(), 0.0, gx.data_ptr(), gv0.data_ptr(),
                          gk.data_ptr() if kind == "plif" else 0,
                          T, n, mode_id, decay, True, V_TH, 0.0, False, False, sid, a, b, th)
        out = {"spikes": spikes.view_as(x), "grad_x": gx.view_as(x)}
        if kind == "plif":
            # d/dw = d/dk * k (1 - k) at k = sigmoid(w) = 1/2
            out["grad_w"] = (gk.sum() * decay * (1 - decay)).float().reshape(())
        return out
    return Impl(name, fn, kind="kernel", note="C++ forward+backward on preallocated float32 buffers"
                if train else "C++ forward on preallocated float32 buffers")


TRITON_KERNEL_NAME = "fastspike kernels (launchers)"


def _triton_kernel_impl(kind, x, gs, mode):
    """fastspike's Triton launchers called directly (no module, no autograd): on CUDA their outputs come from
    torch's caching allocator, so this is the kernels' time plus a launch each. Runs on CPU tensors only under
    TRITON_INTERPRET=1 (tests)."""
    from ...ops import _kernels
    tk = _kernels.load("neuron")
    T = x.shape[0]
    mode_id = {"if": 0, "lif": 1, "plif": 2}[kind]
    sid, (a, b) = _fs_node(kind).surrogate_function.kernel_spec()
    scalars = dict(v0_value=0.0, mode=mode_id, tau=TAU if kind == "lif" else 1.0, decay_input=True, v_th=V_TH,
                   v_reset=0.0, soft_reset=False)
    x2 = x.reshape(T, -1).contiguous()
    g2 = gs.reshape(T, -1).contiguous()
    k = torch.full((1,), 1.0 / TAU, dtype=torch.float32, device=x.device) if kind == "plif" else None
    train = mode == "train"

    def fn():
        spikes, h, _, _ = tk.neuron_forward(x2, None, k, store_h=train, store_v_seq=False, **scalars)
        if not train:
            return {"spikes": spikes.view_as(x)}
        gx, _, gk = tk.neuron_backward(g2, None, None, h, x2 if kind == "plif" else None, None, k,
                                       detach_reset=False, sg=sid, sg_a=a, sg_b=b, need_gv0=False, **scalars)
        out = {"spikes": spikes.view_as(x), "grad_x": gx.view_as(x)}
        if kind == "plif":
            out["grad_w"] = (gk * (1.0 / TAU) * (1 - 1.0 / TAU)).reshape(())
        return out
    return Impl(TRITON_KERNEL_NAME, fn, kind="kernel",
                note="Triton forward" + ("+backward" if train else "") + " launchers, no autograd")


def _peer_skip(peer: str, why: str, status="skipped") -> Impl:
    return Impl(PEERS[peer].label, None, kind="peer", status=status, reason=why)


def _sj_impl(kind, x, gs, mode):
    from spikingjelly.activation_based import neuron as sjn, surrogate as sjs
    common = dict(v_threshold=V_TH, v_reset=0.0, surrogate_function=sjs.Sigmoid(alpha=SIGMOID_ALPHA),
                  detach_reset=False, step_mode="m")
    if kind == "if":
        node = sjn.IFNode(**common)
    elif kind == "lif":
        node = sjn.LIFNode(tau=TAU, decay_input=True, **common)
    else:
        node = sjn.ParametricLIFNode(init_tau=TAU, decay_input=True, **common)
    node = node.to(x.device)
    params = [node.w] if kind == "plif" else []
    note = "its CPU path (per-step loop + own backward)"
    if x.is_cuda:
        note = f"CUDA implementation: {_sj_cuda_impl(kind, x.device)}"
    return Impl(PEERS["spikingjelly"].label, _module_fn(node, x, gs, mode, node.reset, params), kind="peer",
                note=note)


def _sj_cuda_impl(kind, device) -> str:
    """Which of SpikingJelly's CUDA implementations it selects ('cuda' native extension first, then 'triton';
    forced with its SJ_<NEURON>_CUDA_IMPLEMENTATION environment variable, e.g. SJ_LIF_CUDA_IMPLEMENTATION)."""
    import importlib
    try:
        mod = importlib.import_module(f"spikingjelly._ops.{ {'if': 'if_', 'lif': 'lif', 'plif': 'plif'}[kind] }")
        d = mod._selection.diagnostics(torch.device(device))
        missing = d.get("unavailable")
        return f"{d['implementation']}" + (f" (unavailable: {', '.join(missing)})" if missing else "")
    except Exception as e:  # private API: report, never fail the row
        return f"unknown ({type(e).__name__})"


def _snntorch_impl(kind, x, gs, mode, ctx):
    if kind == "plif":
        return _peer_skip("snntorch", "no equivalent: ParametricLIF scales the input by a learnable 1/tau", "n/a")
    import snntorch as snn
    from snntorch import surrogate as sts
    beta = 1.0 if kind == "if" else snntorch_beta(TAU)
    scale = 1.0 if kind == "if" else 1.0 / TAU
    lif = snn.Leaky(beta=beta, threshold=V_TH, spike_grad=sts.sigmoid(slope=SIGMOID_ALPHA),
                    reset_mechanism="zero").to(x.device)
    xs = (x * scale).detach()
    T = x.shape[0]

    def loop(inp):
        mem = lif.reset_mem()
        spk_rec = []
        for t in range(T):
            spk, mem = lif(inp[t], mem)
            spk_rec.append(spk)
        return torch.stack(spk_rec)

    if mode == "infer":
        def fn():
            with torch.no_grad():
                return {"spikes": loop(xs)}
    else:
        xr = xs.requires_grad_(True)  # xs is this peer's own scaled copy

        def fn():
            s = loop(xr)
            (gx,) = torch.autograd.grad(s, [xr], gs)
            return {"spikes": s, "grad_x": gx}

    def canon(out):
        if "grad_x" in out:
            out = dict(out, grad_x=out["grad_x"] * scale)
        return out

    expect = None
    if mode == "train":
        def expect():  # snnTorch's reset is always detached: compare with fastspike doing the same
            node = _fs_node(kind, detach_reset=True)
            return _module_fn(node, x, gs, mode, node.reset)()
    return Impl(PEERS["snntorch"].label, fn, kind="peer", canon=canon, expect=expect,
                note=f"Leaky(beta={beta:g}), reset 'zero' (detached), input x{scale:g}")


def _norse_impl(kind, x, gs, mode):
    if kind == "plif":
        return _peer_skip("norse", "no equivalent: Norse has no ParametricLIF neuron", "n/a")
    import norse.torch as nt
    dev = x.device
    if kind == "if":
        p = nt.IAFParameters(v_th=torch.as_tensor(V_TH, device=dev), v_reset=torch.as_tensor(0.0, device=dev),
                             method="tanh", alpha=torch.as_tensor(SIGMOID_ALPHA / 2, device=dev))
        mod = nt.IAF(p, dt=1.0)
        note = "IAF"
    else:
        p = nt.LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 / TAU, device=dev),
                                v_leak=torch.as_tensor(0.0, device=dev), v_th=torch.as_tensor(V_TH, device=dev),
                                v_reset=torch.as_tensor(0.0, device=dev), method="tanh",
                                alpha=torch.as_tensor(SIGMOID_ALPHA / 2, device=dev))
        mod = nt.Lift(nt.LIFBoxCell(p, dt=1.0))
        note = "Lift(LIFBoxCell), dt*tau_mem_inv=1/2"
    mod = mod.to(x.device)

    def run(inp):
        out = mod(inp)
        return out[0] if isinstance(out, tuple) else out

    if mode == "infer":
        def fn():
            with torch.no_grad():
                return {"spikes": run(x)}
    else:
        xr = x.detach().requires_grad_(True)  # a new leaf on the same storage: no copy

        def fn():
            s = run(xr)
            (gx,) = torch.autograd.grad(s, [xr], gs)
            return {"spikes": s, "grad_x": gx}
    return Impl(PEERS["norse"].label, fn, kind="peer", note=note + ", surrogate 'tanh' k=2")


def _setup(kind):
    def setup(p, mode, ctx: Ctx) -> List[Impl]:
        T, B, N = p["T"], p["B"], p["N"]
        dtype = _dtype(p["dtype"])
        x, gs = _inputs(kind, T, B, N, dtype, ctx.device, ctx.seed)
        node = _fs_node(kind)
        if ctx.device.startswith("cuda"):
            node = node.to(ctx.device)
        params = [node.w] if kind == "plif" else []
        impls = [Impl("fastspike", _module_fn(node, x, gs, mode, node.reset, params), kind="fastspike",
                      bytes_moved=_bytes(kind, mode, x.numel(), dtype),
                      note="module, backend='auto' (" + ("triton" if x.is_cuda else "cpp") + "), autograd")]
        try:
            k = _kernel_impl(kind, x, gs, mode, ctx.device)
        except Exception as e:  # the op's internals moved: report, keep going
            k = Impl("fastspike kernels", None, kind="kernel", status="error",
                     reason=f"{type(e).__name__}: {e}"[:200])
        k.bytes_moved = _bytes(kind, mode, x.numel(), dtype)
        impls.append(k)
        big = x.numel() > PEER_DEFAULT_MAX_NUMEL and ctx.suite != "full" and not x.is_cuda
        for peer in ctx.peers:
            ok, info = peer_status(peer)
            if not ok:
                impls.append(_peer_skip(peer, f"not installed ({info}); install: {PEERS[peer].pip}"))
                continue
            if big and peer != "spikingjelly":
                impls.append(_peer_skip(peer, f"not run at {x.numel() / 1e6:.0f}M elements in suite "
                                              f"'{ctx.suite}' (per-step loop, slow); use --suite full"))
                continue
            try:
                if peer == "spikingjelly":
                    impl = _sj_impl(kind, x, gs, mode)
                elif peer == "snntorch":
                    impl = _snntorch_impl(kind, x, gs, mode, ctx)
                else:
                    impl = _norse_impl(kind, x, gs, mode)
            except Exception as e:
                impl = Impl(PEERS[peer].label, None, kind="peer", status="error",
                            reason=f"setup failed: {type(e).__name__}: {e}"[:200])
            if impl.fn is not None and impl.kind == "peer":
                impl.bytes_moved = _bytes(kind, mode, x.numel(), dtype)
                if dtype != torch.float32:  # peers compute in the 16-bit dtype, fastspike in fp32
                    impl.tol = dict(LOW_PRECISION_TOL)
            impls.append(impl)
        impls.append(_floor(x, mode))
        return impls
    return setup


def summarize(tables) -> List[str]:
    """Per neuron table: each peer's time over fastspike's, the kernels over the memcpy floor (target:
    within 2x of three copies), and the module over the kernels (allocation + autograd overhead)."""
    lines = []
    for t in tables:
        if t.family != "neuron" or t.error:
            continue
        rows = {r.impl: r for r in t.rows if r.status == "ok" and r.median_ms}
        fast = next((r for r in t.rows if r.kind == "fastspike" and r.status == "ok"), None)
        kern = next((r for r in t.rows if r.kind == "kernel" and r.status == "ok"), None)
        floor = rows.get("floor (memcpy)")
        if fast is None:
            continue
        parts = [f"{r.impl}/fastspike {r.median_ms / fast.median_ms:.2f}x" for r in t.rows
                 if r.kind == "peer" and r.impl in rows]
        if kern is not None and floor is not None:
            parts.append(f"kernels/floor {kern.median_ms / floor.median_ms:.2f}x")
        if kern is not None:
            parts.append(f"module/kernels {fast.median_ms / kern.median_ms:.2f}x")
        lines.append(f"{t.case} {t.mode} {t.label}: " + "; ".join(parts))
    return lines


_DESC = {
    "if": "IFNode, hard reset to 0, threshold 1, Sigmoid(alpha=4)",
    "lif": "LIFNode tau=2, decay_input, hard reset to 0, threshold 1, Sigmoid(alpha=4)",
    "plif": "ParametricLIFNode init_tau=2, decay_input, hard reset to 0, threshold 1, Sigmoid(alpha=4)",
}

for _kind in ("lif", "if", "plif"):
    register(Case(
        name=f"neuron.{_kind}", family="neuron", suites=("default", "full", "neuron"),
        description=_DESC[_kind], points=_points(_kind), setup=_setup(_kind), x_axis="T",
        available=_available, label=_label, summarize=summarize))


def _overhead_points(ctx: Ctx) -> List[Dict]:
    # so small that the kernels take a few microseconds: what is measured is the host's time per call
    return [dict(T=4, B=1, N=1024, dtype="fp32")]


def summarize_overhead(tables) -> List[str]:
    """Host microseconds per call of the LIF module at T=4, N=1024, and SpikingJelly's over fastspike's."""
    lines = []
    for t in tables:
        if t.case != "neuron.overhead" or t.error:
            continue
        rows = {r.kind if r.kind != "peer" else r.impl: r for r in t.rows if r.status == "ok" and r.median_ms}
        fast = rows.get("fastspike")
        if fast is None:
            continue
        parts = [f"fastspike module {fast.median_ms * 1e3:.0f} us/call"]
        if "kernel" in rows:
            parts.append(f"kernels {rows['kernel'].median_ms * 1e3:.0f} us (module/kernels "
                         f"{fast.median_ms / rows['kernel'].median_ms:.1f}x)")
        sj = rows.get(PEERS["spikingjelly"].label)
        if sj is not None:
            parts.append(f"SpikingJelly {sj.median_ms * 1e3:.0f} us ({sj.median_ms / fast.median_ms:.2f}x fastspike's)")
        lines.append(f"neuron.overhead {t.mode}: " + "; ".join(parts))
    return lines


register(Case(
    name="neuron.overhead", family="neuron", suites=("default", "full", "neuron"),
    description="LIFNode at T=4, N=1024: host time per module call (forward, forward+backward), "
                "the eager overhead a small layer pays per step",
    points=_overhead_points, setup=_setup("lif"), available=_available, label=_label,
    summarize=summarize_overhead))
