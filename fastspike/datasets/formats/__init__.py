"""Event-file formats of the neuromorphic datasets: detection, decoding with validation, writers.

``read_events`` returns a structured array with fields ``t, x, y, p`` (:data:`EVENT_DTYPE`) holding the
values *as stored in the file* (no flip, no re-zeroed time, no polarity inversion); dataset classes
apply each dataset's conventions on top.  Every result is validated (see ``_common.validate``):
non-decreasing, non-negative timestamps (or ``strict=False`` and a warning saying how many are out of
order), polarities 0/1, coordinates inside the sensor the header or the caller names.  Non-regular files
(FIFOs, devices) are refused before anything is read.  One module per format family holds its decoder
and writer: ``atis`` (N-MNIST .bin), ``aedat`` (AEDAT 1/2/3.1/4), ``dat`` (Prophesee DAT), ``evt``
(Prophesee EVT 2.0/2.1/3.0), ``matlab`` (ASL-DVS), ``hdf5`` (SHD/SSC).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from ._common import (EVENT_DTYPE, Decoded, EventFileError, check_range, make_events, read_bytes, read_head,
                      skip_lines, validate)
from .aedat import decode_aedat2, decode_aedat4, decode_aedat31, write_aedat2, write_aedat31
from .atis import decode_atis_bin, write_atis_bin
from .dat import decode_dat, write_dat
from .evt import decode_evt2, decode_evt3, decode_evt21, evt_version, unsupported, write_evt2, write_evt3, write_evt21
from .hdf5 import decode_shd_one, read_shd, write_shd
from .matlab import decode_asl_mat, read_mats, write_asl_mat
from .numpy_files import decode_numpy_events

__all__ = [
    "EVENT_DTYPE", "EventFileError", "FORMATS", "make_events", "detect_format", "read_events", "read_shd",
    "check_range", "write_atis_bin", "write_aedat2", "write_aedat31", "write_dat", "write_evt2", "write_evt21",
    "write_evt3", "write_shd", "write_asl_mat",
]

FORMATS = ("atis_bin", "aedat2", "aedat31", "aedat4", "dat", "evt2", "evt21", "evt3", "asl_mat", "shd_h5", "numpy")

_MAGICS = (
    (b"#!AER-DAT2", "aedat2"), (b"#!AER-DAT1", "aedat2"), (b"#!AER-DAT3", "aedat31"),
    (b"#!AER-DAT4", "aedat4"), (b"\x89HDF\r\n\x1a\n", "shd_h5"), (b"MATLAB", "asl_mat"),
)


def detect_format(path) -> str:
    """Name of the format of ``path`` (one of :data:`FORMATS`), from its magic/header bytes.

    Files without any header are recognised by extension: ``.bin``/``.bs2`` (ATIS, N-MNIST) and
    ``.dat`` (header-less old ATIS td.dat).  Non-regular files are refused before reading.
    """
    head = read_head(path, 1 << 16)
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    if head.startswith(b"%"):
        # Prophesee: EVT .raw headers say "% evt 2.0" or "% format EVT3;..."; DAT headers do not
        fmt = evt_version(head[:skip_lines(head, b"%")].decode("latin-1"))
        if fmt is None:
            return "dat"
        if fmt.startswith("unknown:"):
            unsupported(path, fmt.split(":", 1)[1])
        return fmt
    if head.startswith(b"#!AER-DAT"):
        raise EventFileError(path, 0, f"unsupported AEDAT version {head[:14]!r}")
    ext = os.path.splitext(str(path))[1].lower()
    if ext in (".bin", ".bs2"):
        return "atis_bin"
    if ext == ".dat":
        return "dat"
    if ext in (".npy", ".npz"):
        return "numpy"
    if ext in (".aedat", ".aedat4", ".raw", ".h5", ".hdf5", ".mat"):
        raise EventFileError(path, 0, f"bad magic for a {ext} file: starts with {head[:16]!r}")
    raise EventFileError(path, 0, f"cannot detect the event format (first bytes {head[:16]!r}); pass format=")


def _decode(path, fmt, layout, index, valid_only, sensor_size) -> Decoded:
    if fmt == "shd_h5":
        if index is None:
            raise ValueError(f"{path}: SHD/SSC files hold many recordings; pass index= (or use read_shd)")
        return decode_shd_one(path, int(index))
    if fmt == "numpy":
        if sensor_size is None:
            raise ValueError(f"{path}: numpy event files name no sensor; pass sensor_size=(W, H)")
        return decode_numpy_events(path, (int(sensor_size[0]), int(sensor_size[1])))
    if fmt == "aedat4":
        return decode_aedat4(path, read_head(path, 16))
    if fmt == "asl_mat":
        return decode_asl_mat(path)
    data = read_bytes(path)
    if fmt == "aedat2":
        return decode_aedat2(path, data, layout)
    if fmt == "dat":
        return decode_dat(path, data, layout)
    if fmt == "evt21":
        return decode_evt21(path, data, layout)
    if fmt == "aedat31":
        return decode_aedat31(path, data, valid_only)
    return {"atis_bin": decode_atis_bin, "evt2": decode_evt2, "evt3": decode_evt3}[fmt](path, data)


def read_events(path, format: Optional[str] = None, *, sensor_size: Optional[Sequence[int]] = None,
                layout: Optional[str] = None, index: Optional[int] = None, strict: bool = True,
                valid_only: bool = True):
    """Read one recording into a structured array with fields ``t, x, y, p`` (:data:`EVENT_DTYPE`).

    Args:
        path: the file (a regular file; FIFOs and devices are refused by name).
        format: one of :data:`FORMATS`; detected from the header (or extension) when None.
        sensor_size: ``(W, H)`` to check every event against; by default the sensor the file's header
            names (or the format's, e.g. ATIS 304x240 for old-layout DAT, 240x180 for ASL-DVS).
        layout: address layout for 'aedat2' ('dvs128' or 'davis', from the header when None), 'dat'
            ('v2' or 'old', from ``% Version`` when None) and 'evt21' ('standard' or 'legacy').
        index: recording number inside an SHD/SSC ``.h5`` file (required for that format).
        strict: decreasing timestamps raise EventFileError; with False they give a warning saying how
            many events are out of order, and the events are returned as stored.
        valid_only: AEDAT 3.1 only: keep only events whose valid bit is set (the specification); False
            keeps every slot of each packet, as SpikingJelly's ``load_aedat_v3``.
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    fmt = detect_format(path) if format is None else format
    if sensor_size is not None and (len(sensor_size) < 2 or min(int(s) for s in sensor_size[:2]) <= 0):
        raise ValueError(f"sensor_size must be (W, H) with positive sizes, got {sensor_size!r}")
    dec = _decode(path, fmt, layout, index, valid_only, sensor_size)
    return validate(dec, path, sensor_size, strict)


def read_asl_mats(paths, *, sensor_size=None, strict: bool = True) -> list:
    """``read_events(p, 'asl_mat')`` for many files at once (one child process for all of them)."""
    out = []
    for p, dec in zip(paths, read_mats(paths)):
        if isinstance(dec, EventFileError):
            raise dec
        out.append(validate(dec, p, sensor_size, strict))
    return out
