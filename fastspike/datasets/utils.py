"""SpikingJelly's ``spikingjelly.datasets.utils`` on fastspike's vectorised kernels: frame integration,
segment indices, file conversion, the class-balanced train/test split, sub-datasets, and pictures.

Integration gives SpikingJelly's numbers for non-decreasing timestamps (float64 frames, as SpikingJelly
returns them).  Where SpikingJelly raises (an empty ``split_by='time'`` window, a recording of zero
duration) these give empty frames / one frame instead.  ``load_ATIS_bin`` decodes overflow markers
(y == 240) as the format says instead of returning them as events.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.utils.data

from .formats import read_events
from .frames import pad_sequence_collate, padded_sequence_mask, split_indices, to_frames

__all__ = ["np_savez", "save_as_pic", "play_frame", "load_aedat_v3", "load_ATIS_bin", "load_npz_frames",
           "integrate_events_segment_to_frame", "cal_fixed_frames_number_segment_index",
           "integrate_events_by_fixed_frames_number", "integrate_events_file_to_frames_file_by_fixed_frames_number",
           "integrate_events_by_fixed_duration", "integrate_events_file_to_frames_file_by_fixed_duration",
           "create_same_directory_structure", "split_to_train_test_set", "pad_sequence_collate",
           "padded_sequence_mask", "create_sub_dataset"]

#: SpikingJelly saves compressed by default (its SJ_SAVE_DATASETS_COMPRESSED=1)
np_savez = np.savez_compressed


class SplitByError(ValueError, NotImplementedError):
    """A bad ``split_by``: a ValueError for fastspike, the NotImplementedError SpikingJelly raises."""


def _check_split_by(split_by):
    if split_by not in ("number", "time"):
        raise SplitByError(f"split_by must be 'number' or 'time', got {split_by!r}")


def _dict(ev: dict):
    return {k: np.asarray(v) for k, v in ev.items()} if isinstance(ev, dict) else ev


def _frames_rgb(x):
    x = torch.as_tensor(np.asarray(x) if isinstance(x, np.ndarray) else x).float()
    img = torch.zeros(x.shape[0], x.shape[2], x.shape[3], 3)
    img[..., 1], img[..., 2] = x[:, 0], x[:, 1]  # channel 0 green, channel 1 blue (SpikingJelly's colours)
    return (img.clamp(0, 1) * 255).to(torch.uint8).numpy()


def save_as_pic(x: Union[torch.Tensor, np.ndarray], save_pic_to: str = "./", pic_first_name: str = "pic") -> None:
    """Save frames ``[T, 2, H, W]`` as ``<save_pic_to>/<pic_first_name>_<t>.png`` (values clipped to [0, 1])."""
    from PIL import Image

    for t, im in enumerate(_frames_rgb(x)):
        Image.fromarray(im).save(Path(save_pic_to) / f"{pic_first_name}_{t}.png")


def play_frame(x: Union[torch.Tensor, np.ndarray], save_gif_to: str = None) -> None:
    """Save frames ``[T, 2, H, W]`` as a looping GIF, or (``save_gif_to=None``) show them with matplotlib."""
    frames = _frames_rgb(x)
    if save_gif_to is not None:
        from PIL import Image

        ims = [Image.fromarray(f) for f in frames]
        ims[0].save(save_gif_to, save_all=True, append_images=ims[1:], loop=0)
        return
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation

    fig = plt.figure()
    art = plt.imshow(frames[0])
    anim = FuncAnimation(fig, lambda i: [art.set_data(frames[i])], frames=len(frames), interval=10)
    plt.show()
    return anim


def load_aedat_v3(file_name) -> dict:
    """AEDAT 3.1 polarity events as ``{'t', 'x', 'y', 'p'}`` int64 arrays, every packet slot read as
    SpikingJelly does (``valid_only=False``); timestamps are not checked for order."""
    ev = read_events(file_name, "aedat31", valid_only=False, strict=False)
    return {k: ev[k].astype(np.int64) for k in "txyp"}


def load_ATIS_bin(file_name) -> dict:
    """ATIS ``.bin`` events as ``{'t', 'x', 'y', 'p'}`` uint32 arrays."""
    ev = read_events(file_name, "atis_bin", strict=False)
    return {k: ev[k].astype(np.uint32) for k in "txyp"}


def load_npz_frames(file_name) -> np.ndarray:
    """Frames saved by :func:`np_savez` (key ``frames``; fastspike's ``.npy`` frames too) as float32."""
    from ._cache import load_frames

    return load_frames(file_name)


def integrate_events_segment_to_frame(x: np.ndarray, y: np.ndarray, p: np.ndarray, H: int, W: int, j_l: int = 0,
                                      j_r: Optional[int] = None) -> np.ndarray:
    """Count events ``[j_l, j_r)`` into a float64 ``[2, H, W]`` frame (channel 1: ``p != 0``)."""
    x, y = np.asarray(x)[j_l:j_r].astype(np.int64), np.asarray(y)[j_l:j_r].astype(np.int64)
    p = np.asarray(p)[j_l:j_r] != 0
    return np.bincount(p * (H * W) + y * W + x, minlength=2 * H * W).reshape(2, H, W).astype(float)


def cal_fixed_frames_number_segment_index(events_t: np.ndarray, split_by: str, frames_num: int) -> tuple:
    """``(j_l, j_r)`` event index bounds of each of ``frames_num`` frames (SpikingJelly's rule)."""
    _check_split_by(split_by)
    j_l, j_r = split_indices(np.asarray(events_t), split_by, frames_num)
    return j_l.astype(int), j_r.astype(int)


def integrate_events_by_fixed_frames_number(events: dict, split_by: str, frames_num: int, H: int, W: int) -> np.ndarray:
    _check_split_by(split_by)
    return to_frames(_dict(events), (W, H), frames_number=frames_num, split_by=split_by, dtype=np.float64)


def integrate_events_file_to_frames_file_by_fixed_frames_number(loader: Callable, events_np_file: str, output_dir: str,
                                                                split_by: str, frames_num: int, H: int, W: int,
                                                                print_save: bool = False) -> None:
    fname = os.path.join(output_dir, os.path.basename(events_np_file))
    np_savez(fname, frames=integrate_events_by_fixed_frames_number(loader(events_np_file), split_by, frames_num, H, W))
    if print_save:
        print(f"Frames [{fname}] saved.")


def integrate_events_by_fixed_duration(events: dict, duration: int, H: int, W: int) -> np.ndarray:
    return to_frames(_dict(events), (W, H), duration=duration, dtype=np.float64)


def integrate_events_file_to_frames_file_by_fixed_duration(loader: Callable, events_np_file: str, output_dir: str,
                                                           duration: int, H: int, W: int,
                                                           print_save: bool = False) -> int:
    frames = integrate_events_by_fixed_duration(loader(events_np_file), duration, H, W)
    stem = os.path.splitext(os.path.basename(events_np_file))[0]
    fname = os.path.join(output_dir, f"{stem}_{frames.shape[0]}.npz")
    np_savez(fname, frames=frames)
    if print_save:
        print(f"Frames [{fname}] saved.")
    return frames.shape[0]


def create_same_directory_structure(source_dir, target_dir) -> None:
    """Create in ``target_dir`` every sub-directory of ``source_dir`` (recursively)."""
    for name in sorted(os.listdir(source_dir)):
        src = os.path.join(source_dir, name)
        if os.path.isdir(src):
            dst = os.path.join(target_dir, name)
            os.mkdir(dst)
            create_same_directory_structure(src, dst)


def split_to_train_test_set(train_ratio: float, origin_dataset: torch.utils.data.Dataset, num_classes: int,
                            random_split: bool = False):
    """Class-balanced split: the first ``ceil(n_c * train_ratio)`` samples of each class train, the rest
    test; ``random_split`` shuffles each class with numpy's global generator first (SpikingJelly's
    calls, in its order).  Uses ``origin_dataset.targets`` when present instead of loading every sample."""
    if not 0 <= train_ratio <= 1:
        raise ValueError(f"train_ratio must lie in [0, 1], got {train_ratio!r}")
    targets = getattr(origin_dataset, "targets", None)
    if targets is None or len(targets) != len(origin_dataset):
        targets = [origin_dataset[i][1] for i in range(len(origin_dataset))]
    label_idx = [[] for _ in range(num_classes)]
    for i, label in enumerate(targets):
        label = label.item() if isinstance(label, (np.ndarray, torch.Tensor, np.generic)) else label
        if not 0 <= int(label) < num_classes:
            raise ValueError(f"sample {i} has label {label}, outside 0..{num_classes - 1} (num_classes={num_classes})")
        label_idx[int(label)].append(i)
    train_idx, test_idx = [], []
    if random_split:
        for idx in label_idx:
            np.random.shuffle(idx)
    for idx in label_idx:
        pos = math.ceil(len(idx) * train_ratio)
        train_idx.extend(idx[:pos])
        test_idx.extend(idx[pos:])
    return torch.utils.data.Subset(origin_dataset, train_idx), torch.utils.data.Subset(origin_dataset, test_idx)


def create_sub_dataset(source_dir: str, target_dir: str, ratio: float, use_soft_link=True, randomly=False):
    """Link (or copy) the first ``ratio`` of the files of every folder of ``source_dir`` into the same
    tree under ``target_dir`` (files in sorted order; ``randomly`` shuffles with numpy's generator)."""
    os.makedirs(target_dir, exist_ok=True)
    create_same_directory_structure(source_dir, target_dir)
    for root, _, files in os.walk(source_dir, followlinks=True):
        if not files:
            continue
        files = sorted(files)
        out = os.path.join(target_dir, os.path.relpath(root, source_dir))
        n = len(files) if ratio >= 1.0 else int(ratio * len(files))
        if randomly:
            np.random.shuffle(files)
        for f in files[:n]:
            src, dst = os.path.join(root, f), os.path.join(out, f)
            os.symlink(src, dst) if use_soft_link else shutil.copyfile(src, dst)
