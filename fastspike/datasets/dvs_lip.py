"""DVS-Lip (SpikingJelly's ``spikingjelly.datasets.dvs_lip``): event-based lip reading, 128x128, released
as ``DVS-Lip/{train,test}/<word>/<n>.npy`` structured arrays (t, x, y, p), checked on load.  Not
downloadable: get ``DVS-Lip.zip`` from https://sites.google.com/view/event-based-lipreading ."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ._archives import Resource
from ._helpers import chunks, require_train, stem
from ._released_numpy import decode_numpy_job
from .base import NeuromorphicDatasetFolder

__all__ = ["DVSLip"]


class DVSLip(NeuromorphicDatasetFolder):
    def __init__(self, root: str, train: bool = True, data_type: str = "event", frames_number: Optional[int] = None,
                 split_by: Optional[str] = None, duration: Optional[int] = None,
                 custom_integrate_function: Optional[Callable] = None,
                 custom_integrated_frames_dir_name: Optional[str] = None, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, **kwargs):
        require_train("DVSLip", train)
        super().__init__(root, train, data_type, frames_number, split_by, duration, custom_integrate_function,
                         custom_integrated_frames_dir_name, transform, target_transform, **kwargs)

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
