"""Shape of the tree (issue 'a codebase the next engineer can find their way in'): no source file outside tests/
and docs/ longer than 500 lines, and the Python lint configuration the CI runs is the one in pyproject.toml."""
import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500
SOURCE_SUFFIXES = {".py", ".cpp", ".h", ".sh", ".txt"}


def _tracked_files():
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode == 0:
        return [ROOT / p for p in out.stdout.splitlines()]
    return [p for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts and "build" not in p.parts]


def test_no_source_file_longer_than_500_lines():
    long = []
    for path in _tracked_files():
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "docs") or path.suffix not in SOURCE_SUFFIXES or not path.is_file():
            continue
        if rel.name.startswith("requirements"):
            continue
        n = len(path.read_text(errors="replace").splitlines())
        if n > MAX_LINES:
            long.append(f"{rel}: {n} lines")
    assert not long, f"split these by job (at most {MAX_LINES} lines each):\n" + "\n".join(long)


def test_ruff_is_configured_as_ci_runs_it():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert conf["line-length"] == 120
    assert {"E", "F", "W"} <= set(conf["lint"]["select"])
    assert "ruff check ." in (ROOT / ".ci" / "run").read_text()


def test_pre_commit_pins_the_linters_ci_runs():
    """.pre-commit-config.yaml runs the ruff and clang-format versions CI pins, so a commit hook and CI agree."""
    conf = (ROOT / ".pre-commit-config.yaml").read_text()
    ruff_pin = re.search(r"^ruff==([\d.]+)\b", (ROOT / "requirements-test.txt").read_text(), re.M).group(1)
    clang_pin = re.search(r"CLANG_FORMAT_VERSION=([\d.]+)", (ROOT / ".ci" / "lint_cpp.sh").read_text()).group(1)
    assert f"rev: v{ruff_pin}\n" in conf and "ruff-pre-commit" in conf
    assert f"rev: v{clang_pin}\n" in conf and "mirrors-clang-format" in conf


def test_the_contributor_map_names_files_that_exist():
    """Every repository path CONTRIBUTING.md and docs/design.md name (in backticks or bold) exists, so the map
    cannot silently go stale when a file moves."""
    top = "fastspike|kernels|csrc|tests|bench|docs|tools|\\.ci"
    inner = "ops|neuron|datasets|layer|surrogate|functional|export"  # named relative to fastspike/
    pattern = re.compile(rf"(?:`|\*\*)((?:{top}|{inner})/[\w./<>-]*?)(?:`|\*\*)")
    missing = []
    for doc in ("CONTRIBUTING.md", "docs/design.md"):
        for path in pattern.findall((ROOT / doc).read_text()):
            if "<" in path:  # a pattern such as ops/<op>/autograd.py
                continue
            base = ROOT / "fastspike" if path.split("/")[0] in inner.split("|") else ROOT
            if not (base / path.rstrip("/")).exists():
                missing.append(f"{doc}: {path}")
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)
