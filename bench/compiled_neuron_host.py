"""Host overhead of a compiled neuron: per-call wall time at a tiny shape, where the kernel's own work is a few
microseconds and what is measured is the Python and dispatch cost around it.

A QIF neuron written as a step function and compiled (``FlexSN`` over it, and the ``CompiledNeuron`` called
directly) against the hand-written ``neuron.QIFNode`` (same dynamics), multi-step, input [4, 2, 64] float32 on
the CPU, one thread. 'train' is forward + backward (the input requires grad), 'infer' a forward under no_grad.
Each figure is the median over ``--repeat`` rounds of the mean of ``--calls`` calls.

    python bench/compiled_neuron_host.py [--calls 200] [--repeat 31]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fastspike, not an installed one

from fastspike import neuron, surrogate
from fastspike.compiler import compile_neuron

SHAPE = (4, 2, 64)
TAU, V_C, A0, V_TH, V_RESET = 2.0, 0.8, 1.0, 1.0, -0.1


def _qif_core():
    def qif(x, v):
        h = v + (x + A0 * v * (v - V_C)) / TAU
        s = surrogate.Sigmoid(alpha=4.0)(h - V_TH)
        return s, s * V_RESET + (1.0 - s) * h

    return qif


def _runners(x):
    """name -> a function of the input that runs one multi-step call."""
    hand = neuron.QIFNode(tau=TAU, v_c=V_C, a0=A0, v_threshold=V_TH, v_reset=V_RESET,
                          surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")
    flex = neuron.FlexSN(_qif_core(), num_states=1, step_mode="m")
    compiled = compile_neuron(_qif_core(), num_states=1)
    v0 = torch.full(SHAPE[1:], V_RESET)

    def direct(inp):
        return compiled(inp, v0)[0][0]

    def module(m):
        def call(inp):
            m.reset()  # a fresh state every call (train mode would otherwise backprop into the last call's graph)
            return m(inp)
        return call

    return {"QIFNode (hand-written)": module(hand), "FlexSN (compiled QIF)": module(flex),
            "CompiledNeuron (direct)": direct}


def _time(fn, x, mode: str, calls: int, repeat: int) -> float:
    """Median over rounds of the mean per-call time, in microseconds."""
    xr = x.detach().requires_grad_(mode == "train")

    def one():
        if mode == "train":
            fn(xr).sum().backward()
        else:
            with torch.no_grad():
                fn(xr)

    for _ in range(20):
        one()
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(calls):
            one()
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=31)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.rand(SHAPE) * 2
    runners = _runners(x)
    print(f"input {list(SHAPE)} float32, CPU, 1 thread, median of {args.repeat} rounds of {args.calls} calls")
    for mode in ("train", "infer"):
        times = {name: _time(fn, x, mode, args.calls, args.repeat) for name, fn in runners.items()}
        hand = times["QIFNode (hand-written)"]
        for name, us in times.items():
            print(f"{mode:5s}  {name:26s} {us:8.1f} us/call  {us / hand:5.2f}x hand-written")


if __name__ == "__main__":
    main()
