"""Dataset classes: each decodes the original release files exactly as the authors ship them, then
applies the dataset's published orientation/polarity convention (documented per class).

Checksums (md5) are the ones SpikingJelly 2.0.0 records for the original downloads
(spikingjelly/datasets/<dataset>.py, ``resource_url_md5``); None where no checksum is published.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import List, Optional

import numpy as np

from ._base import NeuromorphicDataset, Resource, extract_archive, stratified_split
from .formats import EventFileError, check_range, make_events, read_events, read_shd

__all__ = ["DVS128Gesture", "CIFAR10DVS", "NMNIST", "NCaltech101", "ASLDVS", "SHD", "SSC",
           "NAVGesture", "NCARS", "MNISTDVS"]

_SJ = "SpikingJelly 2.0.0 spikingjelly/datasets/{}"


def _name(path: Path, base: Path) -> str:
    rel = path.relative_to(base).with_suffix("")
    return "__".join(rel.parts)


def _extract_nested(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest`` then every .zip found inside (in place, recursively)."""
    extract_archive(archive, dest)
    while True:
        inner = sorted(p for p in dest.rglob("*.zip") if p.is_file())
        if not inner:
            return
        for z in inner:
            extract_archive(z, z.parent)
            z.unlink()


class _UnofficialSplit(NeuromorphicDataset):
    """Datasets without a published split: ``train=None`` gives every sample; True/False give a
    documented, seeded, class-stratified split (``train_ratio``, ``split_seed``)."""

    def __init__(self, root, train: Optional[bool] = None, *args, train_ratio: float = 0.9,
                 split_seed: int = 0, **kwargs):
        self.train_ratio, self.split_seed = train_ratio, split_seed
        super().__init__(root, train, *args, **kwargs)

    def _keep(self, s) -> bool:
        return True

    def _select(self, samples):
        if self.train is None:
            return samples
        idx = stratified_split([s["label"] for s in samples], self.train, self.train_ratio, self.split_seed)
        return [samples[i] for i in idx]


def _chunks(items, n=64):
    return [items[i:i + n] for i in range(0, len(items), n)]


# ------------------------------------------------------------------------------------ DVS128 Gesture
class DVS128Gesture(NeuromorphicDataset):
    """IBM DVS128 Gesture: 11 classes (CSV classes 1..11 -> labels 0..10), 128x128, AEDAT 3.1.

    Each row of ``userNN_<light>_labels.csv`` (``class,startTime_usec,endTime_usec``) becomes one
    sample holding the events with ``start <= t < end``; split by trials_to_train.txt /
    trials_to_test.txt (users 01-23 train, 24-29 test): 1176 / 288 samples.  Events are kept as
    stored (x, y from the AEDAT 3.1 polarity packets, p = 1 for ON, absolute µs timestamps).
    """

    sensor_size = (128, 128)
    num_classes = 11
    splits_allowed = (True, False)

    def __init__(self, root, train: bool = True, *args, **kwargs):
        super().__init__(root, train, *args, **kwargs)

    @classmethod
    def resources(cls):
        url = "https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8 (research.ibm.com/dvsgesture)"
        return [Resource("DvsGesture.tar.gz", "8a5c71fb11e24e5ca5b11866ca6c00a1", url,
                         _SJ.format("dvs128_gesture.py"))]

    def _jobs(self, extract_dir: Path):
        files = sorted(extract_dir.rglob("*.aedat"))
        lists = {}
        for split in ("train", "test"):
            found = list(extract_dir.rglob(f"trials_to_{split}.txt"))
            if found:
                lists[split] = {ln.strip() for ln in found[0].read_text().splitlines() if ln.strip()}
        jobs = []
        for f in files:
            if "train" in lists or "test" in lists:
                split = "train" if f.name in lists.get("train", ()) else (
                    "test" if f.name in lists.get("test", ()) else None)
                if split is None:
                    continue
            else:
                m = re.match(r"user(\d+)_", f.name)
                split = "train" if m and int(m.group(1)) <= 23 else "test"
            csv_path = f.with_name(f.stem + "_labels.csv")
            if not csv_path.exists():
                raise FileNotFoundError(f"{csv_path}: label file for {f} is missing")
            jobs.append([(str(f), str(csv_path), split, _name(f, extract_dir))])
        return jobs

    @classmethod
    def read_labels(cls, csv_path) -> List[tuple]:
        """(line number, class 1..11, start, end) per row; malformed rows raise naming the line."""
        rows = []
        with open(csv_path, newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh), start=1):
                if not row or not "".join(row).strip():
                    continue
                if lineno == 1 and not row[0].strip().lstrip("-").isdigit():
                    continue  # header "class,startTime_usec,endTime_usec"
                try:
                    c, s, e = (int(v) for v in row[:3])
                    if len(row) < 3:
                        raise ValueError
                except ValueError:
                    raise EventFileError(csv_path, None, f"line {lineno}: expected 'class,start,end' "
                                                         f"integers, got {','.join(row)!r}") from None
                if not 1 <= c <= 11:
                    raise EventFileError(csv_path, None, f"line {lineno}: class {c} outside 1..11")
                if e <= s:
                    raise EventFileError(csv_path, None, f"line {lineno}: end {e} <= start {s}")
                rows.append((lineno, c, s, e))
        if not rows:
            raise EventFileError(csv_path, None, "no label rows")
        return rows

    @classmethod
    def _decode(cls, job):
        out = []
        for aedat, csv_path, split, name in job:
            ev = read_events(aedat, "aedat31", sensor_size=cls.sensor_size)
            t = ev["t"]
            lo, hi = (int(t.min()), int(t.max())) if t.size else (0, -1)
            for lineno, c, s, e in cls.read_labels(csv_path):
                sel = ev[(t >= s) & (t < e)]
                if sel.size == 0:
                    raise EventFileError(csv_path, None, f"line {lineno}: segment [{s}, {e}) of class {c} "
                                                         f"holds no events of {aedat} (recording spans "
                                                         f"t = {lo}..{hi} µs)")
                out.append((f"{name}_{lineno}", sel, c - 1, split))
        return out


# --------------------------------------------------------------------------------------- CIFAR10-DVS
class CIFAR10DVS(_UnofficialSplit):
    """CIFAR10-DVS (10 classes x 1000 recordings, 128x128, jAER AEDAT 2.0 from the figshare release).

    Convention (SpikingJelly's): ``x = 127 - yraw``, ``y = 127 - xraw``, ``p = 1 - praw`` from the
    DVS128 raw address.  No official split: ``train=True/False`` gives the seeded class-stratified
    9:1 split (900 / 100 recordings per class with the defaults ``train_ratio=0.9, split_seed=0``).
    """

    sensor_size = (128, 128)
    num_classes = 10
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    _md5 = ("0afd5c4bf9ae06af762a77b180354fdd", "8438dfeba3bc970c94962d995b1b9bdd",
            "a9c207c91c55b9dc2002dc21c684d785", "52c63c677c2b15fa5146a8daf4d56687",
            "b6bf21f6c04d21ba4e23fc3e36c8a4a3", "f379ebdf6703d16e0a690782e62639c3",
            "cad6ed91214b1c7388a5f6ee56d08803", "e7cbbf77bec584ffbf913f00e682782a",
            "41c7bd7d6b251be82557c6cce9a7d5c9", "89f3922fd147d9aeff89e76a2b0b70a7")
    _fig = ("7712788", "7712791", "7712794", "7712812", "7712815", "7712818", "7712842", "7712851",
            "7712836", "7712839")

    @classmethod
    def resources(cls):
        return [Resource(f"{c}.zip", m, f"https://ndownloader.figshare.com/files/{f}", _SJ.format("cifar10_dvs.py"))
                for c, m, f in zip(cls.classes, cls._md5, cls._fig)]

    def _extract_one(self, archive, dest):
        extract_archive(archive, Path(dest) / archive.name[:-4])

    def _jobs(self, extract_dir):
        items = []
        for label, c in enumerate(self.classes):
            for f in sorted((extract_dir / c).rglob("*.aedat")):
                items.append((str(f), label, _name(f, extract_dir)))
        return _chunks(items)

    @staticmethod
    def convert(ev):
        """Raw DVS128 fields -> SpikingJelly's CIFAR10-DVS orientation and polarity."""
        return make_events(ev["t"], 127 - ev["y"].astype(np.int64), 127 - ev["x"].astype(np.int64),
                           1 - ev["p"].astype(np.int64))

    @classmethod
    def _decode(cls, job):
        return [(name, cls.convert(read_events(f, "aedat2", layout="dvs128")), label, "all")
                for f, label, name in job]


# ------------------------------------------------------------------------------------ N-MNIST family
class NMNIST(NeuromorphicDataset):
    """N-MNIST: 10 classes, 34x34, ATIS 40-bit .bin; Train.zip 60000 / Test.zip 10000. Events as
    stored (p = 1 ON, µs from the start of the saccade sequence)."""

    sensor_size = (34, 34)
    num_classes = 10
    splits_allowed = (True, False)

    def __init__(self, root, train: bool = True, *args, **kwargs):
        super().__init__(root, train, *args, **kwargs)

    @classmethod
    def resources(cls):
        url = "https://www.garrickorchard.com/datasets/n-mnist"
        src = _SJ.format("n_mnist.py")
        return [Resource("Train.zip", "20959b8e626244a1b502305a9e6e2031", url, src),
                Resource("Test.zip", "69ca8762b2fe404d9b9bad1103e97832", url, src)]

    def _jobs(self, extract_dir):
        items = []
        for f in sorted(extract_dir.rglob("*.bin")):
            parts = [p.lower() for p in f.relative_to(extract_dir).parts]
            split = "train" if "train" in parts else ("test" if "test" in parts else None)
            if split is None or not f.parent.name.isdigit():
                continue
            items.append((str(f), int(f.parent.name), split, _name(f, extract_dir)))
        return _chunks(items, 256)

    @classmethod
    def _decode(cls, job):
        return [(name, read_events(f, "atis_bin", sensor_size=cls.sensor_size), label, split)
                for f, label, split, name in job]


class NCaltech101(_UnofficialSplit):
    """N-Caltech101: 101 class folders (100 objects + BACKGROUND_Google; labels in sorted folder
    order), ATIS .bin, sensor at most 240x180 (frames use 240x180).  No official split."""

    sensor_size = (240, 180)
    num_classes = 101

    @classmethod
    def resources(cls):
        return [Resource("Caltech101.zip", "66201824eabb0239c7ab992480b50ba3",
                         "https://www.garrickorchard.com/datasets/n-caltech101", _SJ.format("n_caltech101.py"))]

    def _jobs(self, extract_dir):
        files = sorted(extract_dir.rglob("*.bin"))
        classes = sorted({f.parent.name for f in files})
        return _chunks([(str(f), classes.index(f.parent.name), _name(f, extract_dir)) for f in files])

    @classmethod
    def _decode(cls, job):
        return [(name, read_events(f, "atis_bin", sensor_size=cls.sensor_size), label, "all")
                for f, label, name in job]


# ------------------------------------------------------------------------------------------- ASL-DVS
class ASLDVS(_UnofficialSplit):
    """ASL-DVS: 24 letters (a-y without j), 240x180 DAVIS240C, one .mat per recording (4200/class).

    Convention (SpikingJelly's): ``x = 239 - x``, ``y = 179 - y``; p as stored.  No official split.
    The Dropbox zip is repacked on download, so no stable md5 exists (SpikingJelly disables it too).
    """

    sensor_size = (240, 180)
    num_classes = 24
    classes = tuple("abcdefghiklmnopqrstuvwxy")

    @classmethod
    def resources(cls):
        return [Resource("ICCV2019_DVS_dataset.zip", None,
                         "https://www.dropbox.com/sh/ibq0jsicatn7l6r/AACNrNELV56rs1YInMWUs9CAa "
                         "(reported expired; mirror: OpenI/ASLDVS)", _SJ.format("asl_dvs.py"))]

    def _extract_one(self, archive, dest):
        _extract_nested(archive, dest)

    def _jobs(self, extract_dir):
        items = []
        for f in sorted(extract_dir.rglob("*.mat")):
            c = f.parent.name.lower() if f.parent.name.lower() in self.classes else f.name[0].lower()
            if c not in self.classes:
                raise ValueError(f"{f}: cannot tell its letter from the folder or file name")
            items.append((str(f), self.classes.index(c), _name(f, extract_dir)))
        return _chunks(items)

    @classmethod
    def _decode(cls, job):
        out = []
        for f, label, name in job:
            ev = read_events(f, "asl_mat", sensor_size=cls.sensor_size)
            out.append((name, make_events(ev["t"], 239 - ev["x"].astype(np.int64),
                                          179 - ev["y"].astype(np.int64), ev["p"]), label, "all"))
        return out


# --------------------------------------------------------------------------------------- SHD and SSC
class SHD(NeuromorphicDataset):
    """Spiking Heidelberg Digits: 20 classes, 700 channels; train 8156 / test 2264.

    Events: ``t`` in integer µs (the file stores float seconds; rounded to nearest), ``x`` = channel,
    ``y = 0``, ``p = 1``.  Frames are ``[T, 700]`` (``duration`` in µs).
    """

    sensor_size = (700, 1)
    num_classes = 20
    splits_allowed = (True, False)
    _files = {"train": "shd_train.h5", "test": "shd_test.h5"}
    _md5 = {"train": "f3252aeb598ac776c1b526422d90eecb", "test": "1503a5064faa34311c398fb0a1ed0a6f"}

    def __init__(self, root, train: bool = True, *args, **kwargs):
        super().__init__(root, train, *args, **kwargs)

    def frame_sensor_size(self):
        return (700,)

    @classmethod
    def resources(cls):
        return [Resource(f + ".zip", cls._md5[s], f"https://zenkelab.org/datasets/{f}.zip",
                         _SJ.format("shd.py")) for s, f in cls._files.items()]

    def _jobs(self, extract_dir):
        jobs = []
        for split, fname in self._files.items():
            found = list(extract_dir.rglob(fname))
            if not found:
                raise FileNotFoundError(f"{extract_dir}: {fname} not found after extraction")
            jobs.append([(str(found[0]), split)])
        return jobs

    @classmethod
    def _decode(cls, job):
        out = []
        for f, split in job:
            recs, labels = read_shd(f)
            for i, (ev, lab) in enumerate(zip(recs, labels)):
                if not 0 <= int(lab) < cls.num_classes:
                    raise EventFileError(f, None, f"labels[{i}] = {int(lab)} outside 0..{cls.num_classes - 1}")
                check_range(ev, cls.sensor_size, f"{f} (recording {i})")
                out.append((f"{split}_{i}", ev, int(lab), split))
        return out


class SSC(SHD):
    """Spiking Speech Commands: 35 classes, 700 channels; train 75466 / valid 9981 / test 20382.
    ``split='train'|'valid'|'test'`` (or ``train=True/False`` for train/test)."""

    num_classes = 35
    splits_allowed = (True, False, None)
    _files = {"train": "ssc_train.h5", "valid": "ssc_valid.h5", "test": "ssc_test.h5"}
    _md5 = {"train": "d102be95e7144fcc0553d1f45ba94170", "valid": "b4eee3516a4a90dd0c71a6ac23a8ae43",
            "test": "a35ff1e9cffdd02a20eb850c17c37748"}

    def __init__(self, root, train: Optional[bool] = None, *args, split: Optional[str] = None, **kwargs):
        if split is not None and split not in self._files:
            raise ValueError(f"split must be one of {tuple(self._files)}, got {split!r}")
        if split is None and train is None:
            split = "train"
        self.split = split if split is not None else ("train" if train else "test")
        NeuromorphicDataset.__init__(self, root, True, *args, **kwargs)

    def _keep(self, s):
        return s["split"] == self.split


# ------------------------------------------------------------------------------------------- DAT sets
class NAVGesture(_UnofficialSplit):
    """NavGesture (``subset='walk'`` or ``'sit'``): 6 classes in sorted code order
    (do, ho, le, ri, se, up = swipe down, home, swipe left, swipe right, select, swipe up), 304x240
    ATIS, old-layout DAT files.

    Convention (SpikingJelly's): ``y = 239 - y``; time re-zeroed to the first event; events whose
    timestamp is earlier than an earlier event's are dropped.  No official split.
    """

    sensor_size = (304, 240)
    num_classes = 6
    classes = ("do", "ho", "le", "ri", "se", "up")
    _md5 = {"walk": "5d305266f13005401959e819abe206f0", "sit": "1571753ace4d9e0946e6503313712c22"}

    def __init__(self, root, train: Optional[bool] = None, *args, subset: str = "walk", **kwargs):
        if subset not in self._md5:
            raise ValueError(f"subset must be 'walk' or 'sit', got {subset!r}")
        self.subset = subset
        super().__init__(root, train, *args, **kwargs)

    def resources(self):  # per instance: depends on the subset
        f = f"navgesture-{self.subset}.zip"
        return [Resource(f, self._md5[self.subset],
                         f"https://www.neuromorphic-vision.com/public/downloads/navgesture/{f} "
                         "(reported offline, SpikingJelly issue 423)", _SJ.format("nav_gesture.py"))]

    def cache_tag(self):
        return f"_{self.subset}"

    def _extract_one(self, archive, dest):
        _extract_nested(archive, dest)

    def _jobs(self, extract_dir):
        items = []
        for f in sorted(extract_dir.rglob("*.dat")):
            parts = f.stem.split("_")
            code = parts[1] if len(parts) > 1 else ""
            if code not in self.classes:
                raise ValueError(f"{f}: gesture code {code!r} (second '_' field of the name) not in "
                                 f"{self.classes}")
            items.append((str(f), self.classes.index(code), _name(f, extract_dir)))
        return _chunks(items)

    @classmethod
    def _decode(cls, job):
        out = []
        for f, label, name in job:
            ev = read_events(f, "dat", sensor_size=cls.sensor_size)
            if ev.size:
                t = ev["t"]
                ev = ev[t >= np.maximum.accumulate(t)]
                ev = make_events(ev["t"] - ev["t"][0], ev["x"], 239 - ev["y"].astype(np.int64), ev["p"])
            out.append((name, ev, label, "all"))
        return out


class NCARS(NeuromorphicDataset):
    """N-CARS: 2 classes (background = 0, cars = 1), crops of at most 120x100, DAT v2 files, events as
    stored.  Published split: n-cars_train (15422) / n-cars_test (8607) (counts not verified here)."""

    sensor_size = (120, 100)
    num_classes = 2
    classes = ("background", "cars")
    splits_allowed = (True, False)

    def __init__(self, root, train: bool = True, *args, **kwargs):
        super().__init__(root, train, *args, **kwargs)

    @classmethod
    def resources(cls):
        return [Resource("Prophesee_Dataset_n_cars.zip", "553ce464d6e5e617b3c21ce27c19368e",
                         "http://www.prophesee.ai/resources/Prophesee_Dataset_n_cars.zip",
                         "tonic 1.7.0 tonic/datasets/ncars.py")]

    def _extract_one(self, archive, dest):
        _extract_nested(archive, dest)

    def _jobs(self, extract_dir):
        items = []
        for f in sorted(extract_dir.rglob("*.dat")):
            parts = [p.lower() for p in f.relative_to(extract_dir).parts]
            split = "train" if any("train" in p for p in parts) else (
                "test" if any("test" in p for p in parts) else None)
            cls_ = [c for c in self.classes if c in parts]
            if split is None or not cls_:
                raise ValueError(f"{f}: cannot tell split/class from its path")
            items.append((str(f), self.classes.index(cls_[0]), split, _name(f, extract_dir)))
        return _chunks(items, 256)

    @classmethod
    def _decode(cls, job):
        return [(name, read_events(f, "dat", sensor_size=cls.sensor_size), label, split)
                for f, label, split, name in job]


class MNISTDVS(_UnofficialSplit):
    """MNIST-DVS (IMSE-CNM): 10 digits, 128x128 DVS, jAER AEDAT 2.0, one ``scale`` (4, 8 or 16) at a
    time; ``mnist_<digit>_scale<NN>_<NNNN>.aedat`` inside ``grabbed_data<digit>.zip``.  No checksums
    are published, so the archives are used unverified.

    Convention (jAER's DVS128 display): ``x = 127 - xraw``, ``y = yraw``, ``p = 1 - praw`` (1 = ON).
    No official split.
    """

    sensor_size = (128, 128)
    num_classes = 10

    def __init__(self, root, train: Optional[bool] = None, *args, scale: int = 4, **kwargs):
        if scale not in (4, 8, 16):
            raise ValueError(f"scale must be 4, 8 or 16, got {scale!r}")
        self.scale = scale
        super().__init__(root, train, *args, **kwargs)

    @classmethod
    def resources(cls):
        return [Resource(f"grabbed_data{d}.zip", None,
                         f"http://www2.imse-cnm.csic.es/caviar/MNIST_DVS/grabbed_data{d}.zip", "")
                for d in range(10)]

    def _jobs(self, extract_dir):
        items = []
        for f in sorted(extract_dir.rglob("*.aedat")):
            m = re.match(r"mnist_(\d)_scale(\d+)_\d+", f.stem)
            if m:  # every scale is decoded once; _keep selects one
                items.append((str(f), int(m.group(1)), _name(f, extract_dir)))
        return _chunks(items)

    def _keep(self, s):
        return f"scale{self.scale:02d}" in s["file"]

    @classmethod
    def _decode(cls, job):
        out = []
        for f, label, name in job:
            ev = read_events(f, "aedat2", layout="dvs128")
            out.append((name, make_events(ev["t"], 127 - ev["x"].astype(np.int64), ev["y"],
                                          1 - ev["p"].astype(np.int64)), label, "all"))
        return out
