"""Decode + integrate benchmark for fastspike.datasets against tonic.

10 million synthetic DVS128 events in a jAER AEDAT 2.0 file (CIFAR10-DVS's container), integrated into
16 frames split by time.  fastspike: ``read_events`` + ``to_frames``; tonic: its AEDAT 2.0 reader
(``tonic.io.read_dvs_128``'s steps) + ``tonic.transforms.ToFrame(n_time_bins=16)``.

    pytest bench/bench_datasets.py --benchmark-only -p no:cacheprovider    # pytest-benchmark tables
    python bench/bench_datasets.py                                           # events/s and ratios

``FASTSPIKE_BENCH_EVENTS`` changes the event count (default 10_000_000).
"""
import os
import sys
import tempfile
import time

import numpy as np
import pytest

from fastspike.datasets import make_events, read_events, to_frames
from fastspike.datasets.formats import write_aedat2

N = int(os.environ.get("FASTSPIKE_BENCH_EVENTS", 10_000_000))
T = 16
SENSOR = (128, 128)


def make_file(path, n=N, seed=0):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.integers(0, 3, n))  # ~1 event/µs, non-decreasing
    ev = make_events(t, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n))
    write_aedat2(path, ev)
    return ev


def fastspike_pipeline(path):
    return to_frames(read_events(path, "aedat2"), SENSOR, frames_number=T, split_by="time")


def tonic_pipeline(path):
    import tonic.io
    import tonic.transforms

    # tonic 1.7's read_dvs_128 unpacks read_aedat_header_from_file's 3-tuple into 2 names and fails,
    # so its body is spelled out here with tonic's own helpers
    version, start, _ = tonic.io.read_aedat_header_from_file(path)
    raw = tonic.io.get_aer_events_from_file(path, version, start)
    addr = raw["address"]
    ev = tonic.io.make_structured_array((addr >> 8) & 0x7F, (addr >> 1) & 0x7F, raw["timeStamp"], addr & 1)
    return tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_time_bins=T)(ev)


@pytest.fixture(scope="module")
def aedat_file():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "synthetic.aedat")
        ev = make_file(path)
        yield path, ev


def test_fastspike_decode_and_integrate(benchmark, aedat_file):
    path, ev = aedat_file
    frames = benchmark.pedantic(fastspike_pipeline, args=(path,), rounds=3, iterations=1)
    assert frames.shape == (T, 2, 128, 128) and frames.sum() == ev.size


def test_fastspike_decode_only(benchmark, aedat_file):
    path, ev = aedat_file
    assert benchmark.pedantic(read_events, args=(path,), rounds=3, iterations=1).size == ev.size


def test_fastspike_integrate_only(benchmark, aedat_file):
    _, ev = aedat_file
    benchmark.pedantic(to_frames, args=(ev, SENSOR), kwargs=dict(frames_number=T, split_by="time"),
                       rounds=3, iterations=1)


def test_tonic_decode_and_to_frame(benchmark, aedat_file):
    pytest.importorskip("tonic")
    path, ev = aedat_file
    frames = benchmark.pedantic(tonic_pipeline, args=(path,), rounds=2, iterations=1)
    assert frames.shape == (T, 2, 128, 128)


def test_tonic_to_frame_only(benchmark, aedat_file):
    tonic_transforms = pytest.importorskip("tonic.transforms")
    _, ev = aedat_file
    benchmark.pedantic(tonic_transforms.ToFrame(sensor_size=(128, 128, 2), n_time_bins=T), args=(ev,),
                       rounds=2, iterations=1)


def _best(fn, *args, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "synthetic.aedat")
        ev = make_file(path)
        rows = [("fastspike read_events + to_frames", _best(fastspike_pipeline, path)),
                ("fastspike read_events", _best(read_events, path)),
                ("fastspike to_frames", _best(lambda: to_frames(ev, SENSOR, frames_number=T, split_by="time")))]
        try:
            import tonic.transforms

            tf = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_time_bins=T)
            rows += [("tonic AEDAT2 reader + ToFrame", _best(tonic_pipeline, path)),
                     ("tonic ToFrame", _best(tf, ev))]
        except ImportError:
            pass
    print(f"{N:,} events, {T} frames, {os.cpu_count()} CPU(s), numpy {np.__version__}")
    for name, s in rows:
        print(f"{name:38s} {s * 1e3:9.1f} ms  {N / s / 1e6:8.1f} M events/s")
    d = dict(rows)
    if "tonic ToFrame" in d:
        print("speed-up, decode+integrate: "
              f"{d['tonic AEDAT2 reader + ToFrame'] / d['fastspike read_events + to_frames']:.2f}x;"
              f" integrate only: {d['tonic ToFrame'] / d['fastspike to_frames']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
