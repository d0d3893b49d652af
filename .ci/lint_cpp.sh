#!/usr/bin/env bash
# Lint of csrc/: the formatting check (clang-format, pinned, style in .clang-format), and on request builds of
# fastspike._C for given -march levels with every warning of -Wall -Wextra an error (FASTSPIKE_WERROR=ON) into a
# scratch folder. CI needs no build here: .ci/install_check.sh builds the portable wheel with -Werror, which on
# x86-64 compiles every source for the baseline, x86-64-v3 (AVX2) and x86-64-v4 (AVX-512); .ci/cross_aarch64.sh
# does aarch64.
#
#   bash .ci/lint_cpp.sh                                        # formatting only
#   FASTSPIKE_LINT_MARCH="native x86-64-v3" bash .ci/lint_cpp.sh  # and -Werror builds for these
#
# The installed extension is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CLANG_FORMAT_VERSION=18.1.8  # formatting differs between releases: the check needs the one that wrote csrc/

if ! clang-format --version 2>/dev/null | grep -q "version ${CLANG_FORMAT_VERSION}"; then
  "$PY" -m pip install -q "clang-format==${CLANG_FORMAT_VERSION}"
fi
clang-format --dry-run -Werror csrc/*.cpp csrc/*.h
echo "lint_cpp: csrc/ is formatted (clang-format ${CLANG_FORMAT_VERSION})"

PYBIND11_DIR=$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
for march in ${FASTSPIKE_LINT_MARCH:-}; do
  if [ "$march" = native ]; then arch_args=(-DFASTSPIKE_NATIVE=ON); else arch_args=(-DFASTSPIKE_MARCH="$march"); fi
  build="$SCRATCH/$march"
  if ! cmake -S . -B "$build" -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$PYBIND11_DIR" \
      -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$build/out" -DFASTSPIKE_WERROR=ON "${arch_args[@]}" >"$build.log" 2>&1; then
    cat "$build.log"
    exit 1
  fi
  if ! cmake --build "$build" -j "$(nproc)" >>"$build.log" 2>&1; then
    cat "$build.log"
    exit 1
  fi
  echo "lint_cpp: -Wall -Wextra -Werror build clean (-march=$march)"
done
