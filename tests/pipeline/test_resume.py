"""Fault tolerance: SIGKILL + resume gives the uninterrupted weights; NaN stops cleanly."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from hexssl.config import load_config
from hexssl.methods.base import NonFiniteLossError
from hexssl.methods.simclr import SimCLR
from hexssl.run.train import pretrain
from tests.subproc import run_limited

from .tiny import tiny

PRESET = "src/hexssl/configs/simclr-synthetic-demo.yaml"
SCRIPT = """
import json, os, signal, sys
from lightning.pytorch.callbacks import Callback
from hexssl.config import load_config
from hexssl.run.train import pretrain, resume

mode, run_dir, kill_at, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]

class KillAt(Callback):  # runs after the checkpoint callback of the same step
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

if mode == "train":
    pretrain(load_config(PRESET, overrides),
             [KillAt()] if kill_at else [])
else:
    resume(run_dir)
""".replace("PRESET", repr(PRESET))


def run(mode: str, run_dir: Path, kill_at: int, overrides: list[str]) -> int:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    cmd = [sys.executable, "-c", SCRIPT, mode, str(run_dir), str(kill_at), *overrides]
    return run_limited(cmd, env=env).returncode


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints/last.ckpt", weights_only=False)["state_dict"]


SETTINGS = [
    "trainer.max_epochs=3",
    "trainer.checkpoint_every_n_steps=1",
    "hex.enabled=true",
    "eval.knn_at_end=false",
]


@pytest.mark.parametrize("kill_at", [3, 4])  # mid-epoch and at an epoch boundary
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, kill_at):
    ref = tmp_path / "ref"
    assert run("train", ref, 0, tiny(tmp_path, "ref", *SETTINGS)) == 0
    cut = tmp_path / "cut"
    assert run("train", cut, kill_at, tiny(tmp_path, "cut", *SETTINGS)) == -9  # SIGKILL
    assert not list(cut.glob("checkpoints/*.tmp"))
    step = torch.load(cut / "checkpoints/last.ckpt", weights_only=False)["global_step"]
    assert step == kill_at
    assert run("resume", cut, 0, []) == 0
    a, b = final_state(ref), final_state(cut)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True, msg=key)
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["steps"] == 6


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(
        PRESET, tiny(tmp_path, "nan", "trainer.max_epochs=3", "trainer.checkpoint_every_n_steps=0")
    )
    original = SimCLR.ssl_step

    def poisoned(self, views):
        out = original(self, views)
        if self.global_step >= 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(SimCLR, "ssl_step", poisoned)
    with pytest.raises(NonFiniteLossError) as info:
        pretrain(cfg)
    msg = str(info.value)
    assert "global step 3" in msg and "last.ckpt" in msg
    ckpt = torch.load(tmp_path / "nan/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2  # the epoch-end checkpoint before the NaN, intact
    assert all(
        torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point()
    )
