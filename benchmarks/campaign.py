"""Our own study campaigns across sessions and machines: worker pool, claims, snapshots, git.

The library's runner (:mod:`hexssl.study`) trains a study's runs one after another and
writes only its results. This module adds what we use to run our studies on shared,
short-lived machines, and nothing in ``src/`` depends on it:

* a pool of worker processes, each claiming the next free run with a pid file
  (``<runs>/<arm>-s<seed>.claim``), so that no run is trained twice;
* in-flight snapshots: an unfinished run's ``last.ckpt`` copied under the results
  (``--snapshot``), so that the next session, on any machine, resumes it;
* ``git add`` / ``git commit`` of each finished run's files (``--git-commit``), and the
  source revision recorded in each result;
* ``--status``: each run's state and the training time left.

Used by ``benchmarks/hex_study.py``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hexssl.run.train import last_checkpoint
from hexssl.study import (
    TRAIN_DONE,
    Study,
    read_curves,
    run_name,
    start,
)
from hexssl.study import run_one as run_study_one
from hexssl.study import transfer as study_transfer


@dataclass
class Campaign(Study):
    """A :class:`~hexssl.study.Study` whose finished runs may be committed to git."""

    git_commit: bool = False

    def claim_path(self, name: str) -> Path:
        """The file a worker holds (its pid inside) while it trains run ``name``."""
        return self.runs_dir / f"{name}.claim"


def schedule(c: Campaign) -> list[tuple[str, int]]:
    """The campaign's runs in the order that completes the comparisons soonest."""
    return c.schedule()


# ---------------------------------------------------------------------------- git
def git_commit_paths(paths: Sequence[Path], message: str, retries: int = 20) -> bool:
    """``git add`` + ``git commit -- paths``: only these paths, retried while the index is locked.

    Returns False (after printing why) when git refuses for another reason.
    """
    args = [str(p) for p in paths]
    for attempt in range(retries):
        add = subprocess.run(["git", "add", "--", *args], capture_output=True, text=True)
        com = None
        if add.returncode == 0:
            com = subprocess.run(
                ["git", "commit", "-q", "-m", message, "--", *args], capture_output=True, text=True
            )
            if com.returncode == 0:
                return True
        err = (add.stderr if add.returncode else (com.stderr + com.stdout if com else "")) or ""
        if "index.lock" not in err:
            print(f"[study] git commit failed: {err.strip()}")
            return False
        time.sleep(min(2.0 * (attempt + 1), 15.0))
    print(f"[study] git commit gave up after {retries} tries: the index stayed locked")
    return False


def git_head() -> str | None:
    """The current commit (with ``-dirty`` when tracked files differ), or None outside git
    (no repository, or no git program: a finished run must never crash on provenance)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src"], capture_output=True)
    except OSError:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode else "")


# ------------------------------------------------------------------------ one run
def run_one(c: Campaign, arm: str, seed: int) -> dict[str, Any]:
    """Train (or resume, from a snapshot too), evaluate and write one (arm, seed); commit it."""
    name = run_name(arm, seed)
    restore_inflight(c, name, c.runs_dir / name)
    result = run_study_one(c, arm, seed, {"git_commit": git_head()})
    snapshots = [inflight_path(c, name), inflight_metrics(c, name)]
    tracked = [p for p in snapshots if p.is_file() and is_tracked(p)]
    for p in snapshots:  # the run is done: its session-spanning snapshot goes
        p.unlink(missing_ok=True)
    if c.git_commit:
        weights = c.results_dir / "weights" / f"{name}.safetensors"
        curves = c.results_dir / "curves" / f"{name}.csv"
        paths = [c.result_path(arm, seed), weights, weights.with_suffix(".json")]
        paths += [c.results_dir / "protocol.yaml"]
        paths += [curves] if curves.is_file() else []
        paths += tracked
        git_commit_paths(paths, f"hex_study: {name} ({c.protocol.epochs} epochs)")
    return result


# ---------------------------------------------- checkpoints that outlive a session
def inflight_path(c: Campaign, name: str) -> Path:
    """Where ``--snapshot`` keeps an unfinished run's checkpoint, to be committed."""
    return c.results_dir / "inflight" / f"{name}.inflight.pt"


def inflight_metrics(c: Campaign, name: str) -> Path:
    """The unfinished run's ``metrics.csv`` beside its snapshot (the emergence curves)."""
    return c.results_dir / "inflight" / f"{name}.metrics.csv"


def restore_inflight(c: Campaign, name: str, run_dir: Path) -> bool:
    """Seed a run without a checkpoint (a fresh machine) from its committed snapshot."""
    saved, target = inflight_path(c, name), run_dir / "checkpoints" / "last.ckpt"
    if not saved.is_file() or target.is_file() or (run_dir / TRAIN_DONE).is_file():
        return False
    if run_dir.exists():
        shutil.rmtree(run_dir)
    target.parent.mkdir(parents=True)
    shutil.copyfile(saved, target)
    if inflight_metrics(c, name).is_file():
        shutil.copyfile(inflight_metrics(c, name), run_dir / "metrics.csv")
    print(f"[study] {name}: resuming from the snapshot {saved}")
    return True


def snapshot(c: Campaign) -> list[Path]:
    """Copy each unfinished run's ``last.ckpt`` to ``<results>/inflight/`` (and commit it).

    A session's processes and untracked files die with it; run this before it ends so
    the next session, on any machine, resumes the run instead of restarting it.
    """
    saved = []
    for seed in c.seeds:
        for arm in c.arms:
            name = run_name(arm, seed)
            ckpt = c.runs_dir / name / "checkpoints" / "last.ckpt"
            if c.result_path(arm, seed).is_file() or not ckpt.is_file():
                continue
            dest = inflight_path(c, name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ckpt, dest.with_suffix(".tmp"))
            os.replace(dest.with_suffix(".tmp"), dest)
            saved.append(dest)
            metrics = c.runs_dir / name / "metrics.csv"
            if metrics.is_file():
                shutil.copyfile(metrics, inflight_metrics(c, name))
                saved.append(inflight_metrics(c, name))
            print(f"[study] snapshot of {name}: {dest}")
    if c.git_commit and saved:
        git_commit_paths(saved, "hex_study: snapshot of unfinished runs")
    return saved


def is_tracked(path: Path) -> bool:
    """Whether git tracks ``path``."""
    try:
        res = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], capture_output=True)
    except OSError:  # no git program
        return False
    return res.returncode == 0


# ---------------------------------------------------------------------- the pool
def run_campaign(c: Campaign, workers: int = 1) -> list[Path]:
    """Every run of :func:`schedule` without a result; finished runs are skipped.

    ``workers > 1`` trains that many runs at once, each process with an equal share of
    the CPU threads (on our 2 cores, two 1-thread runs train 1.16x the images per second
    of one 2-thread run: ``benchmarks/results/parallel_runs/``). Each process claims the
    next free run of the schedule, so no run is trained twice.
    """
    start(c)
    for path in remove_stale_claims(c.runs_dir):
        print(f"[study] removed stale claim {path} (its process is gone)", flush=True)
    if workers > 1:
        threads = max(1, torch.get_num_threads() // workers)
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: own thread pools
        args = (c, threads, os.getpid())
        procs = [ctx.Process(target=campaign_worker, args=args) for _ in range(workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        failed = [p.exitcode for p in procs if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} campaign worker(s) failed (exit codes {failed})")
    else:
        campaign_worker(c, None)
    return [c.result_path(arm, seed) for arm, seed in schedule(c)]


def campaign_worker(c: Campaign, threads: int | None, parent: int | None = None) -> None:
    """Train every free, unfinished run of the schedule in order (one process).

    A spawned worker (``parent`` = the campaign's pid) stops when the campaign process
    is gone, so ``kill <campaign pid>`` never leaves orphans training and holding claims.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    if parent is not None:
        exit_with_parent(parent)
    for arm, seed in schedule(c):
        path = c.result_path(arm, seed)
        if path.is_file():
            print(f"[study] skip {run_name(arm, seed)}: {path} exists", flush=True)
            continue
        claim = c.claim_path(run_name(arm, seed))
        if not claim_run(claim):
            owner = claim.read_text().strip() if claim.is_file() else "?"
            print(f"[study] skip {run_name(arm, seed)}: process {owner} trains it", flush=True)
            continue
        try:
            if not path.is_file():  # finished by another worker in the meantime
                run_one(c, arm, seed)
        finally:
            claim.unlink(missing_ok=True)


def exit_with_parent(parent: int, period: float = 2.0) -> threading.Thread:
    """Watch (daemon thread) that ``parent`` is still this process's parent; exit if not.

    The run resumes from its last checkpoint (written atomically) next time; the steps
    since then are lost, as with any kill.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(period)
        print(f"[study] worker {os.getpid()}: campaign process {parent} is gone; stopping "
              "(the run resumes from its last checkpoint)", flush=True)  # fmt: skip
        os._exit(3)

    thread = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    thread.start()
    return thread


def claim_run(claim: Path) -> bool:
    """Take ``claim`` (a file holding this process's pid) unless it exists.

    Atomic: the pid is written to a private file first, then hard-linked into place,
    so another worker never sees a claim without its pid.
    """
    claim.parent.mkdir(parents=True, exist_ok=True)
    tmp = claim.with_name(f"{claim.name}.{os.getpid()}.tmp")
    tmp.write_text(str(os.getpid()))
    try:
        os.link(tmp, claim)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def remove_stale_claims(runs_dir: Path) -> list[Path]:
    """Delete claims whose process is gone (a killed session); before workers start."""
    stale = [p for p in runs_dir.glob("*.claim") if not pid_alive(p.read_text().strip())]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def pid_alive(text: str) -> bool:
    """Whether ``text`` is the pid of a running process (read from /proc; nothing is signalled).

    Where /proc is missing (not Linux) every claim counts as alive: a stale claim is then
    left for the user to delete, never a live one taken over.
    """
    if not text.isdigit():
        return False
    proc = Path("/proc")
    return not proc.is_dir() or (proc / text).exists()


# -------------------------------------------------------------------------- status
@dataclass
class RunState:
    """Where one (arm, seed) stands, for ``--status``."""

    name: str
    state: str  # done | training (pid N) | resumable | snapshot | todo
    epoch: float  # epochs trained so far (the protocol's length when done; NaN if unknown)
    img_per_s: float  # median of the last logged training speeds; NaN if unknown
    steps_per_epoch: float  # from the logged step / epoch; NaN if unknown


def _progress(metrics: Path) -> tuple[float, float, float]:
    """(epoch, recent img/s, steps per epoch) from a run's metrics.csv."""
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
    return e, float(np.median(speed)) if speed.size else math.nan, s / e  # epoch = step / spe


def run_state(c: Campaign, arm: str, seed: int) -> RunState:
    """Done (result JSON), training (a live claim), resumable (a local checkpoint),
    snapshot (only a committed in-flight checkpoint) or todo."""
    name = run_name(arm, seed)
    if c.result_path(arm, seed).is_file():
        return RunState(name, "done", float(c.protocol.epochs), math.nan, math.nan)
    local = c.runs_dir / name / "metrics.csv"
    metrics = local if local.is_file() else inflight_metrics(c, name)
    epoch, speed, spe = _progress(metrics) if metrics.is_file() else (math.nan,) * 3

    claim = c.claim_path(name)
    pid = claim.read_text().strip() if claim.is_file() else ""
    if pid and pid_alive(pid):
        state = f"training (pid {pid})"
    elif last_checkpoint(c.runs_dir / name) is not None:
        state = "resumable"
    elif inflight_path(c, name).is_file():
        state = "snapshot"
    else:
        state, epoch = "todo", 0.0
    return RunState(name, state, epoch, speed, spe)


def campaign_status(c: Campaign) -> list[RunState]:
    """:func:`run_state` of every run, in schedule order."""
    return [run_state(c, arm, seed) for arm, seed in schedule(c)]


def _hours(seconds: float) -> str:
    return "?" if not math.isfinite(seconds) else f"{seconds / 3600:.1f} h"


def format_status(states: list[RunState], epochs: int, batch_size: int) -> str:
    """A table of the runs and the training time left at the speeds last logged.

    Runs without a speed of their own (todo) are costed at the median speed of the
    others; the total is the sum over runs, so divide by the runs trained at once.
    """
    speeds = [s.img_per_s for s in states if math.isfinite(s.img_per_s)]
    spes = [s.steps_per_epoch for s in states if math.isfinite(s.steps_per_epoch)]
    median_speed = float(np.median(speeds)) if speeds else math.nan
    spe = float(np.median(spes)) if spes else math.nan
    lines = ["| run | state | epoch | img/s | left |", "|---|---|---|---|---|"]
    total = 0.0
    for s in states:
        speed = s.img_per_s if math.isfinite(s.img_per_s) else median_speed
        epoch = 0.0 if not math.isfinite(s.epoch) else s.epoch
        left = 0.0 if s.state == "done" else (epochs - epoch) * spe * batch_size / speed
        total += left
        shown = "-" if not math.isfinite(s.epoch) else f"{s.epoch:.1f} / {epochs}"
        rate = "-" if not math.isfinite(s.img_per_s) else f"{s.img_per_s:.0f}"
        lines.append(f"| {s.name} | {s.state} | {shown} | {rate} | {_hours(left)} |")
    done = sum(s.state == "done" for s in states)
    summary = (
        f"{done} of {len(states)} runs done; training left: {_hours(total)} of run-time at "
        "the speeds last logged (divide by the runs trained at once)."
    )
    lines += ["", summary]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------ transfer
def transfer(
    results_dir: Path,
    datasets: Sequence[str | Path],
    max_samples: int | None = None,
    git_commit: bool = False,
) -> list[Path]:
    """:func:`hexssl.study.transfer`, then (``git_commit``) a commit of the files it wrote."""
    written = study_transfer(results_dir, datasets, max_samples=max_samples)
    if git_commit and written:
        git_commit_paths(written, f"hex_study transfer: {len(written)} results")
    return written
