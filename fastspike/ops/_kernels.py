"""One loader for the Triton kernel modules (``fastspike.kernels.<name>``), with ``_ext.py``'s behaviour.

The modules are imported on first use, so ``import fastspike`` works on machines without triton; when one
cannot be imported, using the triton backend raises an error that keeps the real cause and says how to fix
it (never a silent fallback to another backend).
"""
from __future__ import annotations

import functools
import importlib

__all__ = ["load", "available"]

_FIX = ("Install triton (`pip install triton`; on CUDA machines it comes with torch) and reinstall fastspike "
        "with `pip install -e .` (or `pip install .`) so that fastspike.kernels is importable.")


@functools.lru_cache(maxsize=None)
def _import(name: str):
    try:
        return importlib.import_module(f"fastspike.kernels.{name}"), None
    except ImportError as e:  # keep the real cause visible
        return None, e


def available(name: str) -> bool:
    return _import(name)[0] is not None


def load(name: str):
    """The kernel module ``fastspike.kernels.<name>``, or a RuntimeError naming the cause and the fix."""
    mod, err = _import(name)
    if mod is None:
        raise RuntimeError(f"fastspike's Triton kernels (fastspike.kernels.{name}) could not be imported: {err!r}. "
                           f"{_FIX}")
    return mod
