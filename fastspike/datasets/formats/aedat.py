"""The AEDAT family (jAER / cAER / DV): AEDAT 1.0 and 2.0, AEDAT 3.1 and AEDAT 4.0 decoders, and
writers for 2.0 and 3.1.

* AEDAT 1.0/2.0: ``#`` header lines, then big-endian (uint16 or uint32 address, uint32 µs timestamp).
  ``layout='dvs128'`` (tmpdiff128 raw address: x bits 7..1, y bits 14..8, p bit 0, bit 15 special) or
  ``'davis'`` (jAER DAVIS: x 21..12, y 30..22, p 11, bit 31 APS/IMU); the sensor is DVS128's, or the one
  the ``# AEChip`` header line names.
* AEDAT 3.1: 28-byte little-endian packet headers; polarity packets (type 1) hold uint32 data + int32
  timestamp, ``t = ts | eventTSOverflow << 31``.  ``valid_only=True`` (the specification) keeps the first
  eventNumber events whose valid bit is set; ``valid_only=False`` keeps every slot of eventCapacity, as
  SpikingJelly's ``load_aedat_v3`` does.
* AEDAT 4.0 goes through the optional ``aedat`` package.  That package can abort the whole process on
  some corrupt files (a Rust panic inside a destructor), so it runs in a child process: a crash there is
  an :class:`EventFileError`, never the end of the caller.
"""
from __future__ import annotations

import os
import re
from typing import Optional

import numpy as np

from ._common import (EVENT_DTYPE, Decoded, EventFileError, check_body, check_regular, columns, header_text,
                      make_events, run_isolated, sensor_from_header, skip_lines)


def _chip_sensor(header: str):
    """Sensor named by a jAER/cAER header: only chip names count (jAER headers embed XML preferences
    whose numbers are not a geometry)."""
    chip = [ln for ln in header.splitlines() if re.match(r"#\s*(AEChip|Source|-Source)", ln, re.I)]
    return sensor_from_header("\n".join(chip)) if chip else None


def decode_aedat2(path, data: bytes, layout: Optional[str] = None) -> Decoded:
    start = skip_lines(data, b"#")
    header = header_text(data, start)
    v1 = data.startswith(b"#!AER-DAT1")
    size = 6 if v1 else 8
    check_body(path, len(data) - start, start, size, "AEDAT 2.0 body")
    if layout is None:
        layout = "davis" if re.search(r"davis", header, re.I) and not v1 else "dvs128"
    if layout not in ("dvs128", "davis"):
        raise ValueError(f"layout must be 'dvs128' or 'davis' for AEDAT 2.0, got {layout!r}")
    if layout == "dvs128" and not v1:
        # fast path on the big-endian bytes: byte 3 = x<<1 | p, byte 2 = special<<7 | y
        raw = np.frombuffer(data, dtype=np.uint8, offset=start).reshape(-1, 8)
        b2, b3 = raw[:, 2], raw[:, 3]
        ev = np.empty(raw.shape[0], EVENT_DTYPE)
        ev["t"] = np.frombuffer(data, dtype=[("a", ">u4"), ("t", ">u4")], offset=start)["t"]
        ev["x"] = b3 >> 1
        ev["y"] = b2 & 0x7F
        ev["p"] = b3 & 1
        special = b2 >= 0x80
        if not special.any():
            return Decoded(ev, lambda i: start + np.asarray(i, np.int64) * size, (128, 128))
        idx = np.nonzero(~special)[0]  # bit 15: special/sync events are not DVS events
        return Decoded(ev[idx], lambda i: start + idx[i] * size, (128, 128))
    rec = np.frombuffer(data, dtype=[("a", ">u2" if v1 else ">u4"), ("t", ">u4")], offset=start)
    idx = np.arange(rec.shape[0], dtype=np.int64)
    a = rec["a"].astype(np.uint32)
    t = rec["t"].astype(np.int64)
    if layout == "dvs128":
        keep = (a & 0x8000) == 0
        x, y, p = (a >> 1) & 0x7F, (a >> 8) & 0x7F, a & 1
        sensor = (128, 128)
    else:
        keep = (a & 0x80000000) == 0
        x, y, p = (a >> 12) & 0x3FF, (a >> 22) & 0x1FF, (a >> 11) & 1
        sensor = _chip_sensor(header)
    if not keep.all():
        x, y, p, t, idx = x[keep], y[keep], p[keep], t[keep], idx[keep]
    return Decoded(make_events(t, x, y, p), lambda i: start + idx[i] * size, sensor)


_PACKET = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("tsoff", "<i4"),
                    ("tsovf", "<i4"), ("cap", "<i4"), ("num", "<i4"), ("valid", "<i4")])


def decode_aedat31(path, data: bytes, valid_only: bool = True) -> Decoded:
    if not data.startswith(b"#!AER-DAT3"):
        raise EventFileError(path, 0, f"bad magic {data[:12]!r}, expected b'#!AER-DAT3.1'")
    pos = skip_lines(data, b"#")
    sensor = _chip_sensor(header_text(data, pos))
    n = len(data)
    ds, ts, offs = [], [], []
    ev_dt = np.dtype([("d", "<u4"), ("ts", "<i4" if valid_only else "<u4")])
    while pos < n:
        if n - pos < 28:
            raise EventFileError(path, pos, f"truncated AEDAT 3.1 packet header ({n - pos} of 28 bytes)")
        h = np.frombuffer(data, dtype=_PACKET, count=1, offset=pos)[0]
        size, cap, num = int(h["size"]), int(h["cap"]), int(h["num"])
        if size <= 0 or cap < 0 or num < 0 or num > cap:
            raise EventFileError(path, pos, f"corrupt AEDAT 3.1 packet header (eventSize={size}, "
                                            f"eventCapacity={cap}, eventNumber={num})")
        body = pos + 28
        end = body + cap * size
        if end > n:
            raise EventFileError(path, pos, f"truncated AEDAT 3.1 packet: needs {cap * size} bytes, "
                                            f"{n - body} left")
        count = num if valid_only else cap
        if int(h["type"]) == 1 and count:
            if size != 8:
                raise EventFileError(path, pos, f"polarity packet with eventSize {size}, expected 8")
            ev = np.frombuffer(data, dtype=ev_dt, count=count, offset=body)
            sel = np.nonzero(ev["d"] & 1)[0] if valid_only else np.arange(count)
            ds.append(ev["d"][sel])
            ts.append(ev["ts"][sel].astype(np.int64) | (np.int64(int(h["tsovf"]) & 0xFFFFFFFF) << 31))
            offs.append(body + sel.astype(np.int64) * 8)
        pos = end
    d = np.concatenate(ds) if ds else np.zeros(0, np.uint32)
    t = np.concatenate(ts) if ts else np.zeros(0, np.int64)
    off = np.concatenate(offs) if offs else np.zeros(0, np.int64)
    return Decoded(make_events(t, (d >> 17) & 0x7FFF, (d >> 2) & 0x7FFF, (d >> 1) & 1), lambda i: off[i], sensor)


# ------------------------------------------------------------------------------------------ AEDAT 4
_CHILD = r"""
import sys
import numpy as np
out, path = sys.argv[1], sys.argv[2]
try:
    import aedat
    dec = aedat.Decoder(path)
    size = [-1, -1]
    for s in dec.id_to_stream().values():
        if s.get("type") == "events" and "width" in s:
            size = [int(s["width"]), int(s["height"])]
    parts = [p["events"] for p in dec if "events" in p]
    ev = np.concatenate(parts) if parts else np.zeros(0, [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "?")])
    np.savez(out, t=ev["t"].astype(np.int64), x=ev["x"].astype(np.int64), y=ev["y"].astype(np.int64),
             p=ev["on"].astype(np.int64), size=np.asarray(size, np.int64))
except (KeyboardInterrupt, SystemExit):
    raise
except BaseException as e:  # pyo3's PanicException is not an Exception
    sys.stderr.write("\nFASTSPIKE-ERROR AEDAT 4 decoding failed: " + type(e).__name__ + ": " + str(e)[:500] + "\n")
    sys.exit(2)
"""


def decode_aedat4(path, head: bytes) -> Decoded:
    """AEDAT 4.0 through the optional ``aedat`` package, run in a child process (see the module doc)."""
    try:
        import aedat  # noqa: F401  (only to fail early, in this process, when it is missing)
    except ImportError as e:
        raise ImportError(f"{path}: reading AEDAT 4 files needs the optional package `aedat` "
                          f"(pip install aedat)") from e
    if not head.startswith(b"#!AER-DAT4"):
        raise EventFileError(path, 0, f"bad magic {head[:12]!r}, expected b'#!AER-DAT4.0'")
    check_regular(path)
    z = run_isolated(path, _CHILD, [path], "the `aedat` package", 120 + os.path.getsize(path) / (1 << 20))
    size = z["size"]
    sensor = (int(size[0]), int(size[1])) if size[0] > 0 else None
    return Decoded(make_events(z["t"], z["x"], z["y"], z["p"]), lambda i: None, sensor)


# ------------------------------------------------------------------------------------------- writers
def write_aedat2(path, ev) -> None:
    """jAER AEDAT 2.0 with DVS128 raw addresses (x, y, p are the raw fields)."""
    t, x, y, p = columns(ev)
    rec = np.empty(t.size, dtype=[("a", ">u4"), ("t", ">u4")])
    rec["a"] = (y << 8) | (x << 1) | p
    rec["t"] = t
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT2.0\r\n# written by fastspike.datasets\r\n")
        f.write(rec.tobytes())


def write_aedat31(path, ev, packet_size: int = 4096, ts_overflow: int = 0, extra_packets=True,
                  source: str = "DVS128") -> None:
    """AEDAT 3.1 with polarity packets of ``packet_size`` events (plus a special-event packet)."""
    t, x, y, p = columns(ev)
    with open(path, "wb") as f:
        f.write(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: " + source.encode() + b"\r\n#!END-HEADER\r\n")
        if extra_packets:  # a type-0 (special events) packet the decoder must skip
            h = np.zeros(1, _PACKET)
            h["type"], h["size"], h["tsoff"], h["cap"], h["num"], h["valid"] = 0, 8, 4, 1, 1, 1
            f.write(h.tobytes() + np.zeros(2, "<u4").tobytes())
        for s in range(0, t.size, packet_size):
            sl = slice(s, s + packet_size)
            n = t[sl].size
            h = np.zeros(1, _PACKET)
            h["type"], h["source"], h["size"], h["tsoff"] = 1, 1, 8, 4
            h["tsovf"], h["cap"], h["num"], h["valid"] = ts_overflow, n, n, n
            body = np.empty(n, dtype=[("d", "<u4"), ("ts", "<i4")])
            body["d"] = (x[sl] << 17) | (y[sl] << 2) | (p[sl] << 1) | 1
            body["ts"] = t[sl] - (ts_overflow << 31)
            f.write(h.tobytes() + body.tobytes())

