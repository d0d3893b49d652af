"""CIFAR10-DVS (SpikingJelly's ``spikingjelly.datasets.cifar10_dvs``): 10 classes x 1000 recordings,
128x128 jAER AEDAT 2.0 (figshare release).  Convention (SpikingJelly's): ``x = 127 - yraw``,
``y = 127 - xraw``, ``p = 1 - praw`` from the DVS128 raw address.

No official split: like SpikingJelly, ``CIFAR10DVS`` gives all 10000 samples; fastspike's keyword-only
``train=True/False`` picks a seeded class-stratified 9:1 split.  ``CIFAR10DVSTEBNSplit`` is SpikingJelly's
TEBN split: recordings 0..99 of each class are the test set, 100..999 the training set.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ._archives import Resource, extract_archive
from ._helpers import UnofficialSplit, chunks, require_train, stem
from .formats import make_events, read_events

__all__ = ["CIFAR10DVS_CLASS_NAMES", "CIFAR10DVS", "CIFAR10DVSTEBNSplit"]

CIFAR10DVS_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# jAER DAVIS address bits (SpikingJelly exports them; fastspike's 'davis' AEDAT 2.0 layout uses the same)
EVT_DVS = 0
EVT_APS = 1
y_mask = 0x7FC00000
y_shift = 22
x_mask = 0x003FF000
x_shift = 12
polarity_mask = 0x800
polarity_shift = 11
valid_mask = 0x80000000
valid_shift = 31

_MD5 = ("0afd5c4bf9ae06af762a77b180354fdd", "8438dfeba3bc970c94962d995b1b9bdd", "a9c207c91c55b9dc2002dc21c684d785",
        "52c63c677c2b15fa5146a8daf4d56687", "b6bf21f6c04d21ba4e23fc3e36c8a4a3", "f379ebdf6703d16e0a690782e62639c3",
        "cad6ed91214b1c7388a5f6ee56d08803", "e7cbbf77bec584ffbf913f00e682782a", "41c7bd7d6b251be82557c6cce9a7d5c9",
        "89f3922fd147d9aeff89e76a2b0b70a7")
_FIGSHARE = ("7712788", "7712791", "7712794", "7712812", "7712815", "7712818", "7712842", "7712851", "7712836",
             "7712839")


class CIFAR10DVS(UnofficialSplit):
    classes_names = CIFAR10DVS_CLASS_NAMES

    @classmethod
    def get_H_W(cls):
        return (128, 128)

    @classmethod
    def resource_url_md5(cls) -> list:
        return [Resource(f"{c}.zip", f"https://ndownloader.figshare.com/files/{f}", m)
                for c, m, f in zip(CIFAR10DVS_CLASS_NAMES, _MD5, _FIGSHARE)]

    @classmethod
    def downloadable(cls) -> bool:
        return True

    def extract_downloaded_files(self, download_root, extract_root):
        for c in CIFAR10DVS_CLASS_NAMES:  # each zip into its own class folder (whatever its inner layout)
            extract_archive(Path(download_root) / f"{c}.zip", Path(extract_root) / c)

    @classmethod
    def _raw_jobs(cls, extract_root):
        return chunks([(str(f), f"{c}/{stem(f)}") for c in CIFAR10DVS_CLASS_NAMES
                       for f in sorted((Path(extract_root) / c).rglob("*.aedat"))])

    @staticmethod
    def convert(ev):
        """Raw DVS128 fields -> SpikingJelly's CIFAR10-DVS orientation and polarity."""
        return make_events(ev["t"], 127 - ev["y"].astype(np.int64), 127 - ev["x"].astype(np.int64),
                           1 - ev["p"].astype(np.int64))

    @classmethod
    def _decode_job(cls, job):
        return [(rel, cls.convert(read_events(f, "aedat2", layout="dvs128", strict=False))) for f, rel in job]


class CIFAR10DVSTEBNSplit(CIFAR10DVS):
    """SpikingJelly's TEBN split: ``cifar10_<class>_<i>`` with i < 100 is test, the rest train."""

    def __init__(self, root: str, train: bool = True, data_type: str = "event", frames_number: int = None,
                 split_by: str = None, duration: int = None, custom_integrate_function: Callable = None,
                 custom_integrated_frames_dir_name: str = None, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, **kwargs):
        require_train("CIFAR10DVSTEBNSplit", train)
        self.tebn_train = train
        super().__init__(root, data_type, frames_number, split_by, duration, custom_integrate_function,
                         custom_integrated_frames_dir_name, transform, target_transform, **kwargs)

    def _select(self, samples):
        def index(path):
            m = re.search(r"_(\d+)(?:_\d+)?\.np[yz]$" if self.cfg.duration is not None else r"_(\d+)\.np[yz]$", path)
            return int(m.group(1)) if m else -1
        keep = [(p, c) for p, c in samples if (index(p) >= 100) == self.tebn_train and index(p) >= 0]
        return keep
