"""A study's results folder: the single source of truth for what is done.

Layout (everything a study writes outside its run directories)::

    <results>/protocol.yaml                  the resolved protocol, fixed before any run
    <results>/study.json                     {"runs_dir", "executor", "workers"} of the last launch
    <results>/<arm>-s<seed>.json             one finished run (written last, atomically)
    <results>/weights/, curves/              its released backbone and emergence curves
    <results>/logs/<arm>-s<seed>.log         the run's output (the executor redirects it)
    <results>/logs/<arm>-s<seed>.failed.json why its last attempt failed (removed on retry)
    <results>/.running/<arm>-s<seed>/        the run lock of its live job process

A run is done when its JSON exists; running while a live job process holds its run
lock (:mod:`hexssl.run.lock`; the job's own under ``.running/``, or ``pretrain``'s in the
run directory); failed while a failure record exists; otherwise queued.
An executor may know more (a SLURM job pending), which it reports through
:meth:`hexssl.study.executors.Executor.records`.

Example:
    >>> from hexssl.study.protocol import load_protocol, resolve_protocol
    >>> p = resolve_protocol(load_protocol("hex-vs-simclr"), ["synthetic-cpu"])
    >>> folder = StudyFolder("results/hex")
    >>> folder.result_path("simclr", 0).as_posix(), folder.log_path("simclr", 0).as_posix()
    ('results/hex/simclr-s0.json', 'results/hex/logs/simclr-s0.log')
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hexssl.errors import ConfigError
from hexssl.run.atomic import atomic_write_text
from hexssl.study.protocol import Protocol, frozen_text, load_protocol, resolve_protocol, run_name

PROTOCOL_FILE = "protocol.yaml"
RECORD_FILE = "study.json"
LOG_DIR = "logs"


class StudyFolder:
    """Paths and records of one study's results folder (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ paths
    @property
    def protocol_path(self) -> Path:
        """``<results>/protocol.yaml``."""
        return self.path / PROTOCOL_FILE

    def result_path(self, arm: str, seed: int) -> Path:
        """``<results>/<arm>-s<seed>.json``: present once the run is trained and evaluated."""
        return self.path / f"{run_name(arm, seed)}.json"

    def log_path(self, arm: str, seed: int) -> Path:
        """``<results>/logs/<arm>-s<seed>.log``: where an executor sends the run's output."""
        return self.path / LOG_DIR / f"{run_name(arm, seed)}.log"

    def failure_path(self, arm: str, seed: int) -> Path:
        """``<results>/logs/<arm>-s<seed>.failed.json``: the last attempt's failure."""
        return self.path / LOG_DIR / f"{run_name(arm, seed)}.failed.json"

    def job_lock_dir(self, arm: str, seed: int) -> Path:
        """``<results>/.running/<arm>-s<seed>``: holds the run lock of a live job process
        (training and evaluation), so a run is shown running, and trained once, also
        while it is evaluated."""
        return self.path / ".running" / run_name(arm, seed)

    def run_dir(self, arm: str, seed: int) -> Path:
        """The run's directory (checkpoints, metrics.csv, run lock) under the runs dir."""
        return self.runs_dir() / run_name(arm, seed)

    # ---------------------------------------------------------------- records
    def record(self) -> dict[str, Any]:
        """``study.json`` (empty for a folder written before it existed)."""
        path = self.path / RECORD_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def runs_dir(self, record: dict[str, Any] | None = None) -> Path:
        """Where the runs train: recorded in ``study.json`` (relative to the results
        folder when inside it, so the folder can move), else ``<results>/runs``.
        ``record``: ``study.json`` as the caller already read it."""
        recorded = (self.record() if record is None else record).get("runs_dir")
        return self.path / "runs" if not recorded else self.path / Path(recorded)

    def write_record(self, **values: Any) -> None:
        """Update ``study.json`` with ``values`` (e.g. ``runs_dir``, ``executor``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        data = {**self.record(), **values}
        atomic_write_text(self.path / RECORD_FILE, json.dumps(data, indent=2) + "\n")

    def protocol(self) -> Protocol:
        """The study's resolved protocol (a folder from before resolution: resolved now)."""
        if not self.protocol_path.is_file():
            raise ConfigError(
                f"{self.path} is not a study results folder (no {PROTOCOL_FILE}); "
                "`hexssl study PROTOCOL ... --results DIR` starts one"
            )
        return resolve_protocol(load_protocol(self.protocol_path))

    def record_failure(self, arm: str, seed: int, exit_code: int, reason: str) -> Path:
        """Write why the run's attempt failed (read by ``--status``); returns the file."""
        path = self.failure_path(arm, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"exit_code": exit_code, "reason": reason[-2000:], "time": time.time(),
                  "host": socket.gethostname(), "log": str(self.log_path(arm, seed))}  # fmt: skip
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
        return path

    def failure(self, arm: str, seed: int) -> dict[str, Any] | None:
        """The failure record of the run's last attempt, or None."""
        path = self.failure_path(arm, seed)
        return json.loads(path.read_text()) if path.is_file() else None

    def clear_failure(self, arm: str, seed: int) -> None:
        """Forget the last failure (a new attempt starts)."""
        self.failure_path(arm, seed).unlink(missing_ok=True)

    def job_command(self, arm: str, seed: int) -> list[str]:
        """The one-run process: ``python -m hexssl.study.job RESULTS ARM SEED``."""
        return [sys.executable, "-m", "hexssl.study.job", str(self.path), arm, str(seed)]


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The dotted path of the first value that differs between two nested mappings."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            if key not in a or key not in b:
                return f"{where}{key}"
            found = first_difference(a[key], b[key], f"{where}{key}.")
            if found:
                return found
        return None
    return None if a == b else where.rstrip(".") or "(top level)"


def check_same_protocol(folder: StudyFolder, protocol: Protocol) -> None:
    """Refuse ``protocol`` when the folder already holds a study with another one."""
    if not folder.protocol_path.is_file():
        return
    fixed = folder.protocol()
    if fixed.sha256 == protocol.sha256:
        return
    keys = ("epochs", "warmup_fraction", "eval", "arms", "comparisons", "label_using")
    diff = first_difference({k: getattr(fixed, k) for k in keys},
                            {k: getattr(protocol, k) for k in keys})  # fmt: skip
    raise ConfigError(
        f"{folder.path} holds a study with another protocol ({diff or 'comparisons'} "
        f"differs; sha256 {fixed.sha256[:12]} there, {protocol.sha256[:12]} now): "
        f"start a new study in another folder, e.g. --results {folder.path}-2"
    )


def fix_protocol(folder: StudyFolder, protocol: Protocol, runs_dir: Path) -> None:
    """Write the resolved protocol (first time) and the runs dir into the folder.

    A folder with another protocol is refused (:func:`check_same_protocol`) before
    anything is written; one with the same protocol keeps its file.
    """
    check_same_protocol(folder, protocol)
    if not folder.protocol_path.is_file():
        folder.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder.protocol_path, frozen_text(protocol))
    folder.write_record(runs_dir=_portable(runs_dir, folder.path))


def _portable(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (the folder can then move or be
    copied with its runs), else absolute."""
    path, base = path.resolve(), base.resolve()
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
