"""SpikingJelly 2.0's dataset framework (``spikingjelly.datasets.base``) on fastspike's machinery.

``NeuromorphicDatasetFolder(root, train, data_type, frames_number, split_by, duration,
custom_integrate_function, custom_integrated_frames_dir_name, transform, target_transform)`` prepares::

    root/download/        the original archives (placed there by the user; md5-verified)
    root/extract/         the extracted archives (renamed into place when complete)
    root/events_np/       one file per sample, <split>/<class>/<name>.npy (renamed into place when complete)
    root/<frames key>/    frames, the same tree: frames_number_16_split_by_number, duration_10000, ...

and then behaves as torchvision's ``DatasetFolder`` over ``<split>``: classes are the sorted
sub-folder names, samples the sorted files of each (so labels and order are SpikingJelly's).  Event
items are dicts of int64 columns ``t, x, y, p``; frame items float32 ``[T, 2, H, W]`` arrays.

A subclass either follows SpikingJelly's protocol (``get_H_W``, ``resource_url_md5``, ``downloadable``,
``extract_downloaded_files``, ``create_raw_from_extracted``) or fastspike's faster one: ``_raw_jobs``
(picklable jobs) and ``_decode_job`` (job -> list of ``(relative name, events)``), run in parallel.
Differences from SpikingJelly: nothing is downloaded; directories and files are written atomically
under a build lock, and what an interrupted build left is removed by the next one; custom-function
frames live in ``<function name>_<source hash>`` unless a directory name is given.
"""
from __future__ import annotations

import abc
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch.utils.data

from . import _cache
from ._archives import Resource, check_archives, extract_archive
from .formats import EVENT_DTYPE
from .frames import to_frames

__all__ = ["NeuromorphicDatasetFolder", "NeuromorphicDatasetBuilder", "EventBuilder", "FrameFixedNumberBuilder",
           "FrameFixedDurationBuilder", "FrameCustomIntegrateBuilder", "NeuromorphicDatasetConfig"]


@dataclass(frozen=True)
class NeuromorphicDatasetConfig:
    """The validated arguments of a dataset (SpikingJelly's fields and rules)."""
    root: Path
    train: Optional[bool]
    data_type: str = "event"
    frames_number: Optional[int] = None
    split_by: Optional[str] = None
    duration: Optional[int] = None
    custom_integrate_function: Optional[Callable] = None
    custom_integrated_frames_dir_name: Optional[str] = None
    transform: Optional[Callable] = None
    target_transform: Optional[Callable] = None

    def __post_init__(self):
        if self.data_type not in ("event", "frame"):
            raise ValueError(f"data_type must be 'event' or 'frame', got {self.data_type!r}")
        if self.train not in (True, False, None):
            raise ValueError(f"train must be True, False or None, got {self.train!r}")
        if self.data_type == "event":
            return
        given = [self.frames_number is not None, self.duration is not None, self.custom_integrate_function is not None]
        if sum(given) != 1:
            raise ValueError("data_type='frame' needs exactly one of frames_number (with split_by), duration, "
                             "custom_integrate_function")
        if self.frames_number is not None:
            n = self.frames_number
            if isinstance(n, bool) or int(n) != n or n <= 0:
                raise ValueError(f"frames_number must be a positive integer, got {self.frames_number!r}")
            if self.split_by not in ("time", "number"):
                raise ValueError(f"split_by must be 'time' or 'number', got {self.split_by!r}")
        if self.duration is not None and (isinstance(self.duration, bool) or int(self.duration) != self.duration
                                          or self.duration <= 0):
            raise ValueError(f"duration must be a positive integer, got {self.duration!r}")


# ------------------------------------------------------------------------------------------ builders
def _event_files(tree: Path):
    """Sorted (relative path, absolute path) of every event file (.npy/.npz) under ``tree``."""
    out = []
    for dirpath, dirs, files in os.walk(tree, followlinks=True):
        dirs.sort()
        for f in sorted(files):
            if f.endswith((".npy", ".npz")) and not f.startswith("."):
                p = Path(dirpath) / f
                out.append((p.relative_to(tree), p))
    return out


def _frames_job(args):
    """Integrate one event file into one frame file (runs in a worker process)."""
    loader, src, dst_stem, kind, param, H, W, suffix_T = args
    ev = loader(src)
    if kind == "custom":
        frames = np.asarray(param(ev, W) if H is None else param(ev, H, W))
    else:
        sensor = (W,) if H is None else (W, H)
        frames = (to_frames(ev, sensor, frames_number=param[0], split_by=param[1]) if kind == "number"
                  else to_frames(ev, sensor, duration=param))
    dst = f"{dst_stem}_{frames.shape[0]}.npy" if suffix_T else f"{dst_stem}.npy"
    _cache.atomic_save(dst, np.asarray(frames, np.float32))
    return int(frames.shape[0]) if frames.ndim else 0


class NeuromorphicDatasetBuilder(abc.ABC):
    """Turns the events tree into the tree a dataset reads (SpikingJelly's builder protocol)."""
    num_workers: int = 1
    progress: bool = False

    def __init__(self, cfg: NeuromorphicDatasetConfig, raw_root: Path):
        self.cfg = cfg
        self.raw_root = Path(raw_root)

    @property
    @abc.abstractmethod
    def processed_root(self) -> Path:
        """Directory of the built tree."""

    def build(self) -> Tuple[Path, Callable]:
        """Build what is missing (atomically, under the root's build lock); -> (processed_root, loader)."""
        self.build_impl()
        return self.processed_root, self.get_loader()

    def build_impl(self) -> None:
        raise NotImplementedError

    @abc.abstractmethod
    def get_loader(self) -> Callable:
        """Callable that loads one built file."""


class EventBuilder(NeuromorphicDatasetBuilder):
    """The events tree itself: nothing to build."""

    def build(self):
        return self.processed_root, self.get_loader()

    @property
    def processed_root(self) -> Path:
        return self.raw_root

    def get_loader(self) -> Callable:
        return _cache.load_events


class _FrameBuilder(NeuromorphicDatasetBuilder):
    """Frames of every events file, the same tree under ``processed_root``; only missing files are
    integrated, in parallel, each written atomically."""
    _event_loader = staticmethod(_cache.load_events)
    _kind = ""
    _suffix_T = False

    def __init__(self, cfg: NeuromorphicDatasetConfig, raw_root: Path, H: Optional[int], W: int):
        super().__init__(cfg, raw_root)
        self.H, self.W = H, W

    def _param(self):
        raise NotImplementedError

    def _missing(self):
        out = self.processed_root
        todo = []
        for rel, src in _event_files(self.raw_root):
            stem = out / rel.parent / rel.name.rsplit(".", 1)[0]
            if self._suffix_T:
                d = stem.parent
                pat = re.escape(stem.name) + r"_\d+\.np[yz]"
                done = d.is_dir() and any(re.fullmatch(pat, f.name) for f in d.iterdir())
            else:
                done = stem.with_name(stem.name + ".npy").exists() or stem.with_name(stem.name + ".npz").exists()
            if not done:
                todo.append((src, stem))
        return todo

    def build_impl(self) -> None:
        if not self._missing() and self.processed_root.is_dir():
            return
        root = self.processed_root.parent
        with _cache.build_lock(root):
            _cache.remove_orphans(root, self.processed_root)
            todo = self._missing()
            for _, stem in todo:
                stem.parent.mkdir(parents=True, exist_ok=True)
            self.processed_root.mkdir(parents=True, exist_ok=True)
            workers = self.num_workers
            if self._kind == "custom":
                import pickle

                try:
                    pickle.dumps(self.cfg.custom_integrate_function)
                except Exception:  # lambdas / closures cannot go to worker processes
                    workers = 1
            jobs = [(self._event_loader, str(src), str(stem), self._kind, self._param(), self.H, self.W,
                     self._suffix_T) for src, stem in todo]
            _cache.run_pool(_frames_job, jobs, workers, self.progress, "integrating frames")

    def get_loader(self) -> Callable:
        return _cache.load_frames


class FrameFixedNumberBuilder(_FrameBuilder):
    """Frames with a fixed number of frames, split by 'number' or 'time' (SpikingJelly's rules)."""
    _kind = "number"

    def _param(self):
        return int(self.cfg.frames_number), self.cfg.split_by

    @property
    def processed_root(self) -> Path:
        return Path(self.cfg.root) / f"frames_number_{self.cfg.frames_number}_split_by_{self.cfg.split_by}"


class FrameFixedDurationBuilder(_FrameBuilder):
    """Frames of a fixed duration each (T varies; files are named ``<name>_<T>`` as in SpikingJelly)."""
    _kind = "duration"
    _suffix_T = True

    def _param(self):
        return int(self.cfg.duration)

    @property
    def processed_root(self) -> Path:
        return Path(self.cfg.root) / f"duration_{self.cfg.duration}"


class FrameCustomIntegrateBuilder(_FrameBuilder):
    """Frames from ``custom_integrate_function(events, H, W)``."""
    _kind = "custom"

    def _param(self):
        return self.cfg.custom_integrate_function

    @property
    def processed_root(self) -> Path:
        name = self.cfg.custom_integrated_frames_dir_name or _cache.fn_key(self.cfg.custom_integrate_function)
        return Path(self.cfg.root) / name


# --------------------------------------------------------------------------------------------- folder
def _decode_and_save(args):
    cls, job, out_dir = args
    n = 0
    for rel, ev in cls._decode_job(job):
        dst = Path(out_dir) / f"{rel}.npy"
        dst.parent.mkdir(parents=True, exist_ok=True)
        _cache.atomic_save(dst, np.ascontiguousarray(ev, dtype=EVENT_DTYPE))
        n += 1
    return n


class NeuromorphicDatasetFolder(torch.utils.data.Dataset):
    """Base class of every dataset (see the module docstring).  Extra keyword-only arguments:
    ``num_workers`` (preprocessing processes, default ``min(8, cpus)``) and ``progress`` (tqdm bars)."""

    def __init__(self, root: Union[str, Path], train: Optional[bool] = None, data_type: str = "event",
                 frames_number: Optional[int] = None, split_by: Optional[str] = None, duration: Optional[int] = None,
                 custom_integrate_function: Optional[Callable] = None,
                 custom_integrated_frames_dir_name: Optional[str] = None, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, *, num_workers: Optional[int] = None,
                 progress: bool = True):
        self.cfg = NeuromorphicDatasetConfig(Path(root), train, data_type, frames_number, split_by, duration,
                                             custom_integrate_function, custom_integrated_frames_dir_name,
                                             transform, target_transform)
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else int(num_workers)
        self.progress = progress
        self.prepare_raw_dataset()
        builder = self.get_dataset_builder()
        builder.num_workers, builder.progress = self.num_workers, self.progress
        self.processed_root, loader = builder.build()
        if self.cfg.train is not None:
            split_root = Path(self.processed_root) / ("train" if self.cfg.train else "test")
        else:
            split_root = self.get_root_when_train_is_none(Path(self.processed_root))
        self._init_folder(split_root, loader)

    # ------------------------------------------------------------ torchvision DatasetFolder behaviour
    def _init_folder(self, split_root: Path, loader: Callable) -> None:
        self.root = str(split_root)
        self.loader = loader
        self.extensions = self.get_extensions()
        self.transform, self.target_transform = self.cfg.transform, self.cfg.target_transform
        self.classes, self.class_to_idx = self.find_classes(split_root)
        self.samples = self._select(self.make_dataset(split_root, self.class_to_idx, self.extensions))
        self.targets = [s[1] for s in self.samples]

    @staticmethod
    def find_classes(directory) -> Tuple[list, dict]:
        """Sorted sub-folder names and their indices (torchvision's rule: string order)."""
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"{directory}: no such dataset folder")
        classes = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
        return classes, {c: i for i, c in enumerate(classes)}

    @staticmethod
    def make_dataset(directory, class_to_idx: dict, extensions=None) -> list:
        """``(path, class index)`` of every file, classes in sorted order, files sorted inside each."""
        out = []
        for c in sorted(class_to_idx):
            for rel, p in _event_files(Path(directory) / c):
                if extensions is None or p.name.lower().endswith(tuple(extensions)):
                    out.append((str(p), class_to_idx[c]))
        return out

    @classmethod
    def _class_dirs(cls, extract_root) -> tuple:
        """Class folders (relative to the events tree) that exist even when empty."""
        return ()

    def _select(self, samples: list) -> list:
        """Hook for fastspike's extra selections (unofficial splits, scales)."""
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        sample = self.loader(path)
        if self.transform is not None:
            sample = self.transform(sample)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return sample, target

    # ------------------------------------------------------------ preparing the events tree
    @property
    def raw_root(self) -> Path:
        """The decoded events tree."""
        return Path(self.cfg.root) / "events_np"

    def resources(self) -> list:
        """The published files as :class:`Resource` (default: from ``resource_url_md5``)."""
        return [r if isinstance(r, Resource) else Resource(*r) for r in self.resource_url_md5()]

    def prepare_raw_dataset(self) -> None:
        """Verify and extract the archives, then decode every recording into ``raw_root`` (atomically)."""
        if self.raw_root.is_dir():
            return
        root = Path(self.cfg.root)
        with _cache.build_lock(root):
            _cache.remove_orphans(root)
            if self.raw_root.is_dir():  # another process finished it while we waited
                return
            extract_root = root / "extract"
            if not extract_root.is_dir():
                download = root / "download"
                check_archives(type(self).__name__, self.resources(), download)
                tmp = _cache.temp_dir(root, "extract")
                try:
                    self.extract_downloaded_files(download, tmp)
                    os.replace(tmp, extract_root)
                finally:
                    if tmp.exists():
                        import shutil

                        shutil.rmtree(tmp, ignore_errors=True)
            tmp = _cache.temp_dir(root, "events_np")
            try:
                if hasattr(self, "_raw_jobs"):
                    jobs = self._raw_jobs(extract_root)
                    if not jobs:
                        raise FileNotFoundError(f"{type(self).__name__}: no recordings found under {extract_root}")
                    _cache.run_pool(_decode_and_save, [(type(self), j, str(tmp)) for j in jobs], self.num_workers,
                                    self.progress, f"{type(self).__name__}: decoding")
                    for d in self._class_dirs(extract_root):  # SpikingJelly creates every class folder, even empty ones
                        (tmp / d).mkdir(parents=True, exist_ok=True)
                else:
                    self.create_raw_from_extracted(extract_root, tmp)
                os.replace(tmp, self.raw_root)
            finally:
                if tmp.exists():
                    import shutil

                    shutil.rmtree(tmp, ignore_errors=True)

    def extract_downloaded_files(self, download_root: Path, extract_root: Path) -> None:
        """Default: extract every required archive into ``extract_root`` (other files are copied)."""
        import shutil

        for r in self.resources():
            p = Path(download_root) / r.file_name
            if r.optional or not p.exists():
                continue
            if r.file_name.lower().endswith((".zip", ".tar", ".tar.gz", ".tgz")):
                extract_archive(p, extract_root)
            else:
                shutil.copy(p, Path(extract_root) / r.file_name)

    @classmethod
    def create_raw_from_extracted(cls, extract_root: Path, raw_root: Path) -> None:
        """Write ``raw_root/<split>/<class>/<name>`` event files (fastspike's classes: serially)."""
        if not hasattr(cls, "_raw_jobs"):
            raise NotImplementedError(f"{cls.__name__} must define create_raw_from_extracted or _raw_jobs")
        for job in cls._raw_jobs(extract_root):
            _decode_and_save((cls, job, str(raw_root)))

    # ------------------------------------------------------------ SpikingJelly's protocol
    def get_dataset_builder(self) -> NeuromorphicDatasetBuilder:
        if self.cfg.data_type == "event":
            return EventBuilder(self.cfg, self.raw_root)
        H, W = self.get_H_W()
        if self.cfg.frames_number is not None:
            return FrameFixedNumberBuilder(self.cfg, self.raw_root, H, W)
        if self.cfg.duration is not None:
            return FrameFixedDurationBuilder(self.cfg, self.raw_root, H, W)
        return FrameCustomIntegrateBuilder(self.cfg, self.raw_root, H, W)

    def get_root_when_train_is_none(self, _root: Path) -> Path:
        return _root

    @classmethod
    def get_extensions(cls) -> Tuple[str, ...]:
        return (".npy", ".npz")

    @classmethod
    def get_H_W(cls) -> Tuple:
        raise NotImplementedError

    @classmethod
    def resource_url_md5(cls) -> list:
        raise NotImplementedError

    @classmethod
    def downloadable(cls) -> bool:
        return False
