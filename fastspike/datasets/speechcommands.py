"""Google Speech Commands (SpikingJelly's ``spikingjelly.datasets.speechcommands``): audio, not events.

``SpeechCommands(label_dict, root, silence_cnt, silence_size, transform, url, split, folder_in_archive,
download)`` gives ``(waveform [channels, samples] float32 peak-normalised, label_dict[word])`` items
and, for ``split='train'``, ``silence_cnt`` extra silence clips cut from ``_background_noise_`` at a
random offset (Python's ``random.choice`` and numpy's global generator, as SpikingJelly).  WAV files
are read with ``scipy.io.wavfile`` (PCM scaled to [-1, 1) as ``torchaudio.load`` does), so torchaudio
is not needed.  Nothing is downloaded: with ``download=True`` an archive already placed at
``root/<archive>`` is extracted, otherwise the error says what to fetch.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ._archives import extract_archive

__all__ = ["FOLDER_IN_ARCHIVE", "URL", "HASH_DIVIDER", "EXCEPT_FOLDER", "VAL_RECORD", "TEST_RECORD",
           "TRAIN_RECORD", "SpeechCommands", "SPEECHCOMMANDS"]

FOLDER_IN_ARCHIVE = "SpeechCommands"
URL = "speech_commands_v0.02"
HASH_DIVIDER = "_nohash_"
EXCEPT_FOLDER = "_background_noise_"
VAL_RECORD = "validation_list.txt"
TEST_RECORD = "testing_list.txt"
TRAIN_RECORD = "training_list.txt"
_BASE = "https://storage.googleapis.com/download.tensorflow.org/data/"
_CHECKSUMS = {_BASE + "speech_commands_v0.01.tar.gz": "3cd23799cb2bbdec517f1cc028f8d43c",
              _BASE + "speech_commands_v0.02.tar.gz": "6b74f3901214cb2c2934e98196829835"}


def load_wav(path) -> torch.Tensor:
    """``[channels, samples]`` float32, integer PCM scaled as torchaudio.load (int16 / 32768, ...)."""
    import scipy.io.wavfile

    _, data = scipy.io.wavfile.read(path)
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128) / 128
    elif data.dtype.kind == "i":
        x = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    else:
        x = data.astype(np.float32)
    x = x[:, None] if x.ndim == 1 else x
    return torch.from_numpy(np.ascontiguousarray(x.T))


class SpeechCommands(Dataset):
    def __init__(self, label_dict: dict, root: str, silence_cnt: Optional[int] = 0, silence_size: Optional[int] = 16000,
                 transform: Optional[Callable] = None, url: Optional[str] = URL, split: Optional[str] = "train",
                 folder_in_archive: Optional[str] = FOLDER_IN_ARCHIVE, download: Optional[bool] = False) -> None:
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be one of ('train', 'val', 'test'), got {split!r}")
        if silence_cnt < 0:
            raise ValueError(f"silence_cnt must be >= 0, got {silence_cnt}")
        if silence_size <= 0:
            raise ValueError(f"silence_size must be > 0, got {silence_size}")
        self.split, self.label_dict, self.transform = split, label_dict, transform
        self.silence_cnt, self.silence_size = silence_cnt, silence_size
        if url in ("speech_commands_v0.01", "speech_commands_v0.02"):
            url = f"https://storage.googleapis.com/download.tensorflow.org/data/{url}.tar.gz"
        basename = os.path.basename(url)
        archive = os.path.join(root, basename)
        self._path = os.path.join(root, folder_in_archive, basename.rsplit(".", 2)[0])
        if not os.path.isdir(self._path):
            if download and os.path.isfile(archive):
                extract_archive(Path(archive), Path(self._path))
            else:
                raise FileNotFoundError(
                    f"Speech Commands not found at {self._path}. fastspike downloads nothing: place {basename} "
                    f"(md5 {_CHECKSUMS.get(url, 'unknown')}, from {url}) at {archive} and pass download=True, or "
                    f"extract it into {self._path}.")
        self.noise_list = sorted(str(p) for p in Path(self._path).glob(f"{EXCEPT_FOLDER}/*.wav"))
        if split == "train":
            record = os.path.join(self._path, TRAIN_RECORD)
            if os.path.exists(record):
                self._walker = Path(record).read_text().splitlines()
            else:
                walker = {os.path.relpath(p, self._path) for p in map(str, Path(self._path).glob("*/*.wav"))
                          if HASH_DIVIDER in p and EXCEPT_FOLDER not in p}
                for r in (VAL_RECORD, TEST_RECORD):
                    walker -= set(Path(self._path, r).read_text().splitlines())
                self._walker = sorted(walker)
                tmp = record + f".{os.getpid()}.tmp"
                Path(tmp).write_text("\n".join(self._walker))
                os.replace(tmp, record)
            labels = [self.label_dict.get(os.path.split(p)[0]) for p in self._walker]
            label_weights = 1.0 / np.unique(labels, return_counts=True)[1]
            if self.silence_cnt == 0:
                label_weights /= np.sum(label_weights)
                self.weights = torch.DoubleTensor([label_weights[lab] for lab in labels])
            else:
                silence_weight = 1.0 / self.silence_cnt
                total = np.sum(label_weights) + silence_weight
                label_weights /= total
                self.weights = torch.DoubleTensor([label_weights[lab] for lab in labels]
                                                  + [silence_weight / total] * self.silence_cnt)
        else:
            record = VAL_RECORD if split == "val" else TEST_RECORD
            self._walker = Path(self._path, record).read_text().splitlines()

    def __getitem__(self, n: int) -> Tuple[torch.Tensor, int]:
        if n < len(self._walker):
            fileid = self._walker[n]
            waveform = load_wav(os.path.join(self._path, fileid))
            label = os.path.split(fileid)[0]
        else:
            waveform = load_wav(random.choice(self.noise_list))
            offset = np.random.randint(waveform.shape[1] - self.silence_size)
            waveform = waveform[:, offset:offset + self.silence_size]
            label = "_silence_"
        m = waveform.abs().max()
        if m > 0:
            waveform /= m
        if self.transform is not None:
            waveform = self.transform(waveform)
        return waveform, self.label_dict.get(label)

    def __len__(self) -> int:
        return len(self._walker) + self.silence_cnt


SPEECHCOMMANDS = SpeechCommands
