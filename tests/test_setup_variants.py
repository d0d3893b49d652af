"""setup.py's part of the portable build's dispatch: which extensions a build declares (so that an editable install
copies every variant CMake made) and the removal of variant modules a build does not make (an earlier portable
build's, which fastspike/_ext.py would otherwise import in place of the new code). setup.py is run with
setuptools.setup replaced by a stand-in, so nothing is built."""
import runpy
from pathlib import Path

import pytest
import setuptools
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def setup_py(monkeypatch):
    calls = []
    monkeypatch.setattr(setuptools, "setup", lambda **kw: calls.append(kw))
    for var in ("FASTSPIKE_PORTABLE", "FASTSPIKE_MARCH", "FASTSPIKE_DISPATCH"):
        monkeypatch.delenv(var, raising=False)
    ns = runpy.run_path(str(ROOT / "setup.py"))
    assert len(calls) == 1 and [e.name for e in calls[0]["ext_modules"]] == ["fastspike._C"]
    return ns


@pytest.mark.parametrize("env,machine,expected", [
    ({}, "x86_64", ["fastspike._C"]),  # native: one module
    ({"FASTSPIKE_PORTABLE": "1"}, "x86_64", ["fastspike._C", "fastspike._C_avx2", "fastspike._C_avx512"]),
    ({"FASTSPIKE_PORTABLE": "1"}, "AMD64", ["fastspike._C", "fastspike._C_avx2", "fastspike._C_avx512"]),
    ({"FASTSPIKE_PORTABLE": "1", "FASTSPIKE_DISPATCH": "0"}, "x86_64", ["fastspike._C"]),
    ({"FASTSPIKE_PORTABLE": "1", "FASTSPIKE_DISPATCH": "OFF"}, "x86_64", ["fastspike._C"]),
    ({"FASTSPIKE_PORTABLE": "1", "FASTSPIKE_MARCH": "x86-64-v3"}, "x86_64", ["fastspike._C"]),
    ({"FASTSPIKE_PORTABLE": "1"}, "aarch64", ["fastspike._C"]),
    ({"FASTSPIKE_PORTABLE": "1"}, "arm64", ["fastspike._C"]),
])
def test_declared_extensions(setup_py, monkeypatch, env, machine, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(setup_py["platform"], "machine", lambda: machine)
    exts = setup_py["_extensions"]()
    assert [e.name for e in exts] == expected
    assert [e.optional for e in exts] == [False] + [True] * (len(expected) - 1)  # a skipped variant is not an error


def _build_cmd(setup_py, names):
    cmd = setup_py["CMakeBuild"](Distribution())
    cmd.extensions = [setup_py["CMakeExtension"](n) for n in names]
    return cmd


def test_stale_variants_are_removed(setup_py, tmp_path):
    suffix = ".cpython-311-x86_64-linux-gnu.so"
    files = ["_C" + suffix, "_C_avx2" + suffix, "_C_avx512" + suffix, "_C_avx2" + suffix + ".lock", "_ext.py"]
    for folder in (tmp_path / "a", tmp_path / "b"):
        folder.mkdir()
        for f in files:
            (folder / f).write_text("x")
    # a native (single-module) build: both variants go, from every folder given; nothing else is touched
    _build_cmd(setup_py, ["fastspike._C"]).remove_stale_variants(tmp_path / "a", tmp_path / "b", tmp_path / "a")
    for folder in (tmp_path / "a", tmp_path / "b"):
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["_C" + suffix, "_C_avx2" + suffix + ".lock", "_ext.py"])
    # a portable build keeps the variants it declares
    for f in files[1:3]:
        (tmp_path / "a" / f).write_text("x")
    _build_cmd(setup_py, ["fastspike._C", "fastspike._C_avx2"]).remove_stale_variants(tmp_path / "a")
    assert (tmp_path / "a" / ("_C_avx2" + suffix)).exists()
    assert not (tmp_path / "a" / ("_C_avx512" + suffix)).exists()
