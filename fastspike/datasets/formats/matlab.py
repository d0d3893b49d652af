"""ASL-DVS MATLAB ``.mat`` files (MATLAB v5): decoder and writer.

Column vectors ``x``, ``y``, ``ts`` (µs) and ``pol``, recorded on the 240x180 DAVIS240C: that is the
sensor every event is checked against.  Values are checked before any cast (NaN, fractions and values
outside the format's range are refused by name, never wrapped).  MATLAB v7.3 (HDF5-based) files are
not supported.
"""
from __future__ import annotations

import io

import numpy as np

from ._common import Decoded, EventFileError, columns, int_column, make_events, third_party

ASL_SENSOR = (240, 180)


def decode_asl_mat(path, data: bytes) -> Decoded:
    import scipy.io

    with third_party(path, "reading the MATLAB file"):
        try:
            m = scipy.io.loadmat(io.BytesIO(data))
        except Exception as e:
            raise EventFileError(path, None, f"not a readable MATLAB v5 file: {e}") from e
    missing = [k for k in ("x", "y", "ts", "pol") if k not in m]
    if missing:
        raise EventFileError(path, None, f"MATLAB file lacks variable(s) {missing}")
    t = int_column(path, "ts", m["ts"], 0, 2 ** 62)
    x = int_column(path, "x", m["x"], 0, ASL_SENSOR[0] - 1)
    y = int_column(path, "y", m["y"], 0, ASL_SENSOR[1] - 1)
    p = int_column(path, "pol", m["pol"], 0, 1)
    if len({t.size, x.size, y.size, p.size}) != 1:
        raise EventFileError(path, None, "variables x, y, ts, pol have different lengths")
    return Decoded(make_events(t, x, y, p), lambda i: None, ASL_SENSOR)


def write_asl_mat(path, ev) -> None:
    """ASL-DVS layout: MATLAB v5 file with column vectors x, y, ts, pol."""
    import scipy.io

    t, x, y, p = columns(ev)
    scipy.io.savemat(path, {"x": x[:, None].astype(np.uint8), "y": y[:, None].astype(np.uint8),
                            "ts": t[:, None].astype(np.int32), "pol": p[:, None].astype(np.uint8)})
