"""Every Triton kernel compiles for a real GPU (sm_80 and sm_90), in every specialisation its launchers can
produce (a pairwise covering set: kernels/_spec.py), without running out of registers.

Register pressure fails the test: any spill at the 255-register cap, or more than 64 bytes of spill stores.
The figures are ptxas's own -v report of the cubin Triton builds (its flags, e.g. --regAllocOptLevel=2), not of
a second ptxas run with other flags (which gave other counts: 24 bytes where the real cubin of the PSN backward
at BLOCK 32x32, 8 warps, spills 40 on sm_90). ptxas sometimes targets fewer registers than the cap for a block
size (128 for 256 threads there) and spills a few dozen bytes; those are listed in docs/triton_kernels.md
(bench/triton_resources.py) and pass.

The interpreter that runs the Triton tests on CPU-only machines never compiles anything, so a compile error
(e.g. an integer argument that Triton turned into the constant 1) would otherwise first show on a user's GPU.
triton.compile with a GPUTarget needs no GPU: Triton's wheel ships ptxas. The compiles run in one child process
without TRITON_INTERPRET (under the interpreter, @triton.jit yields functions that cannot be compiled); each
test below checks one kernel specialisation's result.
"""
import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip("triton")

from fastspike.kernels import _spec  # noqa: E402

ARCHS = (80, 90)
SPECS = _spec.all_specs()
CASES = [(spec.name, i) for spec in SPECS for i, _ in enumerate(_spec.variants(spec))]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("triton_compile")
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp / "cache"), TRITON_DEFAULT_FP_FUSION="1")
    out = tmp / "rows.json"
    p = subprocess.run([sys.executable, "-m", "fastspike.kernels._spec", str(out), "--workers", "2"], env=env,
                       capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stderr[-4000:]
    rows = json.loads(out.read_text())
    return {(r["kernel"], r["index"], r["arch"]): r for r in rows}


def _is_kernel(obj) -> bool:
    kinds = [triton.runtime.jit.JITFunction]
    try:
        from triton.runtime.interpreter import InterpretedFunction
        kinds.append(InterpretedFunction)
    except ImportError:
        pass
    return isinstance(obj, tuple(kinds))


def test_every_kernel_has_a_spec():
    """Each kernel (a @triton.jit function whose name ends in _kernel) in fastspike.kernels is listed."""
    import importlib
    import pkgutil

    import fastspike.kernels as pkg

    listed = {spec.name for spec in SPECS}
    missing = []
    for info in pkgutil.walk_packages(pkg.__path__, prefix="fastspike.kernels."):
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.endswith("_kernel") and _is_kernel(obj) and name not in listed:
                missing.append(f"{info.name}.{name}")
    assert not missing, f"kernels without a KernelSpec in COMPILE_SPECS: {missing}"


def test_pairwise_cover():
    """The covering set holds every pair of values of every two dimensions (checked on a 4-dimension space)."""
    dims = {"a": (0, 1, 2), "b": (0, 1), "c": tuple(range(5)), "d": (True, False)}
    rows = _spec._pairwise(dims)
    for x, y in [("a", "b"), ("a", "c"), ("b", "c"), ("c", "d"), ("a", "d"), ("b", "d")]:
        seen = {(r[x], r[y]) for r in rows}
        assert seen == {(u, v) for u in dims[x] for v in dims[y]}, (x, y)
    assert len(rows) < 3 * 2 * 5 * 2  # far fewer than the full product


def test_variants_cover_one_and_fp64():
    """T = 1 (single-step mode) and fp64 scalars (torch.compile) are among the neuron kernels' variants."""
    spec = next(s for s in SPECS if s.name == "neuron_bwd_kernel")
    vs = _spec.variants(spec)
    assert any(v["I:T"] == "one" for v in vs) and any(v["floats"] == "fp64" for v in vs)
    sig, const, _ = _spec.signature(spec, next(v for v in vs if v["I:T"] == "one"))
    assert sig["T"] == "constexpr" and const["T"] == 1


@pytest.mark.parametrize("arch", ARCHS, ids=[f"sm_{a}" for a in ARCHS])
@pytest.mark.parametrize("kernel,index", CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_compiles_without_register_pressure(compiled, kernel, index, arch):
    row = compiled[(kernel, index, arch)]
    assert "error" not in row, f"{kernel} {row['variant']} does not compile for sm_{arch}:\n{row['error']}"
    res = row["resources"]
    at_cap = res["registers"] >= 255 and res["spill_stores"] > 0
    assert not at_cap and res["spill_stores"] <= 64, (
        f"{kernel} {row['variant']} on sm_{arch} runs out of registers: {res}")


@pytest.mark.parametrize("kernel", ["neuron_fwd_kernel", "neuron_bwd_kernel"])
def test_neuron_kernels_move_16_bytes_per_access(compiled, kernel):
    """With N a multiple of 16 (rows 16-byte aligned) every per-neuron global load and store of the neuron kernels
    is a 16-byte vector access (ld/st.global.v4.b32) in every dtype: the bandwidth floor needs it. The only
    scalar accesses allowed are ParametricLIF's decay k / KLIF's scale k and its per-program dL/dk partial, and with
    PER_CHANNEL the gathers of each neuron's threshold and offset, once per program before the time loop (8 neurons
    per thread: BLOCK 1024 over 4 warps)."""
    rows = [r for r in compiled.values() if r["kernel"] == kernel and r["variant"].get("I:N") == "div16"
            and "memory_ops" in r]
    assert rows, "no variant with N a multiple of 16 was compiled"
    for r in rows:
        scalar = {op: n for op, n in r["memory_ops"].items() if ".v4." not in op}
        v = r["variant"]
        allowed = 1 if (v.get("C:MODE") == "2" or v.get("C:FIRE") in ("1", "2")) else 0
        gathers = 2 * 8 if v.get("C:PER_CHANNEL") == "True" else 0
        assert sum(scalar.values()) <= 2 * allowed + gathers, (r["variant"], r["arch"], r["memory_ops"])
        if gathers:  # the gathers are 32-bit loads; every store and every [T, N] access stays a 16-byte vector
            assert set(scalar) <= {"ld.global.b32", "st.global.b32"}, (r["variant"], r["memory_ops"])


def test_resources_read_the_report_of_the_cubins_own_ptxas_run():
    """compile_variant keeps the -v report of the ptxas run that built the cubin; resources() parses it and runs
    no second ptxas (a compiled kernel without PTX would make that raise)."""
    report = ("ptxas info    : Compiling entry function 'k' for 'sm_90a'\n"
              "ptxas info    : Function properties for k\n"
              "    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads\n"
              "ptxas info    : Used 128 registers, used 1 barriers\n")

    class Compiled:
        asm = {}  # no PTX: a fallback to a second ptxas run would fail with KeyError

    c = Compiled()
    setattr(c, _spec._PTXAS_LOG, report)
    assert _spec.resources(c, 90) == {"registers": 128, "spill_stores": 40, "spill_loads": 36, "stack": 48}
    # no report (a compile served from Triton's cache runs no ptxas): the PTX is assembled again
    setattr(c, _spec._PTXAS_LOG, "")
    with pytest.raises(KeyError):
        _spec.resources(c, 90)
