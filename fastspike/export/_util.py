"""Small helpers shared by the exporters: the lazy ``nir`` import, tensor -> numpy, integer pairs and
atomic file writes (a temporary file in the target directory, then ``os.replace``)."""
from __future__ import annotations

import os
import uuid
from typing import Callable, Tuple, Union

import numpy as np
import torch

__all__ = ["nir_module", "to_numpy", "pair", "atomic_write"]


def nir_module():
    """The ``nir`` package, or an ImportError that says how to install it."""
    try:
        import nir
    except ImportError as e:  # pragma: no cover - nir is a declared dependency of the exporter
        raise ImportError("fastspike.export NIR support needs the 'nir' package: pip install nir") from e
    return nir


def to_numpy(t) -> np.ndarray:
    """A float32 numpy copy of a tensor (detached, on the CPU) or of anything array-like."""
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(torch.float32).numpy().copy()
    return np.asarray(t, dtype=np.float32)


def pair(v, n: int = 2) -> Tuple[int, ...]:
    """``n`` ints from an int or a sequence of ints (torch's kernel_size/stride/padding conventions)."""
    if isinstance(v, (tuple, list)):
        return tuple(int(x) for x in v)
    return (int(v),) * n


def atomic_write(path: Union[str, os.PathLike], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a fresh temporary file next to ``path``, then move it onto ``path``.

    A crash or an exception inside ``write`` leaves ``path`` as it was (no half-written file) and removes the
    temporary file."""
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    # a fresh name created by ``write`` itself, so the file gets the usual permissions (mkstemp's are 0600)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
