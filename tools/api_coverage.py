"""How much of SpikingJelly 2.0.0's public API fastspike provides, name by name and signature by signature.

Reads the name lists in ``tests/sj_names/`` (written by ``tools/sj_public_names.py``), looks every name up at
the matching fastspike path (``spikingjelly.activation_based.X`` -> ``fastspike.X``, ``spikingjelly.datasets.X``
-> ``fastspike.datasets.X``) and compares parameter names, order, kinds and defaults. Two files classify
what is not there:

* ``docs/api_coverage.md``, the table under "## Out of scope": modules or names fastspike does not mean to
  provide, each with its reason (a row ``| `module` | reason |`` covers the module and its submodules,
  ``| `module:Name` | reason |`` one name);
* ``tests/sj_names/_pending.txt``: names other branches are still building (``module`` or ``module:Name``
  per line). The coverage test fails on a name that is neither present nor listed, and on a pending entry
  that has started to match (delete it).

``python tools/api_coverage.py`` prints the per-module table; ``--write-pending`` rewrites _pending.txt with
every in-scope name that does not match now (atomically).
"""
from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
NAMES_DIR = ROOT / "tests" / "sj_names"
PENDING = NAMES_DIR / "_pending.txt"
DOC = ROOT / "docs" / "api_coverage.md"
PREFIXES = (("spikingjelly.activation_based", "fastspike"), ("spikingjelly.datasets", "fastspike.datasets"))


def fastspike_path(sj_module: str) -> str:
    for sj, fs in PREFIXES:
        if sj_module == sj or sj_module.startswith(sj + "."):
            return fs + sj_module[len(sj):]
    raise ValueError(f"fastspike_path: {sj_module!r} is not under {[p for p, _ in PREFIXES]}")


@dataclass
class Entry:
    name: str
    kind: str
    signature: str


def load_lists(names_dir: Path = NAMES_DIR) -> Dict[str, List[Entry]]:
    lists: Dict[str, List[Entry]] = {}
    for path in sorted(names_dir.glob("spikingjelly.*.txt")):
        entries = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            name, kind, sig = line.split("\t")
            entries.append(Entry(name, kind, sig))
        lists[path.name[: -len(".txt")]] = entries
    return lists


def load_out_of_scope(doc: Path = DOC) -> Dict[str, str]:
    """``{pattern: reason}`` from the table under '## Out of scope' in docs/api_coverage.md."""
    rows: Dict[str, str] = {}
    in_section = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            in_section = line.strip().lower() == "## out of scope"
            continue
        if in_section and line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1]
    return rows


def load_pending(path: Path = PENDING) -> List[str]:
    if not path.exists():
        return []
    return [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.split("#", 1)[0].strip()]


def covers(pattern: str, module: str, name: Optional[str]) -> bool:
    """True when an out-of-scope or pending pattern ('module', 'module:Name') covers (module, name)."""
    if ":" in pattern:
        mod, nm = pattern.split(":", 1)
        return name is not None and mod == module and nm == name
    return module == pattern or module.startswith(pattern + ".")


# ----------------------------------------------------------------------------------------------------
# signatures
# ----------------------------------------------------------------------------------------------------
_KINDS = {"posonly": inspect.Parameter.POSITIONAL_ONLY, "pos": inspect.Parameter.POSITIONAL_OR_KEYWORD,
          "varargs": inspect.Parameter.VAR_POSITIONAL, "kwonly": inspect.Parameter.KEYWORD_ONLY,
          "varkw": inspect.Parameter.VAR_KEYWORD}


def parse_signature(sig: str) -> List[Tuple[str, inspect._ParameterKind, Optional[ast.expr]]]:
    """[(name, kind, default expression or None)] from '(a, b=1, *, c=None)'."""
    fn = ast.parse(f"def f{sig}: pass").body[0].args
    out = []
    pos = fn.posonlyargs + fn.args
    defaults = [None] * (len(pos) - len(fn.defaults)) + list(fn.defaults)
    for arg, d in zip(pos, defaults):
        out.append((arg.arg, _KINDS["posonly"] if arg in fn.posonlyargs else _KINDS["pos"], d))
    if fn.vararg is not None:
        out.append((fn.vararg.arg, _KINDS["varargs"], None))
    for arg, d in zip(fn.kwonlyargs, fn.kw_defaults):
        out.append((arg.arg, _KINDS["kwonly"], d))
    if fn.kwarg is not None:
        out.append((fn.kwarg.arg, _KINDS["varkw"], None))
    return out


def _default_matches(expr: ast.expr, value) -> bool:
    """Does fastspike's default ``value`` match SpikingJelly's default source ``expr``?"""
    try:
        expected = ast.literal_eval(expr)
    except (ValueError, SyntaxError, TypeError):
        pass
    else:
        if isinstance(expected, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value == expected or (math.isnan(expected) and math.isnan(value))
        if isinstance(expected, bool) or isinstance(value, bool):
            return type(expected) is type(value) and expected == value
        if isinstance(expected, tuple) and isinstance(value, list):
            return False
        return expected == value
    if isinstance(expr, ast.Lambda) or (isinstance(expr, ast.Name) and expr.id.startswith("_")):
        return callable(value)  # an identity-like function: any callable default will do
    if isinstance(expr, ast.Call):  # an instance, e.g. surrogate.Sigmoid(): same class name
        callee = expr.func.attr if isinstance(expr.func, ast.Attribute) else getattr(expr.func, "id", None)
        return type(value).__name__ == callee
    try:
        import torch
        import torch.nn as nn
        expected = eval(compile(ast.Expression(expr), "<default>", "eval"), {"torch": torch, "nn": nn, "math": math})
    except Exception:
        return value is not inspect.Parameter.empty
    return expected is value or expected == value


def fastspike_signature(obj, kind: str) -> Optional[inspect.Signature]:
    try:
        if kind == "autograd":
            sig = inspect.signature(obj.forward)
            params = list(sig.parameters.values())
            if params and params[0].name == "ctx":
                params = params[1:]
            return sig.replace(parameters=params)
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def compare_signature(expected: str, obj, kind: str) -> Optional[str]:
    """None when ``obj`` accepts every call SpikingJelly's signature accepts with the same meaning: same
    parameter names in the same order and kinds, same defaults; extra parameters only after SpikingJelly's
    and only with defaults. Otherwise a short description of the first difference."""
    want = parse_signature(expected)
    sig = fastspike_signature(obj, kind)
    if sig is None:
        return "no inspectable signature"
    have = list(sig.parameters.values())
    for i, (name, pkind, default) in enumerate(want):
        if i >= len(have):
            return f"missing parameter {name!r}"
        p = have[i]
        if pkind in (_KINDS["varargs"], _KINDS["varkw"]) and p.kind == pkind:
            continue  # *args / **kwargs: only their presence matters, not their names
        if p.name != name:
            return f"parameter {i} is {p.name!r}, SpikingJelly's is {name!r}"
        kinds_ok = p.kind == pkind or (pkind == _KINDS["kwonly"] and p.kind == _KINDS["pos"]) or (
            pkind == _KINDS["posonly"] and p.kind == _KINDS["pos"])
        if not kinds_ok:
            return f"parameter {name!r} is {p.kind.description}, SpikingJelly's is {pkind.description}"
        if default is None and pkind not in (_KINDS["varargs"], _KINDS["varkw"]):
            if p.default is not inspect.Parameter.empty:
                return f"parameter {name!r} has a default ({p.default!r}), SpikingJelly's is required"
        elif default is not None:
            if p.default is inspect.Parameter.empty:
                return f"parameter {name!r} is required, SpikingJelly's defaults to {ast.unparse(default)}"
            if not _default_matches(default, p.default):
                return f"parameter {name!r} defaults to {p.default!r}, SpikingJelly's to {ast.unparse(default)}"
    for p in have[len(want):]:
        if p.kind in (_KINDS["varargs"], _KINDS["varkw"]):
            continue
        if p.default is inspect.Parameter.empty:
            return f"extra required parameter {p.name!r}"
    return None


# ----------------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------------
@dataclass
class ModuleReport:
    sj_module: str
    fs_module: str
    import_error: Optional[str] = None
    ok: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    mismatched: Dict[str, str] = field(default_factory=dict)
    out_of_scope: List[str] = field(default_factory=list)
    pending: List[str] = field(default_factory=list)        # listed pending and not matching
    stale_pending: List[str] = field(default_factory=list)  # listed pending but matching now

    @property
    def in_scope(self) -> int:
        return len(self.ok) + len(self.missing) + len(self.mismatched) + len(self.pending)

    @property
    def percent(self) -> float:
        return 100.0 * len(self.ok) / self.in_scope if self.in_scope else 100.0

    def failures(self) -> List[str]:
        out = [f"{self.sj_module}:{n}  (missing at {self.fs_module})" for n in self.missing]
        out += [f"{self.sj_module}:{n}  ({why})" for n, why in self.mismatched.items()]
        return out


def check_name(mod, entry: Entry) -> Optional[str]:
    """None when ``entry`` exists on module object ``mod`` with a matching signature, else why not."""
    if mod is None or not hasattr(mod, entry.name):
        return "missing"
    obj = getattr(mod, entry.name)
    if entry.kind in ("function", "class", "autograd") and entry.signature != "?":
        if entry.kind == "class" and not inspect.isclass(obj):
            return f"not a class ({type(obj).__name__})"
        return compare_signature(entry.signature, obj, entry.kind)
    return None


def build_report(lists=None, out_of_scope=None, pending=None) -> List[ModuleReport]:
    lists = load_lists() if lists is None else lists
    out_of_scope = load_out_of_scope() if out_of_scope is None else out_of_scope
    pending = load_pending() if pending is None else pending
    reports = []
    for sj_module, entries in lists.items():
        rep = ModuleReport(sj_module, fastspike_path(sj_module))
        mod = None
        if not any(covers(p, sj_module, None) for p in out_of_scope):
            try:
                mod = importlib.import_module(rep.fs_module)
            except ImportError as e:  # the module does not exist (yet): every name is missing
                rep.import_error = f"{type(e).__name__}: {e}"
        for entry in entries:
            if any(covers(p, sj_module, entry.name) for p in out_of_scope):
                rep.out_of_scope.append(entry.name)
                continue
            why = check_name(mod, entry)
            is_pending = any(covers(p, sj_module, entry.name) for p in pending)
            if why is None:
                rep.ok.append(entry.name)
                if is_pending:
                    rep.stale_pending.append(entry.name)
            elif is_pending:
                rep.pending.append(entry.name)
            elif why == "missing":
                rep.missing.append(entry.name)
            else:
                rep.mismatched[entry.name] = why
        reports.append(rep)
    return reports


def format_table(reports: List[ModuleReport]) -> str:
    lines = [f"{'SpikingJelly module':<62} {'names':>5} {'out':>4} {'ok':>4} {'pend':>4} {'fail':>4} {'cover':>6}"]
    tot = [0, 0, 0, 0, 0]
    for r in reports:
        n = r.in_scope + len(r.out_of_scope)
        fail = len(r.missing) + len(r.mismatched)
        row = [n, len(r.out_of_scope), len(r.ok), len(r.pending), fail]
        tot = [a + b for a, b in zip(tot, row)]
        pct = f"{r.percent:5.1f}%" if r.in_scope else "   -  "
        lines.append(f"{r.sj_module:<62} {row[0]:>5} {row[1]:>4} {row[2]:>4} {row[3]:>4} {row[4]:>4} {pct:>6}")
    in_scope = tot[0] - tot[1]
    pct = 100.0 * tot[2] / in_scope if in_scope else 100.0
    lines.append(f"{'TOTAL':<62} {tot[0]:>5} {tot[1]:>4} {tot[2]:>4} {tot[3]:>4} {tot[4]:>4} {pct:5.1f}%")
    return "\n".join(lines)


def write_pending(reports: List[ModuleReport], path: Path = PENDING) -> None:
    lines = ["# SpikingJelly names that other branches are still building (module or module:Name per line).",
             "# tests/test_api_coverage.py fails on an entry that matches now: delete it when its branch merges.",
             "# Regenerate with `python tools/api_coverage.py --write-pending`."]
    for r in reports:
        bad = sorted(set(r.pending) | set(r.missing) | set(r.mismatched))
        if not bad:
            continue
        if r.import_error is not None and not r.ok:
            lines.append(r.sj_module)
        else:
            lines += [f"{r.sj_module}:{n}" for n in bad]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-pending", action="store_true", help="rewrite tests/sj_names/_pending.txt")
    parser.add_argument("--failures", action="store_true", help="also list every non-matching name and why")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    reports = build_report(pending=[] if args.write_pending else None)
    print(format_table(reports))
    if args.failures:
        for r in reports:
            for line in r.failures() + [f"{r.sj_module}:{n}  (pending)" for n in r.pending]:
                print(line)
    if args.write_pending:
        write_pending(reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
