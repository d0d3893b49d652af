"""Small pieces the dataset modules share: job chunking, sample names, the seeded unofficial split."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from .base import NeuromorphicDatasetFolder

SJ_SOURCE = "SpikingJelly 2.0.0 spikingjelly/datasets/{}"


def chunks(items, n: int = 64):
    return [items[i:i + n] for i in range(0, len(items), n)]


def stem(path) -> str:
    return Path(path).name.rsplit(".", 1)[0]


def stratified_split(labels: Sequence[int], train: bool, ratio: float = 0.9, seed: int = 0) -> List[int]:
    """Indices of a class-stratified split: for each class (ascending), its samples (in the given
    order) are permuted by ``numpy.random.default_rng(seed)`` (one generator, classes in order) and the
    first ``ceil(n_class * ratio)`` go to train, the rest to test."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        idx = idx[rng.permutation(idx.size)]
        k = math.ceil(idx.size * ratio)
        out.extend((idx[:k] if train else idx[k:]).tolist())
    return sorted(out)


class UnofficialSplit(NeuromorphicDatasetFolder):
    """Datasets without a published split.  Like SpikingJelly they have no ``train`` positional
    argument; fastspike's keyword-only ``train=True/False`` selects a documented, seeded,
    class-stratified split (``train_ratio``, ``split_seed``); ``train=None`` gives every sample."""

    def __init__(self, root, data_type: str = "event", frames_number=None, split_by=None, duration=None,
                 custom_integrate_function=None, custom_integrated_frames_dir_name=None, transform=None,
                 target_transform=None, *, train: Optional[bool] = None, train_ratio: float = 0.9,
                 split_seed: int = 0, **kwargs):
        if train not in (True, False, None):
            raise ValueError(f"train must be True, False or None, got {train!r}")
        self.subset_train, self.train_ratio, self.split_seed = train, train_ratio, split_seed
        super().__init__(root, None, data_type, frames_number, split_by, duration, custom_integrate_function,
                         custom_integrated_frames_dir_name, transform, target_transform, **kwargs)

    def _select(self, samples):
        if self.subset_train is None:
            return samples
        idx = stratified_split([s[1] for s in samples], self.subset_train, self.train_ratio, self.split_seed)
        return [samples[i] for i in idx]


def require_train(cls_name: str, train) -> None:
    if train is None or train not in (True, False):
        raise ValueError(f"{cls_name}: train must be True or False, got {train!r}")


class TrainTestSplit(NeuromorphicDatasetFolder):
    """Datasets with a published train/test split: SpikingJelly's signature with ``train=True`` second
    (``None`` is refused, as in SpikingJelly)."""

    def __init__(self, root, train: bool = True, data_type: str = "event", frames_number: Optional[int] = None,
                 split_by: Optional[str] = None, duration: Optional[int] = None,
                 custom_integrate_function: Optional[Callable] = None,
                 custom_integrated_frames_dir_name: Optional[str] = None, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, **kwargs):
        require_train(type(self).__name__, train)
        super().__init__(root, train, data_type, frames_number, split_by, duration, custom_integrate_function,
                         custom_integrated_frames_dir_name, transform, target_transform, **kwargs)


def decode_numpy_job(job, sensor):
    """Decode (released numpy file, relative sample name) items (DVS-Lip, HARDVS, ES-ImageNet, Bullying10K)."""
    from .formats import read_events

    return [(rel, read_events(src, "numpy", sensor_size=sensor, strict=False)) for src, rel in job]
