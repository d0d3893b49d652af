"""bench/gpu_check.sh, the one script a session with a lent GPU runs, dry-run on the CPU (GPU_CHECK_DEVICE=cpu):
carried wheels installed only where this Python can take them, a test module that fails to import does not end
the run, a test run cut by its time limit still lists its failures and writes its JUnit XML, the benchmark runs
after it, at most 8 files come back (the device tool's limit) with names it accepts, and the summary comes last."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bash script for the Linux GPU machines")


def _wheel(folder: Path, name: str, tag: str, body: str) -> Path:
    """A minimal wheel holding one module ``name`` (``body`` its source)."""
    path = folder / f"{name}-1.0-{tag}.whl"
    info = f"{name}-1.0.dist-info"
    files = {f"{name}.py": body,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n"}
    with zipfile.ZipFile(path, "w") as z:
        for arc, text in files.items():
            z.writestr(arc, text)
        z.writestr(f"{info}/RECORD", "".join(f"{arc},,\n" for arc in files) + f"{info}/RECORD,,\n")
    return path


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    carry, tests, out = tmp / "carry", tmp / "suite", tmp / "out"
    (carry / "wheels").mkdir(parents=True)
    (carry / "data" / "neuromorphic").mkdir(parents=True)
    tests.mkdir()
    _wheel(carry / "wheels", "fs_carried_pkg", "py3-none-any", "VALUE = 41\n")
    _wheel(carry / "wheels", "fs_other_python", "cp27-cp27m-win32", "VALUE = 0\n")  # never installable here
    (tests / "test_a_uses_wheel.py").write_text(
        "import os, fs_carried_pkg\n"
        "def test_carried():\n"
        "    assert fs_carried_pkg.VALUE + 1 == 42\n"
        "    assert os.environ['FASTSPIKE_NEURO_DATA'].endswith('neuromorphic')\n")
    (tests / "test_b_import_error.py").write_text("import fs_package_that_is_not_there\n")
    (tests / "test_c_fails.py").write_text("def test_fails():\n    assert 1 == 2\n")
    (tests / "test_d_slow.py").write_text("import time\ndef test_slow():\n    time.sleep(300)\n")
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_DEVICE="cpu", GPU_CHECK_SKIP_BUILD="1",
               GPU_CHECK_CARRY=str(carry), GPU_CHECK_TEST_ARGS=str(tests), GPU_CHECK_TEST_TIMEOUT="20",
               GPU_CHECK_BENCH_ARGS="--case neuron.overhead --quick --peers none --no-memory", TMPDIR=str(tmp))
    env.pop("FASTSPIKE_NEURO_DATA", None)
    env.pop("TRITON_INTERPRET", None)  # the script unsets it; the benchmark's CPU case does not need it
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    return proc, out


def test_carried_wheels_and_data(dry_run):
    proc, out = dry_run
    summary = next(out.glob("*_summary.txt")).read_text()
    assert "wheels: installed 1 from" in summary, summary
    assert "not for this Python: fs_other_python-1.0-cp27-cp27m-win32.whl" in summary, summary
    xml = next(out.glob("*_tests.xml")).read_text()
    case = re.search(r'<testcase [^>]*name="test_carried"[^>]*?(/>|>.*?</testcase>)', xml, re.S)
    assert case is not None and "<failure" not in case.group(0) and "<error" not in case.group(0), xml


def test_import_error_and_time_limit_do_not_lose_results(dry_run):
    proc, out = dry_run
    summary = next(out.glob("*_summary.txt")).read_text()
    # cut by its 20 s limit (SIGINT): pytest still listed what failed before, and the benchmark ran after it
    assert re.search(r"tests \(.*, 20 s at most\): exit 124", summary), summary
    assert re.search(r"^ERROR .*test_b_import_error\.py", summary, re.M), summary
    assert re.search(r"^FAILED .*test_c_fails\.py::test_fails", summary, re.M), summary
    assert "test_fails" in next(out.glob("*_tests.xml")).read_text()
    assert re.search(r"bench --device cpu .*: exit 0", summary), summary
    assert "summary: neuron.overhead" in summary, summary
    assert proc.returncode == 1  # the tests failed


def test_files_fit_the_device_tool(dry_run):
    proc, out = dry_run
    files = sorted(p.name for p in out.iterdir())
    assert 0 < len(files) <= 8, files
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files), files
    assert any(f.endswith(".json") for f in files), files
    # the summary is the end of the output, so that the tool's output tail holds it whole
    assert proc.stdout.rstrip().endswith("done: status 1"), proc.stdout[-2000:]
