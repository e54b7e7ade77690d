"""The real archives in ../shared/data (skipped with a message when absent).

The default suite reads only the small splits; full train splits are marked slow.
"""

from __future__ import annotations

import time

import pytest
import torch

from hexssl.data import build_dataset
from hexssl.data.base import TensorImageDataset

from .conftest import shared_archive

SUPERS_TINY = [
    "arachnid_crustacean", "bottle_vessel", "car", "dog", "feline",
    "fruit_vegetable", "garment", "insect", "landscape", "ungulate",
]  # fmt: skip


def load(name: str, split: str, **kw: object) -> TensorImageDataset:
    ds = build_dataset("imagefolder", shared_archive(name), split, **kw)
    assert isinstance(ds, TensorImageDataset)
    return ds


def test_tiny_imagenet_val_hierarchy() -> None:
    ds = load("tiny-imagenet-hier50.tar.gz", "val", image_size=32)
    assert ds.images.shape == (2500, 3, 32, 32) and ds.num_skipped == 0
    assert ds.num_classes == 50 and ds.superclass_names == SUPERS_TINY
    assert torch.bincount(ds.labels).tolist() == [50] * 50
    assert torch.bincount(ds.superlabels).tolist() == [250] * 10  # 5 classes per superclass
    # each class maps to exactly one superclass
    pairs = torch.unique(torch.stack([ds.labels, ds.superlabels]), dim=1)
    assert pairs.shape[1] == 50


@pytest.mark.slow
def test_cifar10_jpeg_val_matches_official_split() -> None:
    ds = load("cifar10-jpeg.tar.gz", "val")
    assert ds.images.shape == (10000, 3, 32, 32) and ds.num_skipped == 0
    assert ds.superclass_names == ["animal", "vehicle"]
    assert torch.bincount(ds.labels).tolist() == [1000] * 10
    assert torch.bincount(ds.superlabels).tolist() == [6000, 4000]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-imagenet-hier50.tar.gz", "cifar10-jpeg.tar.gz"])
def test_full_train_split_and_cache(name: str) -> None:
    t0 = time.perf_counter()
    ds = load(name, "train", image_size=32)
    t1 = time.perf_counter()
    again = load(name, "train", image_size=32)
    t2 = time.perf_counter()
    assert len(ds) in (25000, 50000) and ds.num_skipped == 0
    assert torch.equal(ds.images, again.images)
    assert t2 - t1 < (t1 - t0) / 3, f"cache not faster: {t1 - t0:.1f}s then {t2 - t1:.1f}s"
