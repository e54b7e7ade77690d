"""Lightning DDP on 2 CPU processes (gloo) follows the 1-process loss trajectory."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from tests.faults.helpers import assert_same_state, checkpoint, step_losses
from tests.pipeline.test_preempt import DRIVER, RARE
from tests.subproc import run_limited

PRESET = "src/hexssl/configs/simclr-synthetic-demo.yaml"
# No BatchNorm anywhere (ViT + BN-free projector) and deterministic views: with those, the
# only difference between the two set-ups is how the global batch is split.
COMMON = [
    "backbone.name=vit_tiny",
    "backbone.kwargs={img_size: 16, patch_size: 8}",
    "method.params={projector: moco_v2, proj_hidden: 32, proj_out: 16}",
    "data.image_size=16",
    "data.options={n_per_class: 8, n_super: 2, n_per_super: 2, image_size: 16}",
    "data.aug_overrides={crop: false, flip_p: 0.0, jitter_p: 0.0, gray_p: 0.0}",
    "hex.enabled=true",
    "hex.warmup_epochs=0",
    "optim.warmup_epochs=0",
    "optim.name=sgd",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=1",
    "eval.purity_every_n_steps=0",
    "eval.knn_at_end=false",
    "trainer.limit_val_batches=0",
]


ENV = dict(os.environ, OMP_NUM_THREADS="1")


def pretrain_cmd(tmp: Path, name: str, *extra: str) -> list[str]:
    head = [sys.executable, "-m", "hexssl.cli", "pretrain", PRESET, *COMMON]
    return [*head, f"output_dir={tmp}", f"name={name}", *extra]


def train(tmp: Path, name: str, *extra: str) -> Path:
    res = run_limited(pretrain_cmd(tmp, name, *extra), env=ENV, cpu_seconds=240, wall_seconds=400)
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / name


def test_two_process_ddp_matches_one_process(tmp_path):
    one = step_losses(train(tmp_path, "one", "data.batch_size=16"))
    two = step_losses(
        train(
            tmp_path, "two", "data.batch_size=8", "trainer.devices=2", "trainer.strategy=ddp_spawn"
        )
    )
    assert list(one) == list(two) == [0, 1, 2, 3]
    assert list(two.values()) == pytest.approx(list(one.values()), rel=1e-4)


# 2 processes x 12 steps an epoch x 2 epochs; a stop is agreed every 8 steps or at an epoch end
DDP_RUN = [
    "data.options={n_per_class: 48, n_super: 2, n_per_super: 2, image_size: 16}",
    "data.batch_size=8",
    "trainer.devices=2",
    "trainer.strategy=ddp",
    RARE,
]


@pytest.mark.slow
def test_sigterm_to_the_first_ddp_process_stops_both_and_resume_is_exact(tmp_path):
    """SLURM may signal one task first: the other agrees at the next agreement step, both
    stop at the same step, one line is printed, and resume continues the same trajectory."""
    ref = train(tmp_path, "ref", *DDP_RUN)
    cut = tmp_path / "cut"
    driver = [sys.executable, "-c", DRIVER, str(int(signal.SIGTERM)), str(cut / "metrics.csv"), "2"]
    res = run_limited(
        [*driver, *pretrain_cmd(tmp_path, "cut", *DDP_RUN)],
        env=ENV, cpu_seconds=240, wall_seconds=400,
    )  # fmt: skip
    assert res.returncode == 143, f"the run was not stopped by the signal:\n{res.stderr[-2000:]}"
    stopped = [ln for ln in res.stderr.splitlines() if "stopped by SIGTERM" in ln]
    assert len(stopped) == 1 and f"hexssl resume {cut}" in stopped[0], res.stderr[-2000:]
    step = checkpoint(cut)["global_step"]
    assert step in (8, 12, 16), step  # an agreement step or an epoch end, before the last
    cmd = [sys.executable, "-m", "hexssl.cli", "resume", str(cut)]
    assert run_limited(cmd, env=ENV, cpu_seconds=240, wall_seconds=400).returncode == 0
    assert_same_state(checkpoint(ref), checkpoint(cut))
    ref_losses, cut_losses = step_losses(ref), step_losses(cut)
    assert list(cut_losses) == list(ref_losses) == list(range(24))  # no row lost at the stop
    assert list(cut_losses.values()) == pytest.approx(list(ref_losses.values()), rel=1e-5)
