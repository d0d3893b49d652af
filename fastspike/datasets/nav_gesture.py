"""NavGesture (SpikingJelly's ``spikingjelly.datasets.nav_gesture``): ``NAVGestureWalk`` and
``NAVGestureSit``, 6 classes in sorted code order (do, ho, le, ri, se, up = swipe down, home, swipe
left, swipe right, select, swipe up), 304x240 ATIS, old-layout DAT files.

Convention (SpikingJelly's): ``y = 239 - y``; events whose timestamp is below an earlier event's are
dropped; time re-zeroed to the first event.  (SpikingJelly's own reader mishandles files with backward
timestamps -- it keeps a prefix by count, not the kept events -- so on such files the numbers differ.)
The download site is reported offline (SpikingJelly issue 423).  ``NAVGesture(root, ..., subset=)`` is
fastspike's older spelling of the two classes.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ._archives import Resource, extract_nested
from ._helpers import UnofficialSplit, chunks, stem
from .formats import make_events, read_events

__all__ = ["NAVGestureWalk", "NAVGestureSit", "NAVGesture"]

CODES = ("do", "ho", "le", "ri", "se", "up")
_MD5 = {"walk": "5d305266f13005401959e819abe206f0", "sit": "1571753ace4d9e0946e6503313712c22"}


class NAVGestureWalk(UnofficialSplit):
    subset = "walk"

    @classmethod
    def get_H_W(cls):
        return (240, 304)

    def resource_url_md5(self) -> list:
        f = f"navgesture-{self.subset}.zip"
        return [Resource(f, f"https://www.neuromorphic-vision.com/public/downloads/navgesture/{f} (reported "
                            "offline, SpikingJelly issue 423)", _MD5[self.subset])]

    def extract_downloaded_files(self, download_root, extract_root):
        extract_nested(Path(download_root) / f"navgesture-{self.subset}.zip", extract_root)

    @classmethod
    def _class_dirs(cls, extract_root):
        return CODES

    @classmethod
    def _raw_jobs(cls, extract_root):
        items = []
        for f in sorted(Path(extract_root).rglob("*.dat")):
            parts = stem(f).split("_")
            code = parts[1] if len(parts) > 1 else ""
            if code not in CODES:
                raise ValueError(f"{f}: gesture code {code!r} (second '_' field of the name) not in {CODES}")
            items.append((str(f), f"{code}/{stem(f)}"))
        return chunks(items)

    @classmethod
    def _decode_job(cls, job):
        out = []
        for f, rel in job:
            with warnings.catch_warnings():  # backward timestamps are expected here: dropped just below
                warnings.simplefilter("ignore")
                ev = read_events(f, "dat", layout="old", sensor_size=(304, 240), strict=False)
            if ev.size:
                t = ev["t"]
                ev = ev[t >= np.maximum.accumulate(t)]
                ev = make_events(ev["t"] - ev["t"][0], ev["x"], 239 - ev["y"].astype(np.int64), ev["p"])
            out.append((rel, ev))
        return out


class NAVGestureSit(NAVGestureWalk):
    subset = "sit"


class NAVGesture(NAVGestureWalk):
    """``subset='walk'`` or ``'sit'`` (keyword-only); otherwise as NAVGestureWalk / NAVGestureSit."""

    def __init__(self, root, *args, subset: str = "walk", **kwargs):
        if subset not in _MD5:
            raise ValueError(f"subset must be 'walk' or 'sit', got {subset!r}")
        self.subset = subset
        super().__init__(root, *args, **kwargs)
