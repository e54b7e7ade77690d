"""Download, verify and extract dataset archives (http(s)://, file:// URLs or local paths).

Writes are atomic: the file is streamed to a temporary name beside its destination, its
checksum checked, and only then renamed into place, so an interrupted, cut-short or
corrupted download never leaves a file under the final name. Checksums are written
``"md5:<hex>"`` or ``"sha256:<hex>"``. Network downloads show their progress on stderr
(in place on a terminal, every 10 % in a log). A failed download raises
:class:`DownloadError`, one line that names the URL and how to use a local copy instead.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from hexssl.errors import DataError


@dataclass(frozen=True)
class Resource:
    """An official archive: where to get it and its checksum."""

    url: str
    checksum: str

    @property
    def filename(self) -> str:
        """The archive's file name (the URL's last part)."""
        return url_filename(self.url)


# Official archives. CIFAR and STL-10: the md5 sums published with the datasets (and used
# by torchvision); no sha256 is published, so none is invented here. Tiny-ImageNet-200:
# Stanford publishes no checksum; this md5 is the one that loaders of the zip pin (e.g.
# lvyilin/pytorch-fgvc-dataset's tiny_imagenet.py).
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
    "tiny-imagenet-200": Resource(
        "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        "md5:90528d7ca1a48142e341f4ef8d21d0de",
    ),
}
_BLOCK = 1 << 20
TIMEOUT_S = 60  # a server silent for this long fails the download


class DownloadError(DataError):
    """A download failed (offline, refused, HTTP error, cut short); nothing was kept."""


class ChecksumError(DownloadError):
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


def url_filename(url: str) -> str:
    """The last part of a URL's path (or of a local path), e.g. ``cifar-10-python.tar.gz``."""
    return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name or "download"


def is_remote(url: str) -> bool:
    """True for URLs fetched over a network (http, https, ftp), False for files."""
    return urllib.parse.urlparse(url).scheme in ("http", "https", "ftp")


class Progress:
    """Bytes received so far, on ``stream``: in place on a terminal, every 10 % otherwise.

    Args:
        label: what is downloaded (the URL).
        total: the expected size in bytes, or None when the server did not say.
        stream: where to print (default stderr).

    Example:
        >>> bar = Progress("x.zip", 2_000_000, io.StringIO())  # doctest: +SKIP
        >>> bar.advance(1_000_000); bar.finish()  # doctest: +SKIP
    """

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.label, self.total, self.done = label, total, 0
        self._shown = -1  # the last step printed

    def _step(self) -> int:
        if self.total:
            return self.done * (100 if self.tty else 10) // self.total
        return self.done // ((1 << 20) if self.tty else (32 << 20))  # every MiB / 32 MiB

    def _line(self) -> str:
        got = f"{self.done / 1e6:.1f}"
        if self.total:
            size = f"{got}/{self.total / 1e6:.1f} MB ({100 * self.done // self.total}%)"
        else:
            size = f"{got} MB"
        return f"[hexssl] downloading {self.label}: {size}"

    def _print(self, end: str) -> None:
        print(("\r" if self.tty else "") + self._line(), end=end, file=self.stream, flush=True)

    def advance(self, n: int) -> None:
        """Count ``n`` more bytes; print when the shown step changes."""
        self.done += n
        step = self._step()
        if step != self._shown:
            self._shown = step
            self._print("" if self.tty else "\n")

    def finish(self) -> None:
        """End the progress display (the final size on its own line)."""
        if self.tty or self._shown != self._step() or self.done == 0:
            self._print("\n")


def temp_beside(path: Path) -> Path:
    """A new, empty hidden ``.part`` file in ``path``'s folder (created with the umask's mode).

    Written, then renamed over ``path`` with ``os.replace``, it makes a write atomic.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    tmp.open("xb").close()
    return tmp


def _open_url(url: str) -> BinaryIO:
    """Open an URL (http(s)/file/ftp) or a plain local path for reading."""
    if "://" not in url:  # a plain local path
        return open(Path(url).expanduser(), "rb")
    resp: BinaryIO = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    return resp


def _content_length(src: BinaryIO) -> int | None:
    """The size the server announced (None for files or when it did not say)."""
    headers = getattr(src, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value is not None and value.isdigit() else None


def _blocks(src: BinaryIO) -> Iterator[bytes]:
    """The blocks of ``src``; a connection cut short raises ConnectionError."""
    while True:
        try:
            block = src.read(_BLOCK)
        except http.client.IncompleteRead as err:
            raise ConnectionError(
                f"the connection closed after {len(err.partial)} bytes of a block, "
                f"{err.expected} more were announced"
            ) from None
        if not block:
            return
        yield block


def _stream_to(url: str, tmp: Path, algo: str) -> str:
    """Copy ``url`` into ``tmp`` (progress for network URLs); return the bytes' hex digest."""
    h = hashlib.new(algo)
    with _open_url(url) as src, open(tmp, "wb") as dst:
        total = _content_length(src)
        bar = Progress(url, total) if is_remote(url) else None
        for block in _blocks(src):
            h.update(block)
            dst.write(block)
            if bar is not None:
                bar.advance(len(block))
        if bar is not None:
            bar.finish()
        got = dst.tell()
    if total is not None and got != total:
        raise ConnectionError(f"the connection closed after {got} of the {total} bytes announced")
    return h.hexdigest()


def _failure(url: str, err: BaseException, local_hint: str | None) -> DownloadError:
    """One line: the URL, what went wrong, and how to use a copy fetched elsewhere."""
    reason = getattr(err, "reason", None) or err
    if isinstance(err, urllib.error.HTTPError):
        reason = f"HTTP {err.code} {err.reason}"
    hint = local_hint or "pass a local path or file:// URL of a copy instead"
    return DownloadError(
        f"cannot download {url} ({reason}); nothing was kept. Offline? Fetch the file "
        f"elsewhere, then {hint}"
    )


def fetch(url: str, path: Path, checksum: str | None = None, local_hint: str | None = None) -> Path:
    """Download ``url`` to ``path`` atomically, verifying ``checksum`` (skip if already good).

    Args:
        url: http(s)://, file:// URL or a local path.
        path: where the file goes; a temporary ``.part`` file beside it holds the bytes
            until they are verified.
        checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"``; ``None`` skips verification.
        local_hint: how to pass a local copy instead, named in the error when the
            download fails (e.g. a command with ``--from FILE``).

    Raises:
        DownloadError: the source cannot be read (offline, refused, HTTP error, cut short).
        ChecksumError: the bytes do not match. Either way no file is left behind.
    """
    algo, expected = parse_checksum(checksum) if checksum else ("sha256", "")
    if path.is_file() and (not expected or file_checksum(path, algo) == expected):
        return path
    if "://" not in url and not Path(url).expanduser().is_file():
        raise DownloadError(f"{url}: no such file (the local copy to use instead of a download)")
    new_folder = not path.parent.exists()
    tmp = temp_beside(path)
    done = False
    try:
        try:
            got = _stream_to(url, tmp, algo)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                TimeoutError) as err:  # fmt: skip
            raise _failure(url, err, local_hint) from None
        if expected and got != expected:
            raise ChecksumError(
                f"{url}: {algo} is {got}, expected {expected}; the file may be corrupt or "
                "truncated; nothing was kept, download again"
            )
        os.replace(tmp, path)
        done = True
    finally:
        tmp.unlink(missing_ok=True)
        if new_folder and not done and not any(path.parent.iterdir()):
            path.parent.rmdir()  # the folder this call made for the file: nothing is kept
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
    url: str,
    dest: str | Path,
    checksum: str | None = None,
    extract_archive: bool = True,
    local_hint: str | None = None,
) -> Path:
    """Download ``url`` into folder ``dest``, verify it, and extract it there if it is an archive.

    Args:
        url: http(s)://, file:// URL or a local path.
        dest: destination folder; the file keeps the URL's base name.
        checksum: ``"md5:<hex>"`` or ``"sha256:<hex>"``; ``None`` skips verification.
        extract_archive: unpack .tar/.tar.gz/.zip files into ``dest``.
        local_hint: how to pass a local copy instead, named in the error when offline.

    Returns:
        The path of the downloaded file.

    Raises:
        DownloadError: the source cannot be read (the message names the URL and the fix).
        ChecksumError: the bytes do not match (no partial file is left behind).

    Example:
        >>> download("file:///tmp/toy.tar.gz", "/tmp/data", "sha256:9f86...")  # doctest: +SKIP
    """
    dest = Path(dest).expanduser()
    path = fetch(url, dest / url_filename(url), checksum, local_hint)
    if extract_archive and is_extractable(path):
        extract(path, dest)
    return path


def download_dataset(name: str, root: str | Path, source: str | Path | None = None) -> Path:
    """Download (or copy from ``source``) an official archive (``RESOURCES``) into ``root``.

    Args:
        name: a key of :data:`RESOURCES`, e.g. "cifar10".
        root: the folder the archive is saved and extracted in.
        source: a local copy of the archive (path or URL) to use instead of the official
            URL; it is verified against the same checksum.

    Returns:
        The path of the archive under ``root``.
    """
    if name not in RESOURCES:
        raise ValueError(f"no download for {name!r}; downloadable: {sorted(RESOURCES)}")
    res = RESOURCES[name]
    hint = f"pass it with `hexssl data get {name} --from {res.filename}`"
    return download(str(source or res.url), root, res.checksum, local_hint=hint)
