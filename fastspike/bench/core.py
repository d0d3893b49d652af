"""Timing, peak-memory and agreement machinery shared by every benchmark case.

A case's ``setup`` returns a list of :class:`Impl` (one per implementation: fastspike, fastspike's kernels
alone, each peer framework, the memory-traffic floor). :func:`measure_table` then

1. calls every runnable implementation once and checks its outputs against the expected ones (a peer that
   computes something else is marked ``mismatch`` and is not timed);
2. warms each one up and picks how many calls go into one timing sample (so that a sample lasts at least
   ``min_sample_s``; very fast calls are averaged over several back-to-back calls);
3. takes ``repeat`` samples round-robin over the implementations (sample r of every implementation runs
   before sample r+1 of any), so that noise from other processes on a shared machine hits all of them alike;
4. measures each implementation's peak memory in one extra, untimed call.

Timing: ``time.perf_counter`` around the calls on the CPU; on CUDA, CUDA events around the calls with
``torch.cuda.synchronize`` before and after. Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` minus
the allocation before the call; on the CPU the allocation events that torch's profiler records for its CPU
allocator (``profile_memory=True``), summed in time order; the peak of that running sum is the most memory
the call held at once beyond what was allocated before it. Memory that bypasses torch's allocator (plain
``malloc`` inside an extension, Python objects) is not counted; every implementation measured here keeps
its arrays in torch tensors.
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
import sys
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

__all__ = ["Impl", "Row", "Table", "Settings", "compare_outputs", "check_impls", "measure_table", "copy_bandwidth",
           "peak_memory", "sync", "floor_impl"]

KINDS = ("fastspike", "kernel", "peer", "floor", "published")


@dataclass
class Impl:
    """One implementation of a case, ready to call.

    ``fn()`` performs one timed unit of work (e.g. forward + backward) and returns a dict of named output
    tensors. ``canon`` maps that dict to the canonical form compared with ``expect`` (e.g. undoing a peer's
    input scaling); it runs only on the checked call, never inside the timing. ``expect`` returns the
    outputs this implementation must agree with (default: the outputs of the case's 'fastspike' row).
    ``tol`` maps an output name to its tolerance: spikes (exactly 0/1) by the fraction of elements that
    differ, everything else by relative RMS error.
    """
    name: str
    fn: Optional[Callable[[], Optional[Dict[str, torch.Tensor]]]] = None
    kind: str = "peer"
    canon: Optional[Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]] = None
    expect: Optional[Callable[[], Dict[str, torch.Tensor]]] = None
    tol: Dict[str, float] = field(default_factory=dict)
    bytes_moved: Optional[int] = None
    note: str = ""
    status: str = "ok"  # ok | skipped | mismatch | error | n/a | published
    reason: str = ""
    published_ms: Optional[float] = None  # for kind == 'published'
    check: bool = True  # compare outputs before timing (floor rows do not)

    def __post_init__(self):
        assert self.kind in KINDS, self.kind


@dataclass
class Row:
    impl: str
    kind: str
    status: str
    reason: str = ""
    note: str = ""
    times_ms: List[float] = field(default_factory=list)
    median_ms: Optional[float] = None
    min_ms: Optional[float] = None
    max_ms: Optional[float] = None
    calls_per_sample: int = 0
    ratio: Optional[float] = None  # median / fastspike median (> 1: slower than fastspike)
    peak_mem_bytes: Optional[int] = None
    bytes_moved: Optional[int] = None
    bandwidth_gbs: Optional[float] = None
    bandwidth_fraction: Optional[float] = None  # of the device-to-device copy bandwidth (CUDA)
    agreement: Dict[str, float] = field(default_factory=dict)


@dataclass
class Table:
    case: str
    family: str
    mode: str  # 'train' (forward + backward) or 'infer' (forward only)
    label: str
    params: Dict[str, Any]
    x_axis: Optional[str] = None
    rows: List[Row] = field(default_factory=list)
    note: str = ""
    error: str = ""


@dataclass
class Settings:
    device: str = "cpu"
    warmup: int = 2
    repeat: int = 7
    # A sample of a fast call is many back-to-back calls: the first call after another framework's run was
    # measured 5-7x slower than the next ones on a 2-core VM (a 25 us kernel took 180 us; cold caches and
    # predictors), so 2 ms samples of 3 calls timed mostly that first call.
    min_sample_s: float = 20e-3
    max_impl_s: float = 12.0  # soft cap on the timed seconds spent on one implementation of one table
    memory: bool = True
    copy_bw_gbs: Optional[float] = None  # CUDA: device-to-device copy bandwidth measured in this run


def floor_impl(x: torch.Tensor, copies: int, what: str, name: str = "floor (memcpy)") -> Impl:
    """The memory-traffic floor: ``copies`` preallocated ``dst.copy_(src)`` of a tensor shaped like ``x``.

    On the CPU every copy has its own source and destination (a caches-sized tensor copied twice would be
    faster than memory); on CUDA one pair is reused (GPU-sized tensors are far larger than the L2 cache, and
    distinct pairs would cost gigabytes)."""
    distinct = x.device.type != "cuda"
    n_pairs = copies if distinct else 1
    pairs = [(torch.empty_like(x).copy_(x), torch.empty_like(x)) for _ in range(n_pairs)]
    seq = pairs if distinct else pairs * copies

    def fn():
        for src, dst in seq:
            dst.copy_(src)
        return None
    return Impl(name, fn, kind="floor", check=False, note=what,
                bytes_moved=copies * 2 * x.numel() * x.element_size())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------ agreement
def compare_outputs(expected: Dict[str, torch.Tensor], got: Dict[str, torch.Tensor],
                    tol: Dict[str, float]) -> tuple[Optional[str], Dict[str, float]]:
    """Compare two output dicts. Returns (None or a one-line mismatch description, per-output errors).

    Names starting with 'spike' are compared as the fraction of elements that differ (default tolerance 1e-3:
    a membrane potential within rounding of the threshold may flip a spike in another framework's
    arithmetic); every other output by relative RMS error ||a-b|| / ||a|| (default 2e-2), NaN failing.
    """
    errors: Dict[str, float] = {}
    problems = []
    for name, ref in expected.items():
        if name not in got:
            problems.append(f"{name}: missing")
            continue
        # computed where the tensors are, in their own precision (no float64 copies of GPU-sized outputs)
        a = ref.detach().reshape(-1)
        b = got[name].detach().reshape(-1).to(a.device)
        if a.numel() != b.numel():
            problems.append(f"{name}: {b.numel()} elements, expected {a.numel()}")
            continue
        finite = bool(torch.isfinite(b).all())
        if name.startswith("spike"):
            err = float((a != b).sum()) / max(a.numel(), 1) if finite else float("nan")
            lim = tol.get(name, 1e-3)
            what = f"{err:.2%} of spikes differ"
        else:
            a32, b32 = a.float(), b.float()
            den = float(torch.linalg.vector_norm(a32)) or 1.0
            err = float(torch.linalg.vector_norm(a32 - b32)) / den if finite else float("nan")
            lim = tol.get(name, 2e-2)
            what = f"relative RMS error {err:.2e}"
        errors[name] = err
        if not (err <= lim):  # NaN fails
            problems.append(f"{name}: {what} (limit {lim:g})")
    return ("; ".join(problems) or None), errors


# ------------------------------------------------------------------------------------------------ memory
def peak_memory(fn: Callable[[], Any], device: str) -> Optional[int]:
    """Peak bytes allocated during one call of ``fn`` beyond what was allocated before it (None if unknown)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        del out
        return int(max(peak, 0))
    return _cpu_peak_memory(fn)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop chatter on file descriptor 2 (it bypasses sys.stderr)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cpu_peak_memory(fn: Callable[[], Any]) -> Optional[int]:
    try:
        import torch._C._profiler as _P
        from torch.profiler import ProfilerActivity, profile
    except ImportError:  # pragma: no cover
        return None
    alloc_type = getattr(_P, "_ExtraFields_Allocation", None)
    if alloc_type is None:  # pragma: no cover - torch without the event tree
        return None
    from ..ops import _alloc
    # fastspike's large CPU outputs come from its block cache through DLPack, which torch's allocator (and so the
    # profiler) never sees: in this call they come from torch.empty, so that they are counted like everyone's
    with _quiet_stderr(), _alloc.cache_disabled(), profile(activities=[ProfilerActivity.CPU],
                                                           profile_memory=True) as prof:
        out = fn()
        del out
    try:
        roots = prof.profiler.kineto_results.experimental_event_tree()
    except Exception:  # pragma: no cover
        return None
    events = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        extra = node.extra_fields
        if isinstance(extra, alloc_type) and extra.device.type == "cpu":
            events.append((node.start_time_ns, int(extra.alloc_size)))
        stack.extend(node.children)
    events.sort(key=lambda e: e[0])
    cur = peak = 0
    for _, size in events:
        cur += size
        peak = max(peak, cur)
    return peak


# ---------------------------------------------------------------------------------------------- allocator
MALLOC_CHOICES = ("keep", "system")


def keep_freed_memory() -> bool:
    """Ask the C library's malloc to keep freed memory for reuse instead of handing it back to the kernel: no
    mmap for large blocks (``M_MMAP_MAX`` 0) and no heap trimming (``M_TRIM_THRESHOLD`` 2 GiB), as a caching
    allocator (jemalloc, tcmalloc) would. Returns whether it took effect (glibc only; elsewhere nothing changes).

    Why the benchmark does this by default: with glibc's defaults every block of 32 MiB or more is a fresh mmap,
    and smaller ones are fresh whenever a large free has trimmed the heap, so an op's output page-faults on first
    write. On the VMs measured here that costs about 1 us per 4 KiB page, 16 ms for a 64 MiB output: the same
    `linear_scan` forward+backward took 2.2x the time of three preallocated copies in a fresh process and 0.63x
    with this setting. The cost falls on every implementation that allocates its outputs (all of them; the
    memcpy floor preallocates), so it is taken out of the comparison; ``--malloc system`` leaves it in. It
    affects the whole process and is never undone."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
    return bool(mallopt(M_MMAP_MAX, 0)) & bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))


# ------------------------------------------------------------------------------------------------ timing
def _timed(fn: Callable[[], Any], n: int, device: str) -> float:
    """Seconds per call, averaged over n back-to-back calls."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / n
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def copy_bandwidth(device: str, nbytes: int = 1 << 30, repeat: int = 10) -> float:
    """Device-to-device copy bandwidth in GB/s (bytes read + bytes written per second), median of repeats."""
    n = nbytes // 4
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = [_timed(lambda: dst.copy_(src), 1, device) for _ in range(repeat)]
    return 2 * n * 4 / statistics.median(times) / 1e9


def check_impls(impls: Sequence[Impl], device: str,
                progress: Optional[Callable[[str], None]] = None) -> tuple[Dict[str, Row], List[Impl]]:
    """Step 1 of :func:`measure_table`: one call of every runnable implementation and the agreement check.

    fastspike's row runs first and keeps its outputs; every other implementation is called, compared and its
    outputs dropped before the next one runs (GPU-sized outputs are gigabytes each).
    Returns (a Row per implementation, with status set; the implementations that may be timed, in order).
    """
    rows: Dict[str, Row] = {}
    ok: Dict[str, Impl] = {}

    def tick(msg: str):
        if progress is not None:
            progress(msg)

    def first_call(impl: Impl, row: Row):
        try:
            out = impl.fn()
            sync(device)
        except Exception as e:  # an implementation that fails is reported, the run goes on
            row.status, row.reason = "error", f"{type(e).__name__}: {e}".splitlines()[0][:300]
            tick(impl.name)
            return False, None
        if out is not None:
            out = {k: v.detach() for k, v in out.items()}
            out = impl.canon(out) if impl.canon is not None else out
        return True, out

    for impl in impls:
        row = Row(impl=impl.name, kind=impl.kind, status=impl.status, reason=impl.reason, note=impl.note,
                  bytes_moved=impl.bytes_moved)
        rows[impl.name] = row
        if impl.kind == "published":
            row.status = "published"
            row.median_ms = impl.published_ms
        elif impl.status != "ok" or impl.fn is None:
            tick(impl.name)

    fast = next((i for i in impls if i.kind == "fastspike" and i.status == "ok" and i.fn is not None), None)
    fast_out = None
    if fast is not None:
        good, fast_out = first_call(fast, rows[fast.name])
        if good:
            ok[fast.name] = fast
    for impl in impls:
        row = rows[impl.name]
        if impl is fast or impl.kind == "published" or impl.status != "ok" or impl.fn is None:
            continue
        good, out = first_call(impl, row)
        if not good:
            continue
        if impl.check and impl.kind != "floor":
            try:
                if impl.expect is not None:
                    exp = {k: v.detach() for k, v in impl.expect().items()}
                else:
                    exp = fast_out
                if exp is not None:
                    mismatch, errs = compare_outputs(exp, out or {}, impl.tol)
                    row.agreement = errs
                    if mismatch:
                        row.status, row.reason = "mismatch", mismatch
                        tick(impl.name)
                        continue
            except Exception as e:
                row.status, row.reason = "error", f"agreement check failed: {type(e).__name__}: {e}"[:300]
                tick(impl.name)
                continue
            finally:
                exp = out = None
        ok[impl.name] = impl
    fast_out = None
    return rows, [i for i in impls if i.name in ok]


def measure_table(table: Table, impls: Sequence[Impl], settings: Settings,
                  progress: Optional[Callable[[str], None]] = None) -> Table:
    """Check, time and measure every implementation of one table; fills ``table.rows``."""
    device = settings.device

    def tick(msg: str):
        if progress is not None:
            progress(msg)

    rows, checked = check_impls(impls, device, progress)
    fast = next((i for i in checked if i.kind == "fastspike"), None)

    # 2. warm-up and calibration
    calls: Dict[str, int] = {}
    repeats: Dict[str, int] = {}
    for impl in list(checked):
        row = rows[impl.name]
        try:
            est = math.inf
            for _ in range(max(settings.warmup - 1, 0)):
                est = min(est, _timed(impl.fn, 1, device))
            if not math.isfinite(est):
                est = _timed(impl.fn, 1, device)
        except Exception as e:
            row.status, row.reason = "error", f"{type(e).__name__}: {e}".splitlines()[0][:300]
            checked.remove(impl)
            continue
        n = max(1, int(math.ceil(settings.min_sample_s / max(est, 1e-9))))
        calls[impl.name] = n
        # keep the table bounded: an implementation that is very slow gets fewer samples (at least 3)
        affordable = int(settings.max_impl_s / max(est * n, 1e-9))
        repeats[impl.name] = max(min(settings.repeat, affordable), min(3, settings.repeat))

    # 3. round-robin samples
    samples: Dict[str, List[float]] = {i.name: [] for i in checked}
    for r in range(max(repeats.values(), default=0)):
        for impl in checked:
            if r >= repeats[impl.name] or rows[impl.name].status != "ok":
                continue
            try:
                samples[impl.name].append(_timed(impl.fn, calls[impl.name], device))
            except Exception as e:
                rows[impl.name].status = "error"
                rows[impl.name].reason = f"{type(e).__name__}: {e}".splitlines()[0][:300]

    # 4. peak memory (untimed) and summary
    for impl in checked:
        row = rows[impl.name]
        if row.status != "ok":
            tick(impl.name)
            continue
        ts = samples[impl.name]
        row.times_ms = [t * 1e3 for t in ts]
        row.median_ms = statistics.median(row.times_ms)
        row.min_ms, row.max_ms = min(row.times_ms), max(row.times_ms)
        row.calls_per_sample = calls[impl.name]
        if settings.memory:
            try:
                row.peak_mem_bytes = peak_memory(impl.fn, device)
            except Exception:
                row.peak_mem_bytes = None
        if impl.bytes_moved:
            row.bandwidth_gbs = impl.bytes_moved / (row.median_ms / 1e3) / 1e9
            if settings.copy_bw_gbs:
                row.bandwidth_fraction = row.bandwidth_gbs / settings.copy_bw_gbs
        tick(impl.name)

    ref = rows.get(fast.name) if fast is not None else None
    if ref is not None and ref.median_ms:
        for row in rows.values():
            if row.median_ms and row.status in ("ok",):
                row.ratio = row.median_ms / ref.median_ms
    table.rows = [rows[i.name] for i in impls]
    return table
