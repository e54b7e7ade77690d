"""Datasets without data.root live in the dataset cache; cifar10 also reads an ImageFolder copy.

Every test has its own HEXSSL_CACHE (tests/data/conftest.py), so the cache starts empty.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from hexssl.cli import main
from hexssl.config import load_config
from hexssl.data import build_dataset
from hexssl.data.base import datasets_dir
from hexssl.data.datasets import ANIMAL_VEHICLE, CIFAR10_CLASSES
from hexssl.data.download import ChecksumError
from hexssl.data.get import get_dataset
from hexssl.errors import DataError
from hexssl.run.build import build_datamodule

from .conftest import encode, shared_archive, write_cifar10, write_folder, write_tar

VEHICLE = {"airplane", "automobile", "ship", "truck"}


def cifar_copy(n_train: int = 2, n_val: int = 1, hierarchy: bool = False) -> dict[str, bytes]:
    """A JPEG copy of CIFAR-10 in ImageFolder layout: train/ and val/ class folders."""
    files = {}
    for c, name in enumerate(CIFAR10_CLASSES):
        for split, n in (("train", n_train), ("val", n_val)):
            for i in range(n):
                files[f"{split}/{name}/{i:04d}.jpg"] = encode((c * 20, i * 40, 9), fmt="JPEG")
    if hierarchy:
        rows = "".join(
            f"{c},{'vehicle' if c in VEHICLE else 'animal'},{c}\n" for c in CIFAR10_CLASSES
        )
        files["hierarchy.csv"] = ("class,superclass,name\n" + rows).encode()
    return files


def test_cifar10_without_root_reads_the_cache() -> None:
    images = write_cifar10(datasets_dir())
    ds = build_dataset("cifar10", None, "train")
    assert torch.equal(ds.images, torch.from_numpy(images))


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10"])
def test_missing_cache_names_the_path_and_the_get_command(name: str) -> None:
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(name, None, "train")
    assert str(datasets_dir()) in str(err.value) and f"hexssl data get {name}" in str(err.value)


def test_a_folder_dataset_still_needs_a_root() -> None:
    with pytest.raises(DataError, match=r"'imagefolder' needs data\.root"):
        build_dataset("imagefolder", None, "train")


@pytest.mark.parametrize("form", ["folder", "tar.gz with hierarchy.csv"])
def test_cifar10_reads_an_image_folder_copy(tmp_path: Path, form: str) -> None:
    if form == "folder":
        root = write_folder(tmp_path / "cifar10-jpeg", cifar_copy())
    else:
        root = write_tar(tmp_path / "cifar10-jpeg.tar.gz", cifar_copy(hierarchy=True))
    train, test = build_dataset("cifar10", root, "train"), build_dataset("cifar10", root, "test")
    assert (len(train), len(test)) == (20, 10)  # "test" is the copy's val/
    for ds in (train, test):
        assert ds.class_names == CIFAR10_CLASSES and ds.superclass_names == ANIMAL_VEHICLE
        vehicle = [CIFAR10_CLASSES[y] in VEHICLE for y in ds.labels.tolist()]
        assert ds.superlabels.tolist() == [int(v) for v in vehicle]


def test_cifar10_refuses_a_copy_with_other_classes(tmp_path: Path) -> None:
    files = {f"train/{c}/0.png": encode((1, 2, 3)) for c in ("cat", "dog")}
    root = write_folder(tmp_path / "pets", files)
    with pytest.raises(DataError, match="not CIFAR-10's"):
        build_dataset("cifar10", root, "train")


def test_cifar10_cpu_preset_reads_the_cache_or_a_copy_one_override_away(tmp_path: Path) -> None:
    cfg = load_config(["simclr", "cifar10-cpu"])
    assert (cfg.data.dataset, cfg.data.root) == ("cifar10", None)
    assert cfg.data.options == {"download": True, "max_train_samples": 10000}
    copy = write_tar(tmp_path / "cifar10-jpeg.tar.gz", cifar_copy(n_train=3))
    cfg = load_config(["simclr", "cifar10-cpu"], [f"data.root={copy}"])
    dm = build_datamodule(cfg)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set)) == (30, 10) and dm.num_superclasses == 2


def test_get_from_a_local_copy_checks_the_official_checksum(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fake = write_tar(tmp_path / "cifar-10-python.tar.gz", {"x": b"not cifar"})
    with pytest.raises(ChecksumError, match="md5 is"):
        get_dataset("cifar10", source=fake, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["data", "get", "cifar10", "--from", str(fake)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hexssl: error: ") and err.count("\n") == 1
    assert not datasets_dir().exists()


def test_get_skips_what_is_already_there_and_list_shows_it(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    write_cifar10(datasets_dir())
    before = hashlib.sha256((datasets_dir() / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert main(["data", "get", "cifar10"]) == 0
    assert "cifar10: already in" in capsys.readouterr().out
    after = hashlib.sha256((datasets_dir() / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert before.digest() == after.digest()
    assert main(["data", "list"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert rows == {
        "cifar10": "present", "cifar100": "missing", "stl10": "missing",
        "tiny-imagenet-hier50": "missing",
    }  # fmt: skip
    assert main(["data", "get", "mnist"]) == 2
    assert "no dataset 'mnist' to get" in capsys.readouterr().err


def test_cifar10_reads_the_shared_jpeg_copy_passed_explicitly() -> None:
    ds = build_dataset("cifar10", shared_archive("cifar10-jpeg.tar.gz"), "test")
    assert ds.images.shape == (10000, 3, 32, 32) and ds.class_names == CIFAR10_CLASSES
    assert torch.bincount(ds.superlabels).tolist() == [6000, 4000]


def test_hexssl_data_list_does_not_import_lightning(tmp_path: Path) -> None:
    """`hexssl data list` and `data get` need no Lightning: hexssl.data loads its
    exports on first use, so the command does not pay ~2 s importing it."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys; from hexssl.cli import main; assert main(['data', 'list']) == 0; "
        "print('lightning' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "HEXSSL_CACHE": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0, res.stderr
    assert "cifar10" in res.stdout and res.stdout.strip().splitlines()[-1] == "False"
