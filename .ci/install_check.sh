#!/usr/bin/env bash
# The installed package, not the editable checkout: builds a wheel of this tree, installs it into a scratch
# directory, and imports every module from there (the Triton kernels are mapped into fastspike.kernels by
# setup.py's package_dir, which only an installed copy exercises), then runs one op per backend.
#
# The wheel is the portable build a wheel for other machines would be (FASTSPIKE_PORTABLE=1), with every compiler
# warning an error: on x86-64 it carries fastspike._C (baseline), _C_avx2 and _C_avx512, and
# tests/test_csrc_dispatch.py then runs every level this CPU offers against the torch reference, from the wheel.
#
#   bash .ci/install_check.sh      # in the project's virtual environment (torch, triton, pybind11, cmake installed)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
REPO=$(pwd)
FASTSPIKE_PORTABLE=1 FASTSPIKE_WERROR=1 "$PY" -m pip wheel . --no-deps --no-build-isolation -q -w "$TMP/wheel" \
  >"$TMP/build.log" 2>&1 || { tail -n 60 "$TMP/build.log"; exit 1; }
"$PY" -m pip install --no-deps --target "$TMP/site" -q "$TMP"/wheel/*.whl
if [ "$(uname -m)" = x86_64 ]; then
  for mod in _C _C_avx2 _C_avx512; do
    ls "$TMP"/site/fastspike/"$mod".*.so >/dev/null || { echo "install check: the wheel lacks fastspike.$mod"; exit 1; }
  done
fi
cd "$TMP"  # away from the checkout: nothing may come from it
PYTHONPATH="$TMP/site" TRITON_INTERPRET=1 "$PY" - "$TMP/site" <<'PYEOF'
import importlib, os, pkgutil, sys
site = sys.argv[1]
import fastspike
assert fastspike.__file__.startswith(site), f"fastspike imported from {fastspike.__file__}, not the installed copy"
import fastspike.kernels as K
assert K.__file__.startswith(site), K.__file__
# not the portable build's variants: one wider than this CPU may not even import (test_csrc_dispatch.py runs them)
mods = [m.name for m in pkgutil.walk_packages(fastspike.__path__, prefix="fastspike.")
        if not m.name.startswith(("fastspike.bench.cases", "fastspike._C_"))]
for name in mods:
    mod = importlib.import_module(name)
    assert mod.__file__.startswith(site), f"{name} from {mod.__file__}"
from fastspike import _ext
assert _ext.available(), "the C++ extension did not install"
import torch
from fastspike.ops import multistep_neuron
x = torch.rand(3, 5)
ref = multistep_neuron(x, 0.0, backend="torch")[0]
for backend in ("cpp", "triton"):
    assert torch.equal(multistep_neuron(x, 0.0, backend=backend)[0], ref), backend
print(f"install check: {len(mods)} modules imported from the installed wheel; cpp and triton ops ran")
PYEOF
if [ "$(uname -m)" = x86_64 ]; then
  PYTHONPATH="$TMP/site" FASTSPIKE_EXPECT_VARIANTS="$TMP/site" "$PY" -m pytest -q -p no:cacheprovider \
    --rootdir "$REPO" "$REPO/tests/test_csrc_dispatch.py"
fi
