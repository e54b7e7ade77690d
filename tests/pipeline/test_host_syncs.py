"""No host synchronisation in a training step outside logging steps (the GPU path).

The CPU runs the accelerator code paths (:func:`hexssl.run.hostsync.sync_free_paths`) while
:class:`~hexssl.run.hostsync.HostSyncCounter` counts every op that would stall a GPU queue
(``.item()``, ``float(t)``, ``if t:``, ``nonzero``, boolean-mask indexing, tensors built
from Python data). On the device, ``torch.cuda.set_sync_debug_mode`` confirms it
(benchmarks/gpu/device_check.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback

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
    """Counts inside steps 1 to 4: the first (lazy set-up) and last (logged) are not."""

    def __init__(self, counter: HostSyncCounter) -> None:
        self.counter = counter

    def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
        self.counter.active = 1 <= trainer.global_step <= 4

    def on_train_batch_end(self, *args: Any) -> None:
        self.counter.active = False


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
