"""HexDataModule: batch shapes, fast batched sampling, DistributedSampler-style sharding."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from hexssl.data import HexDataModule, ShardedBatchSampler

from .conftest import write_folder, write_imagenet


def test_train_batches_uint8_with_drop_last() -> None:
    dm = HexDataModule("synthetic", batch_size=48, dataset_kwargs={"n_per_class": 5})
    dm.setup()
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(loader) == len(batches) == 100 // 48  # drop_last
    images, labels, superlabels, index = batches[0]
    assert images.shape == (48, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == superlabels.shape == index.shape == (48,)
    assert labels.dtype == superlabels.dtype == index.dtype == torch.long
    assert torch.equal(images, dm.train_set.images[index])  # type: ignore[union-attr]
    assert (dm.num_classes, dm.num_superclasses, dm.image_size) == (20, 5, 32)


def test_val_loader_keeps_every_image_in_order() -> None:
    dm = HexDataModule("synthetic", batch_size=32, dataset_kwargs={"n_per_class": 3})
    dm.setup()
    index = torch.cat([b[3] for b in dm.val_dataloader()])  # type: ignore[union-attr]
    assert index.tolist() == list(range(60))


def test_epochs_reshuffle_reproducibly() -> None:
    sampler = ShardedBatchSampler(20, 5, seed=1, rank=0, world_size=1)
    first = torch.cat(list(sampler))
    sampler.set_epoch(1)
    second = torch.cat(list(sampler))
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(20))
    assert not torch.equal(first, second)
    sampler.set_epoch(0)
    assert torch.equal(torch.cat(list(sampler)), first)


@pytest.mark.parametrize("drop_last", [True, False])
def test_ranks_get_disjoint_shards(drop_last: bool) -> None:
    shards = [
        torch.cat(list(ShardedBatchSampler(23, 4, True, drop_last, seed=5, rank=r, world_size=2)))
        for r in (0, 1)
    ]
    if drop_last:  # 22 kept, 11 per rank, 2 full batches of 4 each
        assert len(shards[0]) == len(shards[1]) == 8
        assert not set(shards[0].tolist()) & set(shards[1].tolist())
    else:  # padded to 24 by wrapping around, like DistributedSampler
        assert len(shards[0]) == len(shards[1]) == 12
        assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(23))


def test_sampler_matches_distributed_sampler_semantics() -> None:
    ours = ShardedBatchSampler(10, 100, shuffle=False, drop_last=False, rank=1, world_size=3)
    ref = DistributedSampler(range(10), num_replicas=3, rank=1, shuffle=False)  # type: ignore[arg-type]
    assert torch.cat(list(ours)).tolist() == list(ref)
    assert isinstance(ours, DistributedSampler)  # so Lightning does not wrap it under DDP


def test_datamodule_shards_for_rank_0_and_1_of_2() -> None:
    seen = []
    for rank in (0, 1):
        dm = HexDataModule(
            "synthetic", batch_size=10, dataset_kwargs={"n_per_class": 3}, rank=rank, world_size=2
        )
        dm.setup()
        seen.append(torch.cat([b[3] for b in dm.train_dataloader()]).tolist())
    assert len(seen[0]) == len(seen[1]) == 30 and not set(seen[0]) & set(seen[1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    sampler = ShardedBatchSampler(50, 8, seed=3)  # rank and world from torch.distributed
    torch.save(torch.cat(list(sampler)), f"{out}/{rank}.pt")
    dist.destroy_process_group()


def test_two_process_gloo_sharding(tmp_path: Path) -> None:
    # fork: the children inherit the imported modules (spawn re-imports lightning: ~5 s)
    mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="fork")
    a, b = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert len(a) == len(b) == 24 and not set(a.tolist()) & set(b.tolist())


def test_imagefolder_module_uses_train_classes_for_val(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "toy")
    dm = HexDataModule("imagefolder", root, batch_size=2)
    dm.setup()
    assert dm.val_set.class_names == dm.class_names == ["car", "cat", "dog"]  # type: ignore[union-attr]
    assert len(dm.mean) == 3 and all(0 <= m <= 1 for m in dm.mean)  # measured on train
    images = next(iter(dm.train_dataloader()))[0]
    assert images.shape == (2, 3, 8, 8)


def test_lazy_module_collates_uint8(tmp_path: Path) -> None:
    write_imagenet(tmp_path, ["n001", "n002"], per_class=3)
    dm = HexDataModule("imagenet", tmp_path, batch_size=4, dataset_kwargs={"image_size": 16})
    dm.setup()
    images, labels, superlabels, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 2, 3, 16, 16) and images.dtype == torch.uint8  # a crop per view
    assert (superlabels == -1).all() and labels.dtype == torch.long
    assert len(dm.train_dataloader()) == 1 and len(dm.val_dataloader()) == 2  # type: ignore[arg-type]
    bank = torch.cat([b[3] for b in dm.train_eval_dataloader()])
    assert bank.tolist() == list(range(6))


def test_subset_and_errors() -> None:
    dm = HexDataModule(
        "synthetic", batch_size=8, max_train_samples=50, dataset_kwargs={"n_per_class": 5}
    )
    dm.setup()
    assert len(dm.train_set) == 50  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid names"):
        HexDataModule("cifar")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ShardedBatchSampler(10, 0)


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_lightning_fit_keeps_sampler_and_reshuffles() -> None:
    import lightning as L

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(3, 1)
            self.seen: list[tuple[int, torch.Tensor]] = []

        def training_step(self, batch: tuple[torch.Tensor, ...], i: int) -> torch.Tensor:
            self.seen.append((self.current_epoch, batch[3].clone()))
            return self.net(batch[0].float().mean(dim=(2, 3))).pow(2).mean()

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = HexDataModule("synthetic", batch_size=32, dataset_kwargs={"n_per_class": 4})
    probe = Probe()
    trainer = L.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(probe, datamodule=dm)
    assert isinstance(trainer.train_dataloader.sampler, ShardedBatchSampler)  # type: ignore[union-attr]
    epochs = [torch.cat([i for e, i in probe.seen if e == k]) for k in (0, 1)]
    assert len(epochs[0]) == len(epochs[1]) == 64 and not torch.equal(epochs[0], epochs[1])


def _attach(dm: HexDataModule, device: str) -> None:
    """What Lightning gives the data module: a trainer whose strategy has a root device."""
    from types import SimpleNamespace

    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))  # type: ignore[assignment]


def test_on_device_indexes_the_resident_copy_in_the_same_order() -> None:
    # "meta" stands in for a GPU: a batch indexed from the resident copy is on it
    kwargs = {"batch_size": 16, "dataset_kwargs": {"n_per_class": 4}}
    host, resident = (
        HexDataModule("synthetic", **kwargs),
        HexDataModule("synthetic", on_device=True, **kwargs),
    )
    for dm in (host, resident):
        dm.setup()
        _attach(dm, "meta")
    loader = resident.train_dataloader()
    order = loader.sampler.shard().split(16)  # type: ignore[attr-defined]  # host-drawn
    for a, b, want in zip(host.train_dataloader(), loader, order, strict=True):
        assert a[0].device.type == "cpu" and b[0].device.type == "meta"
        assert b[3].device.type == "meta"  # the index lives where the images do
        assert b[0].dtype == torch.uint8 and torch.equal(a[3], want)  # same order
    moved = resident.train_dataloader().dataset.dataset  # type: ignore[attr-defined]
    assert moved is resident.train_eval_dataloader().dataset.dataset  # type: ignore[attr-defined]
    assert resident.train_set.images.device.type == "cpu"  # type: ignore[union-attr]  # kept


def test_on_device_without_a_trainer_stays_on_the_host() -> None:
    dm = HexDataModule(
        "synthetic", batch_size=16, on_device=True, dataset_kwargs={"n_per_class": 4}
    )
    dm.setup()
    assert next(iter(dm.train_dataloader()))[0].device.type == "cpu"  # e.g. hexssl knn


def test_on_device_refuses_lazy_datasets(tmp_path: Path) -> None:
    write_imagenet(tmp_path, ["n001", "n002"], per_class=3)
    dm = HexDataModule("imagenet", tmp_path, batch_size=4, on_device=True)
    with pytest.raises(ValueError, match=r"data\.on_device=true needs an in-memory dataset"):
        dm.setup()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_device_cuda_batches() -> None:
    dm = HexDataModule(
        "synthetic", batch_size=16, on_device=True, dataset_kwargs={"n_per_class": 4}
    )
    dm.setup()
    _attach(dm, "cuda")
    images, labels, _, index = next(iter(dm.train_dataloader()))
    assert images.is_cuda and labels.is_cuda and images.dtype == torch.uint8
    assert index.is_cuda  # the sampler's indices live on the device (no copy per step)
