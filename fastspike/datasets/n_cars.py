"""N-CARS (fastspike only; not in SpikingJelly): 2 classes (background, cars), crops of at most 120x100,
DAT v2 files, events as stored.  Published split n-cars_train (15422) / n-cars_test (8607) (counts not
verified here).  md5 from tonic 1.7.0."""
from __future__ import annotations

from pathlib import Path

from ._archives import Resource, extract_nested
from ._helpers import TrainTestSplit, chunks, stem
from .formats import read_events

__all__ = ["NCARS"]


class NCARS(TrainTestSplit):

    @classmethod
    def get_H_W(cls):
        return (100, 120)

    @classmethod
    def resource_url_md5(cls) -> list:
        url = "http://www.prophesee.ai/resources/Prophesee_Dataset_n_cars.zip (md5 from tonic 1.7.0)"
        return [Resource("Prophesee_Dataset_n_cars.zip", url, "553ce464d6e5e617b3c21ce27c19368e")]

    def extract_downloaded_files(self, download_root, extract_root):
        extract_nested(Path(download_root) / "Prophesee_Dataset_n_cars.zip", extract_root)

    @classmethod
    def _raw_jobs(cls, extract_root):
        items = []
        for f in sorted(Path(extract_root).rglob("*.dat")):
            parts = [p.lower() for p in f.relative_to(extract_root).parts]
            split = next((s for s in ("train", "test") if any(s in p for p in parts)), None)
            cls_ = [c for c in ("background", "cars") if c in parts]
            if split is None or not cls_:
                raise ValueError(f"{f}: cannot tell split/class from its path")
            items.append((str(f), f"{split}/{cls_[0]}/{stem(f)}"))
        return chunks(items, 256)

    @classmethod
    def _decode_job(cls, job):
        return [(rel, read_events(f, "dat", sensor_size=(120, 100), strict=False)) for f, rel in job]
