"""N-MNIST (SpikingJelly's ``spikingjelly.datasets.n_mnist``): 10 digits, 34x34 ATIS, Train.zip 60000 /
Test.zip 10000 recordings.  Events as stored (p = 1 ON, µs from the start of the saccades)."""
from __future__ import annotations

from pathlib import Path

from ._archives import Resource
from ._helpers import SJ_SOURCE, TrainTestSplit, chunks, stem
from .formats import read_events

__all__ = ["NMNIST"]


class NMNIST(TrainTestSplit):

    @classmethod
    def get_H_W(cls):
        return (34, 34)

    @classmethod
    def resource_url_md5(cls) -> list:
        url = "https://www.garrickorchard.com/datasets/n-mnist (" + SJ_SOURCE.format("n_mnist.py") + ")"
        return [Resource("Train.zip", url, "20959b8e626244a1b502305a9e6e2031"),
                Resource("Test.zip", url, "69ca8762b2fe404d9b9bad1103e97832")]

    @classmethod
    def _raw_jobs(cls, extract_root: Path):
        items = []
        for f in sorted(Path(extract_root).rglob("*.bin")):
            parts = [p.lower() for p in f.relative_to(extract_root).parts]
            split = "train" if "train" in parts else ("test" if "test" in parts else None)
            if split is not None and f.parent.name.isdigit():
                items.append((str(f), f"{split}/{f.parent.name}/{stem(f)}"))
        return chunks(items, 256)

    @classmethod
    def _decode_job(cls, job):
        return [(rel, read_events(f, "atis_bin", sensor_size=(34, 34), strict=False)) for f, rel in job]
