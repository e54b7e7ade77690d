"""Tiny-ImageNet-hier50, the study's data: 50 Tiny-ImageNet-200 classes in 10 superclasses.

:func:`build_hier50` makes it from the official ``tiny-imagenet-200.zip`` (CS231n, Stanford):
the train and val images of the 50 classes listed in the package's
``tiny_imagenet_hier50.csv`` (``class,superclass,name``; the superclasses are the
project's choice from WordNet 3.0 hypernyms), copied byte for byte into one ``.tar.gz`` in
ImageFolder layout::

    tiny-imagenet-hier50/hierarchy.csv                  the package's csv, as is
    tiny-imagenet-hier50/train/<wnid>/<wnid>_<i>.JPEG   from train/<wnid>/images/ (500 a class)
    tiny-imagenet-hier50/val/<wnid>/val_<i>.JPEG        from val/images/, by val_annotations.txt

The val split is the official val split (50 images a class), each file keeping its name.
Members come in a fixed order (hierarchy.csv, then for each class in sorted order its
train files and then its val files, each sorted by name) with fixed metadata (mode 0644,
owner 0, time 0), so the same zip always gives the same archive. With the official zip
the uncompressed tar is byte-identical to the archive the study trained on, whose sha256
is :data:`STUDY_TAR_SHA256`; :class:`BuildResult` says whether a build matches it.

:func:`read_tiny_imagenet_hier50` reads a built archive (default: the dataset cache).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from hexssl.data.base import TensorImageDataset, datasets_dir
from hexssl.data.download import temp_beside
from hexssl.data.folders import read_imagefolder
from hexssl.errors import DataError

NAME = "tiny-imagenet-hier50"
ARCHIVE = f"{NAME}.tar.gz"
HIERARCHY_FILE = "tiny_imagenet_hier50.csv"  # package data: class,superclass,name
ZIP_LAYOUT = (
    "the official tiny-imagenet-200.zip layout: tiny-imagenet-200/train/<wnid>/images/*.JPEG, "
    "val/images/*.JPEG and val/val_annotations.txt"
)
# sha256 of the uncompressed tar of the archive the study used (tiny-imagenet-hier50.tar.gz,
# gzip sha256 3784bd70...1f2d00, 74,342,400 bytes of tar): built from the official zip, a
# build has the same tar bytes (the gzip layer differs only in its header's timestamp).
STUDY_TAR_SHA256 = "40144fd9dfd664f270a6df18a4a113abdf9367090569aa5aca539e07ca063139"
GET_COMMAND = f"hexssl data get {NAME}"


@dataclass(frozen=True)
class ClassInfo:
    """One class of the subset: WordNet id, superclass and a readable name."""

    wnid: str
    superclass: str
    name: str


def hierarchy_bytes() -> bytes:
    """The package's ``tiny_imagenet_hier50.csv``, written into the archive as is."""
    return resources.files("hexssl.data").joinpath(HIERARCHY_FILE).read_bytes()


def hier50_classes() -> list[ClassInfo]:
    """The 50 classes with their superclasses, sorted by WordNet id.

    Example:
        >>> classes = hier50_classes()
        >>> len(classes), len({c.superclass for c in classes}), classes[0]
        (50, 10, ClassInfo(wnid='n01770393', superclass='arachnid_crustacean', name='scorpion'))
    """
    rows = list(csv.reader(io.StringIO(hierarchy_bytes().decode("utf-8"))))
    return sorted((ClassInfo(*row) for row in rows[1:]), key=lambda c: c.wnid)  # 0: header


# --------------------------------------------------------------------------- building
@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_hier50` wrote.

    Attributes:
        path: the archive.
        tar_sha256: sha256 of the uncompressed tar stream.
        num_train, num_val: images in each split.
    """

    path: Path
    tar_sha256: str
    num_train: int
    num_val: int

    @property
    def matches_study(self) -> bool:
        """True when the archive holds exactly the study's files, names and order."""
        return self.tar_sha256 == STUDY_TAR_SHA256


class _HashingWriter:
    """A write-only file that hashes what passes through it on its way to ``dst``."""

    def __init__(self, dst: Any) -> None:
        self.dst, self.sha, self.size = dst, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return int(self.dst.write(data))

    def tell(self) -> int:
        return self.size


def _zip_prefix(zf: zipfile.ZipFile, source: Path) -> str:
    """The folder above ``val/`` in the zip (``tiny-imagenet-200/`` in the official one)."""
    for name in zf.namelist():
        if name == "val/val_annotations.txt" or name.endswith("/val/val_annotations.txt"):
            return name[: -len("val/val_annotations.txt")]
    raise DataError(f"{source}: no val/val_annotations.txt; expected {ZIP_LAYOUT}")


def _val_files(zf: zipfile.ZipFile, prefix: str) -> dict[str, list[str]]:
    """wnid -> its val file names, from the tab-separated ``val_annotations.txt``."""
    out: dict[str, list[str]] = {}
    text = zf.read(f"{prefix}val/val_annotations.txt").decode("utf-8")
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            out.setdefault(fields[1], []).append(fields[0])
    return out


def _train_files(zf: zipfile.ZipFile, prefix: str, wnids: set[str]) -> dict[str, list[str]]:
    """wnid -> the file names in its ``train/<wnid>/images/`` folder."""
    out: dict[str, list[str]] = {}
    for name in zf.namelist():
        parts = name[len(prefix) :].split("/")
        if len(parts) != 4 or parts[0] != "train" or parts[2] != "images":
            continue
        if parts[1] in wnids and parts[3].endswith(".JPEG"):
            out.setdefault(parts[1], []).append(parts[3])
    return out


def plan_hier50(zf: zipfile.ZipFile, source: Path) -> list[tuple[str, str]]:
    """(member of the zip, name in the archive) of every image, in archive order.

    Raises:
        DataError: the zip is not in the official layout, or a class has no train or no
            val images.
    """
    prefix = _zip_prefix(zf, source)
    classes = hier50_classes()
    train = _train_files(zf, prefix, {c.wnid for c in classes})
    val = _val_files(zf, prefix)
    plan = []
    for c in classes:
        if not train.get(c.wnid) or not val.get(c.wnid):
            raise DataError(
                f"{source}: class {c.wnid} ({c.name}) has no "
                f"{'train' if not train.get(c.wnid) else 'val'} images; expected {ZIP_LAYOUT}"
            )
        plan += [
            (f"{prefix}train/{c.wnid}/images/{f}", f"{NAME}/train/{c.wnid}/{f}")
            for f in sorted(train[c.wnid])
        ]
        plan += [
            (f"{prefix}val/images/{f}", f"{NAME}/val/{c.wnid}/{f}") for f in sorted(val[c.wnid])
        ]
    return plan


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    """One member with fixed metadata (mode 0644, owner 0, time 0: TarInfo's defaults)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _write_tar(zf: zipfile.ZipFile, plan: list[tuple[str, str]], dst: Any, source: Path) -> str:
    """Write the gzipped tar to the open file ``dst``; return the tar stream's sha256."""
    with gzip.GzipFile(ARCHIVE, "wb", compresslevel=9, fileobj=dst, mtime=0) as gz:
        tap = _HashingWriter(gz)
        with tarfile.open(fileobj=tap, mode="w", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            _add(tf, f"{NAME}/hierarchy.csv", hierarchy_bytes())
            for member, name in plan:
                try:
                    data = zf.read(member)
                except (zipfile.BadZipFile, OSError) as err:  # a bad CRC, a cut-off file
                    raise DataError(
                        f"{source}: {member}: {err}; the zip is damaged, get it again"
                    ) from None
                _add(tf, name, data)
    return tap.sha.hexdigest()


def build_hier50(source: str | Path, out: str | Path) -> BuildResult:
    """Build ``tiny-imagenet-hier50.tar.gz`` from a Tiny-ImageNet-200 zip, atomically.

    Args:
        source: the official ``tiny-imagenet-200.zip`` (or a zip in its layout).
        out: the archive to write; it appears only once complete.

    Returns:
        Where it went, the tar's sha256 (compare :data:`STUDY_TAR_SHA256`) and the counts.

    Raises:
        DataError: ``source`` is not a readable zip in the official layout.

    Example:
        >>> r = build_hier50("tiny-imagenet-200.zip", "out/hier50.tar.gz")  # doctest: +SKIP
        >>> r.num_train, r.num_val, r.matches_study  # doctest: +SKIP
        (25000, 2500, True)
    """
    source, out = Path(source).expanduser(), Path(out).expanduser()
    try:
        zf = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{source}: not a readable zip ({err}); expected {ZIP_LAYOUT}") from None
    tmp = temp_beside(out)
    try:
        with zf, open(tmp, "wb") as dst:
            plan = plan_hier50(zf, source)
            digest = _write_tar(zf, plan, dst, source)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    num_val = sum("/val/" in n for _, n in plan)
    return BuildResult(out, digest, len(plan) - num_val, num_val)


# ---------------------------------------------------------------------------- reading
def locate_hier50(root: str | Path | None) -> Path:
    """The archive (or extracted tree) that ``root`` names; default: the dataset cache.

    ``root`` may be the ``.tar.gz``, an extracted tree, or a folder holding the archive.

    Raises:
        FileNotFoundError: nothing there; the message names the command that builds it.
    """
    path = Path(root).expanduser() if root is not None else datasets_dir() / ARCHIVE
    if path.is_dir() and (path / ARCHIVE).is_file():
        path = path / ARCHIVE
    if not path.exists():
        raise FileNotFoundError(
            f"{NAME}: no data at {path}; build it with `{GET_COMMAND}` (downloads the official "
            "Tiny-ImageNet-200 zip; --from tiny-imagenet-200.zip uses a local copy), or set "
            "data.root to a built copy"
        )
    return path


def build_hint(root: str | Path) -> str:
    """For a missing ``root`` named like the built archive: how to build it and point there.

    Runs recorded with the study's copy of the archive (a path beside the repository) name
    a file that a fresh clone lacks; this says where a build goes. ``""`` for other names.
    """
    if Path(root).name != ARCHIVE:
        return ""
    return f"; {NAME} is built with `{GET_COMMAND}`, then pass data.root={datasets_dir() / ARCHIVE}"


def read_tiny_imagenet_hier50(
    root: str | Path | None = None,
    split: str = "train",
    image_size: int | None = None,
    classes: Sequence[str] | None = None,
    cache: bool = True,
    workers: int | None = None,
) -> TensorImageDataset:
    """Tiny-ImageNet-hier50 (built by ``hexssl data get tiny-imagenet-hier50``) in memory.

    Args:
        root: the built archive, its extracted tree, or a folder holding the archive;
            ``None``: ``<cache>/datasets/tiny-imagenet-hier50.tar.gz``.
        split: "train" (25,000 images) or "val" (2,500).
        image_size, classes, cache, workers: as :func:`~hexssl.data.folders.read_imagefolder`.

    Raises:
        FileNotFoundError: not built yet (the message says how).
        DataError: ``root`` holds other classes.
    """
    path = locate_hier50(root)
    ds = read_imagefolder(path, split, image_size, classes, cache, workers)
    expected = [c.wnid for c in hier50_classes()]
    if classes is None and ds.class_names != expected:
        raise DataError(
            f"{path}: holds classes {ds.class_names[:3]}... ({ds.num_classes}), not the 50 of "
            f"{NAME}; rebuild it with `{GET_COMMAND}` or read it with data.dataset=imagefolder"
        )
    return ds
