"""Shape of the tree (issue 'a codebase the next engineer can find their way in'): no source file outside tests/
and docs/ longer than 500 lines, and the Python lint configuration the CI runs is the one in pyproject.toml."""
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
