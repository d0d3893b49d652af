"""The benchmark machinery (python -m fastspike.bench) on tiny sizes: every case runs, the JSON record is
complete, a missing peer is named as skipped, a peer computing something else is flagged and not timed,
bad arguments exit with code 2. Speed itself is never asserted here."""
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastspike.bench import CASES, Impl, Settings, Table, compare_outputs, measure_table, run
from fastspike.bench.cli import _load_cases
from fastspike.bench.core import peak_memory

_load_cases()

# --malloc system: the test process keeps glibc's defaults (test_keep_freed_memory checks "keep" in a subprocess)
FAST = ["--quick", "--repeat", "1", "--warmup", "1", "--no-progress", "--threads", "1", "--malloc", "system"]


def _tiny_points(monkeypatch):
    """Every case at its smallest quick size (open-neuromorphic shrunk further)."""
    for case in CASES.values():
        if case.name == "open-neuromorphic":
            monkeypatch.setattr(case, "points", lambda ctx: [dict(T=4, B=2, N=32, published=True)])
        else:
            orig = case.points
            monkeypatch.setattr(case, "points", lambda ctx, orig=orig: orig(ctx)[-1:])


def _run_json(tmp_path, args, capsys=None):
    path = tmp_path / "out.json"
    rc = run(list(args) + ["--json", str(path)])
    with open(path) as f:
        return rc, json.load(f)


def _rows(data, case=None, mode=None):
    for t in data["tables"]:
        if (case is None or t["case"] == case) and (mode is None or t["mode"] == mode):
            yield t, t["rows"]


def test_every_case_runs_and_json_is_complete(tmp_path, monkeypatch):
    _tiny_points(monkeypatch)
    names = [c.name for c in CASES.values() if c.available() is None]
    assert "neuron.lif" in names and "open-neuromorphic" in names
    md = tmp_path / "out.md"
    args = FAST + ["--peers", "none", "--markdown", str(md)]
    for n in names:
        args += ["--case", n]
    rc, data = _run_json(tmp_path, args)
    assert rc == 0
    assert data["command"].startswith("python -m fastspike.bench --quick")
    text = md.read_text()
    assert "| case | mode | size | fastspike ms |" in text and "| neuron.lif | train |" in text
    for key in ("schema", "command", "machine", "versions", "peers", "settings", "tables", "elapsed_s"):
        assert key in data, key
    assert data["complete"] is True
    assert data["case_import_errors"] == {}  # every case module imports
    assert data["versions"]["torch"] == torch.__version__.split("+")[0] or data["versions"]["torch"]
    assert data["machine"]["torch_threads"] >= 1
    seen = {t["case"] for t in data["tables"]}
    assert seen == set(names)
    assert any(s.startswith("neuron.lif train") and "kernels/floor" in s for s in data["summaries"])
    if "synapse.linear" in names:  # the measured event-driven/dense crossover is reported
        assert any("crossover density" in s for s in data["summaries"])
    for t, rows in _rows(data):
        assert not t["error"], (t["case"], t["error"])
        kinds = {r["kind"] for r in rows}
        assert "fastspike" in kinds
        fast = next(r for r in rows if r["kind"] == "fastspike")
        assert fast["status"] == "ok", (t["case"], fast)
        assert fast["ratio"] == pytest.approx(1.0)
        for r in rows:
            if r["status"] == "ok":
                assert len(r["times_ms"]) >= 1 and r["median_ms"] > 0, (t["case"], r)
                assert r["min_ms"] <= r["median_ms"] <= r["max_ms"]
                assert r["ratio"] == pytest.approx(r["median_ms"] / fast["median_ms"])
                assert r["peak_mem_bytes"] is None or r["peak_mem_bytes"] >= 0
            elif r["status"] != "published":
                assert r["reason"], r
        if t["case"] == "open-neuromorphic":  # published 4090 figures: shown, labelled, never a ratio
            pub = [r for r in rows if r["kind"] == "published"]
            assert {r["median_ms"] for r in pub} == {118.0, 110.0, 47.0}
            assert all("RTX 4090" in r["impl"] and r["ratio"] is None and not r["times_ms"] for r in pub)
        if t["family"] == "neuron":
            assert any(r["kind"] == "floor" and r["status"] == "ok" for r in rows)
            kern = next(r for r in rows if r["kind"] == "kernel")
            assert kern["status"] == "ok", kern  # the C++ kernels on preallocated buffers agree with the module


def test_missing_peer_is_named_as_skipped(tmp_path, monkeypatch, capsys):
    _tiny_points(monkeypatch)
    for mod in ("snntorch", "norse", "norse.torch", "spikingjelly", "spikingjelly.activation_based"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import snntorch` now raises ImportError
    rc, data = _run_json(tmp_path, FAST + ["--case", "neuron.lif", "--mode", "train"])
    assert rc == 0
    out = capsys.readouterr().out
    for t, rows in _rows(data):
        for label in ("SpikingJelly 2.0", "snnTorch", "Norse"):
            row = next(r for r in rows if r["impl"] == label)
            assert row["status"] == "skipped" and "pip install" in row["reason"], row
            assert row["times_ms"] == []
    assert data["peers"]["snntorch"]["installed"] is False
    assert "pip install --no-deps snntorch" in out


def test_disagreeing_peer_is_flagged_not_timed(tmp_path, monkeypatch):
    pytest.importorskip("snntorch")
    from fastspike.bench.cases import neuron as neuron_cases
    _tiny_points(monkeypatch)
    monkeypatch.setattr(neuron_cases, "snntorch_beta", lambda tau: 0.9)  # a leak that is not tau=2's
    rc, data = _run_json(tmp_path, FAST + ["--case", "neuron.lif", "--peers", "snntorch"])
    assert rc == 0  # a peer's disagreement is reported, not a failure of fastspike
    for t, rows in _rows(data):
        row = next(r for r in rows if r["impl"] == "snnTorch")
        assert row["status"] == "mismatch", row
        assert "spikes" in row["reason"] and row["times_ms"] == [] and row["median_ms"] is None


@pytest.mark.parametrize("peer", ["spikingjelly", "snntorch", "norse"])
@pytest.mark.parametrize("case", ["neuron.lif", "neuron.if"])
def test_peer_configuration_agrees(tmp_path, monkeypatch, peer, case):
    """The documented parameter mapping makes each installed peer compute what fastspike computes."""
    pytest.importorskip({"spikingjelly": "spikingjelly", "snntorch": "snntorch", "norse": "norse"}[peer])
    _tiny_points(monkeypatch)
    rc, data = _run_json(tmp_path, FAST + ["--case", case, "--peers", peer, "--no-memory"])
    assert rc == 0
    for t, rows in _rows(data):
        peer_rows = [r for r in rows if r["kind"] == "peer"]
        assert len(peer_rows) == 1 and peer_rows[0]["status"] == "ok", peer_rows
        assert peer_rows[0]["agreement"]["spikes"] <= 1e-3


@pytest.mark.parametrize("case", ["neuron.qif", "neuron.eif", "neuron.aaif_pc", "neuron.glif"])
def test_nonlinear_neurons_agree_with_spikingjelly_and_name_missing_peers(tmp_path, monkeypatch, case):
    pytest.importorskip("spikingjelly")
    _tiny_points(monkeypatch)
    rc, data = _run_json(tmp_path, FAST + ["--case", case, "--no-memory"])
    assert rc == 0
    for t, rows in _rows(data):
        by_impl = {r["impl"]: r for r in rows}
        sj = by_impl["SpikingJelly 2.0"]
        assert sj["status"] == "ok" and sj["agreement"]["spikes"] == 0.0, sj
        assert by_impl["snnTorch"]["status"] == "n/a" and "no equivalent" in by_impl["snnTorch"]["reason"]
        assert next(r for r in rows if r["kind"] == "kernel")["status"] == "ok"


def test_compare_outputs_flags_nan_and_missing():
    a = {"spikes": torch.tensor([0.0, 1.0, 1.0]), "grad_x": torch.tensor([1.0, 2.0, 3.0])}
    assert compare_outputs(a, {k: v.clone() for k, v in a.items()}, {})[0] is None
    bad, _ = compare_outputs(a, {"spikes": a["spikes"], "grad_x": torch.tensor([1.0, float("nan"), 3.0])}, {})
    assert bad and "grad_x" in bad
    bad, _ = compare_outputs(a, {"grad_x": a["grad_x"]}, {})
    assert bad and "spikes: missing" in bad
    bad, _ = compare_outputs(a, {"spikes": torch.tensor([0.0, 0.0, 1.0]), "grad_x": a["grad_x"]}, {})
    assert bad and "spikes" in bad


def test_measure_table_core():
    """Round-robin timing, mismatch, error and skipped rows, ratio and floor without a check."""
    x = torch.randn(1000)
    def good():
        return {"y": x * 2}
    impls = [
        Impl("fastspike", good, kind="fastspike"),
        Impl("same", lambda: {"y": x + x}),
        Impl("wrong", lambda: {"y": x * 3}),
        Impl("broken", lambda: 1 / 0),
        Impl("absent", None, status="skipped", reason="not installed; install: pip install absent"),
        Impl("floor (memcpy)", lambda: None, kind="floor", check=False),
    ]
    t = measure_table(Table("t", "f", "train", "tiny", {}), impls, Settings(repeat=3, warmup=1, min_sample_s=1e-4))
    rows = {r.impl: r for r in t.rows}
    assert [r.impl for r in t.rows] == [i.name for i in impls]
    assert rows["fastspike"].status == "ok" and rows["fastspike"].ratio == 1.0
    assert rows["same"].status == "ok" and len(rows["same"].times_ms) == 3
    assert rows["wrong"].status == "mismatch" and rows["wrong"].times_ms == []
    assert rows["broken"].status == "error" and "ZeroDivisionError" in rows["broken"].reason
    assert rows["absent"].status == "skipped"
    assert rows["floor (memcpy)"].status == "ok"


def test_peak_memory_cpu_sees_allocation():
    n = 1 << 20

    def f():
        a = torch.ones(n)  # 4 MiB
        b = a * 2  # 4 MiB more while a is alive
        return b.sum()
    peak = peak_memory(f, "cpu")
    if peak is None:
        pytest.skip("this torch build has no profiler allocation events")
    assert 8 * 2**20 <= peak < 16 * 2**20


@pytest.mark.parametrize("args, needle", [
    (["--case", "no-such-case"], "unknown case"),
    (["--peers", "brian2"], "unknown peer"),
    (["--suite", "nope"], "unknown suite"),
    (["--repeat", "0"], "--repeat"),
    (["--bogus-flag"], "unrecognized"),
])
def test_bad_arguments_exit_2(args, needle, capsys):
    assert run(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_exits_2_from_the_command_line():
    p = subprocess.run([sys.executable, "-m", "fastspike.bench", "--device", "cuda", "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "CUDA is not available" in lines[0]


def test_plot_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    # quick synapse sizes: two densities at one size, so the density axis varies
    assert run(FAST + ["--case", "synapse.linear", "--mode", "infer", "--no-memory", "--plot", str(png)]) == 0
    assert png.exists() and png.stat().st_size > 1000
    assert f"wrote {png}" in capsys.readouterr().out


def test_plot_skipped_when_nothing_varies(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    _tiny_points(monkeypatch)
    png = tmp_path / "t.png"
    assert run(FAST + ["--case", "neuron.if", "--peers", "none", "--mode", "infer", "--no-memory",
                       "--plot", str(png)]) == 0
    assert not png.exists() and "varies its x axis" in capsys.readouterr().out


def test_list_names_every_case(capsys):
    assert run(["--list"]) == 0
    out = capsys.readouterr().out
    for name in CASES:
        assert name in out


def test_cuda_table_shows_bandwidth_fraction():
    """The CUDA columns (achieved GB/s and fraction of the copy bandwidth) are filled from bytes_moved."""
    from fastspike.bench.report import format_table
    x = torch.randn(1 << 16)
    impls = [Impl("fastspike", lambda: {"y": x + 1}, kind="fastspike", bytes_moved=2 * x.numel() * 4),
             Impl("floor (memcpy)", lambda: None, kind="floor", check=False, bytes_moved=2 * x.numel() * 4)]
    s = Settings(repeat=2, warmup=1, min_sample_s=1e-4, memory=False, copy_bw_gbs=1.0)
    t = measure_table(Table("t", "f", "infer", "tiny", {}), impls, s)
    fast = t.rows[0]
    assert fast.bandwidth_gbs == pytest.approx(fast.bytes_moved / (fast.median_ms / 1e3) / 1e9)
    assert fast.bandwidth_fraction == pytest.approx(fast.bandwidth_gbs / 1.0)
    text = format_table(t, cuda=True)
    assert "of copy BW" in text and "GB/s" in text and "%" in text


@pytest.mark.parametrize("kind", ["if", "lif", "plif"])
@pytest.mark.parametrize("mode", ["train", "infer"])
def test_triton_kernel_row_agrees(kind, mode):
    """The GPU table's 'kernels (launchers)' row, run here through Triton's interpreter on tiny CPU tensors."""
    pytest.importorskip("triton")
    from fastspike.ops import _backend
    if not _backend.triton_interpret() and not torch.cuda.is_available():
        pytest.skip("needs CUDA or TRITON_INTERPRET=1")
    from fastspike.bench.cases import neuron as nc
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x, gs = nc._inputs(kind, 5, 2, 24, torch.float32, device, 0)
    node = nc._fs_node(kind, backend="torch").to(device)
    params = [node.w] if kind == "plif" else []
    ref = nc._module_fn(node, x, gs, mode, node.reset, params)()
    got = nc._triton_kernel_impl(kind, x, gs, mode).fn()
    bad, errs = compare_outputs(ref, got, {"grad_x": 1e-5, "grad_w": 1e-5})
    assert bad is None, bad
    assert errs["spikes"] == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_quick_run(tmp_path):
    """On a GPU: the LIF case end to end, with the copy bandwidth and each row's fraction of it."""
    rc, data = _run_json(tmp_path, ["--device", "cuda", "--malloc", "system", "--quick", "--case", "neuron.lif",
                                    "--peers", "none", "--repeat", "2", "--no-progress"])
    assert rc == 0
    assert data["settings"]["copy_bandwidth_gbs"] > 0
    for t, rows in _rows(data):
        fast = next(r for r in rows if r["kind"] == "fastspike")
        kern = next(r for r in rows if r["kind"] == "kernel")
        assert fast["status"] == "ok" and kern["status"] == "ok", (fast, kern)
        assert 0 < fast["bandwidth_fraction"] and fast["peak_mem_bytes"] > 0


def test_progress_bar_does_not_disturb_tables(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tqdm")
    _tiny_points(monkeypatch)
    args = [a for a in FAST if a != "--no-progress"] + ["--case", "neuron.if", "--peers", "none", "--mode", "infer",
                                                      "--no-memory"]
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "== neuron.if | forward only (inference)" in out and "fastspike" in out


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="keeping freed memory uses glibc's mallopt")
def test_keep_freed_memory(tmp_path):
    # in a fresh process (it changes the process's allocator for good): with 'keep' a freed 256 MiB block stays
    # mapped for reuse (resident memory does not drop), with glibc's defaults it goes back to the kernel; and
    # the bench records the setting
    code = (
        "import os, sys, torch\n"
        "from fastspike.bench.core import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
        "t = torch.ones(64 << 20); held = rss(); del t\n"
        "print(held - rss() > (128 << 20))\n")
    for mode, returned in (("keep", "False"), ("system", "True")):
        p = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=120,
                           check=False)
        assert p.returncode == 0 and p.stdout.strip() == returned, (mode, p.stdout, p.stderr[-2000:])
    out = tmp_path / "out.json"
    p = subprocess.run([sys.executable, "-m", "fastspike.bench", "--quick", "--case", "neuron.if", "--peers", "none",
                        "--mode", "infer", "--no-memory", "--repeat", "1", "--warmup", "1", "--no-progress",
                        "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=300,
                       check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(out.read_text())["settings"]["malloc"] == "keep" and "malloc keep" in p.stdout


def test_sew_resnet_autocast_point_runs_and_agrees_with_spikingjelly(tmp_path, monkeypatch):
    """models.sew_resnet18's bf16-autocast point (on CUDA, and in the full suite): both frameworks run the step inside
    the region, fastspike's activations stay bf16 (its synapse layers follow the autocast rule), outputs agree."""
    pytest.importorskip("spikingjelly")
    case = CASES["models.sew_resnet18"]
    points = case.points
    monkeypatch.setattr(case, "points", lambda ctx: [dict(T=2, B=2, HW=16, amp="bf16")])
    rc, data = _run_json(tmp_path, FAST + ["--case", "models.sew_resnet18", "--peers", "spikingjelly",
                                           "--no-memory", "--mode", "train"])
    assert rc == 0
    for t, rows in _rows(data):
        assert "bf16 autocast" in t["label"]
        by_impl = {r["impl"]: r for r in rows}
        assert by_impl["fastspike"]["status"] == "ok" and by_impl["SpikingJelly 2.0"]["status"] == "ok", rows
    from fastspike.bench.registry import Ctx
    full = points(Ctx(device="cpu", suite="full"))
    assert any(p.get("amp") == "bf16" for p in full) and not any(
        p.get("amp") for p in points(Ctx(device="cpu")))


def test_sew_resnet_graphs_case_compiles_both_frameworks(tmp_path):
    """models.sew_resnet18_graphs (suite 'graphs'): fastspike and SpikingJelly eager and torch.compile(model) steps of
    SEW ResNet-18 (IF) agree (loss, first convolution's weight gradient); the CUDA-graph rows are named n/a on the
    CPU; the summary gives the issue's ratios. The graph rows themselves run with CUDA (tests/test_cuda_graph.py
    covers the helper)."""
    pytest.importorskip("spikingjelly")
    rc, data = _run_json(tmp_path, FAST + ["--suite", "graphs", "--peers", "spikingjelly", "--no-memory"])
    assert rc == 0
    (t, rows), = list(_rows(data, "models.sew_resnet18_graphs"))
    by_impl = {r["impl"]: r for r in rows}
    for owner in ("fastspike", "SpikingJelly 2.0"):
        for how in ("eager", "torch.compile"):
            assert by_impl[f"{owner} {how}"]["status"] == "ok", by_impl[f"{owner} {how}"]
        graph = by_impl[f"{owner} CUDA graph"]
        assert graph["status"] == "n/a" and "CUDA" in graph["reason"], graph
    line = next(s for s in data["summaries"] if s.startswith("models.sew_resnet18_graphs"))
    assert "SpikingJelly eager / fastspike eager" in line and "SpikingJelly compiled / fastspike compiled" in line


def test_neuron_host_script_rows_agree_and_report_each_layer():
    """bench/neuron_host.py: every layer it times (op, run_neuron, module) returns the bare Function's gradient (the
    script checks before timing) and a ratio is printed for each, train and infer."""
    script = Path(__file__).resolve().parents[1] / "bench" / "neuron_host.py"
    run = subprocess.run([sys.executable, str(script), "--rounds", "2", "--calls", "3"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = {line.split(" ")[0]: line for line in run.stdout.splitlines()}
    assert set(lines) == {"train", "infer"}, run.stdout
    for mode, rows in (("train", ("bare", "op", "run_neuron", "module")), ("infer", ("bare", "module"))):
        ratios = dict(re.findall(r"(\w+) (\d+\.\d{3})", lines[mode]))
        assert set(ratios) == set(rows), lines[mode]
        assert float(ratios["bare"]) == 1.0 and all(float(r) > 0 for r in ratios.values())


def test_host_bytecodes_script_counts_by_package():
    """bench/host_bytecodes.py: per case, a total that is the sum of its packages, fastspike's share non-zero (the
    trace sees fastspike's frames), the top functions listed, and the same count on a second run (deterministic)."""
    script = Path(__file__).resolve().parents[1] / "bench" / "host_bytecodes.py"

    def run(*args):
        return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)

    first, second = run("--case", "lif,conv", "--top", "3"), run("--case", "lif,conv", "--top", "3")
    assert first.returncode == 0, first.stderr
    heads = [line for line in first.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split(":")[0] for h in heads] == ["lif", "conv"], first.stdout
    for head in heads:
        n = dict(re.findall(r"(\w+) (\d+)", head.split(":", 1)[1]))
        assert int(n["total"]) == int(n["fastspike"]) + int(n["torch"]) + int(n["other"])
        assert int(n["fastspike"]) > 100
    assert len(first.stdout.splitlines()) == 2 + 2 * 3
    assert heads == [line for line in second.stdout.splitlines() if not line.startswith(" ")]
    bad = run("--case", "nope")
    assert bad.returncode != 0 and "unknown ['nope']" in bad.stderr
