"""N-Caltech101 (SpikingJelly's ``spikingjelly.datasets.n_caltech101``): 101 class folders (100 objects
+ BACKGROUND_Google; labels in sorted folder order), ATIS ``.bin``, sensor at most 240x180.  No official
split (fastspike's keyword-only ``train=`` gives a seeded stratified one)."""
from __future__ import annotations

from pathlib import Path

from ._archives import Resource
from ._helpers import SJ_SOURCE, UnofficialSplit, chunks, stem
from .formats import read_events

__all__ = ["NCaltech101"]


class NCaltech101(UnofficialSplit):
    @classmethod
    def get_H_W(cls):
        return (180, 240)

    @classmethod
    def resource_url_md5(cls) -> list:
        url = "https://www.garrickorchard.com/datasets/n-caltech101 (" + SJ_SOURCE.format("n_caltech101.py") + ")"
        return [Resource("Caltech101.zip", url, "66201824eabb0239c7ab992480b50ba3"),
                Resource("Caltech101_annotations.zip", url, "25e64cea645291e368db1e70f214988e", optional=True),
                Resource("ReadMe(Caltech101)-SINAPSE-G.txt", url, "d464b81684e0af3b5773555eb1d5b95c", optional=True),
                Resource("ReadMe(Caltech101).txt", url, "33632a7a5c46074c70509f960d0dd5e5", optional=True)]

    @classmethod
    def _raw_jobs(cls, extract_root):
        return chunks([(str(f), f"{f.parent.name}/{stem(f)}") for f in sorted(Path(extract_root).rglob("*.bin"))])

    @classmethod
    def _decode_job(cls, job):
        return [(rel, read_events(f, "atis_bin", sensor_size=(240, 180), strict=False)) for f, rel in job]
