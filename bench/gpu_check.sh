#!/usr/bin/env bash
# GPU check for fastspike: on a CUDA machine with no network, build the project, run the test suite on the
# GPU and run the GPU benchmark, writing every log to one directory, within one call of the device tool.
#
#   bash bench/gpu_prepare.sh                 # here, first: wheels and sample data into .gpu/
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=600)
#   bash bench/gpu_check.sh [LOG_DIR]         # what that runs on the GPU machine
#
# LOG_DIR defaults to $OUT when set (the device runner's output folder), else bench/results/. At most 8 files are
# written there, as many as the device tool returns (with GPU_CHECK_ON=1 the plot gives way to a second JSON).
# When .gpu/wheels/ holds wheels (bench/gpu_prepare.sh), they are installed into a folder on PYTHONPATH first (no
# network, no dependency resolution), and .gpu/data/neuromorphic becomes FASTSPIKE_NEURO_DATA.
# Knobs (environment): PYTHON (default python3, else python), GPU_CHECK_SKIP_BUILD=1, GPU_CHECK_SKIP_TESTS=1,
# GPU_CHECK_TEST_ARGS (default "tests": the whole suite; "-n 8 --dist loadfile" is added when pytest-xdist imports:
# each test file on one worker, so a module fixture such as tests/test_triton_compile.py's compilation runs once),
# GPU_CHECK_BUDGET (s, default 560: the whole script, so that it ends inside the tool's 600 s),
# GPU_CHECK_TEST_TIMEOUT (s, default 330), GPU_CHECK_BENCH_TIMEOUT (s, default 240; both are cut to what the
# budget leaves, the tests keeping GPU_CHECK_BENCH_MIN, default 120 s, for the benchmark),
# GPU_CHECK_BENCH_ARGS (extra args for python -m fastspike.bench, e.g. "--quick" or "--case neuron.lif"),
# GPU_CHECK_ON=1 to also run --suite open-neuromorphic, GPU_CHECK_CARRY (default .gpu),
# GPU_CHECK_DEVICE (default cuda; 'cpu' only to dry-run this script on a machine without a GPU).
# A test run cut by its timeout is interrupted (SIGINT), so pytest still lists the failures so far and writes its
# JUnit XML. Exit status: 0 when the build, the tests and the benchmark all succeeded, else 1 (see the summary).
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_DIR="${1:-${OUT:-$ROOT/bench/results}}"
mkdir -p "$LOG_DIR"
LOG_DIR="$(cd "$LOG_DIR" && pwd)"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
PY="${PYTHON:-$(command -v python3 || command -v python)}"
CARRY="${GPU_CHECK_CARRY:-$ROOT/.gpu}"
BUDGET="${GPU_CHECK_BUDGET:-560}"
START=$SECONDS
left() { echo $((BUDGET - (SECONDS - START))); }  # seconds of the budget left
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

# 0b. what bench/gpu_prepare.sh put into the carried folder: peer frameworks and test dependencies, sample data.
#     Only the wheels this Python can install are installed (one that cannot would fail the whole pip call).
if ls "$CARRY"/wheels/*.whl > /dev/null 2>&1; then
  SITE="${TMPDIR:-/tmp}/fastspike-gpu-site"
  mapfile -t WHEELS < <("$PY" - "$CARRY"/wheels/*.whl <<'EOF'
import os, sys
try:
    from packaging.tags import sys_tags
    from packaging.utils import parse_wheel_filename
except ImportError:
    from pip._vendor.packaging.tags import sys_tags
    from pip._vendor.packaging.utils import parse_wheel_filename
here = set(sys_tags())
for path in sys.argv[1:]:
    tags = parse_wheel_filename(os.path.basename(path))[3]
    print(("ok " if here & set(tags) else "no ") + path)
EOF
  )
  ok=(); no=()
  for w in "${WHEELS[@]}"; do
    case "$w" in "ok "*) ok+=("${w#ok }") ;; *) no+=("$(basename "${w#no }")") ;; esac
  done
  if [ ${#ok[@]} -gt 0 ] && "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${ok[@]}" >> "$LOG_DIR/gpu_check_${STAMP}_env.log" 2>&1; then
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    say "wheels: installed ${#ok[@]} from $CARRY/wheels${no[0]+; not for this Python: ${no[*]}}"
  else
    say "wheels: none installed from $CARRY/wheels (see gpu_check_${STAMP}_env.log)" \
        "${no[0]+; not for this Python: ${no[*]}}"
  fi
else
  say "wheels: none in $CARRY/wheels (run bench/gpu_prepare.sh here first): peer comparisons will skip"
fi
if [ -z "${FASTSPIKE_NEURO_DATA:-}" ] && [ -d "$CARRY/data/neuromorphic" ]; then
  export FASTSPIKE_NEURO_DATA="$CARRY/data/neuromorphic"
fi
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
  TEST_ARGS="${GPU_CHECK_TEST_ARGS:-tests}"
  if [ -z "${GPU_CHECK_TEST_ARGS:-}" ] && "$PY" -c "import xdist" 2>/dev/null; then TEST_ARGS="$TEST_ARGS -n 8 --dist loadfile"; fi
  limit=$(( $(left) - ${GPU_CHECK_BENCH_MIN:-120} ))
  [ "$limit" -lt "${GPU_CHECK_TEST_TIMEOUT:-330}" ] || limit="${GPU_CHECK_TEST_TIMEOUT:-330}"
  [ "$limit" -gt 10 ] || limit=10
  # -rfE lists every failure and error; a module that fails to import is an error, not the end of the run;
  # OMP_NUM_THREADS: each of the 8 workers' C++ kernels on 2 threads, not all 16 cores each
  # shellcheck disable=SC2086
  OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" timeout -s INT -k 20 "$limit" "$PY" -m pytest $TEST_ARGS -q -rfE \
      -p no:cacheprovider --continue-on-collection-errors --durations=15 \
      --junitxml="$LOG_DIR/gpu_check_${STAMP}_tests.xml" \
      > "$LOG_DIR/gpu_check_${STAMP}_tests.log" 2>&1
  rc=$?
  say "tests ($TEST_ARGS, ${limit} s at most): exit $rc (124 = timed out); $(grep -E '(passed|failed|error)' \
      "$LOG_DIR/gpu_check_${STAMP}_tests.log" | grep -E ' in [0-9.]+s' | tail -n 1)"
  grep -E '^(FAILED|ERROR) ' "$LOG_DIR/gpu_check_${STAMP}_tests.log" | head -n 60 >> "$SUMMARY"
  [ $rc -eq 0 ] || status=1
fi

# 3. GPU benchmark (default suite on CUDA: neurons at T in {4,16,64,256}, B=64, N=65536, fp32 and bf16,
#    with the device-to-device copy bandwidth and each kernel's fraction of it)
limit=$(( $(left) - 5 ))
[ "$limit" -lt "${GPU_CHECK_BENCH_TIMEOUT:-240}" ] || limit="${GPU_CHECK_BENCH_TIMEOUT:-240}"
[ "$limit" -gt 10 ] || limit=10
PLOT=(--plot "$LOG_DIR/bench_${DEV}_${STAMP}.png")
[ "${GPU_CHECK_ON:-0}" != "1" ] || PLOT=()
# shellcheck disable=SC2086
timeout -k 10 "$limit" "$PY" -m fastspike.bench --device "$DEV" --no-progress \
    --json "$LOG_DIR/bench_${DEV}_${STAMP}.json" ${PLOT[@]+"${PLOT[@]}"} ${GPU_CHECK_BENCH_ARGS:-} \
    > "$LOG_DIR/gpu_check_${STAMP}_bench.log" 2>&1
rc=$?
say "bench --device $DEV ${GPU_CHECK_BENCH_ARGS:-} (${limit} s at most): exit $rc (124 = timed out; the JSON" \
    "keeps the tables finished so far)"
grep -E '^summary:' "$LOG_DIR/gpu_check_${STAMP}_bench.log" | head -n 40 >> "$SUMMARY"
[ $rc -eq 0 ] || status=1

if [ "${GPU_CHECK_ON:-0}" = "1" ]; then  # its log is appended to the benchmark's (the file limit)
  limit=$(( $(left) - 5 ))
  [ "$limit" -gt 10 ] || limit=10
  timeout -k 10 "$limit" "$PY" -m fastspike.bench --device "$DEV" --suite open-neuromorphic --no-progress \
      --json "$LOG_DIR/bench_${DEV}_on_${STAMP}.json" >> "$LOG_DIR/gpu_check_${STAMP}_bench.log" 2>&1
  rc=$?
  say "bench --suite open-neuromorphic (${limit} s at most): exit $rc"
  [ $rc -eq 0 ] || status=1
fi

say "done: status $status"
echo "===== summary ($SUMMARY) ====="
cat "$SUMMARY"   # last, so that the end of the output is the whole summary
exit $status
