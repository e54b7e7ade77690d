"""Trainer options from the config reach the Lightning Trainer."""

from __future__ import annotations

from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm

from hexssl.config import load_config
from hexssl.run.train import make_trainer


def trainer_for(tmp_path, *overrides: str):  # type: ignore[no-untyped-def]
    cfg = load_config(None, ["trainer.accelerator=cpu", "trainer.progress_bar=false", *overrides])
    return make_trainer(cfg, tmp_path, [])


def test_sync_batchnorm_reaches_the_ddp_strategy(tmp_path):
    on = trainer_for(tmp_path, "trainer.strategy=ddp", "trainer.sync_batchnorm=true")
    assert isinstance(on.strategy._layer_sync, TorchSyncBatchNorm)
    off = trainer_for(tmp_path, "trainer.strategy=ddp")
    assert off.strategy._layer_sync is None  # the default: per-process statistics
