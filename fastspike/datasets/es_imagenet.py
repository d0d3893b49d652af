"""ES-ImageNet (SpikingJelly's ``spikingjelly.datasets.es_imagenet``): 1000 classes, 256x256, released
as 25 ``ES-imagenet-0.18.partNN.rar`` volumes holding ``train/class<k>/*.npz`` and ``val/*.npz`` +
``vallabel.txt``; each ``.npz`` has ``pos`` / ``neg`` rows ``(y, x, t)``.  Extracting RAR needs the
optional ``rarfile`` package and an unrar tool; or extract the volumes yourself into
``root/extract/`` (then no archive is needed).  Labels follow DatasetFolder's string order of
``class<k>`` folders, as in SpikingJelly.  The four ``ESImageNet*Builder`` classes exist for
SpikingJelly's names: fastspike converts the files once when building the events tree, so they are
the standard builders.
"""
from __future__ import annotations

from pathlib import Path


from ._archives import Resource
from ._helpers import TrainTestSplit, chunks, decode_numpy_job, stem
from .base import (EventBuilder, FrameCustomIntegrateBuilder, FrameFixedDurationBuilder, FrameFixedNumberBuilder)

__all__ = ["ESImageNetEventBuilder", "ESImageNetFrameFixedNumberBuilder", "ESImageNetFrameFixedDurationBuilder",
           "ESImageNetFrameCustomIntegrateBuilder", "ESImageNet"]

_MD5 = ("900bdd57b5641f7d81cd4620283fef76", "5982532009e863a8f4e18e793314c54b", "8f408c1f5a1d4604e48d0d062a8289a0",
        "5c5b5cf0a55954eb639964e3da510097", "51feb661b4c9fa87860b63e76b914673", "fcd007a2b17b7c13f338734c53f6db31",
        "d3e74b96d9c5df15714bbc3abcd329fc", "65b9cf7fa63e18d2e7d92ff45a42a5e5", "241c9a37a83ff9efd305fe46d012211e",
        "ceee96971008e30d0cdc34086c49fd75", "4fbfefbe6e48758fbb72427c81f119cf", "c8cc163be4e5f6451201dccbded4ec24",
        "08c9dff32f6b42c49ef7cd78e37c728e", "43aa157dc5bd5fcea81315a46e0322cf", "480a69b050f465ef01efcc44ae29f7df",
        "11abd24d92b93e7f85acd63abd4a18ab", "3891486a6862c63a325c5f16cd01fdd1", "cf8bb0525b514f411bca9d7c2d681f7c",
        "3766bc35572ccacc03f0f293c571d0ae", "bf73a5e338644122220e41da7b5630e6", "564de4a2609cbb0bb67ffa1bc51f2487",
        "60a9e52db1acadfccc9a9809073f0b04", "373b5484826d40d7ec35f0e1605cb6ea", "a50612e889b20f99cc7b2725dfd72e9e",
        "0802ccdeb0cff29237faf55164524101")


class ESImageNetEventBuilder(EventBuilder):
    pass


class ESImageNetFrameFixedNumberBuilder(FrameFixedNumberBuilder):
    pass


class ESImageNetFrameFixedDurationBuilder(FrameFixedDurationBuilder):
    pass


class ESImageNetFrameCustomIntegrateBuilder(FrameCustomIntegrateBuilder):
    pass


class ESImageNet(TrainTestSplit):

    def get_dataset_builder(self):
        if self.cfg.data_type == "event":
            return ESImageNetEventBuilder(self.cfg, self.raw_root)
        H, W = self.get_H_W()
        if self.cfg.frames_number is not None:
            return ESImageNetFrameFixedNumberBuilder(self.cfg, self.raw_root, H, W)
        if self.cfg.duration is not None:
            return ESImageNetFrameFixedDurationBuilder(self.cfg, self.raw_root, H, W)
        return ESImageNetFrameCustomIntegrateBuilder(self.cfg, self.raw_root, H, W)

    @classmethod
    def get_H_W(cls):
        return (256, 256)

    @classmethod
    def resource_url_md5(cls) -> list:
        base = "https://cloud.tsinghua.edu.cn/d/94873ab4ec2a4eb497b3/files/?p=%2FES-imagenet-0.18.part{:02d}.rar&dl=1"
        return [Resource(f"ES-imagenet-0.18.part{i + 1:02d}.rar", base.format(i + 1), m) for i, m in enumerate(_MD5)]

    @classmethod
    def downloadable(cls) -> bool:
        return True

    def extract_downloaded_files(self, download_root, extract_root):
        try:
            import rarfile
        except ImportError as e:
            raise ImportError("extracting ES-ImageNet's RAR volumes needs the optional package `rarfile` (and an "
                              f"unrar tool); or extract them yourself into {Path(self.cfg.root) / 'extract'}") from e
        with rarfile.RarFile(Path(download_root) / "ES-imagenet-0.18.part01.rar") as rf:
            rf.extractall(extract_root)

    @classmethod
    def _base(cls, extract_root):
        return Path(extract_root) / "ES-imagenet-0.18"

    @classmethod
    def _class_dirs(cls, extract_root):
        train = cls._base(extract_root) / "train"
        names = sorted(p.name for p in train.iterdir() if p.is_dir()) if train.is_dir() else []
        return tuple(f"{s}/{c}" for s in ("train", "test") for c in names)

    @classmethod
    def _raw_jobs(cls, extract_root):
        base = cls._base(extract_root)
        items = [(str(f), f"train/{f.parent.name}/{stem(f)}") for f in sorted((base / "train").glob("*/*.npz"))]
        lines = (base / "vallabel.txt").read_text().split()
        if len(lines) % 2:
            raise ValueError(f"{base / 'vallabel.txt'}: expected 'file label' pairs")
        for fname, label in zip(lines[0::2], lines[1::2]):
            items.append((str(base / "val" / fname), f"test/class{int(label)}/{stem(fname)}"))
        return chunks(items)

    @classmethod
    def _decode_job(cls, job):
        return decode_numpy_job(job, (256, 256))


