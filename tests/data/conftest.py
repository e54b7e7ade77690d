"""Fixtures that write tiny datasets in each official on-disk format.

Every test gets its own dataset cache (``HEXSSL_CACHE``) and runs single-threaded: the
tensors are tiny, and intra-op threads only spin on a shared 2-core machine.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    monkeypatch.setenv("HEXSSL_CACHE", str(tmp_path_factory.mktemp("cache")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def shared_archive(name: str) -> Path:
    """Path of a shared archive, or skip the test with a message saying where it was looked for."""
    path = (SHARED / name).resolve()
    if not path.is_file():
        pytest.skip(f"shared dataset {name} not found at {path} (see ../shared/data/README.md)")
    return path


# ------------------------------------------------------------------------- CIFAR / STL
def pixels(n: int, side: int, seed: int) -> np.ndarray:
    """(n, 3, side, side) uint8 where image i is filled with value i * 10 + channel."""
    rng = np.random.default_rng(seed)
    base = (np.arange(n) * 10)[:, None, None, None] + np.arange(3)[None, :, None, None]
    noise = rng.integers(0, 3, size=(n, 3, side, side))
    return (base + noise).astype(np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 2) -> np.ndarray:
    """Official python layout; returns the train images (10 per batch file, in order)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    _dump(d / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch})
    images = pixels(5 * per_batch, 32, seed=0)
    for b in range(5):
        chunk = images[b * per_batch : (b + 1) * per_batch]
        labels = [(b * per_batch + i) % 10 for i in range(per_batch)]
        _dump(d / f"data_batch_{b + 1}", {"data": chunk.reshape(per_batch, -1), "labels": labels})
    _dump(d / "test_batch", {"data": pixels(3, 32, 1).reshape(3, -1), "labels": [0, 8, 9]})
    return images


def write_cifar100(root: Path) -> None:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    _dump(d / "meta", {"fine_label_names": fine, "coarse_label_names": coarse})
    for split, n in (("train", 4), ("test", 2)):
        obj = {
            "data": pixels(n, 32, 2).reshape(n, -1),
            "fine_labels": [3 * i for i in range(n)],
            "coarse_labels": [i for i in range(n)],
        }
        _dump(d / split, obj)


def write_stl10(root: Path) -> np.ndarray:
    """Binary layout (column-major per image); returns the train images in (N, 3, H, W)."""
    d = root / "stl10_binary"
    d.mkdir(parents=True)
    train = pixels(2, 96, 3)
    train[0, 0, 0, 1] = 255  # one marked pixel at row 0, column 1: catches a missing transpose
    for name, imgs in (
        ("train", train),
        ("test", pixels(1, 96, 4)),
        ("unlabeled", pixels(3, 96, 5)),
    ):
        imgs.transpose(0, 1, 3, 2).tofile(d / f"{name}_X.bin")  # column-major
    np.array([1, 10], dtype=np.uint8).tofile(d / "train_y.bin")
    np.array([3], dtype=np.uint8).tofile(d / "test_y.bin")
    return train


# ------------------------------------------------------------------------- image folders
def encode(
    colour: tuple[int, int, int], size: int = 8, fmt: str = "PNG", mode: str = "RGB"
) -> bytes:
    """A solid-colour image of ``mode`` encoded as ``fmt``."""
    img = Image.new("RGB", (size, size), colour)
    img = img.convert(mode) if mode != "P" else img.convert("P", palette=Image.Palette.ADAPTIVE)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


FOLDER_FILES = {
    "train/cat/a.png": encode((200, 10, 10)),
    "train/cat/b.JPEG": encode((210, 20, 20), fmt="JPEG"),
    "train/dog/c.png": encode((10, 200, 10)),
    "train/car/d.jpg": encode((10, 10, 200), fmt="JPEG"),
    "train/car/notes.txt": b"not an image",
    "val/cat/e.png": encode((200, 10, 10)),
    "val/car/f.png": encode((10, 10, 200)),
    "hierarchy.csv": b"class,superclass,name\ncat,animal,Cat\ndog,animal,Dog\ncar,vehicle,Car\n",
}


def write_folder(root: Path, files: dict[str, bytes] = FOLDER_FILES) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def write_tar(path: Path, files: dict[str, bytes], prefix: str = "toy/") -> Path:
    """A .tar.gz of ``files`` under ``prefix`` (members written in sorted order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(prefix + rel)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_imagenet(root: Path, wnids: list[str], per_class: int = 2) -> None:
    for i, wnid in enumerate(wnids):
        for split in ("train", "val"):
            d = root / split / wnid
            d.mkdir(parents=True)
            for j in range(per_class):
                (d / f"{wnid}_{j}.JPEG").write_bytes(
                    encode((i * 20, j * 50, 90), size=40, fmt="JPEG")
                )


# --------------------------------------------------------------------- Tiny-ImageNet-200
OTHER_WNID = "n99999999"  # a class of the zip outside the 50 of hier50
TRAIN_INDICES = (0, 1, 10)  # <wnid>_10 sorts before <wnid>_2: the order is by name


def write_tiny_zip(path: Path, skip_val: str | None = None) -> dict[str, bytes]:
    """A Tiny-ImageNet-200 zip in the official layout with the 50 hier50 classes and one other.

    Each class has the train images ``<wnid>_{0,1,10}.JPEG`` and two val images,
    ``val_<c>`` and ``val_<c + 100>`` for class number c (so that the name order is not the
    number order); ``skip_val`` leaves one class without val images. Returns {file name:
    JPEG bytes} of every image, test images included.
    """
    from hexssl.data.tiny_imagenet import hier50_classes

    wnids = [c.wnid for c in hier50_classes()] + [OTHER_WNID]
    top, images, annotations = "tiny-imagenet-200", {}, []
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{top}/wnids.txt", "".join(f"{w}\n" for w in wnids))
        zf.writestr(f"{top}/words.txt", "".join(f"{w}\tthing {w}\n" for w in wnids))
        for c, wnid in enumerate(wnids):
            for i in TRAIN_INDICES:
                name = f"{wnid}_{i}.JPEG"
                images[name] = encode((c * 5, i * 20, 7), fmt="JPEG")
                zf.writestr(f"{top}/train/{wnid}/images/{name}", images[name])
            zf.writestr(f"{top}/train/{wnid}/{wnid}_boxes.txt", f"{wnid}_0.JPEG\t0\t0\t7\t7\n")
            for k in (c, c + 100):
                name = f"val_{k}.JPEG"
                images[name] = encode((c * 5, 200, k % 250), fmt="JPEG")
                zf.writestr(f"{top}/val/images/{name}", images[name])
                if wnid != skip_val:
                    annotations.append(f"{name}\t{wnid}\t0\t0\t7\t7\n")
        zf.writestr(f"{top}/val/val_annotations.txt", "".join(annotations))
        images["test_0.JPEG"] = encode((1, 2, 3), fmt="JPEG")
        zf.writestr(f"{top}/test/images/test_0.JPEG", images["test_0.JPEG"])
    return images
