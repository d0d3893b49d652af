"""SHD / SSC HDF5 files (many recordings per file): reader and writer.

Datasets ``spikes/times`` (variable-length float seconds), ``spikes/units`` (variable-length channel
numbers 0..699) and ``labels``.  Times become integer µs (rounded to nearest) so every recording shares
EVENT_DTYPE; ``x`` is the channel, ``y = 0``, ``p = 1``.  Every recording is checked: finite,
non-negative times and channels inside the 700-channel sensor.

The HDF5 library loops forever on some corrupt variable-length data (found by the fuzz test: one
flipped bit), so files are read by h5py in a child process with a time limit; a hang or a crash there
is an EventFileError.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np

from ._common import Decoded, EventFileError, check_regular, int_column, make_events, run_isolated

CHANNELS = 700
#: seconds a child process may take to read a file, plus one per MB
TIME_LIMIT_S = 60


def _recording(path, times, units, i) -> np.ndarray:
    tt = np.asarray(times, np.float64).reshape(-1)
    uu = np.asarray(units).reshape(-1)
    if tt.shape != uu.shape:
        raise EventFileError(path, None, f"recording {i}: {tt.size} times but {uu.size} units")
    if tt.size and not (np.isfinite(tt).all() and tt.min() >= 0 and tt.max() < 1e9):
        raise EventFileError(path, None, f"recording {i}: spike times must be finite seconds in [0, 1e9)")
    x = int_column(path, f"spikes/units[{i}]", uu, 0, CHANNELS - 1)
    return make_events(np.rint(tt * 1e6).astype(np.int64), x, 0, 1)


_CHILD = r"""
import sys
import numpy as np
import h5py
out, path, index = sys.argv[1], sys.argv[2], int(sys.argv[3])
try:
    with h5py.File(path, "r") as f:
        labels = np.asarray(f["labels"])
        times, units = f["spikes/times"], f["spikes/units"]
        if len(times) != len(units) or len(times) != len(labels):
            raise ValueError(f"spikes/times ({len(times)}), spikes/units ({len(units)}) and labels "
                             f"({len(labels)}) disagree in length")
        idx = range(len(labels)) if index < 0 else ([index] if index < len(labels) else [])
        tt = [np.asarray(times[i], np.float64).reshape(-1) for i in idx]
        uu = [np.asarray(units[i]).reshape(-1) for i in idx]
    np.savez(out, labels=labels, t=np.concatenate(tt) if tt else np.zeros(0), nt=[a.size for a in tt],
             u=np.concatenate(uu) if uu else np.zeros(0), nu=[a.size for a in uu])
except (KeyboardInterrupt, SystemExit):
    raise
except BaseException as e:
    msg = "not a readable SHD/SSC HDF5 file: " + type(e).__name__ + ": " + str(e)[:500]
    sys.stderr.write("\nFASTSPIKE-ERROR " + msg + "\n")
    sys.exit(2)
"""


def _read_raw(path, index: Optional[int]):
    """(labels, per-recording times, per-recording units) read by h5py in a child process."""
    check_regular(path)
    try:
        import h5py  # noqa: F401  (fail here, with the usual ImportError, when it is missing)
    except ImportError as e:
        raise ImportError(f"{path}: reading SHD/SSC files needs h5py (pip install h5py)") from e
    limit = TIME_LIMIT_S + os.path.getsize(path) / (1 << 20)
    z = run_isolated(path, _CHILD, [path, -1 if index is None else index], "the HDF5 library", limit)
    nt, nu = z["nt"], z["nu"]
    times = np.split(z["t"], np.cumsum(nt)[:-1]) if nt.size else []
    units = np.split(z["u"], np.cumsum(nu)[:-1]) if nu.size else []
    return z["labels"], times, units


def read_shd(path) -> Tuple[list, np.ndarray]:
    """All recordings of an SHD/SSC HDF5 file: (list of event arrays, labels)."""
    labels, times, units = _read_raw(path, None)
    return [_recording(path, t, u, i) for i, (t, u) in enumerate(zip(times, units))], labels


def decode_shd_one(path, index: int) -> Decoded:
    labels, times, units = _read_raw(path, index)
    if not 0 <= index < len(labels):
        raise IndexError(f"{path}: recording index {index} out of range (file holds {len(labels)})")
    return Decoded(_recording(path, times[0], units[0], index), lambda i: None, (CHANNELS, 1))


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
