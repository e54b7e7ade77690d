"""Tiny studies for the SLURM tests: a protocol file, its results folder, its results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hexssl.study.folder import StudyFolder, fix_protocol
from hexssl.study.protocol import load_protocol, resolve_protocol

PROTOCOL = """\
presets: [simclr]
seeds: [0, 1]
eval: {knn_k: 5, knn_t: 0.07, linear_fractions: [1.0], linear_epochs: 2, purity_batch_size: 16}
base:
  trainer: {progress_bar: false}
  eval: {knn_at_end: false}
arms:
  simclr: {}
  simclr-hex: {hex: {enabled: true, warmup_epochs: 0}}
comparisons: [[simclr-hex, simclr]]
"""
# synthetic data and widths small enough for seconds per run on a busy CPU
TINY = [
    "data.options={n_super: 2, n_per_super: 2, n_per_class: 8, image_size: 16}",
    "data.image_size=16",
    "data.batch_size=16",
    "backbone.kwargs.width=4",
    "method.params.proj_hidden=32",
    "method.params.proj_out=16",
    "optim.warmup_epochs=0",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "trainer.checkpoint_every_n_steps=1",
    "eval.purity_every_n_steps=0",
]
# the metrics of a result JSON (what a run measured, not where or how long it ran)
NOT_METRICS = {"seconds", "eval_seconds", "machine", "threads", "config", "device", "torch"}


def make_study(root: Path, name: str, *overrides: str, protocol: str = PROTOCOL) -> StudyFolder:
    """A results folder with the tiny protocol fixed in it (runs under ``root/runs-NAME``)."""
    path = root / f"{name}.yaml"
    path.write_text(protocol)
    resolved = resolve_protocol(load_protocol(path), ["synthetic-cpu"], [*TINY, *overrides])
    folder = StudyFolder(root / name)
    fix_protocol(folder, resolved, root / f"runs-{name}")
    return folder


def metrics(folder: StudyFolder, arm: str, seed: int) -> dict[str, Any]:
    """The measured values of a finished run's result JSON."""
    result = json.loads(folder.result_path(arm, seed).read_text())
    return {k: v for k, v in result.items() if k not in NOT_METRICS}
