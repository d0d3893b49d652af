"""Write the public names (and signatures) of SpikingJelly 2.0.0's ``activation_based`` and ``datasets`` packages.

Reads the installed SpikingJelly source with :mod:`ast` only (nothing of it is imported, so modules that need
torchvision, Megatron or a GPU are listed as well) and writes one file per public module to
``tests/sj_names/<dotted.module>.txt``. Each line is::

    <name>\t<kind>\t<signature>

``kind`` is ``class``, ``function``, ``autograd`` (a ``torch.autograd.Function``: the signature is that of
``forward`` without ``ctx``, i.e. of ``.apply``), ``value`` or ``module``; ``signature`` is Python parameter
syntax without annotations, e.g. ``(x_seq, v, tau=2.0, *, neuron_storage=None)`` (a class's is its
``__init__`` without ``self``, found through its SpikingJelly base classes; a dataclass's is that of the
``__init__`` its fields generate), or ``?`` where none applies or
it cannot be resolved statically (a class whose constructor is inherited from torch).

Rules for which names a module makes public:

* ``__all__`` when the module defines it (a list/tuple literal, ``+=`` extensions included);
* otherwise its top-level classes, functions and assignments whose names do not start with ``_``, plus, for
  a package ``__init__``, everything it re-exports from its own submodules (``from .x import *`` expands to
  the public names of ``.x``; ``from .x import A`` adds ``A``).

Modules whose dotted path has a part starting with ``_`` and the ``examples`` packages (scripts) are skipped.

Usage: ``python tools/sj_public_names.py [--sj-root DIR] [--out tests/sj_names]``. The lists are generated
once and committed; rerun only to move to another SpikingJelly release.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOTS = ("spikingjelly.activation_based", "spikingjelly.datasets")
SKIP_PARTS = ("examples",)


class Module:
    """One parsed source file: its dotted name, whether it is a package, and its syntax tree."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path
        self.is_package = path.name == "__init__.py"
        self.tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        self.body = list(_top_level(self.tree.body))

    def resolve_relative(self, level: int, target: Optional[str]) -> str:
        """The absolute module named by ``from <level dots><target> import ...`` inside this module."""
        base = self.name.split(".")
        if not self.is_package:
            base = base[:-1]
        if level > 1:
            base = base[: len(base) - (level - 1)]
        return ".".join(base + ([target] if target else []))


def _top_level(body):
    """Statements at module level, looking inside ``if``/``try`` blocks (conditional definitions)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body)
            for h in node.handlers:
                yield from _top_level(h.body)
            yield from _top_level(node.orelse)
        else:
            yield node


def discover(sj_root: Path) -> Dict[str, Module]:
    """Every module under the ROOTS packages, keyed by dotted name."""
    mods: Dict[str, Module] = {}
    top = sj_root.parent
    for root in ROOTS:
        pkg_dir = top.joinpath(*root.split("."))
        for path in sorted(pkg_dir.rglob("*.py")):
            rel = path.relative_to(top).with_suffix("")
            parts = list(rel.parts)
            if any(p in SKIP_PARTS for p in parts):
                continue  # scripts: never public, and not worth parsing
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = Module(".".join(parts), path)
    return mods


def is_public_module(name: str) -> bool:
    parts = name.split(".")
    return not any(p.startswith("_") or p in SKIP_PARTS for p in parts)


class Index:
    """Name resolution across the parsed modules (definitions, imports, aliases)."""

    def __init__(self, mods: Dict[str, Module]):
        self.mods = mods
        self._public: Dict[str, List[str]] = {}

    # -- public names ------------------------------------------------------------------------------
    def dunder_all(self, mod: Module) -> Optional[List[str]]:
        names: Optional[List[str]] = None
        for node in mod.body:
            if isinstance(node, ast.Assign) and any(isinstance(t,
                                                               ast.Name) and t.id == "__all__" for t in node.targets):
                names = list(ast.literal_eval(node.value))
            elif (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
                  and node.target.id == "__all__" and names is not None):
                names += list(ast.literal_eval(node.value))
        return names

    def public_names(self, modname: str) -> List[str]:
        if modname in self._public:
            return self._public[modname]
        self._public[modname] = []  # guards against star-import loops
        mod = self.mods[modname]
        explicit = self.dunder_all(mod)
        if explicit is not None:
            names = explicit
        else:
            names = []
            for node in mod.body:
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.append(node.name)
                elif isinstance(node, ast.Assign):
                    names += [t.id for t in node.targets if isinstance(t, ast.Name)]
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                    names.append(node.target.id)
                elif isinstance(node, ast.ImportFrom) and node.level > 0 and mod.is_package:
                    src = mod.resolve_relative(node.level, node.module)
                    for alias in node.names:
                        if alias.name == "*":
                            if src in self.mods:
                                names += self.public_names(src)
                        else:
                            names.append(alias.asname or alias.name)
            names = [n for n in names if not n.startswith("_")]
        seen, out = set(), []
        for n in names:
            if n not in seen:
                seen.add(n)
                out.append(n)
        self._public[modname] = out
        return out

    # -- resolution ---------------------------------------------------------------------------------
    def lookup(self, modname: str, name: str, depth: int = 0):
        """(kind, node, module) for ``name`` as seen from ``modname``; kind is 'class', 'function', 'value',
        'module', 'external' (imported from outside SpikingJelly) or 'unknown'."""
        if depth > 20 or modname not in self.mods:
            return "unknown", None, None
        mod = self.mods[modname]
        found = None
        for node in mod.body:  # the last binding wins, as at run time
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                found = ("function", node, mod)
            elif isinstance(node, ast.ClassDef) and node.name == name:
                found = ("class", node, mod)
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                found = ("alias", node.value, mod)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
                found = ("alias", node.value, mod)
            elif isinstance(node, ast.ImportFrom):
                src = mod.resolve_relative(node.level, node.module) if node.level else (node.module or "")
                for alias in node.names:
                    if alias.name == "*" and src in self.mods and name in self.public_names(src):
                        found = ("import", (src, name), mod)
                    elif (alias.asname or alias.name) == name and alias.name != "*":
                        found = ("import", (src, alias.name), mod)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if (alias.asname or alias.name.split(".")[0]) == name:
                        found = ("module", alias.name if alias.asname else name, mod)
        if found is None:
            sub = f"{modname}.{name}"
            return ("module", None, self.mods[sub]) if sub in self.mods else ("unknown", None, None)
        kind, node, where = found
        if kind == "import":
            src, orig = node
            if f"{src}.{orig}" in self.mods:
                return "module", None, self.mods[f"{src}.{orig}"]
            if src in self.mods:
                return self.lookup(src, orig, depth + 1)
            return "external", None, None
        if kind == "alias":
            if isinstance(node, ast.Name):
                return self.lookup(modname, node.id, depth + 1)
            if isinstance(node, ast.Attribute):
                return self.lookup_expr(modname, node, depth + 1)
            return "value", node, where
        return kind, node, where

    def lookup_expr(self, modname: str, expr: ast.expr, depth: int = 0):
        """Resolve ``Name`` or ``a.b.C`` (through imported modules) from ``modname``."""
        if isinstance(expr, ast.Name):
            return self.lookup(modname, expr.id, depth)
        if isinstance(expr, ast.Attribute):
            kind, _node, where = self.lookup_expr(modname, expr.value, depth + 1)
            if kind == "module" and where is not None:
                return self.lookup(where.name, expr.attr, depth + 1)
        return "unknown", None, None

    def class_init(self, cls: ast.ClassDef, mod: Module, depth: int = 0):
        """The ``__init__`` FunctionDef a class uses (its own or the first SpikingJelly base class's that has
        one); "object" when no class in its SpikingJelly ancestry defines one and every ancestry ends at
        ``object``; None when a base class outside SpikingJelly (torch, abc, ...) may supply it."""
        for node in cls.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                return node
        if depth > 20:
            return None
        for base in cls.bases:
            if ast.unparse(base) in ("object", "abc.ABC", "ABC"):
                continue
            kind, node, where = self.lookup_expr(mod.name, base, depth + 1)
            if kind != "class":
                return None
            init = self.class_init(node, where, depth + 1)
            if init != "object":
                return init
        return "object"

    def is_autograd_function(self, cls: ast.ClassDef, mod: Module, depth: int = 0) -> bool:
        for base in cls.bases:
            text = ast.unparse(base)
            if text.endswith("autograd.Function") or text == "Function":
                return True
            kind, node, where = self.lookup_expr(mod.name, base, depth + 1)
            if kind == "class" and depth < 20 and self.is_autograd_function(node, where, depth + 1):
                return True
        return False


def signature_text(fn: ast.FunctionDef, drop_first: bool) -> str:
    """``(a, b=1, *args, c=None, **kw)`` from a FunctionDef, annotations removed."""
    a = fn.args
    posonly, regular = list(a.posonlyargs), list(a.args)
    allpos = posonly + regular
    defaults = [None] * (len(allpos) - len(a.defaults)) + list(a.defaults)
    items = []
    for i, (arg, default) in enumerate(zip(allpos, defaults)):
        if drop_first and i == 0:
            continue
        items.append(arg.arg if default is None else f"{arg.arg}={ast.unparse(default)}")
        if posonly and arg is posonly[-1]:
            items.append("/")
    if items[:1] == ["/"]:
        items = items[1:]
    if a.vararg is not None:
        items.append(f"*{a.vararg.arg}")
    elif a.kwonlyargs:
        items.append("*")
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        items.append(arg.arg if default is None else f"{arg.arg}={ast.unparse(default)}")
    if a.kwarg is not None:
        items.append(f"**{a.kwarg.arg}")
    return "(" + ", ".join(items) + ")"


def _dataclass_decorator(cls: ast.ClassDef) -> Optional[Dict[str, bool]]:
    """``{'kw_only': ...}`` when ``cls`` is decorated with ``@dataclass`` / ``@dataclass(...)``, else None."""
    for dec in cls.decorator_list:
        call = dec if isinstance(dec, ast.Call) else None
        target = call.func if call is not None else dec
        if ast.unparse(target) in ("dataclass", "dataclasses.dataclass"):
            kw_only = any(k.arg == "kw_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                          for k in (call.keywords if call is not None else []))
            return {"kw_only": kw_only}
    return None


def dataclass_fields(index: "Index", cls: ast.ClassDef, mod: "Module", depth: int = 0):
    """The ``__init__`` fields of a dataclass without its own ``__init__``: [(name, default source or None,
    keyword-only)], base dataclasses' fields first (as ``dataclasses`` orders them); None when ``cls`` is not a
    dataclass or a base class cannot be resolved within SpikingJelly."""
    flags = _dataclass_decorator(cls)
    if flags is None or depth > 20:
        return None
    fields: Dict[str, Tuple[Optional[str], bool]] = {}
    for base in cls.bases:
        if ast.unparse(base) == "object":
            continue
        kind, node, where = index.lookup_expr(mod.name, base, depth + 1)
        inherited = dataclass_fields(index, node, where, depth + 1) if kind == "class" else None
        if inherited is None:
            return None
        for name, default, kw in inherited:
            fields[name] = (default, kw)
    for stmt in cls.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        if "ClassVar" in ast.unparse(stmt.annotation):
            continue
        default = None if stmt.value is None else ast.unparse(stmt.value)
        if stmt.value is not None and isinstance(stmt.value, ast.Call) and ast.unparse(stmt.value.func) in (
                "field", "dataclasses.field"):
            kws = {k.arg: k.value for k in stmt.value.keywords}
            if "init" in kws and isinstance(kws["init"], ast.Constant) and kws["init"].value is False:
                continue
            factory = kws.get("default_factory")
            if isinstance(factory, ast.Lambda):  # default_factory=lambda: X -> X
                default = ast.unparse(factory.body)
            elif factory is not None:
                default = f"{ast.unparse(factory)}()"
            else:
                default = ast.unparse(kws["default"]) if "default" in kws else None
        fields[stmt.target.id] = (default, flags["kw_only"])
    return [(name, default, kw) for name, (default, kw) in fields.items()]


def dataclass_signature(fields) -> str:
    """``(a, b=1, *, c=None)`` from [(name, default source or None, keyword-only)]."""
    pos = [f if d is None else f"{f}={d}" for f, d, kw in fields if not kw]
    kwonly = [f if d is None else f"{f}={d}" for f, d, kw in fields if kw]
    return "(" + ", ".join(pos + (["*"] + kwonly if kwonly else [])) + ")"


def describe(index: Index, modname: str, name: str) -> Tuple[str, str]:
    kind, node, where = index.lookup(modname, name)
    if kind == "function":
        return "function", signature_text(node, drop_first=False)
    if kind == "class":
        if index.is_autograd_function(node, where):
            fwd = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "forward"), None)
            if fwd is None:
                return "autograd", "?"
            first = (fwd.args.posonlyargs + fwd.args.args)[:1]
            return "autograd", signature_text(fwd, drop_first=bool(first) and first[0].arg == "ctx")
        init = index.class_init(node, where)
        if isinstance(init, ast.FunctionDef):
            return "class", signature_text(init, drop_first=True)
        fields = dataclass_fields(index, node, where)
        if fields is not None:
            return "class", dataclass_signature(fields)
        return "class", "()" if init == "object" else "?"
    if kind == "module":
        return "module", "?"
    return "value", "?"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sj-root", type=Path, default=None,
                        help="the spikingjelly package directory (default: the installed one)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "sj_names")
    args = parser.parse_args(argv)
    sj_root = args.sj_root
    if sj_root is None:
        import importlib.util
        spec = importlib.util.find_spec("spikingjelly")
        if spec is None or not spec.submodule_search_locations:
            parser.error("spikingjelly is not installed; pass --sj-root")
        sj_root = Path(list(spec.submodule_search_locations)[0])
    mods = discover(sj_root)
    index = Index(mods)
    try:
        from importlib.metadata import version as dist_version
        version = dist_version("spikingjelly")
    except Exception:  # a source tree passed with --sj-root need not be installed
        version = "unknown"
    written = 0
    for modname in sorted(mods):
        if not is_public_module(modname):
            continue
        names = index.public_names(modname)
        if not names:
            continue
        lines = [f"# public names of {modname} (SpikingJelly {version}), written by tools/sj_public_names.py",
                 "# name\tkind\tsignature"]
        for name in names:
            kind, sig = describe(index, modname, name)
            lines.append(f"{name}\t{kind}\t{sig}")
        write_atomic(args.out / f"{modname}.txt", "\n".join(lines) + "\n")
        written += 1
    print(f"wrote {written} module lists to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
