"""Compile every Triton kernel specialisation for sm_80 and sm_90 on this machine (no GPU needed) and write the
register / spill table of docs/triton_kernels.md.

    python bench/triton_resources.py              # writes docs/triton_kernels.md
    python bench/triton_resources.py --print      # prints it instead

The specialisations are the pairwise covering set of kernels/_spec.py, the same as tests/test_triton_compile.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "triton_kernels.md")

HEADER = """# Triton kernels: registers and spills

Every Triton kernel is compiled ahead of time for sm_80 (A100) and sm_90 (H100/H200) by
`tests/test_triton_compile.py`, in a pairwise covering set of the specialisations its launchers can produce
(every constexpr value, the data dtype, integer arguments as the constant 1 / a multiple of 16 / odd, float
arguments as fp32 / fp64: `kernels/_spec.py`). The test fails on a compile error, on any spill at the
255-register cap, and on more than 64 bytes of spill stores. Registers and spills below are the `ptxas -v` report
of the ptxas run that made each kernel's cubin (the ptxas that Triton {triton} bundles, with Triton's own flags;
the machine that ran it had no GPU). Regenerate with `python bench/triton_resources.py`.

| kernel | variants | sm_80 registers | sm_80 max spill (B) | sm_90 registers | sm_90 max spill (B) |
|---|---|---|---|---|---|
"""


def table(rows, triton_version: str) -> str:
    by = defaultdict(list)
    for r in rows:
        by[(r["kernel"], r["arch"])].append(r)
    kernels = sorted({r["kernel"] for r in rows}, key=lambda k: [r["kernel"] for r in rows].index(k))
    out = [HEADER.format(triton=triton_version)]
    notes = []
    for k in kernels:
        cells = [k, str(len(by[(k, 80)]))]
        for arch in (80, 90):
            rs = [r for r in by[(k, arch)] if "resources" in r]
            errors = [r for r in by[(k, arch)] if "error" in r]
            if errors:
                notes.append(f"- {k} on sm_{arch}: {len(errors)} variants do not compile")
            regs = [r["resources"]["registers"] for r in rs]
            spill = max((r["resources"]["spill_stores"] for r in rs), default=0)
            cells += [f"{min(regs)}-{max(regs)}" if regs else "-", str(spill)]
            for r in rs:
                if r["resources"]["spill_stores"]:
                    notes.append(f"- {k} sm_{arch}: {r['resources']['spill_stores']} B spilled at "
                                 f"{r['resources']['registers']} registers, variant {r['variant']}")
        out.append("| " + " | ".join(cells) + " |\n")
    if notes:
        out.append("\nSpills below the register cap (ptxas's own register target for the block size, not a kernel "
                   "out of registers):\n\n")
        out.extend(n + "\n" for n in notes)
    return "".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--print", action="store_true", help="print the table instead of writing docs/triton_kernels.md")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    import triton

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rows.json")
        env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=os.path.join(tmp, "cache"),
                   TRITON_DEFAULT_FP_FUSION="1")
        subprocess.run([sys.executable, "-m", "fastspike.kernels._spec", out, "--workers", str(args.workers)],
                       env=env, check=True)
        with open(out) as f:
            rows = json.load(f)
    text = table(rows, triton.__version__)
    if args.print:
        print(text)
    else:
        tmp = DOC + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, DOC)
        print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
