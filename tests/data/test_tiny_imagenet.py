"""tiny-imagenet-hier50: built from a zip in the official layout, read by name, and checked
against the study's archive in ../shared/data (skipped when absent)."""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from hexssl.cli import main
from hexssl.config import load_config
from hexssl.data import build_dataset
from hexssl.data.base import datasets_dir
from hexssl.data.get import get_dataset
from hexssl.data.tiny_imagenet import (
    ARCHIVE,
    NAME,
    STUDY_TAR_SHA256,
    build_hier50,
    hier50_classes,
    hierarchy_bytes,
)
from hexssl.errors import DataError
from hexssl.run.build import build_datamodule

from .conftest import OTHER_WNID, TRAIN_INDICES, shared_archive, write_tar, write_tiny_zip

SUPERS = [
    "arachnid_crustacean", "bottle_vessel", "car", "dog", "feline",
    "fruit_vegetable", "garment", "insect", "landscape", "ungulate",
]  # fmt: skip


def expected_names() -> list[str]:
    """The archive's members in order: hierarchy.csv, then per class train and val, by name."""
    names = [f"{NAME}/hierarchy.csv"]
    for c, info in enumerate(hier50_classes()):  # c: the class's number in write_tiny_zip
        train = sorted(f"{info.wnid}_{i}.JPEG" for i in TRAIN_INDICES)
        names += [f"{NAME}/train/{info.wnid}/{f}" for f in train]
        names += [
            f"{NAME}/val/{info.wnid}/{f}" for f in sorted([f"val_{c}.JPEG", f"val_{c + 100}.JPEG"])
        ]
    return names


def tar_sha256(path: Path) -> str:
    with gzip.open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_build_copies_the_50_classes_in_a_fixed_order(tmp_path: Path) -> None:
    images = write_tiny_zip(tmp_path / "tiny-imagenet-200.zip")
    result = build_hier50(tmp_path / "tiny-imagenet-200.zip", tmp_path / "a" / ARCHIVE)
    assert (result.num_train, result.num_val) == (150, 100) and not result.matches_study
    with tarfile.open(result.path) as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == expected_names()  # no other class, no test/
        for m in members:
            assert (m.mode, m.mtime, m.uid, m.gid, m.uname, m.gname) == (0o644, 0, 0, 0, "", "")
            data = tf.extractfile(m).read()
            base = m.name.rsplit("/", 1)[1]
            assert data == (hierarchy_bytes() if base == "hierarchy.csv" else images[base])
    assert result.tar_sha256 == tar_sha256(result.path)
    again = build_hier50(tmp_path / "tiny-imagenet-200.zip", tmp_path / "b" / "other-name.tar.gz")
    assert again.path.read_bytes() == result.path.read_bytes()  # deterministic, name-free
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [ARCHIVE]  # no .part left


def test_val_images_go_to_their_annotated_class(tmp_path: Path) -> None:
    write_tiny_zip(tmp_path / "t.zip")
    build_hier50(tmp_path / "t.zip", tmp_path / ARCHIVE)
    ds = build_dataset(NAME, tmp_path, "val", image_size=8)  # a folder holding the archive
    assert ds.class_names == [c.wnid for c in hier50_classes()] and ds.superclass_names == SUPERS
    assert torch.bincount(ds.labels).tolist() == [2] * 50
    assert torch.bincount(ds.superlabels).tolist() == [10] * 10  # 5 classes of 2 images each
    colour = ds.images.float().mean(dim=(2, 3))  # (N, 3): class c's val_c, val_c+100 are
    for (red, _, blue), c in zip(colour.tolist(), ds.labels.tolist(), strict=True):
        assert abs(red - 5 * c) < 4 and min(abs(blue - c), abs(blue - c - 100)) < 4  # (5c, 200, k)
    supers = {c.wnid: c.superclass for c in hier50_classes()}
    for label, superlabel in zip(ds.labels.tolist(), ds.superlabels.tolist(), strict=True):
        assert SUPERS[superlabel] == supers[ds.class_names[label]]


def test_get_builds_into_the_cache_where_the_presets_read(tmp_path: Path) -> None:
    write_tiny_zip(tmp_path / "tiny-imagenet-200.zip")
    got = get_dataset(NAME, source=tmp_path / "tiny-imagenet-200.zip")
    assert got.path == datasets_dir() / ARCHIVE and got.path.is_file()
    assert "150 train / 100 val" in got.message and "other files than the study's" in got.warning
    assert (tmp_path / "tiny-imagenet-200.zip").is_file()  # a local source is left alone
    assert get_dataset(NAME).message.endswith(f"already built, {got.path}")
    for preset, size in (("tiny-imagenet-hier50-cpu", 32), ("tiny-imagenet-hier50", 64)):
        cfg = load_config(["simclr", preset], ["data.options.max_train_samples=20"])
        assert cfg.data.dataset == NAME and cfg.data.root is None
        dm = build_datamodule(cfg)
        dm.setup()
        assert len(dm.train_set) == 20 and len(dm.val_set) == 100
        assert dm.train_set.images.shape[-1] == size


def test_missing_data_names_the_build_command(tmp_path: Path, capsys) -> None:
    with pytest.raises(FileNotFoundError, match=f"`hexssl data get {NAME}`") as err:
        build_dataset(NAME, None, "train")
    assert str(datasets_dir() / ARCHIVE) in str(err.value)
    runs = tmp_path / "runs"
    assert main(["pretrain", "simclr", "tiny-imagenet-hier50-cpu", f"output_dir={runs}"]) == 2
    line = capsys.readouterr().err
    assert line.startswith("hexssl: error: ") and line.count("\n") == 1
    assert f"hexssl data get {NAME}" in line and not runs.exists()


def test_other_classes_at_the_root_are_refused(tmp_path: Path) -> None:
    from .conftest import FOLDER_FILES

    archive = write_tar(tmp_path / "pets.tar.gz", FOLDER_FILES)
    with pytest.raises(DataError, match="not the 50 of tiny-imagenet-hier50"):
        build_dataset(NAME, archive, "train")


@pytest.mark.parametrize("fault", ["not a zip", "no annotations", "class without val", "bad crc"])
def test_a_bad_zip_is_one_error_and_leaves_nothing(tmp_path: Path, fault: str) -> None:
    src = tmp_path / "in" / "tiny.zip"
    src.parent.mkdir()
    if fault == "not a zip":
        src.write_bytes(b"<html>not found</html>")
    elif fault == "no annotations":
        with zipfile.ZipFile(src, "w") as zf:
            zf.writestr("tiny-imagenet-200/wnids.txt", "n01770393\n")
    else:
        write_tiny_zip(
            src, skip_val=hier50_classes()[3].wnid if fault == "class without val" else None
        )
    if fault == "bad crc":  # flip a byte inside the first class's first train image
        raw = bytearray(src.read_bytes())
        with zipfile.ZipFile(src) as zf:
            info = zf.getinfo(f"tiny-imagenet-200/train/{hier50_classes()[0].wnid}/images/"
                              f"{hier50_classes()[0].wnid}_0.JPEG")  # fmt: skip
        raw[info.header_offset + 30 + len(info.filename) + 20] ^= 0xFF
        src.write_bytes(bytes(raw))
    expected = {
        "not a zip": "not a readable zip", "no annotations": "val_annotations.txt",
        "class without val": f"class {hier50_classes()[3].wnid} .* has no val images",
        "bad crc": "the zip is damaged",
    }[fault]  # fmt: skip
    out = tmp_path / "out"
    with pytest.raises(DataError, match=expected):
        build_hier50(src, out / ARCHIVE)
    assert not out.exists() or list(out.iterdir()) == []


def test_an_extra_class_in_the_zip_is_left_out(tmp_path: Path) -> None:
    write_tiny_zip(tmp_path / "t.zip")
    with tarfile.open(build_hier50(tmp_path / "t.zip", tmp_path / ARCHIVE).path) as tf:
        assert not [n for n in tf.getnames() if OTHER_WNID in n or "test" in n]


# ------------------------------------------------------------- the study's archive
def official_zip_from(archive: Path, out: Path) -> Path:
    """The official layout of the archive's images: a stand-in for tiny-imagenet-200.zip."""
    annotations = []
    with tarfile.open(archive) as tf, zipfile.ZipFile(out, "w") as zf:
        for m in tf:
            parts = m.name.split("/")
            if len(parts) != 4:
                continue
            data = tf.extractfile(m).read()
            _, split, wnid, name = parts
            if split == "train":
                zf.writestr(f"tiny-imagenet-200/train/{wnid}/images/{name}", data)
            else:
                zf.writestr(f"tiny-imagenet-200/val/images/{name}", data)
                annotations.append(f"{name}\t{wnid}\t0\t0\t63\t63\n")
        zf.writestr("tiny-imagenet-200/val/val_annotations.txt", "".join(annotations))
    return out


def test_the_package_lists_the_study_archives_classes_and_superclasses() -> None:
    with tarfile.open(shared_archive(ARCHIVE)) as tf:
        first = tf.next()  # the archive's first member
        assert first is not None and first.name == f"{NAME}/hierarchy.csv"
        assert tf.extractfile(first).read() == hierarchy_bytes()


def test_the_study_archive_is_rebuilt_exactly_from_its_images(tmp_path: Path) -> None:
    """The same class list, superclasses, file names, order and bytes: the tar stream of a
    build equals the study's (only the gzip header's timestamp differs)."""
    study = shared_archive(ARCHIVE)
    result = build_hier50(official_zip_from(study, tmp_path / "t.zip"), tmp_path / ARCHIVE)
    assert result.matches_study and tar_sha256(study) == STUDY_TAR_SHA256
    assert (result.num_train, result.num_val) == (25000, 2500)
    with tarfile.open(study) as a, tarfile.open(result.path) as b:
        assert a.getnames() == b.getnames()


def test_a_recorded_copy_that_is_gone_names_the_build(tmp_path: Path) -> None:
    """Released weights record the study's copy; from a fresh clone the error says how to
    build it and where the build goes."""
    from hexssl.config import ConfigError
    from hexssl.run.eval_jobs import check_data_root, config_from

    gone = tmp_path / "elsewhere" / ARCHIVE
    cfg = config_from({}, ["data.dataset=imagefolder", f"data.root={gone}"])
    with pytest.raises(ConfigError, match=f"no such file.*`hexssl data get {NAME}`") as err:
        check_data_root(cfg)
    assert f"data.root={datasets_dir() / ARCHIVE}" in str(err.value)
    other = config_from({}, ["data.dataset=imagefolder", f"data.root={tmp_path}/pets.tar.gz"])
    with pytest.raises(ConfigError) as err:
        check_data_root(other)
    assert "hexssl data get" not in str(err.value)
