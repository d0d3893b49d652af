"""The CPU block cache of large kernel outputs (fastspike/ops/_alloc.py, csrc/memory.cpp): a freed output's block
is reused by the next output of its size, every element of a reused block is rewritten by the kernel, the limit and
the environment variable hold, and the tensors behave as torch tensors (other threads, exit, serialisation)."""
import os
import subprocess
import sys
import threading

import pytest
import torch

from fastspike import _ext, neuron, surrogate
from fastspike.ops import _alloc, linear_scan, multistep_neuron, psn, reference

pytestmark = pytest.mark.skipif(not _alloc._CACHING,
                                reason="the block cache is off (FASTSPIKE_CPU_CACHE_MB=0) or the extension is missing")

T, N = 8, 1024 * 160  # 5 MiB of float32 per [T, N] tensor: above HUGEPAGE_MIN_BYTES


def test_a_freed_output_is_reused_and_counted():
    _alloc.empty_cache()
    x = torch.randn(T, N)
    s, v, _ = multistep_neuron(x, 0.0)  # v: [N], 640 KiB, a medium block (see the test below)
    assert s.untyped_storage().nbytes() >= _alloc.HUGEPAGE_MIN_BYTES and s._base is None and s.is_contiguous()
    address, block = s.data_ptr(), -(-s.numel() * 4 // (2 << 20)) * (2 << 20)
    del s
    assert _alloc.cached_bytes() == block
    s2, v2, _ = multistep_neuron(x, 0.0)
    assert s2.data_ptr() == address and _alloc.cached_bytes() == 0
    assert torch.equal(s2, reference.multistep_neuron(x, torch.zeros(N), "lif", tau=2.0)[0])
    del s2, v, v2
    assert _alloc.empty_cache() == block + 2 * (640 << 10) and _alloc.cached_bytes() == 0


def test_medium_outputs_come_from_the_cache_in_64_kib_granules():
    """From CACHE_MIN_BYTES (below HUGEPAGE_MIN_BYTES) outputs take page-aligned blocks rounded up to 64 KiB: a
    single-step layer whose spikes a network keeps for every step reuses the blocks of the previous sequence (no
    fresh pages to fault in), and smaller outputs stay torch's."""
    C = _ext.get()
    assert C.HUGEPAGE_MIN_BYTES == _alloc.HUGEPAGE_MIN_BYTES and C.CACHE_BLOCK_GRANULE == 64 << 10
    _alloc.empty_cache()
    node = neuron.LIFNode()  # single-step, SpikingJelly's default
    x = torch.randn(4, 32, 4096)  # 512 KiB per step

    def run():  # the spikes of every step, and the addresses of the spikes and states it made
        node.reset()
        spikes, made = [], set()
        for t in range(4):
            spikes.append(node(x[t]))
            made |= {spikes[-1].data_ptr(), node.v.data_ptr()}
        return spikes, made

    first, addresses = run()
    assert all(a % 4096 == 0 for a in addresses)
    del first
    assert _alloc.cached_bytes() >= 4 * (512 << 10)
    second, made = run()
    assert made <= addresses  # the blocks of the first sequence again: nothing new to fault in
    ref = reference.multistep_neuron(x, torch.zeros(32, 4096), "lif", tau=2.0)[0]
    assert torch.equal(torch.stack(second), ref)
    del second
    _alloc.empty_cache()
    odd = _alloc.empty((_alloc.CACHE_MIN_BYTES // 4 + 1,))  # 128 KiB + 4 bytes: a 192 KiB block
    del odd
    assert _alloc.cached_bytes() == 192 << 10
    small = _alloc.empty((_alloc.CACHE_MIN_BYTES // 4 - 1,))  # torch's own, not the cache's
    del small
    assert _alloc.empty_cache() == 192 << 10


def _poison_cache(nbytes_list):
    """Fill the cache with NaN-filled blocks of the given sizes, so that a kernel's outputs come from them."""
    blocks = []
    for nbytes in nbytes_list:
        b = _alloc.empty((nbytes // 4,))
        b.fill_(float("nan"))
        blocks.append(b)
    addresses = {b.data_ptr() for b in blocks}
    del blocks
    return addresses


def test_reused_blocks_are_rewritten_in_full():
    """Kernels writing into blocks that held NaN give the reference's numbers: no element is left over."""
    _alloc.empty_cache()
    torch.manual_seed(0)
    x = (torch.randn(T, N) * 2).requires_grad_()
    g = torch.randn(T, N)
    size = T * N * 4
    poisoned = _poison_cache([size] * 4)
    s, v, _ = multistep_neuron(x, 0.0, mode="lif", tau=2.0)
    (gx,) = torch.autograd.grad(s, x, g)
    assert s.data_ptr() in poisoned and gx.data_ptr() in poisoned
    xr = x.detach().requires_grad_()
    rs, rv, _ = reference.multistep_neuron(xr, torch.zeros(N), "lif", tau=2.0)
    (rgx,) = torch.autograd.grad(rs, xr, g)
    assert torch.equal(s, rs) and torch.allclose(gx, rgx, atol=1e-6)
    del s, gx
    poisoned = _poison_cache([size] * 4)
    w = torch.randn(T, T) * 0.3
    b = torch.randn(T)
    out = psn(x.detach(), w, b, surrogate.Sigmoid())
    assert torch.equal(out, reference.psn(x.detach(), w, b, surrogate.Sigmoid())) and out.data_ptr() in poisoned
    poisoned = _poison_cache([size] * 4)
    a = torch.rand(T, N)
    h = linear_scan(a, x.detach())
    assert torch.allclose(h, reference.linear_scan(a, x.detach()), atol=1e-5) and h.data_ptr() in poisoned
    assert not any(torch.isnan(t).any() for t in (out, h))


def test_limit_drops_the_least_recently_freed():
    C = _ext.get()
    _alloc.empty_cache()
    elems = (4 << 20) // 4 + 1  # 4 MiB + 4 bytes of float32: a 6 MiB block (2 MiB granules)
    block = 6 << 20
    try:
        C.set_cache_limit(2 * block + (1 << 20))  # room for two blocks
        a, b, c = (_alloc.empty((elems,)) for _ in range(3))
        addresses = [t.data_ptr() for t in (a, b, c)]
        del a, b
        assert C.cached_bytes() == 2 * block
        del c  # over the limit: the block of `a`, freed first, is returned to the system
        assert C.cached_bytes() == 2 * block
        d = _alloc.empty((elems,))  # the most recently freed block of its size: c's
        assert d.data_ptr() == addresses[2] and C.cached_bytes() == block
        e = _alloc.empty((elems,))
        assert e.data_ptr() == addresses[1] and C.cached_bytes() == 0
        big = _alloc.empty((3 * elems,))  # larger than the whole limit: freed, never cached
        del big
        assert C.cached_bytes() == 0
        del d, e
        assert C.cached_bytes() == 2 * block
    finally:
        C.set_cache_limit(_alloc._LIMIT)
        _alloc.empty_cache()


def test_tensors_are_ordinary_torch_tensors(tmp_path):
    t = _alloc.empty((T, N))
    t.copy_(torch.arange(T * N, dtype=torch.float32).view(T, N))
    path = tmp_path / "t.pt"
    torch.save(t, path)
    assert torch.equal(torch.load(path), t)
    assert t.numpy()[3, 5] == 3 * N + 5
    t.mul_(2)
    assert t.grad_fn is None and t[1, 0].item() == 2 * N
    with pytest.raises(RuntimeError):  # DLPack storages do not resize: say so rather than corrupt
        t.resize_(T * N + 1)


def test_frees_from_other_threads():
    errors = []

    def work():
        try:
            for _ in range(50):
                ts = [_alloc.empty((N + i * 1024,)) for i in range(1, 9)]
                for t in ts:
                    t[0] = 1.0
                del ts
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert _alloc.cached_bytes() <= _alloc._LIMIT
    _alloc.empty_cache()


def _python(code, **env):
    e = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)


def test_environment_variable_and_exit():
    off = _python("from fastspike.ops import _alloc; import torch; t = _alloc.empty((8, 1 << 20));"
                  "print(_alloc._CACHING, _alloc.cached_bytes(), type(t.untyped_storage()).__name__)",
                  FASTSPIKE_CPU_CACHE_MB="0")
    assert off.returncode == 0 and off.stdout.split()[:2] == ["False", "0"], off.stderr
    bad = _python("import fastspike", FASTSPIKE_CPU_CACHE_MB="lots")
    assert bad.returncode != 0 and "FASTSPIKE_CPU_CACHE_MB" in bad.stderr and "'lots'" in bad.stderr
    small = _python("from fastspike.ops import _alloc; print(_alloc._LIMIT)", FASTSPIKE_CPU_CACHE_MB="16")
    assert small.returncode == 0 and small.stdout.split() == [str(16 << 20)]
    # outputs still alive (and others cached) when the interpreter exits: their deleters run late, safely
    live = _python("import torch; from fastspike import neuron; n = neuron.LIFNode(step_mode='m');"
                   "keep = n(torch.randn(8, 1024, 256) * 2); n.reset(); n(torch.randn(8, 1024, 256)); print('ok')")
    assert live.returncode == 0 and live.stdout.strip() == "ok", live.stderr


def test_neuron_module_at_large_size_matches_reference():
    node = neuron.LIFNode(step_mode="m")
    x = torch.randn(T, 4, N // 4) * 2
    for _ in range(3):  # the second and third calls take the first one's freed blocks
        node.reset()
        s = node(x)
        assert torch.equal(s, reference.multistep_neuron(x, torch.zeros(4, N // 4), "lif", tau=2.0)[0])


def test_benchmark_peak_memory_counts_cached_outputs():
    """The benchmark's CPU peak memory is read from torch's profiler, which does not see DLPack memory: it runs
    the call with the cache switched off, so that a fastspike output counts as much as anyone's."""
    from fastspike.bench.core import peak_memory

    x = torch.randn(T, N)
    peak = peak_memory(lambda: multistep_neuron(x, 0.0), "cpu")
    assert peak is not None and peak >= T * N * 4
    assert _alloc._CACHING  # switched back on afterwards
    with _alloc.cache_disabled():
        assert _alloc.empty((T, N)).untyped_storage().nbytes() == T * N * 4 and not _alloc._CACHING
