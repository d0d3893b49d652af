"""Time STDPLearner.step in step mode 'm' (fastspike: linear_scan traces + one contraction; SpikingJelly 2.0.0: a
Python loop over steps) on the same recorded spikes. Usage: ``python tools/bench_stdp_learner.py`` (needs spikingjelly).
"""
import time

import torch
import torch.nn as nn

from fastspike import learning, layer, neuron, functional
from spikingjelly.activation_based import learning as sjlearn, layer as sjl, neuron as sjn, functional as sjf
torch.manual_seed(0)
T, N, I, O = 64, 32, 784, 100
x = (torch.rand(T, N, I) < 0.2).float()
W = nn.Linear(I, O, bias=False).weight.detach().clone()


def run(fw):
    if fw == "fs":
        net = nn.Sequential(layer.Linear(I, O, bias=False), neuron.IFNode(v_threshold=0.5)); functional.set_step_mode(net, "m")
        lrn = learning.STDPLearner("m", net[0], net[1], 2.0, 2.0)
    else:
        net = nn.Sequential(sjl.Linear(I, O, bias=False), sjn.IFNode(v_threshold=0.5)); sjf.set_step_mode(net, "m")
        lrn = sjlearn.STDPLearner("m", net[0], net[1], 2.0, 2.0)
    with torch.no_grad():
        net[0].weight.copy_(W)
        net(x)
    best = 1e9
    for _ in range(5):
        rec_i, rec_o = list(lrn.in_spike_monitor.records), list(lrn.out_spike_monitor.records)
        lrn.trace_pre = lrn.trace_post = None
        t0 = time.perf_counter(); dw = lrn.step(on_grad=False); best = min(best, time.perf_counter() - t0)
        lrn.in_spike_monitor.records.extend(rec_i); lrn.out_spike_monitor.records.extend(rec_o)
    return best, dw
a, dwa = run("fs"); b, dwb = run("sj")
print(f"max |dw diff| {(dwa - dwb).abs().max().item():.2e}")
print(f"STDPLearner.step, step_mode='m', Linear {I}->{O}, T={T}, N={N}: fastspike {a*1e3:.2f} ms, SpikingJelly {b*1e3:.2f} ms, ratio {b/a:.1f}x")
