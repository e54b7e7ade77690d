"""Tiny studies for the SLURM tests: a protocol file, the CLI on it, its results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hexssl.study.executors.slurm import latest_tasks, read_submissions, scontrol_jobs
from hexssl.study.folder import StudyFolder
from tests.subproc import run_limited

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
# 8 steps an epoch x 4 epochs, a checkpoint each: long enough to be signalled mid-training
LONG = [
    *TINY,
    "data.options={n_super: 2, n_per_super: 2, n_per_class: 32, image_size: 16}",
    "trainer.max_epochs=4",
]
LONG_STEPS = 32
# the measured values of a result JSON (not where, with what or how long it ran)
NOT_METRICS = {"seconds", "eval_seconds", "machine", "threads", "config", "device", "torch"}
WAIT_SECONDS = 240


def study(
    root: Path, name: str, *args: str, overrides: list[str] = TINY, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``hexssl study ROOT/protocol.yaml synthetic-cpu --set OVERRIDES --results ROOT/NAME
    ARGS`` with ``root`` as the working directory; one thread per local worker; ``path``:
    another PATH."""
    protocol = root / "protocol.yaml"
    if not protocol.is_file():
        protocol.write_text(PROTOCOL)
    cmd = [sys.executable, "-m", "hexssl.cli", "study", str(protocol), "synthetic-cpu",
           "--set", *overrides, "--results", str(root / name), *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as each SLURM task (1 CPU): same sums
    if path is not None:
        env["PATH"] = path
    return run_limited(cmd, cwd=root, env=env, cpu_seconds=600, wall_seconds=WAIT_SECONDS)


def metrics(folder: StudyFolder, arm: str, seed: int) -> dict[str, Any]:
    """The measured values of a finished run's result JSON."""
    result = json.loads(folder.result_path(arm, seed).read_text())
    return {k: v for k, v in result.items() if k not in NOT_METRICS}


def dump(folder: StudyFolder) -> str:
    """Every log of a study (for a failing test's message)."""
    logs = sorted(folder.path.glob("logs/*.log")) + sorted(folder.path.glob("slurm/logs/*"))
    return "\n".join(f"== {p}\n{p.read_text()[-3000:]}" for p in logs)


def wait_until(what: str, ready: Callable[[], bool], *folders: StudyFolder) -> None:
    """Poll ``ready`` until it holds; fail with every log of ``folders`` after a while."""
    deadline = time.time() + WAIT_SECONDS
    while not ready():
        if time.time() > deadline:
            pytest.fail(f"not after {WAIT_SECONDS} s: {what}\n" + "\n".join(map(dump, folders)))
        time.sleep(0.1)


def task_of(folder: StudyFolder, arm: str, seed: int) -> str:
    """The latest SLURM array task (``12_3``) of a run."""
    return latest_tasks(folder)[(arm, seed)]


def job_state(folder: StudyFolder, arm: str, seed: int) -> str:
    """``JobState`` of the run's latest task, or ``GONE``."""
    task = task_of(folder, arm, seed)
    info = scontrol_jobs([task.split("_")[0]]).get(task)
    return info.state if info else "GONE"


def submitted_runs(folder: StudyFolder) -> list[list[tuple[str, int]]]:
    """The runs of each submission, oldest first."""
    return [sub.runs for sub in read_submissions(folder)]
