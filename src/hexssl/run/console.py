"""Quiet output (issue 10.11): a run prints a start line, the progress bar, one summary line.

Lightning's info lines ("GPU available: False", tips, "weights_only was not set") and
its warnings that a user cannot act on are silenced. hexssl's own warnings (unreadable
images skipped, classes missing from hierarchy.csv) stay, as one ``hexssl: warning:``
line each.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TextIO

# Lightning warnings with nothing to act on for hexssl runs (and why).
_NOISE = (
    r".*does not have many workers.*",  # in-memory batches need no workers
    r".*is smaller than the logging interval.*",  # short test / smoke runs
    r".*LeafSpec.*",  # Lightning's own deprecation of a torch API
    # A mid-epoch resume: the datamodule skips the batches already seen itself
    # (``resume_skip``) and warns on its own when it cannot (lazy datasets).
    r".*ended before the epoch ended and your dataloader is not resumable.*",
    # Lightning's hint on any machine with `srun` on PATH (a SLURM login node, our test
    # cluster) for a run outside a SLURM job step. Inside one (SLURM_NTASKS set, as in
    # every batch script with --ntasks and every `srun`) Lightning picks its SLURM
    # environment without the hint; `hexssl study --executor slurm` launches runs of
    # several devices with `srun`.
    r"The `srun` command is available on your system but is not used.*",
)


def quiet_libraries() -> None:
    """Silence Lightning's info logging and the warnings listed in ``_NOISE``."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning_utilities"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in _NOISE:
        warnings.filterwarnings("ignore", message=pattern)


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the CLI: ``hexssl: warning: <message>``, no source line."""
    print(f"hexssl: warning: {message}", file=file or sys.stderr)
