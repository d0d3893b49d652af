"""``fastspike.datasets.NeuromorphicDatasetConfig`` (also ``fastspike.datasets.base``) against SpikingJelly 2.0.0's
``spikingjelly.datasets.base.NeuromorphicDatasetConfig``: the same frozen dataclass fields, order and defaults;
the arguments SpikingJelly accepts are accepted and those it rejects are rejected; and the builders take it as
their ``cfg`` where SpikingJelly's take theirs, giving the same directories and the same frames."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import fastspike.datasets as D
from fastspike.datasets import base

from test_datasets_sj_api import _spikingjelly_datasets

pytestmark = pytest.mark.peers


def _custom(events, H, W):
    return np.stack([np.bincount(events["y"] * W + events["x"], minlength=H * W).reshape(H, W)] * 2)[None]


# (kwargs, accepted by SpikingJelly)
CASES = [
    (dict(data_type="event"), True),
    (dict(data_type="frame", frames_number=4, split_by="number"), True),
    (dict(data_type="frame", frames_number=3, split_by="time"), True),
    (dict(data_type="frame", duration=1000), True),
    (dict(data_type="frame", custom_integrate_function=_custom, custom_integrated_frames_dir_name="cf"), True),
    (dict(data_type="event", frames_number=-1), True),  # event data ignores the frame arguments
    (dict(data_type="frames"), False),
    (dict(data_type="frame"), False),
    (dict(data_type="frame", frames_number=4, duration=10, split_by="number"), False),
    (dict(data_type="frame", frames_number=0, split_by="number"), False),
    (dict(data_type="frame", frames_number=4), False),
    (dict(data_type="frame", frames_number=4, split_by="space"), False),
    (dict(data_type="frame", duration=-5), False),
    (dict(data_type="frame", duration=0), False),
]


@pytest.fixture(scope="module")
def sj_base():
    mp = pytest.MonkeyPatch()
    try:
        yield _spikingjelly_datasets(mp).base
    finally:
        mp.undo()


def test_same_object_at_both_paths_and_same_fields(sj_base):
    assert D.NeuromorphicDatasetConfig is base.NeuromorphicDatasetConfig
    ours, ref = D.NeuromorphicDatasetConfig, sj_base.NeuromorphicDatasetConfig
    assert dataclasses.is_dataclass(ours)
    f_ours, f_ref = dataclasses.fields(ours), dataclasses.fields(ref)
    assert [f.name for f in f_ours] == [f.name for f in f_ref]
    assert [f.default for f in f_ours] == [f.default for f in f_ref]
    cfg = ours(Path("r"), True, "frame", 4, "number")  # positional order is SpikingJelly's
    assert (cfg.root, cfg.train, cfg.data_type, cfg.frames_number, cfg.split_by) == (Path("r"), True, "frame", 4,
                                                                                    "number")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.frames_number = 8
    assert cfg == ours(Path("r"), True, "frame", 4, "number") and hash(cfg) == hash(ours(Path("r"), True, "frame",
                                                                                         4, "number"))


@pytest.mark.parametrize("kwargs,accepted", CASES, ids=[str(i) for i in range(len(CASES))])
def test_accepts_what_spikingjelly_accepts(sj_base, kwargs, accepted):
    for cls in (sj_base.NeuromorphicDatasetConfig, D.NeuromorphicDatasetConfig):
        if accepted:
            cfg = cls(root=Path("root"), train=False, **kwargs)
            assert {k: getattr(cfg, k) for k in kwargs} == kwargs
        else:
            with pytest.raises(ValueError):
                cls(root=Path("root"), train=False, **kwargs)


def _event_tree(raw: Path, H: int, W: int):
    rng = np.random.default_rng(0)
    for split, cls_name, i in (("train", "a", 0), ("train", "b", 1), ("test", "a", 2)):
        d = raw / split / cls_name
        d.mkdir(parents=True, exist_ok=True)
        n = 300 + 50 * i
        np.savez(d / f"s{i}.npz", t=np.sort(rng.integers(0, 100_000, n)), x=rng.integers(0, W, n),
                 y=rng.integers(0, H, n), p=rng.integers(0, 2, n))


@pytest.mark.parametrize("kwargs,builder", [
    (dict(data_type="frame", frames_number=4, split_by="number"), "FrameFixedNumberBuilder"),
    (dict(data_type="frame", frames_number=3, split_by="time"), "FrameFixedNumberBuilder"),
    (dict(data_type="frame", duration=20_000), "FrameFixedDurationBuilder"),
    (dict(data_type="frame", custom_integrate_function=_custom, custom_integrated_frames_dir_name="cf"),
     "FrameCustomIntegrateBuilder"),
])
def test_builders_take_the_config_like_spikingjelly(sj_base, tmp_path, kwargs, builder):
    H, W = 6, 5
    results = []
    for name, mod in (("sj", sj_base), ("fs", base)):
        root = tmp_path / name
        raw = root / "events_np"
        _event_tree(raw, H, W)
        cfg = mod.NeuromorphicDatasetConfig(root=root, train=True, **kwargs)
        b = getattr(mod, builder)(cfg, raw, H, W)
        assert b.cfg is cfg and isinstance(b, mod.NeuromorphicDatasetBuilder)
        processed, loader = b.build()
        files = sorted(p.relative_to(processed) for p in Path(processed).rglob("*") if p.is_file())
        results.append((Path(processed).relative_to(root), files, [loader(Path(processed) / f) for f in files]))
    (dir_sj, files_sj, frames_sj), (dir_fs, files_fs, frames_fs) = results
    assert dir_fs == dir_sj and len(files_sj) == 3  # every recording of both splits
    assert [f.with_suffix("") for f in files_fs] == [f.with_suffix("") for f in files_sj]
    for a, b in zip(frames_sj, frames_fs):
        assert np.asarray(b).sum() > 0
        np.testing.assert_array_equal(np.asarray(a, np.float32), b)


def test_event_builder_and_folder_keep_the_config(sj_base, tmp_path):
    raw = tmp_path / "events_np"
    _event_tree(raw, 4, 4)
    cfg = D.NeuromorphicDatasetConfig(root=tmp_path, train=None)
    processed, loader = base.EventBuilder(cfg, raw).build()
    ref_processed, ref_loader = sj_base.EventBuilder(sj_base.NeuromorphicDatasetConfig(root=tmp_path, train=None),
                                                     raw).build()
    assert Path(processed) == Path(ref_processed) == raw
    f = raw / "train" / "a" / "s0.npz"
    a, b = ref_loader(f), loader(f)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
