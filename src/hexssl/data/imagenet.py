"""ImageNet-size folders, decoded lazily in DataLoader workers with a decode-time crop.

Layout: ``<root>/{train,val}/<wnid>/*.JPEG`` (val also sorted into class folders), plus an
optional ``<root>/hierarchy.csv``. Nothing is held in memory: each item is opened, cropped
and resized by Pillow when it is fetched, so batches of a fixed size stack.
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
from hexssl.data.folders import is_image, read_hierarchy, to_rgb


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


def crop_resize(path: str, size: int, box_fn: Callable[[int, int], tuple[float, ...]]) -> Tensor:
    """Open ``path``, crop ``box_fn(w, h)`` and resize it to (3, size, size) uint8.

    JPEG draft mode decodes at the smallest power-of-two scale that keeps the crop at least
    ``size`` pixels wide, which is what makes decode-time cropping cheap.
    """
    with Image.open(path) as img:
        w, h = img.size
        box = box_fn(w, h)
        need = (math.ceil(w * size / (box[2] - box[0])), math.ceil(h * size / (box[3] - box[1])))
        img.draft("RGB", need)
        sx, sy = img.size[0] / w, img.size[1] / h
        scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        out = to_rgb(img).resize((size, size), Image.Resampling.BILINEAR, box=scaled)
        return torch.from_numpy(np.asarray(out, dtype=np.uint8).copy()).permute(2, 0, 1)


class LazyImageFolder(NamedClasses, Dataset[Item]):
    """Images decoded on access (in DataLoader workers), cropped at decode time to one size.

    Train mode takes a random-resized crop at decode time with ``scale`` (default
    (0.25, 1)) so that batches stack; the on-device augmentation then crops each view
    again, independently. Build it with ``precrop_scale=scale[0]``
    (``HexDataModule.precrop_scale``) so its crop ranges are divided by 0.25: SimCLR's
    (0.08, 1) becomes (0.32, 1), and 0.25 * 0.32 = 0.08 again. Eval mode resizes the
    shorter side to size / 0.875 and takes the centre crop.

    Args:
        files: image paths.
        labels: class index per file.
        class_names: name per class index.
        superlabel_of_class: superclass index per class (-1 if none).
        superclass_names: name per superclass index.
        image_size: output side in pixels.
        train: random crop (True) or centre crop (False).
        scale: decode-time crop area range (train).
        ratio: decode-time crop aspect range (train).

    Shape:
        item: ((3, image_size, image_size) uint8, label, superlabel, index)

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
        scale: tuple[float, float] = (0.25, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if len(files) != len(labels):
            raise ValueError(f"{len(files)} files but {len(labels)} labels")
        self.files = list(files)
        self.labels = torch.tensor(labels, dtype=torch.long)  # (N,)
        lookup = torch.tensor([*superlabel_of_class, -1] if superlabel_of_class else [-1])
        self.superlabels = (
            lookup[self.labels] if superlabel_of_class else torch.full_like(self.labels, -1)
        )
        self.class_names, self.superclass_names = list(class_names), list(superclass_names)
        self.image_size, self.train, self.scale, self.ratio = image_size, train, scale, ratio
        self.num_skipped = 0  # per process: each DataLoader worker counts its own

    def __len__(self) -> int:
        return len(self.files)

    def _box(self, w: int, h: int) -> tuple[float, float, float, float]:
        if self.train:
            return rrc_box(w, h, self.scale, self.ratio, torch.rand(10, 4))
        return centre_box(w, h, 0.875)  # resize 256 / crop 224 convention

    def __getitem__(self, index: int) -> Item:
        for k in range(10):  # corrupt file: warn, count, and serve the next one instead
            i = (int(index) + k) % len(self.files)
            try:
                image = crop_resize(self.files[i], self.image_size, self._box)
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
    scale: tuple[float, float] = (0.25, 1.0),
    train: bool | None = None,
) -> LazyImageFolder:
    """ImageNet tree ``<root>/<split>/<wnid>/*.JPEG`` (val also in class folders), lazily decoded.

    Args:
        root: folder holding ``train/`` and ``val/``.
        split: "train" or "val".
        image_size: output side (decode-time crop).
        subset: keep only these wnids (in this order); default: all class folders, sorted.
        scale: decode-time random crop area range (train split).
        train: random crop (default: split == "train") or centre crop.
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
        files, labels, classes, sup_of_class, supers, image_size, is_train, scale
    )


def read_imagenet100(
    root: str | Path,
    split: str = "train",
    image_size: int = 224,
    scale: tuple[float, float] = (0.25, 1.0),
    train: bool | None = None,
) -> LazyImageFolder:
    """The 100-class subset (shipped wnid list) of an ImageNet tree; see :func:`read_imagenet`."""
    return read_imagenet(root, split, image_size, imagenet100_classes(), scale, train)
