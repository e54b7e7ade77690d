"""No host synchronisation in a training step outside logging steps (the GPU path).

The CPU runs the accelerator code paths (:func:`hexssl.run.hostsync.sync_free_paths`) while
:class:`~hexssl.run.hostsync.HostSyncCounter` counts every op that would stall a GPU queue
(``.item()``, ``float(t)``, ``if t:``, ``nonzero``, boolean-mask indexing, tensors built
from Python data, blocking host-to-device copies) over whole steps: from the end of one
step to the end of the next, so the batch fetch and every hook count. On the device,
``torch.cuda.set_sync_debug_mode`` confirms it (benchmarks/gpu/device_check.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from hexssl.data.base import TensorImageDataset
from hexssl.data.datamodule import HexDataModule
from hexssl.run.hostsync import HostSyncCounter, sync_free_paths
from hexssl.run.train import pretrain
from tests.faults.helpers import tiny_run
from tests.methods.helpers import TINY_PARAMS

QUIET = [  # 6 steps, logged and checkpointed only at the end of the run
    "data.options={n_super: 2, n_per_super: 2, n_per_class: 24, image_size: 16}",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1000",
    "trainer.checkpoint_every_n_steps=1000",
    "hex.enabled=true",
]


class CountSteps(Callback):
    """Counts whole steps 1 to 4, each from the end of the step before (batch fetch, the
    loop's and every hook included) to its own end; step 0 (lazy set-up) and the last,
    logged step do not count."""

    def __init__(self, counter: HostSyncCounter) -> None:
        self.counter = counter

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        self.counter.active = 1 <= trainer.global_step <= 4  # global_step: steps done


def count_syncs(tmp_path: Any, method: str, *extra: str) -> HostSyncCounter:
    counter = HostSyncCounter()
    counter.active = False
    cfg = tiny_run(tmp_path, method, method, *QUIET, *extra)
    with sync_free_paths(), counter:
        pretrain(cfg, [CountSteps(counter)])
    return counter


@pytest.mark.parametrize("method", sorted(TINY_PARAMS))
def test_a_training_step_never_syncs_with_the_device(tmp_path, method):
    counter = count_syncs(tmp_path, method)
    assert counter.total == 0, f"host syncs in 4 steps of {method}:\n{counter.report()}"


@pytest.mark.parametrize("hex_opts", [["hex.variant=reference"], ["hex.ema=0.9"]])
def test_hex_variants_never_sync(tmp_path, hex_opts):
    counter = count_syncs(tmp_path, "simclr", *hex_opts)
    assert counter.total == 0, counter.report()


def test_the_counter_catches_a_sync_added_to_the_step(tmp_path, monkeypatch):
    from hexssl.methods.base import SSLMethod

    probe = SSLMethod._probe

    def probe_with_a_sync(self: Any, feats: torch.Tensor, labels: torch.Tensor) -> Any:
        if bool((labels >= 0).any()):  # the kind of guard a sync-free step must not have
            pass
        return probe(self, feats, labels)

    monkeypatch.setattr(SSLMethod, "_probe", probe_with_a_sync)
    counter = count_syncs(tmp_path, "simclr")
    assert counter.total == 4 and "__bool__" in counter.report()


def test_the_counter_catches_a_sync_in_the_batch_fetch(tmp_path, monkeypatch):
    """The fetch of the next batch runs between two steps: the window must cover it."""
    get_batch = TensorImageDataset.get_batch

    def get_batch_with_a_sync(self: TensorImageDataset, index: torch.Tensor) -> Any:
        int(index[0])  # reads a value back: a sync on a GPU
        return get_batch(self, index)

    monkeypatch.setattr(TensorImageDataset, "get_batch", get_batch_with_a_sync)
    counter = count_syncs(tmp_path, "simclr")
    assert counter.total == 4 and "__int__" in counter.report(), counter.report()


def test_batches_of_device_resident_data_are_indexed_on_the_device():
    """data.on_device=true: the sampler's indices live where the images do.

    ``meta`` stands in for the GPU (a non-CPU device this CPU has): a host index into
    device-resident images is a blocking copy at every step, which the counter reports.
    """
    dm = HexDataModule(
        "synthetic", batch_size=8, on_device=True,
        dataset_kwargs={"n_super": 2, "n_per_super": 2, "n_per_class": 6, "image_size": 8},
    )  # fmt: skip
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    dm.setup()
    batches_left = iter(dm.train_dataloader())  # moves the data once, draws a loader seed
    counter = HostSyncCounter()
    with counter:  # the batch fetches of an epoch
        batches = list(batches_left)
    assert len(batches) == 3
    for images, labels, _, index in batches:
        assert images.device.type == labels.device.type == index.device.type == "meta"
    assert counter.total == 0, counter.report()


def test_the_counter_reports_host_tensors_in_device_ops():
    images = torch.empty(10, 3, 4, 4, dtype=torch.uint8, device="meta")
    index = torch.arange(3)
    with HostSyncCounter() as counter:
        images[index]  # the implicit copy of the index
        index.to("meta")  # blocking
        index.to("meta", non_blocking=True)  # asynchronous (from pinned memory on a GPU)
        images[torch.tensor(1)]  # a 0-d host tensor passes as a value
    assert counter.report().count("host->device") == 2, counter.report()
