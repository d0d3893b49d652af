"""Shared decoding job of the datasets released as numpy event files (DVS-Lip, HARDVS, ES-ImageNet,
Bullying10K): each job item is (source file, relative sample name)."""
from __future__ import annotations

from .formats import read_events


def decode_numpy_job(job, sensor):
    return [(rel, read_events(src, "numpy", sensor_size=sensor, strict=False)) for src, rel in job]
