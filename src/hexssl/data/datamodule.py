"""Lightning data module: uint8 batches ``(images, labels, superlabels, index)`` for any dataset.

In-memory datasets skip the per-item Dataset/collate path entirely: a sampler yields a
chunk of a (seeded, per-epoch) permutation and the whole batch is one tensor index. The
sampler subclasses ``DistributedSampler`` with its semantics (each rank takes a disjoint
strided shard of the same permutation; ``set_epoch`` reseeds), so Lightning leaves it in
place under DDP instead of wrapping it. Lazy datasets (ImageNet) use a normal DataLoader
with workers. Augmentation happens later, on the device (see ``transforms.py``).

Example:
    >>> dm = HexDataModule("synthetic", batch_size=64)
    >>> dm.setup()
    >>> images, labels, superlabels, index = next(iter(dm.train_dataloader()))
    >>> images.shape, images.dtype
    (torch.Size([64, 3, 32, 32]), torch.uint8)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from hexssl.data.base import Item, NamedClasses, TensorImageDataset
from hexssl.data.datasets import build_dataset
from hexssl.data.transforms import DATASET_STATS, Stats, compute_stats

Batch = tuple[Tensor, Tensor, Tensor, Tensor]
"""(images uint8 (B, 3, H, W), labels (B,), superlabels (B,), index (B,))."""

# (train split, eval split) per dataset; eval None = no validation data.
DEFAULT_SPLITS: dict[str, tuple[str, str | None]] = {
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "stl10": ("train+unlabeled", "test"),
    "imagefolder": ("train", "val"),
    "imagenet": ("train", "val"),
    "imagenet100": ("train", "val"),
    "unlabeled": ("train", None),
    "synthetic": ("train", "val"),
    "tiny-imagenet-hier50": ("train", "val"),
}
# No fixed table: measured on the train set.
_COMPUTED_STATS = ("imagefolder", "unlabeled", "tiny-imagenet-hier50")


def dist_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world size): explicit values, else torch.distributed's, else (0, 1)."""
    on = dist.is_available() and dist.is_initialized()
    world = world_size if world_size is not None else (dist.get_world_size() if on else 1)
    return (rank if rank is not None else (dist.get_rank() if on else 0)), world


class ShardedBatchSampler(DistributedSampler[Tensor]):
    """Yields index batches (B,) of one rank's shard of a per-epoch seeded permutation.

    As ``DistributedSampler``: the permutation (seed + epoch) is shared by all ranks; it is
    truncated (``drop_last``) or padded by wrapping around to a multiple of the world
    size, and rank r takes positions r, r + world, ... Then the shard is cut into batches;
    with ``drop_last`` the short final batch is dropped.

    The permutation is drawn on the host (the same for every device, so runs and resumes
    match across machines) and, for data resident on an accelerator, moved there once
    per epoch without blocking: the batches are slices of it on the device. Indexing
    GPU-resident images with a CPU index would copy it from pageable memory and stall
    the host at every step.

    Args:
        num_samples: dataset length.
        batch_size: indices per batch.
        shuffle: permute (True) or keep order (False, for evaluation).
        drop_last: equal shards by truncation and no short final batch.
        seed: base seed, shared by all ranks.
        rank: this process's rank (default: torch.distributed or 0).
        world_size: number of processes (default: torch.distributed or 1).
        device: where the yielded indices live: the device of the data they index.

    Shape:
        yields: (B,) long

    Example:
        >>> s = ShardedBatchSampler(10, 2, shuffle=False, rank=1, world_size=2)
        >>> [b.tolist() for b in s]
        [[1, 3], [5, 7]]
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        r, w = dist_info(rank, world_size)
        super().__init__(range(num_samples), w, r, shuffle, seed, drop_last)  # type: ignore[arg-type]
        self.batch_size = batch_size
        self.length = num_samples
        self.device = torch.device(device)

    def shard(self) -> Tensor:
        """This rank's indices for the current epoch. Shape: (num_samples_per_rank,)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g)  # (N,)
        else:
            order = torch.arange(self.length)
        if self.total_size > self.length:  # pad by wrapping around, as DistributedSampler
            order = order.repeat(math.ceil(self.total_size / self.length))
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[Tensor]:
        # A generator: the permutation is drawn at the first next(), after set_epoch().
        batches = to_device_async(self.shard(), self.device).split(self.batch_size)
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        yield from batches[self._take_skip() :]

    def skip_batches(self, epoch: int, n: int) -> None:
        """On resume: drop the first ``n`` batches of ``epoch`` (already trained on) once."""
        self._skip = (epoch, n)

    def _take_skip(self) -> int:
        epoch, n = getattr(self, "_skip", (-1, 0))
        self._skip = (-1, 0)
        return n if epoch == self.epoch else 0

    def __len__(self) -> int:
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def to_device_async(t: Tensor, device: torch.device) -> Tensor:
    """``t`` on ``device`` without stalling the host: pinned, then a non-blocking copy."""
    if device.type == "cpu":
        return t
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class BatchFetcher(Dataset[Batch]):
    """Dataset view whose items are whole batches, fetched by tensor indexing."""

    def __init__(self, dataset: TensorImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: Tensor) -> Batch:
        return self.dataset.get_batch(index)


def keep_batch(batch: Any) -> Any:
    """Collate for pre-batched items: return them unchanged."""
    return batch


def own_generator(seed: int) -> torch.Generator:
    """A private generator: creating a loader iterator must not consume the global RNG
    (it would shift training randomness and break exact resume)."""
    return torch.Generator().manual_seed(seed)


def tensor_loader(
    ds: TensorImageDataset, batch_size: int, shuffle: bool, drop_last: bool, seed: int,
    rank: int | None, world_size: int | None, pin_memory: bool,
) -> DataLoader[Batch]:  # fmt: skip
    """Fast loader over an in-memory dataset (no workers needed)."""
    sampler = ShardedBatchSampler(
        len(ds), batch_size, shuffle, drop_last, seed, rank, world_size, ds.images.device
    )
    fetch = BatchFetcher(ds)
    return DataLoader(
        fetch,
        sampler=sampler,
        batch_size=None,
        collate_fn=keep_batch,
        pin_memory=pin_memory,
        generator=own_generator(seed),
    )


def lazy_loader(
    ds: Dataset[Item], batch_size: int, shuffle: bool, drop_last: bool, seed: int,
    rank: int | None, world_size: int | None, num_workers: int, pin_memory: bool,
) -> DataLoader[Item]:  # fmt: skip
    """Worker-based loader for datasets that decode on access."""
    r, w = dist_info(rank, world_size)
    sampler: DistributedSampler[Item] = DistributedSampler(
        ds, w, r, shuffle=shuffle, seed=seed, drop_last=drop_last
    )
    return DataLoader(
        ds, batch_size, sampler=sampler, drop_last=drop_last, num_workers=num_workers,
        pin_memory=pin_memory, persistent_workers=num_workers > 0,
        generator=own_generator(seed),
    )  # fmt: skip


class HexDataModule(NamedClasses, L.LightningDataModule):
    """Train / val loaders of uint8 batches for any dataset in ``DATASETS``.

    Args:
        dataset: a dataset name (see :data:`~hexssl.data.datasets.DATASETS`).
        root: where the data lives (unused by "synthetic").
        batch_size: images per batch and per process.
        num_workers: DataLoader workers (lazy datasets only; in-memory ones need none).
        train_split: default from :data:`DEFAULT_SPLITS` (e.g. "train+unlabeled" for STL-10).
        val_split: default from :data:`DEFAULT_SPLITS`; None: no validation loader.
        dataset_kwargs: reader options, e.g. ``{"image_size": 32}``.
        val_batch_size: default ``batch_size``.
        max_train_samples: keep a seeded random subset of the train split (in-memory only).
        seed: shuffling seed (per epoch: seed + epoch).
        pin_memory: pin batches for faster host-to-GPU copies.
        on_device: keep in-memory datasets on the training device (the Trainer's root
            device) as uint8 and index batches there: no host-to-device copy per step.
        rank, world_size: override torch.distributed's values (tests, custom launchers).

    Example:
        >>> dm = HexDataModule("cifar10", "data/", batch_size=256)  # doctest: +SKIP
        >>> dm.setup(); dm.num_classes, dm.mean  # doctest: +SKIP
        (10, (0.4914, 0.4822, 0.4465))
    """

    def __init__(
        self,
        dataset: str,
        root: str | Path | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        train_split: str | None = None,
        val_split: str | None = "default",
        dataset_kwargs: dict[str, Any] | None = None,
        val_batch_size: int | None = None,
        max_train_samples: int | None = None,
        seed: int = 0,
        pin_memory: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        on_device: bool = False,
    ) -> None:
        super().__init__()
        if dataset not in DEFAULT_SPLITS:
            raise ValueError(f"unknown dataset {dataset!r}; valid names: {sorted(DEFAULT_SPLITS)}")
        default_train, default_val = DEFAULT_SPLITS[dataset]
        self.dataset_name, self.root = dataset, root
        self.train_split = train_split or default_train
        self.val_split = default_val if val_split == "default" else val_split
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_batch_size = val_batch_size or batch_size
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.max_train_samples, self.seed, self.pin_memory = max_train_samples, seed, pin_memory
        self.rank, self.world_size = rank, world_size
        self.on_device = on_device
        self._resident: dict[int, TensorImageDataset] = {}  # id(CPU dataset) -> on device
        self.train_set: Dataset[Item] | None = None
        self.val_set: Dataset[Item] | None = None
        self._stats: Stats | None = None

    # ------------------------------------------------------------------ building
    def _build(self, split: str, **extra: Any) -> Dataset[Item]:
        return build_dataset(
            self.dataset_name, self.root, split, **{**self.dataset_kwargs, **extra}
        )

    def _class_kwargs(self, train: Dataset[Item]) -> dict[str, Any]:
        """Make the eval split use the train split's class order."""
        names = getattr(train, "class_names", None)
        key = {
            "imagefolder": "classes",
            "tiny-imagenet-hier50": "classes",
            "imagenet": "subset",
        }.get(self.dataset_name)
        return {key: names} if key and names else {}

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets once (safe to call again)."""
        if self.train_set is None:
            self.train_set = self._subsample(self._build(self.train_split))
            self._stats = self._measure_stats(self.train_set)
            if self.on_device and not isinstance(self.train_set, TensorImageDataset):
                raise ValueError(
                    f"data.on_device=true needs an in-memory dataset, but {self.dataset_name!r} "
                    "decodes images as it reads them (with workers); set data.on_device=false"
                )
        if self.val_set is None and self.val_split is not None:
            self.val_set = self._build(self.val_split, **self._class_kwargs(self.train_set))

    def _subsample(self, ds: Dataset[Item]) -> Dataset[Item]:
        n = self.max_train_samples
        if n is None or not isinstance(ds, TensorImageDataset) or n >= len(ds):
            return ds
        g = torch.Generator().manual_seed(self.seed)
        return ds.subset(torch.randperm(len(ds), generator=g)[:n].sort().values)

    # ---------------------------------------------------------------- loaders
    def _loader(self, ds: Dataset[Item], batch_size: int, train: bool) -> DataLoader[Any]:
        args = (batch_size, train, train, self.seed, self.rank, self.world_size)
        if isinstance(ds, TensorImageDataset):
            ds = self._on_training_device(ds)
            return tensor_loader(ds, *args, self.pin_memory and ds.images.device.type == "cpu")
        return lazy_loader(ds, *args, self.num_workers, self.pin_memory)

    def _on_training_device(self, ds: TensorImageDataset) -> TensorImageDataset:
        """``ds`` moved once to the Trainer's root device when ``on_device`` (else ``ds``).

        Without a Trainer (e.g. ``hexssl knn``) the data stays where it is.
        """
        device = getattr(getattr(self.trainer, "strategy", None), "root_device", None)
        if not self.on_device or device is None or ds.images.device == device:
            return ds
        if id(ds) not in self._resident:
            self._resident[id(ds)] = ds.to(device)
        return self._resident[id(ds)]

    def _require(self, ds: Dataset[Item] | None, what: str) -> Dataset[Item]:
        if ds is None:
            raise RuntimeError(
                f"no {what} dataset: call setup() first (val_split={self.val_split!r})"
            )
        return ds

    def train_dataloader(self) -> DataLoader[Any]:
        """Shuffled (seed + epoch), sharded across ranks, last short batch dropped.

        After a mid-epoch resume (``resume_skip = (epoch, batches done)``, set by the
        trainer's resume hook), the batches already trained on in that epoch are skipped.
        """
        loader = self._loader(self._require(self.train_set, "train"), self.batch_size, train=True)
        skip = getattr(self, "resume_skip", None)
        if skip is not None and isinstance(loader.sampler, ShardedBatchSampler):
            loader.sampler.skip_batches(*skip)
        elif skip is not None and skip[1] > 0:
            warnings.warn(
                "mid-epoch resume of a lazy dataset restarts the epoch's data order", stacklevel=2
            )
        self.resume_skip = None
        return loader

    def val_dataloader(self) -> DataLoader[Any] | list[Any]:
        """Eval split in order, sharded, nothing dropped; [] when there is no eval split."""
        if self.val_split is None:
            return []
        return self._loader(self._require(self.val_set, "val"), self.val_batch_size, train=False)

    def train_eval_dataloader(self) -> DataLoader[Any]:
        """The train split in order without augmentation-time cropping (kNN feature banks)."""
        ds = self._require(self.train_set, "train")
        if not isinstance(ds, TensorImageDataset):
            ds = self._build(self.train_split, train=False, **self._class_kwargs(ds))
        return self._loader(ds, self.val_batch_size, train=False)

    # -------------------------------------------------------------- metadata
    def _measure_stats(self, ds: Dataset[Item]) -> Stats:
        if self.dataset_name in _COMPUTED_STATS and isinstance(ds, TensorImageDataset):
            return compute_stats(ds.images)
        return DATASET_STATS[self.dataset_name]

    @property
    def stats(self) -> Stats:
        """(mean, std) for normalisation: the dataset's table entry, or measured on train."""
        return self._stats if self._stats is not None else DATASET_STATS[self.dataset_name]

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per-channel mean in [0, 1]."""
        return self.stats[0]

    @property
    def std(self) -> tuple[float, float, float]:
        """Per-channel std in [0, 1]."""
        return self.stats[1]

    # read-only here: the train split's names (NamedClasses declares plain attributes)
    @property
    def class_names(self) -> list[str]:  # type: ignore[override]
        """Class names of the train split."""
        return list(getattr(self._require(self.train_set, "train"), "class_names", []))

    @property
    def superclass_names(self) -> list[str]:  # type: ignore[override]
        """Superclass names of the train split (empty without a hierarchy)."""
        return list(getattr(self._require(self.train_set, "train"), "superclass_names", []))

    @property
    def image_size(self) -> int:
        """Side of the stored (or decode-time cropped) images."""
        ds = self._require(self.train_set, "train")
        return int(ds[0][0].shape[-1])
