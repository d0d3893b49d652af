"""A portable build's runtime choice of kernels (issue 22): ``fastspike._C`` for the x86-64 baseline and the
``_C_avx2`` / ``_C_avx512`` variants, picked by fastspike/_ext.py from the CPU's level or ``FASTSPIKE_CPU_ISA``.

The choice itself is tested with stand-in modules; the installed build is then run at every level it offers on this
CPU (one subprocess per level: the choice is made once per process), each level's kernels against the torch
reference. CI's .ci/install_check.sh runs this file against a portable x86-64 wheel installed in a scratch folder,
with FASTSPIKE_EXPECT_VARIANTS set to that folder: there fastspike must come from it, and every level up to the CPU's
must be offered.
"""
import os
import subprocess
import sys
import types

import pytest

from fastspike import _ext


@pytest.mark.parametrize("build,cpu,requested,expected", [
    ("portable", "avx512", None, "avx512"),
    ("portable", "avx512", "", "avx512"),
    ("portable", "avx512", "avx2", "avx2"),
    ("portable", "avx512", " AVX2 ", "avx2"),
    ("portable", "avx512", "portable", "portable"),
    ("portable", "avx2", None, "avx2"),
    ("portable", "avx2", "portable", "portable"),
    ("portable", "portable", None, "portable"),
    ("portable", "neon", None, "portable"),  # a portable aarch64 build: one module
    ("avx512", "avx512", None, "avx512"),  # -march=native: one module
    ("avx512", "avx512", "avx512", "avx512"),
    ("avx2", "avx512", None, "avx2"),  # FASTSPIKE_MARCH=x86-64-v3 on an AVX-512 CPU
    ("neon", "neon", "neon", "neon"),
])
def test_choose_picks_the_level(build, cpu, requested, expected):
    assert _ext.choose(build, cpu, requested) == expected


@pytest.mark.parametrize("build,cpu,requested,match", [
    ("portable", "avx512", "sse4", "expected one of portable, avx2, avx512 \\(x86-64\\) or neon"),
    ("portable", "avx512", "neon", "this CPU runs at most avx512"),
    ("neon", "neon", "avx2", "has only neon kernels"),
    ("portable", "avx512", "avx", "expected one of"),
    ("portable", "avx2", "avx512", "this CPU runs at most avx2"),
    ("portable", "portable", "avx2", "this CPU runs at most portable"),
    ("avx512", "avx512", "avx2", "has only avx512 kernels"),
    ("avx2", "avx512", "avx512", "has only avx2 kernels"),
    ("portable", "neon", "avx2", "has only portable kernels"),
])
def test_choose_errors_name_the_variable(build, cpu, requested, match):
    with pytest.raises(ValueError, match=match) as e:
        _ext.choose(build, cpu, requested)
    assert str(e.value).startswith(f"FASTSPIKE_CPU_ISA={requested.strip().lower()!r}")


def _fake(level, cpu):
    return types.SimpleNamespace(name=level, build_info=lambda: {"isa": level, "cpu_isa": cpu})


@pytest.fixture
def fake_build(monkeypatch):
    """Stand-in modules: `installed` lists the levels built; the CPU's level is set per test."""
    state = {"installed": set(_ext.LEVELS), "cpu": "avx512", "imported": []}

    def variant(level):
        state["imported"].append(level)
        if level not in state["installed"]:
            raise ImportError(f"no module named fastspike.{level}")
        return _fake(level, state["cpu"])

    monkeypatch.setattr(_ext, "variant", variant)
    monkeypatch.delenv(_ext.ENV, raising=False)
    _ext.reload()
    yield state
    monkeypatch.undo()
    _ext.reload()


def test_loader_takes_the_widest_level_the_cpu_runs(fake_build):
    assert _ext.get().name == "avx512"
    assert _ext.levels() == ("portable", "avx2", "avx512")
    fake_build["cpu"] = "avx2"
    _ext.reload()
    fake_build["imported"].clear()
    assert _ext.get().name == "avx2" and _ext.levels() == ("portable", "avx2")
    assert "avx512" not in fake_build["imported"]  # a variant wider than the CPU is never imported


def test_loader_honours_the_request(fake_build, monkeypatch):
    monkeypatch.setenv(_ext.ENV, "avx2")
    _ext.reload()
    assert _ext.get().name == "avx2"
    monkeypatch.setenv(_ext.ENV, "portable")
    _ext.reload()
    assert _ext.get().name == "portable"
    monkeypatch.setenv(_ext.ENV, "avx-2")
    with pytest.raises(ValueError, match="FASTSPIKE_CPU_ISA='avx-2': expected one of"):
        _ext.reload()  # the choice is made when fastspike is imported: a bad value stops the import


def test_loader_falls_back_to_the_next_narrower_variant(fake_build, monkeypatch):
    fake_build["installed"] = {"portable", "avx2"}  # e.g. a compiler without -march=x86-64-v4
    _ext.reload()
    assert _ext.get().name == "avx2" and _ext.levels() == ("portable", "avx2")
    fake_build["installed"] = {"portable"}  # FASTSPIKE_DISPATCH=0
    _ext.reload()
    assert _ext.get().name == "portable" and _ext.levels() == ("portable",)


def test_an_explicit_request_for_a_missing_variant_is_an_error(fake_build, monkeypatch):
    fake_build["installed"] = {"portable", "avx2"}
    monkeypatch.setenv(_ext.ENV, "avx512")
    _ext.reload()
    with pytest.raises(RuntimeError, match="FASTSPIKE_CPU_ISA asks for the avx512 kernels, but this portable build "
                                           "has no fastspike._C_avx512"):
        _ext.get()
    assert not _ext.available()


def test_without_the_base_module_the_cause_is_kept(fake_build):
    fake_build["installed"] = set()
    _ext.reload()
    assert not _ext.available()
    with pytest.raises(RuntimeError, match="could not be imported: ImportError.*Rebuild it"):
        _ext.get()


# One process per level: builds the module that level names, checks it is the one loaded, and runs the kernels
# whose code differs between levels (csrc/simd.h: the neuron loops, the event-driven synapse gathers, pooling)
# against the torch reference, outputs and gradients.
_RUN_LEVEL = r"""
import sys
import torch
import torch.nn.functional as F
from fastspike import _ext
from fastspike.ops import multistep_neuron, synapse_conv2d, synapse_linear
from fastspike.surrogate import Sigmoid
level, module = sys.argv[1], sys.argv[2]
info = _ext.get().build_info()
assert (info["module"], info["isa"]) == (module, level), (info["module"], info["isa"], module, level)
torch.manual_seed(0)
T, N = 6, 2 * 4096 + 37  # several OpenMP chunks and a vector tail
for mode, kw in (("lif", {"tau": 2.0}), ("if", {})):
    x = (torch.randn(T, N) * 1.5).requires_grad_()
    out = {}
    for be in ("torch", "cpp"):
        s, v, _ = multistep_neuron(x, 0.0, mode=mode, surrogate_function=Sigmoid(alpha=4.0), backend=be, **kw)
        (gx,) = torch.autograd.grad((s * torch.linspace(-1, 1, N)).sum() + v.sum(), x)
        out[be] = (s, v, gx)
    assert torch.equal(out["torch"][0], out["cpp"][0]), f"{mode} spikes differ"
    torch.testing.assert_close(out["cpp"][1], out["torch"][1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["cpp"][2], out["torch"][2], rtol=1e-4, atol=1e-5)
spikes = (torch.rand(33, 300) < 0.05).float()
w = torch.randn(70, 300, requires_grad=True)
b = torch.randn(70, requires_grad=True)
y = synapse_linear(spikes, w, b, event_driven=True, backend="cpp")
gw, gb = torch.autograd.grad(y.square().sum(), (w, b))
y_ref = F.linear(spikes, w, b)
gw_ref, gb_ref = torch.autograd.grad(y_ref.square().sum(), (w, b))
torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-4)
torch.testing.assert_close(gb, gb_ref, rtol=1e-4, atol=1e-4)
img = (torch.rand(2, 5, 11, 13) < 0.1).float()
k = torch.randn(7, 5, 3, 3)
with torch.no_grad():
    torch.testing.assert_close(synapse_conv2d(img, k, None, 1, 1, event_driven=True, backend="cpp"),
                               F.conv2d(img, k, None, 1, 1), rtol=1e-5, atol=1e-5)
print("ok", module)
"""


def test_the_installed_build_runs_at_every_level_it_offers():
    site = os.environ.get("FASTSPIKE_EXPECT_VARIANTS")
    # install_check.sh's wheel must carry the extension; elsewhere a checkout whose extension failed to build skips
    # this test, as tests/test_csrc_build_info.py does (CI builds it, so the test always runs there)
    assert _ext.available() or not site, f"the installed wheel has no usable extension: {_ext._LOADED[1]!r}"
    if not _ext.available():
        pytest.skip("needs the C++ extension (it did not build or import in this checkout)")
    info = _ext.variant("portable").build_info()
    offered = _ext.levels()
    if site:  # .ci/install_check.sh: a portable x86-64 wheel installed in `site`
        assert _ext.__file__.startswith(site), f"fastspike imported from {_ext.__file__}, not {site}"
        assert info["isa"] == "portable"
        assert offered == _ext.LEVELS[:_ext.LEVELS.index(info["cpu_isa"]) + 1], offered
    env = {k: v for k, v in os.environ.items() if k != _ext.ENV}
    for level in offered:
        module = "fastspike." + _ext._VARIANT[level] if info["isa"] == "portable" else "fastspike._C"
        p = subprocess.run([sys.executable, "-c", _RUN_LEVEL, level, module], env={**env, _ext.ENV: level},
                           capture_output=True, text=True, timeout=300, check=False)
        assert p.returncode == 0 and f"ok {module}" in p.stdout, (level, p.stdout[-1000:], p.stderr[-3000:])
    # unset: the widest level offered
    show = "from fastspike import _ext; print(_ext.get().build_info()['isa'])"
    default = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, timeout=120,
                             check=True)
    assert default.stdout.split()[-1] == offered[-1]
    # a level this build or CPU cannot give: the error names the variable, and nothing crashes
    other = next((lv for lv in ("avx512", "avx2", "portable") if lv not in offered), "sse2")
    bad = subprocess.run([sys.executable, "-c", "from fastspike import _ext; _ext.get()"],
                         env={**env, _ext.ENV: other}, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1 and f"FASTSPIKE_CPU_ISA={other!r}" in bad.stderr, bad.stderr[-2000:]
