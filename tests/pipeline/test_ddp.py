"""Lightning DDP on 2 CPU processes (gloo) follows the 1-process loss trajectory."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

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


def losses(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return [float(r["train/loss"]) for r in sorted(rows, key=lambda r: int(r["step"]))]


def train(tmp: Path, name: str, *extra: str) -> Path:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "hexssl.cli",
        "pretrain",
        PRESET,
        *COMMON,
        f"output_dir={tmp}",
        f"name={name}",
        *extra,
    ]
    res = run_limited(cmd, env=env, cpu_seconds=240, wall_seconds=400)
    assert res.returncode == 0, res.stderr[-3000:]
    return tmp / name


def test_two_process_ddp_matches_one_process(tmp_path):
    one = losses(train(tmp_path, "one", "data.batch_size=16"))
    two = losses(
        train(
            tmp_path, "two", "data.batch_size=8", "trainer.devices=2", "trainer.strategy=ddp_spawn"
        )
    )
    assert len(one) == len(two) == 4
    assert two == pytest.approx(one, rel=1e-4)
