"""Prophesee / ATIS DAT files (N-CARS; NAVGesture's container): decoder and writer.

``%`` header lines, then one event-type byte and one event-size byte, then 8-byte little-endian events
(uint32 µs timestamp, uint32 data).  Two data layouts exist:

* ``'v2'`` (files whose header says ``% Version 2`` or later): x bits 13..0, y 27..14, p 31..28 (0 or 1);
* ``'old'`` (kAER ``td.dat``, no version or version < 2, e.g. NAVGesture, and header-less files):
  x bits 8..0, y 16..9, p bit 17, recorded on the 304x240 ATIS sensor.

The sensor is the one a ``% Width``/``% Height`` (or ``geometry``) header line names, the ATIS sensor for
the old layout, else unknown (pass ``sensor_size=``).
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np

from ._common import (Decoded, EventFileError, check_body, columns, header_text, make_events, sensor_from_header,
                      skip_lines)

ATIS_SENSOR = (304, 240)


def decode_dat(path, data: bytes, layout: Optional[str] = None) -> Decoded:
    start = skip_lines(data, b"%")
    header = header_text(data, start)
    m = re.findall(r"^%\s*Version\s+(\d+)", header, re.M)
    version = int(m[-1]) if m else 0
    if start > 0:
        if len(data) - start < 2:
            raise EventFileError(path, start, "truncated DAT header: event type/size bytes missing")
        ev_type, ev_size = data[start], data[start + 1]
        start += 2
    else:
        ev_type, ev_size = 0, 8
    if ev_size != 8:
        raise EventFileError(path, start - 1, f"unsupported DAT event size {ev_size} (expected 8)")
    if ev_type not in (0, 12):  # 0 = CD events (2D), 12 = CD events in some Prophesee files
        raise EventFileError(path, start - 2, f"unsupported DAT event type {ev_type}")
    check_body(path, len(data) - start, start, 8, "DAT body")
    rec = np.frombuffer(data, dtype=[("t", "<u4"), ("d", "<u4")], offset=start)
    d = rec["d"]
    if layout is None:
        layout = "v2" if version >= 2 else "old"
    sensor = sensor_from_header(header) if start > 2 else None
    if layout == "v2":
        x, y, p = d & 0x3FFF, (d >> 14) & 0x3FFF, d >> 28
    elif layout == "old":
        x, y, p = d & 0x1FF, (d >> 9) & 0xFF, (d >> 17) & 1
        sensor = sensor or ATIS_SENSOR
    else:
        raise ValueError(f"layout must be 'v2' or 'old' for DAT files, got {layout!r}")
    return Decoded(make_events(rec["t"].astype(np.int64), x, y, p),
                   lambda i: start + np.asarray(i, np.int64) * 8, sensor)


def write_dat(path, ev, layout: str = "v2") -> None:
    """Prophesee DAT; layout 'v2' writes ``% Version 2``, 'old' writes no version line."""
    t, x, y, p = columns(ev)
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
