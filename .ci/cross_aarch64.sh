#!/usr/bin/env bash
# The C++ extension for aarch64 (Linux, LP64: Graviton, Ampere, Raspberry Pi 4/5; Apple M-series under Linux):
# 1. cross-compiles and links fastspike._C from csrc/ with g++-aarch64-linux-gnu, configuring the same
#    CMakeLists.txt (the one place the compiler flags are decided) with -Werror, so an x86-only intrinsic, header
#    or flag fails here;
# 2. builds .ci/kernel_check.cpp (the kernels against naive loops, no Python) statically with the flags CMake
#    chose and runs it under qemu-user: the NEON branch of csrc/simd.h executed, not only compiled.
# The host's Python and pybind11 headers stand in for the target's (same LP64 layout); the module is not imported.
# Installs g++-aarch64-linux-gnu and qemu-user-static with apt-get when missing (Debian/Ubuntu, as root).
#
#   bash .ci/cross_aarch64.sh             # in the project's virtual environment (pybind11 and cmake installed)
#   FASTSPIKE_CROSS_NO_RUN=1 bash .ci/cross_aarch64.sh    # compile only, no qemu
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

need=()
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
if [ -z "${FASTSPIKE_CROSS_NO_RUN:-}" ] && ! command -v qemu-aarch64-static >/dev/null; then
  need+=(qemu-user-static)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "cross_aarch64: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
log="$BUILD/build.log"
run() {  # quiet unless it fails
  if ! "$@" >>"$log" 2>&1; then
    cat "$log"
    echo "cross_aarch64: FAILED: $*"
    exit 1
  fi
}
run cmake -S . -B "$BUILD/cmake" \
  -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ \
  -DPython_EXECUTABLE="$(command -v "$PY")" \
  -DPython_INCLUDE_DIR="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
  -Dpybind11_DIR="$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$BUILD/out" -DFASTSPIKE_WERROR=ON
run cmake --build "$BUILD/cmake" -j "$(nproc)"
so=$(ls "$BUILD"/out/_C*.so)
file_type=$(od -An -tx1 -j18 -N2 "$so" | tr -d ' ')  # ELF e_machine: b7 00 = AArch64
[ "$file_type" = "b700" ] || { echo "cross_aarch64: $so is not an AArch64 ELF (e_machine $file_type)"; exit 1; }
echo "cross_aarch64: fastspike._C cross-compiled and linked for aarch64 with -Werror ($(grep -o 'flags: .*' "$log" | head -1))"

[ -n "${FASTSPIKE_CROSS_NO_RUN:-}" ] && exit 0
# the flags and include paths CMake chose for the module's sources; warnings are the module build's business
flags=$(sed -n 's/^CXX_FLAGS = //p' "$BUILD/cmake/CMakeFiles/_C.dir/flags.make" | sed 's/-Werror//; s/-Wall//; s/-Wextra//')
includes=$(sed -n 's/^CXX_INCLUDES = //p' "$BUILD/cmake/CMakeFiles/_C.dir/flags.make")
# shellcheck disable=SC2086  # word splitting of the flag lists is intended
run aarch64-linux-gnu-g++ $flags $includes -w .ci/kernel_check.cpp -o "$BUILD/kernel_check" -static
qemu-aarch64-static "$BUILD/kernel_check"
