"""Decoder fuzz test (issue 18): mutated copies of the real sample files in ../shared/data/neuromorphic/
and of files written by fastspike's own writers -- truncations, bit flips, random bodies behind valid
headers, header edits -- are decoded in a worker subprocess with a time limit.  Each must give a named
error (EventFileError / ValueError) or valid events (EVENT_DTYPE, non-negative non-decreasing times,
polarity 0/1, coordinates inside the sensor).  A crash of the worker, a hang, an uncaught exception of
another type (IndexError, a Rust PanicException, ...) or invalid events fail the test, naming the mutant.

Seeded and reproducible (``FASTSPIKE_FUZZ_SEED``, default 0); ``FASTSPIKE_FUZZ_N`` mutants per source
(default 14) bounds it to well under a minute; raise it for a longer campaign.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fastspike.datasets import make_events
from fastspike.datasets import formats as F

DATA = Path(os.environ.get("FASTSPIKE_NEURO_DATA", Path(__file__).resolve().parents[1] / "../shared/data/neuromorphic"))
if not DATA.is_dir():
    DATA = Path("/work/shared/data/neuromorphic")
SEED = int(os.environ.get("FASTSPIKE_FUZZ_SEED", "0"))
N_MUT = int(os.environ.get("FASTSPIKE_FUZZ_N", "14"))
HANG_S = 30.0  # no single decode may take longer (the largest mutant decodes in well under a second)

# real files: name -> sensor_size the harness passes (None: the decoder must know it from the header/format)
REAL = {
    "nmnist/sample_nmnist.bin": (34, 34), "nmnist/1.bs2": (34, 34),
    "mnist_dvs/mnist_0_scale04_0001.aedat": None, "aedat2_header_only/sample_aedat_header.aedat": None,
    "ncars/sample_ncars.dat": (120, 100), "ncars/NCARS_obj_004397_td.dat": (120, 100),
    "prophesee_evt/evt2_sample.raw": None, "prophesee_evt/evt3_sample.raw": None,
    "prophesee_evt/evt3_test_pedestrians.raw": None, "aedat4_dvxplorer/sample.aedat4": None,
}

_WORKER = textwrap.dedent(r"""
    import json, sys, warnings
    import numpy as np
    from fastspike.datasets import EVENT_DTYPE, EventFileError, read_events
    warnings.simplefilter("ignore")
    for line in open(sys.argv[1]):
        job = json.loads(line)
        print(json.dumps({"start": job["id"]}), flush=True)
        try:
            ev = read_events(job["path"], sensor_size=job["sensor"], index=job.get("index"))
            t = ev["t"]
            bad = []
            if ev.dtype != EVENT_DTYPE: bad.append("dtype")
            if ev.size and int(t.min()) < 0: bad.append("negative t")
            if ev.size > 1 and (np.diff(t) < 0).any(): bad.append("decreasing t")
            if ev.size and not np.isin(ev["p"], (0, 1)).all(): bad.append("polarity")
            if ev.size and (ev["x"].min() < 0 or ev["y"].min() < 0): bad.append("negative coordinate")
            W, H = job["limit"]
            if ev.size and (ev["x"].max() >= W or ev["y"].max() >= H): bad.append(f"outside {W}x{H}")
            res = {"outcome": "bad: " + ", ".join(bad)} if bad else {"outcome": "events", "n": int(ev.size)}
        except (EventFileError, ValueError) as e:
            res = {"outcome": "named error", "type": type(e).__name__, "msg": str(e)[-200:]}
        except BaseException as e:
            res = {"outcome": "uncaught " + type(e).__name__, "msg": str(e)[-200:]}
        res["id"] = job["id"]
        print(json.dumps(res), flush=True)
""")


def _written_sources(tmp: Path, rng):
    """Files from fastspike's writers, with the sensor limit the harness checks against."""
    def ev(n, W, H, t_max):
        return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, W, n), rng.integers(0, H, n),
                           rng.integers(0, 2, n))
    out = []
    for name, writer, W, H, t_max, kw in (
        ("w.aedat31", F.write_aedat31, 128, 128, 1 << 30, dict(packet_size=64)),
        ("w_old.dat", lambda p, e: F.write_dat(p, e, layout="old"), 304, 240, 1 << 30, {}),
        ("w_v2.dat", F.write_dat, 120, 100, 1 << 30, {}),
        ("w.evt2.raw", F.write_evt2, 640, 480, 1 << 33, dict(sensor_size=(640, 480))),
        ("w.evt21.raw", F.write_evt21, 1280, 720, 1 << 33, dict(sensor_size=(1280, 720))),
        ("w_legacy.evt21.raw", lambda p, e: F.write_evt21(p, e, layout="legacy", sensor_size=(320, 320)),
         320, 320, 1 << 33, {}),
        ("w.evt3.raw", F.write_evt3, 1280, 720, 1 << 26, dict(sensor_size=(1280, 720))),
        ("w.mat", F.write_asl_mat, 240, 180, 1 << 30, {}),
    ):
        p = tmp / name
        writer(p, ev(600, W, H, t_max), **kw)
        out.append((p, (W, H), None))
    a = ev(300, 128, 128, 1 << 20)  # DVS-Lip style structured .npy and ES-ImageNet style pos/neg .npz
    p = tmp / "w_lip.npy"
    np.save(p, a, allow_pickle=False)
    out.append((p, (128, 128), None))
    p = tmp / "w_esimagenet.npz"
    np.savez(p, pos=np.stack([a["y"], a["x"], a["t"]], 1)[:150], neg=np.stack([a["y"], a["x"], a["t"]], 1)[150:])
    out.append((p, (128, 128), None))
    recs = [ev(40, 700, 1, 900_000) for _ in range(3)]
    for r in recs:
        r["y"], r["p"] = 0, 1
    p = tmp / "w.h5"
    F.write_shd(p, recs, [1, 2, 3])
    out.append((p, (700, 1), 1))
    return out


def _header_end(data: bytes) -> int:
    for prefix in (b"#", b"%"):
        if data.startswith(prefix):
            end = F.skip_lines(data, prefix)
            return end + 2 if prefix == b"%" and b"evt" not in data[:end].lower() else end
    return 0


def _mutate(data: bytes, kind: str, rng) -> bytes:
    n = len(data)
    head = _header_end(data)
    if kind == "truncate":
        return data[:int(rng.integers(0, n))] if n else data
    if kind == "bitflip":
        b = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            if n:
                i = int(rng.integers(0, n))
                b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == "random_body":
        size = min(n - head, 1 << 16) if n > head else int(rng.integers(0, 4096))
        return data[:head] + rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    # header edits: swap a version/geometry token for another, or delete a header line
    text = data[:head]
    edits = [(b"2.0", b"2.1"), (b"3.0", b"2.1"), (b"2.1", b"3.0"), (b"Version 2", b"Version 1"),
             (b"DVS128", b"DAVIS346"), (b"#!AER-DAT2.0", b"#!AER-DAT3.1"), (b"#!AER-DAT3.1", b"#!AER-DAT2.0"),
             (b"geometry", b"geometri"), (b"EVT21", b"EVT2"), (b"% evt", b"% evt 9")]
    rng.shuffle(edits)
    for old, new in edits:
        if old in text:
            return text.replace(old, new, 1) + data[head:]
    lines = text.splitlines(keepends=True)
    if len(lines) > 1:
        del lines[int(rng.integers(0, len(lines)))]
        return b"".join(lines) + data[head:]
    return bytes(rng.integers(0, 256, 64, dtype=np.uint8)) + data


def _run(jobs, timeout=HANG_S):
    """Decode every job in a worker process; restart it after a crash or a hang, blaming that job.
    Jobs go through a file (a pipe in both directions would deadlock once both buffers fill)."""
    import selectors
    import tempfile

    results, pending = {}, list(jobs)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    jobs_file = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
    jobs_file.close()
    while pending:
        Path(jobs_file.name).write_text("".join(json.dumps(j) + "\n" for j in pending))
        proc = subprocess.Popen([sys.executable, "-c", _WORKER, jobs_file.name], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        current, buf = None, b""
        fd = proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        while True:
            if not sel.select(timeout):
                proc.kill()
                results[current] = {"outcome": f"hang (> {timeout:.0f} s)"}
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                rc = proc.wait()
                if current is not None and current not in results:
                    results[current] = {"outcome": f"crash (worker exit {rc})"}
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = json.loads(line)
                if "start" in msg:
                    current = msg["start"]
                else:
                    results[msg["id"]] = msg
        proc.wait()
        sel.close()
        proc.stdout.close()
        pending = [j for j in pending if j["id"] not in results]
    os.unlink(jobs_file.name)
    return results


@pytest.mark.slow
def test_mutated_event_files_give_named_errors_or_valid_events(tmp_path):
    rng = np.random.default_rng(SEED)
    sources = [(DATA / name, sensor, None) for name, sensor in REAL.items() if (DATA / name).is_file()]
    sources += _written_sources(tmp_path, rng)
    try:
        import aedat  # noqa: F401
    except ImportError:
        sources = [s for s in sources if s[0].suffix != ".aedat4"]
    jobs, meta = [], {}
    kinds = ("truncate", "bitflip", "random_body", "header_edit")
    for src, sensor, index in sources:
        data = src.read_bytes()
        limit = sensor or {".raw": (2048, 2048), ".dat": (16384, 16384)}.get(src.suffix, (32768, 32768))
        n_mut = max(4, N_MUT // 3) if src.suffix == ".aedat4" else N_MUT  # each aedat4 decode is a process
        for k in range(n_mut):
            kind = kinds[k % len(kinds)]
            mutant = _mutate(data, kind, rng)
            p = tmp_path / f"m{len(jobs):04d}_{kind}_{src.name}"
            p.write_bytes(mutant)
            jid = len(jobs)
            jobs.append({"id": jid, "path": str(p), "sensor": list(sensor) if sensor else None,
                         "limit": list(limit), "index": index})
            meta[jid] = (src.name, kind)
    assert len(jobs) >= 10 * len(kinds)
    results = _run(jobs)
    summary = {}
    failures = []
    for jid, r in sorted(results.items()):
        name, kind = meta[jid]
        summary.setdefault(kind, {}).setdefault(r["outcome"], 0)
        summary[kind][r["outcome"]] += 1
        if r["outcome"] not in ("events", "named error"):
            failures.append(f"{jobs[jid]['path']} (from {name}, {kind}): {r['outcome']} {r.get('msg', '')}")
    print(f"\nfuzz seed {SEED}: {len(jobs)} mutants of {len(sources)} files: {json.dumps(summary, sort_keys=True)}")
    assert not failures, "\n".join(failures)
    named = sum(v for s in summary.values() for o, v in s.items() if o == "named error")
    assert named > len(jobs) // 4  # the mutations really reach the error paths


def test_harness_reports_crashes_hangs_and_uncaught_errors(tmp_path, monkeypatch):
    """The harness itself: a worker that dies, hangs or raises a non-named error is blamed on its job."""
    global _WORKER
    fake = textwrap.dedent(r"""
        import json, os, sys, time
        for line in open(sys.argv[1]):
            job = json.loads(line)
            print(json.dumps({"start": job["id"]}), flush=True)
            if job["path"] == "crash": os._exit(3)
            if job["path"] == "hang": time.sleep(60)
            outcome = "uncaught IndexError" if job["path"] == "index" else "events"
            print(json.dumps({"id": job["id"], "outcome": outcome}), flush=True)
    """)
    monkeypatch.setattr(sys.modules[__name__], "_WORKER", fake)
    jobs = [{"id": i, "path": p} for i, p in enumerate(["ok", "crash", "ok", "hang", "index", "ok"])]
    res = _run(jobs, timeout=2.0)
    assert [res[i]["outcome"] for i in range(6)] == ["events", "crash (worker exit 3)", "events",
                                                     "hang (> 2 s)", "uncaught IndexError", "events"]
