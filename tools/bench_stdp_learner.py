"""Time STDPLearner.step in step mode 'm' (fastspike: linear_scan traces + one contraction; SpikingJelly 2.0.0: a
Python loop over steps) on the same recorded spikes. Usage: ``python tools/bench_stdp_learner.py`` (needs spikingjelly).
"""
import time

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional as sjf
from spikingjelly.activation_based import layer as sjl
from spikingjelly.activation_based import learning as sjlearn
from spikingjelly.activation_based import neuron as sjn

from fastspike import functional, layer, learning, neuron

T, N, IN, OUT = 64, 32, 784, 100
FRAMEWORKS = {"fastspike": (layer, neuron, functional, learning), "SpikingJelly": (sjl, sjn, sjf, sjlearn)}


def best_step_time(framework: str, x: torch.Tensor, weight: torch.Tensor, repeat: int = 5):
    """Fastest of ``repeat`` learner steps over the same recorded spikes, and the weight update it gave."""
    lay, neu, fun, lrn_mod = FRAMEWORKS[framework]
    net = nn.Sequential(lay.Linear(IN, OUT, bias=False), neu.IFNode(v_threshold=0.5))
    fun.set_step_mode(net, "m")
    lrn = lrn_mod.STDPLearner("m", net[0], net[1], 2.0, 2.0)
    with torch.no_grad():
        net[0].weight.copy_(weight)
        net(x)
    best, dw = float("inf"), None
    for _ in range(repeat):
        rec_in, rec_out = list(lrn.in_spike_monitor.records), list(lrn.out_spike_monitor.records)
        lrn.trace_pre = lrn.trace_post = None
        t0 = time.perf_counter()
        dw = lrn.step(on_grad=False)
        best = min(best, time.perf_counter() - t0)
        lrn.in_spike_monitor.records.extend(rec_in)  # step() consumes the records: put them back
        lrn.out_spike_monitor.records.extend(rec_out)
    return best, dw


def main():
    torch.manual_seed(0)
    x = (torch.rand(T, N, IN) < 0.2).float()
    weight = nn.Linear(IN, OUT, bias=False).weight.detach().clone()
    (ours, dw_ours), (theirs, dw_theirs) = (best_step_time(f, x, weight) for f in FRAMEWORKS)
    print(f"max |dw diff| {(dw_ours - dw_theirs).abs().max().item():.2e}")
    print(f"STDPLearner.step, step_mode='m', Linear {IN}->{OUT}, T={T}, N={N}: fastspike {ours * 1e3:.2f} ms, "
          f"SpikingJelly {theirs * 1e3:.2f} ms, ratio {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
