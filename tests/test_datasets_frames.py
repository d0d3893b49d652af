"""Event-to-frame integration against a plain reference loop (SpikingJelly's split rules), and the
event transforms."""
import math

import numpy as np
import pytest
import torch

from fastspike.datasets import (make_events, pad_sequence_collate, padded_sequence_mask, split_indices,
                                to_frames)
from fastspike.datasets import transforms as T
from fastspike.ops.events import cpu as events_cpu

BACKENDS = ["numpy"] + (["cpp"] if events_cpu.available() else [])


def _events(n, W=7, H=5, t_max=1000, seed=0, gaps=False):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    if gaps and n:  # a long silent stretch in the middle -> empty time windows
        t[n // 2:] += 10 * t_max
    return make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n))


def _ref_segments(t, split_by, T_):
    """Event index ranges per frame, written as a literal loop over windows and events."""
    N = len(t)
    segs = []
    if split_by == "number":
        di = N // T_
        for i in range(T_):
            segs.append((i * di, N if i == T_ - 1 else i * di + di))
    else:
        dt = (int(t[-1]) - int(t[0])) // T_ if N else 0
        for i in range(T_):
            lo = int(t[0]) + i * dt if N else 0
            hi = lo + dt
            members = [j for j in range(N) if lo <= t[j] < hi]
            if i == T_ - 1:  # the last window also takes everything after it
                members = [j for j in range(N) if t[j] >= lo]
            segs.append((members[0], members[-1] + 1) if members else (0, 0))
    return segs


def _ref_frames(ev, W, H, segs):
    out = np.zeros((len(segs), 2, H, W))
    for i, (a, b) in enumerate(segs):
        for j in range(a, b):
            out[i, int(ev["p"][j] != 0), int(ev["y"][j]), int(ev["x"][j])] += 1
    return out


def _ref_duration(ev, W, H, d):
    t = ev["t"].astype(np.int64) - int(ev["t"].min())
    F = max(1, math.ceil(int(t.max()) / d))
    out = np.zeros((F, 2, H, W))
    for j in range(len(t)):
        out[min(int(t[j]) // d, F - 1), int(ev["p"][j] != 0), int(ev["y"][j]), int(ev["x"][j])] += 1
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("n,T_,gaps", [(200, 4, False), (203, 7, True), (5, 9, False), (1, 3, False),
                                       (50, 1, False), (64, 16, True)])
def test_fixed_frames_number_matches_reference(split_by, n, T_, gaps, backend):
    ev = _events(n, seed=n + T_, gaps=gaps)
    segs = _ref_segments(ev["t"], split_by, T_)
    ref = _ref_frames(ev, 7, 5, segs)
    out = to_frames(ev, (7, 5), frames_number=T_, split_by=split_by, backend=backend)
    assert out.shape == (T_, 2, 5, 7) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)
    assert out.sum() == n
    j_l, j_r = split_indices(ev["t"], split_by, T_)
    nonempty = [(a, b) for a, b in segs if b > a]
    assert [(int(a), int(b)) for a, b in zip(j_l, j_r) if b > a] == nonempty


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_split_has_empty_windows_and_T_larger_than_events(backend):
    ev = _events(10, gaps=True)
    out = to_frames(ev, (7, 5), frames_number=8, split_by="time", backend=backend)
    per_frame = out.sum((1, 2, 3))
    assert (per_frame == 0).any() and per_frame.sum() == 10
    out = to_frames(ev[:3], (7, 5), frames_number=12, split_by="number", backend=backend)  # T > N
    assert out[:-1].sum() == 0 and out[-1].sum() == 3
    same_t = make_events([5, 5, 5], [0, 1, 2], [0, 0, 0], [1, 0, 1])  # dt == 0
    out = to_frames(same_t, (7, 5), frames_number=4, split_by="time", backend=backend)
    assert out[:-1].sum() == 0 and out[-1].sum() == 3
    empty = make_events(np.zeros(0, int), [], [], [])
    for sb in ("number", "time"):
        assert to_frames(empty, (7, 5), frames_number=3, split_by=sb, backend=backend).shape == (3, 2, 5, 7)
    assert to_frames(empty, (7, 5), duration=10, backend=backend).shape == (0, 2, 5, 7)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,d", [(300, 37), (300, 1000), (40, 1), (1, 5)])
def test_fixed_duration_matches_reference(n, d, backend):
    ev = _events(n, seed=d, gaps=True)
    np.testing.assert_array_equal(to_frames(ev, (7, 5), duration=d, backend=backend), _ref_duration(ev, 7, 5, d))


@pytest.mark.parametrize("backend", BACKENDS)
def test_unsorted_strided_and_out_of_range_inputs(backend):
    ev = _events(500, seed=11)
    shuffled = ev[np.random.default_rng(0).permutation(500)]
    for kw in (dict(frames_number=6, split_by="time"), dict(duration=90), dict(frames_number=5)):
        np.testing.assert_array_equal(to_frames(shuffled, (7, 5), backend=backend, **kw),
                                      to_frames(shuffled, (7, 5), backend="numpy", **kw))
        sub = ev[::3]  # a strided view
        np.testing.assert_array_equal(to_frames(sub, (7, 5), backend=backend, **kw),
                                      to_frames(sub.copy(), (7, 5), backend="numpy", **kw))
    bad = ev.copy()
    bad["y"][123] = 5
    with pytest.raises(ValueError, match="event 123 has y=5, outside"):
        to_frames(bad, (7, 5), frames_number=3, backend=backend)


def test_duration_exact_multiple_goes_to_last_frame():
    ev = make_events([100, 110, 120], [0, 1, 2], [0, 0, 0], [1, 1, 1])  # t_max - t_min == 2 * 10
    out = to_frames(ev, (3, 1), duration=10)
    assert out.shape[0] == 2 and out[1].sum() == 2


def test_tonic_style_and_dict_inputs_and_one_dimensional_sensor():
    ev = _events(100, seed=3)
    tonic_style = np.zeros(100, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
    for k in "xytp":
        tonic_style[k] = ev[k]
    ref = to_frames(ev, (7, 5), frames_number=4)
    np.testing.assert_array_equal(to_frames(tonic_style, (7, 5, 2), frames_number=4), ref)
    np.testing.assert_array_equal(to_frames({k: ev[k] for k in "txyp"}, (7, 5), frames_number=4), ref)
    np.testing.assert_array_equal(to_frames(ev, (7, 5, 1), frames_number=4), ref.sum(1, keepdims=True))
    np.testing.assert_array_equal(T.ToFrames((7, 5, 2), frames_number=4)(tonic_style), ref)
    one_d = to_frames({"t": ev["t"], "x": ev["x"]}, (7,), frames_number=4)
    np.testing.assert_array_equal(one_d, ref.sum((1, 2)))


def test_against_tonic_to_frame_event_bins():
    tonic_tr = pytest.importorskip("tonic.transforms")
    ev = _events(4000, W=16, H=16, seed=9)
    ref = tonic_tr.ToFrame(sensor_size=(16, 16, 2), n_event_bins=8)(ev)  # 4000 / 8 divides exactly
    np.testing.assert_array_equal(to_frames(ev, (16, 16), frames_number=8), ref)


def test_bad_arguments():
    ev = _events(10)
    with pytest.raises(ValueError, match="exactly one"):
        to_frames(ev, (7, 5))
    with pytest.raises(ValueError, match="split_by"):
        to_frames(ev, (7, 5), frames_number=2, split_by="bogus")
    with pytest.raises(ValueError, match="frames_number"):
        to_frames(ev, (7, 5), frames_number=0)
    with pytest.raises(ValueError, match="x=.*outside"):
        to_frames(ev, (3, 5), frames_number=2)
    with pytest.raises(ValueError, match="y=.*outside"):
        to_frames(ev, (7, 2), frames_number=2)
    with pytest.raises(TypeError, match="structured"):
        to_frames(np.zeros((3, 4)), (7, 5), frames_number=2)
    with pytest.raises(ValueError, match="duration"):
        to_frames(ev, (7, 5), duration=0)


def test_pad_collate_and_mask():
    batch = [(np.ones((3, 2)), 1), (np.ones((5, 2)), 0)]
    x, y, lens = pad_sequence_collate(batch)
    assert x.shape == (2, 5, 2) and y.tolist() == [1, 0] and lens.tolist() == [3, 5]
    assert x[0, 3:].abs().sum() == 0
    m = padded_sequence_mask(lens)
    assert m.shape == (5, 2) and m[:, 0].tolist() == [True] * 3 + [False] * 2 and bool(m[:, 1].all())
    assert padded_sequence_mask(torch.tensor([1]), T=3).tolist() == [[True], [False], [False]]


# ------------------------------------------------------------------------------------------ transforms
def _denoise_ref(ev, ft):
    mem = {}
    keep = []
    for e in ev:
        x, y, t = int(e["x"]), int(e["y"]), int(e["t"])
        ok = any(mem.get((x + dx, y + dy), -10**18) + ft > t for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)))
        mem[(x, y)] = t
        keep.append(ok)
    return ev[np.array(keep, bool)]


def test_denoise_matches_reference_loop_and_tonic():
    ev = _events(600, W=12, H=9, t_max=50000, seed=4)
    out = T.Denoise(filter_time=2000)(ev)
    ref = _denoise_ref(ev, 2000)
    assert 0 < out.size < ev.size
    np.testing.assert_array_equal(out, ref)
    tonic_dn = pytest.importorskip("tonic.functional")
    late = ev.copy()
    late["t"] += 2000  # tonic keeps isolated events with t < filter_time (its memory starts there)
    np.testing.assert_array_equal(T.denoise(late, 2000), tonic_dn.denoise_numpy(late.copy(), filter_time=2000))


def test_spatial_and_temporal_transforms():
    ev = _events(400, W=20, H=10, t_max=10000, seed=5)
    ds = T.SpatialDownsample(4)(ev)
    np.testing.assert_array_equal(ds["x"], ev["x"] // 4)
    np.testing.assert_array_equal(ds["y"], ev["y"] // 4)
    fl = T.RandomFlip((20, 10), p_lr=1.0, p_ud=1.0, seed=0)(ev)
    np.testing.assert_array_equal(fl["x"], 19 - ev["x"])
    np.testing.assert_array_equal(fl["y"], 9 - ev["y"])
    assert np.array_equal(T.RandomFlip((20, 10), p_lr=0.0, seed=0)(ev), ev)
    cr = T.TimeCrop(2000, 5000)(ev)
    assert cr.size and cr["t"].min() >= 2000 and cr["t"].max() < 5000
    assert cr.size == int(((ev["t"] >= 2000) & (ev["t"] < 5000)).sum())
    rc = T.RandomTimeCrop(1000, seed=1)(ev)
    assert rc["t"].max() - rc["t"].min() < 1000 and rc.size > 0
    jt = T.TimeJitter(std=50, seed=2)(ev)
    assert jt.size <= ev.size and np.all(np.diff(jt["t"]) >= 0) and not np.array_equal(jt["t"], ev["t"])
    assert abs(np.mean(jt["t"]) - np.mean(ev["t"])) < 50
    both = T.Compose([T.SpatialDownsample(2), T.ToFrames((10, 5), frames_number=3)])(ev)
    assert both.shape == (3, 2, 5, 10) and both.sum() == ev.size
    assert ev["x"].max() == 19  # transforms never modify their input


@pytest.mark.skipif("cpp" not in BACKENDS, reason="C++ extension without events_integrate")
def test_cpp_thread_team_matches_numpy(monkeypatch):
    monkeypatch.setattr(events_cpu, "PARALLEL_MIN_EVENTS", 0)  # force the OpenMP team on small inputs
    old = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        ev = _events(5000, W=33, H=17, seed=21, gaps=True)
        for kw in (dict(frames_number=7, split_by="time"), dict(frames_number=2), dict(duration=333)):
            np.testing.assert_array_equal(to_frames(ev, (33, 17), backend="cpp", **kw),
                                          to_frames(ev, (33, 17), backend="numpy", **kw))
        bad = ev.copy()
        bad["x"][[4000, 4001]] = -1
        bad["x"][1234] = 33
        with pytest.raises(ValueError, match="event 1234 has x=33"):  # the first bad one, across threads
            to_frames(bad, (33, 17), frames_number=7, backend="cpp")
    finally:
        torch.set_num_threads(old)


def test_transforms_take_the_dicts_dataset_items_are():
    from fastspike.datasets import transforms as Tr

    ev = make_events(np.arange(10) * 100, np.arange(10) % 5, np.arange(10) % 3, np.arange(10) % 2)
    d = {k: ev[k].astype(np.int64) for k in "txyp"}
    for tr in (Tr.TimeCrop(200, 700), Tr.SpatialDownsample(2), Tr.RandomFlip((5, 3), 1.0, 1.0, seed=0),
               Tr.Denoise(150), Tr.TimeJitter(30, seed=1), Tr.RandomTimeCrop(400, seed=2)):
        a = tr(ev) if not isinstance(tr, (Tr.TimeJitter, Tr.RandomTimeCrop, Tr.RandomFlip)) else None
        out = tr(d)
        assert isinstance(out, dict) and set(out) == set("txyp") and out["t"].dtype == np.int64
        if a is not None:
            for k in "txyp":
                np.testing.assert_array_equal(out[k], a[k])
