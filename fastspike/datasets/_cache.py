"""Crash-safe caches and parallel preprocessing for the dataset classes.

* Every file is written to a temporary name in its directory, then renamed (``atomic_save``); whole
  directories (extracted archives, the decoded events tree) are built under a temporary name and
  renamed into place.  An interrupted run therefore never leaves a file a later run would load.
* Builds hold an exclusive lock on ``root/.fastspike.lock`` (``build_lock``); while it is held, any
  temporary file or directory left under ``root`` belongs to an interrupted run and is removed.
* Work runs in a process pool whose workers come from a fork server that imported
  ``fastspike.datasets`` once: forking a (possibly OpenMP-using) process directly can deadlock.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import inspect
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

TMP_SUFFIX = ".tmp"
TMP_DIR_MARK = ".tmp-"


def atomic_save(path, array) -> None:
    """np.save to a temporary file in the same directory, then os.replace onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def temp_dir(root: Path, name: str) -> Path:
    return Path(tempfile.mkdtemp(dir=root, prefix=f".{name}{TMP_DIR_MARK}"))


def remove_orphans(root: Path, tree=None) -> int:
    """Remove what interrupted builds left: ``root/.<name>.tmp-*`` directories and ``.*.tmp`` files
    in ``tree`` (a cache directory).  Call only while holding :func:`build_lock`."""
    n = 0
    for p in Path(root).glob(f".*{TMP_DIR_MARK}*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        n += 1
    if tree is not None and Path(tree).is_dir():
        for dirpath, _, files in os.walk(tree):
            for f in files:
                if f.startswith(".") and f.endswith(TMP_SUFFIX):
                    os.unlink(os.path.join(dirpath, f))
                    n += 1
    return n


@contextlib.contextmanager
def build_lock(root: Path):
    """Exclusive inter-process lock on ``root`` for the duration of a build."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, builds must not run concurrently
        yield
        return
    with open(root / ".fastspike.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _mp_context():
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["fastspike.datasets"])
    return ctx


def run_pool(fn, jobs, workers: int, progress: bool, desc: str):
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
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context()) as ex:
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


def fn_key(fn: Callable) -> str:
    """Cache directory of a custom integrate function: its name + a hash of its source/bytecode, so
    editing the function never returns frames of the old version."""
    try:
        src = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        src = code.co_code if code is not None else repr(fn).encode()
    name = getattr(fn, "__name__", type(fn).__name__)
    return f"{name}_{hashlib.sha1(src).hexdigest()[:12]}".replace("<", "").replace(">", "")


def load_events(path) -> dict:
    """A cached recording as SpikingJelly's dict of columns ``t, x, y, p`` (int64 arrays, so user
    arithmetic such as ``y * W + x`` cannot overflow).  Reads fastspike's EVENT_DTYPE ``.npy``, any
    structured ``.npy`` with those fields and SpikingJelly's ``.npz`` dicts; never unpickles."""
    path = str(path)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    a = np.load(path, allow_pickle=False)
    if a.dtype.names:
        return {k: a[k].astype(np.int64) if a[k].dtype.kind in "iub" else a[k] for k in a.dtype.names}
    return a


def load_frames(path) -> np.ndarray:
    """Frames as float32 from fastspike's ``.npy`` or SpikingJelly's ``.npz`` (key ``frames``)."""
    path = str(path)
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return z["frames"].astype(np.float32)
    return np.load(path, allow_pickle=False).astype(np.float32, copy=False)
