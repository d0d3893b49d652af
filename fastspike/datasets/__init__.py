"""Neuromorphic datasets: file decoders, event-to-frame integration, transforms, dataset classes.

See docs/datasets.md.  ``read_events`` reads one recording of any supported format into a structured
array with fields t, x, y, p (values as stored in the file); the dataset classes add each dataset's
published conventions, splits and safe, parallel preprocessing caches.
"""
from . import transforms
from ._base import MissingArchivesError, NeuromorphicDataset, Resource, md5sum, stratified_split
from .datasets import (ASLDVS, CIFAR10DVS, MNISTDVS, NCARS, NMNIST, SHD, SSC, DVS128Gesture,
                       NAVGesture, NCaltech101)
from .formats import (EVENT_DTYPE, FORMATS, EventFileError, check_range, detect_format, make_events,
                      read_events, read_shd)
from .frames import frame_index, pad_sequence_collate, padded_sequence_mask, split_indices, to_frames

__all__ = [
    "EVENT_DTYPE", "FORMATS", "EventFileError", "check_range", "detect_format", "make_events",
    "read_events", "read_shd", "to_frames", "frame_index", "split_indices", "pad_sequence_collate",
    "padded_sequence_mask", "transforms", "NeuromorphicDataset", "Resource", "MissingArchivesError",
    "md5sum", "stratified_split", "DVS128Gesture", "CIFAR10DVS", "NMNIST", "NCaltech101", "ASLDVS",
    "SHD", "SSC", "NAVGesture", "NCARS", "MNISTDVS",
]
