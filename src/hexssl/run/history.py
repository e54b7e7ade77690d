"""A run's ``metrics.csv`` survives a resume: rows up to the checkpoint stay, later ones go.

Lightning's CSVLogger deletes ``metrics.csv`` whenever its folder is not empty (and
warns about it), so a resumed run lost its history (issue 9.2). Here the file is first
cut back to the rows logged before the checkpoint's step (rows logged after it were
trained again from the checkpoint, and are logged again), then the logger appends.

Lightning logs step ``k``'s metrics with ``step = k - 1`` after the checkpoint callback
of step ``k`` has run, so a checkpoint at global step ``S`` covers the rows with
``step < S`` (validation at an epoch end is logged before the epoch-end checkpoint).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from hexssl.run.atomic import atomic_write_text

METRICS_FILE = "metrics.csv"


def trim_metrics(path: Path, step: int) -> int:
    """Keep the header and the rows with ``step < step`` of ``path``; return rows dropped."""
    if not path.is_file():
        return 0
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    header, body = rows[0], rows[1:]
    col = header.index("step") if "step" in header else None
    keep = [r for r in body if col is None or not _at_or_after(r, col, step)]
    if len(keep) < len(body):
        atomic_write_text(path, _csv_text(header, keep))
    return len(body) - len(keep)


def _at_or_after(row: list[str], col: int, step: int) -> bool:
    try:
        return float(row[col]) >= step
    except (IndexError, ValueError):
        return False  # a row without a step is kept


def _csv_text(header: list[str], rows: list[Any], dict_rows: bool = False) -> str:
    buf = io.StringIO()
    if dict_rows:
        writer = csv.DictWriter(buf, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    else:
        plain = csv.writer(buf)
        plain.writerows([header, *rows])
    return buf.getvalue()


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued."""

    def _check_log_dir_exists(self) -> None:
        # Lightning deletes the file here; instead its header seeds the known columns.
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        """New columns: rewrite the file with the wider header, atomically."""
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        atomic_write_text(Path(self.metrics_file_path), _csv_text(fieldnames, rows, True))


class RunCSVLogger(CSVLogger):
    """``<run>/metrics.csv`` (no version folders), continued across resumes.

    Example:
        >>> logger = RunCSVLogger("runs/simclr", flush_logs_every_n_steps=10)
    """

    def __init__(self, run_dir: str | Path, flush_logs_every_n_steps: int = 100) -> None:
        super().__init__(
            str(run_dir), name="", version="", flush_logs_every_n_steps=flush_logs_every_n_steps
        )

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment  # type: ignore[return-value]
