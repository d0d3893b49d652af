"""PSN family and linear_scan on the CPU: fastspike against SpikingJelly 2.0.0 and the memory-copy floor.

Cases (forward + backward, float32):
* PSN(T=16), MaskedPSN(k=4, T=16, lambda_=1), SlidingPSN(k=4) at x [T=16, B=32, N=8192], ATan surrogate:
  fastspike (backend='auto' -> fused C++), fastspike backend='torch' (addmm + elementwise surrogate: the
  'GEMM in PyTorch' variant) and SpikingJelly 2.0.0 loaded from the same state_dict. Target: >= 1.5x SJ.
* linear_scan(0.5, b) at b [T=1024, B=16, N=1024] against three preallocated copies ``out.copy_(x)`` of b
  (the memory-traffic floor of a forward + backward). Target: within 2x.

    pytest bench/bench_psn.py --benchmark-only -p no:cacheprovider     # pytest-benchmark tables
    python bench/bench_psn.py                                          # one run, prints the ratios
"""
from __future__ import annotations

import statistics
import sys
import time

import pytest
import torch

PSN_SHAPE = (16, 32, 8192)
SCAN_SHAPE = (1024, 16, 1024)
KINDS = ("PSN", "MaskedPSN", "SlidingPSN")


def _make(kind: str, lib: str, backend: str = "auto"):
    if lib == "spikingjelly":
        from spikingjelly.activation_based import neuron, surrogate
        kw = {}
    else:
        from fastspike import neuron, surrogate
        kw = {"backend": backend}
    T = PSN_SHAPE[0]
    if kind == "PSN":
        return neuron.PSN(T, surrogate_function=surrogate.ATan(), **kw)
    if kind == "MaskedPSN":
        return neuron.MaskedPSN(4, T, lambda_init=1.0, surrogate_function=surrogate.ATan(), step_mode="m", **kw)
    return neuron.SlidingPSN(4, exp_init=True, surrogate_function=surrogate.ATan(), step_mode="m", **kw)


def psn_train_fn(kind: str, impl: str):
    """A closure running one forward + backward of `kind` for `impl` in
    ('fastspike', 'fastspike-torch', 'spikingjelly'), all from the same state_dict and data."""
    torch.manual_seed(0)
    ref = _make(kind, "fastspike")
    if impl == "spikingjelly":
        m = _make(kind, "spikingjelly")
    else:
        m = _make(kind, "fastspike", "torch" if impl == "fastspike-torch" else "auto")
    m.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(*PSN_SHAPE, generator=g) + 0.5).requires_grad_()
    gs = torch.randn(*PSN_SHAPE, generator=g)
    params = [m.weight, m.bias]

    def fn():
        s = m(x)
        return torch.autograd.grad(s, [x] + params, gs)
    return fn


def scan_train_fn():
    from fastspike.ops.scan import linear_scan
    b = torch.randn(*SCAN_SHAPE).requires_grad_()
    g = torch.randn(*SCAN_SHAPE)

    def fn():
        h = linear_scan(0.5, b)
        return torch.autograd.grad(h, [b], g)
    return fn


def copy_floor_fn(copies: int = 3):
    pairs = [(torch.randn(*SCAN_SHAPE), torch.zeros(*SCAN_SHAPE)) for _ in range(copies)]

    def fn():
        for src, dst in pairs:
            dst.copy_(src)
    return fn


# -- pytest-benchmark ------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["fastspike", "fastspike-torch", "spikingjelly"])
@pytest.mark.parametrize("kind", KINDS)
def test_psn_train(benchmark, kind, impl):
    if impl == "spikingjelly":
        pytest.importorskip("spikingjelly.activation_based.neuron")
    benchmark.group = f"{kind} fwd+bwd {PSN_SHAPE}"
    benchmark(psn_train_fn(kind, impl))


@pytest.mark.parametrize("impl", ["linear_scan", "3 copies"])
def test_scan_train(benchmark, impl):
    benchmark.group = f"linear_scan fwd+bwd {SCAN_SHAPE}"
    benchmark(scan_train_fn() if impl == "linear_scan" else copy_floor_fn(3))


# -- one run, ratios ---------------------------------------------------------------------------------------
def _median_times(fns: dict, repeat: int = 7, warmup: int = 2) -> dict:
    """Round-robin timing (each repeat runs every implementation once) so that load changes hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}


def main(repeat: int = 7) -> int:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    try:
        import spikingjelly  # noqa: F401
        have_sj = True
    except ImportError:
        have_sj = False
        print("spikingjelly not installed: PSN ratios need `pip install spikingjelly==2.0.0 --no-deps`")
    for kind in KINDS:
        fns = {"fastspike": psn_train_fn(kind, "fastspike"), "fastspike-torch": psn_train_fn(kind, "fastspike-torch")}
        if have_sj:
            fns["spikingjelly"] = psn_train_fn(kind, "spikingjelly")
        t = _median_times(fns, repeat)
        line = f"{kind:11s} fwd+bwd {PSN_SHAPE}: fastspike {t['fastspike']:7.1f} ms, torch backend " \
               f"{t['fastspike-torch']:7.1f} ms"
        if have_sj:
            line += f", SpikingJelly {t['spikingjelly']:7.1f} ms -> speed-up {t['spikingjelly'] / t['fastspike']:.2f}x"
        print(line)
    t = _median_times({"scan": scan_train_fn(), "floor": copy_floor_fn(3)}, repeat)
    print(f"linear_scan fwd+bwd {SCAN_SHAPE}: {t['scan']:7.1f} ms, 3 preallocated copies {t['floor']:7.1f} ms "
          f"-> {t['scan'] / t['floor']:.2f}x the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 7))
