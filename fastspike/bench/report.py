"""Printing tables, writing the JSON record and drawing the plot."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from dataclasses import asdict
from typing import Any, Dict, List, Optional

import torch

from .core import Table

MODE_LABEL = {"train": "forward+backward", "infer": "forward only (inference)"}


def _ms(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _mb(b: Optional[int]) -> str:
    if b is None:
        return "-"
    return f"{b / 2**20:.1f}"


def format_table(t: Table, cuda: bool = False) -> str:
    head = f"== {t.case} | {MODE_LABEL.get(t.mode, t.mode)} | {t.label} =="
    lines = [head]
    if t.error:
        lines.append(f"   case failed: {t.error}")
        return "\n".join(lines)
    cols = ["implementation", "median ms", "min-max ms", "vs fastspike", "peak MB"]
    if cuda:
        cols += ["GB/s", "of copy BW"]
    body = []
    notes = []
    for r in t.rows:
        if r.status == "published":
            body.append([r.impl, _ms(r.median_ms), "", "(other hw)", "-"] + (["", ""] if cuda else []))
            if r.note:
                notes.append(f"   {r.impl}: {r.note}")
            continue
        if r.status != "ok":
            body.append([r.impl, f"[{r.status}] {r.reason}"])
            continue
        ratio = "-" if r.ratio is None else (f"{r.ratio:.2f}x" if r.ratio >= 0.1 else f"{r.ratio:.2g}x")
        row = [r.impl, _ms(r.median_ms), f"{_ms(r.min_ms)}-{_ms(r.max_ms)}", ratio, _mb(r.peak_mem_bytes)]
        if cuda:
            row += [f"{r.bandwidth_gbs:.0f}" if r.bandwidth_gbs else "-",
                    f"{r.bandwidth_fraction:.0%}" if r.bandwidth_fraction else "-"]
        body.append(row)
        if r.note:
            notes.append(f"   {r.impl}: {r.note}")
    widths = [max(len(cols[i]), *(len(b[i]) for b in body if len(b) == len(cols) and i < len(b)))
              for i in range(len(cols))]
    def fmt(cells):
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells))
    lines.append("   " + fmt(cols))
    for b in body:
        if len(b) == len(cols):
            lines.append("   " + fmt(b))
        else:
            lines.append("   " + b[0].ljust(widths[0]) + "  " + b[1])
    lines.extend(notes)
    if t.note:
        lines.append(f"   note: {t.note}")
    return "\n".join(lines)


def legend() -> str:
    return ("vs fastspike = median time / fastspike's median time in the same run (> 1: slower than fastspike). "
            "floor = copies of the bytes the op must touch, on preallocated buffers. Peak MB = most memory "
            "allocated during one call beyond what existed before it.")


# ------------------------------------------------------------------------------------------------ JSON
def machine_info(device: str) -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "hostname": platform.node(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
        info["cuda_version"] = torch.version.cuda
        info["cuda_device_count"] = torch.cuda.device_count()
    info["device"] = device
    info.update(isa_info())
    return info


# SIMD levels of csrc/simd.h, narrowest first
ISA_LEVELS = ("portable", "neon", "avx2", "avx512")


def cpu_isa_from_os() -> str:
    """The widest csrc/simd.h branch this CPU runs, from what the OS reports (no extension needed), by the x86-64
    levels of a portable build's variants: avx512 = x86-64-v4, avx2 = x86-64-v3 (csrc/module.cpp's cpu_isa)."""
    machine = platform.machine().lower()
    if machine in ("arm64", "aarch64"):
        return "neon"  # Advanced SIMD is part of every AArch64 CPU
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    if {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"} <= set(flags):
        return "avx512"
    if {"avx2", "fma", "bmi2", "f16c"} <= set(flags):
        return "avx2"
    return "portable"


def isa_info() -> Dict[str, Any]:
    """``cpu_isa``: the widest SIMD level the CPU offers (avx512, avx2, neon or portable); ``build``: how
    fastspike._C was built (its ``build_info()``: the level compiled in, the flags, the compiler), or why it
    could not be loaded. Figures from builds of different levels are figures of different kernels."""
    from .. import _ext
    out: Dict[str, Any] = {"cpu_isa": cpu_isa_from_os()}
    try:
        build = dict(_ext.get().build_info())
    except Exception as e:  # no extension (or one too old to say): the record says so
        out["build"] = {"error": f"{type(e).__name__}: {e}"}
        return out
    out["cpu_isa"] = build.get("cpu_isa", out["cpu_isa"])
    out["build"] = build
    return out


def machine_header(info: Dict[str, Any]) -> str:
    """One line for the benchmark header: the CPU's SIMD level and the one the loaded extension module was built
    for (fastspike._C, or the variant a portable build picked), with its flags; says so when the build uses less of
    the CPU than it could."""
    cpu = info.get("cpu_isa", "?")
    build = info.get("build", {})
    if "isa" not in build:
        return f"cpu {cpu} | fastspike._C: {build.get('error', 'unknown build')}"
    module = build.get("module", "fastspike._C")
    line = (f"cpu {cpu} | {module} built for {build['isa']} ({build.get('compiler', '?')}: "
            f"{build.get('flags', '?')})")
    if cpu in ISA_LEVELS and build["isa"] in ISA_LEVELS and ISA_LEVELS.index(build["isa"]) < ISA_LEVELS.index(cpu):
        line += f" | note: the {cpu} CPU runs fastspike's {build['isa']} kernels"
    return line


def versions() -> Dict[str, Optional[str]]:
    from importlib.metadata import PackageNotFoundError, version
    out: Dict[str, Optional[str]] = {}
    for pkg in ("fastspike", "torch", "triton", "numpy", "spikingjelly", "snntorch", "norse", "matplotlib"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def to_json(tables: List[Table], meta: Dict[str, Any]) -> Dict[str, Any]:
    return dict(meta, tables=[asdict(t) for t in tables])


def write_json(path: str, tables: List[Table], meta: Dict[str, Any]) -> None:
    data = to_json(tables, meta)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=str)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------ plot
def plot(path: str, tables: List[Table]) -> Optional[str]:
    """Time versus the case's x axis (T for neurons, spike density for synapses), one panel per group of
    tables that differ only in that parameter. Returns None, or why nothing was drawn."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib)"
    groups: Dict[tuple, List[Table]] = {}
    for t in tables:
        if not t.x_axis or t.x_axis not in t.params or t.error:
            continue
        rest = tuple(sorted((k, str(v)) for k, v in t.params.items()
                            if k != t.x_axis and not isinstance(v, bool)))  # flags do not split a panel
        groups.setdefault((t.case, t.mode, rest), []).append(t)
    # a panel needs at least two values on its axis (single sizes are in the tables)
    groups = {k: ts for k, ts in groups.items() if len({str(t.params[t.x_axis]) for t in ts}) >= 2}
    if not groups:
        return ("no case in this run varies its x axis (T, density or N) at fixed other sizes; "
                "try --suite full, --case psn or --case synapse")
    n = len(groups)
    ncol = min(3, n)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), squeeze=False)
    for ax, ((case, mode, rest), ts) in zip(axes.flat, groups.items()):
        xa = ts[0].x_axis
        series: Dict[str, List[tuple]] = {}
        for t in ts:
            for r in t.rows:
                if r.status == "ok" and r.median_ms:
                    series.setdefault(r.impl, []).append((float(t.params[xa]), r.median_ms, r.min_ms, r.max_ms))
        for name, pts in series.items():
            pts.sort()
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            lo = [p[1] - p[2] for p in pts]
            hi = [p[3] - p[1] for p in pts]
            style = "--" if name.startswith("floor") else "-"
            ax.errorbar(xs, ys, yerr=[lo, hi], fmt=style + "o", ms=3, capsize=2, label=name)
        ax.set_xlabel(xa)
        ax.set_ylabel("median ms")
        if xa == "T":
            ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{case} {mode}\n" + " ".join(f"{k}={v}" for k, v in rest), fontsize=8)
        ax.legend(fontsize=6)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ------------------------------------------------------------------------------------------------ markdown
def markdown(data: Dict[str, Any]) -> str:
    """A compact markdown summary of a JSON record: one line per table, fastspike's median and every other
    implementation's time as a multiple of it (x > 1: slower than fastspike)."""
    m = data.get("machine", {})
    v = data.get("versions", {})
    s = data.get("settings", {})
    lines = [
        f"- date (UTC): {data.get('started_utc', '?')}; elapsed {data.get('elapsed_s', '?')} s",
        f"- machine: {m.get('cpu_model', m.get('processor', '?'))}, {m.get('cpu_count', '?')} cores, "
        f"{m.get('torch_threads', '?')} torch threads, {m.get('mem_total_gib', '?')} GiB"
        + (f"; GPU {m['cuda_device']} (CUDA {m.get('cuda_version')})" if m.get("cuda_device") else ""),
        f"- SIMD: {machine_header(m)}" if "cpu_isa" in m else "- SIMD: not recorded",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- command: `{data.get('command', '?')}`",
    ]
    if s.get("copy_bandwidth_gbs"):
        lines.append(f"- device-to-device copy bandwidth in this run: {s['copy_bandwidth_gbs']:.0f} GB/s")
    if data.get("busy_warning"):
        lines.append(f"- {data['busy_warning'].strip()}")
    families: Dict[str, List[Dict[str, Any]]] = {}
    for t in data.get("tables", []):
        families.setdefault(t.get("family", t["case"]), []).append(t)
    for fam, tabs in families.items():
        impls: List[str] = []
        for t in tabs:
            for r in t["rows"]:
                if r["kind"] not in ("fastspike", "published") and r["impl"] not in impls and r["status"] != "n/a":
                    impls.append(r["impl"])
        head = ["case", "mode", "size", "fastspike ms"] + impls
        lines += ["", f"**{fam}** (other columns: time / fastspike time in the same run)", "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in tabs:
            rows = {r["impl"]: r for r in t["rows"]}
            fast = next((r for r in t["rows"] if r["kind"] == "fastspike"), None)
            cells = [t["case"], t["mode"], t["label"],
                     _ms(fast["median_ms"]) if fast and fast["median_ms"] else (t.get("error") or "-")]
            for name in impls:
                r = rows.get(name)
                if r is None:
                    cells.append("")
                elif r["status"] == "ok" and r.get("ratio") is not None:
                    cells.append(f"{r['ratio']:.3g}x")
                else:
                    cells.append(r["status"])
            lines.append("| " + " | ".join(cells) + " |")
        pub = [(t, r) for t in tabs for r in t["rows"] if r["kind"] == "published"]
        for t, r in pub:
            lines.append(f"\n{t['label']}: {r['impl']}: {r['median_ms']} ms ({r['note']})")
    for sline in data.get("summaries", []):
        lines.append(f"\n- {sline}")
    return "\n".join(lines) + "\n"
