"""Where a small LIF layer's host time goes, layer by layer, as ratios to a bare ``torch.autograd.Function`` that
calls the same two C++ kernels (neuron_forward / neuron_backward of ``fastspike._C``) on ``torch.empty`` outputs.

At a tiny shape ([4, 4, 16] float32, one thread) the kernels take about a microsecond, so each row is host time:
``bare`` (the floor for any Python autograd Function), ``op`` (``OPS['cpp']`` of ops/neuron: the op contract, the
launchers, the autograd formula), ``run_neuron`` (plus the tests that send a plain input down the short path,
``_lane``, or else the argument checks, backend choice and layout; the known-binary record) and ``module`` (plus
``reset()``, ``nn.Module.__call__`` and the node's own checks). 'train' rows are forward + ``torch.autograd.grad``,
the 'infer' row a forward under no_grad. The rows are timed in turn, round after
round, in one process, and each ratio is the median over rounds of (row / bare) in that round: the VM's speed drifts
by tens of percent within minutes, the ratios much less.

    python bench/neuron_host.py [--rounds 20] [--calls 500]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fastspike, not an installed one

from fastspike import _ext, neuron
from fastspike.ops.neuron import OPS, run_neuron

T, B, N = 4, 4, 16


def rows():
    C = _ext.get()
    n = B * N
    x = torch.randn(T, B, N)
    gs = torch.randn_like(x)
    xr = x.detach().requires_grad_(True)
    node = neuron.LIFNode(tau=2.0, step_mode="m")
    sid, (sg_a, sg_b) = node.surrogate_function.kernel_spec()

    class Bare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            s, v_last = torch.empty_like(x), torch.empty(x.shape[1:])
            C.neuron_forward(x.data_ptr(), 0, 0.0, s.data_ptr(), 0, 0, v_last.data_ptr(), T, n, 1, 2.0, True, 1.0,
                             0.0, False, 1)
            ctx.save_for_backward(x)
            return s

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            gx = torch.empty_like(x)
            C.neuron_backward(g.contiguous().data_ptr(), 0, 0, x.data_ptr(), 0, 0.0, gx.data_ptr(), 0, 0, T, n, 1,
                              2.0, True, 1.0, 0.0, False, False, sid, sg_a, sg_b, 1)
            return gx

    fused = node._fused()
    node._run_fused(fused, xr, 0.0)  # plans the node
    plan = fused[1][1]

    def bare():
        return torch.autograd.grad(Bare.apply(xr), [xr], gs)

    def op():
        return torch.autograd.grad(OPS["cpp"](xr, None, None, None, 0.0, *plan.cfg, False, True, 1)[0], [xr], gs)

    def planned():
        return torch.autograd.grad(run_neuron(plan, xr, 0.0)[0], [xr], gs)

    def module():
        node.reset()
        return torch.autograd.grad(node(xr), [xr], gs)

    def bare_infer():
        with torch.no_grad():
            return Bare.apply(x)

    def module_infer():
        node.reset()
        with torch.no_grad():
            return node(x)

    for f in (op, planned, module):
        if not torch.equal(f()[0], bare()[0]):
            raise AssertionError(f"{f.__name__} and the bare Function disagree")
    return {"train": {"bare": bare, "op": op, "run_neuron": planned, "module": module},
            "infer": {"bare": bare_infer, "module": module_infer}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--calls", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)

    def timed(f, calls):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        return (time.perf_counter() - t) / calls * 1e6

    for mode, fns in rows().items():
        for f in fns.values():
            timed(f, args.calls // 2)  # warm-up
        times = {name: [] for name in fns}
        for _ in range(args.rounds):
            for name, f in fns.items():
                times[name].append(timed(f, args.calls))
        cells = [f"{name} {statistics.median(a / b for a, b in zip(ts, times['bare'])):.3f}"
                 for name, ts in times.items()]
        bare_us = statistics.median(times["bare"])
        print(f"{mode} ({T}x{B}x{N}, 1 thread; bare {bare_us:.0f} us/call): " + "  ".join(cells))


if __name__ == "__main__":
    main()
