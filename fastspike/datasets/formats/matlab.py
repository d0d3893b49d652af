"""ASL-DVS MATLAB ``.mat`` files (MATLAB v5): decoder and writer.

Column vectors ``x``, ``y``, ``ts`` (µs) and ``pol``, recorded on the 240x180 DAVIS240C: that is the
sensor every event is checked against.  Values are checked before any cast (NaN, fractions and values
outside the format's range are refused by name, never wrapped).  MATLAB v7.3 (HDF5-based) files are
not supported.

``scipy.io.loadmat`` segfaults on some corrupt files (found by the fuzz test), so files are read in a
child process, many per child (:func:`read_mats`; ASL-DVS has 100,800 files): a crash is retried file by
file to name the culprit, which becomes an EventFileError.
"""
from __future__ import annotations

import numpy as np

from ._common import Decoded, EventFileError, check_regular, columns, int_column, make_events, run_isolated

ASL_SENSOR = (240, 180)


_CHILD = r"""
import sys
import numpy as np
import scipy.io
res = {}
for k, p in enumerate(sys.argv[2:]):
    try:
        m = scipy.io.loadmat(p)
        for v in ("x", "y", "ts", "pol"):
            if v in m:
                res[f"{k}_{v}"] = np.asarray(m[v]).reshape(-1)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        res[f"{k}_error"] = np.array(f"not a readable MATLAB v5 file: {type(e).__name__}: {str(e)[:300]}")
np.savez(sys.argv[1], **res)
"""


def _columns(path, z: dict, k: int) -> Decoded:
    if f"{k}_error" in z:
        raise EventFileError(path, None, str(z[f"{k}_error"]))
    missing = [v for v in ("x", "y", "ts", "pol") if f"{k}_{v}" not in z]
    if missing:
        raise EventFileError(path, None, f"MATLAB file lacks variable(s) {missing}")
    t = int_column(path, "ts", z[f"{k}_ts"], 0, 2 ** 62)
    x = int_column(path, "x", z[f"{k}_x"], 0, ASL_SENSOR[0] - 1)
    y = int_column(path, "y", z[f"{k}_y"], 0, ASL_SENSOR[1] - 1)
    p = int_column(path, "pol", z[f"{k}_pol"], 0, 1)
    if len({t.size, x.size, y.size, p.size}) != 1:
        raise EventFileError(path, None, "variables x, y, ts, pol have different lengths")
    return Decoded(make_events(t, x, y, p), lambda i: None, ASL_SENSOR)


def read_mats(paths) -> list:
    """Decoded or EventFileError for each ASL-DVS ``.mat`` path, read in one child process (or one per
    file after a crash)."""
    paths = list(paths)
    for p in paths:
        check_regular(p)
    if not paths:
        return []
    try:
        z = run_isolated(paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)", _CHILD, paths,
                         "scipy.io.loadmat", 60 + 0.1 * len(paths))
    except EventFileError as e:
        if len(paths) == 1:
            return [EventFileError(paths[0], None, e.message)]
        return [r for p in paths for r in read_mats([p])]
    out = []
    for k, p in enumerate(paths):
        try:
            out.append(_columns(p, z, k))
        except EventFileError as e:
            out.append(e)
    return out


def decode_asl_mat(path) -> Decoded:
    r = read_mats([path])[0]
    if isinstance(r, EventFileError):
        raise r
    return r


def write_asl_mat(path, ev) -> None:
    """ASL-DVS layout: MATLAB v5 file with column vectors x, y, ts, pol."""
    import scipy.io

    t, x, y, p = columns(ev)
    scipy.io.savemat(path, {"x": x[:, None].astype(np.uint8), "y": y[:, None].astype(np.uint8),
                            "ts": t[:, None].astype(np.int32), "pol": p[:, None].astype(np.uint8)})
