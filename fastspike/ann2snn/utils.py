"""``download_url`` (SpikingJelly 2.0's helper for fetching pretrained checkpoints), with resumable downloads.

The file is received into ``<dst>.part`` and moved onto ``dst`` only when complete, so ``dst`` is never
half-written; an interrupted download resumes from the ``.part`` file with an HTTP Range request (and starts
over when the server ignores the range).
"""
from __future__ import annotations

import os
import re
import urllib.request
from typing import Optional

__all__ = ["download_url"]

_HEADERS = {"User-Agent": "fastspike (python urllib)"}
_CHUNK = 1 << 20


def _open(url: str, first_byte: int = 0, last_byte: Optional[int] = None):
    headers = dict(_HEADERS)
    if first_byte or last_byte is not None:
        headers["Range"] = f"bytes={first_byte}-{'' if last_byte is None else last_byte}"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30)


def _resumed(response, first_byte: int, size: int) -> bool:
    """True when ``response`` carries exactly bytes first_byte..size-1 (a 206 with the matching Content-Range)."""
    if response.status != 206:
        return False
    m = re.match(r"bytes (\d+)-(\d+)/(\d+)", response.headers.get("Content-Range", ""), re.IGNORECASE)
    return m is not None and (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (first_byte, size - 1, size)


def _copy(response, path: str, mode: str) -> int:
    written = 0
    with open(path, mode) as fh:
        while True:
            chunk = response.read(_CHUNK)
            if not chunk:
                return written
            fh.write(chunk)
            written += len(chunk)


def download_url(url: str, dst: str) -> int:
    """Download ``url`` to the path ``dst`` and return the file size in bytes (the bytes received when the server
    sends no Content-Length). A complete ``dst`` is not downloaded again; an interrupted download resumes
    (module docstring). Raises ``RuntimeError`` when fewer or more bytes arrive than the server announced, and
    urllib's errors for network failures."""
    if not isinstance(url, str) or not url:
        raise ValueError(f"download_url: url must be a non-empty string, but got {url!r}.")
    dst = os.fspath(dst)
    part = dst + ".part"
    with _open(url) as response:
        length = response.headers.get("Content-Length")
    if length is None:
        with _open(url) as response:
            written = _copy(response, part, "wb")
        os.replace(part, dst)
        return written
    size = int(length)
    if os.path.isfile(dst) and os.path.getsize(dst) >= size:
        return size
    first = os.path.getsize(part) if os.path.isfile(part) else 0
    if first >= size:
        first = 0
    with _open(url, first, size - 1) if first else _open(url) as response:
        if first and not _resumed(response, first, size):
            first = 0  # the server ignored the range: start over
            mode = "wb" if response.status == 200 else None
        else:
            mode = "ab" if first else "wb"
        if mode is None:
            response.close()
            with _open(url) as fresh:
                written = _copy(fresh, part, "wb")
        else:
            written = _copy(response, part, mode)
    if first + written != size:
        raise RuntimeError(f"download_url: received {first + written} of {size} bytes from {url!r}; the partial file "
                           f"{part!r} is kept, call again to resume.")
    os.replace(part, dst)
    return size
