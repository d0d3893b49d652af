"""Prophesee EVT ``.raw`` files: EVT 2.0, EVT 2.1 and EVT 3.0 decoders and writers.

Every file starts with ``%`` header lines; ``% evt 2.0|2.1|3.0`` or ``% format EVT2|EVT21|EVT3;...`` names
the encoding (matched exactly: ``EVT21`` is EVT 2.1, never EVT 2.0), and ``width=/height=``,
``% geometry WxH`` or the camera plugin name (gen3 640x480, gen41/IMX636 1280x720, GenX320 320x320) names
the sensor.  Words that come before the first TIME_HIGH word have no known time and are dropped (as
Prophesee's decoders do).

* EVT 2.0: 32-bit LE words, type in bits 31..28 (0 CD_OFF, 1 CD_ON, 8 TIME_HIGH, others skipped);
  CD words hold t[5:0] (27..22), x (21..11), y (10..0); TIME_HIGH holds t[33:6] (27..0).
* EVT 2.1 (Prophesee's public specification): 64-bit words. The half that holds the type (bits 63..60
  of the word) carries t[5:0], x_base and y like EVT 2.0; the other half is a 32-bit validity mask, and
  bit k set means an event at ``(x_base + k, y)`` (ascending k).  TIME_HIGH holds t[33:6].  Byte order:
  by default the whole word is little-endian (mask first); ``endianness=legacy`` in the header (IMX636,
  two little-endian 32-bit halves, type half first) or ``layout='legacy'`` swaps the halves.
* EVT 3.0: 16-bit stateful words, vectorised with forward fills; time is
  ``(wraps << 24) | (TIME_HIGH << 12) | TIME_LOW`` per the specification.

TIME_HIGH wraps (2**34 µs for EVT 2.x, 2**24 µs for EVT 3.0) are counted as decreases of TIME_HIGH.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np

from ._common import (Decoded, EventFileError, check_body, columns, header_text, make_events,
                      sensor_from_header, skip_lines)

#: header spellings of each EVT version -> format name
_VERSIONS = {"2.0": "evt2", "2": "evt2", "evt2": "evt2", "evt2.0": "evt2", "2.1": "evt21", "evt21": "evt21",
             "evt2.1": "evt21", "3.0": "evt3", "3": "evt3", "evt3": "evt3", "evt3.0": "evt3"}


def evt_version(text: str) -> Optional[str]:
    """'evt2' / 'evt21' / 'evt3' from a ``%`` header, None when it names no EVT encoding; an EVT
    version that is named but unknown raises EventFileError from the caller (see detect_format)."""
    low = text.lower()
    m = re.search(r"^%\s*evt\s+([0-9.]+)\s*$", low, re.M) or re.search(r"^%\s*format\s+(evt[0-9.]*)\b", low, re.M)
    if not m:
        return None
    return _VERSIONS.get(m.group(1), "unknown:" + m.group(1))


def _body(path, data: bytes, word: int):
    start = skip_lines(data, b"%")
    check_body(path, len(data) - start, start, word, f"EVT body ({word}-byte words)")
    return start, header_text(data, start)


def _high(is_th: np.ndarray, th_val: np.ndarray, bits: int):
    """Per word: index of the last TIME_HIGH at or before it (-1 before the first) and the unwrapped
    TIME_HIGH values (a decrease counts one wrap of ``bits`` bits)."""
    wraps = np.concatenate([[0], np.cumsum(np.diff(th_val) < 0)]) if th_val.size else th_val
    return np.cumsum(is_th) - 1, (wraps.astype(np.int64) << bits) | th_val


def decode_evt2(path, data: bytes) -> Decoded:
    start, header = _body(path, data, 4)
    w = np.frombuffer(data, dtype="<u4", offset=start)
    typ = w >> 28
    is_th = typ == 8
    k, high = _high(is_th, (w[is_th] & 0x0FFFFFFF).astype(np.int64), 28)
    ev_idx = np.nonzero((typ <= 1) & (k >= 0))[0]
    we = w[ev_idx]
    t = (high[k[ev_idx]] << 6) | ((we >> 22) & 0x3F)
    ev = make_events(t, (we >> 11) & 0x7FF, we & 0x7FF, typ[ev_idx])
    return Decoded(ev, lambda i: start + ev_idx[i] * 4, sensor_from_header(header))


def decode_evt21(path, data: bytes, layout: Optional[str] = None) -> Decoded:
    start, header = _body(path, data, 8)
    if layout is None:
        layout = "legacy" if re.search(r"endianness\s*=\s*legacy", header, re.I) else "standard"
    if layout not in ("standard", "legacy"):
        raise ValueError(f"layout must be 'standard' or 'legacy' for EVT 2.1, got {layout!r}")
    pair = np.frombuffer(data, dtype="<u4", offset=start).reshape(-1, 2)
    head, mask = (pair[:, 0], pair[:, 1]) if layout == "legacy" else (pair[:, 1], pair[:, 0])
    typ = head >> 28
    is_th = typ == 8
    k, high = _high(is_th, (head[is_th] & 0x0FFFFFFF).astype(np.int64), 28)
    cd = np.nonzero((typ <= 1) & (k >= 0))[0]
    hc = head[cd]
    bits = np.unpackbits(np.ascontiguousarray(mask[cd]).astype("<u4").view(np.uint8).reshape(-1, 4),
                         axis=1, bitorder="little")
    r, b = np.nonzero(bits)  # row-major: words in order, ascending bit inside each word
    w_idx = cd[r]
    t = (high[k[w_idx]] << 6) | ((hc[r] >> 22) & 0x3F)
    x = ((hc[r] >> 11) & 0x7FF).astype(np.int64) + b
    ev = make_events(t, x, hc[r] & 0x7FF, typ[w_idx])
    return Decoded(ev, lambda i: start + w_idx[i] * 8, sensor_from_header(header))


def _ffill_index(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the last True at or before it (-1 when none)."""
    idx = np.where(mask, np.arange(mask.shape[0], dtype=np.int64), -1)
    return np.maximum.accumulate(idx) if idx.size else idx


def decode_evt3(path, data: bytes) -> Decoded:
    start, header = _body(path, data, 2)
    w = np.frombuffer(data, dtype="<u2", offset=start).astype(np.int64)
    n = w.shape[0]
    typ = w >> 12
    low = w & 0x7FF
    is_th = typ == 8
    k, high_v = _high(is_th, w[is_th] & 0xFFF, 12)
    high = np.where(k >= 0, high_v[np.maximum(k, 0)] if high_v.size else 0, 0)
    tl_idx = _ffill_index(typ == 6)
    tlow = np.where(tl_idx >= 0, w[np.maximum(tl_idx, 0)] & 0xFFF, 0)
    t_all = (high << 12) | tlow
    y_idx = _ffill_index(typ == 0)
    y_all = np.where(y_idx >= 0, low[np.maximum(y_idx, 0)], 0)
    # vector base (3): base x and polarity, advanced by 12 / 8 after each VECT_12 / VECT_8
    inc = np.where(typ == 4, 12, 0) + np.where(typ == 5, 8, 0)
    cum_inc = np.cumsum(inc) - inc  # increments before each word
    b_idx = _ffill_index(typ == 3)
    bsafe = np.maximum(b_idx, 0)
    base_x = np.where(b_idx >= 0, low[bsafe] + cum_inc - cum_inc[bsafe], 0) if n else low
    base_p = np.where(b_idx >= 0, (w[bsafe] >> 11) & 1, 0) if n else low
    timed = k >= 0  # words before the first TIME_HIGH have no known time
    sx = np.nonzero((typ == 2) & timed)[0]
    vpos = np.nonzero(((typ == 4) | (typ == 5)) & timed)[0]
    nbits = np.where(typ[vpos] == 4, 12, 8)
    bits = ((w[vpos, None] >> np.arange(12)) & 1).astype(bool)
    bits &= np.arange(12)[None, :] < nbits[:, None]
    cnt = np.zeros(n, dtype=np.int64)
    cnt[sx] = 1
    cnt[vpos] = bits.sum(1)
    first = np.cumsum(cnt) - cnt  # output position of each word's first event
    total = int(cnt.sum())
    t, x, y, p, word = (np.empty(total, np.int64) for _ in range(5))
    o = first[sx]
    t[o], x[o], y[o], p[o], word[o] = t_all[sx], low[sx], y_all[sx], (w[sx] >> 11) & 1, sx
    r, b = np.nonzero(bits)
    rank = (np.cumsum(bits, axis=1) - 1)[r, b]
    vw = vpos[r]
    o = first[vw] + rank
    t[o], x[o], y[o], p[o], word[o] = t_all[vw], base_x[vw] + b, y_all[vw], base_p[vw], vw
    return Decoded(make_events(t, x, y, p), lambda i: start + word[i] * 2, sensor_from_header(header))


# ------------------------------------------------------------------------------------------- writers
def _head(version: bytes, sensor_size, extra: bytes = b"") -> bytes:
    geo = b"" if sensor_size is None else b"%% geometry %dx%d\n" % (int(sensor_size[0]), int(sensor_size[1]))
    return b"% Date 2024-01-01 00:00:00\n% evt " + version + b"\n" + extra + geo + b"% plugin_name fastspike_writer\n"


def _time_high_positions(t: np.ndarray, shift: int):
    th = t >> shift
    new = np.ones(t.size, bool)
    new[1:] = th[1:] != th[:-1]
    return th, new


def write_evt2(path, ev, sensor_size=None) -> None:
    """Prophesee EVT 2.0: a TIME_HIGH word whenever t >> 6 changes, then CD words."""
    t, x, y, p = columns(ev)
    th, new = _time_high_positions(t, 6)
    cd = (p << 28) | ((t & 0x3F) << 22) | (x << 11) | y
    words = np.empty(t.size + int(new.sum()), np.uint32)
    pos = np.arange(t.size) + np.cumsum(new)  # CD word position
    words[pos] = cd
    words[pos[new] - 1] = (8 << 28) | (th[new] & 0x0FFFFFFF)
    with open(path, "wb") as f:
        f.write(_head(b"2.0", sensor_size) + words.astype("<u4").tobytes())


def write_evt21(path, ev, layout: str = "standard", sensor_size=None) -> None:
    """Prophesee EVT 2.1: consecutive events with the same time, polarity, row and 32-pixel block and
    increasing x share one vector word; a TIME_HIGH word precedes each change of t >> 6."""
    if layout not in ("standard", "legacy"):
        raise ValueError(f"layout must be 'standard' or 'legacy', got {layout!r}")
    t, x, y, p = columns(ev)
    n = t.size
    xb = x & ~31
    new = np.ones(n, bool)
    new[1:] = ((t[1:] != t[:-1]) | (p[1:] != p[:-1]) | (y[1:] != y[:-1]) | (xb[1:] != xb[:-1])
               | (x[1:] <= x[:-1]))
    starts = np.nonzero(new)[0]
    mask = np.bitwise_or.reduceat(np.left_shift(np.ones(n, np.uint64), (x & 31).astype(np.uint64)), starts) \
        if n else np.zeros(0, np.uint64)
    gt, gx, gy, gp = t[starts], xb[starts], y[starts], p[starts]
    th, th_new = _time_high_positions(gt, 6)
    head = np.empty(starts.size + int(th_new.sum()), np.uint64)
    low = np.zeros_like(head)
    pos = np.arange(starts.size) + np.cumsum(th_new)
    head[pos] = (gp << 28) | ((gt & 0x3F) << 22) | (gx << 11) | gy
    low[pos] = mask
    head[pos[th_new] - 1] = (8 << 28) | (th[th_new] & 0x0FFFFFFF)
    low[pos[th_new] - 1] = 0
    pair = np.stack([head, low] if layout == "legacy" else [low, head], axis=1).astype("<u4")
    extra = b"% format EVT21" + (b";endianness=legacy" if layout == "legacy" else b"") + b"\n"
    with open(path, "wb") as f:
        f.write(_head(b"2.1", sensor_size, extra) + pair.tobytes())


def write_evt3(path, ev, sensor_size=None) -> None:
    """Prophesee EVT 3.0 (a simple but valid stream: TIME_HIGH/TIME_LOW/ADDR_Y words when they
    change, then one ADDR_X per event; runs of >= 3 events on one row at one time use
    VECT_BASE_X + VECT_12/VECT_8 words so the vector path is exercised)."""
    t, x, y, p = columns(ev)
    out = []
    cur_th = cur_tl = cur_y = None
    i, n = 0, t.size
    while i < n:
        th, tl = (int(t[i]) >> 12) & 0xFFF, int(t[i]) & 0xFFF
        if th != cur_th:
            out.append(0x8000 | th)
            cur_th, cur_tl = th, None
        if tl != cur_tl:
            out.append(0x6000 | tl)
            cur_tl = tl
        if int(y[i]) != cur_y:
            out.append(int(y[i]))
            cur_y = int(y[i])
        j = i  # a run of consecutive x on the same row/time/polarity -> vector words
        while (j + 1 < n and t[j + 1] == t[i] and y[j + 1] == y[i] and p[j + 1] == p[i]
               and x[j + 1] == x[j] + 1 and j + 1 - i < 20):
            j += 1
        if j - i + 1 >= 3:
            out.append(0x3000 | (int(p[i]) << 11) | int(x[i]))
            k = j - i + 1
            while k > 0:
                take = min(k, 12) if k > 8 else k
                out.append((0x4000 if k > 8 else 0x5000) | ((1 << take) - 1))
                k -= take
            i = j + 1
        else:
            out.append(0x2000 | (int(p[i]) << 11) | int(x[i]))
            i += 1
    with open(path, "wb") as f:
        f.write(_head(b"3.0", sensor_size) + np.asarray(out, "<u2").tobytes())


def unsupported(path, name: str):
    raise EventFileError(path, 0, f"unsupported Prophesee EVT encoding {name!r} (EVT 2.0, 2.1 and 3.0 are "
                                  "supported)")
