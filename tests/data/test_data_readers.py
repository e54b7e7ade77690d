"""Every reader on tiny files written in its official format."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hexssl.data import DATASETS, LazyImageFolder, build_dataset, imagenet100_classes
from hexssl.data.base import TensorImageDataset
from hexssl.data.decode import decode_image
from hexssl.data.hierarchy import parse_hierarchy
from hexssl.data.imagenet import rrc_box

from .conftest import (
    FOLDER_FILES,
    encode,
    write_cifar10,
    write_cifar100,
    write_folder,
    write_imagenet,
    write_stl10,
    write_tar,
)


def as_tensor(ds: object) -> TensorImageDataset:
    assert isinstance(ds, TensorImageDataset)
    return ds


# ------------------------------------------------------------------------------ CIFAR
def test_cifar10_reads_batches_in_order(tmp_path: Path) -> None:
    images = write_cifar10(tmp_path)
    ds = as_tensor(build_dataset("cifar10", tmp_path, "train"))
    assert ds.images.shape == (10, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images, torch.from_numpy(images))
    assert ds.labels.tolist() == list(range(10))
    # animal / vehicle as in the shared hierarchy.csv
    assert ds.superclass_names == ["animal", "vehicle"]
    vehicles = {"airplane", "automobile", "ship", "truck"}
    assert ds.superlabels.tolist() == [int(c in vehicles) for c in ds.class_names]
    image, label, superlabel, index = ds[3]
    assert image.shape == (3, 32, 32) and (label, superlabel, index) == (3, 0, 3)


def test_cifar10_test_split_and_val_alias(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    test = as_tensor(build_dataset("cifar10", tmp_path / "cifar-10-batches-py", "test"))
    val = as_tensor(build_dataset("cifar10", tmp_path, "val"))
    assert test.labels.tolist() == [0, 8, 9] and torch.equal(test.images, val.images)
    assert test.superlabels.tolist() == [1, 1, 1]


def test_cifar100_uses_coarse_labels_as_superlabels(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    ds = as_tensor(build_dataset("cifar100", tmp_path, "train"))
    assert ds.labels.tolist() == [0, 3, 6, 9] and ds.superlabels.tolist() == [0, 1, 2, 3]
    assert ds.num_classes == 100 and ds.num_superclasses == 20
    assert len(as_tensor(build_dataset("cifar100", tmp_path, "test"))) == 2


# ------------------------------------------------------------------------------ STL-10
def test_stl10_binary_is_transposed_and_labels_shifted(tmp_path: Path) -> None:
    train = write_stl10(tmp_path)
    ds = as_tensor(build_dataset("stl10", tmp_path, "train"))
    assert torch.equal(ds.images, torch.from_numpy(train))  # column-major handled
    assert ds.images[0, 0, 0, 1] == 255
    assert ds.labels.tolist() == [0, 9]  # 1..10 -> 0..9
    assert ds.superlabels.tolist() == [1, 1]  # airplane, truck: vehicles


def test_stl10_unlabeled_splits(tmp_path: Path) -> None:
    write_stl10(tmp_path)
    unl = as_tensor(build_dataset("stl10", tmp_path, "unlabeled"))
    both = as_tensor(build_dataset("stl10", tmp_path, "train+unlabeled"))
    assert len(unl) == 3 and (unl.labels == -1).all() and (unl.superlabels == -1).all()
    assert len(both) == 5 and both.labels.tolist() == [0, 9, -1, -1, -1]
    with pytest.raises(ValueError, match="valid splits"):
        build_dataset("stl10", tmp_path, "extra")


# ------------------------------------------------------------------------- imagefolder
def check_toy_folder(ds: TensorImageDataset) -> None:
    assert ds.class_names == ["car", "cat", "dog"]  # sorted, like ImageFolder
    assert ds.superclass_names == ["animal", "vehicle"]
    assert ds.images.shape == (4, 3, 8, 8)
    assert ds.labels.tolist() == [0, 1, 1, 2]
    assert ds.superlabels.tolist() == [1, 0, 0, 0]
    assert ds.images[2, 0].float().mean() == pytest.approx(210, abs=6)  # the JPEG cat


def test_imagefolder_directory(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "toy")
    check_toy_folder(as_tensor(build_dataset("imagefolder", root, "train")))


def test_imagefolder_tar_gz_streamed(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "toy.tar.gz", FOLDER_FILES)
    check_toy_folder(as_tensor(build_dataset("imagefolder", archive, "train")))
    assert not (tmp_path / "toy").exists()  # nothing extracted


def test_imagefolder_tar_without_top_folder(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "flat.tar", FOLDER_FILES, prefix="")
    check_toy_folder(as_tensor(build_dataset("imagefolder", archive, "train")))


def test_imagefolder_val_keeps_train_class_order(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "toy")
    train = as_tensor(build_dataset("imagefolder", root, "train"))
    val = as_tensor(build_dataset("imagefolder", root, "val", classes=train.class_names))
    assert val.class_names == train.class_names and val.labels.tolist() == [0, 1]


def test_imagefolder_resize_at_load(tmp_path: Path) -> None:
    files = {
        "train/a/x.png": encode((0, 0, 0), size=64),
        "train/b/y.png": encode((9, 9, 9), size=40),
    }
    root = write_folder(tmp_path / "r", files)
    with pytest.raises(ValueError, match="image_size"):
        build_dataset("imagefolder", root, "train", cache=False)
    ds = as_tensor(build_dataset("imagefolder", root, "train", image_size=32))
    assert ds.images.shape == (2, 3, 32, 32) and ds.superlabels.tolist() == [-1, -1]


def test_corrupt_files_are_skipped_and_counted(tmp_path: Path) -> None:
    files = dict(FOLDER_FILES)
    files["train/dog/broken.jpg"] = b"\xff\xd8\xff garbage"
    files["train/cat/truncated.png"] = encode((1, 2, 3))[:40]
    root = write_folder(tmp_path / "toy", files)
    for _ in ("decoded", "from the cache"):  # one warning either way, never two
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            ds = as_tensor(build_dataset("imagefolder", root, "train"))
        said = [str(w.message) for w in seen if "unreadable" in str(w.message)]
        assert len(said) == 1 and "skipped 2 unreadable" in said[0], said
        assert ds.num_skipped == 2 and len(ds) == 4
        assert ds.labels.tolist() == [0, 1, 1, 2]


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG")],
)
def test_modes_become_rgb(mode: str, fmt: str) -> None:
    arr = decode_image(encode((120, 60, 30), size=8, fmt=fmt, mode=mode))
    assert arr is not None and arr.shape == (8, 8, 3) and arr.dtype == np.uint8


def test_palette_with_transparency_does_not_warn() -> None:
    img = Image.new("P", (4, 4), 1)
    img.info["transparency"] = 0
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        arr = decode_image(buf.getvalue())
    assert arr is not None and arr.shape == (4, 4, 3)


def test_hierarchy_csv_header_optional() -> None:
    assert parse_hierarchy("a,x\nb,y,Bee\n") == {"a": "x", "b": "y"}
    assert parse_hierarchy("class,superclass\na,x\n") == {"a": "x"}
    with pytest.raises(ValueError, match="class,superclass"):
        parse_hierarchy("lonely\n")


def test_cache_is_used_and_keyed_by_mtime(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "toy.tar.gz", FOLDER_FILES)
    first = as_tensor(build_dataset("imagefolder", archive, "train"))
    cache = Path(os.environ["HEXSSL_CACHE"])
    assert len(list(cache.glob("toy.tar.gz-*.pt"))) == 1
    again = as_tensor(build_dataset("imagefolder", archive, "train"))
    assert torch.equal(first.images, again.images) and again.class_names == first.class_names
    os.utime(archive, ns=(1, 1))  # a changed archive gets a new cache entry
    build_dataset("imagefolder", archive, "train")
    assert len(list(cache.glob("toy.tar.gz-*.pt"))) == 2


def test_unlabeled_folder_is_recursive(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "toy")
    ds = as_tensor(build_dataset("unlabeled", root, "train"))
    assert len(ds) == 6 and (ds.labels == -1).all() and (ds.superlabels == -1).all()
    archive = write_tar(tmp_path / "u.tar.gz", FOLDER_FILES)
    assert len(build_dataset("unlabeled", archive, "train")) == 6


# ---------------------------------------------------------------------------- ImageNet
def test_imagenet_lazy_random_crop_and_eval(tmp_path: Path) -> None:
    write_imagenet(tmp_path, ["n001", "n002"])
    (tmp_path / "hierarchy.csv").write_text("n001,a\nn002,b\n")
    train = build_dataset("imagenet", tmp_path, "train", image_size=16)
    assert isinstance(train, LazyImageFolder) and len(train) == 4
    image, label, superlabel, index = train[3]
    assert image.shape == (2, 3, 16, 16) and image.dtype == torch.uint8  # one crop per view
    assert (label, superlabel, index) == (1, 1, 3)
    val = build_dataset("imagenet", tmp_path, "val", image_size=16)
    assert isinstance(val, LazyImageFolder) and not val.train
    assert torch.equal(val[0][0], val[0][0])  # centre crop: deterministic


def test_imagenet_lazy_skips_corrupt(tmp_path: Path) -> None:
    write_imagenet(tmp_path, ["n001"], per_class=2)
    (tmp_path / "train" / "n001" / "n001_0.JPEG").write_bytes(b"broken")
    ds = build_dataset("imagenet", tmp_path, "train", image_size=8)
    assert isinstance(ds, LazyImageFolder)
    with pytest.warns(UserWarning, match="skipped unreadable"):
        _, _, _, index = ds[0]
    assert index == 1 and ds.num_skipped == 1


def test_imagenet100_selects_shipped_wnids(tmp_path: Path) -> None:
    wnids = imagenet100_classes()
    assert len(wnids) == 100 and len(set(wnids)) == 100
    write_imagenet(tmp_path, [*wnids, "n99999999"], per_class=1)
    ds = build_dataset("imagenet100", tmp_path, "train", image_size=8)
    assert isinstance(ds, LazyImageFolder)
    assert ds.class_names == wnids and len(ds) == 100


def test_rrc_box_inside_image() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        x0, y0, x1, y1 = rrc_box(
            50, 30, (0.08, 1.0), (3 / 4, 4 / 3), torch.rand(10, 4, generator=g)
        )
        assert 0 <= x0 < x1 <= 50 + 1e-6 and 0 <= y0 < y1 <= 30 + 1e-6


# ---------------------------------------------------------------------- errors, registry
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("stl10", "stl10_binary"),
        ("imagefolder", "<split>/<class>"),
        ("imagenet", "<wnid>"),
    ],
)
def test_missing_dataset_message(tmp_path: Path, name: str, expected: str) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(name, tmp_path / "nowhere", "train")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and expected in msg
    if name in ("cifar10", "cifar100", "stl10"):
        assert "download" in msg


def test_unknown_dataset_lists_names() -> None:
    with pytest.raises(ValueError, match="valid names") as err:
        build_dataset("cifar11", "x", "train")
    assert all(name in str(err.value) for name in DATASETS)


def test_directory_cache_sees_hierarchy_changes(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "toy")
    assert as_tensor(build_dataset("imagefolder", root, "train")).superclass_names == [
        "animal",
        "vehicle",
    ]
    (root / "hierarchy.csv").write_text("cat,pet\ndog,pet\ncar,machine\n")
    ds = as_tensor(build_dataset("imagefolder", root, "train"))
    assert ds.superclass_names == ["machine", "pet"] and ds.superlabels.tolist() == [0, 1, 1, 1]
