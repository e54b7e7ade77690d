"""Datasets, batched on-device augmentations and the Lightning data module.

Example:
    >>> from hexssl.data import build_augmentation, build_dataset, DATASET_STATS
    >>> ds = build_dataset("synthetic", None, "val")
    >>> aug = build_augmentation("simclr", 32, *DATASET_STATS["synthetic"])
    >>> views = aug(ds.images[:8])  # two (8, 3, 32, 32) float views
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below load on first use: `hexssl data list` needs no lightning
    from hexssl.data.base import Item, TensorImageDataset, cache_dir
    from hexssl.data.datamodule import DEFAULT_SPLITS, HexDataModule, ShardedBatchSampler
    from hexssl.data.datasets import DATASETS, build_dataset

    # The download() function stays in hexssl.data.download: re-exporting it here would
    # shadow the submodule of the same name.
    from hexssl.data.download import RESOURCES, ChecksumError, DownloadError, download_dataset
    from hexssl.data.imagenet import LazyImageFolder, imagenet100_classes
    from hexssl.data.synthetic import make_synthetic
    from hexssl.data.transforms import (
        DATASET_STATS,
        PRESETS,
        MultiViewAugment,
        ViewAugment,
        ViewConfig,
        build_augmentation,
        build_views,
    )

__all__ = [
    "DATASETS",
    "DATASET_STATS",
    "DEFAULT_SPLITS",
    "PRESETS",
    "RESOURCES",
    "ChecksumError",
    "DownloadError",
    "HexDataModule",
    "Item",
    "LazyImageFolder",
    "MultiViewAugment",
    "ShardedBatchSampler",
    "TensorImageDataset",
    "ViewAugment",
    "ViewConfig",
    "build_augmentation",
    "build_dataset",
    "build_views",
    "cache_dir",
    "download_dataset",
    "imagenet100_classes",
    "make_synthetic",
]

_HOME = {  # each exported name -> the submodule that defines it
    "Item": "base", "TensorImageDataset": "base", "cache_dir": "base",
    "DEFAULT_SPLITS": "datamodule", "HexDataModule": "datamodule",
    "ShardedBatchSampler": "datamodule", "DATASETS": "datasets", "build_dataset": "datasets",
    "RESOURCES": "download", "ChecksumError": "download", "DownloadError": "download",
    "download_dataset": "download", "LazyImageFolder": "imagenet",
    "imagenet100_classes": "imagenet", "make_synthetic": "synthetic",
    "DATASET_STATS": "transforms", "PRESETS": "transforms", "MultiViewAugment": "transforms",
    "ViewAugment": "transforms", "ViewConfig": "transforms",
    "build_augmentation": "transforms", "build_views": "transforms",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'hexssl.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hexssl.data.{_HOME[name]}"), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
