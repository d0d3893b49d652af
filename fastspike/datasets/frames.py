"""Vectorised event-to-frame integration with SpikingJelly's split semantics.

Frames have shape ``[T, P, H, W]`` (P = 2 polarity channels: channel 1 holds events with p != 0),
or ``[T, W]`` for one-dimensional sensors such as SHD/SSC's 700 channels (``sensor_size=(700,)``).

Split semantics (identical to ``spikingjelly.datasets.utils`` for non-decreasing ``t``):

* ``split_by='number'``: ``di = N // T``; frame ``i`` holds events ``[i*di, (i+1)*di)``, the last frame
  also takes the remainder up to ``N``.  When ``T > N`` (``di == 0``) every event lands in the last
  frame (SpikingJelly does the same).
* ``split_by='time'``: ``dt = (t[-1] - t[0]) // T``; frame ``i`` holds events with
  ``t[0] + i*dt <= t < t[0] + (i+1)*dt``; the last frame also takes every later event.  Empty windows
  give empty frames (SpikingJelly raises IndexError there); ``dt == 0`` puts every event in the last
  frame.
* ``duration=d``: ``T = ceil((t_max - t_min) / d)`` (at least 1), frame ``i`` holds
  ``t_min + i*d <= t < t_min + (i+1)*d``, the last frame also takes events at exactly ``t_max``.

Two implementations give identical frames: a C++ kernel (csrc/events.cpp; one pass over the records,
OpenMP over frames; used for fastspike's EVENT_DTYPE arrays on 2-D sensors when the extension is built)
and numpy (one ``np.bincount`` over a linear (frame, polarity, y, x) index).  Neither loops over
events in Python.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

__all__ = ["to_frames", "frame_index", "split_indices", "pad_sequence_collate", "padded_sequence_mask"]


def _fields(events):
    """(t, x, y, p) arrays from a structured array (tonic or fastspike layout) or a dict."""
    if isinstance(events, np.ndarray) and events.dtype.names:
        names = events.dtype.names
        get = events.__getitem__
    elif isinstance(events, dict):
        names = tuple(events.keys())
        get = events.__getitem__
    else:
        raise TypeError("events must be a structured numpy array or a dict with fields t, x, (y,) p; "
                        f"got {type(events).__name__}")
    missing = [k for k in ("t", "x") if k not in names]
    if missing:
        raise TypeError(f"events lacks field(s) {missing}")
    t = np.asarray(get("t"))
    x = np.asarray(get("x"))
    y = np.asarray(get("y")) if "y" in names else None
    p = np.asarray(get("p")) if "p" in names else None
    return t, x, y, p


def split_indices(t: np.ndarray, split_by: str, frames_number: int):
    """Start/end event indices ``(j_l, j_r)`` of each frame, as SpikingJelly's
    ``cal_fixed_frames_number_segment_index`` (but empty time windows are allowed)."""
    T = int(frames_number)
    N = t.shape[0]
    if split_by == "number":
        di = N // T
        j_l = np.arange(T, dtype=np.int64) * di
        j_r = j_l + di
    elif split_by == "time":
        if N == 0:
            return np.zeros(T, np.int64), np.zeros(T, np.int64)
        t0 = int(t[0])
        dt = (int(t[-1]) - t0) // T
        edges = t0 + dt * np.arange(T + 1, dtype=np.int64)
        j_l = np.searchsorted(t, edges[:-1], side="left")
        j_r = np.searchsorted(t, edges[1:], side="left")
    else:
        raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")
    if T:
        j_r[-1] = N
    return j_l, j_r


def frame_index(t: np.ndarray, frames_number: Optional[int] = None, split_by: str = "number",
                duration: Optional[int] = None):
    """Per-event frame index and the number of frames (see the module docstring for the rules)."""
    N = t.shape[0]
    if duration is not None:
        duration = int(duration)
        if duration <= 0:
            raise ValueError(f"duration must be a positive integer, got {duration}")
        if N == 0:
            return np.zeros(0, np.int64), 0
        t0 = int(t.min())
        T = max(1, math.ceil((int(t.max()) - t0) / duration))
        fi = (t.astype(np.int64, copy=False) - t0) // duration
        np.minimum(fi, T - 1, out=fi)
        return fi, T
    T = int(frames_number)
    if split_by == "number":
        di = N // T
        if di == 0:
            return np.full(N, T - 1, np.int64), T
        fi = np.arange(N, dtype=np.int64) // di
    elif split_by == "time":
        if N == 0:
            return np.zeros(0, np.int64), T
        t0 = int(t[0])
        dt = (int(t[-1]) - t0) // T
        if dt <= 0:
            return np.full(N, T - 1, np.int64), T
        fi = (t.astype(np.int64, copy=False) - t0) // dt
        np.clip(fi, 0, T - 1, out=fi)  # clip only matters for t earlier than t[0] (unsorted input)
    else:
        raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")
    np.minimum(fi, T - 1, out=fi)
    return fi, T


def _check_axis(name, v, size):
    if v.size:
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or hi >= size:
            i = int(np.argmax((v < 0) | (v >= size)))
            raise ValueError(f"event {i} has {name}={int(v[i])}, outside [0, {size}) of sensor_size")


def _segments_sorted(t, frames_number, split_by, duration):
    """(j_l, j_r, T) assuming non-decreasing t: the contiguous event ranges of frame_index's rule."""
    N = t.shape[0]
    if duration is not None:
        if N == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
        t0 = int(t[0])
        T = max(1, math.ceil((int(t[-1]) - t0) / int(duration)))
        step = int(duration)
    else:
        T = int(frames_number)
        if split_by == "number":
            di = N // T
            if di == 0:
                j_l = np.zeros(T, np.int64)
                return j_l, np.where(np.arange(T) == T - 1, N, 0).astype(np.int64), T
            j_l = np.arange(T, dtype=np.int64) * di
            j_r = j_l + di
            j_r[-1] = N
            return j_l, j_r, T
        if N == 0:
            return np.zeros(T, np.int64), np.zeros(T, np.int64), T
        t0 = int(t[0])
        step = (int(t[-1]) - t0) // T
        if step <= 0:
            j_l = np.zeros(T, np.int64)
            return j_l, np.where(np.arange(T) == T - 1, N, 0).astype(np.int64), T
    b = np.searchsorted(t, t0 + step * np.arange(1, T, dtype=np.int64), side="left").astype(np.int64)
    return np.concatenate([[0], b]), np.concatenate([b, [N]]), T


def _to_frames_cpp(events, sensor_size, frames_number, split_by, duration):
    """C++ path (ops.events.cpu, csrc/events.cpp) for EVENT_DTYPE arrays on 2-D sensors; None when it cannot apply
    (unsorted times for a time-based split: the numpy path then handles them)."""
    from ..ops.events import cpu as events_cpu

    W, H = int(sensor_size[0]), int(sensor_size[1])
    P = int(sensor_size[2]) if len(sensor_size) == 3 else 2
    if P not in (1, 2):
        raise ValueError(f"the polarity count in sensor_size must be 1 or 2, got {P}")
    ev = events
    j_l, j_r, T = _segments_sorted(ev["t"], frames_number, split_by, duration)
    if np.any(j_l > j_r) or np.any(j_l[1:] != j_r[:-1]):  # searchsorted on unsorted times
        return None
    out = np.zeros((T, P, H, W), np.float32)
    time_split = split_by == "time" or duration is not None
    bad, unsorted = events_cpu.integrate(ev, j_l, j_r, out, time_split)
    if bad >= 0:
        e = ev[bad]
        name, v, size = ("x", int(e["x"]), W) if not 0 <= e["x"] < W else ("y", int(e["y"]), H)
        raise ValueError(f"event {bad} has {name}={v}, outside [0, {size}) of sensor_size")
    if unsorted and time_split:
        return None
    return out


def _backend_ok(events, sensor_size, backend):
    from ..ops.events import cpu as events_cpu
    from .formats import EVENT_DTYPE

    if backend == "numpy":
        return False
    ok = (isinstance(events, np.ndarray) and events.dtype == EVENT_DTYPE and events.ndim == 1
          and len(sensor_size) in (2, 3) and (events.shape[0] == 0 or events.strides[0] > 0)
          and events_cpu.available())
    if backend == "cpp" and not ok:
        raise ValueError("backend='cpp' needs the C++ extension, an EVENT_DTYPE array and a 2-D sensor_size")
    return ok


def to_frames(events, sensor_size: Sequence[int], frames_number: Optional[int] = None,
              split_by: str = "number", duration: Optional[int] = None,
              dtype=np.float32, backend: str = "auto") -> np.ndarray:
    """Integrate events into frames ``[T, P, H, W]`` (or ``[T, W]`` for ``sensor_size=(W,)``).

    Args:
        events: structured array with fields t, x, y, p (fastspike's or tonic's layout, any field
            order and integer/bool dtypes) or a dict of arrays (SpikingJelly's layout).
        sensor_size: ``(W, H)``, ``(W, H, P)`` (tonic's convention, P in {1, 2}) or ``(W,)``.
        frames_number / split_by: fixed T, split by 'number' of events or by 'time'.
        duration: fixed window length (same unit as t); T varies per recording.
        dtype: output dtype (counts are exact in float32 up to 2**24 events per pixel).
        backend: 'auto' (C++ kernel of csrc/events.cpp for EVENT_DTYPE arrays on 2-D sensors when the
            extension is built, else numpy), 'numpy' or 'cpp'.
    """
    if (frames_number is None) == (duration is None):
        raise ValueError("pass exactly one of frames_number and duration")
    if frames_number is not None and (int(frames_number) != frames_number or frames_number <= 0):
        raise ValueError(f"frames_number must be a positive integer, got {frames_number!r}")
    if frames_number is not None and split_by not in ("number", "time"):
        raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")
    if duration is not None and (int(duration) != duration or duration <= 0):
        raise ValueError(f"duration must be a positive integer, got {duration!r}")
    if backend not in ("auto", "numpy", "cpp"):
        raise ValueError(f"backend must be 'auto', 'numpy' or 'cpp', got {backend!r}")
    sensor_size = tuple(int(s) for s in sensor_size)
    if _backend_ok(events, sensor_size, backend):
        out = _to_frames_cpp(events, sensor_size, frames_number, split_by, duration)
        if out is not None:
            return out.astype(dtype, copy=False)
    t, x, y, p = _fields(events)
    if not (t.shape == x.shape and (y is None or y.shape == t.shape) and (p is None or p.shape == t.shape)):
        raise ValueError("event fields must all have the same length")
    fi, T = frame_index(t, frames_number, split_by, duration)
    if len(sensor_size) == 1:  # 1-D sensor (SHD/SSC channels): frames [T, W], polarity ignored
        W, = sensor_size
        _check_axis("x", x, W)
        lin = fi * W
        lin += x
        out = np.bincount(lin, minlength=T * W)
        return out.reshape(T, W).astype(dtype, copy=False)
    if len(sensor_size) not in (2, 3):
        raise ValueError(f"sensor_size must be (W,), (W, H) or (W, H, P), got {sensor_size}")
    W, H = sensor_size[:2]
    P = sensor_size[2] if len(sensor_size) == 3 else 2
    if P not in (1, 2):
        raise ValueError(f"the polarity count in sensor_size must be 1 or 2, got {P}")
    if y is None:
        raise TypeError("events lacks field 'y' for a 2-D sensor_size")
    _check_axis("x", x, W)
    _check_axis("y", y, H)
    # linear index ((fi * P + pch) * H + y) * W + x, built in place on the int64 frame index
    lin = fi
    if P == 2 and p is not None:
        lin *= 2
        lin += p.astype(bool)
    lin *= H
    lin += y
    lin *= W
    lin += x
    out = np.bincount(lin, minlength=T * P * H * W)
    return out.reshape(T, P, H, W).astype(dtype, copy=False)


def pad_sequence_collate(batch):
    """``collate_fn`` for variable-length frame samples: returns ``(x_padded [B, T_max, ...], y,
    x_len)``, zero-padded at the end (SpikingJelly's contract)."""
    xs, ys = zip(*batch)
    xs = [torch.as_tensor(x) for x in xs]
    return (torch.nn.utils.rnn.pad_sequence(xs, batch_first=True), torch.as_tensor(ys),
            torch.as_tensor([x.shape[0] for x in xs]))


def padded_sequence_mask(sequence_len: torch.Tensor, T: Optional[int] = None) -> torch.Tensor:
    """Boolean mask ``[T, B]``: True where time step ``t`` is inside sample ``b``'s real length."""
    if T is None:
        T = int(sequence_len.max().item())
    return torch.arange(T, device=sequence_len.device)[:, None] < sequence_len[None, :]
