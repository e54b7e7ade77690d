"""Where a study stands: done / running / queued / failed per run, and the time left.

Read from files only: the results folder (result JSONs, failure records), the run
folders (run locks, ``last.ckpt``, ``metrics.csv``) and the executor's own records
(:meth:`hexssl.study.executors.Executor.records`), never a scheduler's memory of the
process that started the runs.

The time left is an estimate at the speeds last logged: for each unfinished run,
``(epochs - epochs done) x steps per epoch x batch / img/s`` (a run without a speed of
its own at the median of the others), summed over runs; divided by the runs trained at
once for the wall time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hexssl.run.checkpoints import CKPT_DIR
from hexssl.run.lock import lock_holder
from hexssl.study.evaluation import read_curves
from hexssl.study.executors.base import Executor, RunKey
from hexssl.study.folder import StudyFolder
from hexssl.study.protocol import Protocol, run_name
from hexssl.study.runner import TRAIN_DONE

STATES = ("done", "running", "queued", "failed")


@dataclass
class RunStatus:
    """One run's state, its progress and what to read when it failed."""

    arm: str
    seed: int
    state: str  # done | running | queued | failed
    detail: str
    epoch: float  # epochs trained so far (NaN if unknown)
    epochs: int  # the run's length
    img_per_s: float  # median of the last logged training speeds (NaN if unknown)
    images_per_epoch: float  # steps per epoch x batch, from the logs (NaN if unknown)
    log: Path | None = None
    by_executor: bool = False  # the state comes from the executor's records (a SLURM job)

    @property
    def name(self) -> str:
        """``<arm>-s<seed>``."""
        return run_name(self.arm, self.seed)


def progress(metrics: Path, batch: int) -> tuple[float, float, float]:
    """(epochs done, recent img/s, images per epoch) from a run's ``metrics.csv``."""
    if not metrics.is_file():
        return math.nan, math.nan, math.nan
    cols = read_curves(metrics)
    epoch, step = cols.get("train/epoch_float"), cols.get("step")
    if epoch is None or step is None:
        return math.nan, math.nan, math.nan
    keep = np.isfinite(epoch) & np.isfinite(step) & (epoch > 0)  # (R,)
    if not keep.any():
        return math.nan, math.nan, math.nan
    e, s = float(epoch[keep][-1]), float(step[keep][-1])
    speed = cols.get("train/img_per_s", np.array([]))
    speed = speed[np.isfinite(speed)][-20:]  # the last 20 logged steps
    return e, float(np.median(speed)) if speed.size else math.nan, s / e * batch


def run_status(
    folder: StudyFolder, protocol: Protocol, run: RunKey, executor: Executor | None = None
) -> RunStatus:
    """The state of one run, from the files (and the executor's records when given)."""
    arm, seed = run
    cfg = protocol.arms[arm]
    epochs, batch = int(cfg["trainer"]["max_epochs"]), int(cfg["data"]["batch_size"])
    if folder.result_path(arm, seed).is_file():
        return RunStatus(arm, seed, "done", "", float(epochs), epochs, math.nan, math.nan)
    run_dir = folder.run_dir(arm, seed)
    epoch, speed, per_epoch = progress(run_dir / "metrics.csv", batch)
    state, detail, log = _state(folder, run, run_dir)
    record = executor.records(folder, [run]).get(run) if executor is not None else None
    if record is not None and state != "running":
        state, detail, log = record.state, record.detail, record.log or log
    placed = record is not None and state == record.state
    return RunStatus(arm, seed, state, detail, epoch, epochs, speed, per_epoch, log, placed)


def _state(folder: StudyFolder, run: RunKey, run_dir: Path) -> tuple[str, str, Path | None]:
    """(state, detail, log) from the locks, the failure record and the checkpoints."""
    trainer = lock_holder(run_dir)  # pretrain's lock: training now
    holder = trainer or lock_holder(folder.job_lock_dir(*run))
    if holder is not None:
        training = trainer is not None and not (run_dir / TRAIN_DONE).is_file()
        phase = "training" if training else "evaluating"
        return "running", f"{phase}: pid {holder.pid} on {holder.host}", None
    failure = folder.failure(*run)
    if failure is not None:
        reason = str(failure.get("reason", "")).splitlines()[0][:80]
        return "failed", f"exit {failure.get('exit_code')}: {reason}", folder.log_path(*run)
    if (run_dir / TRAIN_DONE).is_file():
        return "queued", "trained; evaluation left", None
    if (run_dir / CKPT_DIR / "last.ckpt").is_file():
        return "queued", "resumes from last.ckpt", None
    return "queued", "not started", None


def study_status(
    folder: StudyFolder, protocol: Protocol, runs: Sequence[RunKey], executor: Executor | None
) -> list[RunStatus]:
    """:func:`run_status` of every run, in the order given."""
    return [run_status(folder, protocol, run, executor) for run in runs]


def _hours(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def seconds_left(states: Sequence[RunStatus]) -> list[float]:
    """Training seconds left per run at the speeds last logged (NaN: nothing logged yet)."""
    speeds = [s.img_per_s for s in states if math.isfinite(s.img_per_s)]
    sizes = [s.images_per_epoch for s in states if math.isfinite(s.images_per_epoch)]
    speed = float(np.median(speeds)) if speeds else math.nan
    size = float(np.median(sizes)) if sizes else math.nan
    out = []
    for s in states:
        if s.state == "done":
            out.append(0.0)
            continue
        rate = s.img_per_s if math.isfinite(s.img_per_s) else speed
        per_epoch = s.images_per_epoch if math.isfinite(s.images_per_epoch) else size
        done = s.epoch if math.isfinite(s.epoch) else 0.0
        out.append((s.epochs - done) * per_epoch / rate)
    return out


def format_status(states: Sequence[RunStatus], workers: int = 1) -> str:
    """The ``--status`` table and its summary (counts per state, time left)."""
    left = seconds_left(states)
    lines = ["| run | state | epoch | img/s | left | detail |", "|---|---|---|---|---|---|"]
    for s, sec in zip(states, left):
        epoch = "-" if not math.isfinite(s.epoch) else f"{s.epoch:.1f} / {s.epochs}"
        rate = "-" if not math.isfinite(s.img_per_s) else f"{s.img_per_s:.0f}"
        detail = f"{s.detail}; log {s.log}" if s.state == "failed" else s.detail
        lines.append(f"| {s.name} | {s.state} | {epoch} | {rate} | {_hours(sec)} | {detail} |")
    counts = ", ".join(f"{sum(s.state == k for s in states)} {k}" for k in STATES)
    total = float(sum(left))
    at_once = max(1, min(workers, sum(s.state != "done" for s in states)))
    estimate = (
        f"training left: {_hours(total)} of run time, about {_hours(total / at_once)} with "
        f"{at_once} at once (at the speeds last logged)"
        if math.isfinite(total) else "training left: unknown until a run has logged its speed"
    )  # fmt: skip
    return "\n".join([*lines, "", f"{len(states)} runs: {counts}; {estimate}."]) + "\n"
