"""Every instruction-set branch of csrc/simd.h computes the same results, not only the one this machine builds.

fastspike._C is built for the building machine (-march=native); the other branches (AVX2 without AVX-512, the
portable one, NEON) would otherwise only be compiled where such a machine builds them. .ci/kernel_check.cpp runs
the bit packing, event-driven Linear and Conv2d (forward and weight gradient) and scan kernels against naive loops
without Python; here it is built for each x86-64 level and run. (.ci/cross_aarch64.sh does the same for aarch64
under qemu-user.)
"""
import os
import platform
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = os.environ.get("CXX") or shutil.which("g++")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 levels: an x86-64 host"),
    pytest.mark.skipif(CXX is None, reason="needs a C++ compiler (g++)"),
]

# -march level -> the branch csrc/simd.h must pick
LEVELS = [("x86-64", "portable"), ("x86-64-v3", "avx2"), ("x86-64-v4", "avx512")]


def _cpu_runs(level: str) -> bool:
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    need = {"x86-64": [], "x86-64-v3": ["avx2", "fma"], "x86-64-v4": ["avx512f", "avx512bw"]}[level]
    return all(f" {f}" in flags for f in need)


@pytest.mark.parametrize("level, branch", LEVELS, ids=[lv for lv, _ in LEVELS])
def test_kernels_on_every_x86_level(level, branch, tmp_path):
    if not _cpu_runs(level):
        pytest.skip(f"this CPU cannot run -march={level} code")
    exe = tmp_path / "kernel_check"
    # the kernel sources need neither Python's nor pybind11's headers (csrc/common.h), and link on their own
    cmd = [CXX, "-std=gnu++17", "-O2", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math",
           f"-march={level}", "-w", "-I", os.path.join(ROOT, "csrc"), os.path.join(ROOT, ".ci", "kernel_check.cpp"),
           "-o", str(exe), "-static"]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"{' '.join(cmd)}\n{build.stderr[-4000:]}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300, env=dict(os.environ,
                                                                                         OMP_NUM_THREADS="2"))
    assert f"branch '{branch}'" in run.stdout, run.stdout
    assert run.returncode == 0 and "kernel check passed" in run.stdout, run.stdout + run.stderr
