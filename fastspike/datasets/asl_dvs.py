"""ASL-DVS (SpikingJelly's ``spikingjelly.datasets.asl_dvs``): 24 letters (a-y without j), 240x180
DAVIS240C, one ``.mat`` per recording.  Convention (SpikingJelly's): ``x = 239 - x``, ``y = 179 - y``.
The Dropbox zip is repacked on download, so no stable md5 exists (SpikingJelly disables it too); the
link is reported expired (mirror: OpenI ``OpenI/ASLDVS``).  No official split."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._archives import Resource, extract_nested
from ._helpers import UnofficialSplit, chunks, stem
from .formats import make_events, read_asl_mats

__all__ = ["ASLDVS"]

LETTERS = tuple("abcdefghiklmnopqrstuvwxy")


class ASLDVS(UnofficialSplit):
    @classmethod
    def get_H_W(cls):
        return (180, 240)

    @classmethod
    def resource_url_md5(cls) -> list:
        return [Resource("ICCV2019_DVS_dataset.zip", "https://www.dropbox.com/sh/ibq0jsicatn7l6r/"
                         "AACNrNELV56rs1YInMWUs9CAa (reported expired; mirror: OpenI/ASLDVS)", None)]

    def extract_downloaded_files(self, download_root, extract_root):
        extract_nested(Path(download_root) / "ICCV2019_DVS_dataset.zip", extract_root)

    @classmethod
    def _raw_jobs(cls, extract_root):
        items = []
        for f in sorted(Path(extract_root).rglob("*.mat")):
            c = f.parent.name.lower() if f.parent.name.lower() in LETTERS else f.name[0].lower()
            if c not in LETTERS:
                raise ValueError(f"{f}: cannot tell its letter from the folder or file name")
            items.append((str(f), f"{c}/{stem(f)}"))
        return chunks(items)

    @classmethod
    def _decode_job(cls, job):
        out = []
        for (f, rel), ev in zip(job, read_asl_mats([f for f, _ in job], strict=False)):
            out.append((rel, make_events(ev["t"], 239 - ev["x"].astype(np.int64), 179 - ev["y"].astype(np.int64),
                                         ev["p"])))
        return out
