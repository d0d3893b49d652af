"""Shared machinery of the dataset classes: archive checks, extraction, parallel decoding, caches.

Directory layout under ``root``::

    root/download/<archive>          the original archives (placed there by the user)
    root/extract/                    extracted archives (renamed into place when complete)
    root/events/                     decoded events, one .npy per sample + index.json (atomic dir)
    root/frames_<key>/               integrated frames for one parameter set (atomic files)

The events directory is built under a temporary name and renamed into place with ``os.replace`` only
when every recording decoded (a malformed file leaves no events cache at all); every file (events or
frames) is written to a temporary name then renamed.  An interrupted or failed run therefore leaves
nothing that a later run would load as data.  ``<key>`` holds every integration parameter
(``frames_number_16_split_by_number``, ``duration_10000``, ``custom_<name>_<source hash>``), so
changing a parameter never returns stale frames.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import inspect
import json
import math
import multiprocessing
import os
import pickle
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch.utils.data

from .formats import EVENT_DTYPE
from .frames import to_frames

__all__ = ["Resource", "NeuromorphicDataset", "MissingArchivesError", "md5sum", "atomic_save",
           "stratified_split"]


@dataclass(frozen=True)
class Resource:
    filename: str
    md5: Optional[str]  # None: no published checksum; the file is used unverified
    url: str
    md5_source: str = ""


class MissingArchivesError(FileNotFoundError):
    pass


def md5sum(path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def atomic_save(path, array) -> None:
    """np.save to a temporary file in the same directory, then os.replace onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _atomic_write_text(path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a .zip / .tar(.gz) archive into ``dest``, refusing members that escape it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    root = dest.resolve()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():
                if not (root / m).resolve().is_relative_to(root):
                    raise ValueError(f"{archive}: member {m!r} would be extracted outside {dest}")
            z.extractall(dest)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    else:
        raise ValueError(f"{archive}: unknown archive type")


def stratified_split(labels: Sequence[int], train: bool, ratio: float = 0.9, seed: int = 0) -> List[int]:
    """Indices of a class-stratified split: for each class (ascending), its samples (in the given
    order) are permuted by ``numpy.random.default_rng(seed)`` (one generator, classes in order) and the
    first ``ceil(n_class * ratio)`` go to train, the rest to test."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        idx = idx[rng.permutation(idx.size)]
        k = math.ceil(idx.size * ratio)
        out.extend((idx[:k] if train else idx[k:]).tolist())
    return sorted(out)


def _mp_context():
    """Workers come from a fork server that imported fastspike.datasets once and never ran a thread
    pool: forking this (possibly multi-threaded, OpenMP-using) process directly can deadlock (libgomp
    is not fork-safe), and spawning re-imports torch for every worker."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["fastspike.datasets"])
    return ctx


def _run_pool(fn, jobs, workers: int, progress: bool, desc: str):
    """Run fn(job) for every job (process pool when workers > 1) with a tqdm bar; results in order."""
    from tqdm.auto import tqdm

    results = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = fn(job)
                bar.update()
        else:
            ctx = _mp_context()
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
                futs = {ex.submit(fn, job): i for i, job in enumerate(jobs)}
                try:
                    for fut in cf.as_completed(futs):
                        results[futs[fut]] = fut.result()
                        bar.update()
                except BaseException:
                    for f in futs:
                        f.cancel()
                    raise
    finally:
        bar.close()
    return results


def _fn_key(fn: Callable) -> str:
    """Stable identity of a custom integrate function: qualified name + hash of its source/bytecode."""
    try:
        src = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        src = code.co_code if code is not None else repr(fn).encode()
    name = getattr(fn, "__qualname__", type(fn).__name__)
    return f"custom_{name}_{hashlib.sha1(src).hexdigest()[:12]}".replace("<", "").replace(">", "")


def _frames_worker(args):
    """Integrate one cached event file into one cached frame file (runs in a worker process)."""
    src, dst, sensor_size, frames_number, split_by, duration, custom = args
    ev = np.load(src)
    if custom is not None:  # SpikingJelly's signature: fn(events, H, W), or fn(events, W) for 1-D sensors
        frames = np.asarray(custom(ev, sensor_size[0]) if len(sensor_size) == 1
                            else custom(ev, sensor_size[1], sensor_size[0]))
    else:
        frames = to_frames(ev, sensor_size, frames_number, split_by, duration)
    atomic_save(dst, frames)
    return int(frames.shape[0]) if frames.ndim else 0


class NeuromorphicDataset(torch.utils.data.Dataset):
    """Base class.  Subclasses define ``sensor_size``, ``num_classes``, ``resources()``, ``_jobs()``
    and ``_decode()``; see the module docstring for the directory layout.

    Args (SpikingJelly-like):
        root: dataset directory (archives go in ``root/download``).
        train: True / False for the published split (None: every sample, where allowed).
        data_type: 'event' (structured array t, x, y, p) or 'frame' (float32 array).
        frames_number, split_by: fixed-T frames, split by 'number' or 'time'.
        duration: fixed-duration frames (variable T; use :func:`pad_sequence_collate`).
        custom_integrate_function: ``fn(events, H, W) -> frames`` (``fn(events, W)`` for SHD/SSC),
            ``events`` indexable by 't', 'x', 'y', 'p' as in SpikingJelly; its cache is keyed by its
            qualified name and source hash (or ``custom_integrated_frames_dir_name`` when given).
        transform, target_transform: applied in ``__getitem__``.
        num_workers: preprocessing processes (default: ``min(8, os.cpu_count())``).
        progress: show tqdm progress bars while preprocessing.
    """

    sensor_size: tuple = ()
    num_classes: int = 0
    splits_allowed: tuple = (True, False, None)

    def __init__(self, root, train: Optional[bool] = None, data_type: str = "event",
                 frames_number: Optional[int] = None, split_by: Optional[str] = None,
                 duration: Optional[int] = None, custom_integrate_function: Optional[Callable] = None,
                 custom_integrated_frames_dir_name: Optional[str] = None,
                 transform: Optional[Callable] = None, target_transform: Optional[Callable] = None,
                 num_workers: Optional[int] = None, progress: bool = True):
        super().__init__()
        if data_type not in ("event", "frame"):
            raise ValueError(f"data_type must be 'event' or 'frame', got {data_type!r}")
        if train not in self.splits_allowed:
            raise ValueError(f"{type(self).__name__}: train must be one of {self.splits_allowed}, got {train!r}")
        self.root = Path(root)
        self.train = train
        self.data_type = data_type
        self.transform, self.target_transform = transform, target_transform
        self.num_workers = min(8, os.cpu_count() or 1) if num_workers is None else int(num_workers)
        self.progress = progress
        self._frames_key = None
        if data_type == "frame":
            given = [frames_number is not None, duration is not None, custom_integrate_function is not None]
            if sum(given) != 1:
                raise ValueError("data_type='frame' needs exactly one of frames_number (with split_by), "
                                 "duration, custom_integrate_function")
            if frames_number is not None:
                if split_by not in ("number", "time"):
                    raise ValueError(f"split_by must be 'number' or 'time', got {split_by!r}")
                if int(frames_number) != frames_number or frames_number <= 0:
                    raise ValueError(f"frames_number must be a positive integer, got {frames_number!r}")
                self._frames_key = f"frames_number_{int(frames_number)}_split_by_{split_by}"
            elif duration is not None:
                if int(duration) != duration or duration <= 0:
                    raise ValueError(f"duration must be a positive integer (µs), got {duration!r}")
                self._frames_key = f"duration_{int(duration)}"
            else:
                self._frames_key = custom_integrated_frames_dir_name or _fn_key(custom_integrate_function)
        self.frames_number, self.split_by, self.duration = frames_number, split_by, duration
        self.custom_integrate_function = custom_integrate_function

        events_dir = self.root / f"events{self.cache_tag()}"
        if not (events_dir / "index.json").exists():
            extract_dir = self._prepare_extract()
            self._build_events(extract_dir, events_dir)
        index = json.loads((events_dir / "index.json").read_text())
        samples = [s for s in index["samples"] if self._keep(s)]
        samples = self._select(samples)
        self.samples = samples
        self.targets = [int(s["label"]) for s in samples]
        self.events_dir = events_dir
        if data_type == "frame":
            self.frames_dir = self.root / f"frames{self.cache_tag()}_{self._frames_key}"
            self._build_frames(samples, events_dir, self.frames_dir)

    # ------------------------------------------------------------------ to be defined by subclasses
    def cache_tag(self) -> str:
        """Suffix of the cache directory names (datasets with several subsets in one root)."""
        return ""

    @classmethod
    def resources(cls) -> List[Resource]:
        raise NotImplementedError

    def _jobs(self, extract_dir: Path) -> list:
        """Picklable jobs; ``type(self)._decode(job)`` turns one into a list of samples."""
        raise NotImplementedError

    @classmethod
    def _decode(cls, job) -> list:
        """-> list of (name, events, label, split) with split in ('train', 'test', 'valid', 'all')."""
        raise NotImplementedError

    def _keep(self, s) -> bool:
        if self.train is None:
            return True
        return s["split"] == ("train" if self.train else "test")

    def _select(self, samples):
        return samples

    # ------------------------------------------------------------------ archives and extraction
    def check_archives(self, root) -> List[Path]:
        """Paths of the archives; raise MissingArchivesError naming every missing file, its published
        md5 and where to place it."""
        cls = type(self)
        download = Path(root) / "download"
        missing = [r for r in self.resources() if not (download / r.filename).exists()]
        if missing:
            lines = [f"{cls.__name__}: {len(missing)} original archive(s) missing. Nothing can be "
                     f"downloaded automatically; place each file below in {download}/ :"]
            for r in missing:
                md5 = r.md5 if r.md5 else "none published (not verified)"
                lines.append(f"  - {r.filename}  md5 {md5}  from {r.url}  -> {download / r.filename}")
            raise MissingArchivesError("\n".join(lines))
        return [download / r.filename for r in self.resources()]

    def _prepare_extract(self) -> Path:
        extract_dir = self.root / "extract"
        if extract_dir.is_dir():
            return extract_dir
        paths = self.check_archives(self.root)
        for r, p in zip(self.resources(), paths):
            if r.md5:
                got = md5sum(p)
                if got != r.md5:
                    raise ValueError(f"{p}: md5 {got} does not match the published {r.md5} "
                                     f"({r.md5_source}); the file is corrupt or a different release")
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".extract.tmp-"))
        try:
            for p in paths:
                self._extract_one(p, tmp)
            os.replace(tmp, extract_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return extract_dir

    def _extract_one(self, archive: Path, dest: Path) -> None:
        extract_archive(archive, dest)

    # ------------------------------------------------------------------ caches
    def _build_events(self, extract_dir: Path, events_dir: Path) -> None:
        jobs = self._jobs(extract_dir)
        if not jobs:
            raise FileNotFoundError(f"{type(self).__name__}: no recordings found under {extract_dir}")
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".events.tmp-"))
        try:
            results = _run_pool(_decode_and_save, [(type(self), job, str(tmp)) for job in jobs],
                                self.num_workers, self.progress, f"{type(self).__name__}: decoding")
            samples = [s for r in results for s in r]
            _atomic_write_text(tmp / "index.json", json.dumps({"samples": samples}))
            if (events_dir / "index.json").exists():  # another process finished first: keep its cache
                shutil.rmtree(tmp, ignore_errors=True)
                return
            if events_dir.exists():  # a leftover directory without an index is never loaded: replace it
                shutil.rmtree(events_dir)
            os.replace(tmp, events_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _build_frames(self, samples, events_dir: Path, frames_dir: Path) -> None:
        """Integrate the samples whose frame file is missing; each file is written atomically, so
        the directory only ever holds complete frame files for this parameter set."""
        frames_dir.mkdir(parents=True, exist_ok=True)
        todo = [s for s in samples if not (frames_dir / s["file"]).exists()]
        if not todo:
            return
        workers = self.num_workers
        if self.custom_integrate_function is not None:
            try:
                pickle.dumps(self.custom_integrate_function)
            except Exception:  # lambdas / closures cannot go to worker processes
                workers = 1
        jobs = [(str(events_dir / s["file"]), str(frames_dir / s["file"]), tuple(self.frame_sensor_size()),
                 self.frames_number, self.split_by, self.duration, self.custom_integrate_function)
                for s in todo]
        _run_pool(_frames_worker, jobs, workers, self.progress, f"{type(self).__name__}: integrating frames")

    def frame_sensor_size(self):
        return self.sensor_size

    # ------------------------------------------------------------------ Dataset protocol
    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        if self.data_type == "event":
            x = np.load(self.events_dir / s["file"])
        else:
            x = np.load(self.frames_dir / s["file"])
        label = int(s["label"])
        if self.transform is not None:
            x = self.transform(x)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return x, label


def _decode_and_save(args):
    cls, job, out_dir = args
    out = []
    for name, ev, label, split in cls._decode(job):
        ev = np.ascontiguousarray(ev, dtype=EVENT_DTYPE) if ev.dtype != EVENT_DTYPE else ev
        fname = f"{name}.npy"
        atomic_save(Path(out_dir) / fname, ev)
        out.append({"file": fname, "label": int(label), "split": split, "n": int(ev.shape[0])})
    return out
