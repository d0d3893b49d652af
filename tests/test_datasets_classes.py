"""Dataset classes on small archives written here in each dataset's original layout: checksums,
extraction, decoding conventions, splits, frame caches keyed by parameters, atomic/failed builds."""
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastspike.datasets as D
from fastspike.datasets import EventFileError, MissingArchivesError, Resource, make_events, md5sum
from fastspike.datasets import formats as F


def _events(n, W, H, t_max=100000, seed=0, t0=0):
    rng = np.random.default_rng(seed)
    return make_events(t0 + np.sort(rng.integers(0, t_max, n)), rng.integers(0, W, n),
                       rng.integers(0, H, n), rng.integers(0, 2, n))


def _bytes(writer, ev, suffix, **kw):
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        writer(f.name, ev, **kw)
        return Path(f.name).read_bytes()


def _zip(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _trust(monkeypatch, cls, root):
    """Point the class's published md5s at the synthetic archives (so verification really runs)."""
    orig = cls.resource_url_md5

    def res(self_or_cls):
        rs = orig.__func__(self_or_cls) if hasattr(orig, "__func__") else orig(self_or_cls)
        return [Resource(r.file_name, r.url, md5sum(Path(root) / "download" / r.file_name) if
                         (Path(root) / "download" / r.file_name).exists() else r.md5, r.optional) for r in rs]

    monkeypatch.setattr(cls, "resource_url_md5", res)


KW = dict(num_workers=1, progress=False)


# ------------------------------------------------------------------------------------ missing archives
def test_missing_archives_are_listed_with_md5_and_destination(tmp_path):
    with pytest.raises(MissingArchivesError) as e:
        D.NMNIST(tmp_path, train=True, **KW)
    msg = str(e.value)
    for name, md5 in (("Train.zip", "20959b8e626244a1b502305a9e6e2031"),
                      ("Test.zip", "69ca8762b2fe404d9b9bad1103e97832")):
        assert f"{name}  md5 {md5}" in msg and str(tmp_path / "download" / name) in msg
    with pytest.raises(MissingArchivesError) as e:
        D.CIFAR10DVS(tmp_path, **KW)
    assert str(e.value).count(".zip  md5 ") == 10 and "0afd5c4bf9ae06af762a77b180354fdd" in str(e.value)
    with pytest.raises(MissingArchivesError, match="none published"):
        D.MNISTDVS(tmp_path, **KW)
    with pytest.raises(MissingArchivesError, match="navgesture-sit.zip  md5 1571753ace4d9e0946e6503313712c22"):
        D.NAVGesture(tmp_path, subset="sit", **KW)
    for cls in (D.DVS128Gesture, D.NCaltech101, D.ASLDVS, D.SHD, D.SSC, D.NCARS):
        with pytest.raises(MissingArchivesError):
            cls(tmp_path, **KW)
    assert not (tmp_path / "events_np").exists() and not (tmp_path / "extract").exists()


# ------------------------------------------------------------------------------------------ N-MNIST
def _nmnist_root(tmp_path, bad=None):
    recs = {}
    for split, zname, n in (("Train", "Train.zip", 6), ("Test", "Test.zip", 3)):
        members = {}
        for i in range(n):
            ev = _events(30 + i, 34, 34, seed=i + (100 if split == "Test" else 0))
            data = _bytes(F.write_atis_bin, ev, ".bin")
            if bad == (split, i):
                data = data[:-1]
            members[f"{split}/{i % 3}/{i:05d}.bin"] = data
            recs[(split, i)] = (ev, i % 3)
        _zip(tmp_path / "download" / zname, members)
    return recs


def test_nmnist_md5_verification(tmp_path):
    _nmnist_root(tmp_path)
    with pytest.raises(ValueError, match=r"Train\.zip: md5 [0-9a-f]{32} does not match the published "
                                         r"20959b8e626244a1b502305a9e6e2031"):
        D.NMNIST(tmp_path, **KW)
    assert not (tmp_path / "extract").exists()


def _same(a, b):
    for k in "txyp":
        np.testing.assert_array_equal(np.asarray(a[k], np.int64), np.asarray(b[k], np.int64), err_msg=k)


def test_nmnist_events_and_frames(tmp_path, monkeypatch):
    recs = _nmnist_root(tmp_path)
    _trust(monkeypatch, D.NMNIST, tmp_path)
    train = D.NMNIST(tmp_path, train=True, **KW)
    test = D.NMNIST(tmp_path, False, **KW)
    assert len(train) == 6 and len(test) == 3 and train.targets == [0, 0, 1, 1, 2, 2]  # DatasetFolder order
    assert train.classes == ["0", "1", "2"] and Path(train.samples[3][0]).name == "00004.npy"
    assert (tmp_path / "events_np" / "train" / "1" / "00004.npy").is_file()
    ev, label = train[3]
    ref, ref_label = recs[("Train", 4)]
    assert label == ref_label and isinstance(ev, dict) and ev["t"].dtype == np.int64
    _same(ev, ref)

    fr = D.NMNIST(tmp_path, True, "frame", 4, "number", **KW)
    x, _ = fr[3]
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, D.to_frames(ref, (34, 34), frames_number=4))
    assert (tmp_path / "frames_number_4_split_by_number" / "test" / "0").is_dir()
    fr8 = D.NMNIST(tmp_path, train=True, data_type="frame", frames_number=8, split_by="time", **KW)
    assert fr8[3][0].shape == (8, 2, 34, 34)  # another key, not the cached T=4 frames
    dur = D.NMNIST(tmp_path, train=False, data_type="frame", duration=20000, **KW)
    assert all(Path(p).stem.count("_") == 1 for p, _ in dur.samples)  # <name>_<T>.npy, as SpikingJelly
    xs, ys, lens = D.pad_sequence_collate([dur[0], dur[1], dur[2]])
    assert xs.shape[0] == 3 and xs.shape[2:] == (2, 34, 34) and lens.max() == xs.shape[1]

    def my_integrate(events, H, W):
        return np.array([[len(events["t"]), H, W]], np.float32)

    cu = D.NMNIST(tmp_path, train=True, data_type="frame", custom_integrate_function=my_integrate, **KW)
    assert cu[3][0].tolist() == [[34, 34, 34]]
    assert any(p.name.startswith("my_integrate_") for p in tmp_path.iterdir())
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_parallel_preprocessing_matches_serial(tmp_path, monkeypatch):
    _nmnist_root(tmp_path)
    _trust(monkeypatch, D.NMNIST, tmp_path)
    # chunk per file so two workers really share the work
    monkeypatch.setattr(D.n_mnist, "chunks", lambda items, n=64: [[it] for it in items])
    used = []
    real_ctx = D._cache._mp_context
    monkeypatch.setattr(D._cache, "_mp_context", lambda: used.append(1) or real_ctx())
    a = D.NMNIST(tmp_path, train=True, data_type="frame", frames_number=3, split_by="time",
                 num_workers=2, progress=False)
    b_root = tmp_path / "serial"
    b_root.mkdir()
    (b_root / "download").symlink_to(tmp_path / "download")
    b = D.NMNIST(b_root, train=True, data_type="frame", frames_number=3, split_by="time", **KW)
    assert len(used) == 2  # the events and the frames stages both ran in a process pool
    assert len(a) == len(b) == 6
    for i in range(6):
        np.testing.assert_array_equal(a[i][0], b[i][0])


def test_malformed_recording_leaves_no_cache(tmp_path, monkeypatch):
    _nmnist_root(tmp_path, bad=("Train", 2))
    _trust(monkeypatch, D.NMNIST, tmp_path)
    with pytest.raises(EventFileError, match=r"Train/2/00002\.bin at byte offset 155: truncated") as e:
        D.NMNIST(tmp_path, **KW)
    assert e.value.offset == 155  # 32 events * 5 bytes - 1: 31 whole events, then 4 stray bytes
    assert not (tmp_path / "events_np").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # repairing the extracted file lets the next run build the cache
    bad = tmp_path / "extract" / "Train" / "2" / "00002.bin"
    bad.write_bytes(bad.read_bytes()[:155])
    assert len(D.NMNIST(tmp_path, **KW)) == 6
    assert len(D.NMNIST(tmp_path, **KW)[0][0]["t"]) == 30


def test_interrupted_frame_build_keeps_only_complete_files(tmp_path, monkeypatch):
    _nmnist_root(tmp_path)
    _trust(monkeypatch, D.NMNIST, tmp_path)
    D.NMNIST(tmp_path, **KW)
    calls = {"n": 0}
    real = D._cache.atomic_save

    def flaky(path, arr):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(path, arr)

    monkeypatch.setattr(D._cache, "atomic_save", flaky)
    with pytest.raises(KeyboardInterrupt):
        D.NMNIST(tmp_path, data_type="frame", frames_number=2, split_by="number", **KW)
    fdir = tmp_path / "frames_number_2_split_by_number"
    done = sorted(p for p in fdir.rglob("*") if p.is_file())
    assert len(done) == 2 and all(p.suffix == ".npy" for p in done)
    monkeypatch.setattr(D._cache, "atomic_save", real)
    ds = D.NMNIST(tmp_path, data_type="frame", frames_number=2, split_by="number", **KW)
    assert len(list(p for p in fdir.rglob("*.npy"))) == 9 and ds[5][0].sum() == 35


def test_orphans_of_an_interrupted_build_are_removed_by_the_next(tmp_path, monkeypatch):
    _nmnist_root(tmp_path)
    _trust(monkeypatch, D.NMNIST, tmp_path)
    # what a SIGKILLed run leaves: a half-extracted directory, a half-decoded tree, half-written frames
    for name in (".extract.tmp-abc", ".events_np.tmp-def"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "junk.bin").write_bytes(b"x")
    D.NMNIST(tmp_path, **KW)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    fdir = tmp_path / "frames_number_2_split_by_number" / "train" / "0"
    fdir.mkdir(parents=True)
    (fdir / ".00000.npyab12.tmp").write_bytes(b"partial")
    ds = D.NMNIST(tmp_path, data_type="frame", frames_number=2, split_by="number", **KW)
    assert not list(fdir.parent.parent.rglob("*.tmp")) and len(ds) == 6


# ---------------------------------------------------------------------------------- DVS128 Gesture
def _gesture_root(tmp_path, csv_rows=None):
    members = {}
    rng = np.random.default_rng(0)
    for user, light in (("01", "fluorescent"), ("02", "led"), ("24", "lab")):
        ev = _events(600, 128, 128, t_max=60_000_000, seed=int(user), t0=1_000_000)
        members[f"DvsGesture/user{user}_{light}.aedat"] = _bytes(F.write_aedat31, ev, ".aedat", packet_size=100)
        rows = csv_rows or [(c, 2_000_000 + 5_000_000 * k, 6_000_000 + 5_000_000 * k)
                            for k, c in enumerate(rng.permutation(11)[:4] + 1)]
        members[f"DvsGesture/user{user}_{light}_labels.csv"] = (
            "class,startTime_usec,endTime_usec\n" + "".join(f"{c},{s},{e}\n" for c, s, e in rows)).encode()
    members["DvsGesture/trials_to_train.txt"] = b"user01_fluorescent.aedat\nuser02_led.aedat\n"
    members["DvsGesture/trials_to_test.txt"] = b"user24_lab.aedat\n"
    (tmp_path / "download").mkdir(parents=True)
    with tarfile.open(tmp_path / "download" / "DvsGesture.tar.gz", "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return members


def test_dvs128_gesture_segments(tmp_path, monkeypatch):
    members = _gesture_root(tmp_path)
    _trust(monkeypatch, D.DVS128Gesture, tmp_path)
    train = D.DVS128Gesture(tmp_path, train=True, **KW)
    test = D.DVS128Gesture(tmp_path, train=False, **KW)
    assert len(train) == 8 and len(test) == 4
    # SpikingJelly's DatasetFolder: 11 class folders in string order, so class folder '10' is label 2
    assert test.classes == ["0", "1", "10", "2", "3", "4", "5", "6", "7", "8", "9"]
    full = F.decode_aedat31("x", members["DvsGesture/user24_lab.aedat"])[0]
    rows = D.DVS128Gesture.read_labels(tmp_path / "extract" / "DvsGesture" / "user24_lab_labels.csv")
    seen = 0
    for (path, label), (ev, label2) in zip(test.samples, test):
        folder = Path(path).parent.name
        assert label == label2 == test.class_to_idx[folder]
        (_, c, s, e), = [r for r in rows if r[1] - 1 == int(folder)]
        assert Path(path).name == "user24_lab_0.npy"
        _same(ev, full[(full["t"] >= s) & (full["t"] < e)])
        seen += 1
    assert seen == 4


@pytest.mark.parametrize("rows,match", [
    ([(3, 2_000_000, 3_000_000), (12, 4_000_000, 5_000_000)], "line 3: class 12 outside 1..11"),
    ([(3, 2_000_000, 3_000_000), (4, 90_000_000, 95_000_000)], r"line 3: segment \[90000000, 95000000\) "
                                                               "of class 4 holds no events"),
    ([(3, 5_000_000, 4_000_000)], "line 2: end 4000000 <= start 5000000"),
])
def test_dvs128_gesture_label_file_disagreeing(tmp_path, monkeypatch, rows, match):
    _gesture_root(tmp_path, csv_rows=rows)
    _trust(monkeypatch, D.DVS128Gesture, tmp_path)
    with pytest.raises(EventFileError, match=r"user01_fluorescent_labels\.csv: " + match):
        D.DVS128Gesture(tmp_path, **KW)
    assert not (tmp_path / "events_np").exists()


# --------------------------------------------------------------------------------------- CIFAR10-DVS
def test_cifar10dvs_seeded_stratified_split(tmp_path, monkeypatch):
    raw = {}
    for k, c in enumerate(D.CIFAR10DVS_CLASS_NAMES):
        members = {}
        for i in range(10):
            ev = _events(20, 128, 128, seed=100 * k + i)
            raw[(c, i)] = ev
            members[f"{c}/cifar10_{c}_{i}.aedat"] = _bytes(F.write_aedat2, ev, ".aedat")
        _zip(tmp_path / "download" / f"{c}.zip", members)
    _trust(monkeypatch, D.CIFAR10DVS, tmp_path)
    tr = D.CIFAR10DVS(tmp_path, train=True, **KW)
    te = D.CIFAR10DVS(tmp_path, train=False, **KW)
    al = D.CIFAR10DVS(tmp_path, **KW)
    assert len(tr) == 90 and len(te) == 10 and len(al) == 100
    assert np.bincount(tr.targets).tolist() == [9] * 10 and np.bincount(te.targets).tolist() == [1] * 10
    assert not {s[0] for s in tr.samples} & {s[0] for s in te.samples}
    assert D.CIFAR10DVS(tmp_path, train=False, **KW).samples == te.samples
    assert D.CIFAR10DVS(tmp_path, train=False, split_seed=1, **KW).samples != te.samples
    f = Path(al.samples[0][0]).name  # airplane/cifar10_airplane_0.npy
    ev, label = al[0]
    ref = raw[("airplane", int(f.split("_")[-1][:-4]))]
    assert label == 0
    np.testing.assert_array_equal(ev["x"], 127 - ref["y"])
    np.testing.assert_array_equal(ev["y"], 127 - ref["x"])
    np.testing.assert_array_equal(ev["p"], 1 - ref["p"])


# -------------------------------------------------------------------------------------- SHD and SSC
def _h5_bytes(n, classes, seed):
    import tempfile

    recs = [_events(10 + i, 700, 1, t_max=900_000, seed=seed + i) for i in range(n)]
    for r in recs:
        r["y"], r["p"] = 0, 1
    labels = [i % classes for i in range(n)]
    with tempfile.NamedTemporaryFile(suffix=".h5") as f:
        F.write_shd(f.name, recs, labels)
        return Path(f.name).read_bytes(), recs, labels


def test_shd_and_ssc(tmp_path, monkeypatch):
    recs = {}
    for split, n in (("train", 5), ("test", 3)):
        data, recs[split], _ = _h5_bytes(n, 20, seed=n)
        _zip(tmp_path / "shd" / "download" / f"shd_{split}.h5.zip", {f"shd_{split}.h5": data})
    _trust(monkeypatch, D.SHD, tmp_path / "shd")
    tr = D.SHD(tmp_path / "shd", train=True, **KW)
    te = D.SHD(tmp_path / "shd", train=False, data_type="frame", frames_number=4, split_by="number", **KW)
    assert len(tr) == 5 and len(te) == 3 and tr.targets == [0, 1, 2, 3, 4]
    _same(tr[3][0], recs["train"][3])
    x, _ = te[2]
    assert x.shape == (4, 700) and x.sum() == 12
    monkeypatch.undo()  # SSC inherits SHD.resources: drop the SHD patch before patching SSC
    for split, n in (("train", 4), ("valid", 2), ("test", 3)):
        data, _, _ = _h5_bytes(n, 35, seed=n)
        _zip(tmp_path / "ssc" / "download" / f"ssc_{split}.h5.zip", {f"ssc_{split}.h5": data})
    _trust(monkeypatch, D.SSC, tmp_path / "ssc")
    assert [len(D.SSC(tmp_path / "ssc", split=s, **KW)) for s in ("train", "valid", "test")] == [4, 2, 3]
    assert len(D.SSC(tmp_path / "ssc", train=False, **KW)) == 3
    with pytest.raises(ValueError, match="split must be"):
        D.SSC(tmp_path / "ssc", split="dev", **KW)


# ------------------------------------------------------------------ ASL-DVS, NAVGesture, N-CARS, ...
def test_asldvs_nested_zips_and_convention(tmp_path, monkeypatch):
    inner = {}
    raw = {}
    for letter in ("a", "b", "y"):
        ev = _events(15, 240, 180, seed=ord(letter))
        raw[letter] = ev
        inner[f"{letter}.zip"] = _zip_bytes({f"{letter}/{letter}_0001.mat": _bytes(F.write_asl_mat, ev, ".mat")})
    _zip(tmp_path / "download" / "ICCV2019_DVS_dataset.zip", inner)
    ds = D.ASLDVS(tmp_path, **KW)  # no published md5: used unverified
    assert ds.targets == [0, 1, 2] and ds.classes == ["a", "b", "y"]  # the letters present, as SpikingJelly
    ev, _ = ds[2]
    np.testing.assert_array_equal(ev["x"], 239 - raw["y"]["x"])
    np.testing.assert_array_equal(ev["y"], 179 - raw["y"]["y"])


def test_navgesture_old_dat_convention(tmp_path, monkeypatch):
    ev = _events(50, 304, 240, seed=1, t0=5000)
    ev["t"][10] = 1  # a backwards timestamp: dropped
    inner = {"user01.zip": _zip_bytes({f"user01/user01_{c}_01_td.dat": _bytes(F.write_dat, ev, ".dat", layout="old")
                                       for c in ("ri", "do")})}
    _zip(tmp_path / "download" / "navgesture-walk.zip", inner)
    _trust(monkeypatch, D.NAVGesture, tmp_path)
    ds = D.NAVGesture(tmp_path, subset="walk", **KW)
    assert ds.targets == [0, 3]  # do, ri in sorted code order
    got, _ = ds[0]
    keep = np.ones(50, bool)
    keep[10] = False
    np.testing.assert_array_equal(got["t"], ev["t"][keep] - ev["t"][0])
    np.testing.assert_array_equal(got["y"], 239 - ev["y"][keep])
    assert ds.classes == ["do", "ho", "le", "ri", "se", "up"]  # every code folder, as SpikingJelly
    walk = D.NAVGestureWalk(tmp_path, **KW)  # SpikingJelly's name of the same dataset, same cache
    assert walk.samples == ds.samples


def test_ncars_and_mnistdvs(tmp_path, monkeypatch):
    inner = {}
    for split in ("train", "test"):
        inner[f"n-cars_{split}.zip"] = _zip_bytes({
            f"n-cars_{split}/{c}/obj_{i:06d}_td.dat": _bytes(F.write_dat, _events(12, 120, 100, seed=i), ".dat")
            for c in ("cars", "background") for i in range(2)})
    _zip(tmp_path / "nc" / "download" / "Prophesee_Dataset_n_cars.zip", inner)
    _trust(monkeypatch, D.NCARS, tmp_path / "nc")
    assert sorted(D.NCARS(tmp_path / "nc", train=True, **KW).targets) == [0, 0, 1, 1]
    assert len(D.NCARS(tmp_path / "nc", train=False, **KW)) == 4

    for d in range(10):
        _zip(tmp_path / "md" / "download" / f"grabbed_data{d}.zip", {
            f"grabbed_data{d}/scale{s}/mnist_{d}_scale{s:02d}_{i:04d}.aedat":
                _bytes(F.write_aedat2, _events(9, 128, 128, seed=d * 10 + i), ".aedat")
            for s in (4, 16) for i in range(1, 3)})
    ds4 = D.MNISTDVS(tmp_path / "md", scale=4, **KW)
    ds16 = D.MNISTDVS(tmp_path / "md", scale=16, train=True, **KW)  # ceil(2 * 0.9) = 2 per class
    assert len(ds4) == 20 and np.bincount(ds4.targets).tolist() == [2] * 10
    assert len(ds16) == 20 and all("scale16" in s[0] for s in ds16.samples)
    assert not any("scale16" in s[0] for s in ds4.samples)


def test_bad_constructor_arguments(tmp_path):
    with pytest.raises(ValueError, match="data_type"):
        D.NMNIST(tmp_path, data_type="video")
    with pytest.raises(ValueError, match="exactly one"):
        D.NMNIST(tmp_path, data_type="frame")
    with pytest.raises(ValueError, match="split_by"):
        D.NMNIST(tmp_path, data_type="frame", frames_number=4, split_by="count")
    with pytest.raises(ValueError, match="train must be"):
        D.NMNIST(tmp_path, train=None)
    with pytest.raises(ValueError, match="scale"):
        D.MNISTDVS(tmp_path, scale=5)
