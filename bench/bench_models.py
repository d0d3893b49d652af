"""Model-level benchmark: one training step (forward + backward + SGD step) of SEW ResNet-18 (cnf='ADD',
LIFNode tau=2 detach_reset=True, multi-step), T=4, batch 8, 3x64x64, on the CPU: fastspike against
SpikingJelly 2.0.0 built with the same weights (state_dict copied), time and peak memory. 'fastspike packed'
runs the same step inside ``fastspike.utils.pack_saved_spikes()`` (spikes saved for the backward bit-packed);
'fastspike event' sets ``event_driven='auto'`` on every Conv2d/Linear (spike-fed convolutions then take the
event-driven forward below the calibrated training crossover; results differ from SpikingJelly's by float
rounding, so this is an opt-in and not the default).

    pytest bench/bench_models.py --benchmark-only -p no:cacheprovider      # pytest-benchmark timings
    python bench/bench_models.py [--repeat 5] [--batch 8] [--size 64] [--T 4]   # ratios (time, peak memory)

Peak memory is the peak of the running sum of allocations/frees torch's profiler records during one step
(``fastspike.bench.core.peak_memory``, the measure every fastspike benchmark uses on the CPU): the
activations, temporaries and parameter gradients a step needs beyond the weights. Times: best wall time of
``--repeat`` interleaved steps, and best process CPU time (all threads), which is less sensitive to other
processes on a shared machine.
"""
from __future__ import annotations

import argparse
import sys
import time
import types

import torch
import torch.nn.functional as F


def _torchvision_standin() -> None:
    """SpikingJelly's model files import torchvision's load_state_dict_from_url; expose torch.hub's."""
    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        pass
    import torch.hub

    tv, tvm, tvu = (types.ModuleType(n) for n in ("torchvision", "torchvision.models", "torchvision.models.utils"))
    tvu.load_state_dict_from_url = torch.hub.load_state_dict_from_url
    tv.models, tvm.utils = tvm, tvu
    sys.modules.update({"torchvision": tv, "torchvision.models": tvm, "torchvision.models.utils": tvu})


def build(T: int = 4, batch: int = 8, size: int = 64, num_classes: int = 10, seed: int = 0):
    """(spikingjelly model, fastspike model, x, target) with identical weights; both in multi-step mode."""
    _torchvision_standin()
    from spikingjelly.activation_based import functional as sf
    from spikingjelly.activation_based import neuron as sn
    from spikingjelly.activation_based.model import sew_resnet as sj_sew

    from fastspike import functional, models, neuron

    torch.manual_seed(seed)
    kw = dict(cnf="ADD", num_classes=num_classes, tau=2.0, detach_reset=True)
    ref = sj_sew.sew_resnet18(spiking_neuron=sn.LIFNode, **kw)
    ours = models.sew_resnet18(spiking_neuron=neuron.LIFNode, **kw)
    ours.load_state_dict(ref.state_dict())
    sf.set_step_mode(ref, "m")
    functional.set_step_mode(ours, "m")
    x = torch.rand(T, batch, 3, size, size)
    target = torch.randint(0, num_classes, (batch,))
    return ref, ours, x, target


def make_step(model, x, target, reset, ctx=None):
    import contextlib

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        with (ctx() if ctx is not None else contextlib.nullcontext()):
            out = model(x).mean(0)
            loss = F.cross_entropy(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        reset(model)
        return loss

    return step


def steps(T=4, batch=8, size=64):
    from spikingjelly.activation_based import functional as sf

    import copy

    from fastspike import functional
    from fastspike.utils import pack_saved_spikes

    ref, ours, x, target = build(T, batch, size)
    event = copy.deepcopy(ours)
    for m in event.modules():
        if hasattr(m, "event_driven"):
            m.event_driven = "auto"
    return {"SpikingJelly 2.0": make_step(ref, x, target, sf.reset_net),
            "fastspike": make_step(ours, x, target, functional.reset_net),
            "fastspike packed": make_step(copy.deepcopy(ours), x, target, functional.reset_net, pack_saved_spikes),
            "fastspike event": make_step(event, x, target, functional.reset_net)}


# ---------------------------------------------------------------------------------------- pytest-benchmark
try:
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="module")
    def _steps():
        pytest.importorskip("spikingjelly")
        return steps()

    @pytest.mark.parametrize("impl", ["fastspike", "fastspike packed", "fastspike event", "SpikingJelly 2.0"])
    def test_sew_resnet18_train_step(benchmark, _steps, impl):
        benchmark.group = "sew_resnet18 train step T=4 B=8 64x64 cpu"
        benchmark.extra_info.update(impl=impl, T=4, batch=8, size=64)
        step = _steps[impl]
        step()  # warm-up
        benchmark.pedantic(step, rounds=3, iterations=1)


# ---------------------------------------------------------------------------------------------- ratios
def main(argv=None):
    p = argparse.ArgumentParser(description="SEW ResNet-18 training step: fastspike vs SpikingJelly 2.0.0")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--malloc", default="keep", choices=("keep", "system"),
                   help="keep (default): freed memory stays mapped for reuse, as in python -m fastspike.bench "
                        "(docs/bench.md); system: the C library's defaults")
    args = p.parse_args(argv)
    from fastspike.bench.core import keep_freed_memory, peak_memory

    malloc = "keep" if args.malloc == "keep" and keep_freed_memory() else "system"

    fns = steps(args.T, args.batch, args.size)
    res = {}
    for name, fn in fns.items():
        fn()  # warm-up
    for name, fn in fns.items():
        res[name] = {"mem": peak_memory(fn, "cpu")}
    times = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(args.repeat):  # interleaved, so all see the same machine load
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    for name in fns:
        res[name]["time"] = min(times[name])
        res[name]["median"] = sorted(times[name])[len(times[name]) // 2]
        res[name]["cpu"] = min(cpu[name])
    print(f"sew_resnet18 training step, T={args.T}, batch {args.batch}, {args.size}x{args.size}, CPU, "
          f"{torch.get_num_threads()} threads, best of {args.repeat}, malloc {malloc}")
    for name, r in res.items():
        print(f"  {name:18s} wall {r['time'] * 1e3:8.1f} ms (median {r['median'] * 1e3:8.1f} ms)  "
              f"CPU time {r['cpu'] * 1e3:8.1f} ms  "
              f"peak memory {r['mem'] / 2**20:9.1f} MiB")
    b = res["SpikingJelly 2.0"]
    for name in ("fastspike", "fastspike packed", "fastspike event"):
        a = res[name]
        print(f"  {name}: speed-up vs SpikingJelly: wall {b['time'] / a['time']:.2f}x (medians "
              f"{b['median'] / a['median']:.2f}x), process CPU time {b['cpu'] / a['cpu']:.2f}x; "
              f"peak memory ratio ({name} / SpikingJelly) {a['mem'] / b['mem']:.2f}")
    return res


if __name__ == "__main__":
    main()
