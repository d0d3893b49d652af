"""Event-driven synapses across spike densities, with the measured crossover.

``ops.synapse_linear`` / ``ops.synapse_conv2d`` fed binary spikes at densities from 1% to 40%:
fastspike with ``event_driven=True`` (spike-gather kernels), ``False`` (dense GEMM / convolution, spikes saved
as bits for the backward) and ``'auto'`` (the timed 'fastspike' row: picks by the calibrated crossover), against
``F.linear`` / ``F.conv2d`` (the dense path every peer framework runs: SpikingJelly's layer.Linear/Conv2d,
snnTorch and Norse all call torch's nn.Linear/Conv2d). Train = forward + backward (input and weight gradients).

After all densities ran, the crossover is reported per op and mode: the largest measured density at and below
which the event-driven path beat the dense path at every measured density (the rule of :func:`calibrate`).
This is a measurement; the bench does not store it. :func:`calibrate` measures the same two paths on one
mid-size shape with the same timing machinery (core.measure_table) and stores the crossover that
``event_driven='auto'`` reads (ops/synapse/crossover.py); bench/bench_synapse.py runs it at larger shapes.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..core import Impl, Settings, Table, measure_table
from ..registry import Case, Ctx, feature, register

__all__ = ["calibrate", "time_paths", "crossover_of", "DENSITIES"]

DENSITIES = (0.01, 0.05, 0.1, 0.2, 0.4)


def _points(op):
    def points(ctx: Ctx) -> List[Dict]:
        dens = (0.05, 0.4) if ctx.quick else DENSITIES
        if op == "linear":
            if ctx.quick:
                size = dict(M=64, K=128, N=128)
            elif ctx.device.startswith("cuda"):
                size = dict(M=4096, K=4096, N=4096)
            else:
                size = dict(M=512, K=1024, N=1024)
        else:
            if ctx.quick:
                size = dict(B=2, C=8, H=8, W=8)
            elif ctx.device.startswith("cuda"):
                size = dict(B=64, C=128, H=32, W=32)
            else:
                size = dict(B=8, C=64, H=32, W=32)
        return [dict(size, density=d) for d in dens]
    return points


def _label(p):
    dims = " ".join(f"{k}={v}" for k, v in p.items() if k != "density")
    return f"{dims} density={p['density']:g}"


def _setup(op):
    def setup(p, mode, ctx: Ctx) -> List[Impl]:
        from ...ops.synapse import synapse_conv2d, synapse_linear
        g = torch.Generator().manual_seed(ctx.seed)
        dev = ctx.device
        if op == "linear":
            x = (torch.rand(p["M"], p["K"], generator=g) < p["density"]).float()
            w = torch.randn(p["N"], p["K"], generator=g) / p["K"] ** 0.5
            b = torch.randn(p["N"], generator=g)
            gy = torch.randn(p["M"], p["N"], generator=g)
            fs = lambda x, w, b, e: synapse_linear(x, w, b, event_driven=e)  # noqa: E731
            dense = lambda x, w, b: F.linear(x, w, b)  # noqa: E731
            peer = "F.linear (peers' dense path)"
        else:
            x = (torch.rand(p["B"], p["C"], p["H"], p["W"], generator=g) < p["density"]).float()
            w = torch.randn(p["C"], p["C"], 3, 3, generator=g) / (9 * p["C"]) ** 0.5
            b = torch.randn(p["C"], generator=g)
            gy = torch.randn(p["B"], p["C"], p["H"], p["W"], generator=g)
            fs = lambda x, w, b, e: synapse_conv2d(x, w, b, padding=1, event_driven=e)  # noqa: E731
            dense = lambda x, w, b: F.conv2d(x, w, b, padding=1)  # noqa: E731
            peer = "F.conv2d (peers' dense path)"
        x, w, b, gy = x.to(dev), w.to(dev), b.to(dev), gy.to(dev)

        def mk(f):
            if mode == "infer":
                def fn():
                    with torch.no_grad():
                        return {"y": f(x, w, b)}
                return fn
            xr = x.clone().requires_grad_(True)
            wr = w.clone().requires_grad_(True)
            br = b.clone().requires_grad_(True)

            def fn():
                y = f(xr, wr, br)
                gx, gw, gb = torch.autograd.grad(y, [xr, wr, br], gy)
                return {"y": y, "grad_x": gx, "grad_w": gw, "grad_b": gb}
            return fn
        tol = {"y": 1e-4, "grad_x": 1e-4, "grad_w": 1e-4, "grad_b": 1e-4}
        return [
            Impl("fastspike", mk(lambda x, w, b: fs(x, w, b, "auto")), kind="fastspike", tol=tol,
                 note="event_driven='auto' (calibrated crossover)"),
            Impl("fastspike event-driven", mk(lambda x, w, b: fs(x, w, b, True)), kind="kernel", tol=tol,
                 note="event_driven=True"),
            Impl("fastspike dense", mk(lambda x, w, b: fs(x, w, b, False)), kind="kernel", tol=tol,
                 note="event_driven=False"),
            Impl(peer, mk(dense), kind="peer", tol=tol),
        ]
    return setup


def crossover_of(points: Sequence[Tuple[float, float, float]]) -> float:
    """The largest density at and below which the event path beat the dense path at every measured density;
    ``points``: (density, event time, dense time), any order."""
    cross = 0.0
    for d, te, td in sorted(points):
        if te < td:
            cross = d
        else:
            break
    return cross


def _spikes(shape, density, g, device):
    return (torch.rand(shape, generator=g) < density).float().to(device)


def time_paths(op: str, device: Union[str, torch.device], shape: Dict[str, int], density: float,
               mode: str = "infer", reps: int = 3, min_sample_s: float = 5e-3, event_driven=True,
               dense: str = "op") -> Table:
    """One table of the event-driven path (``ops.synapse_<op>(..., event_driven=event_driven)``, the 'fastspike'
    row) against the dense one (``dense='op'``: the op with event_driven=False; ``'torch'``: F.linear /
    F.conv2d), measured by core.measure_table (round-robin samples, outputs compared first). ``shape``: M, K, N
    (linear) or B, C, H, W (conv2d, 3x3, padding 1); ``mode``: 'infer' (forward) or 'train' (forward and both
    gradients)."""
    from ...ops.synapse import synapse_conv2d, synapse_linear
    dev = str(torch.device(device))
    g = torch.Generator().manual_seed(0)
    if op == "linear":
        x = _spikes((shape["M"], shape["K"]), density, g, dev)
        w = (torch.randn(shape["N"], shape["K"], generator=g) / shape["K"] ** 0.5).to(dev)
        fs = lambda x, w, e: synapse_linear(x, w, None, event_driven=e)  # noqa: E731
        plain = lambda x, w: F.linear(x, w)  # noqa: E731
    elif op == "conv2d":
        x = _spikes((shape["B"], shape["C"], shape["H"], shape["W"]), density, g, dev)
        w = (torch.randn(shape["C"], shape["C"], 3, 3, generator=g) / (9 * shape["C"]) ** 0.5).to(dev)
        fs = lambda x, w, e: synapse_conv2d(x, w, None, padding=1, event_driven=e)  # noqa: E731
        plain = lambda x, w: F.conv2d(x, w, None, padding=1)  # noqa: E731
    else:
        raise ValueError(f"time_paths: op must be 'linear' or 'conv2d', but got {op!r}.")

    def mk(f):
        if mode == "infer":
            def fn():
                with torch.no_grad():
                    return {"y": f(x, w)}
            return fn
        xr, wr = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

        def fn():
            y = f(xr, wr)
            gx, gw = torch.autograd.grad(y, (xr, wr), torch.ones_like(y))
            return {"y": y, "grad_x": gx, "grad_w": gw}
        return fn
    tol = {"y": 1e-4, "grad_x": 1e-4, "grad_w": 1e-4}
    impls = [Impl("event", mk(lambda x, w: fs(x, w, event_driven)), kind="fastspike", tol=tol),
             Impl("dense", mk((lambda x, w: fs(x, w, False)) if dense == "op" else plain), kind="kernel", tol=tol)]
    table = Table(case=f"synapse.{op}", family="synapse", mode=mode, label=f"{op} density={density:g}",
                  params=dict(shape, density=density))
    settings = Settings(device=dev, warmup=2, repeat=reps, min_sample_s=min_sample_s, memory=False)
    return measure_table(table, impls, settings)


def calibrate(op: str, device: Union[str, torch.device] = "cpu", shape: Optional[dict] = None,
              densities=(0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5), reps: int = 3,
              save: bool = True, mode: str = "infer") -> Tuple[float, list]:
    """Time the event-driven and the dense path at each density (``mode='infer'``: forward only; ``'train'``:
    forward + backward with weight and input gradients); the crossover is the largest density at and below
    which the event path won at every measured point. Returns (crossover, [(density, t_event, t_dense)]), times
    the best seconds per call, and stores the crossover for this machine and mode when ``save``."""
    from ...ops.synapse import crossover_store as store
    store.store_key("calibrate", op, mode)  # a bad op or mode is an error before anything is timed
    default = {"M": 256, "K": 2048, "N": 2048} if op == "linear" else {"B": 8, "C": 128, "H": 32, "W": 32}
    size = {**default, **(shape or {})}
    rows = []
    for d in densities:
        table = time_paths(op, device, size, d, mode, reps)
        ev, de = table.rows
        if ev.status != "ok" or de.status != "ok":
            raise RuntimeError(f"calibrate: the {op} paths could not be timed at density {d}: "
                               f"{ev.status} {ev.reason} / {de.status} {de.reason}")
        rows.append((d, ev.min_ms / 1e3, de.min_ms / 1e3))
    cross = crossover_of(rows)
    if save:
        store.save_crossover(op, cross, device, mode)
    return cross, rows


def summarize(tables: List[Table]) -> List[str]:
    """The measured crossover per (case, mode, size): event-driven versus dense."""
    groups: Dict[tuple, List[tuple]] = {}
    for t in tables:
        if t.family != "synapse" or t.error:
            continue
        rows = {r.impl: r for r in t.rows}
        ev, de = rows.get("fastspike event-driven"), rows.get("fastspike dense")
        if not (ev and de and ev.median_ms and de.median_ms):
            continue
        key = (t.case, t.mode, tuple((k, v) for k, v in t.params.items() if k != "density"))
        groups.setdefault(key, []).append((t.params["density"], ev.median_ms, de.median_ms))
    lines = []
    for (case, mode, size), pts in groups.items():
        pts.sort()
        cross = crossover_of(pts)
        speed = ", ".join(f"{d:g}: {td / te:.2f}x" for d, te, td in pts)
        dims = " ".join(f"{k}={v}" for k, v in size)
        lines.append(f"{case} {mode} [{dims}]: measured crossover density {cross:g} "
                     f"(event-driven speed-up over dense by density: {speed})")
    return lines


def _available():
    return feature("fastspike.ops.synapse.synapse_linear")


for _op in ("linear", "conv2d"):
    register(Case(name=f"synapse.{_op}", family="synapse", suites=("default", "full", "synapse"),
                  description=f"event-driven {_op} vs dense across spike densities {DENSITIES}",
                  points=_points(_op), setup=_setup(_op), x_axis="density", available=_available, label=_label,
                  summarize=summarize))
