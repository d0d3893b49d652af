"""MNIST-DVS (fastspike only; not in SpikingJelly): 10 digits, 128x128 DVS, jAER AEDAT 2.0, one
``scale`` (4, 8 or 16) at a time; ``mnist_<digit>_scale<NN>_<NNNN>.aedat`` inside
``grabbed_data<digit>.zip``.  No checksums are published.  Convention (jAER's DVS128 display):
``x = 127 - xraw``, ``y = yraw``, ``p = 1 - praw`` (1 = ON).  No official split."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ._archives import Resource
from ._helpers import UnofficialSplit, chunks, stem
from .formats import make_events, read_events

__all__ = ["MNISTDVS"]


class MNISTDVS(UnofficialSplit):
    def __init__(self, root, *args, scale: int = 4, **kwargs):
        if scale not in (4, 8, 16):
            raise ValueError(f"scale must be 4, 8 or 16, got {scale!r}")
        self.scale = scale
        super().__init__(root, *args, **kwargs)

    @classmethod
    def get_H_W(cls):
        return (128, 128)

    @classmethod
    def resource_url_md5(cls) -> list:
        return [Resource(f"grabbed_data{d}.zip", f"http://www2.imse-cnm.csic.es/caviar/MNIST_DVS/grabbed_data{d}.zip",
                         None) for d in range(10)]

    @classmethod
    def _raw_jobs(cls, extract_root):
        items = []
        for f in sorted(Path(extract_root).rglob("*.aedat")):
            m = re.match(r"mnist_(\d)_scale(\d+)_\d+", f.name)
            if m:  # every scale is decoded once; _select keeps one
                items.append((str(f), f"{m.group(1)}/{stem(f)}"))
        return chunks(items)

    def _select(self, samples):
        return super()._select([s for s in samples if f"_scale{self.scale:02d}_" in Path(s[0]).name])

    @classmethod
    def _decode_job(cls, job):
        out = []
        for f, rel in job:
            ev = read_events(f, "aedat2", layout="dvs128", strict=False)
            out.append((rel, make_events(ev["t"], 127 - ev["x"].astype(np.int64), ev["y"],
                                         1 - ev["p"].astype(np.int64))))
        return out
