"""SHD / SSC HDF5 files (many recordings per file): reader and writer.

Datasets ``spikes/times`` (variable-length float seconds), ``spikes/units`` (variable-length channel
numbers 0..699) and ``labels``.  Times become integer µs (rounded to nearest) so every recording shares
EVENT_DTYPE; ``x`` is the channel, ``y = 0``, ``p = 1``.  Every recording is checked: finite,
non-negative, non-decreasing times and channels inside the 700-channel sensor.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from ._common import Decoded, EventFileError, check_regular, int_column, make_events, third_party

CHANNELS = 700


def _recording(path, times, units, i) -> np.ndarray:
    tt = np.asarray(times, np.float64).reshape(-1)
    uu = np.asarray(units).reshape(-1)
    if tt.shape != uu.shape:
        raise EventFileError(path, None, f"recording {i}: {tt.size} times but {uu.size} units")
    if tt.size and not (np.isfinite(tt).all() and tt.min() >= 0 and tt.max() < 1e9):
        raise EventFileError(path, None, f"recording {i}: spike times must be finite seconds in [0, 1e9)")
    x = int_column(path, f"spikes/units[{i}]", uu, 0, CHANNELS - 1)
    return make_events(np.rint(tt * 1e6).astype(np.int64), x, 0, 1)


def _open(path):
    import h5py

    check_regular(path)
    return h5py.File(path, "r")


def read_shd(path) -> Tuple[list, np.ndarray]:
    """All recordings of an SHD/SSC HDF5 file: (list of event arrays, labels)."""
    with third_party(path, "reading the HDF5 file"), _open(path) as f:
        try:
            times, units, labels = f["spikes/times"], f["spikes/units"], np.asarray(f["labels"])
        except KeyError as e:
            raise EventFileError(path, None, f"HDF5 file lacks dataset {e}") from e
        if len(times) != len(units) or len(times) != len(labels):
            raise EventFileError(path, None, f"spikes/times ({len(times)}), spikes/units ({len(units)}) "
                                             f"and labels ({len(labels)}) disagree in length")
        out = [_recording(path, times[i], units[i], i) for i in range(len(times))]
    return out, labels


def decode_shd_one(path, index: int) -> Decoded:
    with third_party(path, "reading the HDF5 file"), _open(path) as f:
        try:
            n = len(f["labels"])
            ev = (_recording(path, f["spikes/times"][index], f["spikes/units"][index], index)
                  if 0 <= index < n else None)
        except KeyError as e:
            raise EventFileError(path, None, f"HDF5 file lacks dataset {e}") from e
    if ev is None:
        raise IndexError(f"{path}: recording index {index} out of range (file holds {n})")
    return Decoded(ev, lambda i: None, (CHANNELS, 1))


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
