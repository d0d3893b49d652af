"""PSN family and linear_scan on the CPU: fastspike against SpikingJelly 2.0.0 and the memory-copy floor.

Cases (forward + backward, float32):
* PSN(T=16), MaskedPSN(k=4, T=16, lambda_=1), SlidingPSN(k=4) at x [T=16, B=32, N=8192], ATan surrogate:
  fastspike (backend='auto' -> fused C++), fastspike backend='torch' (addmm + elementwise surrogate: the
  'GEMM in PyTorch' variant) and SpikingJelly 2.0.0 loaded from the same state_dict. Target: >= 1.5x SJ.
* linear_scan(0.5, b) at b [T=1024, B=16, N=1024] against three preallocated copies ``out.copy_(x)`` of b
  (the memory-traffic floor of a forward + backward). Target: within 2x.

    pytest bench/bench_psn.py --benchmark-only -p no:cacheprovider     # pytest-benchmark tables
    python bench/bench_psn.py                                          # one run, prints the ratios
    python bench/bench_psn.py --cuda                                   # the same on the GPU, plus the
        memory-bandwidth fraction and the associative scan against a sequential Triton time loop at
        B*N = 1024, T = 4096 (needs a CUDA device)
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


DEVICE = "cpu"


def _sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


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
    m = m.to(DEVICE)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(*PSN_SHAPE, generator=g) + 0.5).to(DEVICE).requires_grad_()
    gs = torch.randn(*PSN_SHAPE, generator=g).to(DEVICE)
    params = [m.weight, m.bias]

    def fn():
        s = m(x)
        return torch.autograd.grad(s, [x] + params, gs)
    return fn


def scan_train_fn():
    from fastspike.ops.scan import linear_scan
    b = torch.randn(*SCAN_SHAPE, device=DEVICE).requires_grad_()
    g = torch.randn(*SCAN_SHAPE, device=DEVICE)

    def fn():
        h = linear_scan(0.5, b)
        return torch.autograd.grad(h, [b], g)
    return fn


def copy_floor_fn(copies: int = 3):
    pairs = [(torch.randn(*SCAN_SHAPE, device=DEVICE), torch.zeros(*SCAN_SHAPE, device=DEVICE))
             for _ in range(copies)]

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
    _sync()
    samples = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}


def scan_depth_fns(T: int = 4096, M: int = 1024):
    """Forward only, few columns and a long sequence: the associative-scan kernel against the sequential
    Triton time loop (kernels.scan.scan_forward_sequential). CUDA only."""
    from fastspike.kernels import scan as K
    from fastspike.ops.scan import linear_scan
    b = torch.randn(T, M, device="cuda")
    h = torch.empty_like(b)

    def scan():
        with torch.no_grad():
            return linear_scan(0.5, b)

    def seq():
        return K.scan_forward_sequential(None, b, None, h, T, M, 0, 0.5)
    return {"associative scan": scan, "sequential loop": seq}


def main(repeat: int = 7) -> int:
    print(f"torch {torch.__version__}, device {DEVICE}, threads {torch.get_num_threads()}")
    try:
        import spikingjelly  # noqa: F401
        have_sj = True
    except ImportError:
        have_sj = False
        print("spikingjelly not installed: PSN ratios need `pip install spikingjelly==2.0.0 --no-deps`")
    bw = None
    if DEVICE == "cuda":
        t = _median_times({"copy": copy_floor_fn(1)}, repeat)["copy"]
        bw = 2 * torch.Size(SCAN_SHAPE).numel() * 4 / (t * 1e-3)
        print(f"device copy bandwidth {bw / 1e9:.0f} GB/s (read + write of one {SCAN_SHAPE} fp32 tensor)")
    for kind in KINDS:
        fns = {"fastspike": psn_train_fn(kind, "fastspike"), "fastspike-torch": psn_train_fn(kind, "fastspike-torch")}
        if have_sj:
            fns["spikingjelly"] = psn_train_fn(kind, "spikingjelly")
        t = _median_times(fns, repeat)
        line = f"{kind:11s} fwd+bwd {PSN_SHAPE}: fastspike {t['fastspike']:7.2f} ms, torch backend " \
               f"{t['fastspike-torch']:7.2f} ms"
        if have_sj:
            line += f", SpikingJelly {t['spikingjelly']:7.2f} ms -> speed-up {t['spikingjelly'] / t['fastspike']:.2f}x"
        if bw:  # fused fwd+bwd moves X, S (fwd) and X, dS, dX (bwd): 5 tensors
            moved = 5 * torch.Size(PSN_SHAPE).numel() * 4
            line += f", {moved / (t['fastspike'] * 1e-3) / bw:.0%} of copy bandwidth"
        print(line)
    t = _median_times({"scan": scan_train_fn(), "floor": copy_floor_fn(3)}, repeat)
    print(f"linear_scan fwd+bwd {SCAN_SHAPE}: {t['scan']:7.2f} ms, 3 preallocated copies {t['floor']:7.2f} ms "
          f"-> {t['scan'] / t['floor']:.2f}x the floor")
    if DEVICE == "cuda":
        t = _median_times(scan_depth_fns(), repeat)
        print(f"linear_scan fwd, T=4096, B*N=1024: associative scan {t['associative scan']:.3f} ms, sequential "
              f"loop {t['sequential loop']:.3f} ms -> {t['sequential loop'] / t['associative scan']:.2f}x")
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--cuda"]
    if "--cuda" in sys.argv[1:]:
        if not torch.cuda.is_available():
            sys.exit("--cuda: no CUDA device is available")
        DEVICE = "cuda"
    sys.exit(main(int(args[0]) if args else 7))
