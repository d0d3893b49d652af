"""The per-machine crossover store: the spike density at or below which ``event_driven='auto'`` takes the
event-driven path on the CPU.

Stored in ``$FASTSPIKE_CACHE_DIR/synapse_crossover.json`` (default ``~/.cache/fastspike``, or
``$XDG_CACHE_HOME/fastspike``), keyed by CPU model and thread count (``cpu:<model>:threads=<n>``) or GPU name
(``cuda:<name>``), one value per op and mode (``linear``, ``conv2d`` for inference; ``linear_train``,
``conv2d_train`` when the weight gradient will be computed too). Written atomically (temporary file +
os.replace); a missing or corrupt file gives the built-in ``DEFAULT_CROSSOVER``. The benchmark package measures
and stores it (``fastspike.bench.cases.synapse.calibrate``).
"""
from __future__ import annotations

import functools
import json
import os
import platform
import tempfile
from typing import Union

import torch

__all__ = ["DEFAULT_CROSSOVER", "MODES", "crossover", "save_crossover", "calibration_path", "machine_key", "store_key"]

# CPU: bench/bench_synapse.py on a shared 2-thread AMD EPYC (AVX-512) measured crossovers near 0.45-0.6 for its
# Linear and Conv2d cases (event path 1.5-2x faster at 0.2); the defaults are kept lower because smaller layers
# favour the dense GEMM. Training ('train': forward + backward, where the dense input gradient is the same either
# way) has its own, lower crossover: 0.1 for both ops in training on that machine, against 0.2-0.4 forward-only.
# CUDA: 'auto' takes the dense path on CUDA without asking (measuring the density would cost a device-to-host
# synchronisation; on the H200 the dense path won everywhere but Linear inference at 1%, docs/synapses.md); the
# CUDA entries only serve what the store reports.
DEFAULT_CROSSOVER = {"cpu": {"linear": 0.2, "conv2d": 0.2, "linear_train": 0.1, "conv2d_train": 0.1},
                     "cuda": {"linear": 0.0, "conv2d": 0.0, "linear_train": 0.0, "conv2d_train": 0.0}}
MODES = ("infer", "train")
_store_cache: dict = {}


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


def store_key(fn: str, op: str, mode: str) -> str:
    """The store's key of ``op`` in ``mode`` (a ValueError naming ``fn`` for a bad op or mode)."""
    if op not in ("linear", "conv2d"):
        raise ValueError(f"{fn}: op must be 'linear' or 'conv2d', but got {op!r}.")
    if mode not in MODES:
        raise ValueError(f"{fn}: mode must be one of {MODES}, but got {mode!r}.")
    return op if mode == "infer" else f"{op}_train"


def crossover(op: str, device: Union[str, torch.device] = "cpu", mode: str = "infer") -> float:
    """The density at or below which 'auto' takes the event-driven path for ``op`` ('linear' or 'conv2d'):
    ``mode='infer'`` for a forward pass alone, ``'train'`` when the weight gradient will be computed too."""
    key = store_key("crossover", op, mode)
    device = torch.device(device)
    entry = _load_store(calibration_path()).get(machine_key(device), {})
    value = entry.get(key)
    if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:
        return float(value)
    return DEFAULT_CROSSOVER["cuda" if device.type == "cuda" else "cpu"][key]


def save_crossover(op: str, value: float, device: Union[str, torch.device] = "cpu", mode: str = "infer") -> str:
    """Store a calibrated crossover for this machine (atomic: temporary file + os.replace). Returns the path."""
    key_of_op = store_key("save_crossover", op, mode)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"save_crossover: value must be a density in [0, 1], but got {value!r}.")
    path = calibration_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = dict(_load_store(path))
    key = machine_key(device)
    entry = dict(data.get(key, {}))
    entry[key_of_op] = float(value)
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
