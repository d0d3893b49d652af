"""Command line of ``python -m fastspike.bench`` (see docs/bench.md)."""
from __future__ import annotations

import argparse
import gc
import os
import shlex
import sys
import time
from typing import List, Optional, Sequence

import torch

from . import report
from .core import MALLOC_CHOICES, Settings, Table, copy_bandwidth, keep_freed_memory, measure_table
from .registry import CASES, PEERS, SUITES, Case, Ctx, peer_status

PROG = "python -m fastspike.bench"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Side-by-side benchmark of fastspike against SpikingJelly, snnTorch and Norse.")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--suite", default="default", help=f"one of: {', '.join(SUITES)} (default: default)")
    p.add_argument("--case", action="append", default=[], metavar="NAME",
                   help="run only this case (repeatable, or comma-separated); a family name (e.g. 'neuron') "
                        "selects all its cases; see --list")
    p.add_argument("--peers", default="all", help="comma-separated peers to compare with "
                                                 f"({', '.join(PEERS)}), 'all' (default) or 'none'")
    p.add_argument("--mode", default="both", choices=["train", "infer", "both"],
                   help="train = forward+backward, infer = forward only (default: both)")
    p.add_argument("--json", metavar="FILE", help="write machine info, versions and every timing to FILE")
    p.add_argument("--plot", metavar="FILE.png", help="plot time versus T (and versus spike density) to FILE.png")
    p.add_argument("--markdown", metavar="FILE.md",
                   help="write a markdown summary: one table per family, one line per measured table")
    p.add_argument("--quick", action="store_true", help="small sizes and fewer repeats (a smoke run)")
    p.add_argument("--repeat", type=int, default=None, help="timed samples per implementation (default 7, quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls per implementation (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N) before running")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--malloc", default="keep", choices=MALLOC_CHOICES,
                   help="keep (default): glibc keeps freed memory for reuse, so outputs do not page-fault on first "
                        "write (docs/bench.md); system: the C library's defaults")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list suites and cases and exit")
    return p


def _load_cases() -> None:
    from . import cases  # noqa: F401  (registers every case module)


def _select(args) -> List[Case]:
    if args.suite not in SUITES:
        raise UsageError(f"unknown suite {args.suite!r}; choose one of: {', '.join(SUITES)}")
    names = [n.strip() for c in args.case for n in c.split(",") if n.strip()]
    if not names:
        return [c for c in CASES.values() if args.suite in c.suites]
    picked: List[Case] = []
    for n in names:
        hits = [c for c in CASES.values() if c.name == n or c.family == n or c.name.split(".")[0] == n]
        if not hits:
            raise UsageError(f"unknown case {n!r}; choose from: {', '.join(CASES)} (or a family: "
                             f"{', '.join(sorted({c.family for c in CASES.values()}))})")
        picked += [c for c in hits if c not in picked]
    return picked


def _peers(spec: str) -> List[str]:
    if spec in ("all", ""):
        return list(PEERS)
    if spec == "none":
        return []
    out = [s.strip().lower() for s in spec.split(",") if s.strip()]
    for s in out:
        if s not in PEERS:
            raise UsageError(f"unknown peer {s!r}; choose from: {', '.join(PEERS)} (or 'all', 'none')")
    return out


def _device(spec: str) -> str:
    if spec == "cpu":
        return "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec} was requested but CUDA is not available "
                             f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})")
        return spec
    raise UsageError(f"unknown device {spec!r}; use cpu or cuda")


def list_text() -> str:
    _load_cases()
    lines = ["suites:"] + [f"  {k:18s} {v}" for k, v in SUITES.items()] + ["cases:"]
    for c in CASES.values():
        why = c.available()
        suites = ", ".join(c.suites)
        lines.append(f"  {c.name:22s} [{suites}] {c.description}" + (f"  (unavailable: {why})" if why else ""))
    lines.append("peers: " + ", ".join(f"{k} ({v.pip})" for k, v in PEERS.items()))
    return "\n".join(lines)


def run(argv: Optional[Sequence[str]] = None, out=None) -> int:
    out = out or sys.stdout
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        args = build_parser().parse_args(argv)
        args.argv_list = argv
        if args.list:
            print(list_text(), file=out)
            return 0
        _load_cases()
        device = _device(args.device)
        cases = _select(args)
        peers = _peers(args.peers)
        if args.repeat is not None and args.repeat < 1:
            raise UsageError("--repeat must be >= 1")
        if args.threads is not None and args.threads < 1:
            raise UsageError("--threads must be >= 1")
        if args.plot and not args.plot.lower().endswith((".png", ".pdf", ".svg")):
            raise UsageError("--plot takes a file name ending in .png, .pdf or .svg")
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    return _run(args, device, cases, peers, out)


def _run(args, device: str, cases: List[Case], peers: List[str], out) -> int:
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run_inner(args, device, cases, peers, out)
    finally:
        torch.set_num_threads(threads)


def _load_warning() -> str:
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        return ""
    cores = os.cpu_count() or 1
    if load <= cores:
        return ""
    msg = f"  warning: this machine is busy (1-min load average {load:.1f} on {cores} cores): timings are noisy"
    if torch.get_num_threads() > 1:
        msg += (f"; OpenMP/torch with {torch.get_num_threads()} threads can stall at every barrier while a thread "
                "waits for a core, --threads 1 gives steadier numbers on an oversubscribed machine")
    return msg


def _run_inner(args, device: str, cases: List[Case], peers: List[str], out) -> int:
    started = time.time()
    started_utc = report.now()
    settings = Settings(device=device, memory=not args.no_memory)
    settings.repeat = args.repeat if args.repeat is not None else (3 if args.quick else settings.repeat)
    settings.warmup = args.warmup if args.warmup is not None else settings.warmup
    if args.quick:
        settings.max_impl_s = 3.0
    ctx = Ctx(device=device, peers=peers, quick=args.quick, suite=args.suite)

    if device.startswith("cuda"):
        # SpikingJelly picks its native CUDA extension before its Triton kernels when both exist; the issue
        # compares with its Triton kernels. Set before SpikingJelly is imported; a user's own choice wins.
        for n in ("IF", "LIF", "PLIF"):
            os.environ.setdefault(f"SJ_{n}_CUDA_IMPLEMENTATION", "triton")
    peer_info = {}
    for name in PEERS:
        ok, info = peer_status(name) if name in peers else (None, "not requested")
        peer_info[name] = {"installed": ok, "version" if ok else "reason": info, "pip": PEERS[name].pip}
    malloc = "system"
    if args.malloc == "keep":
        malloc = "keep" if keep_freed_memory() else "system (keeping freed memory needs glibc's mallopt)"
    print(f"fastspike bench | device {device} | suite {args.suite}{' (quick)' if args.quick else ''} | "
          f"torch {torch.__version__} | {torch.get_num_threads()} threads | malloc {malloc}", file=out)
    print(f"  {report.machine_header(report.isa_info())}", file=out)
    for name, info in peer_info.items():
        if info["installed"] is False:
            print(f"  peer {name}: skipped, not installed ({info['reason']}); install: {info['pip']}", file=out)
    warn = _load_warning() if not device.startswith("cuda") else ""
    if warn:
        print(warn, file=out)
    if device.startswith("cuda"):
        settings.copy_bw_gbs = copy_bandwidth(device)
        print(f"  device-to-device copy bandwidth (this run): {settings.copy_bw_gbs:.0f} GB/s", file=out)

    def make_meta(complete: bool) -> dict:
        return {
            "schema": "fastspike.bench/1",
            "complete": complete,  # False in the copy rewritten after every table (a killed run keeps its tables)
            "command": " ".join([PROG] + [shlex.quote(a) for a in args.argv_list]),
            "argv": {k: v for k, v in vars(args).items() if k != "argv_list"},
            "started_utc": started_utc,
            "elapsed_s": round(time.time() - started, 1),
            "machine": report.machine_info(device),
            "versions": report.versions(),
            "peers": peer_info,
            "settings": {"device": device, "suite": args.suite, "quick": args.quick, "repeat": settings.repeat,
                         "warmup": settings.warmup, "min_sample_s": settings.min_sample_s,
                         "copy_bandwidth_gbs": settings.copy_bw_gbs, "memory": settings.memory,
                         "malloc": malloc},
            "unavailable_cases": unavailable,
            "case_import_errors": dict(IMPORT_ERRORS),
            "summaries": summaries,
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "busy_warning": warn,
            "timing": "median of round-robin samples; perf_counter on CPU, CUDA events on GPU; "
                      "ratio = median / fastspike median in the same table",
        }

    modes = ("train", "infer") if args.mode == "both" else (args.mode,)
    jobs = []
    unavailable = {}
    for case in cases:
        why = case.available()
        if why:
            unavailable[case.name] = why
            continue
        for point in case.points(ctx):
            point = dict(point)
            point_modes = point.pop("modes", case.modes)  # a size may run in fewer modes than its case
            for mode in point_modes:
                if mode in modes:
                    jobs.append((case, point, mode))
    for name, why in unavailable.items():
        print(f"  case {name}: unavailable ({why})", file=out)
    from .cases import IMPORT_ERRORS
    for name, why in IMPORT_ERRORS.items():
        print(f"  case module {name}: FAILED TO IMPORT ({why})", file=out)

    bar = None
    if not args.no_progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(jobs), unit="table", leave=False, dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            bar = None
    write = (lambda s: bar.write(s, file=out)) if bar is not None else (lambda s: print(s, file=out, flush=True))
    write(report.legend())

    tables: List[Table] = []
    summaries: List[str] = []
    failed = False
    for case, point, mode in jobs:
        label = case.label(point)
        if bar is not None:
            bar.set_description(f"{case.name} {mode} {label}")
        table = Table(case=case.name, family=case.family, mode=mode, label=label, params=dict(point),
                      x_axis=case.x_axis)
        try:
            impls = case.setup(point, mode, ctx)
            note = getattr(impls, "note", "")
            table.note = note
            measure_table(table, impls, settings,
                          progress=(lambda s: bar.set_postfix_str(s[:30])) if bar is not None else None)
        except Exception as e:  # one broken case must not hide the others
            table.error = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        finally:
            impls = None
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        tables.append(table)
        for r in table.rows:
            if r.kind in ("fastspike", "kernel") and r.status in ("error", "mismatch"):
                failed = True
        if table.error:
            failed = True
        write(report.format_table(table, cuda=device.startswith("cuda")))
        if args.json:
            try:
                report.write_json(args.json, tables, make_meta(False))
            except OSError:
                pass
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    seen = []
    for case in cases:
        if case.summarize is not None and case.summarize not in seen:
            seen.append(case.summarize)
            try:
                summaries += case.summarize(tables)
            except Exception as e:  # pragma: no cover
                summaries.append(f"{case.name}: summary failed: {type(e).__name__}: {e}")
    for line in summaries:
        print(f"summary: {line}", file=out)
    elapsed = time.time() - started
    print(f"done: {len(tables)} tables in {elapsed:.0f} s", file=out)

    if args.json or args.markdown:
        meta = make_meta(True)
        if args.json:
            report.write_json(args.json, tables, meta)
            print(f"wrote {args.json}", file=out)
        if args.markdown:
            import json as _json
            data = _json.loads(_json.dumps(report.to_json(tables, meta), default=str))
            with open(args.markdown, "w") as f:
                f.write(report.markdown(data))
            print(f"wrote {args.markdown}", file=out)
    if args.plot:
        why = report.plot(args.plot, tables)
        print(f"plot: {why}" if why else f"wrote {args.plot}", file=out)
    return 1 if failed or IMPORT_ERRORS else 0


def main() -> None:
    sys.exit(run())
