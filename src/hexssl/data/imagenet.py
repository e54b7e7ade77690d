"""ImageNet-size folders, decoded lazily in DataLoader workers with decode-time crops.

Layout: ``<root>/{train,val}/<wnid>/*.JPEG`` (val also sorted into class folders), plus an
optional ``<root>/hierarchy.csv``. Nothing is held in memory: each item is opened, cropped
and resized by Pillow when it is fetched, so batches of a fixed size stack.

A training item holds one random-resized crop of the whole image per view, each drawn
independently at that view's own scale and ratio (decoded once, JPEG draft mode), so the
views are as independent as torchvision's per-view ``RandomResizedCrop``; the on-device
augmentation then only flips, resizes and colours them.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from hexssl.data.base import Item, NamedClasses, missing_dataset_error
from hexssl.data.decode import to_rgb
from hexssl.data.hierarchy import read_hierarchy
from hexssl.data.scan import is_image


# ------------------------------------------------------------------- decode-time crops
def rrc_box(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float], u: Tensor
) -> tuple[float, float, float, float]:
    """Random-resized-crop box (left, top, right, bottom), as torchvision's 10-try rule.

    Shape:
        u: (10, 4) uniform numbers in [0, 1) (area, log-ratio, x, y per try).
    """
    area = width * height
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for a, r, x, y in u.tolist():
        target = area * (scale[0] + a * (scale[1] - scale[0]))
        aspect = math.exp(log_r[0] + r * (log_r[1] - log_r[0]))
        w, h = math.sqrt(target * aspect), math.sqrt(target / aspect)
        if w <= width and h <= height:
            left, top = x * (width - w), y * (height - h)
            return left, top, left + w, top + h
    return centre_box(width, height, 1.0)


def centre_box(width: int, height: int, frac: float) -> tuple[float, float, float, float]:
    """Centred square box whose side is ``frac`` of the shorter side."""
    side = min(width, height) * frac
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


Box = tuple[float, float, float, float]
Crop = tuple[tuple[float, float], tuple[float, float]]  # (scale, ratio) of one view


def crop_resize(path: str, size: int, boxes_fn: Callable[[int, int], Sequence[Box]]) -> Tensor:
    """Open ``path`` once, crop each box of ``boxes_fn(w, h)`` and resize it to ``size``.

    JPEG draft mode decodes at the smallest power-of-two scale that keeps every crop at
    least ``size`` pixels wide, which is what makes decode-time cropping cheap.

    Shape:
        returns: (V, 3, size, size) uint8, one per box
    """
    with Image.open(path) as img:
        w, h = img.size
        boxes = boxes_fn(w, h)
        need_w = max(math.ceil(w * size / (b[2] - b[0])) for b in boxes)
        need_h = max(math.ceil(h * size / (b[3] - b[1])) for b in boxes)
        img.draft("RGB", (need_w, need_h))
        sx, sy = img.size[0] / w, img.size[1] / h
        rgb = to_rgb(img)
        views = [
            rgb.resize(
                (size, size), Image.Resampling.BILINEAR, box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy)
            )
            for x0, y0, x1, y1 in boxes
        ]
        stacked = np.stack([np.asarray(v, dtype=np.uint8) for v in views])  # (V, size, size, 3)
        return torch.from_numpy(stacked).permute(0, 3, 1, 2)


def _pair(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = values
    return float(lo), float(hi)


SIMCLR_CROP: Crop = ((0.08, 1.0), (3 / 4, 4 / 3))  # torchvision's RandomResizedCrop defaults


class LazyImageFolder(NamedClasses, Dataset[Item]):
    """Images decoded on access (in DataLoader workers), cropped at decode time to one size.

    Train mode returns one random-resized crop of the whole image per entry of ``crops``,
    each drawn independently with its own (scale, ratio) and resized to ``image_size``:
    the views of a pair are independent crops, as with torchvision's
    ``RandomResizedCrop`` per view, and the image is decoded once for all of them. The
    on-device augmentation must then not crop again (``MultiViewAugment`` sees the
    (B, V, 3, S, S) batch and only flips and resizes). Eval mode resizes the shorter side
    to size / 0.875 and takes the centre crop.

    Args:
        files: image paths.
        labels: class index per file.
        class_names: name per class index.
        superlabel_of_class: superclass index per class (-1 if none).
        superclass_names: name per superclass index.
        image_size: output side in pixels.
        train: random crops (True) or centre crop (False).
        crops: (scale, ratio) per view (train); default two SimCLR crops, area (0.08, 1).

    Shape:
        item: ((V, 3, image_size, image_size) uint8 in train mode, (3, image_size,
        image_size) in eval mode, label, superlabel, index)

    Example:
        >>> ds = build_dataset("imagenet100", "/data/imagenet", "train")  # doctest: +SKIP
        >>> ds[0][0].shape  # doctest: +SKIP
        torch.Size([3, 224, 224])
    """

    def __init__(
        self,
        files: Sequence[str],
        labels: Sequence[int],
        class_names: Sequence[str],
        superlabel_of_class: Sequence[int] = (),
        superclass_names: Sequence[str] = (),
        image_size: int = 224,
        train: bool = True,
        crops: Sequence[Crop] = (SIMCLR_CROP, SIMCLR_CROP),
    ) -> None:
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        if train and not crops:
            raise ValueError("a training LazyImageFolder needs at least one (scale, ratio) crop")
        self.files = list(files)
        self.labels = torch.tensor(labels, dtype=torch.long)  # (N,)
        lookup = torch.tensor([*superlabel_of_class, -1] if superlabel_of_class else [-1])
        self.superlabels = (
            lookup[self.labels] if superlabel_of_class else torch.full_like(self.labels, -1)
        )
        self.class_names, self.superclass_names = list(class_names), list(superclass_names)
        self.image_size, self.train = image_size, train
        self.crops: list[Crop] = [(_pair(sc), _pair(r)) for sc, r in crops]
        self.num_skipped = 0  # per process: each DataLoader worker counts its own

    def __len__(self) -> int:
        return len(self.files)

    def boxes(self, w: int, h: int) -> list[Box]:
        """One independent random-resized-crop box per view (train), or the centre box."""
        if self.train:
            return [rrc_box(w, h, sc, r, torch.rand(10, 4)) for sc, r in self.crops]
        return [centre_box(w, h, 0.875)]  # resize 256 / crop 224 convention

    def __getitem__(self, index: int) -> Item:
        for k in range(10):  # corrupt file: warn, count, and serve the next one instead
            i = (int(index) + k) % len(self.files)
            try:
                views = crop_resize(self.files[i], self.image_size, self.boxes)
                image = views if self.train else views[0]
                return image, int(self.labels[i]), int(self.superlabels[i]), i
            except Exception as err:
                self.num_skipped += 1
                warnings.warn(f"skipped unreadable image {self.files[i]}: {err}", stacklevel=2)
        raise RuntimeError(f"10 unreadable images in a row from index {index}; check the dataset")


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of the standard ImageNet-100 subset (CMC, solo-learn)."""
    text = resources.files("hexssl.data").joinpath("imagenet100_classes.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def _imagenet_files(split_dir: Path, classes: Iterable[str]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for label, wnid in enumerate(classes):
        for e in sorted(os.scandir(split_dir / wnid), key=lambda e: e.name):
            if is_image(e.name):
                files.append(e.path)
                labels.append(label)
    return files, labels


def read_imagenet(
    root: str | Path,
    split: str = "train",
    image_size: int = 224,
    subset: Sequence[str] | None = None,
    crops: Sequence[Crop] = (SIMCLR_CROP, SIMCLR_CROP),
    train: bool | None = None,
) -> LazyImageFolder:
    """ImageNet tree ``<root>/<split>/<wnid>/*.JPEG`` (val also in class folders), lazily decoded.

    Args:
        root: folder holding ``train/`` and ``val/``.
        split: "train" or "val".
        image_size: output side (decode-time crop).
        subset: keep only these wnids (in this order); default: all class folders, sorted.
        crops: (scale, ratio) of each view's decode-time crop (train split); the training
            pipeline passes its augmentation's view settings (``build_datamodule``).
        train: random crops (default: split == "train") or centre crop.
    """
    root = Path(root).expanduser()
    split_dir = root / split
    if not split_dir.is_dir():
        layout = "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG"
        raise missing_dataset_error("imagenet", split_dir, layout, download=False)
    classes = (
        list(subset)
        if subset is not None
        else sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    )
    missing = [c for c in classes if not (split_dir / c).is_dir()]
    if missing:
        raise FileNotFoundError(
            f"imagenet: {len(missing)} class folders missing under {split_dir}, e.g. {missing[:3]}"
        )
    files, labels = _imagenet_files(split_dir, classes)
    hfile = root / "hierarchy.csv"
    hierarchy = read_hierarchy(hfile.read_bytes(), str(hfile)) if hfile.is_file() else {}
    supers = sorted(set(hierarchy.values()))
    sup_of_class = (
        [supers.index(hierarchy[c]) if c in hierarchy else -1 for c in classes] if supers else []
    )
    is_train = split.startswith("train") if train is None else train
    return LazyImageFolder(
        files, labels, classes, sup_of_class, supers, image_size, is_train, crops
    )


def read_imagenet100(
    root: str | Path,
    split: str = "train",
    image_size: int = 224,
    crops: Sequence[Crop] = (SIMCLR_CROP, SIMCLR_CROP),
    train: bool | None = None,
) -> LazyImageFolder:
    """The 100-class subset (shipped wnid list) of an ImageNet tree; see :func:`read_imagenet`."""
    return read_imagenet(root, split, image_size, imagenet100_classes(), crops, train)
