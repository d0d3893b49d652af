"""The on-disk cache of generated kernels: ``$FASTSPIKE_CACHE/neurons`` (default ``~/.cache/fastspike/neurons``).

Every file is named by the hash of the source it comes from and written atomically (to a unique temporary
name in the same directory, then ``os.replace``), so processes that compile the same neuron at the same time
never see a half-written file, and a later process finds it and compiles nothing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import List

__all__ = ["KernelBuildError", "cache_dir", "write_atomic", "find_compiler", "compile_shared", "COMPILER_RUNS"]

#: how many times this process ran the C++ compiler (tests check that a cached kernel is not rebuilt)
COMPILER_RUNS: List[str] = []


class KernelBuildError(RuntimeError):
    """A generated kernel could not be built: no C++ compiler, or the compiler failed."""


def cache_dir() -> Path:
    root = os.environ.get("FASTSPIKE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "fastspike")
    path = Path(root) / "neurons"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either no file or the whole file."""
    tmp = _temp_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def find_compiler() -> str:
    """The C++ compiler: $CXX, else c++, g++ or clang++ on PATH."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["c++", "g++", "clang++"]
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise KernelBuildError(f"the neuron compiler's cpp backend needs a C++ compiler, but none of {candidates} was "
                           "found on PATH (set CXX or install g++); backend='torch' runs the step function without "
                           "one.")


def compile_shared(source: str, library: Path) -> None:
    """Compile C++ ``source`` into the shared library ``library`` (atomically: built under a temporary name)."""
    compiler = find_compiler()
    tmp = _temp_name(library)
    with tempfile.TemporaryDirectory(dir=library.parent) as work:
        src = Path(work) / "neuron.cpp"
        src.write_text(source, encoding="utf-8")
        flags = ["-O3", "-std=c++17", "-fopenmp", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno",
                 "-fno-trapping-math"]
        native = os.environ.get("FASTSPIKE_NO_MARCH_NATIVE") != "1"
        march = ["-march=native", "-mprefer-vector-width=512"] if native else []
        cmd = [compiler, *flags, *march, str(src), "-o", str(tmp)]
        COMPILER_RUNS.append(str(library))
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise KernelBuildError(f"compiling a generated neuron kernel failed ({' '.join(cmd)}):\n"
                                   f"{result.stderr[-4000:]}")
            os.replace(tmp, library)
        finally:
            if tmp.exists():
                tmp.unlink()
