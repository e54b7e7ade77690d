"""Tiny runs for the fault suite: every method through ``pretrain``, a few seconds each."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from hexssl.config import RunConfig, load_config
from tests.methods.helpers import TINY_PARAMS, flow

TINY = [
    "backbone.kwargs={stem: cifar, width: 4}",
    "data.batch_size=16",
    "data.image_size=16",
    "data.options={n_super: 2, n_per_super: 2, n_per_class: 8, image_size: 16}",
    "trainer.max_epochs=2",  # 2 steps per epoch: 4 steps
    "trainer.accelerator=cpu",
    "trainer.progress_bar=false",
    "trainer.log_every_n_steps=1",
    "trainer.checkpoint_every_n_steps=1",
    "eval.purity_every_n_steps=0",
    "eval.knn_at_end=false",
    "hex.warmup_epochs=0",
    "optim.warmup_epochs=0",
]


def tiny_run(tmp: Path, name: str, method: str = "simclr", *extra: str) -> RunConfig:
    """The tiny config of ``method`` writing ``tmp/name``; later overrides win."""
    params = f"method.params={flow(TINY_PARAMS.get(method, {}))}"
    return load_config(
        None, [f"method.name={method}", params, *TINY, f"output_dir={tmp}", f"name={name}", *extra]
    )


class InterruptedRunError(Exception):
    """Raised by :class:`StopAt`: the run dies right after a step checkpoint."""


class StopAt(Callback):
    """Stop the run at global step ``step``, after the checkpoint callback of that step
    (callbacks run in list order; extra callbacks come after ``RunCheckpoints``)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == self.step:
            raise InterruptedRunError(f"stopped at step {self.step}")


def checkpoint(run_dir: Path) -> dict[str, Any]:
    """The final ``last.ckpt`` of a run."""
    ckpt: dict[str, Any] = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    return ckpt


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Weights, buffers (queues, EMA, BN statistics) and optimiser state bit-identical."""
    assert a["global_step"] == b["global_step"]
    sa, sb = a["state_dict"], b["state_dict"]
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, equal_nan=True, msg=key)
    for oa, ob in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert oa["state"].keys() == ob["state"].keys()
        for idx in oa["state"]:
            for name, value in oa["state"][idx].items():
                other = ob["state"][idx][name]
                if isinstance(value, torch.Tensor):
                    torch.testing.assert_close(value, other, rtol=0, atol=0, msg=f"{idx}.{name}")
                else:
                    assert value == other, f"{idx}.{name}"
    assert a["lr_schedulers"] == b["lr_schedulers"]


def step_losses(run_dir: Path) -> dict[int, float]:
    """``train/loss`` of each step in ``run_dir``'s metrics.csv (a repeated step would show
    as a dict shorter than the rows)."""
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    out = {int(r["step"]): float(r["train/loss"]) for r in rows}
    assert len(out) == len(rows), "a step is logged twice"
    return out
