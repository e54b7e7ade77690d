"""Our own study campaigns across sessions and machines: snapshots and git commits.

``hexssl study`` (the library: :mod:`hexssl.study`) plans, runs, resumes and reports a
study, and writes only its results folder and run folders. This module adds what we use
to run our studies on shared, short-lived machines, and nothing in ``src/`` depends on it:

* in-flight snapshots: an unfinished run's ``last.ckpt`` copied under the results
  (``--snapshot``), so that the next session, on any machine, resumes it
  (:func:`restore_inflight` puts it back before the study runs);
* ``git add`` / ``git commit`` of the files each finished run wrote (``--git-commit``).

Used by ``benchmarks/hex_study.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from hexssl.study import TRAIN_DONE, run_name
from hexssl.study import transfer as study_transfer
from hexssl.study.report import RESULT_NAME


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


def is_tracked(path: Path) -> bool:
    """Whether git tracks ``path`` (False without a git program)."""
    try:
        res = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], capture_output=True)
    except OSError:  # no git program
        return False
    return res.returncode == 0


def run_files(results_dir: Path, name: str) -> list[Path]:
    """The files a finished run wrote into the results folder (JSON, weights, curves)."""
    candidates = [
        results_dir / f"{name}.json", results_dir / "weights" / f"{name}.safetensors",
        results_dir / "weights" / f"{name}.json", results_dir / "curves" / f"{name}.csv",
    ]  # fmt: skip
    return [p for p in candidates if p.is_file()]


def commit_new_results(results_dir: Path, before: set[str], epochs: str = "") -> list[str]:
    """Commit each run finished since ``before`` (result names), with the protocol file."""
    names = sorted(
        p.stem
        for p in results_dir.glob("*.json")
        if RESULT_NAME.match(p.name) and p.stem not in before
    )
    for name in names:
        paths = [*run_files(results_dir, name), results_dir / "protocol.yaml"]
        snapshots = [inflight_path(results_dir, name), inflight_metrics(results_dir, name)]
        paths += [p for p in snapshots if not p.is_file() and is_tracked(p)]  # removed ones
        git_commit_paths(paths, f"hex_study: {name}{epochs}")
    return names


# ---------------------------------------------- checkpoints that outlive a session
def inflight_path(results_dir: Path, name: str) -> Path:
    """Where ``--snapshot`` keeps an unfinished run's checkpoint, to be committed."""
    return results_dir / "inflight" / f"{name}.inflight.pt"


def inflight_metrics(results_dir: Path, name: str) -> Path:
    """The unfinished run's ``metrics.csv`` beside its snapshot (the emergence curves)."""
    return results_dir / "inflight" / f"{name}.metrics.csv"


def restore_inflight(results_dir: Path, runs_dir: Path) -> list[str]:
    """Seed each unfinished run without a checkpoint (a fresh machine) from its snapshot;
    drop the snapshots of runs that finished. Returns the restored run names."""
    restored = []
    for saved in sorted((results_dir / "inflight").glob("*.inflight.pt")):
        name = saved.name.removesuffix(".inflight.pt")
        run_dir, metrics = runs_dir / name, inflight_metrics(results_dir, name)
        if (results_dir / f"{name}.json").is_file():
            saved.unlink()
            metrics.unlink(missing_ok=True)
            continue
        target = run_dir / "checkpoints" / "last.ckpt"
        if target.is_file() or (run_dir / TRAIN_DONE).is_file():
            continue
        if run_dir.exists():
            shutil.rmtree(run_dir)
        target.parent.mkdir(parents=True)
        shutil.copyfile(saved, target)
        if metrics.is_file():
            shutil.copyfile(metrics, run_dir / "metrics.csv")
        print(f"[study] {name}: resuming from the snapshot {saved}")
        restored.append(name)
    return restored


def snapshot(
    results_dir: Path, runs_dir: Path, runs: Sequence[tuple[str, int]], git_commit: bool = False
) -> list[Path]:
    """Copy each unfinished run's ``last.ckpt`` to ``<results>/inflight/`` (and commit it).

    A session's processes and untracked files die with it; run this before it ends so
    the next session, on any machine, resumes the run instead of restarting it.
    """
    saved = []
    for arm, seed in runs:
        name = run_name(arm, seed)
        ckpt = runs_dir / name / "checkpoints" / "last.ckpt"
        if (results_dir / f"{name}.json").is_file() or not ckpt.is_file():
            continue
        dest = inflight_path(results_dir, name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ckpt, dest.with_suffix(".tmp"))
        os.replace(dest.with_suffix(".tmp"), dest)
        saved.append(dest)
        metrics = runs_dir / name / "metrics.csv"
        if metrics.is_file():
            shutil.copyfile(metrics, inflight_metrics(results_dir, name))
            saved.append(inflight_metrics(results_dir, name))
        print(f"[study] snapshot of {name}: {dest}")
    if git_commit and saved:
        git_commit_paths(saved, "hex_study: snapshot of unfinished runs")
    return saved


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
