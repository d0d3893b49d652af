"""HARDVS (SpikingJelly's ``spikingjelly.datasets.hardvs``, the MINI release): 300 actions, 346x260,
``MINI_HARDVS_files.zip`` holding ``action_XXX.zip`` archives of ``<sample>.npz`` event files (keys t, x,
y, p), split by ``train_label.txt`` / ``val_label.txt`` / ``test_label.txt`` (lines ``action_XXX/<sample>
...``).  ``train_test_val`` picks 'train', 'val' or 'test'.  Not downloadable: the files are listed at
https://github.com/Event-AHU/HARDVS ."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Optional

from ._archives import Resource, extract_archive
from ._helpers import chunks, decode_numpy_job
from .base import NeuromorphicDatasetFolder

__all__ = ["HARDVS"]

N_ACTIONS = 300


class HARDVS(NeuromorphicDatasetFolder):
    def __init__(self, root: str, train_test_val: str = None, data_type: str = "event", frames_number: int = None,
                 split_by: str = None, duration: int = None, custom_integrate_function: Callable = None,
                 custom_integrated_frames_dir_name: str = None, transform: Optional[Callable] = None,
                 target_transform: Optional[Callable] = None, **kwargs):
        if train_test_val not in ("train", "val", "test"):
            raise ValueError(f"train_test_val must be 'train', 'val' or 'test', got {train_test_val!r}")
        self.train_test_val = train_test_val
        super().__init__(root, None, data_type, frames_number, split_by, duration, custom_integrate_function,
                         custom_integrated_frames_dir_name, transform, target_transform, **kwargs)

    def get_root_when_train_is_none(self, _root: Path):
        return _root / self.train_test_val

    @classmethod
    def get_H_W(cls):
        return (260, 346)

    @classmethod
    def resource_url_md5(cls) -> list:
        url = "https://github.com/Event-AHU/HARDVS"
        return [Resource("MINI_HARDVS_files.zip", url, "9c4cc0d9ba043faa17f6f1a9e9aff982"),
                Resource("test_label.txt", url, "5b664af5843f9b476a9c22626f7f5a59"),
                Resource("train_label.txt", url, "0d642b6e6871034f151b2649a89d8d3c"),
                Resource("val_label.txt", url, "cd2cebcba80e4552102bbacf2b5df812")]

    def extract_downloaded_files(self, download_root, extract_root):
        download_root, extract_root = Path(download_root), Path(extract_root)
        outer = extract_root / ".outer"
        extract_archive(download_root / "MINI_HARDVS_files.zip", outer)
        for z in sorted(outer.rglob("action_*.zip")):
            extract_archive(z, extract_root / z.name[:-4])
        shutil.rmtree(outer)
        for s in ("train", "val", "test"):
            shutil.copy(download_root / f"{s}_label.txt", extract_root / f"{s}_label.txt")

    @classmethod
    def _class_dirs(cls, extract_root):
        return tuple(f"{s}/action_{i:03d}" for s in ("train", "val", "test") for i in range(1, N_ACTIONS + 1))

    @classmethod
    def _raw_jobs(cls, extract_root):
        extract_root = Path(extract_root)
        items = []
        for split in ("train", "val", "test"):
            for lineno, line in enumerate((extract_root / f"{split}_label.txt").read_text().splitlines(), 1):
                if len(line) <= 1:
                    continue
                try:
                    cls_name, sample = line.split(" ")[0].split("/")
                except ValueError:
                    raise ValueError(f"{extract_root / f'{split}_label.txt'} line {lineno}: expected "
                                     f"'action_XXX/<sample> ...', got {line!r}") from None
                found = sorted((extract_root / cls_name).rglob(f"{sample}.npz"))
                if not found:
                    raise FileNotFoundError(f"{extract_root / cls_name}: {sample}.npz (listed in {split}_label.txt "
                                            f"line {lineno}) is missing")
                items.append((str(found[0]), f"{split}/{cls_name}/{sample}"))
        return chunks(items)

    @classmethod
    def _decode_job(cls, job):
        return decode_numpy_job(job, (346, 260))
