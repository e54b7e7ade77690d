"""The in-memory dataset every reader returns, plus helpers shared by all readers.

Kept apart from ``datasets.py`` (official formats, registry) and ``folders.py`` (image
folders) so that both can import it without an import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

Item = tuple[Tensor, int, int, int]
"""A dataset item: (image uint8 (3, H, W), label, superlabel, index); missing labels are -1."""


class NamedClasses:
    """``num_classes`` / ``num_superclasses`` from ``class_names`` / ``superclass_names``."""

    class_names: list[str]
    superclass_names: list[str]

    @property
    def num_classes(self) -> int:
        """Number of classes (length of ``class_names``)."""
        return len(self.class_names)

    @property
    def num_superclasses(self) -> int:
        """Number of superclasses (0 when the dataset has no hierarchy)."""
        return len(self.superclass_names)


class TensorImageDataset(NamedClasses, Dataset[Item]):
    """Decoded images held in memory as one uint8 tensor.

    Args:
        images: uint8 images.
        labels: class index per image, -1 when unknown.
        superlabels: superclass index per image, -1 when unknown (or ``None``: all -1).
        class_names: name of each class index.
        superclass_names: name of each superclass index.
        num_skipped: how many unreadable files the reader skipped.

    Shape:
        images: (N, 3, H, W) uint8; labels, superlabels: (N,) long.

    Example:
        >>> ds = TensorImageDataset(torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
        ...                         torch.tensor([0, 1, 0, 1]), None, ["a", "b"])
        >>> image, label, superlabel, index = ds[1]
        >>> image.shape, label, superlabel, index
        (torch.Size([3, 8, 8]), 1, -1, 1)
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        superlabels: Tensor | None = None,
        class_names: Sequence[str] = (),
        superclass_names: Sequence[str] = (),
        num_skipped: int = 0,
    ) -> None:
        check_images(images)
        n = images.shape[0]
        superlabels = torch.full((n,), -1, dtype=torch.long) if superlabels is None else superlabels
        for name, t in (("labels", labels), ("superlabels", superlabels)):
            if t.shape != (n,):
                raise ValueError(
                    f"{name} must have shape ({n},) to match images, got {tuple(t.shape)}"
                )
        self.images = images  # (N, 3, H, W) uint8
        self.labels = labels.long()  # (N,)
        self.superlabels = superlabels.long()  # (N,)
        self.class_names = list(class_names)
        self.superclass_names = list(superclass_names)
        self.num_skipped = num_skipped

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> Item:
        i = int(index)
        return self.images[i], int(self.labels[i]), int(self.superlabels[i]), i

    def get_batch(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Whole batch by tensor indexing (no per-item collate).

        ``index`` should live on the images' device (the loader's sampler puts it there):
        a CPU index into GPU-resident images is copied from pageable memory at every
        call, which stalls the host.

        Shape:
            index: (B,) long -> ((B, 3, H, W) uint8, (B,), (B,), (B,))
        """
        index = index.long()
        return self.images[index], self.labels[index], self.superlabels[index], index

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the stored images."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, index: Tensor) -> TensorImageDataset:
        """A new dataset with the rows in ``index`` (names and skip count kept)."""
        images, labels, superlabels, _ = self.get_batch(index)
        return TensorImageDataset(
            images, labels, superlabels, self.class_names, self.superclass_names, self.num_skipped
        )

    def to(self, device: torch.device) -> TensorImageDataset:
        """The same dataset with its tensors on ``device`` (e.g. resident on the GPU)."""
        return TensorImageDataset(
            self.images.to(device), self.labels.to(device), self.superlabels.to(device),
            self.class_names, self.superclass_names, self.num_skipped,
        )  # fmt: skip

    def __repr__(self) -> str:
        n, _, h, w = self.images.shape
        return (
            f"TensorImageDataset(n={n}, size={h}x{w}, classes={self.num_classes}, "
            f"superclasses={self.num_superclasses}, skipped={self.num_skipped})"
        )


def check_images(images: Tensor) -> None:
    """Raise ValueError unless ``images`` is a uint8 (N, 3, H, W) tensor."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be a uint8 tensor of shape (N, 3, H, W), got {images.dtype} "
            f"{tuple(images.shape)}; convert with (x * 255).round().to(torch.uint8)"
        )


def check_split(split: str, valid: Sequence[str], dataset: str) -> str:
    """Return ``split`` or raise ValueError listing the valid splits."""
    if split not in valid:
        raise ValueError(f"unknown split {split!r} for {dataset}; valid splits: {list(valid)}")
    return split


def missing_dataset_error(
    name: str, expected: Path, layout: str, download: bool
) -> FileNotFoundError:
    """A FileNotFoundError that names the expected path, the layout and how to get the data."""
    hint = (
        f"get it with `hexssl data get {name} [--out DIR]` (then data.root=DIR) or "
        "data.options.download=true"
        if download
        else "point root at a copy in that layout "
        "(hexssl.data.download.download(url, root, checksum) fetches and extracts archives)"
    )
    return FileNotFoundError(f"{name}: expected {expected} ({layout}); {hint}")


def cache_dir() -> Path:
    """The documented cache: ``$HEXSSL_CACHE``, default ``~/.cache/hexssl``.

    It holds the decoded datasets (tensor files, rebuilt when deleted) and, under
    :func:`datasets_dir`, the datasets hexssl downloads or builds itself.
    """
    env = os.environ.get("HEXSSL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hexssl"


def datasets_dir(root: str | Path | None = None) -> Path:
    """Where downloaded and built datasets live: ``root`` (``~`` expanded) when given,
    as ``data.root`` or ``--out``, else the default.

    The default is ``<cache>/datasets`` (see :func:`cache_dir`): CIFAR-10/100 and STL-10
    extracted as published, ``tiny-imagenet-hier50.tar.gz`` as ``hexssl data get`` builds it.
    """
    return Path(root).expanduser() if root is not None else cache_dir() / "datasets"
