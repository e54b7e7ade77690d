"""Datasets, batched on-device augmentations and the Lightning data module.

Example:
    >>> from hexssl.data import build_augmentation, build_dataset, DATASET_STATS
    >>> ds = build_dataset("synthetic", None, "val")
    >>> aug = build_augmentation("simclr", 32, *DATASET_STATS["synthetic"])
    >>> views = aug(ds.images[:8])  # two (8, 3, 32, 32) float views
"""

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
