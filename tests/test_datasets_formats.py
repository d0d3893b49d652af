"""Decoders: the real sample files (expected values from ../shared/data/neuromorphic/README.md),
round trips through files written per each specification, and malformed input."""
import os
from pathlib import Path

import numpy as np
import pytest

from fastspike.datasets import (EVENT_DTYPE, CIFAR10DVS, MNISTDVS, EventFileError, detect_format,
                                make_events, read_events, read_shd)
from fastspike.datasets import formats as F

DATA = Path(os.environ.get("FASTSPIKE_NEURO_DATA", Path(__file__).resolve().parents[1] / "../shared/data/neuromorphic"))
if not DATA.is_dir():  # the repository's sibling shared/ folder (CI), else this workplace's copy
    DATA = Path("/work/shared/data/neuromorphic")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="sample data folder not present")

# file: (format, n, first 3 (x,y,t,p), last, (sum x, sum y, sum t or sum(t - t_min)), (p0, p1), t_rel)
EXPECTED = {
    "nmnist/sample_nmnist.bin": ("atis_bin", 4325, [(7, 15, 654, 1), (19, 18, 2999, 0), (21, 17, 3017, 0)],
                                 (21, 14, 311175, 1), (74457, 71931, 690487405), (2180, 2145), False),
    "nmnist/1.bs2": ("atis_bin", 4681, [(18, 16, 893, 1), (20, 17, 1060, 1), (17, 9, 2443, 0)],
                     (10, 10, 305924, 0), (76115, 82306, 625535240), (2353, 2328), False),
    "mnist_dvs/mnist_0_scale04_0001.aedat": ("aedat2", 15744, [(72, 67, 0, 0), (66, 59, 85, 0), (77, 58, 140, 0)],
                                             (64, 61, 2210588, 1), (1053121, 987962, 16402402820), (7870, 7874), False),
    "ncars/sample_ncars.dat": ("dat", 2009, [(25, 8, 0, 0), (67, 35, 35, 0), (56, 27, 152, 1)],
                               (75, 28, 99952, 1), (93457, 40463, 98196680), (659, 1350), False),
    "ncars/NCARS_obj_004397_td.dat": ("dat", 4407, [(6, 18, 0, 1), (42, 35, 66, 0), (38, 19, 89, 0)],
                                      (48, 47, 99937, 1), (108033, 134194, 239318661), (2736, 1671), False),
    "prophesee_evt/evt2_sample.raw": ("evt2", 539481, [(237, 121, 1317888, 1), (246, 121, 1317888, 1),
                                                       (248, 132, 1317888, 1)],
                                      (210, 142, 1367888, 1), (171811022, 110162026, 724340275912),
                                      (171626, 367855), False),
    "prophesee_evt/evt3_sample.raw": ("evt3", 219596, [(874, 200, 11718656, 0), (806, 200, 11718656, 1),
                                                       (882, 201, 11718656, 0)],
                                      (1218, 572, 11727457, 1), (159113225, 85638051, 2574324900467),
                                      (104064, 115532), False),
    "prophesee_evt/evt3_test_pedestrians.raw": ("evt3", 5000, [(707, 297, 5840504, 0), (592, 301, 5840507, 0),
                                                               (997, 313, 5840511, 0)],
                                                (598, 260, 5885714, 0), (3415152, 1425333, 29310165280),
                                                (2106, 2894), False),
    "aedat4_dvxplorer/sample.aedat4": ("aedat4", 111954, [(154, 204, 1605537493718345, 0),
                                                          (149, 206, 1605537493718348, 0),
                                                          (148, 199, 1605537493718349, 1)],
                                       (88, 237, 1605537494308262, 1), (18342405, 15105898, 31685685498),
                                       (56931, 55023), True),
}


def _tup(e):
    return (int(e["x"]), int(e["y"]), int(e["t"]), int(e["p"]))


@needs_data
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_sample_files(name):
    fmt, n, first, last, sums, pcounts, t_rel = EXPECTED[name]
    if fmt == "aedat4":
        pytest.importorskip("aedat")
    path = DATA / name
    assert detect_format(path) == fmt
    ev = read_events(path)
    assert ev.dtype == EVENT_DTYPE
    assert ev.shape == (n,)
    assert [_tup(e) for e in ev[:3]] == first
    assert _tup(ev[-1]) == last
    t = ev["t"] - (ev["t"].min() if t_rel else 0)
    assert (int(ev["x"].astype(np.int64).sum()), int(ev["y"].astype(np.int64).sum()), int(t.sum())) == sums
    assert (int((ev["p"] == 0).sum()), int((ev["p"] == 1).sum())) == pcounts
    assert np.all(np.diff(ev["t"]) >= 0)
    assert read_events(path, format=fmt).tobytes() == ev.tobytes()  # named format == detected


@needs_data
def test_aedat2_header_only_file_has_no_events():
    path = DATA / "aedat2_header_only/sample_aedat_header.aedat"
    data = path.read_bytes()
    assert F.skip_lines(data, b"#") == 599 == len(data)  # data start is EOF (tonic says 598)
    ev = read_events(path)
    assert ev.dtype == EVENT_DTYPE and ev.shape == (0,)


@needs_data
def test_mnist_dvs_conventions():
    path = DATA / "mnist_dvs/mnist_0_scale04_0001.aedat"
    ev = read_events(path)
    addr = np.frombuffer(path.read_bytes()[216:], dtype=">u4")[0::2].astype(np.int64)
    assert int(addr.sum()) == 255032388  # README's address sum: the header length is right
    sj = CIFAR10DVS.convert(ev)
    assert [_tup(e) for e in sj[:3]] == [(60, 55, 0, 1), (68, 61, 85, 1), (69, 50, 140, 1)]
    (rel, jaer), = MNISTDVS._decode_job([(str(path), "0/x")])
    assert [_tup(e) for e in jaer[:3]] == [(55, 67, 0, 1), (61, 59, 85, 1), (50, 58, 140, 1)]


@needs_data
def test_evt3_time_low_wrap_follows_the_spec():
    # README §5: pedestrians word 177 onward gives 5840895 then 5840909 (expelliarmus: 5845005)
    ev = read_events(DATA / "prophesee_evt/evt3_test_pedestrians.raw")
    t = ev["t"]
    i = int(np.nonzero(t == 5840895)[0][-1])
    assert int(t[i + 1]) == 5840909
    assert int(np.diff(t).max()) == 86
    assert int(np.diff(read_events(DATA / "prophesee_evt/evt3_sample.raw")["t"]).max()) == 1


@needs_data
def test_peer_readers_agree():
    tonic_io = pytest.importorskip("tonic.io")
    dt = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    for name in ("nmnist/sample_nmnist.bin", "nmnist/1.bs2"):
        ref = tonic_io.read_mnist_file(str(DATA / name), dtype=dt)
        ev = read_events(DATA / name)
        for k in "txyp":
            np.testing.assert_array_equal(ev[k], ref[k])


@needs_data
def test_aedat4_matches_aedat_library():
    aedat = pytest.importorskip("aedat")
    path = DATA / "aedat4_dvxplorer/sample.aedat4"
    ref = np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p])
    ev = read_events(path)
    np.testing.assert_array_equal(ev["t"], ref["t"].astype(np.int64))
    np.testing.assert_array_equal(ev["p"], ref["on"].astype(np.int8))


# ---------------------------------------------------------------------------------------- round trips
def _random_events(n, W, H, t_max, seed=0, ppos=2):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, ppos, n))


def _same(a, b):
    for k in "txyp":
        np.testing.assert_array_equal(np.asarray(a[k], np.int64), np.asarray(b[k], np.int64), err_msg=k)


@pytest.mark.parametrize("fmt,writer,W,H,t_max,ext", [
    ("atis_bin", F.write_atis_bin, 34, 34, 1 << 23, ".bin"),
    ("aedat2", F.write_aedat2, 128, 128, 1 << 32, ".aedat"),
    ("aedat31", F.write_aedat31, 128, 128, 1 << 31, ".aedat"),
    ("dat", F.write_dat, 304, 240, 1 << 32, ".dat"),
    ("evt2", F.write_evt2, 640, 480, 1 << 34, ".raw"),
    ("evt3", F.write_evt3, 1280, 720, 60_000_000, ".raw"),  # crosses the 2**24 µs wrap 3 times
])
def test_round_trip(tmp_path, fmt, writer, W, H, t_max, ext):
    ev = _random_events(3001, W, H, t_max)
    path = tmp_path / f"rec{ext}"
    writer(path, ev)
    assert detect_format(path) == fmt
    _same(read_events(path, sensor_size=(W, H)), ev)


def test_aedat31_overflow_and_skipped_packets(tmp_path):
    ev = _random_events(500, 128, 128, 1 << 31, seed=1)
    ev["t"] += 3 << 31
    path = tmp_path / "gesture.aedat"
    F.write_aedat31(path, ev, packet_size=97, ts_overflow=3)
    _same(read_events(path), ev)


def test_dat_old_layout_round_trip(tmp_path):
    ev = _random_events(777, 304, 240, 1 << 30, seed=2)
    path = tmp_path / "navgesture_td.dat"
    F.write_dat(path, ev, layout="old")
    assert b"Version" not in path.read_bytes()[:200]
    _same(read_events(path), ev)
    # the same bytes read with the v2 layout give different coordinates (the layouts really differ)
    assert not np.array_equal(read_events(path, layout="v2")["y"], ev["y"])


def test_evt3_vector_words(tmp_path):
    # runs of neighbouring x on one row at one time are written as VECT_BASE_X + VECT_12/VECT_8
    rows = []
    for k, run in enumerate((3, 8, 9, 12, 13, 20, 1, 2)):
        rows += [(1000 + k, 10 + j, 5 + k, k % 2) for j in range(run)]
    t, x, y, p = map(np.array, zip(*rows))
    ev = make_events(t, x, y, p)
    path = tmp_path / "vec.raw"
    F.write_evt3(path, ev)
    words = np.frombuffer(path.read_bytes()[F.skip_lines(path.read_bytes(), b"%"):], "<u2")
    assert {3, 4, 5} <= set((words >> 12).tolist())
    _same(read_events(path), ev)


def test_shd_round_trip(tmp_path):
    recs = [_random_events(n, 700, 1, 1_000_000, seed=n, ppos=1) for n in (5, 0, 40)]
    for r in recs:
        r["y"], r["p"] = 0, 1
    path = tmp_path / "shd_test.h5"
    F.write_shd(path, recs, [3, 0, 19])
    assert detect_format(path) == "shd_h5"
    got, labels = read_shd(path)
    assert labels.tolist() == [3, 0, 19]
    for a, b in zip(got, recs):
        _same(a, b)
    _same(read_events(path, index=2), recs[2])
    with pytest.raises(ValueError, match="index="):
        read_events(path)


def test_asl_mat_round_trip(tmp_path):
    ev = _random_events(321, 240, 180, 1 << 30, seed=3)
    path = tmp_path / "a_0001.mat"
    F.write_asl_mat(path, ev)
    assert detect_format(path) == "asl_mat"
    _same(read_events(path), ev)


# ------------------------------------------------------------------------------------------ malformed
def _write(path, data):
    Path(path).write_bytes(data)
    return path


def test_truncated_files_name_the_byte_offset(tmp_path):
    ev = _random_events(10, 34, 34, 1000)
    p = tmp_path / "a.bin"
    F.write_atis_bin(p, ev)
    _write(p, p.read_bytes()[:-2])
    with pytest.raises(EventFileError, match=r"a\.bin at byte offset 45: truncated") as e:
        read_events(p)
    assert e.value.offset == 45 and e.value.path == str(p)

    p = tmp_path / "b.aedat"
    F.write_aedat2(p, ev)
    head = F.skip_lines(p.read_bytes(), b"#")
    _write(p, p.read_bytes()[:-3])
    with pytest.raises(EventFileError, match=f"byte offset {head + 9 * 8}"):
        read_events(p)

    p = tmp_path / "c.aedat"
    F.write_aedat31(p, ev, extra_packets=False)
    head = F.skip_lines(p.read_bytes(), b"#")
    _write(p, p.read_bytes()[:-1])
    with pytest.raises(EventFileError, match=f"byte offset {head}: truncated AEDAT 3.1 packet"):
        read_events(p)

    for writer, name in ((F.write_dat, "d.dat"), (F.write_evt2, "e.raw"), (F.write_evt3, "f.raw")):
        p = tmp_path / name
        writer(p, ev)
        _write(p, p.read_bytes() + b"\x01")
        with pytest.raises(EventFileError, match="truncated"):
            read_events(p)


def test_bad_magic_and_unknown_formats(tmp_path):
    with pytest.raises(EventFileError, match=r"x\.aedat4 at byte offset 0: bad magic"):
        read_events(_write(tmp_path / "x.aedat4", b"hello world, not aedat"))
    with pytest.raises(EventFileError, match="cannot detect"):
        read_events(_write(tmp_path / "x.unknown", b"\x00\x01\x02"))
    with pytest.raises(EventFileError, match="bad magic"):
        F.decode_aedat31(tmp_path / "y.aedat", b"#!AER-DAT2.0\r\n")
    p = _write(tmp_path / "z.aedat", b"#!AER-DAT3.1\r\n#!END-HEADER\r\n" + b"\x01\x00" + b"\xff" * 26)
    with pytest.raises(EventFileError, match="corrupt AEDAT 3.1 packet header"):
        read_events(p)
    with pytest.raises(EventFileError, match="not a readable MATLAB"):
        read_events(_write(tmp_path / "m.mat", b"MATLAB 5.0 MAT-file garbage"))
    with pytest.raises(ValueError, match="format must be one of"):
        read_events(tmp_path / "m.mat", format="nope")


def test_out_of_range_coordinates_name_the_event_offset(tmp_path):
    ev = _random_events(20, 30, 30, 1000)
    ev["x"][7] = 40
    p = tmp_path / "r.aedat"
    F.write_aedat2(p, ev)
    head = F.skip_lines(p.read_bytes(), b"#")
    with pytest.raises(EventFileError, match=f"byte offset {head + 7 * 8}: event 7 .*x=40.*outside the 34x34"):
        read_events(p, sensor_size=(34, 34))
    p = tmp_path / "r.raw"
    F.write_evt3(p, ev)
    with pytest.raises(EventFileError, match="event 7") as e:
        read_events(p, sensor_size=(34, 34))
    data = p.read_bytes()
    word = int.from_bytes(data[e.value.offset:e.value.offset + 2], "little")
    assert word >> 12 == 2 and word & 0x7FF == 40  # the offset points at the ADDR_X word of that event


def test_error_survives_pickling():
    import pickle

    e = pickle.loads(pickle.dumps(EventFileError("f.bin", 10, "boom")))
    assert isinstance(e, EventFileError) and e.offset == 10 and "f.bin at byte offset 10: boom" in str(e)
