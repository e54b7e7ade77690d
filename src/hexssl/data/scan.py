"""Finding the images of an image-folder tree, in a directory or a .tar/.tar.gz archive.

Layout: ``<root>/<split>/<class>/*.jpg|jpeg|png|...`` plus an optional
``<root>/hierarchy.csv``. Archive members are listed and read, never extracted to disk.
"""

from __future__ import annotations

import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from hexssl.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass(frozen=True)
class Entry:
    """One image found in a folder or archive: class folder ('' if none) and its source."""

    klass: str
    name: str
    source: bytes | str


def is_image(name: str) -> bool:
    """True when the file name has an image extension (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def is_archive(path: Path) -> bool:
    """True for .tar, .tar.gz and .tgz files."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def scan_dir(top: Path, labelled: bool) -> list[Entry]:
    """Image files under ``top`` (recursive); class = first folder below ``top`` if labelled."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel = Path(dirpath).relative_to(top).parts
        if labelled and not rel:
            continue  # files directly in <split>/ have no class
        for f in sorted(filenames):
            if is_image(f):
                entries.append(
                    Entry(rel[0] if labelled else "", f"{dirpath}/{f}", f"{dirpath}/{f}")
                )
    return entries


def _match(parts: tuple[str, ...], split: str | None) -> tuple[tuple[str, ...], str] | None:
    """(prefix, class) when ``parts`` is <prefix>/<split>/<class>/.../<file>."""
    if split is None:
        return (), ""
    for i, p in enumerate(parts[:-2]):
        if p == split:
            return parts[:i], parts[i + 1]
    return None


def scan_tar(path: Path, split: str | None) -> tuple[list[Entry], tuple[bytes, str] | None]:
    """Stream a tar(.gz) once: image members of ``split`` (all images if None) and hierarchy.csv.

    The tree root inside the archive is the prefix of the first matching image, so an
    archive with or without one top-level folder both work.
    """
    entries: list[Entry] = []
    csvs: dict[tuple[str, ...], tuple[bytes, str]] = {}  # folder -> (bytes, source)
    prefix: tuple[str, ...] | None = None
    try:
        with tarfile.open(path, "r|*") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                parts = tuple(p for p in PurePosixPath(m.name).parts if p not in (".", ""))
                if parts[-1] == "hierarchy.csv":
                    data = _read_member(tf, m)
                    csvs[parts[:-1]] = data, f"{path}:{m.name}"
                elif is_image(parts[-1]) and (hit := _match(parts, split)) is not None:
                    prefix = hit[0] if prefix is None else prefix
                    if hit[0] == prefix:
                        entries.append(Entry(hit[1], m.name, _read_member(tf, m)))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(
            f"{path}: not a readable .tar/.tar.gz archive ({type(err).__name__}: {err}); "
            "it may be truncated or of another format: download or create it again"
        ) from None
    entries.sort(key=lambda e: e.name)  # archive member order is arbitrary
    return entries, csvs.get(prefix or (), csvs.get(()))


def _read_member(tf: tarfile.TarFile, m: tarfile.TarInfo) -> bytes:
    f = tf.extractfile(m)
    return b"" if f is None else f.read()
