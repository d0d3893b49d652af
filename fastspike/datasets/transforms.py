"""Event transforms for structured event arrays (fastspike's or tonic's layout).

Each transform is a small callable class (usable in ``transform=`` of every dataset and composable
with ``torchvision.transforms.Compose`` or :class:`Compose`).  They never modify their input in
place; random transforms draw from their own ``numpy.random.Generator`` (``seed=``).  They accept
structured arrays and the dicts of columns the dataset classes return (SpikingJelly's items), and
return the same kind.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .frames import to_frames


def _dict_aware(call):
    """Let ``call(self, structured_array)`` take and return a dict of equally long columns too."""
    import functools

    @functools.wraps(call)
    def wrapper(self, ev):
        if not isinstance(ev, dict):
            return call(self, ev)
        names = list(ev)
        arr = np.empty(len(ev[names[0]]), [(k, np.asarray(ev[k]).dtype) for k in names])
        for k in names:
            arr[k] = ev[k]
        out = call(self, arr)
        return {k: out[k] for k in names}
    return wrapper

__all__ = ["Compose", "TimeCrop", "RandomTimeCrop", "TimeJitter", "SpatialDownsample", "RandomFlip",
           "Denoise", "ToFrames", "denoise"]


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for tr in self.transforms:
            x = tr(x)
        return x


class TimeCrop:
    """Keep events with ``t_start <= t < t_end`` (either bound may be None); with ``relative=True``
    the bounds are measured from the first event's time."""

    def __init__(self, t_start: Optional[int] = None, t_end: Optional[int] = None, relative: bool = False):
        self.t_start, self.t_end, self.relative = t_start, t_end, relative

    @_dict_aware
    def __call__(self, ev):
        t = ev["t"]
        off = int(t.min()) if (self.relative and t.size) else 0
        keep = np.ones(t.shape[0], bool)
        if self.t_start is not None:
            keep &= t >= self.t_start + off
        if self.t_end is not None:
            keep &= t < self.t_end + off
        return ev[keep]


class RandomTimeCrop:
    """Keep a random window of length ``window`` (whole recording when it is shorter)."""

    def __init__(self, window: int, seed=None):
        self.window = int(window)
        self.rng = np.random.default_rng(seed)

    @_dict_aware
    def __call__(self, ev):
        if ev.size == 0:
            return ev.copy()
        t0, t1 = int(ev["t"].min()), int(ev["t"].max())
        span = t1 - t0 + 1 - self.window
        start = t0 + (int(self.rng.integers(0, span + 1)) if span > 0 else 0)
        return ev[(ev["t"] >= start) & (ev["t"] < start + self.window)]


class TimeJitter:
    """Add Gaussian noise of standard deviation ``std`` to every timestamp (rounded to integers for
    integer time fields), optionally dropping negative times and re-sorting by time."""

    def __init__(self, std: float, clip_negative: bool = True, sort: bool = True, seed=None):
        self.std, self.clip_negative, self.sort = float(std), clip_negative, sort
        self.rng = np.random.default_rng(seed)

    @_dict_aware
    def __call__(self, ev):
        out = ev.copy()
        noise = self.rng.normal(0.0, self.std, size=ev.shape[0])
        if np.issubdtype(out["t"].dtype, np.integer):
            noise = np.rint(noise).astype(np.int64)
        out["t"] = out["t"] + noise
        if self.clip_negative:
            out = out[out["t"] >= 0]
        if self.sort:
            out = out[np.argsort(out["t"], kind="stable")]
        return out


class SpatialDownsample:
    """Divide x and y by integer ``factor`` (floor): a W x H recording becomes ceil(W/f) x ceil(H/f)."""

    def __init__(self, factor: int):
        if int(factor) < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.factor = int(factor)

    @_dict_aware
    def __call__(self, ev):
        out = ev.copy()
        out["x"] = ev["x"] // self.factor
        if "y" in ev.dtype.names:
            out["y"] = ev["y"] // self.factor
        return out


class RandomFlip:
    """Mirror x (``x -> W-1-x``) with probability ``p_lr`` and y with probability ``p_ud``;
    ``sensor_size = (W, H[, P])``."""

    def __init__(self, sensor_size: Sequence[int], p_lr: float = 0.5, p_ud: float = 0.0, seed=None):
        self.W, self.H = int(sensor_size[0]), int(sensor_size[1])
        self.p_lr, self.p_ud = p_lr, p_ud
        self.rng = np.random.default_rng(seed)

    @_dict_aware
    def __call__(self, ev):
        out = ev.copy()
        if self.rng.random() < self.p_lr:
            out["x"] = self.W - 1 - ev["x"]
        if self.rng.random() < self.p_ud:
            out["y"] = self.H - 1 - ev["y"]
        return out


def denoise(ev, filter_time: int):
    """Drop every event whose four direct neighbour pixels (left, right, up, down) had no earlier event
    (earlier in the stream) within ``filter_time``: event i is kept when some earlier event j at a
    neighbouring pixel has ``t_j + filter_time > t_i``.

    Vectorised (sort by pixel, then one binary search per neighbour direction).  This is tonic's
    ``Denoise`` rule except for tonic's start-up quirk: tonic initialises its per-pixel memory to
    ``filter_time`` as if every pixel had fired at time 0, so it keeps isolated events with
    ``t < filter_time``; here they are dropped.
    """
    n = ev.shape[0]
    if n == 0:
        return ev.copy()
    x = ev["x"].astype(np.int64) + 1  # pad by one pixel so neighbours never wrap across an edge
    y = ev["y"].astype(np.int64) + 1
    t = ev["t"].astype(np.int64)
    Hp = int(y.max()) + 2
    pix = x * Hp + y
    order = np.argsort(pix, kind="stable")  # grouped by pixel, stream order inside each pixel
    key = pix[order] * n + order
    idx = np.arange(n, dtype=np.int64)
    keep = np.zeros(n, bool)
    for d in (-Hp, Hp, -1, 1):
        q = pix + d
        pos = np.searchsorted(key, q * n + idx, side="left") - 1
        ok = pos >= 0
        prev = order[np.maximum(pos, 0)]
        ok &= pix[prev] == q
        ok &= t[prev] + filter_time > t
        keep |= ok
    return ev[keep]


class Denoise:
    """Transform wrapper of :func:`denoise`."""

    def __init__(self, filter_time: int = 10000):
        self.filter_time = int(filter_time)

    @_dict_aware
    def __call__(self, ev):
        return denoise(ev, self.filter_time)


class ToFrames:
    """Integrate events into frames with :func:`fastspike.datasets.frames.to_frames`; accepts tonic's
    ``sensor_size = (W, H, P)`` and tonic-style structured arrays."""

    def __init__(self, sensor_size, frames_number=None, split_by="number", duration=None, dtype=np.float32):
        self.sensor_size, self.frames_number = sensor_size, frames_number
        self.split_by, self.duration, self.dtype = split_by, duration, dtype

    def __call__(self, ev):
        return to_frames(ev, self.sensor_size, self.frames_number, self.split_by, self.duration, self.dtype)
