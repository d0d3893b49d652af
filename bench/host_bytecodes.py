"""How much Python one call runs: bytecode instructions (``sys.settrace`` opcode events) per call, split into
fastspike's, torch's and the rest, with the functions that run the most.

Timing host overhead on a shared VM drifts by tens of percent within minutes; the count of bytecodes a call executes
does not (the same inputs run the same Python), so it tracks the per-call host work that bounds small CPU layers and
every eager GPU training step (the same Python runs on either device; only the kernels behind it differ). It is a
proxy: an instruction that calls into C (a kernel, an allocation, autograd) counts once, whatever that costs, so
compare counts of the same case between trees, and time what matters (``bench/neuron_host.py``, ``python -m
fastspike.bench``).

Cases (CPU, float32): ``lif`` a multi-step LIFNode forward + ``torch.autograd.grad`` at [4, 4, 16]; ``lif-infer`` its
forward under no_grad; ``lif-single`` a single-step LIFNode over 8 steps + backward; ``conv`` a multi-step IFNode
then layer.Conv2d (8 -> 8, 3x3) forward + weight gradient; ``sew_resnet18`` one SGD training step of SEW ResNet-18
(IF, 'ADD', T = 2, batch 1, 32x32) with ``reset_net``.

    python bench/host_bytecodes.py [--case lif,conv,...] [--top 10]
"""
from __future__ import annotations

import argparse
import collections
import sys
import threading
from pathlib import Path
from typing import Callable, Dict

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fastspike, not an installed one

from fastspike import functional, layer, neuron
from fastspike.model import sew_resnet


def _lif(step_mode: str, infer: bool = False) -> Callable[[], object]:
    node = neuron.LIFNode(tau=2.0, step_mode=step_mode)
    x = torch.randn(4 if step_mode == "m" else 8, 4, 16, requires_grad=True)
    if infer:
        def call():
            node.reset()
            with torch.no_grad():
                return node(x)
    elif step_mode == "m":
        gs = torch.randn_like(x)

        def call():
            node.reset()
            return torch.autograd.grad(node(x), [x], gs)
    else:
        def call():
            node.reset()
            return torch.autograd.grad(torch.stack([node(x[t]) for t in range(x.shape[0])]).sum(), [x])
    return call


def _conv() -> Callable[[], object]:
    sn = neuron.IFNode(step_mode="m")
    conv = layer.Conv2d(8, 8, 3, padding=1, bias=False, step_mode="m")
    x = torch.randn(2, 2, 8, 6, 6)

    def call():
        sn.reset()
        return torch.autograd.grad(conv(sn(x)).sum(), [conv.weight])
    return call


def _sew_resnet18() -> Callable[[], object]:
    net = sew_resnet.sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, detach_reset=True)
    functional.set_step_mode(net, "m")
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(2, 1, 3, 32, 32)

    def call():
        functional.reset_net(net)
        opt.zero_grad(set_to_none=True)
        net(x).mean(0).sum().backward()
        opt.step()
    return call


CASES: Dict[str, Callable[[], Callable[[], object]]] = {
    "lif": lambda: _lif("m"), "lif-infer": lambda: _lif("m", infer=True), "lif-single": lambda: _lif("s"),
    "conv": _conv, "sew_resnet18": _sew_resnet18}


def _package(filename: str) -> str:
    parts = Path(filename).parts
    for name in ("fastspike", "torch"):
        if name in parts:
            return name
    return "other"


def count(call: Callable[[], object], warmup: int = 3) -> collections.Counter:
    """Bytecodes per (package, function) of one ``call()``, after ``warmup`` calls (caches, plans, lazy imports)."""
    for _ in range(warmup):
        call()
    counts: collections.Counter = collections.Counter()

    def trace(frame, event, arg):
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[(_package(code.co_filename), f"{Path(code.co_filename).name}:{code.co_name}")] += 1
        return trace
    sys.settrace(trace)
    threading.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
        threading.settrace(None)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", default=",".join(CASES), help=f"comma-separated, from: {', '.join(CASES)}")
    ap.add_argument("--top", type=int, default=10, help="functions listed per case")
    args = ap.parse_args()
    names = [c for c in args.case.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        ap.error(f"--case: unknown {unknown}; choose from {list(CASES)}")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for name in names:
        counts = count(CASES[name]())
        by_package = collections.Counter()
        for (package, _), n in counts.items():
            by_package[package] += n
        print(f"{name}: total {sum(counts.values())}  " + "  ".join(f"{p} {by_package[p]}"
                                                                    for p in ("fastspike", "torch", "other")))
        for (package, function), n in counts.most_common(args.top):
            print(f"  {n:7d}  {package}  {function}")


if __name__ == "__main__":
    main()
