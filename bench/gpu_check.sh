#!/usr/bin/env bash
# GPU check for fastspike: on a CUDA machine with no network, build the project, run the test suite on the
# GPU and run the GPU benchmark, writing every log to one directory.
#
#   bash bench/gpu_check.sh [LOG_DIR]
#
# LOG_DIR defaults to $OUT when set (the device runner's output folder), else bench/results/.
# Knobs (environment): PYTHON (default python), GPU_CHECK_SKIP_BUILD=1, GPU_CHECK_SKIP_TESTS=1,
# GPU_CHECK_TEST_ARGS (default "tests -q -rfE": the whole suite, every failure listed; "-n 8" is added when
# pytest-xdist imports), GPU_CHECK_TEST_TIMEOUT (s, default 300),
# GPU_CHECK_BENCH_ARGS (extra args for python -m fastspike.bench, e.g. "--quick" or "--case neuron.lif"),
# GPU_CHECK_BENCH_TIMEOUT (s, default 240), GPU_CHECK_ON=1 to also run --suite open-neuromorphic,
# GPU_CHECK_DEVICE (default cuda; 'cpu' only to dry-run this script on a machine without a GPU).
# Exit status: 0 when the build, the tests and the benchmark all succeeded, else 1 (see summary.txt).
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_DIR="${1:-${OUT:-$ROOT/bench/results}}"
mkdir -p "$LOG_DIR"
LOG_DIR="$(cd "$LOG_DIR" && pwd)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
PY="${PYTHON:-python}"
SUMMARY="$LOG_DIR/gpu_check_${STAMP}_summary.txt"
unset TRITON_INTERPRET            # real kernels on the GPU, never the interpreter
export PYTHONUNBUFFERED=1

say() { echo "[gpu_check $(date -u +%H:%M:%S)] $*" | tee -a "$SUMMARY"; }
status=0

say "repo $ROOT, logs in $LOG_DIR, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"

# 0. environment
{
  date -u
  nvidia-smi || true
  "$PY" - <<'EOF'
import sys, platform
print("python", sys.version.replace("\n", " "), platform.platform())
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(), "count", torch.cuda.device_count())
try:
    import triton
    print("triton", triton.__version__)
except Exception as e:
    print("triton missing:", e)
for m in ("spikingjelly", "snntorch", "norse", "pybind11", "cmake"):
    try:
        mod = __import__(m)
        print(m, getattr(mod, "__version__", "installed"))
    except Exception as e:
        print(m, "not installed:", type(e).__name__)
EOF
} > "$LOG_DIR/gpu_check_${STAMP}_env.log" 2>&1
DEV="${GPU_CHECK_DEVICE:-cuda}"
if [ "$DEV" = "cuda" ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  say "CUDA is not available to $PY: stopping (see gpu_check_${STAMP}_env.log)"
  exit 1
fi
say "environment: $(grep -E '^(torch|device|triton)' "$LOG_DIR/gpu_check_${STAMP}_env.log" | tr '\n' ' ')"

# 1. build (no network: no build isolation, no dependency resolution)
if [ "${GPU_CHECK_SKIP_BUILD:-0}" != "1" ]; then
  if "$PY" -m pip install -e . --no-build-isolation --no-deps > "$LOG_DIR/gpu_check_${STAMP}_build.log" 2>&1; then
    say "build: ok"
  else
    say "build: FAILED (tail of gpu_check_${STAMP}_build.log follows)"
    tail -n 30 "$LOG_DIR/gpu_check_${STAMP}_build.log" | tee -a "$SUMMARY"
    status=1
  fi
fi
"$PY" -c "import fastspike, fastspike._ext as e; print('fastspike imported; C++ extension available:', e.available())" 2>&1 | tee -a "$SUMMARY"

# 2. the whole test suite on the GPU (tests put their tensors on CUDA when it is there: tests/helpers.py DEVICE)
if [ "${GPU_CHECK_SKIP_TESTS:-0}" != "1" ]; then
  TEST_ARGS="${GPU_CHECK_TEST_ARGS:-tests -q -rfE}"
  if [ -z "${GPU_CHECK_TEST_ARGS:-}" ] && "$PY" -c "import xdist" 2>/dev/null; then TEST_ARGS="$TEST_ARGS -n 8"; fi
  # shellcheck disable=SC2086
  timeout "${GPU_CHECK_TEST_TIMEOUT:-300}" "$PY" -m pytest $TEST_ARGS -p no:cacheprovider \
      > "$LOG_DIR/gpu_check_${STAMP}_tests.log" 2>&1
  rc=$?
  say "tests ($TEST_ARGS): exit $rc (124 = timed out); $(tail -n 1 "$LOG_DIR/gpu_check_${STAMP}_tests.log")"
  grep -E '^(FAILED|ERROR) ' "$LOG_DIR/gpu_check_${STAMP}_tests.log" | head -n 60 >> "$SUMMARY"
  [ $rc -eq 0 ] || status=1
fi

# 3. GPU benchmark (default suite on CUDA: neurons at T in {4,16,64,256}, B=64, N=65536, fp32 and bf16,
#    with the device-to-device copy bandwidth and each kernel's fraction of it)
# shellcheck disable=SC2086
timeout "${GPU_CHECK_BENCH_TIMEOUT:-240}" "$PY" -m fastspike.bench --device "$DEV" --no-progress \
    --json "$LOG_DIR/bench_${DEV}_${STAMP}.json" --markdown "$LOG_DIR/bench_${DEV}_${STAMP}.md" \
    --plot "$LOG_DIR/bench_${DEV}_${STAMP}.png" ${GPU_CHECK_BENCH_ARGS:-} \
    > "$LOG_DIR/gpu_check_${STAMP}_bench.log" 2>&1
rc=$?
say "bench --device $DEV ${GPU_CHECK_BENCH_ARGS:-}: exit $rc (124 = timed out; the JSON keeps the tables finished so far)"
grep -E '^summary:' "$LOG_DIR/gpu_check_${STAMP}_bench.log" | head -n 40 >> "$SUMMARY"
[ $rc -eq 0 ] || status=1

if [ "${GPU_CHECK_ON:-0}" = "1" ]; then
  timeout "${GPU_CHECK_BENCH_TIMEOUT:-240}" "$PY" -m fastspike.bench --device "$DEV" --suite open-neuromorphic \
      --no-progress --json "$LOG_DIR/bench_${DEV}_on_${STAMP}.json" > "$LOG_DIR/gpu_check_${STAMP}_bench_on.log" 2>&1
  rc=$?
  say "bench --suite open-neuromorphic: exit $rc"
  [ $rc -eq 0 ] || status=1
fi

say "done: status $status"
echo "===== summary ($SUMMARY) ====="
cat "$SUMMARY"   # last, so that the end of the output is the whole summary
exit $status
