"""DVS-Lip (SpikingJelly's ``spikingjelly.datasets.dvs_lip``): event-based lip reading, 128x128, released
as ``DVS-Lip/{train,test}/<word>/<n>.npy`` structured arrays (t, x, y, p), checked on load.  Not
downloadable: get ``DVS-Lip.zip`` from https://sites.google.com/view/event-based-lipreading ."""
from __future__ import annotations

from pathlib import Path

from ._archives import Resource
from ._helpers import TrainTestSplit, chunks, decode_numpy_job, stem

__all__ = ["DVSLip"]


class DVSLip(TrainTestSplit):

    @classmethod
    def get_H_W(cls):
        return (128, 128)

    @classmethod
    def resource_url_md5(cls) -> list:
        return [Resource("DVS-Lip.zip", "https://sites.google.com/view/event-based-lipreading",
                         "2dcb959255122d4cdeb6094ca282494b")]

    @classmethod
    def _raw_jobs(cls, extract_root):
        items = []
        for split in ("train", "test"):
            base = Path(extract_root) / "DVS-Lip" / split
            for f in sorted(base.glob("*/*.np[yz]")):
                items.append((str(f), f"{split}/{f.parent.name}/{stem(f)}"))
        return chunks(items)

    @classmethod
    def _decode_job(cls, job):
        return decode_numpy_job(job, (128, 128))
