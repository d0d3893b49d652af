#!/usr/bin/env bash
# Prepare a GPU check on this machine (it needs the package registries; the GPU machine has no network).
#
#   bash bench/gpu_prepare.sh
#
# The lent GPU machine (`run` of the device tool) starts bare from an image that has torch, triton, pytest,
# pytest-xdist, pybind11, cmake and most test dependencies, but none of the peer frameworks the suite compares
# against, and the ../shared/data folder beside the checkout does not travel. This script puts into .gpu/
# (ignored by git) what bench/gpu_check.sh then uses there:
#   .gpu/wheels/   wheels for the GPU machine's Python (GPU_PY, default 3.12, manylinux x86-64): the packages of
#                  requirements-peers.txt and requirements-test.txt that its image lacks (GPU_WHEELS below).
#                  A package published only as a source archive is built into a wheel here when it is pure
#                  Python; one that would need compiling for GPU_PY is left out and named.
#   .gpu/data/     the real sample files of ../shared/data/neuromorphic (tests/test_datasets_*.py).
# Then, in one call of the device tool (about 10 minutes, its per-command limit):
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=600)
# and commit what comes back under bench/results/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
GPU_PY="${GPU_PY:-3.12}"
DEST="${GPU_CARRY:-$ROOT/.gpu}"
# what the GPU image lacks (/work/.library/device/KINDS.md lists its packages), pinned as CI pins them
GPU_WHEELS="${GPU_WHEELS:-spikingjelly==2.0.0 snntorch==1.0.0 norse==1.1.0 tonic==1.7.0 nir==1.0.8 nirtorch==2.6
  loguru aedat expelliarmus importRosbag}"
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64
           manylinux1_x86_64)

rm -rf "$DEST/wheels" "$DEST/data"
mkdir -p "$DEST/wheels"
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
missing=()
for req in $GPU_WHEELS; do
  if "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$GPU_PY" --implementation cp \
        "${platform_args[@]}" -d "$DEST/wheels" "$req" > /dev/null 2>&1; then
    echo "wheel: $req"
    continue
  fi
  # no binary wheel for that Python: build one from the source archive, kept only if it is pure Python
  tmp="$(mktemp -d)"
  if "$PY" -m pip wheel -q --no-deps -w "$tmp" "$req" > /dev/null 2>&1 && ls "$tmp"/*-py3-none-any.whl \
        > /dev/null 2>&1; then
    mv "$tmp"/*-py3-none-any.whl "$DEST/wheels/"
    echo "wheel: $req (built here from its source archive: pure Python)"
  else
    missing+=("$req")
  fi
  rm -rf "$tmp"
done

DATA="${FASTSPIKE_NEURO_DATA:-$ROOT/../shared/data/neuromorphic}"
if [ -d "$DATA" ]; then
  mkdir -p "$DEST/data"
  cp -r "$DATA" "$DEST/data/neuromorphic"
  echo "data: $DATA -> $DEST/data/neuromorphic"
else
  echo "data: $DATA not found; the dataset tests that read sample files will skip on the GPU machine"
fi
[ ${#missing[@]} -eq 0 ] || echo "left out (no wheel for Python $GPU_PY, not pure Python): ${missing[*]}"
echo "$(du -sh "$DEST" | cut -f1) in $DEST; next: run(command=\"bash bench/gpu_check.sh\", carry=[\".gpu\"]," \
     "timeout_s=600)"
