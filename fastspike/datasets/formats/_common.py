"""What every event-file decoder shares: the event dtype, the error type, safe file reading, header
helpers, the sensor geometry a header names, and the validation of what a decoder returns.

Decoders return a :class:`Decoded` (events, a byte-offset function, the sensor the file itself names);
``read_events`` then calls :func:`validate` on it, so no decoder can return out-of-order timestamps,
negative times, polarities other than 0/1 or coordinates outside the sensor without saying so.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import warnings
from typing import Callable, NamedTuple, Optional, Sequence

import numpy as np

#: Field layout of every decoded recording (the fields tonic's transforms read, by name).
EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])


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


class Decoded(NamedTuple):
    """A decoder's result: events, ``offsets(i) -> byte offset of event i`` (or None), and the sensor
    ``(W, H)`` the file's header names (None when it names none)."""
    events: np.ndarray
    offsets: Callable
    sensor: Optional[tuple]


def no_offsets(i):
    return None


def make_events(t, x, y, p) -> np.ndarray:
    """Build an :data:`EVENT_DTYPE` array from four equally long sequences (scalars broadcast)."""
    t = np.asarray(t)
    ev = np.empty(t.shape[0], dtype=EVENT_DTYPE)
    ev["t"] = t
    ev["x"] = x
    ev["y"] = y
    ev["p"] = p
    return ev


# ------------------------------------------------------------------------------------- reading files
def _open_regular(path):
    """Open ``path`` for reading without blocking and refuse anything that is not a regular file
    (a FIFO would block forever, /dev/zero never ends, a directory or device is not a recording)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except IsADirectoryError:
        raise EventFileError(path, None, "is a directory, not an event file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = ("FIFO" if stat.S_ISFIFO(st.st_mode) else "character device" if stat.S_ISCHR(st.st_mode)
                else "block device" if stat.S_ISBLK(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode)
                else "directory" if stat.S_ISDIR(st.st_mode) else "special file")
        raise EventFileError(path, None, f"is a {kind}, not a regular file; event files are read only from "
                                         "regular files")
    return os.fdopen(fd, "rb")


def check_regular(path) -> None:
    """Raise EventFileError unless ``path`` is a regular file (used before handing a path to a library)."""
    _open_regular(path).close()


def read_head(path, n: int) -> bytes:
    with _open_regular(path) as f:
        return f.read(n)


def read_bytes(path) -> bytes:
    with _open_regular(path) as f:
        return f.read()


@contextlib.contextmanager
def third_party(path, what: str):
    """Turn any failure of a third-party reader into EventFileError, including non-``Exception``
    panics (pyo3's PanicException derives from BaseException); never KeyboardInterrupt/SystemExit."""
    try:
        yield
    except EventFileError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except MemoryError:
        raise
    except BaseException as e:
        raise EventFileError(path, None, f"{what} failed: {type(e).__name__}: {e}") from e


# ------------------------------------------------------------------------------------ header helpers
def skip_lines(data: bytes, prefix: bytes, start: int = 0) -> int:
    """Offset of the first byte after the leading lines that start with ``prefix``."""
    pos = start
    n = len(data)
    while pos < n and data[pos:pos + len(prefix)] == prefix:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return n
        pos = nl + 1
    return pos


def header_text(data: bytes, end: int) -> str:
    return data[:end].decode("latin-1")


def check_body(path, body_len: int, start: int, size: int, what: str):
    rem = body_len % size
    if rem:
        off = start + body_len - rem
        raise EventFileError(path, off, f"truncated {what}: {rem} trailing byte(s) do not form a whole "
                                        f"{size}-byte event")


#: sensors named in headers (chip or camera-plugin names, lower case) -> (W, H)
_SENSORS = (
    ("davis346", (346, 260)), ("davis240", (240, 180)), ("davis128", (128, 128)), ("davis640", (640, 480)),
    ("dvs128", (128, 128)), ("tmpdiff128", (128, 128)), ("dvxplorer_lite", (320, 240)),
    ("genx320", (320, 320)), ("imx636", (1280, 720)), ("imx646", (1280, 720)), ("gen41", (1280, 720)),
    ("gen4", (1280, 720)), ("gen31", (640, 480)), ("gen3", (640, 480)), ("atis", (304, 240)),
)


def sensor_from_header(text: str) -> Optional[tuple]:
    """The sensor a header names: explicit ``width=/height=``, ``% geometry WxH``, ``% Width``/``%
    Height`` lines, else a known chip / camera-plugin name; None when it names none."""
    low = text.lower()
    m_w = re.search(r"width\s*[=\s]\s*(\d+)", low)
    m_h = re.search(r"height\s*[=\s]\s*(\d+)", low)
    if m_w and m_h:
        return int(m_w.group(1)), int(m_h.group(1))
    m = re.search(r"geometry\s+(\d+)\s*x\s*(\d+)", low)
    if m:
        return int(m.group(1)), int(m.group(2))
    for name, size in _SENSORS:
        if re.search(name + r"(?![0-9])", low):
            return size
    return None


# --------------------------------------------------------------------------------------- validation
def check_range(ev: np.ndarray, sensor_size, path="<events>", offsets: Optional[Callable] = None):
    """Raise EventFileError when an event lies outside ``sensor_size = (W, H[, P])``."""
    W, H = int(sensor_size[0]), int(sensor_size[1])
    if ev.size == 0:
        return
    x, y = ev["x"], ev["y"]
    if x.min() >= 0 and x.max() < W and y.min() >= 0 and y.max() < H:  # reductions: no temporaries
        return
    bad = (x < 0) | (x >= W) | (y < 0) | (y >= H)
    i = int(np.argmax(bad))
    e = ev[i]
    raise EventFileError(path, _off(offsets, i), f"event {i} (x={int(e['x'])}, y={int(e['y'])}, "
                                                 f"t={int(e['t'])}) lies outside the {W}x{H} sensor "
                                                 f"({int(bad.sum())} such event(s))")


def _off(offsets, i):
    off = offsets(i) if offsets is not None else None
    return None if off is None else int(off)


def validate(dec: Decoded, path, sensor_size: Optional[Sequence[int]], strict: bool) -> np.ndarray:
    """Check what a decoder returned; ``sensor_size`` (the caller's) wins over the header's sensor.

    Refused by name (EventFileError with the event index and byte offset): a negative timestamp, a
    polarity other than 0/1, a coordinate outside the sensor.  Timestamps that decrease raise too, or
    with ``strict=False`` give a warning that says how many events are out of order."""
    ev, offsets = dec.events, dec.offsets
    if ev.size == 0:
        return ev
    t = ev["t"]
    if int(t.min()) < 0:
        i = int(np.argmax(t < 0))
        raise EventFileError(path, _off(offsets, i), f"event {i} has a negative timestamp t={int(t[i])} "
                                                     f"({int((t < 0).sum())} such event(s))")
    p = ev["p"]
    if (p.view(np.uint8) if p.dtype == np.int8 else p).max() > 1 or p.min() < 0:
        badp = (p != 0) & (p != 1)
        i = int(np.argmax(badp))
        raise EventFileError(path, _off(offsets, i), f"event {i} has polarity {int(p[i])}, expected 0 or 1 "
                                                     f"({int(badp.sum())} such event(s))")
    sensor = sensor_size if sensor_size is not None else dec.sensor
    if sensor is not None:
        check_range(ev, sensor, path, offsets)
    else:  # no sensor known: coordinates must at least be non-negative
        if ev["x"].min() < 0 or ev["y"].min() < 0:
            neg = (ev["x"] < 0) | (ev["y"] < 0)
            i = int(np.argmax(neg))
            raise EventFileError(path, _off(offsets, i), f"event {i} has a negative coordinate "
                                                         f"(x={int(ev['x'][i])}, y={int(ev['y'][i])})")
    back = t[1:] < t[:-1]
    if back.any():
        n = int(back.sum())
        i = int(np.argmax(back)) + 1
        msg = (f"timestamps decrease at {n} place(s); first at event {i} (t={int(t[i])} after "
               f"t={int(t[i - 1])})")
        if strict:
            raise EventFileError(path, _off(offsets, i), msg + "; pass strict=False to read them anyway")
        warnings.warn(f"{path}: {n} event(s) out of time order ({msg})", stacklevel=3)
    return ev


def int_column(path, name: str, values, lo: int, hi: int) -> np.ndarray:
    """A column from a container format (MATLAB, HDF5, npz) as int64, refusing NaN, fractions and
    values outside ``[lo, hi]`` by name (a plain cast would wrap them silently)."""
    a = np.asarray(values).reshape(-1)
    if a.dtype.kind == "b":
        a = a.astype(np.int64)
    if a.dtype.kind == "f":
        if a.size and not np.isfinite(a).all():
            raise EventFileError(path, None, f"column {name!r} holds NaN or infinite values")
        if a.size and (a != np.floor(a)).any():
            raise EventFileError(path, None, f"column {name!r} holds non-integer values")
    elif a.dtype.kind not in "iu":
        raise EventFileError(path, None, f"column {name!r} has dtype {a.dtype}, expected numbers")
    if a.size:
        amin, amax = a.min(), a.max()
        if amin < lo or amax > hi:
            raise EventFileError(path, None, f"column {name!r} holds values in [{amin}, {amax}], outside "
                                             f"the format's range [{lo}, {hi}]")
    return a.astype(np.int64)


def columns(ev):
    """(t, x, y, p) of an event array or dict as int64 arrays (what the writers encode)."""
    return (np.asarray(ev["t"], np.int64), np.asarray(ev["x"], np.int64),
            np.asarray(ev["y"], np.int64), np.asarray(ev["p"], np.int64))


# ------------------------------------------------------------------------------ isolated third parties
#: appended to every child script: report a failure on stderr, exit 2 (never unpickle, never raise out)
CHILD_ERROR = "FASTSPIKE-ERROR "


def run_isolated(path, code: str, args, what: str, limit: float) -> dict:
    """Run a third-party reader in a child process (``python -c code out *args``) that writes its arrays
    to the npz ``out``; return them.  Some readers hang or kill the process on corrupt files (the aedat
    package aborts, HDF5 loops forever, scipy.io.loadmat segfaults): a hang past ``limit`` seconds, a
    crash or a reported error is an EventFileError naming ``path``."""
    import signal
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fastspike-reader-") as tmp:
        out = os.path.join(tmp, "out.npz")
        env = dict(os.environ, RUST_BACKTRACE="0")
        try:
            argv = [str(os.fspath(a) if isinstance(a, os.PathLike) else a) for a in args]
            r = subprocess.run([sys.executable, "-c", code, out, *argv], capture_output=True, timeout=limit, env=env,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise EventFileError(path, None, f"{what} did not finish reading the file within {limit:.0f} s "
                                             "(a corrupt file can make it loop forever)") from None
        if r.returncode != 0:
            err = r.stderr.decode("utf-8", "replace")
            msg = err.rsplit(CHILD_ERROR, 1)[1].strip() if CHILD_ERROR in err else err.strip()[-300:]
            if r.returncode < 0:
                try:
                    sig = signal.Signals(-r.returncode).name
                except ValueError:
                    sig = f"signal {-r.returncode}"
                msg = f"{what} crashed its process ({sig}) on this file"
            raise EventFileError(path, None, f"reading failed: {msg}")
        with np.load(out, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
