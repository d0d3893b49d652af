"""Regression tests of issue 18 item 5: decoders validate what they return, refuse non-regular files,
turn third-party panics into EventFileError, match EVT versions exactly and decode EVT 2.1."""
import os
from pathlib import Path

import numpy as np
import pytest

from fastspike.datasets import EVENT_DTYPE, EventFileError, detect_format, make_events, read_events
from fastspike.datasets import formats as F

DATA = Path(os.environ.get("FASTSPIKE_NEURO_DATA", Path(__file__).resolve().parents[1] / "../shared/data/neuromorphic"))
if not DATA.is_dir():
    DATA = Path("/work/shared/data/neuromorphic")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="sample data folder not present")


def _events(n, W, H, t_max, seed=0):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, W, n), rng.integers(0, H, n),
                       rng.integers(0, 2, n))


def _same(a, b):
    for k in "txyp":
        np.testing.assert_array_equal(np.asarray(a[k], np.int64), np.asarray(b[k], np.int64), err_msg=k)


# ------------------------------------------------------------------------------------ non-regular files
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_refused_by_name_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.dat"
    os.mkfifo(fifo)
    with pytest.raises(EventFileError, match=r"pipe\.dat: is a FIFO, not a regular file"):
        detect_format(fifo)
    with pytest.raises(EventFileError, match="FIFO"):
        read_events(fifo, format="dat")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_link_and_directory_are_refused(tmp_path):
    link = tmp_path / "zero.bin"
    link.symlink_to("/dev/zero")
    for fmt in (None, "atis_bin", "aedat4", "shd_h5"):
        with pytest.raises(EventFileError, match="character device, not a regular file"):
            read_events(link, format=fmt, index=0)
    with pytest.raises(EventFileError, match="directory"):
        read_events(tmp_path, format="dat")


# ----------------------------------------------------------------------------------- third-party panics
class _FakePanic(BaseException):  # what pyo3's PanicException looks like to Python
    pass


def test_third_party_guard_converts_panics_but_not_interrupts():
    from fastspike.datasets.formats._common import third_party

    with pytest.raises(EventFileError, match="x.aedat4: decoding failed: _FakePanic: boom") as e:
        with third_party("x.aedat4", "decoding"):
            raise _FakePanic("boom")
    assert isinstance(e.value.__cause__, _FakePanic)
    for exc in (KeyboardInterrupt, SystemExit):
        with pytest.raises(exc):
            with third_party("x", "decoding"):
                raise exc()


@needs_data
@pytest.mark.parametrize("byte,match", [
    (21, "PanicException"),                      # aedat raises pyo3's PanicException (a BaseException)
    (1603, r"crashed its process \(SIGABRT\)"),  # aedat aborts the interpreter (a panic in a destructor)
    (14, "RuntimeError"),
])
def test_aedat4_library_failures_are_event_file_errors(tmp_path, byte, match):
    pytest.importorskip("aedat")
    data = bytearray((DATA / "aedat4_dvxplorer/sample.aedat4").read_bytes())
    data[byte] ^= 0xFF
    p = tmp_path / "bad.aedat4"
    p.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=match):
        read_events(p)


@needs_data
def test_truncated_aedat4_is_a_named_error(tmp_path):
    pytest.importorskip("aedat")
    data = (DATA / "aedat4_dvxplorer/sample.aedat4").read_bytes()
    p = tmp_path / "cut.aedat4"
    p.write_bytes(data[:len(data) // 2])
    with pytest.raises(EventFileError, match="AEDAT 4 decoding failed"):
        read_events(p)


# --------------------------------------------------------------------------- garbage that used to decode
def test_random_bytes_named_dat_do_not_decode_silently(tmp_path):
    p = tmp_path / "noise.dat"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(EventFileError, match="outside the 304x240 sensor|timestamps decrease"):
        read_events(p)  # header-less .dat: old ATIS layout, 304x240 sensor, random uint32 times


def test_out_of_order_timestamps_strict_and_warning(tmp_path):
    ev = _events(50, 34, 34, 10000)
    ev["t"][[10, 30]] = 0  # two backward jumps
    p = tmp_path / "r.bin"
    F.write_atis_bin(p, ev)
    with pytest.raises(EventFileError, match=r"byte offset 50: timestamps decrease at 2 place\(s\); first at event 10"):
        read_events(p)
    with pytest.warns(UserWarning, match=r"r\.bin: 2 event\(s\) out of time order"):
        got = read_events(p, strict=False)
    _same(got, ev)


def test_random_body_behind_valid_headers_is_refused(tmp_path):
    rng = np.random.default_rng(1)
    body = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    # N-MNIST: x/y up to 255 on a 34x34 sensor (the dataset passes its sensor)
    p = tmp_path / "n.bin"
    p.write_bytes(body[:4095])
    with pytest.raises(EventFileError, match="outside the 34x34 sensor"):
        read_events(p, sensor_size=(34, 34), strict=False)
    # DAT v2: polarity nibble 0..15
    p = tmp_path / "v2.dat"
    p.write_bytes(b"% Version 2\n" + bytes([0, 8]) + body)
    with pytest.raises(EventFileError, match=r"polarity \d+, expected 0 or 1"):
        read_events(p)
    # AEDAT 3.1: negative timestamps in a polarity packet
    ev = _events(20, 128, 128, 1000)
    p = tmp_path / "a.aedat"
    F.write_aedat31(p, ev, extra_packets=False)
    raw = bytearray(p.read_bytes())
    start = F.skip_lines(bytes(raw), b"#") + 28
    raw[start + 4 + 8 * 3:start + 8 + 8 * 3] = (-5).to_bytes(4, "little", signed=True)
    p.write_bytes(bytes(raw))
    with pytest.raises(EventFileError, match=r"event 3 has a negative timestamp t=-5"):
        read_events(p)


def test_header_sensor_is_enforced_and_caller_sensor_wins(tmp_path):
    ev = _events(40, 64, 48, 5000)
    ev["x"][7] = 100
    p = tmp_path / "g.raw"
    F.write_evt2(p, ev, sensor_size=(64, 48))
    with pytest.raises(EventFileError, match=r"event 7 .*outside the 64x48 sensor"):
        read_events(p)
    _same(read_events(p, sensor_size=(128, 48)), ev)
    # old-layout DAT is the ATIS 304x240 sensor; ASL-DVS .mat the 240x180 DAVIS240C
    ev = _events(30, 400, 200, 5000)
    p = tmp_path / "td.dat"
    F.write_dat(p, ev, layout="old")
    with pytest.raises(EventFileError, match="outside the 304x240 sensor"):
        read_events(p)


def test_matlab_values_are_checked_before_any_cast(tmp_path):
    import scipy.io

    p = tmp_path / "a.mat"
    scipy.io.savemat(p, {"x": np.array([[1.0], [np.nan]]), "y": np.zeros((2, 1)), "ts": np.array([[1], [2]]),
                         "pol": np.zeros((2, 1))})
    with pytest.raises(EventFileError, match="'x' holds NaN"):
        read_events(p)
    scipy.io.savemat(p, {"x": np.array([[1], [70000]]), "y": np.zeros((2, 1)), "ts": np.array([[1], [2]]),
                         "pol": np.zeros((2, 1))})
    with pytest.raises(EventFileError, match=r"'x' holds values in \[1, 70000\]"):
        read_events(p)


# ---------------------------------------------------------------------------------------- EVT versions
def test_evt_versions_are_matched_exactly(tmp_path):
    for line, fmt in ((b"% evt 2.0", "evt2"), (b"% evt 2.1", "evt21"), (b"% evt 3.0", "evt3"),
                      (b"% format EVT2;height=480;width=640", "evt2"),
                      (b"% format EVT21;height=720;width=1280", "evt21"),
                      (b"% format EVT3;height=720;width=1280", "evt3")):
        p = tmp_path / "v.raw"
        p.write_bytes(b"% Date 2024\n" + line + b"\n")
        assert detect_format(p) == fmt, line
    for line in (b"% evt 4.0", b"% format EVT4"):
        p.write_bytes(b"% Date 2024\n" + line + b"\n")
        with pytest.raises(EventFileError, match="unsupported Prophesee EVT encoding"):
            detect_format(p)


@pytest.mark.parametrize("layout", ["standard", "legacy"])
def test_evt21_round_trip_and_vectors(tmp_path, layout):
    ev = _events(3001, 1280, 720, 1 << 34, seed=5)
    # a run of neighbours on one row at one time: one vector word with several mask bits
    run = make_events(np.full(40, 7_000_000_000), np.arange(100, 140), 9, 1)
    ev = np.concatenate([ev[ev["t"] < 7_000_000_000], run, ev[ev["t"] > 7_000_000_000]])
    p = tmp_path / "rec.raw"
    F.write_evt21(p, ev, layout=layout, sensor_size=(1280, 720))
    assert detect_format(p) == "evt21"
    got = read_events(p)
    assert got.dtype == EVENT_DTYPE
    _same(got, ev)
    data = p.read_bytes()
    words = np.frombuffer(data[F.skip_lines(data, b"%"):], "<u4").reshape(-1, 2)
    head, mask = (words[:, 0], words[:, 1]) if layout == "legacy" else (words[:, 1], words[:, 0])
    bits = np.unpackbits(np.ascontiguousarray(mask).view(np.uint8)).reshape(-1, 32)
    assert int(bits.sum(1).max()) >= 20  # vector words used
    assert set((head >> 28).tolist()) == {0, 1, 8}
    # the other byte order gives other events: the halves really are swapped
    other = "standard" if layout == "legacy" else "legacy"
    with pytest.raises(EventFileError):
        read_events(p, layout=other)


def test_evt21_spec_bit_layout(tmp_path):
    # hand-built words from the specification: TIME_HIGH t[33:6] = 5; EVT_POS t[5:0] = 3, x = 64, y = 7,
    # mask bits 0 and 2 -> events (64, 7) and (66, 7) at t = 5 * 64 + 3
    th = (8 << 60) | (5 << 32)
    cd = (1 << 60) | (3 << 54) | (64 << 43) | (7 << 32) | 0b101
    p = tmp_path / "hand.raw"
    p.write_bytes(b"% evt 2.1\n" + np.array([th, cd], "<u8").tobytes())
    got = read_events(p)
    assert [tuple(int(e[k]) for k in "txyp") for e in got] == [(323, 64, 7, 1), (323, 66, 7, 1)]
    # events before the first TIME_HIGH have no known time: dropped
    p.write_bytes(b"% evt 2.1\n" + np.array([cd, th, cd], "<u8").tobytes())
    assert read_events(p).shape == (2,)


def test_hdf5_reader_hang_or_crash_is_a_named_error(tmp_path, monkeypatch):
    """The HDF5 library loops forever on some corrupt files (the fuzz test found one): files are read
    in a child process with a time limit."""
    from fastspike.datasets.formats import hdf5

    recs = [_events(10, 700, 1, 900_000, seed=i) for i in range(2)]
    for r in recs:
        r["y"], r["p"] = 0, 1
    p = tmp_path / "s.h5"
    F.write_shd(p, recs, [1, 2])
    _same(F.read_events(p, index=1), recs[1])
    monkeypatch.setattr(hdf5, "_CHILD", "import time; time.sleep(30)")
    monkeypatch.setattr(hdf5, "TIME_LIMIT_S", 1)
    with pytest.raises(EventFileError, match="did not finish reading the file within 1 s"):
        F.read_shd(p)
    monkeypatch.setattr(hdf5, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(EventFileError, match="crashed its process"):
        read_events(p, index=0)


def test_matlab_reader_crash_is_named_and_blamed_on_its_file(tmp_path, monkeypatch):
    """scipy.io.loadmat segfaults on some corrupt files (the fuzz test found two): many files are read
    in one child process; after a crash each is retried alone and the culprit gets the error."""
    from fastspike.datasets.formats import matlab

    paths = []
    for name in ("a.mat", "bad.mat", "c.mat"):
        p = tmp_path / name
        F.write_asl_mat(p, _events(5, 240, 180, 1000, seed=len(paths)))
        paths.append(p)
    real = matlab._CHILD
    crash = "import os, signal, sys\nif any('bad' in a for a in sys.argv[2:]): os.kill(os.getpid(), signal.SIGSEGV)\n"
    monkeypatch.setattr(matlab, "_CHILD", crash + real)
    res = matlab.read_mats(paths)
    assert [type(r).__name__ for r in res] == ["Decoded", "EventFileError", "Decoded"]
    assert "bad.mat" in str(res[1]) and "crashed its process (SIGSEGV)" in str(res[1])
    with pytest.raises(EventFileError, match=r"bad\.mat: reading failed: scipy\.io\.loadmat crashed"):
        F.read_asl_mats(paths)
    _same(F.read_asl_mats([paths[0]])[0], read_events(paths[0]))
