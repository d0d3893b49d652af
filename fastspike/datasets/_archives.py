"""Original archives: the published file list of a dataset, md5 verification, safe extraction and the
error that tells the user which file to place where (fastspike never downloads anything)."""
from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence

__all__ = ["Resource", "MissingArchivesError", "md5sum", "extract_archive", "extract_nested", "check_archives"]


class Resource(NamedTuple):
    """One published file: unpacks like SpikingJelly's ``(file_name, url, md5)`` triples; ``md5=None``
    when nothing is published (the file is then used unverified); ``optional`` files are verified when
    present but not needed to decode the dataset."""
    file_name: str
    url: str
    md5: Optional[str]
    optional: bool = False


class MissingArchivesError(FileNotFoundError):
    pass


def md5sum(path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def extract_archive(archive: Path, dest: Path) -> None:
    """Extract a .zip / .tar(.gz) archive into ``dest``, refusing members that would land outside it."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    root = dest.resolve()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for m in z.namelist():
                if not (root / m).resolve().is_relative_to(root):
                    raise ValueError(f"{archive}: member {m!r} would be extracted outside {dest}")
            z.extractall(dest)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    else:
        raise ValueError(f"{archive}: unknown archive type (expected .zip, .tar or .tar.gz)")


def extract_nested(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, then every .zip found inside (in place, recursively)."""
    extract_archive(archive, dest)
    while True:
        inner = sorted(p for p in Path(dest).rglob("*.zip") if p.is_file())
        if not inner:
            return
        for z in inner:
            extract_archive(z, z.parent)
            z.unlink()


def check_archives(owner: str, resources: Sequence[Resource], download: Path) -> List[Path]:
    """Paths of the required archives in ``download``; MissingArchivesError names every missing one with
    its published md5, its source and the exact destination; a present file with the wrong md5 is a
    ValueError (corrupt, or another release)."""
    download = Path(download)
    missing = [r for r in resources if not r.optional and not (download / r.file_name).exists()]
    if missing:
        lines = [f"{owner}: {len(missing)} original archive(s) missing. fastspike downloads nothing; place "
                 f"each file below in {download}/ :"]
        for r in missing:
            md5 = r.md5 if r.md5 else "none published (not verified)"
            lines.append(f"  - {r.file_name}  md5 {md5}  from {r.url}  -> {download / r.file_name}")
        raise MissingArchivesError("\n".join(lines))
    out = []
    for r in resources:
        p = download / r.file_name
        if not p.exists():
            continue
        if r.md5:
            got = md5sum(p)
            if got != r.md5:
                raise ValueError(f"{p}: md5 {got} does not match the published {r.md5}; the file is corrupt "
                                 "or a different release")
        if not r.optional:
            out.append(p)
    return out
