"""IBM DVS128 Gesture (SpikingJelly's ``spikingjelly.datasets.dvs128_gesture``): 11 classes, 128x128,
AEDAT 3.1; users 01-23 train (trials_to_train.txt), 24-29 test: 1176 / 288 samples.

Each row ``class,startTime_usec,endTime_usec`` of ``userNN_<light>_labels.csv`` becomes the sample
``<split>/<class - 1>/<userNN_light>_<k>`` (k counts that class's rows in the file) holding the events
with ``start <= t < end``, as SpikingJelly writes it; like SpikingJelly's ``load_aedat_v3`` every slot of
each polarity packet is read (``valid_only=False``).  The label is the index of the class folder in
string order ('0', '1', '10', '2', ...), exactly as SpikingJelly's DatasetFolder gives it: see
``classes`` / ``class_to_idx``.  fastspike also refuses label rows with a bad class, an end before the
start, or no events, naming the CSV line.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import List

from ._archives import Resource
from ._helpers import SJ_SOURCE, TrainTestSplit, stem
from .formats import EventFileError, read_events

__all__ = ["DVS128Gesture"]


class DVS128Gesture(TrainTestSplit):

    @classmethod
    def get_H_W(cls):
        return (128, 128)

    @classmethod
    def resource_url_md5(cls) -> list:
        url = ("https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8 (research.ibm.com/dvsgesture; "
               + SJ_SOURCE.format("dvs128_gesture.py") + ")")
        return [Resource("DvsGesture.tar.gz", url, "8a5c71fb11e24e5ca5b11866ca6c00a1"),
                Resource("gesture_mapping.csv", url, "109b2ae64a0e1f3ef535b18ad7367fd1", optional=True),
                Resource("LICENSE.txt", url, "065e10099753156f18f51941e6e44b66", optional=True),
                Resource("README.txt", url, "a0663d3b1d8307c329a43d949ee32d19", optional=True)]

    @classmethod
    def _class_dirs(cls, extract_root):
        return tuple(f"{s}/{c}" for s in ("train", "test") for c in range(11))

    @classmethod
    def _raw_jobs(cls, extract_root: Path):
        extract_root = Path(extract_root)
        lists = {}
        for split in ("train", "test"):
            found = sorted(extract_root.rglob(f"trials_to_{split}.txt"))
            if found:
                lists[split] = {ln.strip() for ln in found[0].read_text().splitlines() if ln.strip()}
        jobs = []
        for f in sorted(extract_root.rglob("*.aedat")):
            if lists:
                split = next((s for s in ("train", "test") if f.name in lists.get(s, ())), None)
                if split is None:
                    continue
            else:
                m = re.match(r"user(\d+)_", f.name)
                split = "train" if m and int(m.group(1)) <= 23 else "test"
            csv_path = f.with_name(stem(f) + "_labels.csv")
            if not csv_path.exists():
                raise FileNotFoundError(f"{csv_path}: label file for {f} is missing")
            jobs.append([(str(f), str(csv_path), split)])
        return jobs

    @classmethod
    def read_labels(cls, csv_path) -> List[tuple]:
        """(line number, class 1..11, start, end) per row; malformed rows raise naming the line."""
        rows = []
        with open(csv_path, newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh), start=1):
                if not row or not "".join(row).strip():
                    continue
                if lineno == 1 and not row[0].strip().lstrip("-").isdigit():
                    continue  # header "class,startTime_usec,endTime_usec"
                try:
                    if len(row) < 3:
                        raise ValueError
                    c, s, e = (int(v) for v in row[:3])
                except ValueError:
                    raise EventFileError(csv_path, None, f"line {lineno}: expected 'class,start,end' "
                                                         f"integers, got {','.join(row)!r}") from None
                if not 1 <= c <= 11:
                    raise EventFileError(csv_path, None, f"line {lineno}: class {c} outside 1..11")
                if e <= s:
                    raise EventFileError(csv_path, None, f"line {lineno}: end {e} <= start {s}")
                rows.append((lineno, c, s, e))
        if not rows:
            raise EventFileError(csv_path, None, "no label rows")
        return rows

    @classmethod
    def _decode_job(cls, job):
        out = []
        for aedat, csv_path, split in job:
            ev = read_events(aedat, "aedat31", sensor_size=(128, 128), valid_only=False, strict=False)
            t = ev["t"]
            lo, hi = (int(t.min()), int(t.max())) if t.size else (0, -1)
            count = [0] * 11
            for lineno, c, s, e in cls.read_labels(csv_path):
                sel = ev[(t >= s) & (t < e)]
                if sel.size == 0:
                    raise EventFileError(csv_path, None, f"line {lineno}: segment [{s}, {e}) of class {c} "
                                                         f"holds no events of {aedat} (recording spans "
                                                         f"t = {lo}..{hi} µs)")
                out.append((f"{split}/{c - 1}/{stem(aedat)}_{count[c - 1]}", sel))
                count[c - 1] += 1
        return out
