"""Build script: setuptools drives CMake, which builds the C++17/pybind11 extension ``fastspike._C``.

CMakeLists.txt is the single source of truth for the native build; this file only finds the tools,
passes the paths CMake needs and puts the built library where ``fastspike/_C*.so`` is expected.
"""
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str, sourcedir: str = "", optional: bool = False) -> None:
        super().__init__(name, sources=[], optional=optional)
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


def _dispatch_off() -> bool:
    return os.environ.get("FASTSPIKE_DISPATCH", "").lower() in ("0", "off", "false", "no")


def _extensions() -> list[CMakeExtension]:
    """fastspike._C, and in a portable x86-64 build its AVX2 / AVX-512 variants (CMakeLists.txt builds all of them
    in one CMake run). The variants are declared so that setuptools copies them too (an editable install copies
    only declared extensions into the source tree); optional, because CMake skips one whose -march the compiler
    lacks (with a warning), and the loader (fastspike/_ext.py) then uses the next narrower one."""
    exts = [CMakeExtension("fastspike._C", sourcedir=str(ROOT))]
    if (os.environ.get("FASTSPIKE_PORTABLE") and not os.environ.get("FASTSPIKE_MARCH") and not _dispatch_off()
            and platform.machine().lower() in ("x86_64", "amd64")):
        exts += [CMakeExtension(f"fastspike._C_{level}", sourcedir=str(ROOT), optional=True)
                 for level in ("avx2", "avx512")]
    return exts


def _fail(msg: str) -> None:
    sys.stderr.write("\n" + "=" * 78 + "\nfastspike build error: " + msg + "\n" + "=" * 78 + "\n")
    raise SystemExit(1)


class CMakeBuild(build_ext):
    def remove_stale_variants(self, *folders: Path) -> None:
        """Variant modules this build does not make, left by an earlier portable build (in the build folder, or in
        the source tree of an editable install), would be imported in place of this build's code: delete them."""
        declared = {ext.name.rsplit(".", 1)[1] for ext in self.extensions}
        for folder in set(folders):
            for path in folder.glob("_C_*"):
                if path.name.split(".", 1)[0] not in declared and path.suffix in (".so", ".pyd", ".dylib"):
                    path.unlink()

    def build_extension(self, ext: CMakeExtension) -> None:
        if ext.name != "fastspike._C":
            return  # a portable build's variant: built into the same directory by fastspike._C's CMake run
        cmake = shutil.which("cmake")
        if cmake is None:
            try:  # the PyPI 'cmake' package (declared in pyproject.toml) puts its binary here
                import cmake as _cmake_pkg  # type: ignore

                cmake = os.path.join(_cmake_pkg.CMAKE_BIN_DIR, "cmake")
            except ImportError:
                pass
        if cmake is None or not os.path.exists(cmake):
            _fail("CMake >= 3.18 was not found. Install it with `pip install cmake` "
                  "(or your system package manager, e.g. `apt-get install cmake`) and retry `pip install -e .`.")
        cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
        if cxx is None:
            _fail("No C++17 compiler was found (looked for $CXX, c++, g++, clang++). Install one, e.g. "
                  "`apt-get install g++` on Debian/Ubuntu or Xcode command line tools on macOS, then retry.")
        try:
            import pybind11
        except ImportError:
            _fail("pybind11 is missing. `pip install pybind11` (it is a build requirement in pyproject.toml; "
                  "with --no-build-isolation it must already be installed).")

        extdir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        self.remove_stale_variants(extdir, ROOT / "fastspike")
        build_type = os.environ.get("FASTSPIKE_BUILD_TYPE", "Release")
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DCMAKE_BUILD_TYPE={build_type}",
            f"-DCMAKE_CXX_COMPILER={cxx}",
        ]
        # Target instruction set (CMakeLists.txt decides; csrc/simd.h follows): FASTSPIKE_PORTABLE=1 builds for the
        # compiler's default target, on x86-64 with AVX2 and AVX-512 variants picked at import (FASTSPIKE_DISPATCH=0:
        # the baseline alone), FASTSPIKE_MARCH=x86-64-v3 (say) for that -march; FASTSPIKE_WERROR=1 makes warnings
        # errors.
        if os.environ.get("FASTSPIKE_PORTABLE"):
            args.append("-DFASTSPIKE_NATIVE=OFF")
        if _dispatch_off():
            args.append("-DFASTSPIKE_DISPATCH=OFF")
        if os.environ.get("FASTSPIKE_MARCH"):
            args.append(f"-DFASTSPIKE_MARCH={os.environ['FASTSPIKE_MARCH']}")
        if os.environ.get("FASTSPIKE_WERROR"):
            args.append("-DFASTSPIKE_WERROR=ON")
        try:
            subprocess.run([cmake, ext.sourcedir, *args], cwd=build_temp, check=True)
            jobs = str(max(1, os.cpu_count() or 1))
            subprocess.run([cmake, "--build", ".", "--config", build_type, "-j", jobs], cwd=build_temp, check=True)
        except subprocess.CalledProcessError as e:
            _fail(f"CMake failed ({e}). The output above names the cause; a C++17 compiler with OpenMP "
                  "(g++ >= 9 or clang++ with libomp) is required.")


setup(
    name="fastspike",
    version="0.1.0",
    description="Fast spiking neural networks for PyTorch: SpikingJelly-compatible API, Triton and C++ kernels",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=(find_packages(include=["fastspike", "fastspike.*"]) + ["fastspike.kernels"]
              + [f"fastspike.kernels.{p}" for p in find_packages("kernels")]),
    package_dir={"fastspike.kernels": "kernels"},
    ext_modules=_extensions(),
    cmdclass={"build_ext": CMakeBuild},
    install_requires=["numpy", "tqdm"],  # torch is installed first by the user (CPU or CUDA build)
    extras_require={
        "triton": ["triton"],
        "test": ["pytest", "pytest-benchmark", "scikit-learn", "h5py", "matplotlib", "scipy"],
        "export": ["nir", "h5py"],
        "plot": ["matplotlib"],
    },
    zip_safe=False,
)
