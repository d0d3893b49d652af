"""What each Triton kernel can be specialised into, and ahead-of-time compilation for a real GPU on any machine.

Every kernel module lists ``COMPILE_SPECS``: one ``KernelSpec`` per @triton.jit kernel, naming the values each
constexpr can take from its launchers, which pointer arguments follow the data dtype, and which arguments are
runtime integers and floats. ``variants(spec)`` builds a covering set of specialisations: every value of every
dimension at least once and every pair of values of two dimensions together (pairwise, greedy; the full product
runs to thousands), where the dimensions are the constexprs, the data dtype, how the integer arguments arrive
(as the constant 1, as a multiple of 16 -- Triton marks those divisible by 16 -- or as an odd value) and how
the float arguments arrive (fp32 from eager launches, fp64 from torch.compile's generated launchers).

``compile_variant`` compiles one of them with ``triton.compile`` for ``GPUTarget('cuda', arch, 32)``; Triton's
wheel ships ptxas, so this needs no GPU (tests/test_triton_compile.py runs it in CI for sm_80 and sm_90 and
bench/triton_resources.py writes the register/spill table in docs/triton_kernels.md).
"""
from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

DTYPES = ("fp32", "bf16", "fp16")
INT_FORMS = ("one", "div16", "odd")
FLOAT_FORMS = ("fp32", "fp64")


@dataclass(frozen=True)
class KernelSpec:
    """``kernel``: the JITFunction. ``data``: pointer arguments in the data dtype (fp32/bf16/fp16); every other
    pointer is ``pointers[name]`` (default ``*fp32``). ``ints`` / ``floats``: runtime scalar arguments.
    ``constexprs``: each constexpr's possible values; a key naming several constexprs separated by commas takes
    tuples of values that only go together (e.g. block shapes a launcher picks jointly), and a name starting
    with '@' is a compile option (``@num_warps``). ``dtypes``: the data dtypes the launcher accepts.
    ``fixed_ints``: integer arguments that may only take some forms (e.g. a kernel never launched with 1)."""
    kernel: object
    data: Tuple[str, ...] = ()
    pointers: Dict[str, str] = field(default_factory=dict)
    ints: Tuple[str, ...] = ()
    floats: Tuple[str, ...] = ()
    constexprs: Dict[str, Tuple] = field(default_factory=dict)
    dtypes: Tuple[str, ...] = DTYPES
    fixed_ints: Dict[str, Tuple[str, ...]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.kernel.__name__


def _pairwise(dims: Dict[str, Sequence]) -> List[Dict[str, object]]:
    """Greedy pairwise covering array: rows (one value per dimension) until every pair of values of every two
    dimensions appears in some row. Deterministic."""
    names = list(dims)
    if len(names) == 1:
        return [{names[0]: v} for v in dims[names[0]]]
    uncovered = set()
    for a, b in itertools.combinations(range(len(names)), 2):
        for va in range(len(dims[names[a]])):
            for vb in range(len(dims[names[b]])):
                uncovered.add((a, va, b, vb))
    rows = []
    while uncovered:
        # seed with an uncovered pair, then fill the other dimensions greedily
        a, va, b, vb = min(uncovered)
        row = {a: va, b: vb}
        for d in range(len(names)):
            if d in row:
                continue
            best, best_gain = 0, -1
            for v in range(len(dims[names[d]])):
                gain = sum(((min(d, e), v if d < e else row[e], max(d, e), row[e] if d < e else v) in uncovered)
                           for e in row)
                if gain > best_gain:
                    best, best_gain = v, gain
            row[d] = best
        for x, y in itertools.combinations(sorted(row), 2):
            uncovered.discard((x, row[x], y, row[y]))
        rows.append({names[d]: dims[names[d]][row[d]] for d in range(len(names))})
    return rows


def variants(spec: KernelSpec) -> List[Dict[str, object]]:
    """A covering set of specialisations of ``spec`` (see the module docstring)."""
    dims: Dict[str, Sequence] = {f"C:{k}": tuple(v) for k, v in spec.constexprs.items()}
    if spec.data:
        dims["dtype"] = spec.dtypes
    for name in spec.ints:
        dims[f"I:{name}"] = spec.fixed_ints.get(name, INT_FORMS)
    if spec.floats:
        dims["floats"] = FLOAT_FORMS
    dims = {k: v for k, v in dims.items() if len(v) > 0}
    return _pairwise(dims)


def signature(spec: KernelSpec, variant: Dict[str, object]):
    """(signature, constexprs, attrs) for ``triton.compiler.ASTSource``."""
    names = spec.kernel.arg_names
    sig, const, attrs = {}, {}, {}
    dtype = variant.get("dtype", "fp32")
    chosen = constexpr_values(variant)
    for i, name in enumerate(names):
        if name in chosen:
            sig[name] = "constexpr"
            const[name] = chosen[name]
        elif name in spec.data:
            sig[name] = f"*{dtype}"
            attrs[(i,)] = [["tt.divisibility", 16]]  # torch allocations are 16-byte aligned
        elif name in spec.ints:
            form = variant.get(f"I:{name}", "odd")
            if form == "one":
                sig[name] = "constexpr"
                const[name] = 1
            else:
                sig[name] = "i32"
                if form == "div16":
                    attrs[(i,)] = [["tt.divisibility", 16]]
        elif name in spec.floats:
            sig[name] = variant.get("floats", "fp32")
        else:
            sig[name] = spec.pointers.get(name, "*fp32")
            if sig[name].startswith("*"):
                attrs[(i,)] = [["tt.divisibility", 16]]
    return sig, const, attrs


def constexpr_values(variant: Dict[str, object]) -> Dict[str, object]:
    """{constexpr or '@option': value} of a variant, joint keys unpacked."""
    out = {}
    for key, value in variant.items():
        if not key.startswith("C:"):
            continue
        names = key[2:].split(",")
        values = value if len(names) > 1 else (value,)
        out.update(zip(names, values))
    return out


def compile_variant(spec: KernelSpec, variant: Dict[str, object], arch: int):
    """Compile for ``GPUTarget('cuda', arch, 32)``; returns the CompiledKernel (raises on a compile error)."""
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    sig, const, attrs = signature(spec, variant)
    options = {k[1:]: v for k, v in constexpr_values(variant).items() if k.startswith("@")}
    # Triton runs ptxas -v to make the cubin and prints the report only with this knob: keep it, so that
    # ``resources`` need not run ptxas a second time (a sixth of each compile's time)
    knob = getattr(getattr(triton, "knobs", None), "nvidia", None)
    report = io.StringIO()
    with contextlib.ExitStack() as stack:
        if knob is not None and hasattr(knob, "dump_ptxas_log"):
            stack.enter_context(knob.scope())
            knob.dump_ptxas_log = True
            stack.enter_context(contextlib.redirect_stdout(report))
        compiled = triton.compile(ASTSource(spec.kernel, sig, const, attrs), target=GPUTarget("cuda", arch, 32),
                                  options=options or None)
    setattr(compiled, _PTXAS_LOG, report.getvalue())
    return compiled


def _ptxas(arch: int) -> str:
    from triton.backends.nvidia.compiler import get_ptxas

    return get_ptxas(arch).path


_PTXAS_LOG = "ptxas_log"  # the key under which compile_variant keeps ptxas's -v report on the CompiledKernel


def _parse_ptxas(out: str) -> Dict[str, int]:
    def grab(pattern: str) -> int:
        m = re.search(pattern, out)
        return int(m.group(1)) if m else 0

    return {"registers": grab(r"Used (\d+) registers"), "spill_stores": grab(r"(\d+) bytes spill stores"),
            "spill_loads": grab(r"(\d+) bytes spill loads"), "stack": grab(r"(\d+) bytes stack frame")}


def resources(compiled, arch: int) -> Dict[str, int]:
    """{'registers', 'spill_stores', 'spill_loads', 'stack'} of a compiled kernel, from the ``ptxas -v`` report of
    Triton's own ptxas run when ``compile_variant`` could capture it, else by assembling its PTX again with the
    ptxas Triton uses for ``arch`` (no GPU needed either way)."""
    log = getattr(compiled, _PTXAS_LOG, "")
    if re.search(r"Used \d+ registers", log):
        return _parse_ptxas(log)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(compiled.asm["ptx"])
        gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
        out = subprocess.run([_ptxas(arch), "-v", "--gpu-name", gpu, src, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, check=True).stderr
    return _parse_ptxas(out)


def memory_ops(compiled) -> Dict[str, int]:
    """How many global loads and stores of each width the PTX holds, e.g. {'ld.global.v4.b32': 4} (a v4.b32
    access moves 16 bytes per thread)."""
    from collections import Counter

    return dict(Counter(re.findall(r"\b(?:ld|st)\.global(?:\.[a-z]+)*(?:\.v[248])?\.[a-z]+\d+", compiled.asm["ptx"])))


def compile_all(archs=(80, 90), workers: int = 2) -> List[dict]:
    """Compile every variant of every kernel for every arch; one dict per compile: kernel, index, variant, arch,
    and either the resources or the error. Must run in a process without TRITON_INTERPRET=1 (under the
    interpreter @triton.jit gives functions that cannot be compiled): see ``main``."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(s.name, i, a) for s in all_specs() for i, _ in enumerate(variants(s)) for a in archs]
    if workers <= 1:
        return [_compile_job(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_compile_job, jobs, chunksize=4))


_VARIANTS: Dict[str, Tuple[KernelSpec, List[Dict[str, object]]]] = {}  # per worker process: the covering sets


def _compile_job(job) -> dict:
    name, index, arch = job
    if name not in _VARIANTS:  # building a covering set takes up to 0.1 s: once per kernel, not once per compile
        spec = next(s for s in all_specs() if s.name == name)
        _VARIANTS[name] = (spec, variants(spec))
    spec, found = _VARIANTS[name]
    variant = found[index]
    row = {"kernel": name, "index": index, "arch": arch, "variant": {k: str(v) for k, v in variant.items()}}
    try:
        compiled = compile_variant(spec, variant, arch)
        row["resources"] = resources(compiled, arch)
        row["memory_ops"] = memory_ops(compiled)
    except Exception as e:  # the test reports it
        row["error"] = f"{type(e).__name__}: {e}"[-2000:]
    return row


def main(argv=None) -> int:
    """``python -m fastspike.kernels._spec OUT.json [--workers N]``: compile everything, write the rows as JSON."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("out")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--arch", type=int, action="append")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        raise SystemExit("unset TRITON_INTERPRET: the interpreter's functions cannot be compiled")
    rows = compile_all(tuple(args.arch or (80, 90)), args.workers)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(rows, f, indent=0)
    os.replace(tmp, args.out)
    return 0


def all_specs() -> List[KernelSpec]:
    """Every kernel module's COMPILE_SPECS."""
    import importlib
    import pkgutil

    import fastspike.kernels as pkg

    specs = []
    for info in sorted(pkgutil.walk_packages(pkg.__path__, prefix="fastspike.kernels."), key=lambda m: m.name):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        mod = importlib.import_module(info.name)
        specs.extend(getattr(mod, "COMPILE_SPECS", ()))
    return specs


if __name__ == "__main__":
    raise SystemExit(main())
