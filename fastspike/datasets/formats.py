"""Decoders (and writers) for the event file formats of the neuromorphic datasets.

Every decoder returns a structured numpy array with the fields ``t, x, y, p`` (dtype
:data:`EVENT_DTYPE`), holding the values *as stored in the file*: no flip, no re-zeroing of time, no
polarity inversion.  Dataset classes apply each dataset's published conventions on top.

All decoders are vectorised numpy (the only Python loops run over AEDAT 3.1 packets and header
lines).  Malformed input raises :class:`EventFileError` naming the file and the byte offset.

The writers (``write_*``) produce files that follow each specification; they exist for round-trip
tests and for users who want to convert synthetic data.
"""
from __future__ import annotations

import os
import re
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "EVENT_DTYPE", "EventFileError", "FORMATS", "make_events", "detect_format", "read_events",
    "read_shd", "write_atis_bin", "write_aedat2", "write_aedat31", "write_dat", "write_evt2",
    "write_evt3", "write_shd", "write_asl_mat",
]

#: Field layout of every decoded recording (the fields tonic's transforms read, by name).
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])

FORMATS = ("atis_bin", "aedat2", "aedat31", "aedat4", "dat", "evt2", "evt3", "asl_mat", "shd_h5")


class EventFileError(ValueError):
    """A malformed event file. ``path`` and ``offset`` (byte offset, or None) say where."""

    def __init__(self, path, offset, message):
        self.path = str(path)
        self.offset = offset
        self.message = message
        where = f" at byte offset {offset}" if offset is not None else ""
        super().__init__(f"{self.path}{where}: {message}")

    def __reduce__(self):  # survives the trip back from a worker process
        return (type(self), (self.path, self.offset, self.message))


def make_events(t, x, y, p) -> np.ndarray:
    """Build an :data:`EVENT_DTYPE` array from four equally long sequences."""
    t = np.asarray(t)
    ev = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = x
    ev["y"] = y
    ev["p"] = p
    return ev


# ----------------------------------------------------------------------------------------- helpers
def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _skip_lines(data: bytes, prefix: bytes, start: int = 0) -> int:
    """Offset of the first byte after the leading lines that start with ``prefix``."""
    pos = start
    n = len(data)
    while pos < n and data[pos:pos + len(prefix)] == prefix:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return n
        pos = nl + 1
    return pos


def _header_lines(data: bytes, end: int):
    return data[:end].decode("latin-1").splitlines()


def _check_body(path, body_len: int, start: int, size: int, what: str):
    rem = body_len % size
    if rem:
        off = start + body_len - rem
        raise EventFileError(path, off, f"truncated {what}: {rem} trailing byte(s) do not form a whole "
                                        f"{size}-byte event")


# ---------------------------------------------------------------------------------- format detection
_MAGICS = (
    (b"#!AER-DAT2", "aedat2"), (b"#!AER-DAT1", "aedat2"), (b"#!AER-DAT3", "aedat31"),
    (b"#!AER-DAT4", "aedat4"), (b"\x89HDF\r\n\x1a\n", "shd_h5"), (b"MATLAB", "asl_mat"),
)


def detect_format(path) -> str:
    """Name of the format of ``path`` (one of :data:`FORMATS`), from its magic/header bytes.

    Files without any header are recognised by extension: ``.bin``/``.bs2`` (ATIS, N-MNIST) and
    ``.dat`` (header-less old ATIS td.dat).
    """
    with open(path, "rb") as f:
        head = f.read(4096)
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    if head.startswith(b"%"):
        # Prophesee: EVT .raw headers say "% evt 2.0" or "% format EVT3;..."; DAT headers do not
        with open(path, "rb") as f:
            blob = f.read(1 << 16)
        end = _skip_lines(blob, b"%")
        text = blob[:end].decode("latin-1").lower()
        m = re.search(r"^%\s*(?:evt\s*|format\s+evt)([23])", text, re.M)
        if m:
            return "evt2" if m.group(1) == "2" else "evt3"
        if re.search(r"^%\s*format\s+evt21", text, re.M):
            raise EventFileError(path, 0, "EVT 2.1 .raw files are not supported (EVT 2.0 and 3.0 are)")
        return "dat"
    if head.startswith(b"#!AER-DAT"):
        raise EventFileError(path, 0, f"unsupported AEDAT version {head[:14]!r}")
    ext = os.path.splitext(str(path))[1].lower()
    if ext in (".bin", ".bs2"):
        return "atis_bin"
    if ext == ".dat":
        return "dat"
    if ext in (".aedat", ".aedat4", ".raw", ".h5", ".hdf5", ".mat"):
        raise EventFileError(path, 0, f"bad magic for a {ext} file: starts with {head[:16]!r}")
    raise EventFileError(path, 0, f"cannot detect the event format (first bytes {head[:16]!r}); pass format=")


# ------------------------------------------------------------------------------------------ decoders
# each returns (events, offsets) where offsets(idx) gives the byte offset of events idx (or None)

def _decode_atis_bin(path, data: bytes):
    """N-MNIST / N-Caltech101: 5 bytes per event, 23-bit µs timestamps; y == 240 marks overflow."""
    _check_body(path, len(data), 0, 5, "ATIS .bin")
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
    return make_events(t, x, y, p), lambda i: idx[i] * 5


def _decode_aedat2(path, data: bytes, layout: Optional[str] = None):
    """jAER AEDAT 2.0 (big-endian uint32 address + uint32 µs timestamp) and 1.0 (uint16 + uint32)."""
    start = _skip_lines(data, b"#")
    header = "\n".join(_header_lines(data, start))
    v1 = data.startswith(b"#!AER-DAT1")
    size = 6 if v1 else 8
    _check_body(path, len(data) - start, start, size, "AEDAT 2.0 body")
    if v1:
        rec = np.frombuffer(data, dtype=[("a", ">u2"), ("t", ">u4")], offset=start)
    else:
        rec = np.frombuffer(data, dtype=[("a", ">u4"), ("t", ">u4")], offset=start)
    if layout is None:
        layout = "davis" if re.search(r"davis", header, re.I) and not v1 else "dvs128"
    if layout not in ("dvs128", "davis"):
        raise ValueError(f"layout must be 'dvs128' or 'davis', got {layout!r}")
    if layout == "dvs128" and not v1:
        # fast path on the big-endian bytes: byte 3 = x<<1 | p, byte 2 = special<<7 | y
        raw = np.frombuffer(data, dtype=np.uint8, offset=start).reshape(-1, 8)
        b2, b3 = raw[:, 2], raw[:, 3]
        special = b2 >= 0x80
        ev = np.empty(rec.shape[0], EVENT_DTYPE)
        ev["t"] = rec["t"]
        ev["x"] = b3 >> 1
        ev["y"] = b2 & 0x7F
        ev["p"] = b3 & 1
        if not special.any():
            return ev, lambda i: start + np.asarray(i, np.int64) * size
        idx = np.nonzero(~special)[0]  # bit 15: special/sync events are not DVS events
        return ev[idx], lambda i: start + idx[i] * size
    idx = np.arange(rec.shape[0], dtype=np.int64)
    a = rec["a"].astype(np.uint32)
    t = rec["t"].astype(np.int64)
    if layout == "dvs128":  # tmpdiff128 raw address; bit 15 = special/sync event
        keep = (a & 0x8000) == 0
        x, y, p = (a >> 1) & 0x7F, (a >> 8) & 0x7F, a & 1
    else:  # DAVIS240/346 in jAER: bit 31 = APS/IMU, y 30..22, x 21..12, p 11
        keep = (a & 0x80000000) == 0
        x, y, p = (a >> 12) & 0x3FF, (a >> 22) & 0x1FF, (a >> 11) & 1
    if not keep.all():
        x, y, p, t, idx = x[keep], y[keep], p[keep], t[keep], idx[keep]
    return make_events(t, x, y, p), lambda i: start + idx[i] * size


def _decode_aedat31(path, data: bytes):
    """AEDAT 3.1 (cAER / DVS128 Gesture): 28-byte packet headers; polarity packets are type 1."""
    if not data.startswith(b"#!AER-DAT3"):
        raise EventFileError(path, 0, f"bad magic {data[:12]!r}, expected b'#!AER-DAT3.1'")
    pos = _skip_lines(data, b"#")
    n = len(data)
    chunks, offs = [], []
    hdr_dt = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("tsoff", "<i4"),
                       ("tsovf", "<i4"), ("cap", "<i4"), ("num", "<i4"), ("valid", "<i4")])
    ev_dt = np.dtype([("d", "<u4"), ("ts", "<i4")])
    while pos < n:
        if n - pos < 28:
            raise EventFileError(path, pos, f"truncated AEDAT 3.1 packet header ({n - pos} of 28 bytes)")
        h = np.frombuffer(data, dtype=hdr_dt, count=1, offset=pos)[0]
        size, cap, num = int(h["size"]), int(h["cap"]), int(h["num"])
        if size <= 0 or cap < 0 or num < 0 or num > cap:
            raise EventFileError(path, pos, f"corrupt AEDAT 3.1 packet header (eventSize={size}, "
                                            f"eventCapacity={cap}, eventNumber={num})")
        body = pos + 28
        end = body + cap * size
        if end > n:
            raise EventFileError(path, pos, f"truncated AEDAT 3.1 packet: needs {cap * size} bytes, "
                                            f"{n - body} left")
        if int(h["type"]) == 1 and num:
            if size != 8:
                raise EventFileError(path, pos, f"polarity packet with eventSize {size}, expected 8")
            ev = np.frombuffer(data, dtype=ev_dt, count=num, offset=body)
            valid = (ev["d"] & 1) == 1
            sel = np.nonzero(valid)[0]
            chunks.append((ev[sel], int(h["tsovf"])))
            offs.append(body + sel.astype(np.int64) * 8)
        pos = end
    if chunks:
        d = np.concatenate([c[0]["d"] for c in chunks])
        t = np.concatenate([c[0]["ts"].astype(np.int64) | (np.int64(c[1]) << 31) for c in chunks])
        off = np.concatenate(offs)
    else:
        d = np.zeros(0, np.uint32)
        t = np.zeros(0, np.int64)
        off = np.zeros(0, np.int64)
    x = (d >> 17) & 0x7FFF
    y = (d >> 2) & 0x7FFF
    p = (d >> 1) & 1
    return make_events(t, x, y, p), lambda i: off[i]


def _decode_aedat4(path, data: bytes):
    """AEDAT 4.0 through the optional `aedat` package (FlatBuffers + LZ4/ZSTD packets)."""
    try:
        import aedat  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{path}: reading AEDAT 4 files needs the optional package `aedat` "
                          f"(pip install aedat)") from e
    if not data.startswith(b"#!AER-DAT4"):
        raise EventFileError(path, 0, f"bad magic {data[:12]!r}, expected b'#!AER-DAT4.0'")
    parts = []
    try:
        dec = aedat.Decoder(str(path))
        for packet in dec:
            if "events" in packet:
                parts.append(packet["events"])
    except Exception as e:  # the library reports malformed files with its own exceptions
        raise EventFileError(path, None, f"AEDAT 4 decoding failed: {e}") from e
    if parts:
        ev = np.concatenate(parts)
        out = make_events(ev["t"].astype(np.int64), ev["x"], ev["y"], ev["on"])
    else:
        out = np.zeros(0, EVENT_DTYPE)
    return out, lambda i: None


def _dat_header(path, data: bytes):
    start = _skip_lines(data, b"%")
    lines = _header_lines(data, start)
    version = 0
    for ln in lines:
        m = re.match(r"%\s*Version\s+(\d+)", ln)
        if m:
            version = int(m.group(1))
    if start > 0:
        if len(data) - start < 2:
            raise EventFileError(path, start, "truncated DAT header: event type/size bytes missing")
        ev_type, ev_size = data[start], data[start + 1]
        start += 2
    else:
        ev_type, ev_size = 0, 8
    return start, version, ev_type, ev_size


def _decode_dat(path, data: bytes, layout: Optional[str] = None):
    """Prophesee/ATIS DAT: '%' header, type and size bytes, then uint32 t + uint32 data (LE).

    ``layout`` 'v2' (x 13..0, y 27..14, p 31..28; files with ``% Version 2`` or later) or 'old'
    (kAER td.dat: x 8..0, y 16..9, p 17; files without a version or version < 2, e.g. NAVGesture).
    """
    start, version, ev_type, ev_size = _dat_header(path, data)
    if ev_size != 8:
        raise EventFileError(path, start - 1, f"unsupported DAT event size {ev_size} (expected 8)")
    if ev_type not in (0, 12):  # 0 = CD events (2D), 12 = CD events in some Prophesee files
        raise EventFileError(path, start - 2, f"unsupported DAT event type {ev_type}")
    _check_body(path, len(data) - start, start, 8, "DAT body")
    rec = np.frombuffer(data, dtype=[("t", "<u4"), ("d", "<u4")], offset=start)
    d = rec["d"]
    if layout is None:
        layout = "v2" if version >= 2 else "old"
    if layout == "v2":
        x, y, p = d & 0x3FFF, (d >> 14) & 0x3FFF, d >> 28
    elif layout == "old":
        x, y, p = d & 0x1FF, (d >> 9) & 0xFF, (d >> 17) & 1
    else:
        raise ValueError(f"layout must be 'v2' or 'old', got {layout!r}")
    return make_events(rec["t"].astype(np.int64), x, y, p), lambda i: start + np.asarray(i, np.int64) * 8


def _raw_body(path, data: bytes, word: int):
    start = _skip_lines(data, b"%")
    body = len(data) - start
    _check_body(path, body, start, word, f"EVT body ({word}-byte words)")
    return start


def _ffill_index(mask: np.ndarray) -> np.ndarray:
    """For each position, the index of the last True at or before it (-1 when none)."""
    idx = np.where(mask, np.arange(mask.shape[0], dtype=np.int64), -1)
    return np.maximum.accumulate(idx) if idx.size else idx


def _decode_evt2(path, data: bytes):
    """Prophesee EVT 2.0: 32-bit LE words, type in bits 31..28 (0 CD_OFF, 1 CD_ON, 8 TIME_HIGH)."""
    start = _raw_body(path, data, 4)
    w = np.frombuffer(data, dtype="<u4", offset=start)
    typ = w >> 28
    is_th = typ == 8
    th_idx = _ffill_index(is_th)
    th = np.where(th_idx >= 0, (w[np.maximum(th_idx, 0)] & 0x0FFFFFFF).astype(np.int64), 0)
    ev_idx = np.nonzero(typ <= 1)[0]
    we = w[ev_idx]
    t = (th[ev_idx] << 6) | ((we >> 22) & 0x3F)
    x = (we >> 11) & 0x7FF
    y = we & 0x7FF
    p = typ[ev_idx]
    return make_events(t, x, y, p), lambda i: start + ev_idx[i] * 4


def _decode_evt3(path, data: bytes):
    """Prophesee EVT 3.0 (stateful 16-bit words), vectorised with forward fills.

    Time is ``(wraps << 24) | (TIME_HIGH << 12) | TIME_LOW`` per Prophesee's specification, where
    ``wraps`` counts decreases of TIME_HIGH.  (No extra TIME_LOW overflow counter: expelliarmus 1.1.12
    adds one and so reports times 4096 µs too late after every TIME_LOW wrap.)
    """
    start = _raw_body(path, data, 2)
    w = np.frombuffer(data, dtype="<u2", offset=start).astype(np.int64)
    n = w.shape[0]
    typ = w >> 12
    low = w & 0x7FF

    # time: TIME_HIGH (8) with wrap counting, TIME_LOW (6)
    is_th = typ == 8
    th_pos = np.nonzero(is_th)[0]
    th_val = w[th_pos] & 0xFFF
    wraps = np.concatenate([[0], np.cumsum(np.diff(th_val) < 0)]) if th_val.size else th_val
    th_full = (wraps << 12) | th_val
    k = np.cumsum(is_th) - 1  # index into th_pos of the last TIME_HIGH at or before each word
    high = np.where(k >= 0, th_full[np.maximum(k, 0)] if th_full.size else 0, 0)
    tl_idx = _ffill_index(typ == 6)
    tlow = np.where(tl_idx >= 0, w[np.maximum(tl_idx, 0)] & 0xFFF, 0)
    t_all = (high << 12) | tlow
    # y: ADDR_Y (0)
    y_idx = _ffill_index(typ == 0)
    y_all = np.where(y_idx >= 0, low[np.maximum(y_idx, 0)], 0)
    # vector base (3): base x and polarity, advanced by 12 / 8 after each VECT_12 / VECT_8
    is_base = typ == 3
    inc = np.where(typ == 4, 12, 0) + np.where(typ == 5, 8, 0)
    cum_inc = np.cumsum(inc) - inc  # increments before each word
    b_idx = _ffill_index(is_base)
    bsafe = np.maximum(b_idx, 0)
    base_x = np.where(b_idx >= 0, low[bsafe] + cum_inc - cum_inc[bsafe], 0) if n else low
    base_p = np.where(b_idx >= 0, (w[bsafe] >> 11) & 1, 0) if n else low

    # single events: ADDR_X (2)
    sx = np.nonzero(typ == 2)[0]
    # vector events: VECT_12 (4) and VECT_8 (5)
    vpos = np.nonzero((typ == 4) | (typ == 5))[0]
    nbits = np.where(typ[vpos] == 4, 12, 8)
    bits = ((w[vpos, None] >> np.arange(12)) & 1).astype(bool)
    bits &= np.arange(12)[None, :] < nbits[:, None]
    cnt = np.zeros(n, dtype=np.int64)
    cnt[sx] = 1
    cnt[vpos] = bits.sum(1)
    first = np.cumsum(cnt) - cnt  # output position of each word's first event
    total = int(cnt.sum())
    t = np.empty(total, np.int64)
    x = np.empty(total, np.int64)
    y = np.empty(total, np.int64)
    p = np.empty(total, np.int64)
    word = np.empty(total, np.int64)
    o = first[sx]
    t[o], x[o], y[o], p[o], word[o] = t_all[sx], low[sx], y_all[sx], (w[sx] >> 11) & 1, sx
    r, b = np.nonzero(bits)
    rank = (np.cumsum(bits, axis=1) - 1)[r, b]
    vw = vpos[r]
    o = first[vw] + rank
    t[o], x[o], y[o], p[o], word[o] = t_all[vw], base_x[vw] + b, y_all[vw], base_p[vw], vw
    return make_events(t, x, y, p), lambda i: start + word[i] * 2


def _decode_asl_mat(path, data: bytes):
    """ASL-DVS MATLAB file: column vectors x, y, ts (µs), pol."""
    import io

    import scipy.io

    try:
        m = scipy.io.loadmat(io.BytesIO(data))
    except Exception as e:
        raise EventFileError(path, None, f"not a readable MATLAB v5 file: {e}") from e
    missing = [k for k in ("x", "y", "ts", "pol") if k not in m]
    if missing:
        raise EventFileError(path, None, f"MATLAB file lacks variable(s) {missing}")
    cols = [np.asarray(m[k]).reshape(-1) for k in ("ts", "x", "y", "pol")]
    if len({c.shape[0] for c in cols}) != 1:
        raise EventFileError(path, None, "variables x, y, ts, pol have different lengths")
    return make_events(*cols), lambda i: None


def read_shd(path) -> Tuple[list, np.ndarray]:
    """All recordings of an SHD/SSC HDF5 file: (list of event arrays, labels).

    Spike times are stored in seconds; they are converted to integer µs (rounded to nearest) so
    every recording shares :data:`EVENT_DTYPE`.  ``x`` is the input channel (0..699), ``y = 0``,
    ``p = 1``.
    """
    import h5py

    with h5py.File(path, "r") as f:
        try:
            times, units, labels = f["spikes/times"], f["spikes/units"], np.asarray(f["labels"])
        except KeyError as e:
            raise EventFileError(path, None, f"HDF5 file lacks dataset {e}") from e
        if len(times) != len(units) or len(times) != len(labels):
            raise EventFileError(path, None, f"spikes/times ({len(times)}), spikes/units ({len(units)}) "
                                             f"and labels ({len(labels)}) disagree in length")
        out = []
        for i in range(len(times)):
            tt, uu = np.asarray(times[i], np.float64), np.asarray(units[i])
            if tt.shape != uu.shape:
                raise EventFileError(path, None, f"recording {i}: {tt.size} times but {uu.size} units")
            out.append(make_events(np.rint(tt * 1e6).astype(np.int64), uu, 0, 1))
    return out, labels


def _decode_shd_one(path, index):
    import h5py

    with h5py.File(path, "r") as f:
        n = len(f["labels"])
        if not 0 <= index < n:
            raise IndexError(f"{path}: recording index {index} out of range (file holds {n})")
        tt = np.asarray(f["spikes/times"][index], np.float64)
        uu = np.asarray(f["spikes/units"][index])
    if tt.shape != uu.shape:
        raise EventFileError(path, None, f"recording {index}: {tt.size} times but {uu.size} units")
    return make_events(np.rint(tt * 1e6).astype(np.int64), uu, 0, 1)


_DECODERS: dict = {
    "atis_bin": _decode_atis_bin, "aedat2": _decode_aedat2, "aedat31": _decode_aedat31,
    "aedat4": _decode_aedat4, "dat": _decode_dat, "evt2": _decode_evt2, "evt3": _decode_evt3,
    "asl_mat": _decode_asl_mat,
}


def read_events(path, format: Optional[str] = None, *, sensor_size: Optional[Sequence[int]] = None,
                layout: Optional[str] = None, index: Optional[int] = None) -> np.ndarray:
    """Read one recording into a structured array with fields ``t, x, y, p`` (:data:`EVENT_DTYPE`).

    Args:
        path: the file.
        format: one of :data:`FORMATS`; detected from the header (or extension) when None.
        sensor_size: optional ``(W, H)``; an event outside it raises :class:`EventFileError` naming
            its byte offset.
        layout: address layout for 'aedat2' ('dvs128' or 'davis', from the header when None) and
            'dat' ('v2' or 'old', from ``% Version`` when None).
        index: recording number inside an SHD/SSC ``.h5`` file (required for that format).
    """
    fmt = detect_format(path) if format is None else format
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    if fmt == "shd_h5":
        if index is None:
            raise ValueError(f"{path}: SHD/SSC files hold many recordings; pass index= (or use read_shd)")
        ev, offsets = _decode_shd_one(path, int(index)), (lambda i: None)
    else:
        data = _read_bytes(path)
        if fmt in ("aedat2", "dat"):
            ev, offsets = _DECODERS[fmt](path, data, layout)
        else:
            ev, offsets = _DECODERS[fmt](path, data)
    if sensor_size is not None:
        check_range(ev, sensor_size, path, offsets)
    return ev


def check_range(ev: np.ndarray, sensor_size, path="<events>", offsets: Optional[Callable] = None):
    """Raise EventFileError when an event lies outside ``sensor_size = (W, H[, P])``."""
    W, H = int(sensor_size[0]), int(sensor_size[1])
    bad = (ev["x"] < 0) | (ev["x"] >= W) | (ev["y"] < 0) | (ev["y"] >= H)
    if bad.any():
        i = int(np.argmax(bad))
        off = offsets(i) if offsets is not None else None
        off = None if off is None else int(off)
        e = ev[i]
        raise EventFileError(path, off, f"event {i} (x={int(e['x'])}, y={int(e['y'])}, t={int(e['t'])}) "
                                        f"lies outside the {W}x{H} sensor "
                                        f"({int(bad.sum())} such event(s))")


# ------------------------------------------------------------------------------------------- writers
def _cols(ev):
    return (np.asarray(ev["t"], np.int64), np.asarray(ev["x"], np.int64),
            np.asarray(ev["y"], np.int64), np.asarray(ev["p"], np.int64))


def write_atis_bin(path, ev) -> None:
    """N-MNIST layout (timestamps must fit 23 bits; no overflow markers are written)."""
    t, x, y, p = _cols(ev)
    if t.size and (t.min() < 0 or t.max() >= 1 << 23):
        raise ValueError("ATIS .bin timestamps must lie in [0, 2**23)")
    raw = np.empty((t.size, 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    with open(path, "wb") as f:
        f.write(raw.tobytes())


def write_aedat2(path, ev) -> None:
    """jAER AEDAT 2.0 with DVS128 raw addresses (x, y, p are the raw fields)."""
    t, x, y, p = _cols(ev)
    rec = np.empty(t.size, dtype=[("a", ">u4"), ("t", ">u4")])
    rec["a"] = (y << 8) | (x << 1) | p
    rec["t"] = t
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT2.0\r\n# written by fastspike.datasets\r\n")
        f.write(rec.tobytes())


def write_aedat31(path, ev, packet_size: int = 4096, ts_overflow: int = 0, extra_packets=True) -> None:
    """AEDAT 3.1 with polarity packets of ``packet_size`` events (plus a special-event packet)."""
    t, x, y, p = _cols(ev)
    hdr = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("tsoff", "<i4"),
                    ("tsovf", "<i4"), ("cap", "<i4"), ("num", "<i4"), ("valid", "<i4")])
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n")
        if extra_packets:  # a type-0 (special events) packet the decoder must skip
            h = np.zeros(1, hdr)
            h["type"], h["size"], h["tsoff"], h["cap"], h["num"], h["valid"] = 0, 8, 4, 1, 1, 1
            f.write(h.tobytes() + np.zeros(2, "<u4").tobytes())
        for s in range(0, t.size, packet_size):
            sl = slice(s, s + packet_size)
            n = t[sl].size
            h = np.zeros(1, hdr)
            h["type"], h["source"], h["size"], h["tsoff"] = 1, 1, 8, 4
            h["tsovf"], h["cap"], h["num"], h["valid"] = ts_overflow, n, n, n
            body = np.empty(n, dtype=[("d", "<u4"), ("ts", "<i4")])
            body["d"] = (x[sl] << 17) | (y[sl] << 2) | (p[sl] << 1) | 1
            body["ts"] = t[sl] - (ts_overflow << 31)
            f.write(h.tobytes() + body.tobytes())


def write_dat(path, ev, layout: str = "v2") -> None:
    """Prophesee DAT; layout 'v2' writes ``% Version 2``, 'old' writes no version line."""
    t, x, y, p = _cols(ev)
    if layout == "v2":
        d = x | (y << 14) | (p << 28)
        head = b"% Data file containing Event2D events.\n% Version 2\n% Date 2024-01-01 00:00:00\n"
    elif layout == "old":
        d = x | (y << 9) | (p << 17)
        head = b"% Data file containing Event2D events.\n% Date 2024-01-01 00:00:00\n"
    else:
        raise ValueError(f"layout must be 'v2' or 'old', got {layout!r}")
    rec = np.empty(t.size, dtype=[("t", "<u4"), ("d", "<u4")])
    rec["t"], rec["d"] = t, d
    with open(path, "wb") as f:
        f.write(head + bytes([0, 8]) + rec.tobytes())


_RAW_HEAD = b"%% Date 2024-01-01 00:00:00\n%% evt %s\n%% plugin_name fastspike_writer\n"


def write_evt2(path, ev) -> None:
    """Prophesee EVT 2.0: a TIME_HIGH word whenever t >> 6 changes, then CD words."""
    t, x, y, p = _cols(ev)
    th = t >> 6
    new = np.ones(t.size, bool)
    new[1:] = th[1:] != th[:-1]
    cd = (p << 28) | ((t & 0x3F) << 22) | (x << 11) | y
    thw = (8 << 28) | (th & 0x0FFFFFFF)
    words = np.empty(t.size + int(new.sum()), np.uint32)
    pos = np.arange(t.size) + np.cumsum(new)  # CD word position
    words[pos] = cd
    words[pos[new] - 1] = thw[new]
    with open(path, "wb") as f:
        f.write(_RAW_HEAD % b"2.0" + words.astype("<u4").tobytes())


def write_evt3(path, ev) -> None:
    """Prophesee EVT 3.0 (a simple but valid stream: TIME_HIGH/TIME_LOW/ADDR_Y words when they
    change, then one ADDR_X per event; runs of >= 3 events on one row at one time use
    VECT_BASE_X + VECT_12/VECT_8 words so the vector path is exercised)."""
    t, x, y, p = _cols(ev)
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
        # a run of consecutive x on the same row/time/polarity -> vector words
        j = i
        while (j + 1 < n and t[j + 1] == t[i] and y[j + 1] == y[i] and p[j + 1] == p[i]
               and x[j + 1] == x[j] + 1 and j + 1 - i < 20):
            j += 1
        if j - i + 1 >= 3:
            out.append(0x3000 | (int(p[i]) << 11) | int(x[i]))
            k = j - i + 1
            while k > 0:
                if k > 8:
                    take = min(k, 12)
                    out.append(0x4000 | ((1 << take) - 1))
                else:
                    take = k
                    out.append(0x5000 | ((1 << take) - 1))
                k -= take
            i = j + 1
        else:
            out.append(0x2000 | (int(p[i]) << 11) | int(x[i]))
            i += 1
    with open(path, "wb") as f:
        f.write(_RAW_HEAD % b"3.0" + np.asarray(out, "<u2").tobytes())


def write_shd(path, recordings, labels, speakers=None) -> None:
    """SHD/SSC HDF5: spikes/times (float32 seconds, from integer µs ``t``), spikes/units, labels."""
    import h5py

    with h5py.File(path, "w") as f:
        vf = h5py.vlen_dtype(np.dtype("float32"))
        vu = h5py.vlen_dtype(np.dtype("uint16"))
        times = f.create_dataset("spikes/times", (len(recordings),), dtype=vf)
        units = f.create_dataset("spikes/units", (len(recordings),), dtype=vu)
        for i, ev in enumerate(recordings):
            times[i] = (np.asarray(ev["t"], np.float64) / 1e6).astype(np.float32)
            units[i] = np.asarray(ev["x"], np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        f.create_dataset("extra/speaker", data=np.asarray(
            speakers if speakers is not None else np.zeros(len(labels)), np.uint16))


def write_asl_mat(path, ev) -> None:
    """ASL-DVS layout: MATLAB v5 file with column vectors x, y, ts, pol."""
    import scipy.io

    t, x, y, p = _cols(ev)
    scipy.io.savemat(path, {"x": x[:, None].astype(np.uint8), "y": y[:, None].astype(np.uint8),
                            "ts": t[:, None].astype(np.int32), "pol": p[:, None].astype(np.uint8)})
