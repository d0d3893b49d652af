"""Datasets released as numpy files (DVS-Lip, HARDVS, ES-ImageNet, Bullying10K): one reader with the
same validation as every other format.

* ``.npy`` structured arrays with fields ``t, x, y, p`` (DVS-Lip), or ``.npz`` with those keys (HARDVS);
* ``.npz`` with ``pos`` / ``neg`` arrays of rows ``(y, x, t)`` (ES-ImageNet; p = 1 / 0), merged and
  sorted by time (a stable sort: SpikingJelly's default sort may order equal times differently);
* ``.npy`` object arrays of per-chunk ``(t, x, y, p)`` rows (Bullying10K), which ``np.load`` would only
  read by unpickling: here a restricted unpickler builds numpy arrays and nothing else, so a file that
  tries to run code is refused (EventFileError), never executed.
"""
from __future__ import annotations

import io
import pickle

import numpy as np

from ._common import Decoded, EventFileError, int_column, make_events, read_bytes, third_party

_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays may be unpickled")


def _load(path, data: bytes):
    """np.load without arbitrary unpickling; object arrays go through the restricted unpickler."""
    if data.startswith(b"PK"):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if not dtype.hasobject:
        return np.load(io.BytesIO(data), allow_pickle=False)
    try:
        arr = _ArraysOnly(f).load()
    except Exception as e:
        raise EventFileError(path, f.tell(), f"object array that cannot be read safely: {e}") from e
    if not isinstance(arr, np.ndarray):
        raise EventFileError(path, None, f"expected a numpy object array, got {type(arr).__name__}")
    return arr


def _rows(path, arr) -> np.ndarray:
    """Flatten an object array of chunks into an [N, 4] array of (t, x, y, p) rows."""
    parts = []
    for chunk in arr.reshape(-1):
        a = np.asarray(chunk)
        if a.dtype.names:
            a = np.stack([a[n] for n in a.dtype.names[:4]], axis=-1)
        if a.dtype.hasobject:
            a = np.asarray(a.tolist())
        if a.size == 0:
            continue
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] < 4:
            raise EventFileError(path, None, f"chunk of shape {a.shape}: expected rows of (t, x, y, p)")
        parts.append(a[:, :4])
    return np.concatenate(parts) if parts else np.zeros((0, 4))


def decode_numpy_events(path, sensor) -> Decoded:
    """Events of a released numpy file (see the module docstring), checked against ``sensor`` (W, H)."""
    W, H = sensor
    with third_party(path, "reading the numpy file"):
        try:
            obj = _load(path, read_bytes(path))
        except (ValueError, OSError, EOFError) as e:
            raise EventFileError(path, None, f"not a readable .npy/.npz file: {e}") from e
    if isinstance(obj, dict) and {"pos", "neg"} <= set(obj):
        cols = []
        for key, pol in (("pos", 1), ("neg", 0)):
            a = np.asarray(obj[key])
            if a.ndim != 2 or a.shape[1] < 3:
                raise EventFileError(path, None, f"{key!r} has shape {a.shape}, expected rows of (y, x, t)")
            cols.append((a[:, 2], a[:, 1], a[:, 0], np.full(a.shape[0], pol)))
        t, x, y, p = (np.concatenate([c[i] for c in cols]) for i in range(4))
    elif isinstance(obj, dict) or (isinstance(obj, np.ndarray) and obj.dtype.names):
        names = set(obj) if isinstance(obj, dict) else set(obj.dtype.names)
        if not {"t", "x", "y", "p"} <= names:
            raise EventFileError(path, None, f"fields {sorted(names)} lack one of t, x, y, p")
        t, x, y, p = obj["t"], obj["x"], obj["y"], obj["p"]
    elif isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        r = _rows(path, obj)
        t, x, y, p = r[:, 0], r[:, 1], r[:, 2], r[:, 3]
    else:
        raise EventFileError(path, None, "expected t, x, y, p fields, pos/neg arrays or an object array of events")
    t = int_column(path, "t", t, 0, 2 ** 62)
    ev = make_events(t, int_column(path, "x", x, 0, W - 1), int_column(path, "y", y, 0, H - 1),
                     int_column(path, "p", p, 0, 1))
    if isinstance(obj, dict) and "pos" in obj:
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return Decoded(ev, lambda i: None, (W, H))
