"""SpikingJelly 2.0's ``spikingjelly.datasets`` at ``fastspike.datasets`` (issue 20): every public name at
the same module path, SpikingJelly's signatures, SpikingJelly's numbers (peers tests), and the classes
that need a download, on synthetic files written here in each dataset's released layout."""
import ast
import importlib
import inspect
import io
import os
import sys
import types
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import fastspike.datasets as D
from fastspike.datasets import EventFileError, make_events
from fastspike.datasets import formats as F

KW = dict(num_workers=1, progress=False)

# Public names of SpikingJelly 2.0.0's spikingjelly/datasets/<module>.py (module-level defs, classes and
# assignments without a leading underscore), generated once from its source with ast;
# test_name_list_matches_spikingjelly_source re-derives it when SpikingJelly is installed.
SJ_NAMES = {
    "asl_dvs": ["ASLDVS"],
    "base": ["NeuromorphicDatasetConfig", "NeuromorphicDatasetBuilder", "EventBuilder", "FrameFixedNumberBuilder",
             "FrameFixedDurationBuilder", "FrameCustomIntegrateBuilder", "NeuromorphicDatasetFolder"],
    "bullying10k": ["BULLYING10K_CATEGORY_LABEL", "Bullying10kClassification"],
    "cifar10_dvs": ["CIFAR10DVS_CLASS_NAMES", "EVT_DVS", "EVT_APS", "y_mask", "y_shift", "x_mask", "x_shift",
                    "polarity_mask", "polarity_shift", "valid_mask", "valid_shift", "CIFAR10DVS",
                    "CIFAR10DVSTEBNSplit"],
    "dvs128_gesture": ["DVS128Gesture"],
    "dvs_lip": ["DVSLip"],
    "es_imagenet": ["ESImageNetEventBuilder", "ESImageNetFrameFixedNumberBuilder",
                    "ESImageNetFrameFixedDurationBuilder", "ESImageNetFrameCustomIntegrateBuilder", "ESImageNet"],
    "hardvs": ["HARDVS"],
    "n_caltech101": ["NCaltech101"],
    "n_mnist": ["NMNIST"],
    "nav_gesture": ["NAVGestureWalk", "NAVGestureSit"],
    "shd": ["SHD_N_CLASSES", "SSC_N_CLASSES", "SHDFrameFixedNumberBuilder", "SHDFrameFixedDurationBuilder",
            "SHDFrameCustomIntegrateBuilder", "SpikingHeidelbergDigits", "SpikingSpeechCommands"],
    "speechcommands": ["FOLDER_IN_ARCHIVE", "URL", "HASH_DIVIDER", "EXCEPT_FOLDER", "VAL_RECORD", "TEST_RECORD",
                       "TRAIN_RECORD", "SpeechCommands", "SPEECHCOMMANDS"],
    "transform": ["random_temporal_delete", "RandomTemporalDelete"],
    "utils": ["np_savez", "save_as_pic", "play_frame", "load_aedat_v3", "load_ATIS_bin", "load_npz_frames",
              "integrate_events_segment_to_frame", "cal_fixed_frames_number_segment_index",
              "integrate_events_by_fixed_frames_number", "integrate_events_file_to_frames_file_by_fixed_frames_number",
              "integrate_events_by_fixed_duration", "integrate_events_file_to_frames_file_by_fixed_duration",
              "create_same_directory_structure", "split_to_train_test_set", "pad_sequence_collate",
              "padded_sequence_mask", "create_sub_dataset"],
}
# what `from .<module> import *` brings to spikingjelly.datasets (each module's __all__)
SJ_TOP = {"ASLDVS", "BULLYING10K_CATEGORY_LABEL", "Bullying10kClassification", "CIFAR10DVS_CLASS_NAMES", "CIFAR10DVS",
          "CIFAR10DVSTEBNSplit", "DVSLip", "DVS128Gesture", "ESImageNet", "HARDVS", "NCaltech101", "NMNIST",
          "NAVGestureWalk", "NAVGestureSit", "SHD_N_CLASSES", "SpikingHeidelbergDigits", "SSC_N_CLASSES",
          "SpikingSpeechCommands", "SpeechCommands", "SPEECHCOMMANDS", "random_temporal_delete", "RandomTemporalDelete",
          *SJ_NAMES["base"], *SJ_NAMES["utils"]}


def test_every_spikingjelly_name_exists_at_the_same_path():
    missing = [f"{m}.{n}" for m, names in SJ_NAMES.items() for n in names
               if not hasattr(importlib.import_module(f"fastspike.datasets.{m}"), n)]
    missing += [n for n in SJ_TOP if not hasattr(D, n)]
    assert not missing, missing


# ------------------------------------------------------------------------------- SpikingJelly (peers)
def _spikingjelly_datasets(monkeypatch):
    """Import spikingjelly.datasets with a stand-in for torchvision/torchaudio (they do not load beside
    this torch; SpikingJelly's datasets only import helper names from them).  The stand-in lives in
    sys.modules only for the test (monkeypatch), so other test files see the real state."""
    pytest.importorskip("spikingjelly")
    if "spikingjelly.datasets" in sys.modules:
        return sys.modules["spikingjelly.datasets"]
    try:
        import torchvision.datasets.utils  # noqa: F401
    except Exception:
        tv = types.ModuleType("torchvision")
        tvd = types.ModuleType("torchvision.datasets")
        tvu = types.ModuleType("torchvision.datasets.utils")
        tvt = types.ModuleType("torchvision.transforms")
        for name in ("check_integrity", "download_url", "extract_archive", "verify_str_arg"):
            setattr(tvu, name, lambda *a, **k: None)
        tvd.DatasetFolder = type("DatasetFolder", (torch.utils.data.Dataset,), {})
        tvd.utils = tvu
        tvt.ToPILImage = object
        tv.datasets, tv.transforms = tvd, tvt
        for name, mod in (("torchvision", tv), ("torchvision.datasets", tvd), ("torchvision.datasets.utils", tvu),
                          ("torchvision.transforms", tvt)):
            monkeypatch.setitem(sys.modules, name, mod)
    try:
        import torchaudio  # noqa: F401
    except Exception:
        monkeypatch.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
    return importlib.import_module("spikingjelly.datasets")


@pytest.mark.peers
def test_name_list_matches_spikingjelly_source():
    sj = pytest.importorskip("spikingjelly")
    d = Path(sj.__file__).parent / "datasets"
    got = {}
    for f in sorted(d.glob("*.py")):
        if f.name == "__init__.py":
            continue
        names = []
        for n in ast.parse(f.read_text()).body:
            if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_"):
                names.append(n.name)
            elif isinstance(n, ast.Assign):
                names += [t.id for t in n.targets if isinstance(t, ast.Name) and not t.id.startswith("_")
                          and t.id != "__all__"]
        got[f.stem] = names
    assert got == SJ_NAMES


@pytest.mark.peers
def test_signatures_match_spikingjelly(monkeypatch):
    _spikingjelly_datasets(monkeypatch)
    bad = []
    for m, names in SJ_NAMES.items():
        sj_mod = importlib.import_module(f"spikingjelly.datasets.{m}")
        fs_mod = importlib.import_module(f"fastspike.datasets.{m}")
        for n in names:
            a, b = getattr(sj_mod, n), getattr(fs_mod, n)
            if not callable(a):
                if a != b and not (isinstance(a, tuple) and tuple(a) == tuple(b)):
                    bad.append(f"{m}.{n}: {a!r} != {b!r}")
                continue
            fa = a.__init__ if inspect.isclass(a) else a
            fb = b.__init__ if inspect.isclass(b) else b
            try:
                pa = list(inspect.signature(fa).parameters.values())
            except (TypeError, ValueError):
                continue
            pb = list(inspect.signature(fb).parameters.values())
            pa = [p for p in pa if p.kind is not p.VAR_KEYWORD]
            pb_pos = [p for p in pb if p.kind is not p.VAR_KEYWORD]
            sa = [(p.name, p.default) for p in pa]
            sb = [(p.name, p.default) for p in pb_pos][:len(sa)]
            if [x[0] for x in sa] != [x[0] for x in sb] or any(
                    x[1] is not inspect.Parameter.empty and x[1] != y[1] for x, y in zip(sa, sb)):
                bad.append(f"{m}.{n}: SpikingJelly {sa} vs fastspike {sb}")
    assert not bad, "\n".join(bad)


def _events_dict(n, W, H, t_max, seed, sorted_t=True):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, t_max, n)
    return {"t": np.sort(t) if sorted_t else t, "x": rng.integers(0, W, n), "y": rng.integers(0, H, n),
            "p": rng.integers(0, 2, n)}


@pytest.mark.peers
@pytest.mark.parametrize("split_by,T,n", [("number", 8, 1000), ("number", 7, 5), ("time", 5, 2000), ("time", 16, 777)])
def test_frame_integration_matches_spikingjelly(split_by, T, n, monkeypatch):
    sj = _spikingjelly_datasets(monkeypatch).utils
    ev = _events_dict(n, 34, 20, 1_000_000, seed=n + T)
    jl_a, jr_a = sj.cal_fixed_frames_number_segment_index(ev["t"], split_by, T)
    jl_b, jr_b = D.utils.cal_fixed_frames_number_segment_index(ev["t"], split_by, T)
    np.testing.assert_array_equal(jl_a, jl_b)
    np.testing.assert_array_equal(jr_a, jr_b)
    a = sj.integrate_events_by_fixed_frames_number(ev, split_by, T, 20, 34)
    b = D.integrate_events_by_fixed_frames_number(ev, split_by, T, 20, 34)
    assert b.dtype == a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sj.integrate_events_segment_to_frame(ev["x"], ev["y"], ev["p"], 20, 34, 3, n // 2),
                                  D.integrate_events_segment_to_frame(ev["x"], ev["y"], ev["p"], 20, 34, 3, n // 2))


@pytest.mark.peers
@pytest.mark.parametrize("duration", [1000, 33_333, 250_000])
def test_fixed_duration_matches_spikingjelly(duration, monkeypatch):
    sj = _spikingjelly_datasets(monkeypatch).utils
    ev = _events_dict(3000, 40, 30, 1_000_000, seed=duration)
    ev["t"] = ev["t"] + 12345
    np.testing.assert_array_equal(sj.integrate_events_by_fixed_duration(ev, duration, 30, 40),
                                  D.integrate_events_by_fixed_duration(ev, duration, 30, 40))


@pytest.mark.peers
def test_file_utilities_match_spikingjelly(tmp_path, monkeypatch):
    sj = _spikingjelly_datasets(monkeypatch).utils
    ev = make_events(np.sort(np.random.default_rng(0).integers(0, 1 << 30, 700)),
                     np.random.default_rng(1).integers(0, 128, 700), np.random.default_rng(2).integers(0, 128, 700),
                     np.random.default_rng(3).integers(0, 2, 700))
    p = tmp_path / "g.aedat"
    F.write_aedat31(p, ev, packet_size=100, ts_overflow=1)
    a, b = sj.load_aedat_v3(p), D.load_aedat_v3(p)
    for k in "txyp":
        np.testing.assert_array_equal(a[k], b[k])
    p = tmp_path / "n.bin"
    F.write_atis_bin(p, make_events(np.arange(50) * 7, np.arange(50) % 34, np.arange(50) % 30, np.arange(50) % 2))
    a, b = sj.load_ATIS_bin(p), D.load_ATIS_bin(p)
    for k in "txyp":
        np.testing.assert_array_equal(a[k], b[k])
        assert a[k].dtype == b[k].dtype
    # file-to-file integration writes the same npz
    np.savez(tmp_path / "e.npz", **{k: ev[k] for k in "txyp"})
    (tmp_path / "sj").mkdir()
    (tmp_path / "fs").mkdir()
    loader = lambda f: dict(np.load(f))  # noqa: E731
    ta = sj.integrate_events_file_to_frames_file_by_fixed_duration(loader, tmp_path / "e.npz", tmp_path / "sj",
                                                                   1 << 26, 128, 128)
    tb = D.integrate_events_file_to_frames_file_by_fixed_duration(loader, tmp_path / "e.npz", tmp_path / "fs",
                                                                  1 << 26, 128, 128)
    assert ta == tb and sorted(os.listdir(tmp_path / "sj")) == sorted(os.listdir(tmp_path / "fs"))
    f = sorted(os.listdir(tmp_path / "fs"))[0]
    np.testing.assert_array_equal(sj.load_npz_frames(tmp_path / "sj" / f), D.load_npz_frames(tmp_path / "fs" / f))


class _Labels(torch.utils.data.Dataset):
    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.zeros(1), self.labels[i]


@pytest.mark.peers
@pytest.mark.parametrize("random_split", [False, True])
def test_split_and_temporal_delete_match_spikingjelly(random_split, monkeypatch):
    sj = _spikingjelly_datasets(monkeypatch)
    ds = _Labels(list(np.random.default_rng(0).integers(0, 5, 203)))
    np.random.seed(7)
    a_tr, a_te = sj.utils.split_to_train_test_set(0.7, ds, 5, random_split)
    np.random.seed(7)
    b_tr, b_te = D.split_to_train_test_set(0.7, ds, 5, random_split)
    assert a_tr.indices == b_tr.indices and a_te.indices == b_te.indices
    x = torch.arange(2 * 12 * 3).reshape(2, 12, 3)
    for batch_first in (True, False):
        np.random.seed(3)
        a = sj.transform.RandomTemporalDelete(5, batch_first)(x if batch_first else x.transpose(0, 1))
        np.random.seed(3)
        b = D.RandomTemporalDelete(5, batch_first)(x if batch_first else x.transpose(0, 1))
        assert torch.equal(a, b)


@pytest.mark.peers
@pytest.mark.parametrize("split_by,T", [("number", 6), ("time", 5)])
def test_shd_float_time_frames_match_spikingjelly(split_by, T, monkeypatch):
    shd = _spikingjelly_datasets(monkeypatch).shd
    rng = np.random.default_rng(T)
    t = np.sort(rng.random(400).astype(np.float32)) * np.float32(0.9)
    x = rng.integers(0, 700, 400).astype(np.uint16)
    a = shd._integrate_events_by_fixed_frames_number({"t": t, "x": x}, split_by, T, 700)
    b = D.shd.sj_frames_fixed_number(t, x, split_by, T, 700)
    np.testing.assert_array_equal(a, b)
    a = shd._integrate_events_by_fixed_duration({"t": t, "x": x}, 40, 700)
    np.testing.assert_array_equal(a, D.shd.sj_frames_fixed_duration(t, x, 40, 700))


# ----------------------------------------------------------------------------- arguments and errors
def test_positional_order_is_spikingjellys(tmp_path):
    params = list(inspect.signature(D.CIFAR10DVS.__init__).parameters)
    assert params[:5] == ["self", "root", "data_type", "frames_number", "split_by"]
    with pytest.raises(ValueError, match="data_type must be 'event' or 'frame', got True"):
        D.CIFAR10DVS(tmp_path, True)  # fastspike's old `train` position is SpikingJelly's data_type
    with pytest.raises(ValueError, match="train must be True or False"):
        D.NMNIST(tmp_path, None)
    with pytest.raises(ValueError, match="train_test_val must be"):
        D.HARDVS(tmp_path)
    with pytest.raises(D.utils.SplitByError, match="split_by must be 'number' or 'time', got 'count'") as e:
        D.cal_fixed_frames_number_segment_index(np.arange(5), "count", 2)
    assert isinstance(e.value, NotImplementedError) and isinstance(e.value, ValueError)
    with pytest.raises(ValueError, match="T_remain must lie in"):
        D.random_temporal_delete(torch.zeros(4, 2), 9, False)


# ------------------------------------------------------------------- datasets that need a download
def _zip(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _npy_bytes(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _structured(n, W, H, seed):
    e = _events_dict(n, W, H, 100_000, seed)
    a = np.empty(n, [("t", "<i4"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for k in "txyp":
        a[k] = e[k]
    return a


def _trust_all(monkeypatch, cls):
    orig = cls.resource_url_md5
    monkeypatch.setattr(cls, "resource_url_md5", classmethod(
        lambda c: [D.Resource(r.file_name, r.url, None, r.optional) for r in orig.__func__(c)]))


def test_dvslip_on_its_released_layout(tmp_path, monkeypatch):
    raw = {}
    members = {}
    for split in ("train", "test"):
        for word in ("accused", "action"):
            for i in range(2):
                a = _structured(30 + i, 128, 128, seed=hash((split, word, i)) % 1000)
                raw[(split, word, i)] = a
                members[f"DVS-Lip/{split}/{word}/{i}.npy"] = _npy_bytes(a)
    _zip(tmp_path / "download" / "DVS-Lip.zip", members)
    _trust_all(monkeypatch, D.DVSLip)
    tr = D.DVSLip(tmp_path, True, **KW)
    assert tr.classes == ["accused", "action"] and tr.targets == [0, 0, 1, 1]
    ev, label = tr[3]
    np.testing.assert_array_equal(ev["x"], raw[("train", "action", 1)]["x"])
    fr = D.DVSLip(tmp_path, False, "frame", 3, "number", **KW)
    assert fr[0][0].shape == (3, 2, 128, 128) and fr[0][0].sum() == 30


def test_hardvs_on_its_released_layout(tmp_path, monkeypatch):
    inner = {}
    labels = {"train": [], "val": [], "test": []}
    for a in (1, 2, 300):
        members = {}
        for i, split in enumerate(("train", "val", "test")):
            e = _events_dict(20, 346, 260, 100_000, seed=a * 10 + i)
            buf = io.BytesIO()
            np.savez(buf, **e)
            members[f"sample_{a}_{i}.npz"] = buf.getvalue()
            labels[split].append(f"action_{a:03d}/sample_{a}_{i} {a - 1}\n")
        zb = io.BytesIO()
        with zipfile.ZipFile(zb, "w") as z:
            for k, v in members.items():
                z.writestr(k, v)
        inner[f"MINI_HARDVS_files/action_{a:03d}.zip"] = zb.getvalue()
    _zip(tmp_path / "download" / "MINI_HARDVS_files.zip", inner)
    for split, lines in labels.items():
        (tmp_path / "download" / f"{split}_label.txt").write_text("".join(lines))
    _trust_all(monkeypatch, D.HARDVS)
    val = D.HARDVS(tmp_path, "val", **KW)
    assert len(val.classes) == 300 and val.targets == [0, 1, 299]  # every action folder, as SpikingJelly
    assert val[2][0]["t"].size == 20


def test_es_imagenet_on_its_extracted_layout(tmp_path):
    base = tmp_path / "extract" / "ES-imagenet-0.18"
    rng = np.random.default_rng(0)
    for c in ("class0", "class1", "class10"):
        (base / "train" / c).mkdir(parents=True)
        np.savez(base / "train" / c / "a.npz", pos=rng.integers(0, 256, (5, 3)), neg=rng.integers(0, 256, (4, 3)))
    (base / "val").mkdir()
    np.savez(base / "val" / "v1.npz", pos=np.array([[3, 4, 7]]), neg=np.array([[5, 6, 2]]))
    (base / "vallabel.txt").write_text("v1.npz 10\n")
    tr = D.ESImageNet(tmp_path, True, **KW)
    assert tr.classes == ["class0", "class1", "class10"] and len(tr) == 3
    te = D.ESImageNet(tmp_path, False, **KW)
    ev, label = te[0]
    assert label == 2 and ev["t"].tolist() == [2, 7] and ev["x"].tolist() == [6, 4] and ev["p"].tolist() == [0, 1]


def test_bullying10k_reads_object_arrays_without_running_pickles(tmp_path, monkeypatch):
    members = {}
    for c in ("handshake", "kicking"):
        for i in range(5):
            chunks = np.empty(2, object)
            chunks[0] = np.array([[1, 2, 3, 1], [2, 5, 6, 0]])
            chunks[1] = np.array([[3 + i, 7, 8, 1]])
            members[f"{c}/{c}_{i}.npy"] = _npy_bytes(chunks, allow_pickle=True)
        _zip(tmp_path / "download" / f"{c}.zip", members)
        members = {}
    _trust_all(monkeypatch, D.Bullying10kClassification)
    monkeypatch.setattr(D.bullying10k.Bullying10kClassification, "resource_url_md5", classmethod(
        lambda c: [D.Resource(f"{n}.zip", "u", None) for n in ("handshake", "kicking")]))
    te = D.Bullying10kClassification(tmp_path, False, **KW)
    tr = D.Bullying10kClassification(tmp_path, True, **KW)
    assert len(te) == 2 and len(tr) == 8 and te.targets == [0, 9]  # files 0 and 5 of the sorted list
    assert te[0][0]["t"].tolist() == [1, 2, 3]

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    bad = np.empty(1, object)
    bad[0] = Evil()
    p = tmp_path / "evil.npy"
    p.write_bytes(_npy_bytes(bad, allow_pickle=True))
    with pytest.raises(EventFileError, match="refusing to load posix.system|refusing to load os.system"):
        D.read_events(p, "numpy", sensor_size=(346, 260))
    assert not (tmp_path / "pwned").exists()


def test_spiking_heidelberg_digits_like_spikingjelly(tmp_path):
    import h5py

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 3)):
        buf = tmp_path / f"shd_{split}.h5"
        with h5py.File(buf, "w") as f:
            vf = h5py.vlen_dtype(np.dtype("float32"))
            vu = h5py.vlen_dtype(np.dtype("uint16"))
            times = f.create_dataset("spikes/times", (n,), dtype=vf)
            units = f.create_dataset("spikes/units", (n,), dtype=vu)
            for i in range(n):
                times[i] = np.sort(rng.random(30).astype(np.float32))
                units[i] = rng.integers(0, 700, 30).astype(np.uint16)
            f.create_dataset("labels", data=np.arange(n, dtype=np.uint16) % 20 + (8 if split == "train" else 0))
        _zip(tmp_path / "download" / f"shd_{split}.h5.zip", {buf.name: buf.read_bytes()})
        buf.unlink()
    D.shd.SpikingHeidelbergDigits.resource_url_md5 = classmethod(lambda c: [D.Resource(f"shd_{s}.h5.zip", "u", None)
                                                                            for s in ("train", "test")])
    try:
        ev_ds = D.SpikingHeidelbergDigits(tmp_path, True, **KW)
        assert len(ev_ds) == 12 and ev_ds[11][1] == 19 and ev_ds[0][0]["t"].dtype == np.float32
        fr = D.SpikingHeidelbergDigits(tmp_path, True, "frame", 4, "number", **KW)
        assert fr.classes[:4] == ["0", "1", "10", "11"]  # string order of label folders, as SpikingJelly
        x, label = fr[0]
        assert x.shape == (4, 700) and fr.classes[label] == "10"
        t, u = ev_ds[2][0]["t"], ev_ds[2][0]["x"]
        path = [p for p, _ in fr.samples if Path(p).parent.name == "10"][0]
        np.testing.assert_array_equal(D.load_npz_frames(path), D.shd.sj_frames_fixed_number(t, u, "number", 4, 700))
    finally:
        del D.shd.SpikingHeidelbergDigits.resource_url_md5


def _wav(path, samples):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.asarray(samples, "<i2").tobytes())


def test_speech_commands_on_its_released_layout(tmp_path):
    base = tmp_path / "SpeechCommands" / "speech_commands_v0.02"
    for word in ("yes", "no"):
        for i in range(3):
            _wav(base / word / f"{i:08x}_nohash_0.wav", np.arange(100) * (i + 1) - 50)
    _wav(base / "_background_noise_" / "white.wav", np.arange(40000) % 300 - 150)
    (base / "validation_list.txt").write_text("yes/00000000_nohash_0.wav\n")
    (base / "testing_list.txt").write_text("no/00000000_nohash_0.wav\n")
    labels = {"yes": 0, "no": 1, "_silence_": 2}
    ds = D.SpeechCommands(labels, tmp_path, silence_cnt=2, silence_size=1000)
    assert len(ds) == 6 and ds._walker[0] == "no/00000001_nohash_0.wav"
    w, label = ds[0]
    assert label == 1 and w.shape == (1, 100) and float(w.abs().max()) == 1.0
    assert torch.allclose(w[0, :3] * 148, torch.tensor([-50.0, -48.0, -46.0]))  # int16 / 32768, peak-normalised
    w, label = ds[5]
    assert label == 2 and w.shape == (1, 1000)
    assert len(D.SpeechCommands(labels, tmp_path, split="val")) == 1
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        D.SpeechCommands(labels, tmp_path / "nowhere")


def test_cifar10dvs_tebn_split(tmp_path, monkeypatch):
    for c in D.CIFAR10DVS_CLASS_NAMES:
        members = {}
        for i in (0, 5, 99, 100, 101, 999):
            buf = tmp_path / "x.aedat"
            F.write_aedat2(buf, make_events(np.arange(6), np.arange(6), np.arange(6), 0))
            members[f"{c}/cifar10_{c}_{i}.aedat"] = buf.read_bytes()
        _zip(tmp_path / "download" / f"{c}.zip", members)
    _trust_all(monkeypatch, D.CIFAR10DVS)
    tr = D.CIFAR10DVSTEBNSplit(tmp_path, True, **KW)
    te = D.CIFAR10DVSTEBNSplit(tmp_path, False, **KW)
    assert len(tr) == 30 and len(te) == 30 and np.bincount(te.targets).tolist() == [3] * 10
    assert [Path(p).name for p, _ in tr.samples[:3]] == ["cifar10_airplane_100.npy", "cifar10_airplane_101.npy",
                                                         "cifar10_airplane_999.npy"]
    assert len(D.CIFAR10DVS(tmp_path, **KW)) == 60


# ------------------------------------------------------------------------------------ utilities
def test_pictures_and_sub_datasets(tmp_path):
    from PIL import Image

    frames = np.zeros((3, 2, 5, 7), np.float32)
    frames[1, 0, 2, 3] = 1
    D.save_as_pic(frames, tmp_path, "f")
    im = np.asarray(Image.open(tmp_path / "f_1.png"))
    assert im.shape == (5, 7, 3) and im[2, 3].tolist() == [0, 255, 0] and im.sum() == 255
    D.play_frame(torch.from_numpy(frames), str(tmp_path / "a.gif"))
    assert Image.open(tmp_path / "a.gif").n_frames == 3
    src = tmp_path / "src"
    for c in ("a", "b"):
        (src / c).mkdir(parents=True)
        for i in range(4):
            (src / c / f"{i}.npy").write_bytes(b"x")
    D.create_sub_dataset(str(src), str(tmp_path / "sub"), 0.5)
    assert sorted(os.listdir(tmp_path / "sub" / "a")) == ["0.npy", "1.npy"]
    assert os.path.islink(tmp_path / "sub" / "b" / "1.npy")
