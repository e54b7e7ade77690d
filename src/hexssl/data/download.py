"""Download, verify and extract dataset archives (http(s)://, file:// URLs or local paths).

Writes are atomic: the file is streamed to a temporary name, its checksum checked, and
only then renamed into place, so an interrupted or corrupted download never leaves a
partial file behind. Checksums are written ``"md5:<hex>"`` or ``"sha256:<hex>"``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class Resource:
    """An official archive: where to get it and its published checksum."""

    url: str
    checksum: str


# Official archives; the md5 sums are the ones published with the datasets (and used by
# torchvision). No sha256 is published, so none is invented here.
RESOURCES: dict[str, Resource] = {
    "cifar10": Resource(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5:c58f30108f718f92721af3b95e74349a",
    ),
    "cifar100": Resource(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5:eb9058c3a382ffc7106e4002c42a8d85",
    ),
    "stl10": Resource(
        "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
        "md5:91f7769df0f17e558f3565bffb0c7dfb",
    ),
}
_BLOCK = 1 << 20


class ChecksumError(ValueError):
    """The downloaded bytes do not match the expected checksum."""


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``"md5:ab.."``/``"sha256:.."`` (or a bare 32/64-hex digest) -> (algorithm, hex digest)."""
    algo, _, digest = checksum.rpartition(":")
    algo = algo or {32: "md5", 64: "sha256"}.get(len(digest), "")
    if algo not in ("md5", "sha1", "sha256") or not digest:
        raise ValueError(f"checksum {checksum!r}: write it as 'md5:<hex>' or 'sha256:<hex>'")
    return algo, digest.lower()


def file_checksum(path: str | Path, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _open_url(url: str) -> BinaryIO:
    """Open an URL (http(s)/file/ftp) or a plain local path for reading."""
    if "://" not in url:  # a plain local path
        return open(Path(url).expanduser(), "rb")
    resp: BinaryIO = urllib.request.urlopen(url, timeout=60)
    return resp


def _stream_to(url: str, tmp: Path, algo: str) -> str:
    """Copy ``url`` into ``tmp`` and return the hex digest of the bytes."""
    h = hashlib.new(algo)
    with _open_url(url) as src, open(tmp, "wb") as dst:
        for block in iter(lambda: src.read(_BLOCK), b""):
            h.update(block)
            dst.write(block)
    return h.hexdigest()


def fetch(url: str, path: Path, checksum: str | None = None) -> Path:
    """Download ``url`` to ``path`` atomically, verifying ``checksum`` (skip if already good)."""
    algo, expected = parse_checksum(checksum) if checksum else ("sha256", "")
    if path.is_file() and (not expected or file_checksum(path, algo) == expected):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        got = _stream_to(url, tmp, algo)
        if expected and got != expected:
            raise ChecksumError(
                f"{url}: {algo} is {got}, expected {expected}; the file may be corrupt or "
                "truncated; nothing was kept, download again"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def extract(archive: Path, dest: Path) -> None:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into ``dest`` via a temporary folder, then move.

    Top-level entries replace existing ones of the same name, so a re-run after an
    interrupted extraction ends in a complete tree.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=dest) as tmp:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")  # refuses absolute paths and links outside
        for child in Path(tmp).iterdir():
            target = dest / child.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(child, target)


def is_extractable(path: Path) -> bool:
    """True for files that :func:`extract` can unpack."""
    return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)


def download(
    url: str, dest: str | Path, checksum: str | None = None, extract_archive: bool = True
) -> Path:
    """Download ``url`` into folder ``dest``, verify it, and extract it there if it is an archive.

    Args:
        url: http(s)://, file:// URL or a local path.
        dest: destination folder; the file keeps the URL's base name.
        checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"``; ``None`` skips verification.
        extract_archive: unpack .tar/.tar.gz/.zip files into ``dest``.

    Returns:
        The path of the downloaded file.

    Raises:
        ChecksumError: the bytes do not match (no partial file is left behind).

    Example:
        >>> download("file:///tmp/toy.tar.gz", "/tmp/data", "sha256:9f86...")  # doctest: +SKIP
    """
    dest = Path(dest).expanduser()
    name = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "download"
    path = fetch(url, dest / name, checksum)
    if extract_archive and is_extractable(path):
        extract(path, dest)
    return path


def download_dataset(name: str, root: str | Path) -> Path:
    """Download and extract an official dataset archive (``RESOURCES``) into ``root``."""
    if name not in RESOURCES:
        raise ValueError(f"no download for {name!r}; downloadable: {sorted(RESOURCES)}")
    res = RESOURCES[name]
    return download(res.url, root, res.checksum)
