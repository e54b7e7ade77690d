"""The datasets hexssl can fetch by name: downloaded (and, for one, built) in one place.

``hexssl data get NAME`` puts a dataset into the dataset cache
(:func:`~hexssl.data.base.datasets_dir`, where the presets look when ``data.root`` is not
set) or into a folder the user names; nothing is written anywhere else. CIFAR-10/100 and
STL-10 are the official archives, checksummed and extracted; ``tiny-imagenet-hier50`` is
built from the official Tiny-ImageNet-200 zip (see :mod:`hexssl.data.tiny_imagenet`).

Example:
    >>> got = get_dataset("cifar10")  # doctest: +SKIP
    >>> print(got.message)  # doctest: +SKIP
    cifar10: extracted into ~/.cache/hexssl/datasets/cifar-10-batches-py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hexssl.data.base import datasets_dir
from hexssl.data.datasets import OFFICIAL_FOLDERS, find_official
from hexssl.data.download import RESOURCES, download, download_dataset, is_remote
from hexssl.data.tiny_imagenet import ARCHIVE, NAME, STUDY_TAR_SHA256, build_hier50
from hexssl.errors import DataError

GETTABLE = (*OFFICIAL_FOLDERS, NAME)
ZIP = "tiny-imagenet-200"  # the RESOURCES entry hier50 is built from


@dataclass(frozen=True)
class Got:
    """The outcome of :func:`get_dataset`.

    Attributes:
        name: the dataset.
        path: the extracted folder or the built archive.
        message: one line saying what was done.
        warning: a line to show when the result is not what the study used, else "".
    """

    name: str
    path: Path
    message: str
    warning: str = ""


def source_of(name: str) -> str:
    """The URL a dataset is fetched from (hier50: the zip it is built from)."""
    return RESOURCES[ZIP if name == NAME else name].url


def local_path(name: str, folder: str | Path | None = None) -> Path:
    """Where ``name`` lives once got into ``folder`` (default: the dataset cache)."""
    return datasets_dir(folder) / (ARCHIVE if name == NAME else OFFICIAL_FOLDERS[name])


def _check_name(name: str) -> None:
    if name not in GETTABLE:
        raise DataError(
            f"no dataset {name!r} to get; known: {', '.join(GETTABLE)} (other images: "
            "data.dataset=imagefolder data.root=PATH, an ImageFolder tree or .tar.gz)"
        )


def get_dataset(name: str, source: str | Path | None = None, out: str | Path | None = None) -> Got:
    """Download (or take from ``source``) dataset ``name`` into ``out`` or the dataset cache.

    Args:
        name: one of :data:`GETTABLE`.
        source: a local copy of the official archive (or a URL) instead of the official URL;
            for hier50, the Tiny-ImageNet-200 zip.
        out: the folder to put the dataset in; pass it as ``data.root`` afterwards.

    Raises:
        DataError: an unknown name, a failed download (the message names the URL and how to
            pass a local copy), a bad checksum or a zip in the wrong layout.
    """
    _check_name(name)
    folder = datasets_dir(out)
    if name == NAME:
        return _get_hier50(folder, source)
    if source is None and (found := find_official(name, folder)) is not None:
        return Got(name, found, f"{name}: already in {found}")
    download_dataset(name, folder, source)
    path = local_path(name, folder)
    return Got(name, path, f"{name}: extracted into {path} (checksum verified)")


def _get_hier50(folder: Path, source: str | Path | None) -> Got:
    """Build hier50 from the zip: downloaded (then deleted), or a local file read in place."""
    out = folder / ARCHIVE
    if source is None and out.is_file():
        return Got(NAME, out, f"{NAME}: already built, {out}")
    downloaded = source is None or is_remote(str(source))
    if downloaded:  # the official URL with its checksum, or the user's mirror
        res = RESOURCES[ZIP]
        hint = f"build from it with `hexssl data get {NAME} --from {res.filename}`"
        url = str(source or res.url)
        checksum = None if source else res.checksum
        zip_path = download(url, folder, checksum, extract_archive=False, local_hint=hint)
    else:
        zip_path = Path(str(source)).expanduser()
    print(f"[hexssl] building {NAME} from {zip_path}", flush=True)
    result = build_hier50(zip_path, out)
    if downloaded:
        zip_path.unlink()  # the archive holds all that hexssl reads of it
    counts = f"{result.num_train} train / {result.num_val} val images"
    if result.matches_study:
        return Got(NAME, out, f"{NAME}: built {out} ({counts}, the study's files exactly)")
    warning = (
        f"{NAME}: {out} holds other files than the study's archive (tar sha256 "
        f"{result.tar_sha256}, the study's {STUDY_TAR_SHA256}); was {zip_path} the official zip?"
    )
    return Got(NAME, out, f"{NAME}: built {out} ({counts})", warning)


def dataset_status(folder: str | Path | None = None) -> list[tuple[str, Path, bool, str]]:
    """(name, local path, present, source URL) of every gettable dataset in ``folder``."""
    rows = []
    for name in GETTABLE:
        path = local_path(name, folder)
        rows.append((name, path, path.exists(), source_of(name)))
    return rows
