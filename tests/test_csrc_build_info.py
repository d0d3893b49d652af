"""fastspike._C.build_info() and the SIMD level in the benchmark's header and JSON record (issue 22 item 3).

Figures from an AVX-512 build and an AVX2-only one are figures of different kernels: the record says which branch
of csrc/simd.h ran, what the CPU could have run, and the flags.
"""
import json
import subprocess
import sys

import pytest

from fastspike import _ext
from fastspike.bench import report

pytestmark = pytest.mark.skipif(not _ext.available(), reason="needs the C++ extension")


def test_build_info_describes_the_build_and_the_cpu():
    info = _ext.get().build_info()
    assert set(info) >= {"module", "isa", "vector_bits", "cpu_isa", "fma", "flags", "compiler", "target_processor",
                         "openmp"}
    assert info["isa"] in report.ISA_LEVELS and info["cpu_isa"] in report.ISA_LEVELS
    assert info["vector_bits"] == {"avx512": 512, "avx2": 256, "neon": 128, "portable": 256}[info["isa"]]
    # the CPU's own report (cpuid in C++) and the OS's (/proc/cpuinfo) agree
    assert info["cpu_isa"] == report.cpu_isa_from_os()
    # a build wider than the CPU would have crashed already; a native build uses all of it
    assert report.ISA_LEVELS.index(info["isa"]) <= report.ISA_LEVELS.index(info["cpu_isa"])
    assert "-O3" in info["flags"] and "-Wall" in info["flags"]
    if "-march=native" in info["flags"]:
        assert info["isa"] == info["cpu_isa"]
    # the loaded module names itself; a variant is loaded only by a portable build and carries its level's -march
    variants = {"fastspike._C_avx2": ("avx2", "-march=x86-64-v3"),
                "fastspike._C_avx512": ("avx512", "-march=x86-64-v4")}
    if info["module"] in variants:
        assert (info["isa"], info["module"]) == (variants[info["module"]][0], _ext.get().__name__)
        assert variants[info["module"]][1] in info["flags"]
        assert _ext.variant("portable").build_info()["isa"] == "portable"
    else:
        assert info["module"] == "fastspike._C" == _ext.get().__name__
    assert info["openmp"] >= 201307  # OpenMP 4.0: omp simd


def test_machine_info_and_header_name_the_simd_levels():
    m = report.machine_info("cpu")
    build = _ext.get().build_info()
    assert m["cpu_isa"] == build["cpu_isa"] and m["build"]["isa"] == build["isa"]
    assert m["build"]["flags"] == build["flags"]
    head = report.machine_header(m)
    assert head.startswith(f"cpu {build['cpu_isa']} | {build['module']} built for {build['isa']}")
    assert build["flags"] in head
    # a build narrower than the CPU is pointed out; an unavailable extension is named
    narrow = dict(m, cpu_isa="avx512", build=dict(m["build"], isa="avx2"))
    assert "note: the avx512 CPU runs fastspike's avx2 kernels" in report.machine_header(narrow)
    assert "note" not in report.machine_header(dict(m, cpu_isa="avx2", build=dict(m["build"], isa="avx2")))
    missing = report.machine_header({"cpu_isa": "neon", "build": {"error": "ImportError: no _C"}})
    assert missing == "cpu neon | fastspike._C: ImportError: no _C"
    md = report.markdown({"machine": m, "versions": {}, "settings": {}, "tables": []})
    assert f"- SIMD: cpu {build['cpu_isa']} | {build['module']} built for {build['isa']}" in md


def test_bench_prints_and_records_the_simd_levels(tmp_path):
    out = tmp_path / "out.json"
    p = subprocess.run([sys.executable, "-m", "fastspike.bench", "--quick", "--case", "neuron.if", "--peers", "none",
                        "--mode", "infer", "--no-memory", "--repeat", "1", "--warmup", "1", "--no-progress",
                        "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=300,
                       check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    build = _ext.get().build_info()
    assert f"cpu {build['cpu_isa']} | {build['module']} built for {build['isa']}" in p.stdout
    machine = json.loads(out.read_text())["machine"]
    assert machine["cpu_isa"] == build["cpu_isa"]
    assert machine["build"] == dict(build)
