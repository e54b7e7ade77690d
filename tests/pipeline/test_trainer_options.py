"""Trainer options from the config reach the Lightning Trainer."""

from __future__ import annotations

import os

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


def test_inside_a_slurm_job_step_lightning_uses_its_slurm_environment(tmp_path, monkeypatch):
    """The `srun` hint is silenced (hexssl.run.console), not SLURM detection: in a job step
    (what `srun` and `sbatch --ntasks` set) the run still takes ranks from SLURM."""
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    outside = trainer_for(tmp_path)
    assert isinstance(outside._accelerator_connector.cluster_environment, LightningEnvironment)
    slurm_step = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "hexssl-study", "SLURM_JOB_ID": "7"}
    slurm_step |= {"SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    for key, value in {**slurm_step, "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(key, value)
    inside = trainer_for(tmp_path)
    assert isinstance(inside._accelerator_connector.cluster_environment, SLURMEnvironment)
