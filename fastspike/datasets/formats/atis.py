"""ATIS 40-bit ``.bin`` files (N-MNIST, N-Caltech101; slayerPytorch's ``.bs2``): decoder and writer.

The format has no header: 5 bytes per event, ``x`` (byte 0), ``y`` (byte 1), polarity (bit 7 of byte
2) and a 23-bit µs timestamp (bits 6..0 of byte 2, bytes 3 and 4).  An event with ``y == 240`` marks a
timestamp overflow and adds 2**13 µs to every later event (Orchard's event-Python, tonic).  No sensor
size is stored, so the dataset (N-MNIST 34x34, N-Caltech101 at most 240x180) or ``sensor_size=``
supplies it.
"""
from __future__ import annotations

import numpy as np

from ._common import Decoded, check_body, columns, make_events


def decode_atis_bin(path, data: bytes) -> Decoded:
    check_body(path, len(data), 0, 5, "ATIS .bin")
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 5)
    x = raw[:, 0]
    y = raw[:, 1]
    p = raw[:, 2] >> 7
    t = ((raw[:, 2].astype(np.int64) & 0x7F) << 16) | (raw[:, 3].astype(np.int64) << 8) | raw[:, 4]
    overflow = y == 240
    idx = np.arange(raw.shape[0], dtype=np.int64)
    if overflow.any():  # each overflow marker adds 2**13 µs to every later event
        t = t + (np.cumsum(overflow, dtype=np.int64) << 13)
        keep = ~overflow
        x, y, p, t, idx = x[keep], y[keep], p[keep], t[keep], idx[keep]
    return Decoded(make_events(t, x, y, p), lambda i: idx[i] * 5, None)


def write_atis_bin(path, ev) -> None:
    """N-MNIST layout (timestamps must fit 23 bits; no overflow markers are written)."""
    t, x, y, p = columns(ev)
    if t.size and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("ATIS .bin timestamps must lie in [0, 2**23)")
    raw = np.empty((t.size, 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    with open(path, "wb") as f:
        f.write(raw.tobytes())
