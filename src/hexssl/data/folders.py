"""In-memory image-folder readers (small datasets), from a directory or a .tar/.tar.gz.

Layout: ``<root>/<split>/<class>/*.jpg|jpeg|png|...`` plus an optional ``<root>/hierarchy.csv``
with rows ``class,superclass[,name]`` that gives superlabels. ``root`` may also be a .tar or
.tar.gz archive holding that tree (under one top-level folder or none); members are streamed,
never extracted to disk.

A reader composes four jobs, each in its own module: finding the images
(:mod:`~hexssl.data.scan`), the class hierarchy (:mod:`~hexssl.data.hierarchy`),
decoding (:mod:`~hexssl.data.decode`) and the decoded-tensor cache
(:mod:`~hexssl.data.cache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hexssl.data.base import TensorImageDataset, missing_dataset_error
from hexssl.data.cache import cache_file, load_cached, save_cached, source_key
from hexssl.data.decode import decode_many, stack_decoded
from hexssl.data.hierarchy import assign_labels, read_hierarchy
from hexssl.data.scan import Entry, is_archive, scan_dir, scan_tar

FOLDER_LAYOUT = (
    "<root>/<split>/<class>/*.jpg|png, optional <root>/hierarchy.csv; root may be a .tar.gz"
)


def _scan(root: Path, split: str | None) -> tuple[list[Entry], dict[str, str]]:
    """Entries and hierarchy of a directory or archive; FileNotFoundError if there are none."""
    if not root.exists():
        raise FileNotFoundError(
            f"imagefolder: no such file or folder: {root} (data.root; expected {FOLDER_LAYOUT})"
        )
    if is_archive(root):
        entries, csv_file = scan_tar(root, split)
    else:
        top = root / split if split is not None else root
        entries = scan_dir(top, labelled=split is not None) if top.is_dir() else []
        hfile = root / "hierarchy.csv"
        csv_file = (hfile.read_bytes(), str(hfile)) if hfile.is_file() else None
    if not entries:
        where = f"{root}/{split}" if split is not None else str(root)
        layout = FOLDER_LAYOUT if split is not None else "a folder or archive of images"
        raise missing_dataset_error("imagefolder", Path(where), layout, download=False)
    return entries, read_hierarchy(*csv_file) if csv_file else {}


def _load_folder(
    root: Path, split: str | None, image_size: int | None, classes: Sequence[str] | None,
    cache: bool, workers: int | None,
) -> TensorImageDataset:  # fmt: skip
    """Shared body of the imagefolder and unlabeled readers (scan, cache, decode)."""
    key_base = (split, image_size, tuple(classes) if classes is not None else None)
    cfile = cache_file(root.name, (source_key(root, None), key_base)) if is_archive(root) else None
    if cache and cfile is not None and (hit := load_cached(cfile)) is not None:
        return hit
    entries, hierarchy = _scan(root, split)
    if cache and cfile is None:
        cfile = cache_file(root.name, (source_key(root, entries), key_base))
        if (hit := load_cached(cfile)) is not None:
            return hit
    labels, superlabels, class_names, super_names = assign_labels(entries, hierarchy, classes)
    if split is None:
        class_names, labels, superlabels = [], labels.fill_(-1), superlabels.fill_(-1)
    arrays = decode_many([e.source for e in entries], image_size, workers)
    images, keep = stack_decoded(arrays, [e.name for e in entries])
    ds = TensorImageDataset(
        images, labels[keep], superlabels[keep], class_names, super_names, int((~keep).sum())
    )
    if cache and cfile is not None:
        save_cached(cfile, ds)
    return ds


def read_imagefolder(
    root: str | Path,
    split: str = "train",
    image_size: int | None = None,
    classes: Sequence[str] | None = None,
    cache: bool = True,
    workers: int | None = None,
) -> TensorImageDataset:
    """Read ``<root>/<split>/<class>/*`` (folder or .tar/.tar.gz) into memory.

    Args:
        root: the tree's root folder, or an archive holding it.
        split: sub-folder to read, e.g. "train" or "val".
        image_size: centre-crop and resize every image to this square size (e.g. 32).
        classes: fix the class order (pass the train split's ``class_names`` to the val
            split); default: sorted class folders plus the classes in hierarchy.csv.
        cache: read/write the decoded tensor under :func:`~hexssl.data.base.cache_dir`.
        workers: decoding threads (default 1; see :func:`decode_many`).

    Example:
        >>> ds = read_imagefolder("cifar10-jpeg.tar.gz", "val")  # doctest: +SKIP
        >>> ds.images.shape, ds.superclass_names  # doctest: +SKIP
        (torch.Size([10000, 3, 32, 32]), ['animal', 'vehicle'])
    """
    return _load_folder(Path(root).expanduser(), split, image_size, classes, cache, workers)


def read_unlabeled(
    root: str | Path,
    split: str = "train",
    image_size: int | None = None,
    cache: bool = True,
    workers: int | None = None,
) -> TensorImageDataset:
    """Every image under ``root`` (recursive; folder or archive), labels -1.

    ``split`` must be "train", "unlabeled" or "all"; all three read the whole folder.
    """
    if split not in ("train", "unlabeled", "all"):
        raise ValueError(f"split {split!r}: an unlabeled folder has only 'train'/'unlabeled'/'all'")
    return _load_folder(Path(root).expanduser(), None, image_size, None, cache, workers)
