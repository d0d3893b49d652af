"""Spiking Heidelberg Digits and Spiking Speech Commands (700 input channels).

* ``SpikingHeidelbergDigits`` / ``SpikingSpeechCommands`` and the ``SHDFrame*Builder`` classes are
  SpikingJelly's ``spikingjelly.datasets.shd``: events are read lazily from ``root/events_h5/*.h5`` as
  ``{'t': float seconds, 'x': channel}`` with the file's label; frames follow SpikingJelly's rules on
  those float times (``split_by='time'`` with a float window ``(t[-1] - t[0]) / T``; ``duration`` in
  milliseconds) and live in ``<key>/<split>/<label>/<i>.npy``, so labels come in DatasetFolder's string
  order ('0', '1', '10', ...), exactly as in SpikingJelly.  An empty time window gives an empty frame
  (SpikingJelly raises IndexError).
* ``SHD`` / ``SSC`` are fastspike's own: integer-µs events ``t, x, y=0, p=1`` (EVENT_DTYPE cache),
  natural labels, frames ``[T, 700]`` from :func:`to_frames` (``duration`` in µs).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import _cache
from ._archives import Resource, check_archives, extract_archive
from ._helpers import require_train
from .base import EventBuilder, NeuromorphicDatasetBuilder, NeuromorphicDatasetConfig, NeuromorphicDatasetFolder
from .formats import read_shd
from .formats.hdf5 import CHANNELS

__all__ = ["SHD_N_CLASSES", "SSC_N_CLASSES", "SHDFrameFixedNumberBuilder", "SHDFrameFixedDurationBuilder",
           "SHDFrameCustomIntegrateBuilder", "SpikingHeidelbergDigits", "SpikingSpeechCommands", "SHD", "SSC"]

SHD_N_CLASSES = 20
SSC_N_CLASSES = 35
_URL = "https://zenkelab.org/datasets/{}"
_MD5 = {"shd_train.h5.zip": "f3252aeb598ac776c1b526422d90eecb", "shd_test.h5.zip": "1503a5064faa34311c398fb0a1ed0a6f",
        "ssc_train.h5.zip": "d102be95e7144fcc0553d1f45ba94170", "ssc_valid.h5.zip": "b4eee3516a4a90dd0c71a6ac23a8ae43",
        "ssc_test.h5.zip": "a35ff1e9cffdd02a20eb850c17c37748"}


def _resources(name, splits):
    files = [f"{name}_{s}.h5.zip" for s in splits]
    return [Resource(f, _URL.format(f), _MD5[f]) for f in files]


# ------------------------------------------------------------------- SpikingJelly's frame rules (1-D)
def sj_segments(t: np.ndarray, split_by: str, T: int):
    """SpikingJelly's SHD segment bounds for non-decreasing float times (time windows of float width)."""
    N = t.size
    if split_by == "number":
        di = N // T
        j_l = np.arange(T, dtype=np.int64) * di
        j_r = j_l + di
    elif split_by == "time":
        dt = (t[-1] - t[0]) / T
        j_l, j_r = np.zeros(T, np.int64), np.zeros(T, np.int64)
        for i in range(T):  # the same float arithmetic as SpikingJelly, window by window
            t_l = dt * i + t[0]
            j_l[i] = np.searchsorted(t, t_l, "left")
            j_r[i] = np.searchsorted(t, t_l + dt, "left")
    else:
        raise ValueError(f"split_by must be 'time' or 'number', got {split_by!r}")
    j_r[-1] = N
    return j_l, j_r


def sj_frames_fixed_number(t, x, split_by: str, T: int, W: int) -> np.ndarray:
    j_l, j_r = sj_segments(np.asarray(t), split_by, T)
    x = np.asarray(x).astype(np.int64)
    frames = np.zeros((T, W), np.float32)
    for i in range(T):
        frames[i] = np.bincount(x[j_l[i]:j_r[i]], minlength=W)[:W]
    return frames


def sj_frames_fixed_duration(t, x, duration: int, W: int) -> np.ndarray:
    t = 1000 * np.asarray(t)  # seconds -> milliseconds, in the file's float type
    t = t - t[0]
    T = max(1, math.ceil(t[-1] / duration))
    fi = np.minimum((t // duration).astype(np.int64), T - 1)
    out = np.bincount(fi * W + np.asarray(x).astype(np.int64), minlength=T * W)
    return out.reshape(T, W).astype(np.float32)


def _h5_sample(args):
    path, i, dst, kind, param, W = args
    import h5py

    with h5py.File(path, "r") as f:
        t, x = f["spikes/times"][i], f["spikes/units"][i]
    frames = (sj_frames_fixed_number(t, x, param[1], param[0], W) if kind == "number"
              else sj_frames_fixed_duration(t, x, param, W))
    _cache.atomic_save(dst, frames)


class _SHDFrameBuilder(NeuromorphicDatasetBuilder):
    def __init__(self, cfg: NeuromorphicDatasetConfig, raw_root: Path, W: int, dataset_name: str = "shd",
                 splits=("train", "test"), n_classes: int = SHD_N_CLASSES):
        super().__init__(cfg, raw_root)
        self.W, self.dataset_name, self.splits, self.n_classes = W, dataset_name, tuple(splits), n_classes

    def _jobs(self):
        import h5py

        jobs = []
        for split in self.splits:
            path = self.raw_root / f"{self.dataset_name}_{split}.h5"
            with h5py.File(path, "r") as f:
                labels = np.asarray(f["labels"])
            for i, lab in enumerate(labels):
                dst = self.processed_root / split / str(int(lab)) / f"{i}.npy"
                if not dst.exists():
                    jobs.append((str(path), i, str(dst), self._kind, self._param(), self.W))
        return jobs

    def build_impl(self):
        if self.processed_root.is_dir() and not self._jobs():
            return
        with _cache.build_lock(self.processed_root.parent):
            _cache.remove_orphans(self.processed_root.parent, self.processed_root)
            for split in self.splits:
                for c in range(self.n_classes):
                    (self.processed_root / split / str(c)).mkdir(parents=True, exist_ok=True)
            self._build_samples(self._jobs())

    def _build_samples(self, jobs):
        _cache.run_pool(_h5_sample, jobs, self.num_workers, self.progress, "integrating frames")

    def get_loader(self):
        return _cache.load_frames


class SHDFrameFixedNumberBuilder(_SHDFrameBuilder):
    _kind = "number"

    def _param(self):
        return int(self.cfg.frames_number), self.cfg.split_by

    @property
    def processed_root(self) -> Path:
        return Path(self.cfg.root) / f"frames_number_{self.cfg.frames_number}_split_by_{self.cfg.split_by}"


class SHDFrameFixedDurationBuilder(_SHDFrameBuilder):
    _kind = "duration"

    def _param(self):
        return int(self.cfg.duration)

    @property
    def processed_root(self) -> Path:
        return Path(self.cfg.root) / f"duration_{self.cfg.duration}"


class SHDFrameCustomIntegrateBuilder(_SHDFrameBuilder):
    """``custom_integrate_function(h5_file, sample_index, processed_root, W)`` writes each sample itself
    (SpikingJelly's contract); it runs in this process."""
    _kind = "custom"

    def _param(self):
        return None

    def _build_samples(self, jobs):
        import h5py

        for split in self.splits:
            with h5py.File(self.raw_root / f"{self.dataset_name}_{split}.h5", "r") as f:
                for i in range(len(f["labels"])):
                    self.cfg.custom_integrate_function(f, i, self.processed_root / split, self.W)

    def _jobs(self):
        return [] if self.processed_root.is_dir() else [None]

    @property
    def processed_root(self) -> Path:
        name = self.cfg.custom_integrated_frames_dir_name or _cache.fn_key(self.cfg.custom_integrate_function)
        return Path(self.cfg.root) / name


class SpikingHeidelbergDigits(NeuromorphicDatasetFolder):
    _name, _splits, _n_classes = "shd", ("train", "test"), SHD_N_CLASSES

    def __init__(self, root: str, train: bool = True, data_type: str = "event", frames_number: Optional[int] = None,
                 split_by: Optional[str] = None, duration: Optional[int] = None,
                 custom_integrate_function: Optional[Callable] = None,
                 custom_integrated_frames_dir_name: Optional[str] = None, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, **kwargs):
        require_train(type(self).__name__, train)
        self.split = "train" if train else "test"
        super().__init__(root, train, data_type, frames_number, split_by, duration, custom_integrate_function,
                         custom_integrated_frames_dir_name, transform, target_transform, **kwargs)

    @property
    def raw_root(self) -> Path:
        return Path(self.cfg.root) / "events_h5"

    @classmethod
    def get_H_W(cls):
        return (None, CHANNELS)

    @classmethod
    def resource_url_md5(cls) -> list:
        return _resources(cls._name, cls._splits)

    @classmethod
    def downloadable(cls) -> bool:
        return True

    def prepare_raw_dataset(self):
        if self.raw_root.is_dir():
            return
        root = Path(self.cfg.root)
        with _cache.build_lock(root):
            _cache.remove_orphans(root)
            extract = root / "extract"
            if not extract.is_dir():
                paths = check_archives(type(self).__name__, self.resources(), root / "download")
                tmp = _cache.temp_dir(root, "extract")
                for p in paths:
                    extract_archive(p, tmp)
                os.replace(tmp, extract)
            tmp = _cache.temp_dir(root, "events_h5")
            for s in self._splits:
                found = sorted(extract.rglob(f"{self._name}_{s}.h5"))
                if not found:
                    raise FileNotFoundError(f"{extract}: {self._name}_{s}.h5 not found after extraction")
                read_shd(found[0])  # validated once, in a child process: the lazy reads below run in-process
                (tmp / found[0].name).symlink_to(found[0].resolve())
            os.replace(tmp, self.raw_root)

    def get_dataset_builder(self):
        if self.cfg.data_type == "event":
            return EventBuilder(self.cfg, self.raw_root)
        kw = dict(dataset_name=self._name, splits=self._splits, n_classes=self._n_classes)
        if self.cfg.frames_number is not None:
            return SHDFrameFixedNumberBuilder(self.cfg, self.raw_root, CHANNELS, **kw)
        if self.cfg.duration is not None:
            return SHDFrameFixedDurationBuilder(self.cfg, self.raw_root, CHANNELS, **kw)
        return SHDFrameCustomIntegrateBuilder(self.cfg, self.raw_root, CHANNELS, **kw)

    def get_root_when_train_is_none(self, _root: Path) -> Path:
        return _root / self.split

    def _init_folder(self, split_root, loader):
        if self.cfg.data_type != "event":
            return super()._init_folder(split_root, loader)
        import h5py

        self.transform, self.target_transform = self.cfg.transform, self.cfg.target_transform
        self.h5_file_path = self.raw_root / f"{self._name}_{self.split}.h5"
        self.h5_file, self.h5_file_pid = None, None
        with h5py.File(self.h5_file_path, "r") as f:
            self.length = len(f["labels"])
            self.targets = np.asarray(f["labels"]).tolist()

    def __len__(self):
        return self.length if self.cfg.data_type == "event" else super().__len__()

    def __getitem__(self, index):
        if self.cfg.data_type != "event":
            return super().__getitem__(index)
        import h5py

        if self.h5_file_pid != os.getpid():
            self.h5_file = h5py.File(self.h5_file_path, "r")
            self.h5_file_pid = os.getpid()
        events = {"t": self.h5_file["spikes"]["times"][index], "x": self.h5_file["spikes"]["units"][index]}
        label = self.h5_file["labels"][index]
        if self.transform is not None:
            events = self.transform(events)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return events, label

    def __getstate__(self):
        state = self.__dict__.copy()
        state["h5_file"], state["h5_file_pid"] = None, None
        return state


class SpikingSpeechCommands(SpikingHeidelbergDigits):
    _name, _splits, _n_classes = "ssc", ("train", "valid", "test"), SSC_N_CLASSES

    def __init__(self, root: str, split: str = "train", data_type: str = "event", frames_number: Optional[int] = None,
                 split_by: Optional[str] = None, duration: Optional[int] = None,
                 custom_integrate_function: Optional[Callable] = None,
                 custom_integrated_frames_dir_name: Optional[str] = None, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, **kwargs):
        if split not in self._splits:
            raise ValueError(f"split must be one of {self._splits}, got {split!r}")
        self.split = split
        NeuromorphicDatasetFolder.__init__(self, root, None, data_type, frames_number, split_by, duration,
                                           custom_integrate_function, custom_integrated_frames_dir_name, transform,
                                           target_transform, **kwargs)


# ------------------------------------------------------------------------------ fastspike's SHD / SSC
class SHD(NeuromorphicDatasetFolder):
    """fastspike's SHD: integer-µs EVENT_DTYPE events, natural labels; ``train=True/False``."""
    _name, _splits = "shd", ("train", "test")

    def __init__(self, root, train: bool = True, data_type: str = "event", frames_number=None, split_by=None,
                 duration=None, custom_integrate_function=None, custom_integrated_frames_dir_name=None,
                 transform=None, target_transform=None, **kwargs):
        require_train(type(self).__name__, train)
        super().__init__(root, train, data_type, frames_number, split_by, duration, custom_integrate_function,
                         custom_integrated_frames_dir_name, transform, target_transform, **kwargs)

    @classmethod
    def get_H_W(cls):
        return (None, CHANNELS)

    @classmethod
    def resource_url_md5(cls) -> list:
        return _resources(cls._name, cls._splits)

    @classmethod
    def _raw_jobs(cls, extract_root):
        jobs = []
        for s in cls._splits:
            found = sorted(Path(extract_root).rglob(f"{cls._name}_{s}.h5"))
            if not found:
                raise FileNotFoundError(f"{extract_root}: {cls._name}_{s}.h5 not found after extraction")
            jobs.append((str(found[0]), s))
        return jobs

    @classmethod
    def _decode_job(cls, job):
        f, split = job
        recs, labels = read_shd(f)
        n = SSC_N_CLASSES if cls._name == "ssc" else SHD_N_CLASSES
        out = []
        for i, (ev, lab) in enumerate(zip(recs, labels)):
            if not 0 <= int(lab) < n:
                from .formats import EventFileError

                raise EventFileError(f, None, f"labels[{i}] = {int(lab)} outside 0..{n - 1}")
            out.append((f"{split}/{int(lab):02d}/{i:05d}", ev))
        return out


class SSC(SHD):
    """fastspike's SSC: ``split='train'|'valid'|'test'`` (SpikingSpeechCommands' position), or keyword
    ``train=True/False`` for train/test."""
    _name, _splits = "ssc", ("train", "valid", "test")

    def __init__(self, root, split: str = "train", data_type: str = "event", *args, train: Optional[bool] = None,
                 **kwargs):
        if train is not None:
            split = "train" if train else "test"
        if split not in self._splits:
            raise ValueError(f"split must be one of {self._splits}, got {split!r}")
        self.split = split
        NeuromorphicDatasetFolder.__init__(self, root, None, data_type, *args, **kwargs)

    def get_root_when_train_is_none(self, _root: Path) -> Path:
        return _root / self.split
