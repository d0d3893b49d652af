"""The compiled CPU extension: ``fastspike._C``, or in a portable build the variant of it that this CPU runs best.

A build for the building machine (the default, ``-march=native``) or for ``FASTSPIKE_MARCH`` is one module,
``fastspike._C``. A portable x86-64 build (``FASTSPIKE_PORTABLE=1``, e.g. a wheel for other machines) carries
three: ``_C`` for the x86-64 baseline, ``_C_avx2`` (x86-64-v3) and ``_C_avx512`` (x86-64-v4), all from the same
sources; the widest one the CPU supports is imported (the CPU's level comes from ``_C.build_info()['cpu_isa']``).
``FASTSPIKE_CPU_ISA=portable|avx2|avx512`` asks for a level at or below the CPU's instead (to compare levels on
one machine, or to rule out a variant).

The module is chosen and imported once, when fastspike is imported; ``import fastspike`` works even when the
extension failed to build (using the ``cpp`` backend then raises an error that carries the real cause and the fix),
and fails with a ValueError naming the variable when FASTSPIKE_CPU_ISA asks for a level that cannot be given.
"""
from __future__ import annotations

import importlib
import os

_REBUILD = ("Rebuild it from the repository root with `pip install -e .` "
            "(a C++17 compiler, CMake and OpenMP are needed).")

ENV = "FASTSPIKE_CPU_ISA"
LEVELS = ("portable", "avx2", "avx512")  # a portable build's variants, narrowest first
_VARIANT = {"portable": "_C", "avx2": "_C_avx2", "avx512": "_C_avx512"}


def choose(build_isa: str, cpu_isa: str, requested: str | None) -> str:
    """The level whose module to import: ``build_isa`` is what ``_C`` was built for, ``cpu_isa`` the CPU's widest
    level, ``requested`` the value of FASTSPIKE_CPU_ISA (None or '' when unset). Raises ValueError naming the
    variable when the request is not a level, is wider than the CPU, or asks a single-level build for another."""
    requested = (requested or "").strip().lower() or None
    if requested is not None and requested not in LEVELS + ("neon",):
        raise ValueError(f"{ENV}={requested!r}: expected one of {', '.join(LEVELS)} (x86-64) or neon (aarch64), or "
                         "unset (the widest this CPU runs).")
    if build_isa != "portable" or cpu_isa not in LEVELS:
        # one module, built for one level (-march=native, FASTSPIKE_MARCH, or aarch64's NEON)
        if requested is not None and requested != build_isa:
            raise ValueError(f"{ENV}={requested!r}: this build of fastspike has only {build_isa} kernels "
                             f"(fastspike._C, flags in its build_info()); the level can be chosen at import only in "
                             "a portable x86-64 build (FASTSPIKE_PORTABLE=1 pip install ...).")
        return build_isa
    if requested is None:
        return cpu_isa
    if requested not in LEVELS or LEVELS.index(requested) > LEVELS.index(cpu_isa):
        raise ValueError(f"{ENV}={requested!r}: this CPU runs at most {cpu_isa} kernels.")
    return requested


def variant(level: str):
    """The module of one level of a portable build (ImportError when that variant was not built)."""
    return importlib.import_module(f"{__package__}.{_VARIANT[level]}")


def levels() -> tuple:
    """The levels ``FASTSPIKE_CPU_ISA`` may name with this build on this CPU: every level up to the CPU's whose
    module is installed in a portable build, else the one level the build has. Never imports a variant wider than
    the CPU (its import code may already use the wider instructions)."""
    info = variant("portable").build_info()
    if info["isa"] != "portable" or info["cpu_isa"] not in LEVELS:
        return (info["isa"],)
    out = []
    for level in LEVELS[:LEVELS.index(info["cpu_isa"]) + 1]:
        try:
            variant(level)
        except ImportError:
            continue
        out.append(level)
    return tuple(out)


def _load():
    """(the module to use, None) or (None, the ImportError that says why there is none)."""
    try:
        base = variant("portable")  # fastspike._C: every build has it
    except ImportError as e:  # keep the real cause visible
        return None, e
    info = base.build_info()
    level = choose(info["isa"], info["cpu_isa"], os.environ.get(ENV))  # a bad request raises
    if level == info["isa"]:
        return base, None
    try:
        return variant(level), None
    except ImportError as e:
        if os.environ.get(ENV):
            return None, ImportError(f"{ENV} asks for the {level} kernels, but this portable build has no "
                                     f"fastspike.{_VARIANT[level]} ({e})")
        # built without that variant (FASTSPIKE_DISPATCH=0, or a compiler without its -march: CMakeLists.txt
        # warned): the next narrower one, down to the baseline
        for lower in reversed(LEVELS[1:LEVELS.index(level)]):
            try:
                return variant(lower), None
            except ImportError:
                continue
        return base, None


# Chosen once, when fastspike is imported: a lookup per call would be traced by torch.compile (importlib and the
# pybind11 build_info() call are graph breaks), while a module global is a constant to it. A bad FASTSPIKE_CPU_ISA
# raises here, at import; a missing or broken extension is kept as the error that get() raises.
_LOADED = _load()


def reload():
    """Choose again (after changing FASTSPIKE_CPU_ISA in this process; the tests' stand-in modules)."""
    global _LOADED
    _LOADED = _load()


def available() -> bool:
    return _LOADED[0] is not None


def get():
    """Return the extension module or raise RuntimeError naming the cause and how to rebuild."""
    mod, err = _LOADED
    if mod is None:
        raise RuntimeError(f"fastspike's C++ extension (fastspike._C) could not be imported: {err!r}. {_REBUILD}")
    return mod
