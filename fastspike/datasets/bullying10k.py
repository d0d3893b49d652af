"""Bullying10K (SpikingJelly's ``spikingjelly.datasets.bullying10k``): 10 actions, 346x260 DAVIS346,
one zip per action (figshare) of ``.npy`` object arrays of ``(t, x, y, p)`` rows.  Those files need
unpickling; fastspike reads them with an unpickler that builds numpy arrays only (see
``formats.numpy_files``).  Split as the original work: every fifth file (0, 5, 10, ...) is test.  The
file list is sorted first (SpikingJelly uses the directory listing order, which depends on the file
system, so its split is not reproducible across machines)."""
from __future__ import annotations

import os
from pathlib import Path

from ._archives import Resource
from ._helpers import TrainTestSplit, chunks, decode_numpy_job, stem

__all__ = ["BULLYING10K_CATEGORY_LABEL", "Bullying10kClassification"]

BULLYING10K_CATEGORY_LABEL = {"handshake": 0, "slapping": 1, "punching": 2, "walking": 3, "fingerguess": 4,
                              "strangling": 5, "greeting": 6, "pushing": 7, "hairgrabs": 8, "kicking": 9}
_FILES = (("handshake", "41268834", "681d70f499e736a1e805305284ddc425"),
          ("slapping", "41247021", "84b41d6805958f9f62f425223916ffc2"),
          ("punching", "41263314", "40954f480ab210099d448b7b88fc4719"),
          ("walking", "41247024", "56e4cac9c0814ce701c3b2292c15b6a9"),
          ("fingerguess", "41253057", "f83114e5b4f0ea57cac86fb080c7e4d7"),
          ("strangling", "41261904", "8185ecd6f3147e9b609d22f06270aa86"),
          ("greeting", "41268792", "4a763fad728b04c8356db8544f1121fe"),
          ("pushing", "41268951", "7986c74ade7149a98672120a89b13ba8"),
          ("hairgrabs", "41277855", "a9cf690ed0a3305da4a4b8e110f64db1"),
          ("kicking", "41278008", "6c3218f977de4ac29c84a10b17779c33"))


class Bullying10kClassification(TrainTestSplit):

    @classmethod
    def get_H_W(cls):
        return (260, 346)

    @classmethod
    def resource_url_md5(cls) -> list:
        return [Resource(f"{c}.zip", f"https://figshare.com/ndownloader/files/{f}", m) for c, f, m in _FILES]

    @classmethod
    def downloadable(cls) -> bool:
        return True

    @classmethod
    def _class_dirs(cls, extract_root):
        return tuple(f"{s}/{c}" for s in ("train", "test") for c in range(10))

    @classmethod
    def _raw_jobs(cls, extract_root):
        extract_root = Path(extract_root)
        files = []
        for c in sorted(os.listdir(extract_root)):
            if c.endswith(".json") or c.startswith(".") or not (extract_root / c).is_dir():
                continue
            if c not in BULLYING10K_CATEGORY_LABEL:
                raise ValueError(f"{extract_root / c}: unknown Bullying10K category (expected one of "
                                 f"{sorted(BULLYING10K_CATEGORY_LABEL)})")
            for dirpath, dirs, names in sorted(os.walk(extract_root / c)):
                dirs.sort()
                files += [(Path(dirpath) / n, BULLYING10K_CATEGORY_LABEL[c]) for n in sorted(names)]
        return chunks([(str(f), f"{'test' if i % 5 == 0 else 'train'}/{label}/{stem(f)}")
                       for i, (f, label) in enumerate(files)])

    @classmethod
    def _decode_job(cls, job):
        return decode_numpy_job(job, (346, 260))
