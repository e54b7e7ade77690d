"""Dataset readers (official CIFAR / STL-10 formats, folders, synthetic) and their registry.

Every reader has the signature ``reader(root, split, **options)`` and returns a dataset
whose items are ``(image uint8 (3, H, W), label, superlabel, index)`` (missing labels
are -1). Small datasets come back as :class:`TensorImageDataset` (decoded, in memory);
ImageNet comes back as a :class:`LazyImageFolder` that decodes in DataLoader workers.

Example:
    >>> ds = build_dataset("synthetic", None, "train")
    >>> ds.images.shape, ds.num_classes, ds.num_superclasses
    (torch.Size([5000, 3, 32, 32]), 20, 5)
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hexssl.data.base import (
    Item,
    TensorImageDataset,
    check_split,
    datasets_dir,
    missing_dataset_error,
)
from hexssl.data.download import download_dataset
from hexssl.data.folders import read_imagefolder, read_unlabeled
from hexssl.data.imagenet import read_imagenet, read_imagenet100
from hexssl.data.scan import is_archive
from hexssl.data.synthetic import make_synthetic, read_synthetic
from hexssl.data.tiny_imagenet import read_tiny_imagenet_hier50
from hexssl.errors import DataError

# The folder each official archive extracts to; with data.root unset, it lives in the
# dataset cache (hexssl.data.base.datasets_dir).
OFFICIAL_FOLDERS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "stl10": "stl10_binary",
}
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
# Coarse hierarchy for CIFAR-10 and STL-10 (the hierarchy.csv of a JPEG copy says the same).
VEHICLES = frozenset({"airplane", "automobile", "car", "ship", "truck"})
ANIMAL_VEHICLE = ["animal", "vehicle"]  # sorted, as imagefolder sorts hierarchy.csv's superclasses
SPLIT_ALIASES = {"val": "test"}  # CIFAR and STL-10 have no val split; evaluate on test


# --------------------------------------------------------------------------- helpers
def _find_dir(root: Path, folder: str) -> Path | None:
    """``root/folder`` or ``root`` itself when it already is that folder."""
    for cand in (root / folder, root):
        if cand.name == folder and cand.is_dir():
            return cand
    return None


def _unpickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        out: dict[str, Any] = pickle.load(f, encoding="latin1")  # official files are py2 pickles
    return out


def find_official(name: str, root: str | Path | None) -> Path | None:
    """The extracted official folder of ``name`` under ``root`` (default: the dataset cache)."""
    return _find_dir(datasets_dir(root), OFFICIAL_FOLDERS[name])


def _locate(name: str, root: str | Path | None, layout: str, download: bool) -> Path:
    """The extracted official folder under ``root`` (default: the dataset cache); downloads
    it first if asked."""
    found = find_official(name, root)
    if found is None and download:
        download_dataset(name, datasets_dir(root))
        found = find_official(name, root)
    if found is None:
        raise missing_dataset_error(
            name, datasets_dir(root) / OFFICIAL_FOLDERS[name], layout, download=True
        )
    return found


def animal_vehicle_superlabels(class_names: Sequence[str]) -> torch.Tensor:
    """Superclass index (0 animal, 1 vehicle) of each class name.

    Shape:
        returns: (len(class_names),) long
    """
    return torch.tensor([int(c in VEHICLES) for c in class_names], dtype=torch.long)


def _image_folder_copy(root: str | Path | None) -> Path | None:
    """``root`` when it is an ImageFolder copy (a .tar(.gz), or a tree with train/), else None."""
    path = Path(root).expanduser() if root is not None else None
    if path is None or not (is_archive(path) or (path / "train").is_dir()):
        return None
    return path


def _read_cifar10_folder(path: Path, split: str) -> TensorImageDataset:
    """CIFAR-10 from an ImageFolder copy (e.g. JPEG): train/ and val/ (the official test split).

    Superlabels come from its hierarchy.csv, else animal / vehicle by class name.
    """
    ds = read_imagefolder(path, "val" if split == "test" else split)
    if ds.class_names != CIFAR10_CLASSES:
        raise DataError(
            f"{path}: holds classes {ds.class_names}, not CIFAR-10's {CIFAR10_CLASSES}; "
            "read other images with data.dataset=imagefolder"
        )
    if not ds.superclass_names:
        supers = animal_vehicle_superlabels(ds.class_names)[ds.labels]
        ds = TensorImageDataset(ds.images, ds.labels, supers, ds.class_names, ANIMAL_VEHICLE)
    return ds


# ----------------------------------------------------------------------------- CIFAR
def _cifar_images(data: np.ndarray) -> torch.Tensor:
    """Rows of 3072 bytes (R, G, B planes of 32x32) -> (N, 3, 32, 32) uint8."""
    return torch.from_numpy(np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))


def read_cifar10(
    root: str | Path | None = None, split: str = "train", download: bool = False
) -> TensorImageDataset:
    """CIFAR-10, official python version: ``<root>/cifar-10-batches-py/data_batch_1..5,test_batch``.

    ``root`` ``None`` is the dataset cache (:func:`~hexssl.data.base.datasets_dir`). A
    ``root`` that is an ImageFolder copy instead (a ``.tar.gz`` or a folder with ``train/``
    and ``val/`` class folders, e.g. a JPEG copy) is read as such, with the same classes.
    Superlabels: animal (0) / vehicle (1). Splits: "train", "test" ("val" = "test").
    """
    split = check_split(SPLIT_ALIASES.get(split, split), ("train", "test"), "cifar10")
    # an ImageFolder copy (checked first: no folder search for the usual root)
    if (copy := _image_folder_copy(root)) and find_official("cifar10", root) is None:
        return _read_cifar10_folder(copy, split)
    layout = "official python pickles data_batch_1..5, test_batch, batches.meta"
    d = _locate("cifar10", root, layout, download)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [_unpickle(d / n) for n in names]
    images = _cifar_images(np.concatenate([b["data"] for b in batches]))  # (N, 3, 32, 32)
    labels = torch.tensor([y for b in batches for y in b["labels"]], dtype=torch.long)
    classes = list(_unpickle(d / "batches.meta")["label_names"])
    supers = animal_vehicle_superlabels(classes)[labels]
    return TensorImageDataset(images, labels, supers, classes, ANIMAL_VEHICLE)


def read_cifar100(
    root: str | Path | None = None, split: str = "train", download: bool = False
) -> TensorImageDataset:
    """CIFAR-100, official python version: ``<root>/cifar-100-python/train, test, meta``.

    Superlabels are the 20 official coarse labels. Splits: "train", "test" ("val" = "test").
    """
    split = check_split(SPLIT_ALIASES.get(split, split), ("train", "test"), "cifar100")
    layout = "official python pickles train, test, meta"
    d = _locate("cifar100", root, layout, download)
    batch, meta = _unpickle(d / split), _unpickle(d / "meta")
    return TensorImageDataset(
        _cifar_images(batch["data"]),
        torch.tensor(batch["fine_labels"], dtype=torch.long),
        torch.tensor(batch["coarse_labels"], dtype=torch.long),
        list(meta["fine_label_names"]),
        list(meta["coarse_label_names"]),
    )


# ---------------------------------------------------------------------------- STL-10
STL10_CLASSES = [
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
]
STL10_SPLITS = ("train", "test", "unlabeled", "train+unlabeled")


def _stl_images(path: Path) -> torch.Tensor:
    """Binary file of 96x96 images stored column-major per channel -> (N, 3, 96, 96) uint8."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3, 96, 96)  # (N, C, W, H)
    return torch.from_numpy(raw).transpose(2, 3).contiguous()  # (N, 3, H, W)


def _stl_part(d: Path, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = _stl_images(d / f"{part}_X.bin")
    if part == "unlabeled":
        return images, torch.full((images.shape[0],), -1, dtype=torch.long)
    labels = torch.from_numpy(np.fromfile(d / f"{part}_y.bin", dtype=np.uint8)).long() - 1  # 1..10
    return images, labels


def read_stl10(
    root: str | Path | None = None, split: str = "train", download: bool = False
) -> TensorImageDataset:
    """STL-10 binary version: ``<root>/stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin``.

    Splits: "train", "test" ("val" = "test"), "unlabeled" and "train+unlabeled" (for
    pretraining; unlabeled images have label -1). Superlabels: animal / vehicle.
    """
    split = check_split(SPLIT_ALIASES.get(split, split), STL10_SPLITS, "stl10")
    layout = "binary train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin"
    d = _locate("stl10", root, layout, download)
    parts = [_stl_part(d, p) for p in split.split("+")]
    images = parts[0][0] if len(parts) == 1 else torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    names_file = d / "class_names.txt"
    classes = names_file.read_text().split() if names_file.is_file() else STL10_CLASSES
    lookup = torch.cat([animal_vehicle_superlabels(classes), torch.tensor([-1])])
    return TensorImageDataset(images, labels, lookup[labels], classes, ANIMAL_VEHICLE)


# -------------------------------------------------------------------------- registry
Reader = Callable[..., Dataset[Item]]

DATASETS: dict[str, Reader] = {
    "cifar10": read_cifar10,
    "cifar100": read_cifar100,
    "stl10": read_stl10,
    "imagefolder": read_imagefolder,
    "imagenet": read_imagenet,
    "imagenet100": read_imagenet100,
    "unlabeled": read_unlabeled,
    "synthetic": read_synthetic,
    "tiny-imagenet-hier50": read_tiny_imagenet_hier50,
}
# Datasets that need no data.root: built in, or kept in the dataset cache.
DEFAULT_ROOTED = ("synthetic", "cifar10", "cifar100", "stl10", "tiny-imagenet-hier50")


def build_dataset(
    name: str, root: str | Path | None, split: str = "train", **kw: Any
) -> Dataset[Item]:
    """Build dataset ``name`` from ``root`` (ignored by "synthetic").

    Args:
        name: a key of :data:`DATASETS`.
        root: where the data lives (folder or, for imagefolder/unlabeled, an archive);
            ``None`` for the datasets of :data:`DEFAULT_ROOTED` (the dataset cache).
        split: e.g. "train", "val"/"test", "unlabeled".
        **kw: reader options (e.g. ``image_size``, ``download``, ``n_super``).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names).
        FileNotFoundError: the data is not at ``root`` (the message gives the layout).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    if root is None and name not in DEFAULT_ROOTED:
        raise DataError(
            f"dataset {name!r} needs data.root (the datasets {list(DEFAULT_ROOTED)} have a "
            "default: built in, or in the dataset cache)"
        )
    check_options(name, kw)
    return DATASETS[name](root, split, **kw)


def check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse reader options (``data.options``) that the reader of ``name`` does not take."""
    reader = _OPTIONS_OF.get(name, DATASETS[name])
    valid = [k for k in inspect.signature(reader).parameters if k not in ("root", "split")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DataError(
            f"data.options: {unknown} not understood by dataset {name!r}; valid: {valid}"
        )


# Readers that forward **options to another function: check against that one.
_OPTIONS_OF: dict[str, Callable[..., Any]] = {"synthetic": make_synthetic}
