"""Event-driven synapses (spike-gather Linear and Conv2d) and bit-packed spike storage.

Public ops
----------
* ``synapse_linear(x, weight, bias=None, event_driven='auto', backend='auto')`` -- ``F.linear`` for spikes.
* ``synapse_conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, event_driven='auto',
  backend='auto')`` -- ``F.conv2d`` for spikes.
* ``pack_bits(x)`` / ``unpack_bits(bits, n)``: a binary tensor [*, n] <-> uint8 [*, ceil(n / 8)] (8 spikes a byte,
  bit j of byte b = element 8 b + j).
* ``spike_stats(x)``: (spike density, every value in {0, 1}); ``crossover(op, device)`` / ``calibrate(...)`` /
  ``save_crossover(...)``: the per-machine density below which the event-driven path is faster.

``event_driven``: True takes the event-driven path and raises ValueError for non-binary input; False takes
the dense path (torch's GEMM / convolution); 'auto' measures the density and takes the event-driven path when
the input is binary and at most as dense as the calibrated crossover, else the dense path. Whenever the input
is binary and a gradient is needed, both paths save the input for backward as bits (32x smaller than float32)
and unpack it inside the backward. Gradients: the input's is dense (torch's GEMM / transposed convolution of
the upstream gradient); the weight's is accumulated only over the active inputs (event path) or by the dense
GEMM on the unpacked spikes (dense path).

Backends: 'cpp' (csrc/synapse.cpp, CPU), 'triton' (kernels/synapse.py, CUDA; CPU only under
TRITON_INTERPRET=1), 'torch' (the references below: the test oracle and the float64 fallback).
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import tempfile
import threading
import time
import weakref
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .. import _ext
from . import _alloc, _backend, _saved

__all__ = [
    "synapse_linear",
    "synapse_conv2d",
    "pack_bits",
    "unpack_bits",
    "spike_stats",
    "crossover",
    "save_crossover",
    "calibrate",
    "calibration_path",
    "DEFAULT_CROSSOVER",
    "EVENT_DRIVEN_CHOICES",
]

EVENT_DRIVEN_CHOICES = ("auto", True, False)
_TILE = 64  # outputs per weight tile of the C++ linear kernel (csrc/synapse.cpp kTile)


# =============================================================================================== references
def ref_pack_bits(x: torch.Tensor) -> torch.Tensor:
    """[*, n] (nonzero = spike) -> uint8 [*, ceil(n / 8)], bit j of byte b = element 8 b + j."""
    n = x.shape[-1]
    nb = (n + 7) // 8
    nz = (x != 0).to(torch.uint8)
    if nb * 8 != n:
        nz = F.pad(nz, (0, nb * 8 - n))
    nz = nz.reshape(*x.shape[:-1], nb, 8)
    weights = (2 ** torch.arange(8, device=x.device, dtype=torch.int32)).to(torch.uint8)
    return (nz * weights).sum(-1, dtype=torch.int32).to(torch.uint8)


def ref_unpack_bits(bits: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [*, ceil(n / 8)] -> [*, n] of 0/1 in ``dtype``."""
    shifts = torch.arange(8, device=bits.device, dtype=torch.uint8)
    out = (bits.unsqueeze(-1) >> shifts) & 1
    return out.reshape(*bits.shape[:-1], bits.shape[-1] * 8)[..., :n].to(dtype)


def ref_is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def ref_linear_grad_weight(bits: torch.Tensor, g: torch.Tensor, K: int) -> torch.Tensor:
    x = ref_unpack_bits(bits, K, torch.float32 if g.dtype != torch.float64 else torch.float64)
    return g.to(x.dtype).t().mm(x)


def ref_conv2d_grad_weight(bits, x_shape, g, w_shape, stride, padding, dilation, groups):
    n = 1
    for s in x_shape:
        n *= s
    x = ref_unpack_bits(bits, n, torch.float32 if g.dtype != torch.float64 else torch.float64).reshape(x_shape)
    return torch.nn.grad.conv2d_weight(x, w_shape, g.to(x.dtype), stride, padding, dilation, groups)


# ====================================================================================== C++ launchers
def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).contiguous()


def _cpp_pack(x2: torch.Tensor) -> Tuple[torch.Tensor, bool]:
    C = _ext.get()
    x2 = _f32(x2)
    rows, cols = x2.shape
    bits = torch.empty((rows, (cols + 7) // 8), dtype=torch.uint8)
    ok = C.spike_pack(x2.data_ptr(), bits.data_ptr(), rows, cols, _backend.num_threads())
    return bits, bool(ok)


def _cpp_unpack(bits: torch.Tensor, cols: int) -> torch.Tensor:
    C = _ext.get()
    bits = bits.contiguous()
    rows = bits.shape[0]
    out = torch.empty((rows, cols), dtype=torch.float32)
    C.spike_unpack(bits.data_ptr(), out.data_ptr(), rows, cols, _backend.num_threads())
    return out


def _cpp_stats(x: torch.Tensor) -> Tuple[int, bool]:
    x = _f32(x)
    nnz, ok = _ext.get().spike_stats(x.data_ptr(), x.numel(), _backend.num_threads())
    return int(nnz), bool(ok)


# Tile-blocked W^T per weight version: WT[t][k][i] = W[64 t + i, k] (zero padded). Built once per weight
# version (an optimizer step bumps the version) and kept while the weight lives -- except for a weight that is
# being trained (grad mode, requires_grad): its copy would serve one step only and would hold an extra copy of
# every such weight through the backward (SEW ResNet-18 with event_driven='auto': 97 -> 140 MiB peak). For such a
# weight the C++ kernels take torch's layout and build the copy themselves, into scratch memory, once their
# compaction has accepted the input; the Triton launchers build it per call (``_cached(..., keep=False)``).
_wt_cache: dict = {}  # id(weight) -> (weakref to weight, {tag: (key, blocked copy)})
_wt_lock = threading.Lock()


def _weight_version(w: torch.Tensor):
    try:
        return w._version
    except Exception:  # inference tensors have no version counter: never cache them
        return None


def _drop(wid: int):
    def callback(_ref):
        with _wt_lock:
            _wt_cache.pop(wid, None)
    return callback


def _cached(w: torch.Tensor, tag: str, build, keep: bool = True):
    """``build(w)``, kept per weight version unless ``keep`` is False (a weight being trained)."""
    if not keep:
        return build(w)
    ver = _weight_version(w)
    key = (ver, w.data_ptr(), tuple(w.shape), tuple(w.stride()), w.dtype, w.device)
    if ver is not None:
        with _wt_lock:
            entry = _wt_cache.get(id(w))
            if entry is not None and entry[0]() is w:
                hit = entry[1].get(tag)
                if hit is not None and hit[0] == key:
                    return hit[1]
    out = build(w)
    if ver is not None:
        with _wt_lock:
            entry = _wt_cache.get(id(w))
            if entry is None or entry[0]() is not w:
                entry = (weakref.ref(w, _drop(id(w))), {})
                _wt_cache[id(w)] = entry
            entry[1][tag] = (key, out)
    return out


def _tile_rows(a: torch.Tensor) -> torch.Tensor:
    """[R, C] -> [ceil(C / 64)][R][64], zero padded: tile t holds columns 64 t .. 64 t + 63 of every row."""
    R, Cc = a.shape
    nt = (Cc + _TILE - 1) // _TILE
    a = _f32(a)
    if nt * _TILE != Cc:
        a = F.pad(a, (0, nt * _TILE - Cc))
    return a.reshape(R, nt, _TILE).transpose(0, 1).contiguous()


def _linear_wt(w: torch.Tensor) -> torch.Tensor:
    return _cached(w, "linear_cpp", lambda w: _tile_rows(w.detach().t()))


# status of the C++ event-driven forwards (csrc/synapse.cpp)
_NOT_BINARY, _DONE, _TOO_DENSE = 0, 1, 2


class _Output:
    """The output of a C++ event-driven forward, allocated when the kernel calls it (after its compaction found
    the input binary and sparse enough): the dense path, when it takes over, allocates its own."""

    __slots__ = ("shape", "tensor")

    def __init__(self, shape):
        self.shape, self.tensor = shape, None

    def __call__(self) -> int:
        self.tensor = _alloc.empty(self.shape)
        return self.tensor.data_ptr()


def _cpp_linear_forward(x2, w, b, want_bits, max_nnz: int = -1, keep_wt: bool = True):
    """(out or None, bits or None, status): the output only when status is _DONE; the bits (if wanted) unless
    the input is not binary. ``max_nnz`` >= 0: give up (_TOO_DENSE) past that many spikes. ``keep_wt``: cache
    the blocked weight copy (False for a weight being trained)."""
    C = _ext.get()
    x2 = _f32(x2)
    M, K = x2.shape
    N = w.shape[0]
    # a weight being trained: the kernel blocks it itself, into scratch memory, once the input is accepted
    wt = _linear_wt(w) if keep_wt else _f32(w.detach())
    b32 = _f32(b.detach()) if b is not None else None
    out = _Output((M, N))
    bits = torch.empty((M, (K + 7) // 8), dtype=torch.uint8) if want_bits else None
    status = C.synapse_linear_forward(x2.data_ptr(), wt.data_ptr(), b32.data_ptr() if b32 is not None else 0,
                                      out, bits.data_ptr() if want_bits else 0, M, K, N, int(max_nnz),
                                      not keep_wt, _backend.num_threads())
    return (out.tensor if status == _DONE else None), (bits if status != _NOT_BINARY else None), status


def _cpp_linear_grad_weight(bits, g, K):
    C = _ext.get()
    M, N = g.shape
    gt = _tile_rows(g)
    gw = torch.empty((N, K), dtype=torch.float32)
    C.synapse_linear_grad_weight(bits.contiguous().data_ptr(), gt.data_ptr(), gw.data_ptr(), M, K, N,
                                 _backend.num_threads())
    return gw


def _conv_wt(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[Cout, Cin/G, KH, KW] -> [Cin][KH][KW][Cout/G]: the contiguous output row of each input channel and tap."""
    def build(w):
        Cout, cing, KH, KW = w.shape
        return _f32(w.detach()).reshape(groups, Cout // groups, cing, KH, KW).permute(0, 2, 3, 4, 1).contiguous()
    return _cached(w, f"conv_cpp_g{groups}", build)


def _conv_out_hw(H, W, KH, KW, s, p, d):
    return (H + 2 * p[0] - d[0] * (KH - 1) - 1) // s[0] + 1, (W + 2 * p[1] - d[1] * (KW - 1) - 1) // s[1] + 1


def _cpp_conv2d_forward(x, w, b, s, p, d, groups, max_nnz: int = -1, keep_wt: bool = True):
    """(out or None, status), as _cpp_linear_forward."""
    C = _ext.get()
    x = _f32(x)
    B, Cin, H, W = x.shape
    Cout, _, KH, KW = w.shape
    OH, OW = _conv_out_hw(H, W, KH, KW, s, p, d)
    # a weight being trained changes every step: the kernel transposes it itself, into scratch memory, once its
    # compaction has found the input sparse enough (a dense or non-binary input costs no copy)
    wt = _conv_wt(w, groups) if keep_wt else _f32(w.detach())
    b32 = _f32(b.detach()) if b is not None else None
    out = _Output((B, Cout, OH, OW))
    status = C.synapse_conv2d_forward(x.data_ptr(), wt.data_ptr(), b32.data_ptr() if b32 is not None else 0,
                                      out, B, Cin, H, W, Cout, OH, OW, KH, KW, s[0], s[1], p[0], p[1],
                                      d[0], d[1], groups, int(max_nnz), not keep_wt, _backend.num_threads())
    return (out.tensor if status == _DONE else None), status


def _cpp_conv2d_grad_weight(data, x_shape, g, w_shape, s, p, d, groups, values: bool = False):
    """Weight gradient accumulated over x's nonzeros only: ``data`` holds x as packed bits (spikes) or, with
    ``values``, as one uint8 per element (spike counts)."""
    C = _ext.get()
    B, Cin, H, W = x_shape
    Cout, cing, KH, KW = w_shape
    _, _, OH, OW = g.shape
    g32 = g.to(torch.float32).contiguous()  # NCHW: the kernel transposes it into its scratch memory
    gw = torch.empty((Cout, cing, KH, KW), dtype=torch.float32)
    data = data.contiguous()
    C.synapse_conv2d_grad_weight(data.data_ptr(), data.numel(), values, g32.data_ptr(), gw.data_ptr(), B, Cin,
                                 H, W, Cout, OH, OW, KH, KW, s[0], s[1], p[0], p[1], d[0], d[1], groups,
                                 _backend.num_threads())
    return gw


# ================================================================================ backend dispatch tables
def _kernels():
    from ..kernels import synapse as K  # lazy: triton is optional
    return K


def _pack(x2: torch.Tensor, backend: str) -> Tuple[torch.Tensor, bool]:
    """Pack a 2-D tensor; returns (bits, binary). bits is meaningless when binary is False."""
    if backend == "cpp":
        return _cpp_pack(x2)
    if backend == "triton":
        return _kernels().pack_bits(x2)
    return ref_pack_bits(x2), ref_is_binary(x2)


def _unpack(bits: torch.Tensor, cols: int, backend: str) -> torch.Tensor:
    if backend == "cpp":
        return _cpp_unpack(bits, cols)
    if backend == "triton":
        return _kernels().unpack_bits(bits, cols)
    return ref_unpack_bits(bits, cols)


def _stats(x: torch.Tensor, backend: str) -> Tuple[int, bool]:
    if backend == "cpp":
        return _cpp_stats(x)
    return int(torch.count_nonzero(x)), ref_is_binary(x)


# ============================================================================================ public: bits
def pack_bits(x: torch.Tensor, backend: Optional[str] = "auto") -> torch.Tensor:
    """Pack a binary tensor [*, n] into uint8 [*, ceil(n / 8)] (bit j of byte b = element 8 b + j).

    Raises ValueError when x holds a value other than 0 and 1 (the round trip would not be exact).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"pack_bits: x must be a torch.Tensor, but got {type(x).__name__}.")
    if x.dim() == 0:
        raise ValueError("pack_bits: x must have at least one dimension, but got a 0-d tensor.")
    if not (x.is_floating_point() or x.dtype == torch.bool):
        x = x.to(torch.float32)
    if x.dtype == torch.bool:
        x = x.to(torch.float32)
    lead, n = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, n)
    be = _backend.resolve(backend, [x2], "pack_bits")
    if x2.numel() == 0:
        return torch.zeros((*lead, (n + 7) // 8), dtype=torch.uint8, device=x.device)
    bits, ok = _pack(x2, be)
    if not ok:
        raise ValueError("pack_bits: x must be binary (every value 0 or 1), but it holds other values; "
                         "bit packing keeps only whether each element is nonzero.")
    return bits.reshape(*lead, bits.shape[-1])


def unpack_bits(bits: torch.Tensor, n: int, dtype: torch.dtype = torch.float32,
                backend: Optional[str] = "auto") -> torch.Tensor:
    """Inverse of :func:`pack_bits`: uint8 [*, ceil(n / 8)] -> [*, n] of 0/1 in ``dtype``."""
    if not isinstance(bits, torch.Tensor) or bits.dtype != torch.uint8:
        raise TypeError(f"unpack_bits: bits must be a torch.uint8 tensor, but got "
                        f"{getattr(bits, 'dtype', type(bits).__name__)}.")
    if bits.dim() == 0 or bits.shape[-1] != (n + 7) // 8:
        raise ValueError(f"unpack_bits: bits must have shape [*, ceil(n/8)] = [*, {(n + 7) // 8}] for n={n}, "
                         f"but got {tuple(bits.shape)}.")
    lead = bits.shape[:-1]
    b2 = bits.reshape(-1, bits.shape[-1])
    probe = torch.empty(0, dtype=torch.float32, device=bits.device)
    be = _backend.resolve(backend, [probe], "unpack_bits")
    if b2.numel() == 0:
        return torch.zeros((*lead, n), dtype=dtype, device=bits.device)
    return _unpack(b2, n, be).reshape(*lead, n).to(dtype)


def spike_stats(x: torch.Tensor, backend: Optional[str] = "auto") -> Tuple[float, bool]:
    """(fraction of nonzero elements, whether every value is 0 or 1), in one pass on the CPU."""
    if x.numel() == 0:
        return 0.0, True
    be = _backend.resolve(backend, [x], "spike_stats", cpp_dtypes=(torch.float32,))
    nnz, ok = _stats(x, be)
    return nnz / x.numel(), ok


# ===================================================================================== crossover store
# Density (fraction of active inputs) at or below which the event-driven path is used by 'auto', when no
# calibration for this machine is stored. CPU: bench/bench_synapse.py on a shared 2-thread AMD EPYC (AVX-512)
# measured crossovers near 0.45-0.6 for its Linear and Conv2d cases (event path 1.5-2x faster at 0.2); the
# defaults are kept lower because smaller layers favour the dense GEMM. CUDA: a guess until measured on a GPU.
# Training ('train': forward + backward, where the dense input gradient is the same either way) has its own,
# lower crossover: the default suite measured 0.1 for both ops in training on that machine, against 0.2-0.4
# forward-only.
DEFAULT_CROSSOVER = {"cpu": {"linear": 0.2, "conv2d": 0.2, "linear_train": 0.1, "conv2d_train": 0.1},
                     "cuda": {"linear": 0.02, "conv2d": 0.02, "linear_train": 0.01, "conv2d_train": 0.01}}
_MODES = ("infer", "train")
_store_cache = {}


def calibration_path() -> str:
    """``$FASTSPIKE_CACHE_DIR/synapse_crossover.json`` (default ``~/.cache/fastspike``, or $XDG_CACHE_HOME)."""
    root = os.environ.get("FASTSPIKE_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "fastspike")
    return os.path.join(root, "synapse_crossover.json")


def machine_key(device: Union[str, torch.device] = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{_cpu_model()}:threads={torch.get_num_threads()}"


@functools.lru_cache(maxsize=None)
def _cpu_model() -> str:
    """The CPU's model name (read once: 'auto' asks for the crossover on every call)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return cpu


def _load_store(path: str) -> dict:
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return {}
    hit = _store_cache.get(path)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}  # a corrupt or unreadable store falls back to the built-in defaults
    _store_cache[path] = (mtime, data)
    return data


def _store_key(fn: str, op: str, mode: str) -> str:
    if op not in ("linear", "conv2d"):
        raise ValueError(f"{fn}: op must be 'linear' or 'conv2d', but got {op!r}.")
    if mode not in _MODES:
        raise ValueError(f"{fn}: mode must be one of {_MODES}, but got {mode!r}.")
    return op if mode == "infer" else f"{op}_train"


def crossover(op: str, device: Union[str, torch.device] = "cpu", mode: str = "infer") -> float:
    """The density at or below which 'auto' takes the event-driven path for ``op`` ('linear' or 'conv2d'):
    ``mode='infer'`` for a forward pass alone, ``'train'`` when the weight gradient will be computed too."""
    key = _store_key("crossover", op, mode)
    device = torch.device(device)
    entry = _load_store(calibration_path()).get(machine_key(device), {})
    value = entry.get(key)
    if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:
        return float(value)
    return DEFAULT_CROSSOVER["cuda" if device.type == "cuda" else "cpu"][key]


def save_crossover(op: str, value: float, device: Union[str, torch.device] = "cpu", mode: str = "infer") -> str:
    """Store a calibrated crossover for this machine (atomic: temporary file + os.replace). Returns the path."""
    store_key = _store_key("save_crossover", op, mode)
    if not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"save_crossover: value must be a density in [0, 1], but got {value!r}.")
    path = calibration_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = dict(_load_store(path))
    key = machine_key(device)
    entry = dict(data.get(key, {}))
    entry[store_key] = float(value)
    data[key] = entry
    fd, tmp = tempfile.mkstemp(prefix=".synapse_crossover.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _store_cache.pop(path, None)
    return path


def _time(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def calibrate(op: str, device: Union[str, torch.device] = "cpu", shape: Optional[dict] = None,
              densities=(0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5), reps: int = 3,
              save: bool = True, mode: str = "infer") -> Tuple[float, list]:
    """Time the event-driven and the dense path at each density (``mode='infer'``: forward only; ``'train'``:
    forward + backward with weight and input gradients); the crossover is the largest density below which
    the event path won at every measured point. Returns (crossover, [(density, t_event, t_dense)]) and stores
    the crossover for this machine and mode when ``save``."""
    _store_key("calibrate", op, mode)
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    train = mode == "train"
    rows = []
    with torch.set_grad_enabled(train):
        if op == "linear":
            s = {"M": 256, "K": 2048, "N": 2048, **(shape or {})}
            w = torch.randn(s["N"], s["K"], device=device, requires_grad=train)
            make = lambda d: (torch.rand(s["M"], s["K"], device=device) < d).float()  # noqa: E731
            fwd = lambda x, e: synapse_linear(x, w, None, event_driven=e)  # noqa: E731
        elif op == "conv2d":
            s = {"B": 8, "C": 128, "H": 32, "W": 32, **(shape or {})}
            w = torch.randn(s["C"], s["C"], 3, 3, device=device, requires_grad=train)
            make = lambda d: (torch.rand(s["B"], s["C"], s["H"], s["W"], device=device) < d).float()  # noqa: E731
            fwd = lambda x, e: synapse_conv2d(x, w, None, padding=1, event_driven=e)  # noqa: E731

        def run(x, e):
            if not train:
                return fwd(x, e)
            xg = x.requires_grad_(True)
            out = fwd(xg, e)
            return torch.autograd.grad(out, (xg, w), torch.ones_like(out))
        cross = 0.0
        winning = True
        for d in densities:
            x = make(d)
            te = _time(lambda: (run(x, True), sync()), reps)
            td = _time(lambda: (run(x, False), sync()), reps)
            rows.append((d, te, td))
            if winning and te < td:
                cross = d
            else:
                winning = False
    if save:
        save_crossover(op, cross, device, mode)
    return cross, rows


# ==================================================================================== autograd Functions
def _save_dense_input(x: torch.Tensor, backend: str):
    """What the dense path keeps of its input for the weight gradient: (x, None), or, on the CPU, when the
    input holds spikes or spike counts, (its bits or bytes, how to restore them) (ops/_saved.py)."""
    if backend == "cpp":
        packed = _saved.compact(x.detach(), min_numel=1)
        if not isinstance(packed, torch.Tensor):
            kind, payload, shape, nnz, dtype = packed
            return payload, (kind, shape, nnz, dtype)  # the payload goes through save_for_backward
    return x, None


def _dense_input(saved: torch.Tensor, how) -> torch.Tensor:
    return saved if how is None else _saved.restore((how[0], saved) + tuple(how[1:]))


# The dense path takes the event-driven weight gradient (accumulated over the nonzeros of its compactly saved
# input only) up to this spike density. Its time grows with the number of nonzeros, the GEMM's does not:
# measured on the 2-core Xeon VM at 3.4% density (T*B = 32, 3x3 convolutions), 2.0 ms against 6.0 ms
# (64 channels, 16x16), 0.9 against 6.0 (256, 4x4), 1.5 against 7.6 (512, 2x2); the two meet between 10%
# and 20% density.
_EVENT_WEIGHT_GRAD_MAX_DENSITY = 0.1


# Output maps of at most this many positions take the weight gradient as one GEMM of the unfolded input
# (MKL): oneDNN's weight-gradient kernel is slow on tiny maps. Measured on the 2-core Xeon VM (T*B = 32):
# 512->512 3x3 on 2x2 maps 13.3 ms (oneDNN) against 6.5 ms; 256->512 stride 2, 4x4 -> 2x2, 6.4 against 4.5;
# 256->256 on 4x4 maps 4.4 against 8.5 (oneDNN better from 16 positions up).
_GEMM_WEIGHT_GRAD_MAX_POSITIONS = 4


def _dense_conv2d_grad_weight(x, w_shape, g, s, p, d, groups):
    B, Cout, OH, OW = g.shape
    if groups != 1 or OH * OW > _GEMM_WEIGHT_GRAD_MAX_POSITIONS or g.device.type != "cpu":
        return torch.nn.grad.conv2d_weight(x, w_shape, g, s, p, d, groups)
    KH, KW = w_shape[2], w_shape[3]
    cols = F.unfold(x, (KH, KW), dilation=d, padding=p, stride=s)  # [B, Cin*KH*KW, OH*OW]
    L = cols.shape[-1]
    cols = cols.transpose(1, 2).reshape(B * L, -1)
    g2 = g.reshape(B, Cout, L).transpose(1, 2).reshape(B * L, Cout)
    return (g2.t() @ cols).view(w_shape)


def _conv2d_grad_input(g, x_shape, w, s, p, d, groups):
    """The input gradient (dense): oneDNN's, or, on the CPU, for strided convolutions that are 1x1 or have at
    most 4 output positions, one GEMM W^T g over the whole batch folded onto the input (F.fold). oneDNN's
    backward-data kernel is slow there. Measured on the 2-core Xeon VM (T*B = 32): 256->512 3x3 stride 2
    (4x4 -> 2x2) 4.07 ms against 2.21; 1x1 stride 2, 256->512 on 4x4 0.48 against 0.34; but 128->256 3x3
    stride 2 on 8x8 1.35 against 2.52 and 512->512 stride 1 on 2x2 2.25 against 4.57 (kept on oneDNN)."""
    B, Cout, OH, OW = g.shape
    KH, KW = w.shape[2], w.shape[3]
    if (groups != 1 or g.device.type != "cpu" or max(s) == 1
            or not (KH * KW == 1 or OH * OW <= _GEMM_WEIGHT_GRAD_MAX_POSITIONS)):
        shape_only = torch.empty(x_shape, dtype=g.dtype, device=g.device)  # its values are not read
        return torch.ops.aten.convolution_backward(g, shape_only, w, None, list(s), list(p), list(d), False,
                                                   [0, 0], groups, [True, False, False])[0]
    L = OH * OW
    g2 = g.reshape(B, Cout, L).transpose(0, 1).reshape(Cout, B * L)
    cols = torch.mm(w.reshape(Cout, -1).t(), g2).view(-1, B, L).transpose(0, 1)  # [B, Cin*KH*KW, L]
    if KH * KW == 1 and max(p) == 0:  # each input position gets at most one value: a strided copy (4x fold's speed)
        gx = g.new_zeros(x_shape)
        gx[:, :, ::s[0], ::s[1]] = cols.reshape(B, -1, OH, OW)
        return gx
    return F.fold(cols, tuple(x_shape[2:]), (KH, KW), dilation=d, padding=p, stride=s)


_NOT_BINARY_MSG = ("{}: event_driven=True needs binary spikes (every value 0 or 1), but x holds other values; "
                   "use event_driven=False or 'auto' for real-valued input.")


def _max_nnz(event, numel: int) -> int:
    """The C++ forward's spike limit: none for event_driven=True, the crossover density for 'auto' (``event``
    is then that density)."""
    return -1 if event is True else int(event * numel)


class _SynapseLinearFn(torch.autograd.Function):
    """x2 [M, K] -> x2 @ W^T + b. ``event``: False (torch's GEMM), True (the spike-gather kernel; x must be
    binary) or, for 'auto' on the C++ backend, the crossover density: the kernel then counts the spikes while
    it compacts them and hands over to the GEMM past that density or for non-binary x (one pass in all).
    Saves x as bits when it is binary, else compactly (ops/_saved.py) or as it is."""

    @staticmethod
    def forward(ctx, x2, weight, bias, event, binary: bool, backend: str):
        need_grad_w = ctx.needs_input_grad[1]
        bits = out = None
        if event is not False and backend == "cpp":
            out, bits, status = _cpp_linear_forward(x2, weight, bias, want_bits=need_grad_w,
                                                    max_nnz=_max_nnz(event, x2.numel()), keep_wt=not need_grad_w)
            if status == _NOT_BINARY and event is True:
                raise ValueError(_NOT_BINARY_MSG.format("synapse_linear"))
            event, binary = status == _DONE, status != _NOT_BINARY
        elif event and backend == "triton":
            K_ = _kernels()
            out = K_.linear_forward(x2, weight, bias,
                                    wt=_cached(weight, "linear_triton", K_.linear_weight_t, not need_grad_w))
        if out is None:
            out = F.linear(x2, weight, bias) if x2.dtype == weight.dtype else F.linear(x2.to(weight.dtype), weight, bias)
        saved_x = None
        ctx.compact = None
        if need_grad_w and bits is None:
            if binary:
                bits, _ = _pack(x2, backend)
            else:
                saved_x, ctx.compact = _save_dense_input(x2, backend)
        ctx.binary = bits is not None
        ctx.event, ctx.backend, ctx.K = event, backend, x2.shape[1]
        ctx.x_dtype = x2.dtype
        ctx.save_for_backward(weight, bits if bits is not None else saved_x)
        return out.to(weight.dtype) if out.dtype != weight.dtype else out

    @staticmethod
    def backward(ctx, g):
        weight, saved = ctx.saved_tensors
        gx = gw = gb = None
        gf = g if g.dtype == torch.float64 else g.to(torch.float32)
        if ctx.needs_input_grad[0]:
            gx = gf.mm(weight.to(gf.dtype)).to(ctx.x_dtype)  # dense
        if ctx.needs_input_grad[1]:
            if not ctx.binary:
                gw = gf.t().mm(_dense_input(saved, ctx.compact).to(gf.dtype))
            elif ctx.event and ctx.backend == "cpp" and gf.dtype == torch.float32:
                gw = _cpp_linear_grad_weight(saved, gf.contiguous(), ctx.K)
            elif ctx.event and ctx.backend == "triton" and gf.dtype == torch.float32:
                gw = _kernels().linear_grad_weight(saved, gf.contiguous(), ctx.K)
            elif ctx.backend in ("cpp", "triton") and gf.dtype == torch.float32:
                gw = gf.t().mm(_unpack(saved, ctx.K, ctx.backend))
            else:
                gw = ref_linear_grad_weight(saved, gf, ctx.K)
            gw = gw.to(weight.dtype)
        if ctx.needs_input_grad[2]:
            gb = gf.sum(0).to(weight.dtype)
        return gx, gw, gb, None, None, None


class _SynapseConv2dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, event, binary: bool, backend: str):
        # ``event`` as in _SynapseLinearFn
        need_grad_w = ctx.needs_input_grad[1]
        out = None
        if event is not False and backend == "cpp":
            out, status = _cpp_conv2d_forward(x, weight, bias, stride, padding, dilation, groups,
                                              max_nnz=_max_nnz(event, x.numel()), keep_wt=not need_grad_w)
            if status == _NOT_BINARY and event is True:
                raise ValueError(_NOT_BINARY_MSG.format("synapse_conv2d"))
            # past max_nnz the kernel stops before it has seen every value: binary only when it finished
            event = binary = status == _DONE
        elif event and backend == "triton":
            K_ = _kernels()
            wt = _cached(weight, f"conv_triton_g{groups}", lambda w: K_.conv2d_weight_t(w, groups), not need_grad_w)
            out = K_.conv2d_forward(x, weight, bias, stride, padding, dilation, groups, wt=wt)
        if out is None:
            out = F.conv2d(x.to(weight.dtype), weight, bias, stride, padding, dilation, groups)
        bits = saved_x = None
        ctx.compact = None
        if need_grad_w:
            if binary:
                bits, _ = _pack(x.reshape(1, -1), backend)
            else:
                saved_x, ctx.compact = _save_dense_input(x, backend)
        ctx.binary = bits is not None
        ctx.conf = (stride, padding, dilation, groups)
        ctx.event, ctx.backend = event, backend
        ctx.x_shape, ctx.x_dtype = tuple(x.shape), x.dtype
        ctx.save_for_backward(weight, bits if bits is not None else saved_x)
        return out.to(weight.dtype) if out.dtype != weight.dtype else out

    @staticmethod
    def backward(ctx, g):
        weight, saved = ctx.saved_tensors
        s, p, d, groups = ctx.conf
        gx = gw = gb = None
        gf = g if g.dtype == torch.float64 else g.to(torch.float32)
        wf = weight.to(gf.dtype)
        if ctx.needs_input_grad[0]:  # dense
            gx = _conv2d_grad_input(gf, ctx.x_shape, wf, s, p, d, groups).to(ctx.x_dtype)
        if ctx.needs_input_grad[1]:
            how = ctx.compact
            if not ctx.binary and how is not None and gf.dtype == torch.float32 and (
                    how[2] <= _EVENT_WEIGHT_GRAD_MAX_DENSITY * math.prod(how[1])):
                gw = _cpp_conv2d_grad_weight(saved, ctx.x_shape, gf, weight.shape, s, p, d, groups,
                                             values=how[0] == _saved.BYTES)
            elif not ctx.binary:
                gw = _dense_conv2d_grad_weight(_dense_input(saved, how).to(gf.dtype), weight.shape, gf,
                                               s, p, d, groups)
            elif ctx.event and ctx.backend == "cpp" and gf.dtype == torch.float32:
                gw = _cpp_conv2d_grad_weight(saved, ctx.x_shape, gf, weight.shape, s, p, d, groups)
            elif ctx.event and ctx.backend == "triton" and gf.dtype == torch.float32:
                gw = _kernels().conv2d_grad_weight(saved, ctx.x_shape, gf.contiguous(), weight.shape, s, p, d, groups)
            elif ctx.backend in ("cpp", "triton") and gf.dtype == torch.float32:
                n = 1
                for v in ctx.x_shape:
                    n *= v
                xs = _unpack(saved, n, ctx.backend).reshape(ctx.x_shape)
                gw = torch.nn.grad.conv2d_weight(xs, weight.shape, gf, s, p, d, groups)
            else:
                gw = ref_conv2d_grad_weight(saved, ctx.x_shape, gf, weight.shape, s, p, d, groups)
            gw = gw.to(weight.dtype)
        if ctx.needs_input_grad[2]:
            gb = gf.sum((0, 2, 3)).to(weight.dtype)
        return gx, gw, gb, None, None, None, None, None, None, None


# ============================================================================================ public ops
def _check_event_driven(name: str, event_driven) -> None:
    if not (event_driven is True or event_driven is False or event_driven == "auto"):
        raise ValueError(f"{name}: event_driven must be 'auto', True or False, but got {event_driven!r}.")


def _choose(name: str, op: str, x: torch.Tensor, weight: torch.Tensor, event_driven, backend: str,
            supported: bool, why: str):
    """Decide (event path?, input binary?) for one call. 'binary' matters only when the input is saved for
    the weight gradient (then it is stored as bits)."""
    need_saved = torch.is_grad_enabled() and weight.requires_grad
    be_stats = "cpp" if backend == "cpp" and x.dtype == torch.float32 else "torch"
    if event_driven is False or not supported:
        if event_driven is True:
            raise ValueError(f"{name}: event_driven=True does not support {why}; use event_driven=False or 'auto'.")
        # the C++ backend's dense path finds out itself when it saves the input (bits or bytes, ops/_saved.py)
        return False, bool(need_saved and backend != "cpp" and _stats(x, be_stats)[1])
    if event_driven is True:
        if backend == "cpp":
            return True, True  # the C++ kernel checks binarity during its compaction pass
        if not _stats(x, be_stats)[1]:
            raise ValueError(f"{name}: event_driven=True needs binary spikes (every value 0 or 1), but x holds "
                             "other values; use event_driven=False or 'auto' for real-valued input.")
        return True, True
    mode = "train" if need_saved else "infer"
    if backend == "cpp" and x.dtype == torch.float32:
        # the kernel counts while it compacts and falls back to the dense path itself (no separate pass)
        return crossover(op, x.device, mode), False
    nnz, binary = _stats(x, be_stats)
    if not binary:
        return False, False
    return nnz / max(1, x.numel()) <= crossover(op, x.device, mode), True


def synapse_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                   event_driven: Union[str, bool] = "auto", backend: Optional[str] = "auto") -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for spike inputs x [*, K]; see the module docstring for ``event_driven``."""
    name = "synapse_linear"
    _check_event_driven(name, event_driven)
    for arg, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {arg} must be a torch.Tensor, but got {type(t).__name__}.")
    if bias is not None and not isinstance(bias, torch.Tensor):
        raise TypeError(f"{name}: bias must be a torch.Tensor or None, but got {type(bias).__name__}.")
    if weight.dim() != 2:
        raise ValueError(f"{name}: weight must be [out_features, in_features], but got shape {tuple(weight.shape)}.")
    if x.dim() < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"{name}: x must be [*, in_features={weight.shape[1]}], but got shape {tuple(x.shape)}.")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},), but got {tuple(bias.shape)}.")
    if x.device != weight.device:
        raise ValueError(f"{name}: x is on {x.device} but weight is on {weight.device}.")
    if not x.is_floating_point():
        x = x.to(weight.dtype)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    be = _backend.resolve(backend, [x2, weight], name)
    if x2.shape[0] == 0 or x2.shape[1] == 0:
        return F.linear(x, weight, bias)
    event, binary = _choose(name, "linear", x2, weight, event_driven, be, True, "")
    out = _SynapseLinearFn.apply(x2, weight, bias, event, binary, be)
    return out.reshape(*lead, weight.shape[0])


def _pair(name: str, arg: str, v) -> Tuple[int, int]:
    if isinstance(v, int):
        v = (v, v)
    if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v)):
        raise ValueError(f"{name}: {arg} must be an int or a pair of ints, but got {v!r}.")
    return int(v[0]), int(v[1])


def synapse_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, stride=1,
                   padding=0, dilation=1, groups: int = 1, event_driven: Union[str, bool] = "auto",
                   backend: Optional[str] = "auto") -> torch.Tensor:
    """``F.conv2d`` for spike inputs x [B, Cin, H, W] (or [Cin, H, W]); see the module docstring."""
    name = "synapse_conv2d"
    _check_event_driven(name, event_driven)
    for arg, t in (("x", x), ("weight", weight)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: {arg} must be a torch.Tensor, but got {type(t).__name__}.")
    if weight.dim() != 4:
        raise ValueError(f"{name}: weight must be [Cout, Cin/groups, KH, KW], but got shape {tuple(weight.shape)}.")
    if not isinstance(groups, int) or groups < 1 or weight.shape[0] % groups:
        raise ValueError(f"{name}: groups must be a positive int dividing out_channels={weight.shape[0]}, "
                         f"but got {groups!r}.")
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"{name}: x must be [B, Cin={weight.shape[1] * groups}, H, W], but got shape "
                         f"{tuple(x.shape if not unbatched else x.shape[1:])}.")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{name}: bias must have shape ({weight.shape[0]},), but got {tuple(bias.shape)}.")
    if x.device != weight.device:
        raise ValueError(f"{name}: x is on {x.device} but weight is on {weight.device}.")
    if not x.is_floating_point():
        x = x.to(weight.dtype)
    s = _pair(name, "stride", stride)
    d = _pair(name, "dilation", dilation)
    supported, why = True, ""
    if isinstance(padding, str):
        supported, why = False, f"padding={padding!r} (give the padding as ints)"
        out = None
        if event_driven is True:
            raise ValueError(f"{name}: event_driven=True does not support {why}; use event_driven=False or 'auto'.")
        out = F.conv2d(x, weight, bias, s, padding, d, groups)
        return out.squeeze(0) if unbatched else out
    p = _pair(name, "padding", padding)
    if min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError(f"{name}: stride and dilation must be >= 1 and padding >= 0, but got stride={s}, "
                         f"padding={p}, dilation={d}.")
    be = _backend.resolve(backend, [x, weight], name)
    if x.numel() == 0:
        out = F.conv2d(x, weight, bias, s, p, d, groups)
        return out.squeeze(0) if unbatched else out
    event, binary = _choose(name, "conv2d", x, weight, event_driven, be, supported, why)
    out = _SynapseConv2dFn.apply(x, weight, bias, s, p, d, groups, event, binary, be)
    return out.squeeze(0) if unbatched else out
