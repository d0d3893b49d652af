"""Event-driven synapses against dense torch (MKL/oneDNN on the CPU, cuBLAS/cuDNN on CUDA) in the same run.

    python bench/bench_synapse.py                  # CPU, 2 threads, stores the calibrated crossovers
    python bench/bench_synapse.py --no-save        # measure only
    python bench/bench_synapse.py --device cuda    # GPU (Triton kernels vs cuBLAS / cuDNN)
    python bench/bench_synapse.py --quick          # smaller shapes, a smoke run

Cases (issue 4): Linear [M=1024, K=4096] -> 4096 and Conv2d 3x3 128->128 on 32x32 maps (batch 32, padding 1),
fp32, forward at 1% and 5% spike density and a density sweep for the crossover (the largest density below which
the event path won at every measured point, refined by linear interpolation of the time ratio); saved-for-backward
bytes of a spiking layer (event_driven=True) against float32 storage; a training step (forward + backward) at 1%
and 5% as an extra. Timings interleave the two paths and keep the best of ``--reps`` runs of each (the machine may
be shared); the median ratio is printed too. The crossover is written with fastspike.ops.synapse.save_crossover
(per machine key) unless --no-save.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from fastspike.ops import synapse as S  # noqa: E402


def _timer(device):
    if device.type == "cuda":
        def run(fn):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            return time.perf_counter() - t0
    else:
        def run(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
    return run


def compare(event_fn, dense_fn, reps, device):
    """Interleaved timings; returns (best event s, best dense s, median ratio dense/event)."""
    run = _timer(device)
    event_fn(), dense_fn()  # warm-up (also builds the blocked weight copy once)
    te, td = [], []
    for _ in range(reps):
        te.append(run(event_fn))
        td.append(run(dense_fn))
    ratios = [d / e for d, e in zip(td, te)]
    return min(te), min(td), statistics.median(ratios)


def crossover_from(rows):
    """rows: [(density, t_event, t_dense)] ascending; interpolate where dense/event crosses 1."""
    prev = None
    for d, te, td in rows:
        r = td / te
        if r < 1.0:
            if prev is None:
                return 0.0
            d0, r0 = prev
            return d0 + (d - d0) * (r0 - 1.0) / (r0 - r)
        prev = (d, r)
    return rows[-1][0] if rows else 0.0


def saved_bytes(fn, exclude):
    ptrs = {t.data_ptr() for t in exclude}
    total = [0]

    def pack(t):
        if t.data_ptr() not in ptrs:
            total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total[0]


def bench_op(op, device, args, out):
    backend = "triton" if device.type == "cuda" else "cpp"
    q = args.quick
    if op == "linear":
        M, K, N = (256, 1024, 1024) if q else (1024, 4096, 4096)
        w = torch.randn(N, K, device=device) / K ** 0.5
        b = torch.randn(N, device=device)
        make = lambda d: (torch.rand(M, K, device=device) < d).float()  # noqa: E731
        ev = lambda x: S.synapse_linear(x, w, b, event_driven=True, backend=backend)  # noqa: E731
        de = lambda x: F.linear(x, w, b)  # noqa: E731
        label = f"Linear [M={M}, K={K}] -> {N}"
    else:
        B, C, H = (4, 64, 16) if q else (32, 128, 32)
        w = torch.randn(C, C, 3, 3, device=device) / (9 * C) ** 0.5
        b = torch.randn(C, device=device)
        make = lambda d: (torch.rand(B, C, H, H, device=device) < d).float()  # noqa: E731
        ev = lambda x: S.synapse_conv2d(x, w, b, padding=1, event_driven=True, backend=backend)  # noqa: E731
        de = lambda x: F.conv2d(x, w, b, padding=1)  # noqa: E731
        label = f"Conv2d 3x3 {C}->{C} on {H}x{H}, batch {B}, padding 1"
    res = {"case": label, "backend": backend, "forward": {}, "sweep": [], "train": {}}
    print(f"\n== {label}  (event: {backend}, dense: torch)")
    with torch.no_grad():
        for d in (0.01, 0.05):
            x = make(d)
            te, td, rmed = compare(lambda: ev(x), lambda: de(x), args.reps, device)
            res["forward"][str(d)] = {"event_ms": te * 1e3, "dense_ms": td * 1e3, "speedup": td / te,
                                      "speedup_median": rmed}
            print(f"forward  density {d:5.3f}: event {te * 1e3:8.2f} ms  dense {td * 1e3:8.2f} ms  "
                  f"speedup {td / te:6.2f}x (median {rmed:.2f}x)")
        rows = []
        for d in args.sweep:
            x = make(d)
            te, td, _ = compare(lambda: ev(x), lambda: de(x), max(2, args.reps // 2), device)
            rows.append((d, te, td))
            res["sweep"].append({"density": d, "event_ms": te * 1e3, "dense_ms": td * 1e3, "speedup": td / te})
            print(f"  sweep    density {d:5.3f}: speedup {td / te:6.2f}x")
    cross = crossover_from(rows)
    res["crossover"] = cross
    print(f"crossover density (event path faster below): {cross:.3f}")
    if args.save:
        path = S.save_crossover(op, round(cross, 4), device)
        res["stored_in"] = path
        print(f"stored in {path} under {S.machine_key(device)!r}")

    # memory held for backward by the spiking layer vs float32 storage of its input
    x = make(0.05)
    wg = w.clone().requires_grad_()
    if op == "linear":
        fn = lambda: S.synapse_linear(x, wg, None, event_driven=True, backend=backend)  # noqa: E731
    else:
        fn = lambda: S.synapse_conv2d(x, wg, None, padding=1, event_driven=True, backend=backend)  # noqa: E731
    n = saved_bytes(fn, [wg])
    res["saved_bytes"] = n
    res["float32_bytes"] = x.numel() * 4
    print(f"saved for backward: {n} bytes vs {x.numel() * 4} float32 bytes: {x.numel() * 4 / n:.1f}x smaller")

    # training step (forward + backward of weight and input), extra
    if not args.no_train:
        for d in (0.01, 0.05):
            x = make(d)
            wd = w.clone().requires_grad_()
            g = None

            def step(event):
                nonlocal g
                xr = x.clone().requires_grad_()
                if op == "linear":
                    o = S.synapse_linear(xr, wd, None, event_driven=True, backend=backend) if event else F.linear(xr, wd)
                else:
                    o = (S.synapse_conv2d(xr, wd, None, padding=1, event_driven=True, backend=backend) if event
                         else F.conv2d(xr, wd, None, padding=1))
                if g is None:
                    g = torch.randn_like(o)
                torch.autograd.grad(o, (xr, wd), g)

            te, td, rmed = compare(lambda: step(True), lambda: step(False), max(2, args.reps // 2), device)
            res["train"][str(d)] = {"event_ms": te * 1e3, "dense_ms": td * 1e3, "speedup": td / te}
            print(f"train    density {d:5.3f}: event {te * 1e3:8.2f} ms  dense {td * 1e3:8.2f} ms  "
                  f"speedup {td / te:6.2f}x")
    out[op] = res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU; default 2)")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--ops", default="linear,conv2d")
    p.add_argument("--sweep", default="0.02,0.05,0.1,0.15,0.2,0.3,0.4,0.5,0.7",
                   help="densities for the crossover sweep (ascending)")
    p.add_argument("--no-save", dest="save", action="store_false", help="do not store the crossover")
    p.add_argument("--no-train", action="store_true", help="skip the forward+backward comparison")
    p.add_argument("--quick", action="store_true", help="small shapes (smoke run)")
    p.add_argument("--json", default=None, help="write the results to this JSON file")
    p.add_argument("--malloc", default="keep", choices=("keep", "system"),
                   help="keep (default): freed memory stays mapped for reuse, as in python -m fastspike.bench "
                        "(docs/bench.md); system: the C library's defaults")
    args = p.parse_args(argv)
    args.sweep = [float(v) for v in args.sweep.split(",")]
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from fastspike.bench.core import keep_freed_memory
    malloc = "keep" if args.malloc == "keep" and keep_freed_memory() else "system"
    print(f"fastspike synapse benchmark: device={device}, threads={torch.get_num_threads()}, "
          f"machine={S.machine_key(device)!r}, malloc {malloc}")
    out = {"device": str(device), "threads": torch.get_num_threads(), "machine": S.machine_key(device),
           "malloc": malloc,
           "command": "python " + " ".join([os.path.relpath(__file__)] + (argv if argv is not None else sys.argv[1:]))}
    for op in args.ops.split(","):
        bench_op(op.strip(), device, args, out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
