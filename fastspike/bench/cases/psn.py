"""PSN family (PSN, MaskedPSN, SlidingPSN) and linear_scan, forward + backward and forward only.

* PSN(T): H = W X + B over time (W [T, T]), S = Heaviside(H), ATan surrogate; MaskedPSN(k=4, T) with
  lambda_ = 1 (the causal band only); SlidingPSN(k=4). Peer: SpikingJelly 2.0.0's modules of the same name,
  loaded with fastspike's parameters (same state_dict keys). snnTorch and Norse have no PSN.
* linear_scan: h[t] = a h[t-1] + b[t] with a = 1/2 (a LIF without reset, tau = 2); compared with the plain
  PyTorch time loop a user would write (``ops.reference.linear_scan``, also fastspike's test oracle).
Inputs [T, B, N] float32; upstream gradient random. Gradients compared: input, and weight / bias for PSNs.
"""
from __future__ import annotations

from typing import Dict, List

import torch

from ..core import Impl, floor_impl
from ..registry import Case, Ctx, PEERS, feature, peer_status, register


def _points_psn(ctx: Ctx) -> List[Dict]:
    if ctx.quick:
        return [dict(T=8, B=4, N=256)]
    if ctx.device.startswith("cuda"):
        return [dict(T=T, B=64, N=65536) for T in (16, 64)]
    return [dict(T=16, B=32, N=8192), dict(T=64, B=16, N=4096)]  # the first: the PSN issue's target size


def _points_scan(ctx: Ctx) -> List[Dict]:
    if ctx.quick:
        return [dict(T=16, B=4, N=256)]
    if ctx.device.startswith("cuda"):
        return [dict(T=T, B=64, N=65536) for T in (64, 256)]
    return [dict(T=64, B=16, N=4096), dict(T=1024, B=16, N=1024)]  # the second: the scan issue's target size


def _label(p):
    return f"T={p['T']} B={p['B']} N={p['N']} fp32"


def _data(p, device, seed):
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(p["T"], p["B"], p["N"], generator=g, device=device) + 1.0
    gs = torch.randn(p["T"], p["B"], p["N"], generator=g, device=device)
    return x, gs


def _fn(module, x, gs, mode, reset, named_params):
    if mode == "infer":
        def fn():
            reset()
            with torch.no_grad():
                return {"spikes": module(x)}
        return fn
    xr = x.detach().requires_grad_(True)  # a new leaf on the same storage: no copy
    names = [n for n, _ in named_params]
    params = [p for _, p in named_params]

    def fn():
        reset()
        s = module(xr)
        grads = torch.autograd.grad(s, [xr] + params, gs)
        out = {"spikes": s, "grad_x": grads[0]}
        out.update({f"grad_{n}": g for n, g in zip(names, grads[1:])})
        return out
    return fn


def _floor(x, copies, what):
    return floor_impl(x, copies, what)


def _reset_of(m):
    return getattr(m, "reset", None) or (lambda: None)


def _make_psn(kind, T, sj=False):
    if sj:
        from spikingjelly.activation_based import neuron as mod
        from spikingjelly.activation_based import surrogate as sg
    else:
        from ... import neuron as mod
        from ... import surrogate as sg
    if kind == "psn":
        return mod.PSN(T=T, surrogate_function=sg.ATan())
    if kind == "masked":
        m = mod.MaskedPSN(k=4, T=T, lambda_init=1.0, surrogate_function=sg.ATan(), step_mode="m")
        return m
    return mod.SlidingPSN(k=4, exp_init=True, surrogate_function=sg.ATan(), step_mode="m")


def _setup_psn(kind):
    def setup(p, mode, ctx: Ctx) -> List[Impl]:
        x, gs = _data(p, ctx.device, ctx.seed)
        T = p["T"]
        torch.manual_seed(ctx.seed)
        fs = _make_psn(kind, T).to(ctx.device)
        named = [("weight", fs.weight), ("bias", fs.bias)]
        e = x.element_size()
        impls = [Impl("fastspike", _fn(fs, x, gs, mode, _reset_of(fs), named), kind="fastspike",
                      note="module, backend='auto', fused GEMM-in-time + threshold (+ surrogate backward)",
                      bytes_moved=x.numel() * e * (2 if mode == "infer" else 6))]
        for peer in ctx.peers:
            ok, info = peer_status(peer)
            label = PEERS[peer].label
            if peer != "spikingjelly":
                impls.append(Impl(label, None, status="n/a", reason="no PSN in this framework"))
                continue
            if not ok:
                impls.append(Impl(label, None, status="skipped",
                                  reason=f"not installed ({info}); install: {PEERS[peer].pip}"))
                continue
            try:
                sj = _make_psn(kind, T, sj=True).to(ctx.device)
                missing = sj.load_state_dict(fs.state_dict(), strict=False)
                if missing.missing_keys:
                    raise RuntimeError(f"state_dict keys differ: {missing}")
                sj_named = [("weight", sj.weight), ("bias", sj.bias)]
                impls.append(Impl(label, _fn(sj, x, gs, mode, _reset_of(sj), sj_named), kind="peer",
                                  note="same module, parameters loaded from fastspike's state_dict",
                                  bytes_moved=impls[0].bytes_moved))
            except Exception as err:
                impls.append(Impl(label, None, status="error",
                                  reason=f"setup failed: {type(err).__name__}: {err}"[:200]))
        impls.append(_floor(x, 1 if mode == "infer" else 3,
                            "1 copy of X (X->S)" if mode == "infer" else "3 copies of X (fwd X->S; bwd dS,X->dX)"))
        return impls
    return setup


def _setup_scan(p, mode, ctx: Ctx) -> List[Impl]:
    from ...ops.scan import linear_scan
    from ...ops.reference import linear_scan as reference_linear_scan
    x, gs = _data(p, ctx.device, ctx.seed)
    a = 0.5

    def mk(f):
        if mode == "infer":
            def fn():
                with torch.no_grad():
                    return {"h": f(a, x)}
            return fn
        xr = x.detach().requires_grad_(True)  # a new leaf on the same storage: no copy

        def fn():
            h = f(a, xr)
            (gb,) = torch.autograd.grad(h, [xr], gs)
            return {"h": h, "grad_b": gb}
        return fn
    e = x.element_size()
    impls = [
        Impl("fastspike", mk(lambda a, b: linear_scan(a, b)), kind="fastspike", note="ops.linear_scan, backend='auto'",
             bytes_moved=x.numel() * e * (2 if mode == "infer" else 4)),
        Impl("PyTorch loop", mk(reference_linear_scan), kind="peer",
             note="for t: h = a * h + b[t] (what one writes without a scan op)",
             tol={"h": 1e-5, "grad_b": 1e-5}),
        _floor(x, 1 if mode == "infer" else 2, "copies of b: fwd b->h (+ bwd dh->db)"),
    ]
    if mode == "train":  # the scan's target is stated against three copies
        impls.append(floor_impl(x, 3, "3 copies of b: the reference floor of the scan's forward+backward",
                                name="floor x3 (memcpy)"))
    return impls


def _avail_psn():
    return feature("fastspike.neuron.PSN")


def _avail_scan():
    return feature("fastspike.ops.scan.linear_scan")


def summarize(tables) -> List[str]:
    """Per PSN-family table: each peer's time over fastspike's (target: 1.5x) and, for linear_scan,
    fastspike's time over the copy floors (target: within 2x of three copies)."""
    lines = []
    for t in tables:
        if t.family != "psn" or t.error:
            continue
        rows = {r.impl: r for r in t.rows if r.status == "ok" and r.median_ms}
        fast = next((r for r in t.rows if r.kind == "fastspike" and r.status == "ok" and r.median_ms), None)
        if fast is None:
            continue
        parts = [f"{r.impl}/fastspike {r.median_ms / fast.median_ms:.2f}x" for r in t.rows
                 if r.kind == "peer" and r.impl in rows]
        for name in ("floor (memcpy)", "floor x3 (memcpy)"):
            if t.case == "psn.linear_scan" and name in rows:
                parts.append(f"fastspike/{name.split(' (')[0]} {fast.median_ms / rows[name].median_ms:.2f}x")
        lines.append(f"{t.case} {t.mode} {t.label}: " + "; ".join(parts))
    return lines


for _kind, _desc in (("psn", "PSN(T), ATan surrogate"), ("masked", "MaskedPSN(k=4, T), lambda_=1 (band only)"),
                     ("sliding", "SlidingPSN(k=4), exp_init")):
    register(Case(name=f"psn.{_kind}" if _kind != "psn" else "psn.psn", family="psn",
                  suites=("default", "full", "psn"), description=_desc, points=_points_psn,
                  setup=_setup_psn(_kind), x_axis="T", available=_avail_psn, label=_label, summarize=summarize))

register(Case(name="psn.linear_scan", family="psn", suites=("default", "full", "psn"),
              description="linear_scan h[t] = 0.5 h[t-1] + b[t] vs a PyTorch time loop", points=_points_scan,
              setup=_setup_scan, x_axis="T", available=_avail_scan, label=_label, summarize=summarize))
