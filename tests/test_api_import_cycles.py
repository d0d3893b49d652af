"""No import cycle inside fastspike.

Builds the import graph of every module of the package (fastspike/** and kernels/**, installed as
fastspike.kernels) from its source with ``ast``, counting imports inside functions as well (a lazy import
hides a cycle at import time but keeps the two modules tangled), and fails on every strongly connected
component with more than one module. The implicit edge from a submodule to its parent package is not an
edge here (every package imports its children), nor are imports under ``if TYPE_CHECKING:``.
"""
import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[1]
#: cycles other branches are breaking (issue 17); each entry must still be a cycle, so delete it once fixed
KNOWN_CYCLES: list = []  # none left: a cycle that appears fails the test
PACKAGES = {"fastspike": ROOT / "fastspike", "fastspike.kernels": ROOT / "kernels"}


def discover() -> Dict[str, Path]:
    mods = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join([prefix] + parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST):
    """Every Import/ImportFrom node, skipping the bodies of `if TYPE_CHECKING:` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def graph(mods: Dict[str, Path]) -> Dict[str, Set[str]]:
    edges: Dict[str, Set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            targets: List[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = here[: len(here) - (node.level - 1)] if node.level > 1 else list(here)
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                targets = [src] + [f"{src}.{a.name}" for a in node.names]
            for t in targets:
                # the deepest fastspike module the import names (a.b.c -> a.b.c, else a.b, ...)
                parts = t.split(".")
                while parts and ".".join(parts) not in mods:
                    parts = parts[:-1]
                target = ".".join(parts)
                if target and target != name and not name.startswith(target + "."):
                    edges[name].add(target)
    return edges


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    out: List[List[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _path_in(comp: List[str], edges: Dict[str, Set[str]]) -> str:
    """One cycle through the component, for the message: a -> b -> ... -> a."""
    members = set(comp)
    start = comp[0]
    seen = [start]
    node = start
    while True:
        nxt = sorted(n for n in edges[node] if n in members)
        step = next((n for n in nxt if n == start), None) or next((n for n in nxt if n not in seen), nxt[0])
        seen.append(step)
        if step == start or seen.count(step) > 1:
            return " -> ".join(seen)
        node = step


def test_graph_sees_a_cycle(tmp_path):
    """The detector itself: a lazy (function-level) import closing a loop is a cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "c.py").write_text("from .. import a\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    mods = {}
    for path in pkg.rglob("*.py"):
        parts = list(path.relative_to(pkg).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(["pkg"] + parts)] = path
    edges = graph(mods)
    assert edges["pkg.d"] == set()
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_no_import_cycles():
    mods = discover()
    assert "fastspike.functional" in mods and "fastspike.layer.container" in mods
    edges = graph(mods)
    found = cycles(edges)
    new = [c for c in found if set(c) not in KNOWN_CYCLES]
    assert not new, "import cycles inside fastspike:\n" + "\n".join(_path_in(c, edges) for c in new)
    gone = [sorted(k) for k in KNOWN_CYCLES if k not in [set(c) for c in found]]
    assert not gone, f"these cycles are gone: delete them from KNOWN_CYCLES in {Path(__file__).name}: {gone}"


def test_functional_does_not_import_layer():
    """functional sits below layer: the containers call functional's time loops, never the reverse."""
    edges = graph(discover())
    for mod, targets in edges.items():
        if mod == "fastspike.functional" or mod.startswith("fastspike.functional."):
            assert not any(t == "fastspike.layer" or t.startswith("fastspike.layer.") for t in targets), \
                f"{mod} imports {sorted(targets)}"
