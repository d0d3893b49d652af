"""Event-driven synapses against dense torch (MKL/oneDNN on the CPU, cuBLAS/cuDNN on CUDA) at the target shapes
(docs/synapses.md).

    python bench/bench_synapse.py                  # CPU, 2 threads, stores the calibrated crossovers
    python bench/bench_synapse.py --no-save        # measure only
    python bench/bench_synapse.py --device cuda    # GPU (Triton kernels vs cuBLAS / cuDNN)
    python bench/bench_synapse.py --quick          # smaller shapes, a smoke run

Cases: Linear [M=1024, K=4096] -> 4096 and Conv2d 3x3 128->128 on 32x32 maps (batch 32, padding 1), fp32: the
forward at 1% and 5% spike density (``event_driven=True`` against F.linear / F.conv2d), a density sweep for the
crossover (the largest density at and below which the event path won at every measured point; stored with
``save_crossover`` under this machine's key unless --no-save), the bytes kept for the backward by a spiking layer
against float32 storage, and a training step (forward + both gradients) at 1% and 5%. Every timing is the
benchmark package's (``fastspike.bench.cases.synapse.time_paths`` -> core.measure_table: interleaved samples,
outputs compared before timing); the best sample and the median of the per-pair ratios are reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from fastspike.bench.cases.synapse import crossover_of, time_paths
from fastspike.ops import synapse as S


def _times(table):
    """(best event s, best dense s, median of per-sample dense/event ratios)."""
    ev, de = table.rows
    if ev.status != "ok" or de.status != "ok":
        raise RuntimeError(f"{table.label}: {ev.status} {ev.reason} / {de.status} {de.reason}")
    ratios = [d / e for d, e in zip(de.times_ms, ev.times_ms)]
    return ev.min_ms / 1e3, de.min_ms / 1e3, statistics.median(ratios)


def saved_bytes(fn, exclude) -> int:
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
    q = args.quick
    if op == "linear":
        M, K, N = (256, 1024, 1024) if q else (1024, 4096, 4096)
        shape, label = dict(M=M, K=K, N=N), f"Linear [M={M}, K={K}] -> {N}"
    else:
        B, C, H = (4, 64, 16) if q else (32, 128, 32)
        shape, label = dict(B=B, C=C, H=H, W=H), f"Conv2d 3x3 {C}->{C} on {H}x{H}, batch {B}, padding 1"
    res = {"case": label, "forward": {}, "sweep": [], "train": {}}
    print(f"\n== {label}  (event_driven=True against torch's dense layer)")
    for d in (0.01, 0.05):
        te, td, rmed = _times(time_paths(op, device, shape, d, "infer", args.reps, dense="torch"))
        res["forward"][str(d)] = {"event_ms": te * 1e3, "dense_ms": td * 1e3, "speedup": td / te,
                                  "speedup_median": rmed}
        print(f"forward  density {d:5.3f}: event {te * 1e3:8.2f} ms  dense {td * 1e3:8.2f} ms  "
              f"speedup {td / te:6.2f}x (median {rmed:.2f}x)")
    rows = []
    for d in args.sweep:
        te, td, _ = _times(time_paths(op, device, shape, d, "infer", max(2, args.reps // 2), dense="torch"))
        rows.append((d, te, td))
        res["sweep"].append({"density": d, "event_ms": te * 1e3, "dense_ms": td * 1e3, "speedup": td / te})
        print(f"  sweep    density {d:5.3f}: speedup {td / te:6.2f}x")
    cross = crossover_of(rows)
    res["crossover"] = cross
    print(f"crossover density (event path faster at and below): {cross:.3f}")
    if args.save:
        path = S.save_crossover(op, cross, device)
        res["stored_in"] = path
        print(f"stored in {path} under {S.machine_key(device)!r}")

    # memory held for backward by a spiking layer (event_driven=True) against float32 storage of its input
    g = torch.Generator().manual_seed(1)
    if op == "linear":
        x = (torch.rand(M, K, generator=g) < 0.05).float().to(device)
        wg = torch.randn(N, K, device=device, requires_grad=True)
        fn = lambda: S.synapse_linear(x, wg, None, event_driven=True)  # noqa: E731
    else:
        x = (torch.rand(B, C, H, H, generator=g) < 0.05).float().to(device)
        wg = torch.randn(C, C, 3, 3, device=device, requires_grad=True)
        fn = lambda: S.synapse_conv2d(x, wg, None, padding=1, event_driven=True)  # noqa: E731
    n = saved_bytes(fn, [wg])
    res["saved_bytes"], res["float32_bytes"] = n, x.numel() * 4
    print(f"saved for backward: {n} bytes vs {x.numel() * 4} float32 bytes: {x.numel() * 4 / n:.1f}x smaller")

    if not args.no_train:
        for d in (0.01, 0.05):
            te, td, _ = _times(time_paths(op, device, shape, d, "train", max(2, args.reps // 2), dense="torch"))
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
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(out, f, indent=1)
        os.replace(tmp, args.json)
    return out


if __name__ == "__main__":
    main()
