"""download(): file:// URLs and local paths only, never the network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hexssl.data import RESOURCES, ChecksumError, build_dataset
from hexssl.data.download import download, parse_checksum

from .conftest import FOLDER_FILES, write_tar


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_file_url_verifies_and_extracts(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "src" / "toy.tar.gz", FOLDER_FILES)
    dest = tmp_path / "dest"
    got = download(archive.as_uri(), dest, f"sha256:{sha256(archive)}")
    assert got == dest / "toy.tar.gz" and got.read_bytes() == archive.read_bytes()
    assert (dest / "toy" / "train" / "cat" / "a.png").is_file()
    assert len(build_dataset("imagefolder", dest / "toy", "train")) == 4
    assert sorted(p.name for p in dest.iterdir()) == ["toy", "toy.tar.gz"]  # no temp files


def test_download_local_path_with_md5(tmp_path: Path) -> None:
    src = tmp_path / "blob.bin"
    src.write_bytes(b"hello")
    md5 = hashlib.md5(b"hello").hexdigest()
    got = download(str(src), tmp_path / "out", f"md5:{md5}")
    assert got.read_bytes() == b"hello"
    assert download(str(src), tmp_path / "out", md5) == got  # bare digest, already present


def test_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "toy.tar.gz", FOLDER_FILES)
    dest = tmp_path / "dest"
    with pytest.raises(ChecksumError, match="expected 0000"):
        download(archive.as_uri(), dest, "sha256:" + "0" * 64)
    assert not dest.exists()  # not even the folder made for the file


def test_bad_checksum_spec() -> None:
    with pytest.raises(ValueError, match="md5:<hex>"):
        parse_checksum("crc32:abcd")


def test_official_resources_are_pinned() -> None:
    assert set(RESOURCES) == {"cifar10", "cifar100", "stl10", "tiny-imagenet-200"}
    for res in RESOURCES.values():
        algo, digest = parse_checksum(res.checksum)
        assert algo == "md5" and len(digest) == 32 and res.url.endswith((".tar.gz", ".zip"))
    assert RESOURCES["tiny-imagenet-200"].url == "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
