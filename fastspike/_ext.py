"""Lazy access to the compiled CPU extension ``fastspike._C``.

The extension is imported on first use, so ``import fastspike`` works even when it failed to build;
using the ``cpp`` backend then raises an error that carries the real cause and the fix.
"""
from __future__ import annotations

import functools

_REBUILD = ("Rebuild it from the repository root with `pip install -e .` "
            "(a C++17 compiler, CMake and OpenMP are needed).")


@functools.lru_cache(maxsize=None)
def _load():
    try:
        from . import _C  # type: ignore[attr-defined]
    except ImportError as e:  # keep the real cause visible
        return None, e
    return _C, None


def available() -> bool:
    return _load()[0] is not None


def get():
    """Return the extension module or raise RuntimeError naming the cause and how to rebuild."""
    mod, err = _load()
    if mod is None:
        raise RuntimeError(f"fastspike's C++ extension (fastspike._C) could not be imported: {err!r}. {_REBUILD}")
    return mod
